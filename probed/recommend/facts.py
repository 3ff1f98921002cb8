"""What a recommendation rule sees: graded facts and the assessment they add up to.

Shared by the rules of the scenarios (``assess_targets``, ``assess_symptoms``).
Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import replace

from probed.config import RecommendConfig
from probed.durations import format_duration
from probed.records import record
from probed.signals import ProbeSignal, Severity, Signals

__all__ = [
    "INCONCLUSIVE_NOTES",
    "Assessment",
    "Fact",
    "Level",
    "fact",
    "failure_facts",
    "failures_text",
    "grade",
    "num",
    "pct",
    "probes_of",
    "rate",
    "secs",
    "skewed",
]

INCONCLUSIVE_NOTES = {
    "canary_failing": " [inconclusive: the canary fails too, the prober may be at fault]",
    "clock_skew": " [inconclusive: clock_skew, lags not corrected for the target's clock offset]",
}
"""What an INCONCLUSIVE recommendation's summary adds, by its reason."""


class Level(enum.IntEnum):
    OK = 0
    """Within the exit bound."""
    HOLD = 1
    """Below the enter threshold but not yet within the exit bound."""
    ENTER = 2
    """Beyond the enter threshold."""


@record
class Fact:
    """One measured signal of a scenario, graded against its thresholds."""

    signal: str
    value: float
    threshold: float
    """The enter threshold for ENTER facts, the exit bound otherwise."""
    level: Level
    text: str
    """Short human form for summaries: ``stream 'events' lag p95 7.2s > 5.0s``."""
    detail: str = ""
    suspect: str | None = None
    """Why this fact cannot be trusted (``clock_skew``): alone it makes a scenario inconclusive."""


@record
class Assessment:
    """A rule's verdict on one ``Signals`` snapshot."""

    facts: tuple[Fact, ...]
    severity: Severity
    unknown: bool = False
    """Some relevant signal exists but has too little data to judge."""

    @property
    def enter(self) -> bool:
        return any(f.level is Level.ENTER for f in self.facts)

    @property
    def suspect(self) -> str | None:
        """Why the enter condition cannot be trusted: every ENTER fact is suspect (the reason)."""
        entering = [f for f in self.facts if f.level is Level.ENTER]
        if entering and all(f.suspect for f in entering):
            return entering[0].suspect
        return None

    @property
    def exit(self) -> bool:
        if any(f.level is not Level.OK for f in self.facts):
            return False
        # Recovery needs evidence, unless nothing is left to measure at all.
        return bool(self.facts) or not self.unknown


def pct(value: float) -> str:
    return f"{value * 100:.3g}%"


def secs(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def num(value: float) -> str:
    return f"{value:g}"


def rate(value: float) -> str:
    return f"{value:.3g}x"


def grade(value: float, enter: float, exit_below: float, *, strict: bool) -> Level:
    """ENTER beyond ``enter`` (``>`` if strict, else ``>=``), OK below ``exit_below``."""
    if value > enter or (not strict and value >= enter):
        return Level.ENTER
    if value >= exit_below:
        return Level.HOLD
    return Level.OK


def fact(
    signal: str,
    label: str,
    value: float,
    level: Level,
    *,
    enter: float,
    exit_below: float,
    show: Callable[[float], str],
    op: str,
    detail: str = "",
) -> Fact:
    if level is Level.ENTER:
        text, threshold = f"{label} {show(value)} {op} {show(enter)}", enter
    elif level is Level.HOLD:
        text, threshold = f"{label} {show(value)}, not yet below {show(exit_below)}", exit_below
    else:
        text, threshold = f"{label} {show(value)}, below {show(exit_below)}", exit_below
    return Fact(signal, float(value), float(threshold), level, text, detail)


def skewed(f: Fact, skew: float | None) -> Fact:
    """``f``, a lag fact, as suspect (``clock_skew``) if its lags carry an uncorrected offset."""
    if skew is None:
        return f
    text = f"{f.text} (not corrected for a clock offset of {skew:+.1f}s)"
    return replace(f, text=text, suspect="clock_skew")


def probes_of(signals: Signals, cfg: RecommendConfig, kind: str | None) -> list[ProbeSignal]:
    """Probes of ``kind`` (all if None), sorted by name; canary probes are not the product."""
    canary = set(cfg.canary)
    return sorted(
        (
            p
            for p in signals.probes.values()
            if p.name not in canary and (kind is None or p.kind == kind)
        ),
        key=lambda p: p.name,
    )


def failures_text(p: ProbeSignal, cfg: RecommendConfig) -> str:
    """``7/20 runs failed in the last 5m (deadline 5, stalled 2); target demo``."""
    reasons = ", ".join(
        f"{reason} {count}"
        for reason, count in sorted(p.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        if count
    )
    why = f" ({reasons})" if reasons else ""
    return (
        f"{p.failures}/{p.runs} runs failed in the last {format_duration(cfg.window)}{why}; "
        f"target {p.target}"
    )


def failure_facts(
    probes: Sequence[ProbeSignal],
    cfg: RecommendConfig,
    what: str,
    enter: float,
    *,
    strict: bool = False,
) -> tuple[list[Fact], bool]:
    """Failure-ratio facts of ``probes`` (exit below half of ``enter``) and the unknown flag."""
    facts: list[Fact] = []
    unknown = False
    for p in probes:
        if p.runs < cfg.min_runs:
            unknown = True
            continue
        ratio = p.failure_ratio
        facts.append(
            fact(
                f"probe {p.name} failure_ratio",
                f"{what} probe {p.name!r} failure ratio",
                ratio,
                grade(ratio, enter, enter / 2, strict=strict),
                enter=enter,
                exit_below=enter / 2,
                show=pct,
                op=">" if strict else ">=",
                detail=failures_text(p, cfg),
            )
        )
    return facts, unknown
