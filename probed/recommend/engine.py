"""The recommendation engine: which degraded-mode playbook the operator should apply now.

Pure: no I/O, no asyncio, no clock reads. Time is ``Signals.now``; the daemon
calls ``RecommendationEngine.evaluate`` every ``[recommend] evaluate_every``
with a fresh ``Signals`` and hands the returned ``Transition`` objects to the
logs and the alerting tasks.

Scenarios (the ids are the bounded ``scenario`` metric label, ``SCENARIOS``)::

    sse_degraded    A  stream lag, stream down, reflect probes failing  (Sev-2, Sev-1 all dark)
    backlog         B  import jobs past deadline/stalled, queue depth   (Sev-2)
    rate_limited    C  share of runs answered 429                       (Sev-3, Sev-2 at >= 50 %)
    login_degraded  D  login probes failing or slow                     (Sev-2, Sev-1 at >= 50 %)
    ai_errors       E  fixture (AI) probes failing                      (Sev-2)
    fast_burn       F  an SLO burning budget fast, confirmed by 5m      (Sev-2, Sev-1 overspent)

Lifecycle of one scenario::

    (none) --enter holds--> PENDING --enter held for enter_for--> ACTIVE
       ^                      |                                    |  ^
       +--enter stops holding-+            canary fails / recovers |  |
                                                                   v  |
    RESOLVED (forgotten) <--exit held for exit_for-- ACTIVE or INCONCLUSIVE

- Nothing is issued while PENDING; a pending scenario whose condition stops
  holding goes back to nothing, reported as a PENDING -> RESOLVED transition
  (there is nothing to resolve downstream: it never fired).
- If the canary fails when a scenario would become ACTIVE, it becomes
  INCONCLUSIVE instead (our own vantage point may be at fault); an ACTIVE one
  becomes INCONCLUSIVE while the canary fails. When the canary recovers, a
  scenario that had been ACTIVE is ACTIVE again; one that never was goes back
  to PENDING (the dwell starts over) or to nothing if its condition is gone.
- The exit condition is stricter than "not entering" (half the failure ratio
  or 429 share, lag below the threshold, streams connected), so a signal
  oscillating around the threshold keeps an active recommendation active
  instead of flapping. Fast burn is the exception, as in the SRE workbook: it
  clears as soon as the 5m window drops below the rate (held for ``exit_for``),
  since a 1h window keeps a short blip above 1x for an hour. A signal without
  enough data (fewer than ``min_runs`` runs) neither enters nor proves
  recovery; a signal that is gone from ``Signals`` altogether (probe removed)
  no longer holds anything up.
- Severity is refreshed on every evaluation: it escalates at once and is
  demoted only after the lower severity has held for ``exit_for`` (seed 003:
  "demote only after SLOs stable"). A severity change of an ACTIVE or
  INCONCLUSIVE recommendation is reported as a transition with ``old == new``.
- ``evaluate`` returns every change exactly once; changes caused by ``apply``
  (a scenario disabled by a reload resolves) are returned by the next
  ``evaluate``.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from probed.config import RecommendConfig
from probed.durations import format_duration
from probed.playbooks import SCENARIO_IDS, PlaybookConfig, merge, render
from probed.recommend import facts as assessing
from probed.recommend.assess_targets import (
    assess_health_failing,
    assess_target_down,
    down_targets,
    suppressed_fact,
    without_targets,
)
from probed.signals import (
    Evidence,
    Recommendation,
    RecommendationState,
    Severity,
    Signals,
)

__all__ = [
    "SCENARIOS",
    "SCENARIO_LIST",
    "RecommendationEngine",
    "Scenario",
    "Transition",
    "placeholders",
]

SNAPSHOT_VERSION: Final = 1

_PENDING: Final = RecommendationState.PENDING
_ACTIVE: Final = RecommendationState.ACTIVE
_INCONCLUSIVE: Final = RecommendationState.INCONCLUSIVE
_RESOLVED: Final = RecommendationState.RESOLVED

_RANK: Final = {Severity.SEV1: 1, Severity.SEV2: 2, Severity.SEV3: 3, Severity.SEV4: 4}
"""Lower is more severe."""

_BACKLOG_STUCK_RATIO: Final = 0.5
"""Share of import runs past their deadline or stalled that signals a backlog."""
_STUCK_REASONS: Final = ("deadline", "stalled")
_UJ_DOWN_RATIO: Final = 0.5
"""Seed 003 Sev-1: a user journey is unavailable at >= 50 % errors."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one scenario, for logs and alerting.

    ``old`` is None when the scenario appears (as PENDING). ``new`` is RESOLVED
    when it ends, whatever it was (from PENDING it never fired). ``old == new``
    marks a severity change of an issued recommendation. ``recommendation.state``
    is always ``new``.
    """

    scenario: str
    old: RecommendationState | None
    new: RecommendationState
    recommendation: Recommendation


# --- facts: what a scenario's rule saw (probed.assessing) -----------------------------------

_Level = assessing.Level
_Fact = assessing.Fact
_Assessment = assessing.Assessment
_pct = assessing.pct
_secs = assessing.secs
_num = assessing.num
_rate = assessing.rate
_grade = assessing.grade
_fact = assessing.fact
_probes = assessing.probes_of
_failures = assessing.failures_text
_failure_facts = assessing.failure_facts


# --- the rules, one per scenario ---------------------------------------------------------


def _assess_sse(signals: Signals, cfg: RecommendConfig) -> _Assessment:
    facts: list[_Fact] = []
    streams = sorted(signals.streams.values(), key=lambda s: s.name)
    for s in streams:
        down = s.disconnected_for
        signal = f"stream {s.name} disconnected_for"
        detail = f"target {s.target}; {s.events} events, {s.lost} lost in the window"
        if s.silent_for > down:
            # no event for longer than any disconnection explains (pings keep it open, or
            # it reconnects and pings again): as dark as a closed stream
            down, signal = s.silent_for, f"stream {s.name} no_event_for"
            if down >= cfg.stream_down_after:
                text = f"stream {s.name!r} has had no event for {_secs(down)} (pings only)"
                facts.append(_Fact(signal, down, cfg.stream_down_after, _Level.ENTER, text, detail))
                continue
        if down >= cfg.stream_down_after:
            facts.append(
                _Fact(
                    signal,
                    down,
                    cfg.stream_down_after,
                    _Level.ENTER,
                    f"stream {s.name!r} down for {_secs(down)} >= {_secs(cfg.stream_down_after)}",
                    detail,
                )
            )
        elif down > 0:
            text = f"stream {s.name!r} down for {_secs(down)}, reconnecting"
            facts.append(_Fact(signal, down, 0.0, _Level.HOLD, text, detail))
        else:
            facts.append(_Fact(signal, 0.0, 0.0, _Level.OK, f"stream {s.name!r} connected", detail))
        # One slow event is not a trend: the lag p95 needs min_runs events too.
        if s.lag_p95 is not None and math.isfinite(s.lag_p95) and s.events >= cfg.min_runs:
            lag = _fact(
                f"stream {s.name} lag_p95",
                f"stream {s.name!r} lag p95",
                s.lag_p95,
                _grade(s.lag_p95, cfg.stream_lag_p95, cfg.stream_lag_p95, strict=True),
                enter=cfg.stream_lag_p95,
                exit_below=cfg.stream_lag_p95,
                show=_secs,
                op=">",
                detail=detail,
            )
            facts.append(assessing.skewed(lag, s.clock_skew))
    reflect = _probes(signals, cfg, "reflect")
    probe_facts, unknown = _failure_facts(reflect, cfg, "reflect", cfg.reflect_failure_ratio)
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
    return _Assessment(tuple(facts), Severity.SEV1 if dark else Severity.SEV2, unknown)


def _assess_backlog(signals: Signals, cfg: RecommendConfig) -> _Assessment:
    facts: list[_Fact] = []
    unknown = False
    enter = _BACKLOG_STUCK_RATIO
    for p in _probes(signals, cfg, "import"):
        if p.runs < cfg.min_runs:
            unknown = True
            continue
        stuck = sum(p.reasons.get(reason, 0) for reason in _STUCK_REASONS)
        ratio = stuck / p.runs
        facts.append(
            _fact(
                f"probe {p.name} stuck_ratio",
                f"import probe {p.name!r} jobs past deadline or stalled",
                ratio,
                _grade(ratio, enter, enter / 2, strict=False),
                enter=enter,
                exit_below=enter / 2,
                show=_pct,
                op=">=",
                detail=_failures(p, cfg),
            )
        )
    depth = signals.queue_depth
    if depth is not None and math.isfinite(depth):
        # Back to normal is half the alert level (seed 004: "queue depth sustained < 100"
        # next to seed 001's "> 200" alert).
        limit = cfg.backlog_queue_max
        facts.append(
            _fact(
                "queue_depth",
                "queue depth",
                depth,
                _grade(depth, limit, limit / 2, strict=True),
                enter=limit,
                exit_below=limit / 2,
                show=_num,
                op=">",
            )
        )
    # Seed 003 Sev-2: "growing queue".
    return _Assessment(tuple(facts), Severity.SEV2, unknown)


def _assess_rate_limited(signals: Signals, cfg: RecommendConfig) -> _Assessment:
    probes = _probes(signals, cfg, None)
    runs = sum(p.runs for p in probes)
    limited = sum(p.rate_limited for p in probes)
    if runs < cfg.min_runs:
        return _Assessment((), Severity.SEV3, unknown=bool(probes))
    share = limited / runs
    enter = cfg.rate_limited_share
    worst = sorted((p for p in probes if p.rate_limited), key=lambda p: (-p.rate_limited, p.name))
    by_probe = ", ".join(f"{p.name} {p.rate_limited}/{p.runs}" for p in worst[:5])
    detail = (
        f"{limited}/{runs} runs answered 429 in the last {format_duration(cfg.window)}"
        + (f"; by probe: {by_probe}" if by_probe else "")
        + (f" (+{len(worst) - 5} more)" if len(worst) > 5 else "")
    )
    fact = _fact(
        "probes rate_limited_share",
        "429 share",
        share,
        _grade(share, enter, enter / 2, strict=False),
        enter=enter,
        exit_below=enter / 2,
        show=_pct,
        op=">=",
        detail=detail,
    )
    # Seed 003: "429 spikes" are Sev-3; when half the runs are refused the journeys behind
    # them are failing for users (the Sev-2 "UJ over target" row).
    severity = Severity.SEV2 if share >= _UJ_DOWN_RATIO else Severity.SEV3
    return _Assessment((fact,), severity)


def _assess_login(signals: Signals, cfg: RecommendConfig) -> _Assessment:
    probes = _probes(signals, cfg, "login")
    facts, unknown = _failure_facts(probes, cfg, "login", cfg.login_failure_ratio)
    for p in probes:
        if p.runs < cfg.min_runs or p.p95_seconds is None or not math.isfinite(p.p95_seconds):
            continue
        facts.append(
            _fact(
                f"probe {p.name} p95_seconds",
                f"login probe {p.name!r} p95",
                p.p95_seconds,
                _grade(p.p95_seconds, cfg.login_p95, cfg.login_p95, strict=True),
                enter=cfg.login_p95,
                exit_below=cfg.login_p95,
                show=_secs,
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
    return _Assessment(tuple(facts), Severity.SEV1 if down else Severity.SEV2, unknown)


def _assess_ai(signals: Signals, cfg: RecommendConfig) -> _Assessment:
    probes = _probes(signals, cfg, "fixture")
    facts, unknown = _failure_facts(probes, cfg, "fixture", cfg.ai_error_ratio, strict=True)
    # Seed 001 pages on it (AIErrorRateHigh); heuristics keep the journey up: Sev-2.
    return _Assessment(tuple(facts), Severity.SEV2, unknown)


def _burn(value: float | None) -> float | None:
    return value if value is not None and not math.isnan(value) else None


def _assess_fast_burn(signals: Signals, cfg: RecommendConfig) -> _Assessment:
    facts: list[_Fact] = []
    unknown = False
    overspent = False
    rate = cfg.fast_burn_rate
    for slo in sorted(signals.slos.values(), key=lambda s: s.name):
        long, short = _burn(slo.burn_rate.get("1h")), _burn(slo.burn_rate.get("5m"))
        if long is None or slo.events.get("1h", 0) < cfg.min_runs:
            unknown = True
            continue
        confirmed = short is not None and slo.events.get("5m", 0) >= cfg.min_runs and short > rate
        budget = slo.budget_remaining
        detail = (
            f"5m burn {'n/a' if short is None else _rate(short)}, "
            f"budget remaining {'n/a' if budget is None else _pct(budget)}; "
            f"{slo.sli} objective {slo.objective:.4g} over {format_duration(slo.window)}"
        )
        label = f"SLO {slo.name!r} 1h burn rate"
        # the SRE workbook's multi-window alert: both windows above the rate enters, and
        # the short window dropping below it clears (that is what the short window is for)
        if long > rate and confirmed:
            level = _Level.ENTER
            text = f"{label} {_rate(long)} > {_rate(rate)} (5m {_rate(short or 0.0)})"
        else:
            level = _Level.OK
            text = (
                f"{label} {_rate(long)}, 5m {'n/a' if short is None else _rate(short)}: "
                f"not both above {_rate(rate)}"
            )
        facts.append(_Fact(f"slo {slo.name} burn_rate_1h", long, rate, level, text, detail))
        if level is not _Level.OK and budget is not None and budget <= 0:
            overspent = True
    # Seed 003 Sev-2: "fast SLO burn (> 2x budget 1h)"; a budget already spent means the
    # objective is missed for the whole window: Sev-1.
    return _Assessment(tuple(facts), Severity.SEV1 if overspent else Severity.SEV2, unknown)


# --- the scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario id and the rule that assesses it."""

    id: str
    assess: Callable[[Signals, RecommendConfig], _Assessment]


