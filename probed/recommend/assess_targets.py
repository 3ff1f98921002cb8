"""Rules about targets and single probes: a target that cannot be reached, a probe failing alone.

``target_down`` (Sev-1) names a target none of whose probes can connect: every
probe of it with enough runs failed its last run with a connection reason (dns,
connect_refused, connect_error, tls, or stream_down for probes fed by a stream)
and at least ``min_runs`` of its runs in the window failed that way. While a target is
down, the other rules do not see that target's probes and streams, nor the SLOs
(whose burn is the outage's knock-on): what they would have raised is listed in
``target_down``'s evidence as ``suppressed <scenario>``, not dropped silently.

``health_failing`` is the catch-all for plain ``http`` probes (health, readiness,
API reads) that no journey rule covers: a failure ratio of ``probe_failure_ratio``
or more, 429 answers left to ``rate_limited``. Its severity is configurable
(``probe_failing_severity``).

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import dataclasses

from probed.config import RecommendConfig
from probed.durations import format_duration
from probed.recommend.facts import Assessment, Fact, Level, fact, grade, pct, probes_of
from probed.signals import ProbeSignal, Severity, Signals

__all__ = [
    "CONNECTION_REASONS",
    "assess_health_failing",
    "assess_target_down",
    "down_targets",
    "suppressed_fact",
    "without_targets",
]

CONNECTION_REASONS = frozenset({"dns", "connect_refused", "connect_error", "tls", "stream_down"})
"""Failure reasons that mean the target could not be reached at all (``stream_down``: a
reflect or import probe whose stream watcher cannot connect)."""


def _connect_failures(p: ProbeSignal) -> int:
    return sum(n for reason, n in p.reasons.items() if reason in CONNECTION_REASONS)


def _unreachable(p: ProbeSignal, cfg: RecommendConfig) -> bool:
    """The probe's last run and at least ``min_runs`` runs of its window failed to connect."""
    if p.last_success is not False or p.last_reason not in CONNECTION_REASONS:
        return False
    return _connect_failures(p) >= cfg.min_runs


def down_targets(signals: Signals, cfg: RecommendConfig) -> dict[str, list[ProbeSignal]]:
    """Targets none of whose judged probes can connect, with those probes."""
    by_target: dict[str, list[ProbeSignal]] = {}
    for p in probes_of(signals, cfg, None):
        if p.runs >= cfg.min_runs:
            by_target.setdefault(p.target, []).append(p)
    return {t: ps for t, ps in sorted(by_target.items()) if all(_unreachable(p, cfg) for p in ps)}


def without_targets(signals: Signals, targets: set[str]) -> Signals:
    """``signals`` without the probes and streams of ``targets`` and without SLOs."""
    if not targets:
        return signals
    return dataclasses.replace(
        signals,
        probes={n: p for n, p in signals.probes.items() if p.target not in targets},
        streams={n: s for n, s in signals.streams.items() if s.target not in targets},
        slos={},
    )


def assess_target_down(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """One fact per target with judged probes: ENTER while none of them can connect."""
    down = down_targets(signals, cfg)
    facts: list[Fact] = []
    unknown = any(p.runs < cfg.min_runs for p in probes_of(signals, cfg, None))
    targets = sorted({p.target for p in probes_of(signals, cfg, None) if p.runs >= cfg.min_runs})
    for target in targets:
        probes = down.get(target)
        if probes is None:
            text = f"target {target!r} answers"
            facts.append(Fact(f"target {target} unreachable", 0.0, 1.0, Level.OK, text))
            continue
        runs = sum(p.runs for p in probes)
        share = sum(_connect_failures(p) for p in probes) / runs
        reasons = sorted({p.last_reason or "" for p in probes})
        text = (
            f"target {target!r} unreachable: all {len(probes)} of its probes fail to connect "
            f"({', '.join(reasons)})"
        )
        detail = (
            f"{pct(share)} of {runs} runs in the last {format_duration(cfg.window)} could not "
            f"connect; probes {', '.join(p.name for p in probes)}"
        )
        facts.append(Fact(f"target {target} unreachable", share, 0.5, Level.ENTER, text, detail))
    return Assessment(tuple(facts), Severity.SEV1, unknown)


def suppressed_fact(scenario: str, title: str, targets: list[str]) -> Fact:
    """Evidence that ``scenario`` would have been raised but is a knock-on of a down target."""
    text = f"{title} ({scenario}) not raised: a knock-on of {', '.join(map(repr, targets))} down"
    return Fact(f"suppressed {scenario}", 1.0, 1.0, Level.ENTER, text)


def assess_health_failing(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """Plain http probes failing (429 answers excluded) at ``probe_failure_ratio`` or more."""
    facts: list[Fact] = []
    unknown = False
    enter = cfg.probe_failure_ratio
    for p in probes_of(signals, cfg, "http"):
        if p.runs < cfg.min_runs:
            unknown = True
            continue
        failed = p.failures - p.reasons.get("rate_limited", 0)
        ratio = failed / p.runs
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(p.reasons.items()) if n)
        facts.append(
            fact(
                f"probe {p.name} failure_ratio",
                f"probe {p.name!r} failure ratio",
                ratio,
                grade(ratio, enter, enter / 2, strict=False),
                enter=enter,
                exit_below=enter / 2,
                show=pct,
                op=">=",
                detail=f"{failed}/{p.runs} runs failed ({reasons}); target {p.target}",
            )
        )
    return Assessment(tuple(facts), Severity(cfg.probe_failing_severity), unknown)
