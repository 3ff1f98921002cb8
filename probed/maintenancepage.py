"""Maintenance windows in the status document and on the status page.

The document (``probed.status.status_document``) gets a ``maintenance`` list
of the active and upcoming windows, ``{start, end, targets, probes, reason,
active}`` (times in Unix seconds, active ones first), and every probe or stream
under an open window a ``maintenance_until`` (the end of the covering window
that ends last).

The page says so twice: one ``p.maintenance`` line per window in the header
("maintenance until …" or "maintenance from … until …") and a "maintenance
until …" mark beside the name of each covered probe.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import Any

from probed.maintenance import Maintenance

__all__ = ["annotate", "page_maintenance", "probe_mark", "window_list"]


def window_list(maintenance: Maintenance | None, now: float) -> list[dict[str, Any]]:
    """The document's ``maintenance`` list at ``now``: the active windows, then the upcoming."""
    if maintenance is None:
        return []
    active = maintenance.active(now)
    return [{**w.to_json(), "active": w in active} for w in [*active, *maintenance.upcoming(now)]]


def annotate(doc: dict[str, Any], maintenance: Maintenance | None, now: float) -> None:
    """Add the ``maintenance`` list and each covered member's ``maintenance_until`` to ``doc``."""
    registry = maintenance if maintenance is not None else Maintenance()
    doc["maintenance"] = window_list(maintenance, now)
    for key, members in (("probe", doc["probes"]), ("stream", doc["streams"])):
        for member in members:
            window = registry.covers(member[key], member["target"], now)
            if window is not None:
                member["maintenance_until"] = window.end


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _e(value: object) -> str:
    return html.escape(_text(value), quote=True)


def _names(window: Mapping[str, Any]) -> str:
    parts = []
    for key in ("targets", "probes"):
        names = window.get(key)
        if isinstance(names, list) and names:
            parts.append(f"{key} {', '.join(_text(n) for n in names)}")
    return "; ".join(parts)


def page_maintenance(doc: Mapping[str, Any], iso: Callable[[object], str]) -> str:
    """The page header's ``p.maintenance`` lines for ``doc``."""
    lines = []
    windows = doc.get("maintenance")
    for w in windows if isinstance(windows, list) else []:
        if not isinstance(w, Mapping):
            continue
        active = w.get("active") is True
        when = f"until {iso(w.get('end'))}"
        if not active:
            when = f"from {iso(w.get('start'))} {when}"
        reason = _text(w.get("reason")) or "-"
        lines.append(
            f'<p class="maintenance" data-active="{"true" if active else "false"}">'
            f"maintenance {when}: {_e(reason)} ({_e(_names(w))})</p>"
        )
    return "".join(lines)


def probe_mark(probe: Mapping[str, Any], iso: Callable[[object], str]) -> str:
    """`` <span class="maintenance">maintenance until …</span>`` for a covered probe, else ''."""
    until = probe.get("maintenance_until")
    if not isinstance(until, int | float) or isinstance(until, bool) or not math.isfinite(until):
        return ""
    return f' <span class="maintenance">maintenance until {iso(until)}</span>'
