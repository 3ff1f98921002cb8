"""Rules about symptoms users see: live updates, imports, 429s, login, the AI service, SLO burn.

One function per scenario, each turning ``Signals`` into an ``Assessment`` (the live-updates
rule in steps, ``probed.steps``)::

    sse_degraded    stream lag, stream down, reflect probes failing  (Sev-2, Sev-1 all dark)
    backlog         import jobs past deadline/stalled, queue depth   (Sev-2)
    rate_limited    share of runs answered 429                       (Sev-3, Sev-2 at >= 50 %)
    login_degraded  login probes failing or slow                     (Sev-2, Sev-1 at >= 50 %)
    ai_errors       fixture (AI) probes failing                      (Sev-2)
    fast_burn       an SLO burning budget fast, confirmed by 5m      (Sev-2, Sev-1 overspent)

The exit condition is stricter than "not entering" (half the failure ratio or
429 share, lag below the threshold, streams connected); fast burn clears as
soon as the 5m window drops below the rate, as in the SRE workbook.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import math
from typing import Final

from probed.config import RecommendConfig
from probed.durations import format_duration
from probed.recommend.facts import (
    Assessment,
    Fact,
    Level,
    fact,
    failure_facts,
    failures_text,
    grade,
    num,
    pct,
    probes_of,
    rate,
    secs,
    skewed,
)
from probed.signals import Severity, Signals
from probed.steps import ITEMS_PER_STEP, Steps

__all__ = [
    "BACKLOG_STUCK_RATIO",
    "assess_ai",
    "assess_backlog",
    "assess_fast_burn",
    "assess_login",
    "assess_rate_limited",
    "assess_sse",
]

BACKLOG_STUCK_RATIO: Final = 0.5
"""Share of import runs past their deadline or stalled that signals a backlog."""
_STUCK_REASONS: Final = ("deadline", "stalled")
_UJ_DOWN_RATIO: Final = 0.5
"""Seed 003 Sev-1: a user journey is unavailable at >= 50 % errors."""


def assess_sse(signals: Signals, cfg: RecommendConfig) -> Steps[Assessment]:
    """Streams down, silent or lagging and reflect probes failing; Sev-1 when all are dark.

    In steps of ``ITEMS_PER_STEP`` streams: a fact or two of each of 500 streams held the
    loop for milliseconds in one go."""
    facts: list[Fact] = []
    streams = sorted(signals.streams.values(), key=lambda s: s.name)
    for i, s in enumerate(streams):
        if i and i % ITEMS_PER_STEP == 0:
            yield
        down = s.disconnected_for
        signal = f"stream {s.name} disconnected_for"
        detail = f"target {s.target}; {s.events} events, {s.lost} lost in the window"
        if s.silent_for > down:
            # no event for longer than any disconnection explains (pings keep it open, or
            # it reconnects and pings again): as dark as a closed stream
            down, signal = s.silent_for, f"stream {s.name} no_event_for"
            if down >= cfg.stream_down_after:
                text = f"stream {s.name!r} has had no event for {secs(down)} (pings only)"
                facts.append(Fact(signal, down, cfg.stream_down_after, Level.ENTER, text, detail))
                continue
        if down >= cfg.stream_down_after:
            facts.append(
                Fact(
                    signal,
                    down,
                    cfg.stream_down_after,
                    Level.ENTER,
                    f"stream {s.name!r} down for {secs(down)} >= {secs(cfg.stream_down_after)}",
                    detail,
                )
            )
        elif down > 0:
            text = f"stream {s.name!r} down for {secs(down)}, reconnecting"
            facts.append(Fact(signal, down, 0.0, Level.HOLD, text, detail))
        else:
            facts.append(Fact(signal, 0.0, 0.0, Level.OK, f"stream {s.name!r} connected", detail))
        # One slow event is not a trend: the lag p95 needs min_runs events too.
        if s.lag_p95 is not None and math.isfinite(s.lag_p95) and s.events >= cfg.min_runs:
            lag = fact(
                f"stream {s.name} lag_p95",
                f"stream {s.name!r} lag p95",
                s.lag_p95,
                grade(s.lag_p95, cfg.stream_lag_p95, cfg.stream_lag_p95, strict=True),
                enter=cfg.stream_lag_p95,
                exit_below=cfg.stream_lag_p95,
                show=secs,
                op=">",
                detail=detail,
            )
            facts.append(skewed(lag, s.clock_skew))
    reflect = probes_of(signals, cfg, "reflect")
    probe_facts, unknown = failure_facts(reflect, cfg, "reflect", cfg.reflect_failure_ratio)
    facts += probe_facts
    # Seed 003 makes "UJ unavailable" and "hard down" Sev-1 and "UJ over target" Sev-2. Late
    # or missing live updates are a degradation clients can work around by polling (Sev-2);
    # every stream down AND every reflect probe failing means users get no live update at
    # all, the live-update journey is unavailable: Sev-1.
    qualified = [p for p in reflect if p.runs >= cfg.min_runs]
    dark = (
        bool(streams)
        and all(max(s.disconnected_for, s.silent_for) >= cfg.stream_down_after for s in streams)
        and bool(qualified)
        and all(p.failures >= p.runs for p in qualified)
    )
    return Assessment(tuple(facts), Severity.SEV1 if dark else Severity.SEV2, unknown)


def assess_backlog(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """Import jobs past their deadline or stalled, and the queue depth."""
    facts: list[Fact] = []
    unknown = False
    enter = BACKLOG_STUCK_RATIO
    for p in probes_of(signals, cfg, "import"):
        if p.runs < cfg.min_runs:
            unknown = True
            continue
        stuck = sum(p.reasons.get(reason, 0) for reason in _STUCK_REASONS)
        ratio = stuck / p.runs
        facts.append(
            fact(
                f"probe {p.name} stuck_ratio",
                f"import probe {p.name!r} jobs past deadline or stalled",
                ratio,
                grade(ratio, enter, enter / 2, strict=False),
                enter=enter,
                exit_below=enter / 2,
                show=pct,
                op=">=",
                detail=failures_text(p, cfg),
            )
        )
    depth = signals.queue_depth
    if depth is not None and math.isfinite(depth):
        # Back to normal is half the alert level (seed 004: "queue depth sustained < 100"
        # next to seed 001's "> 200" alert).
        limit = cfg.backlog_queue_max
        facts.append(
            fact(
                "queue_depth",
                "queue depth",
                depth,
                grade(depth, limit, limit / 2, strict=True),
                enter=limit,
                exit_below=limit / 2,
                show=num,
                op=">",
            )
        )
    # Seed 003 Sev-2: "growing queue".
    return Assessment(tuple(facts), Severity.SEV2, unknown)


def assess_rate_limited(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """The share of all probe runs answered 429; Sev-2 from half of them."""
    probes = probes_of(signals, cfg, None)
    runs = sum(p.runs for p in probes)
    limited = sum(p.rate_limited for p in probes)
    if runs < cfg.min_runs:
        return Assessment((), Severity.SEV3, unknown=bool(probes))
    share = limited / runs
    enter = cfg.rate_limited_share
    worst = sorted((p for p in probes if p.rate_limited), key=lambda p: (-p.rate_limited, p.name))
    by_probe = ", ".join(f"{p.name} {p.rate_limited}/{p.runs}" for p in worst[:5])
    detail = (
        f"{limited}/{runs} runs answered 429 in the last {format_duration(cfg.window)}"
        + (f"; by probe: {by_probe}" if by_probe else "")
        + (f" (+{len(worst) - 5} more)" if len(worst) > 5 else "")
    )
    share_fact = fact(
        "probes rate_limited_share",
        "429 share",
        share,
        grade(share, enter, enter / 2, strict=False),
        enter=enter,
        exit_below=enter / 2,
        show=pct,
        op=">=",
        detail=detail,
    )
    # Seed 003: "429 spikes" are Sev-3; when half the runs are refused the journeys behind
    # them are failing for users (the Sev-2 "UJ over target" row).
    severity = Severity.SEV2 if share >= _UJ_DOWN_RATIO else Severity.SEV3
    return Assessment((share_fact,), severity)


def assess_login(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """Login probes failing or slow; Sev-1 when one fails half its runs or more (slow aside)."""
    probes = probes_of(signals, cfg, "login")
    facts, unknown = failure_facts(probes, cfg, "login", cfg.login_failure_ratio)
    for p in probes:
        if p.runs < cfg.min_runs or p.p95_seconds is None or not math.isfinite(p.p95_seconds):
            continue
        facts.append(
            fact(
                f"probe {p.name} p95_seconds",
                f"login probe {p.name!r} p95",
                p.p95_seconds,
                grade(p.p95_seconds, cfg.login_p95, cfg.login_p95, strict=True),
                enter=cfg.login_p95,
                exit_below=cfg.login_p95,
                show=secs,
                op=">",
                detail=f"{p.runs} runs in the last {format_duration(cfg.window)}; "
                f"target {p.target}",
            )
        )
    # Sev-1 is the journey unavailable (>= 50 % errors); a failing login below that, or a
    # slow one however slow (it works: reason ``slow`` is not an error), is the Sev-2
    # "journey over its target".
    down = any(
        p.runs >= cfg.min_runs
        and (p.failures - p.reasons.get("slow", 0)) / p.runs >= _UJ_DOWN_RATIO
        for p in probes
    )
    return Assessment(tuple(facts), Severity.SEV1 if down else Severity.SEV2, unknown)


def assess_ai(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """Fixture (AI) probes failing."""
    probes = probes_of(signals, cfg, "fixture")
    facts, unknown = failure_facts(probes, cfg, "fixture", cfg.ai_error_ratio, strict=True)
    # Seed 001 pages on it (AIErrorRateHigh); heuristics keep the journey up: Sev-2.
    return Assessment(tuple(facts), Severity.SEV2, unknown)


def _burn(value: float | None) -> float | None:
    return value if value is not None and not math.isnan(value) else None


def assess_fast_burn(signals: Signals, cfg: RecommendConfig) -> Assessment:
    """SLOs burning budget fast over 1h, confirmed by 5m; Sev-1 once overspent."""
    facts: list[Fact] = []
    unknown = False
    overspent = False
    limit = cfg.fast_burn_rate
    for slo in sorted(signals.slos.values(), key=lambda s: s.name):
        long, short = _burn(slo.burn_rate.get("1h")), _burn(slo.burn_rate.get("5m"))
        if long is None or slo.events.get("1h", 0) < cfg.min_runs:
            unknown = True
            continue
        confirmed = short is not None and slo.events.get("5m", 0) >= cfg.min_runs and short > limit
        budget = slo.budget_remaining
        detail = (
            f"5m burn {'n/a' if short is None else rate(short)}, "
            f"budget remaining {'n/a' if budget is None else pct(budget)}; "
            f"{slo.sli} objective {slo.objective:.4g} over {format_duration(slo.window)}"
        )
        label = f"SLO {slo.name!r} 1h burn rate"
        # the SRE workbook's multi-window alert: both windows above the rate enters, and
        # the short window dropping below it clears (that is what the short window is for)
        if long > limit and confirmed:
            level = Level.ENTER
            text = f"{label} {rate(long)} > {rate(limit)} (5m {rate(short or 0.0)})"
        else:
            level = Level.OK
            text = (
                f"{label} {rate(long)}, 5m {'n/a' if short is None else rate(short)}: "
                f"not both above {rate(limit)}"
            )
        facts.append(Fact(f"slo {slo.name} burn_rate_1h", long, limit, level, text, detail))
        if level is not Level.OK and budget is not None and budget <= 0:
            overspent = True
    # Seed 003 Sev-2: "fast SLO burn (> 2x budget 1h)"; a budget already spent means the
    # objective is missed for the whole window: Sev-1.
    return Assessment(tuple(facts), Severity.SEV1 if overspent else Severity.SEV2, unknown)
