"""Ad hoc maintenance windows: ``POST /api/v1/maintenance`` and what ``probed silence`` sends.

The body is a JSON object::

    {"probes": ["login"], "targets": ["demo"], "duration": "30m", "reason": "deploy"}

``targets`` and/or ``probes`` (names the daemon knows), exactly one of
``duration`` (``"30m"``, ``"2h"``; at most 30 days) and ``end`` (RFC 3339 with
an offset, in the future), and an optional ``reason``. The window opens now.
The answer is ``{"status": "success", "window": {...}}`` (the status
document's window form) or a 400 ``{"status": "error", "error": "..."}``.

Ad hoc windows are saved with the daemon's state: a config reload and a restart
keep them until they end (planned work still reads best in ``[[maintenance]]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from probed.durations import format_duration, parse_duration
from probed.maintenance import Maintenance, MaintenanceWindow

__all__ = ["MAX_DURATION", "add_from_request", "window_from_request"]

MAX_DURATION = 30 * 86400.0
"""The longest ad hoc window: a typo must not silence a probe for good."""

_KEYS = frozenset({"targets", "probes", "duration", "end", "reason"})

_log = structlog.get_logger("probed.maintenance")


def _names(body: Mapping[str, Any], key: str, known: set[str]) -> frozenset[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ValueError(f"{key!r} must be a list of names")
    if missing := [n for n in value if n not in known]:
        raise ValueError(f"unknown {key[:-1]}(s) {', '.join(map(repr, missing))}")
    return frozenset(value)


def _end(body: Mapping[str, Any], now: float) -> float:
    if ("duration" in body) == ("end" in body):
        raise ValueError("give exactly one of 'duration' and 'end'")
    if "duration" in body:
        seconds = parse_duration(body["duration"])
        if seconds > MAX_DURATION:
            raise ValueError(f"a window lasts at most {format_duration(MAX_DURATION)}")
        return now + seconds
    value = body["end"]
    try:
        end = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        end = None
    if end is None or end.tzinfo is None:
        raise ValueError("'end' must be RFC 3339 with an offset, e.g. 2027-01-15T09:00:00Z")
    if end.timestamp() <= now:
        raise ValueError("'end' must be in the future")
    if end.timestamp() - now > MAX_DURATION:
        raise ValueError(f"a window lasts at most {format_duration(MAX_DURATION)}")
    return end.timestamp()


def window_from_request(
    body: object, now: float, *, probes: set[str], targets: set[str]
) -> MaintenanceWindow:
    """The window a request body asks for, opening at ``now``; ``ValueError`` says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    if unknown := sorted(set(body) - _KEYS):
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    named_probes = _names(body, "probes", probes)
    named_targets = _names(body, "targets", targets)
    if not (named_probes or named_targets):
        raise ValueError("name at least one of 'targets' and 'probes'")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError("'reason' must be a string")
    return MaintenanceWindow(now, _end(body, now), named_targets, named_probes, reason)


def add_from_request(
    body: object,
    registry: Maintenance,
    now: float,
    *,
    probes: set[str],
    targets: set[str],
) -> tuple[int, dict[str, Any]]:
    """Add the window ``body`` asks for to ``registry``: (HTTP status, JSON answer)."""
    try:
        window = window_from_request(body, now, probes=probes, targets=targets)
    except ValueError as exc:
        return 400, {"status": "error", "error": str(exc)}
    registry.add(window, now)
    _log.warning("maintenance_window_added", **window.to_json())
    return 200, {"status": "success", "window": window.to_json()}