SCENARIO_LIST: Final = tuple(
    Scenario(sid, assess)
    for sid, assess in (
        ("target_down", assess_target_down),
        ("health_failing", assess_health_failing),
        ("sse_degraded", _assess_sse),
        ("backlog", _assess_backlog),
        ("rate_limited", _assess_rate_limited),
        ("login_degraded", _assess_login),
        ("ai_errors", _assess_ai),
        ("fast_burn", _assess_fast_burn),
    )
)


def placeholders(cfg: RecommendConfig) -> dict[str, str]:
    """The values of ``probed.playbooks.PLACEHOLDERS`` under ``cfg``."""
    return {
        "exit_for": format_duration(cfg.exit_for),
        "probe_failure_ratio_exit": _pct(cfg.probe_failure_ratio / 2),
        "stream_lag_p95": _secs(cfg.stream_lag_p95),
        "backlog_queue_exit": _num(cfg.backlog_queue_max / 2),
        "backlog_stuck_exit": _pct(_BACKLOG_STUCK_RATIO / 2),
        "rate_limited_share_exit": _pct(cfg.rate_limited_share / 2),
        "login_failure_ratio_exit": _pct(cfg.login_failure_ratio / 2),
        "login_p95": _secs(cfg.login_p95),
        "ai_error_ratio_exit": _pct(cfg.ai_error_ratio / 2),
        "fast_burn_rate": _rate(cfg.fast_burn_rate),
    }


