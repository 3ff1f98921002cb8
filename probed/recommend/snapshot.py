"""The recommendation engine's state as JSON-compatible data and back, for restarts.

``dump_episodes`` turns the episodes into a snapshot; ``load_episodes`` checks
one and returns the episodes it holds with the problems found, never raising:
an invalid scenario entry is dropped and reported, data that is not a snapshot
at all is reported and ignored. Pure: no I/O.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Container, Mapping
from typing import Any, Final

from probed.recommend.episode import Episode
from probed.signals import Evidence, RecommendationState, Severity

__all__ = ["SNAPSHOT_VERSION", "dump_episodes", "load_episodes"]

SNAPSHOT_VERSION: Final = 1


def dump_episodes(episodes: Mapping[str, Episode]) -> dict[str, Any]:
    """``episodes`` (by scenario id) as JSON-compatible data, for ``load_episodes``."""
    return {
        "version": SNAPSHOT_VERSION,
        "scenarios": {sid: _dump(ep) for sid, ep in sorted(episodes.items())},
    }


def load_episodes(
    data: Any, known: Container[str], disabled: Container[str]
) -> tuple[dict[str, Episode] | None, list[str]]:
    """The episodes a snapshot holds (None if ``data`` is none) and the problems found.

    Entries of scenarios not ``known`` or ``disabled`` are dropped and reported.
    """
    where = "recommendation state"
    if not isinstance(data, Mapping):
        return None, [f"{where}: expected a mapping, got {reprlib.repr(data)}; ignored"]
    version = data.get("version")
    if type(version) is not int or version != SNAPSHOT_VERSION:
        return None, [
            f"{where}: unsupported version {reprlib.repr(version)} "
            f"(expected {SNAPSHOT_VERSION}); ignored"
        ]
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, Mapping):
        return None, [f"{where}: 'scenarios' must be a mapping, got {reprlib.repr(scenarios)}"]
    problems: list[str] = []
    episodes: dict[str, Episode] = {}
    for sid, raw in scenarios.items():
        if sid not in known:
            problems.append(f"{where}: unknown scenario {reprlib.repr(sid)}; dropped")
            continue
        if sid in disabled:
            problems.append(f"{where}: scenario {sid!r} is disabled; its state dropped")
            continue
        try:
            episodes[sid] = _load(raw)
        except _BadState as exc:
            problems.append(f"{where}: scenario {sid!r}: {exc}; dropped")
    return episodes, problems


class _BadState(ValueError):
    """A saved scenario entry that cannot be loaded."""


def _dump(ep: Episode) -> dict[str, Any]:
    return {
        "state": ep.state.value,
        "entered_at": ep.entered_at,
        "since": ep.since,
        "severity": ep.severity.value,
        "summary": ep.summary,
        "activated": ep.activated,
        "exit_since": ep.exit_since,
        "demote_since": ep.demote_since,
        "demote_to": None if ep.demote_to is None else ep.demote_to.value,
        "first_seen": dict(sorted(ep.first_seen.items())),
        "reason": ep.reason,
        "evidence": [
            {
                "signal": e.signal,
                "value": e.value,
                "threshold": e.threshold,
                "since": e.since,
                "detail": e.detail,
            }
            for e in ep.evidence
        ],
    }


def _get(raw: Mapping[str, Any], key: str) -> Any:
    if key not in raw:
        raise _BadState(f"missing {key!r}")
    return raw[key]


def _number(value: Any, key: str) -> float:
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise _BadState(f"{key!r} must be a finite number, got {reprlib.repr(value)}")


def _optional_number(value: Any, key: str) -> float | None:
    return None if value is None else _number(value, key)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _BadState(f"{key!r} must be a string, got {reprlib.repr(value)}")
    return value


def _severity(value: Any, key: str) -> Severity:
    try:
        return Severity(_text(value, key))
    except ValueError:
        raise _BadState(f"{key!r}: unknown severity {reprlib.repr(value)}") from None


def _load(raw: Any) -> Episode:
    if not isinstance(raw, Mapping):
        raise _BadState(f"expected a mapping, got {reprlib.repr(raw)}")
    state_text = _text(_get(raw, "state"), "state")
    states = {
        s.value: s
        for s in (
            RecommendationState.PENDING,
            RecommendationState.ACTIVE,
            RecommendationState.INCONCLUSIVE,
        )
    }
    if state_text not in states:
        raise _BadState(f"'state' must be one of {', '.join(states)}, got {state_text!r}")
    state = states[state_text]
    activated = _get(raw, "activated")
    if not isinstance(activated, bool):
        raise _BadState(f"'activated' must be true or false, got {reprlib.repr(activated)}")
    demote_raw = _get(raw, "demote_to")
    demote_to = None if demote_raw is None else _severity(demote_raw, "demote_to")
    demote_since = _optional_number(_get(raw, "demote_since"), "demote_since")
    if (demote_to is None) != (demote_since is None):
        raise _BadState("'demote_to' and 'demote_since' must be set together")
    first_raw = _get(raw, "first_seen")
    if not isinstance(first_raw, Mapping):
        raise _BadState(f"'first_seen' must be a mapping, got {reprlib.repr(first_raw)}")
    first_seen = {
        _text(k, "first_seen key"): _number(v, "first_seen value") for k, v in first_raw.items()
    }
    evidence_raw = _get(raw, "evidence")
    if not isinstance(evidence_raw, list):
        raise _BadState(f"'evidence' must be a list, got {reprlib.repr(evidence_raw)}")
    evidence = []
    for item in evidence_raw:
        if not isinstance(item, Mapping):
            raise _BadState(f"an evidence item must be a mapping, got {reprlib.repr(item)}")
        evidence.append(
            Evidence(
                signal=_text(_get(item, "signal"), "evidence signal"),
                value=_number(_get(item, "value"), "evidence value"),
                threshold=_number(_get(item, "threshold"), "evidence threshold"),
                since=_number(_get(item, "since"), "evidence since"),
                detail=_text(_get(item, "detail"), "evidence detail"),
            )
        )
    return Episode(
        state=state,
        entered_at=_number(_get(raw, "entered_at"), "entered_at"),
        since=_number(_get(raw, "since"), "since"),
        severity=_severity(_get(raw, "severity"), "severity"),
        summary=_text(_get(raw, "summary"), "summary"),
        evidence=tuple(evidence),
        # ACTIVE means issued; PENDING means not (yet) issued, whatever the file says.
        activated=state is RecommendationState.ACTIVE
        or (state is RecommendationState.INCONCLUSIVE and activated),
        exit_since=_optional_number(_get(raw, "exit_since"), "exit_since"),
        demote_since=demote_since,
        demote_to=demote_to,
        first_seen=first_seen,
        reason=raw["reason"] if isinstance(raw.get("reason"), str) else None,
    )
