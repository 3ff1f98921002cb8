"""Status-page components: which probes make up each, and how each is judged.

A status-page component (``API Read``, ``API Write`` …) groups probes and
stream watchers. Without ``[[components]]`` in the config,
``probed.config.default_components`` derives the seeds' five components from the
probe kinds:

===============  ====================================================
API Read         ``http`` probes whose method is GET or HEAD
API Write        ``http`` probes with any other method, ``login`` and
                 ``fixture`` probes
SSE Stream       ``sse`` stream watchers and ``reflect`` probes
Background Jobs  ``import`` probes
Console/Admin    nothing (UNKNOWN, "not monitored" on the page)
===============  ====================================================

``compute_components`` judges each component from a ``Signals`` snapshot
(pure, no I/O): members without data yet (not in the snapshot, or a probe
that never finished a run) are left out; with no member left the component
is UNKNOWN. A member is *failing* when it is a probe whose last run failed
or a stream that is not fully connected. DOWN: every member with data is
failing. DEGRADED: some are, or a probe failed at least once within the
signal window. OK otherwise. ``overall`` folds the components: DOWN if any
is DOWN, else DEGRADED if any is DEGRADED, else OK; UNKNOWN components are
ignored unless every component is UNKNOWN (or there are none).

``last_healthy`` is the latest time at which every member was healthy as
far as the snapshot tells: the earliest of the members' "healthy at" times,
where a probe is healthy at its ``last_success_at`` and a stream at ``now``
while connected, else at ``now - disconnected_for``. It is None when a
member with data was never healthy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from probed.config import ComponentConfig
from probed.signals import (
    ComponentState,
    ComponentStatus,
    ProbeSignal,
    Recommendation,
    RecommendationState,
    Severity,
    Signals,
    StreamSignal,
)

__all__ = [
    "compute_components",
    "overall",
]


def _probe_view(sig: ProbeSignal) -> tuple[bool, bool, float | None] | None:
    """(failing, degraded, healthy at) of a probe; None without data.

    A run that succeeded but too slowly (reason ``slow``) degrades, it does not fail:
    the journey works, just not well.
    """
    if sig.last_success is None:
        return None
    slow = sig.last_reason == "slow"
    failing = not sig.last_success and not slow
    return (failing, not failing and (slow or sig.failure_ratio > 0), sig.last_success_at)


def _stream_view(sig: StreamSignal, now: float) -> tuple[bool, bool, float | None]:
    """(failing, degraded, healthy at) of a stream watcher; one delivering no event fails."""
    if sig.silent_for > 0:
        return (True, False, now - sig.silent_for)
    if sig.connected:
        return (False, False, now)
    return (True, False, now - sig.disconnected_for if sig.disconnected_for > 0 else None)


def _named_by(recommendations: Iterable[Recommendation]) -> set[str]:
    """The probes and streams the evidence of active recommendations names."""
    named = set()
    for rec in recommendations:
        if rec.state is RecommendationState.ACTIVE:
            for evidence in rec.evidence:
                kind, _, rest = evidence.signal.partition(" ")
                if kind in ("probe", "stream") and rest:
                    named.add(rest.split(" ")[0])
    return named


def _component(
    config: ComponentConfig, signals: Signals, named: frozenset[str] | set[str] = frozenset()
) -> ComponentStatus:
    views: list[tuple[str, tuple[bool, bool, float | None]]] = []
    for name in config.probes:
        view: tuple[bool, bool, float | None] | None = None
        if (probe := signals.probes.get(name)) is not None:
            view = _probe_view(probe)
        elif (stream := signals.streams.get(name)) is not None:
            view = _stream_view(stream, signals.now)
        if view is not None:
            views.append((name, view))
    failing = tuple(name for name, (bad, _, _) in views if bad)
    # degraded by its own view, or named by an active recommendation (a lag p95 over target)
    degraded_by = tuple(
        name for name, (bad, degraded, _) in views if degraded or (name in named and not bad)
    )
    if not views:
        state = ComponentState.UNKNOWN
    elif len(failing) == len(views):
        state = ComponentState.DOWN
    elif failing or degraded_by:
        state = ComponentState.DEGRADED
    else:
        state = ComponentState.OK
    healthy = [at for _, (_, _, at) in views if at is not None]
    last_healthy = min(healthy) if views and len(healthy) == len(views) else None
    return ComponentStatus(
        name=config.name,
        state=state,
        probes=tuple(config.probes),
        failing=failing,
        last_healthy=last_healthy,
        degraded_by=degraded_by,
    )


def compute_components(
    components: Sequence[ComponentConfig],
    signals: Signals,
    recommendations: Iterable[Recommendation] = (),
) -> tuple[ComponentStatus, ...]:
    """Judge every component from ``signals`` (pure; rules in the module docstring).

    A member an active recommendation's evidence names is at least DEGRADED.
    """
    named = _named_by(recommendations)
    return tuple(_component(config, signals, named) for config in components)


#: The least severe headline an active recommendation of each severity allows.
_SEVERITY_FLOOR: dict[Severity, ComponentState] = {
    Severity.SEV1: ComponentState.DOWN,
    Severity.SEV2: ComponentState.DEGRADED,
    Severity.SEV3: ComponentState.DEGRADED,
}


def overall(
    components: Iterable[ComponentStatus], recommendations: Iterable[Recommendation] = ()
) -> ComponentState:
    """The page's headline state: the worst known component state (UNKNOWN if none is known).

    It is never better than an active recommendation implies: DOWN under an active
    Sev-1, at least DEGRADED under an active Sev-2 or Sev-3.
    """
    states = {c.state for c in components}
    states |= {
        _SEVERITY_FLOOR[r.severity]
        for r in recommendations
        if r.state is RecommendationState.ACTIVE and r.severity in _SEVERITY_FLOOR
    }
    for state in (ComponentState.DOWN, ComponentState.DEGRADED, ComponentState.OK):
        if state in states:
            return state
    return ComponentState.UNKNOWN