_BY_ID: Final = {s.id: s for s in SCENARIO_LIST}

SCENARIOS: Final[tuple[str, ...]] = SCENARIO_IDS
"""The scenario ids (``probed.playbooks`` order, ``SCENARIO_LIST`` runs them in the same one);
the bounded ``scenario`` label set."""


# --- the engine ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Episode:
    """One scenario from its first PENDING evaluation until it resolves."""

    state: RecommendationState
    entered_at: float
    """Start of the current continuous stretch of the enter condition (PENDING)."""
    since: float
    severity: Severity
    summary: str
    evidence: tuple[Evidence, ...] = ()
    activated: bool = False
    """Has been ACTIVE in this episode (issued)."""
    exit_since: float | None = None
    demote_since: float | None = None
    demote_to: Severity | None = None
    first_seen: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    """Why it is INCONCLUSIVE (or would be): ``canary_failing`` or ``clock_skew``."""


class RecommendationEngine:
    """Turns successive ``Signals`` into degraded-mode recommendations with hysteresis."""

    def __init__(self, cfg: RecommendConfig, playbooks: Iterable[PlaybookConfig] = ()) -> None:
        self._cfg = cfg
        self._playbooks = merge(playbooks)
        self._episodes: dict[str, _Episode] = {}
        self._queued: list[Transition] = []

    # public API

    def evaluate(self, signals: Signals) -> list[Transition]:
        """Update every enabled scenario from ``signals``; return the changes, once each."""
        out, self._queued = self._queued, []
        cfg = self._cfg
        disabled = set(cfg.disabled)
        # cause before symptoms: the other rules do not see a target that cannot be reached
        down = set() if "target_down" in disabled else set(down_targets(signals, cfg))
        visible = without_targets(signals, down)
        suppressed: list[_Fact] = []
        assessments: dict[str, _Assessment] = {}
        for scenario in SCENARIO_LIST:
            if scenario.id in disabled or scenario.id == "target_down":
                continue
            assessments[scenario.id] = assessment = scenario.assess(visible, cfg)
            if down and not assessment.enter and scenario.assess(signals, cfg).enter:
                title = self._playbooks[scenario.id].title
                suppressed.append(suppressed_fact(scenario.id, title, sorted(down)))
        if "target_down" not in disabled:
            cause = assess_target_down(signals, cfg)
            if cause.enter:
                cause = replace(cause, facts=cause.facts + tuple(suppressed))
            assessments["target_down"] = cause
        knock_ons = {f.signal.removeprefix("suppressed ") for f in suppressed}
        for scenario in SCENARIO_LIST:
            if scenario.id not in assessments:
                continue
            if (override := self._playbooks[scenario.id].severity) is not None:
                assessments[scenario.id] = replace(assessments[scenario.id], severity=override)
            ep = self._episodes.get(scenario.id)
            if scenario.id in knock_ons and ep is not None:
                # raised before the target was seen down: withdrawn, target_down covers it
                transition = self._resolve(scenario, ep, assessments[scenario.id], signals.now)
                out.append(_withdrawn(transition, sorted(down)))
                continue
            out += self._step(scenario, assessments[scenario.id], signals)
        return out

    def current(self) -> list[Recommendation]:
        """Pending, active and inconclusive recommendations, most severe first, then by id."""
        recs = [self._recommendation(sid, ep) for sid, ep in self._episodes.items()]
        return sorted(recs, key=lambda r: (_RANK[r.severity], r.scenario))

    def apply(self, cfg: RecommendConfig, playbooks: Iterable[PlaybookConfig] = ()) -> None:
        """Take a reloaded configuration; scenarios still enabled keep their state.

        A scenario disabled now is dropped; the next ``evaluate`` reports it RESOLVED.
        Playbook text applies at once; a changed severity override at the next ``evaluate``.
        """
        self._cfg = cfg
        self._playbooks = merge(playbooks)
        disabled = set(cfg.disabled)
        for sid in [sid for sid in self._episodes if sid in disabled]:
            ep = self._episodes.pop(sid)
            rec = replace(
                self._recommendation(sid, ep),
                state=_RESOLVED,
                summary=f"{self._playbooks[sid].title}: scenario disabled by configuration",
            )
            self._queued.append(Transition(sid, ep.state, _RESOLVED, rec))

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-compatible data, for ``restore`` after a restart."""
        return {
            "version": SNAPSHOT_VERSION,
            "scenarios": {sid: _dump(ep) for sid, ep in sorted(self._episodes.items())},
        }

    def restore(self, data: Mapping[str, Any]) -> list[str]:
        """Load a ``snapshot``; return the problems found (never raises).

        Valid scenario entries replace the current state; invalid ones are dropped
        and reported. If ``data`` is not a snapshot at all, the state is unchanged.
        """
        where = "recommendation state"
        if not isinstance(data, Mapping):
            return [f"{where}: expected a mapping, got {reprlib.repr(data)}; ignored"]
        version = data.get("version")
        if type(version) is not int or version != SNAPSHOT_VERSION:
            return [
                f"{where}: unsupported version {reprlib.repr(version)} "
                f"(expected {SNAPSHOT_VERSION}); ignored"
            ]
        scenarios = data.get("scenarios")
        if not isinstance(scenarios, Mapping):
            return [f"{where}: 'scenarios' must be a mapping, got {reprlib.repr(scenarios)}"]
        problems: list[str] = []
        episodes: dict[str, _Episode] = {}
        disabled = set(self._cfg.disabled)
        for sid, raw in scenarios.items():
            if sid not in _BY_ID:
                problems.append(f"{where}: unknown scenario {reprlib.repr(sid)}; dropped")
                continue
            if sid in disabled:
                problems.append(f"{where}: scenario {sid!r} is disabled; its state dropped")
                continue
            try:
                episodes[sid] = _load(raw)
            except _BadState as exc:
                problems.append(f"{where}: scenario {sid!r}: {exc}; dropped")
        self._episodes = episodes
        return problems

    # the state machine

    def _step(self, sc: Scenario, a: _Assessment, signals: Signals) -> list[Transition]:
        # a failing canary or a condition resting on suspect facts alone: inconclusive
        why = "canary_failing" if signals.canary_failing else a.suspect
        now, canary = signals.now, why is not None
        cfg = self._cfg
        out: list[Transition] = []
        ep = self._episodes.get(sc.id)
        if ep is None:
            if not a.enter:
                return out
            ep = _Episode(_PENDING, now, now, a.severity, summary="", reason=why)
            self._episodes[sc.id] = ep
            self._refresh(sc, ep, a, now)
            out.append(self._transition(sc.id, None, ep))
        ep.reason = why
        if ep.state is _PENDING:
            if not a.enter:
                return [*out, self._resolve(sc, ep, a, now)]
            ep.severity = a.severity
            if now - ep.entered_at >= cfg.enter_for:
                ep.since, ep.exit_since = now, None
                ep.state = _INCONCLUSIVE if canary else _ACTIVE
                ep.activated = not canary
                self._refresh(sc, ep, a, now)
                out.append(self._transition(sc.id, _PENDING, ep))
            else:
                self._refresh(sc, ep, a, now)
            return out
        # ACTIVE or INCONCLUSIVE: the exit clock runs whatever the canary says.
        if not a.exit:
            ep.exit_since = None
        elif ep.exit_since is None:
            ep.exit_since = now
        if ep.exit_since is not None and now - ep.exit_since >= cfg.exit_for:
            return [*out, self._resolve(sc, ep, a, now)]
        old = ep.state
        changed = self._reseverity(ep, a.severity, now)
        if old is _ACTIVE and canary:
            ep.state = _INCONCLUSIVE
        elif old is _INCONCLUSIVE and not canary:
            if ep.activated:
                ep.state = _ACTIVE
            elif a.enter:
                # Never issued: the dwell starts over on trustworthy data.
                ep.state, ep.entered_at, ep.since, ep.exit_since = _PENDING, now, now, None
                ep.severity, ep.demote_since, ep.demote_to = a.severity, None, None
            else:
                return [*out, self._resolve(sc, ep, a, now)]
        self._refresh(sc, ep, a, now)
        if ep.state is not old or changed:
            out.append(self._transition(sc.id, old, ep))
        return out

    def _reseverity(self, ep: _Episode, computed: Severity, now: float) -> bool:
        """Escalate at once, demote after ``exit_for`` of lower severity; True if changed."""
        if _RANK[computed] < _RANK[ep.severity]:
            ep.severity, ep.demote_since, ep.demote_to = computed, None, None
            return True
        if computed is ep.severity:
            ep.demote_since = ep.demote_to = None
            return False
        if ep.demote_since is None or ep.demote_to is None:
            ep.demote_since, ep.demote_to = now, computed
        elif _RANK[computed] < _RANK[ep.demote_to]:
            ep.demote_to = computed
        if now - ep.demote_since >= self._cfg.exit_for:
            ep.severity, ep.demote_since, ep.demote_to = ep.demote_to, None, None
            return True
        return False

    def _refresh(self, sc: Scenario, ep: _Episode, a: _Assessment, now: float) -> None:
        """Record first sightings and rebuild the evidence and summary from ``a``."""
        for f in a.facts:
            if f.level is not _Level.OK:
                ep.first_seen.setdefault(f.signal, now)
        chosen = (
            [f for f in a.facts if f.level is _Level.ENTER]
            or [f for f in a.facts if f.level is _Level.HOLD]
            or [f for f in a.facts if f.signal in ep.first_seen]
        )
        ep.evidence = tuple(
            Evidence(
                signal=f.signal,
                value=f.value,
                threshold=f.threshold,
                since=ep.first_seen.get(f.signal, now),
                detail=f"{f.text}; {f.detail}" if f.detail else f.text,
            )
            for f in chosen
        )
        body = "; ".join(f.text for f in chosen[:2])
        if len(chosen) > 2:
            body += f" (+{len(chosen) - 2} more)"
        title = self._playbooks[sc.id].title
        summary = f"{title}: {body}" if body else title
        if ep.state is _INCONCLUSIVE:
            summary += assessing.INCONCLUSIVE_NOTES[ep.reason or "canary_failing"]
        ep.summary = summary

    def _resolve(self, sc: Scenario, ep: _Episode, a: _Assessment, now: float) -> Transition:
        """Forget the episode; the transition carries its last recommendation as RESOLVED."""
        del self._episodes[sc.id]
        old = ep.state
        self._refresh(sc, ep, a, now)
        ep.state = _RESOLVED
        return self._transition(sc.id, old, ep)

    def _transition(self, sid: str, old: RecommendationState | None, ep: _Episode) -> Transition:
        return Transition(sid, old, ep.state, self._recommendation(sid, ep))

    def _recommendation(self, sid: str, ep: _Episode) -> Recommendation:
        pb, cfg = self._playbooks[sid], self._cfg
        values = placeholders(cfg)
        return Recommendation(
            scenario=sid,
            title=pb.title,
            severity=ep.severity,
            state=ep.state,
            since=ep.since,
            evidence=ep.evidence,
            actions=tuple(render(a, values) for a in pb.actions),
            rollback=render(pb.rollback, values),
            runbook_url=pb.runbook_url or f"{cfg.runbook_base_url}#{sid}",
            summary=ep.summary,
            inconclusive_reason=ep.reason if ep.state is _INCONCLUSIVE else None,
        )


def _withdrawn(transition: Transition, targets: list[str]) -> Transition:
    """``transition`` (to RESOLVED) saying it was withdrawn as a knock-on of a down target."""
    rec = transition.recommendation
    note = f" [withdrawn: a knock-on of target {', '.join(map(repr, targets))} down]"
    return replace(transition, recommendation=replace(rec, summary=rec.summary + note))


# --- persistence -----------------------------------------------------------------------------


class _BadState(ValueError):
    """A saved scenario entry that cannot be loaded."""


def _dump(ep: _Episode) -> dict[str, Any]:
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


def _load(raw: Any) -> _Episode:
    if not isinstance(raw, Mapping):
        raise _BadState(f"expected a mapping, got {reprlib.repr(raw)}")
    state_text = _text(_get(raw, "state"), "state")
    states = {s.value: s for s in (_PENDING, _ACTIVE, _INCONCLUSIVE)}
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
    return _Episode(
        state=state,
        entered_at=_number(_get(raw, "entered_at"), "entered_at"),
        since=_number(_get(raw, "since"), "since"),
        severity=_severity(_get(raw, "severity"), "severity"),
        summary=_text(_get(raw, "summary"), "summary"),
        evidence=tuple(evidence),
        # ACTIVE means issued; PENDING means not (yet) issued, whatever the file says.
        activated=state is _ACTIVE or (state is _INCONCLUSIVE and activated),
        exit_since=_optional_number(_get(raw, "exit_since"), "exit_since"),
        demote_since=demote_since,
        demote_to=demote_to,
        first_seen=first_seen,
        reason=raw["reason"] if isinstance(raw.get("reason"), str) else None,
    )
