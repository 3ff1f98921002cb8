"""The recommendation engine: enter/exit hysteresis, dwell, canary, severity and persistence."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probed.recommend as recommend_module
from probed.config import RecommendConfig
from probed.recommend import SCENARIOS, RecommendationEngine, Transition
from probed.signals import (
    ProbeSignal,
    Recommendation,
    RecommendationState,
    Severity,
    Signals,
    SloStatus,
    StreamSignal,
)

PENDING = RecommendationState.PENDING
ACTIVE = RecommendationState.ACTIVE
INCONCLUSIVE = RecommendationState.INCONCLUSIVE
RESOLVED = RecommendationState.RESOLVED

CFG = RecommendConfig()
T0 = 1_700_000_000.0
STEP = CFG.evaluate_every
ENTER_FOR = CFG.enter_for
EXIT_FOR = CFG.exit_for
RUNBOOKS = Path(__file__).resolve().parent.parent / "docs" / "runbooks.md"

Move = tuple[str, RecommendationState | None, RecommendationState]


# --- building signals -------------------------------------------------------------------------


def probe(
    name: str,
    kind: str,
    *,
    runs: int = 20,
    failures: int = 0,
    reasons: dict[str, int] | None = None,
    rate_limited: int = 0,
    p95: float | None = 0.1,
) -> ProbeSignal:
    """A probe's window: ``failures`` of ``runs`` failed (reason ``status`` unless given)."""
    if reasons is None:
        reasons = {"status": failures} if failures else {}
    return ProbeSignal(
        name=name,
        kind=kind,
        target="demo",
        runs=runs,
        failures=failures,
        reasons=reasons,
        rate_limited=rate_limited,
        p95_seconds=p95,
        last_success=failures < runs,
        last_success_at=T0 - 5,
    )


def stream(
    name: str = "events",
    *,
    down: float = 0.0,
    events: int = 100,
    lag: float | None = 0.5,
    silent: float = 0.0,
) -> StreamSignal:
    """A stream watcher's window; ``down`` seconds disconnected (0: connected), ``silent``
    seconds without an event past its event_timeout."""
    return StreamSignal(
        name=name,
        target="demo",
        connected=down == 0,
        disconnected_for=down,
        events=events,
        lag_p95=lag,
        lost=0,
        silent_for=silent,
    )


def slo(
    name: str = "login_availability",
    *,
    b1h: float | None,
    b5m: float | None,
    budget: float | None = 0.5,
    events: int = 1000,
) -> SloStatus:
    """An availability SLO with the given 1h and 5m burn rates."""
    return SloStatus(
        name=name,
        sli="availability",
        objective=0.999,
        window=30 * 86400.0,
        ratio={"5m": 0.99, "1h": 0.99},
        burn_rate={"5m": b5m, "1h": b1h},
        budget_remaining=budget,
        events={"5m": events, "1h": events},
    )


def http(limited: int, *, runs: int = 20, count: int = 5) -> tuple[ProbeSignal, ...]:
    """``count`` HTTP probes of ``runs`` runs each; ``limited`` of the first one's runs got 429."""
    return tuple(
        probe(
            f"api{i}",
            "http",
            runs=runs,
            failures=limited if i == 0 else 0,
            reasons={"rate_limited": limited} if i == 0 and limited else {},
            rate_limited=limited if i == 0 else 0,
        )
        for i in range(count)
    )


def login(failures: int, *, p95: float = 0.1, runs: int = 20, name: str = "login") -> ProbeSignal:
    """A login probe with ``failures`` of ``runs`` failed."""
    return probe(name, "login", runs=runs, failures=failures, p95=p95)


def reflect(failures: int, *, runs: int = 20) -> ProbeSignal:
    """A reflect probe whose events were lost in ``failures`` of ``runs`` runs."""
    return probe("reflect", "reflect", runs=runs, failures=failures, reasons={"lost": failures})


def imports(deadline: int, stalled: int = 0, status: int = 0) -> ProbeSignal:
    """An import probe of 20 runs failing by reason."""
    reasons = {k: v for k, v in (("deadline", deadline), ("stalled", stalled), ("status", status))}
    return probe("import", "import", failures=deadline + stalled + status, reasons=reasons)


def unreachable(failures: int, name: str = "jobs", *, runs: int = 20) -> ProbeSignal:
    """A probe of target demo whose last run and ``failures`` runs were refused."""
    failing = probe(name, "import", runs=runs, failures=failures,
                    reasons={"connect_refused": failures})  # fmt: skip
    return replace(failing, last_success=False, last_reason="connect_refused")


def fixture(failures: int) -> ProbeSignal:
    """A fixture (AI) probe with ``failures`` of 20 runs failed."""
    return probe("ai", "fixture", failures=failures, reasons={"output_mismatch": failures})


@dataclass(frozen=True)
class Shape:
    """What the daemon measured, without the time."""

    probes: tuple[ProbeSignal, ...] = ()
    streams: tuple[StreamSignal, ...] = ()
    slos: tuple[SloStatus, ...] = ()
    queue_depth: float | None = None

    def at(self, now: float, *, canary: bool = False) -> Signals:
        """These signals taken at ``now``."""
        return Signals(
            now=now,
            window=CFG.window,
            probes={p.name: p for p in self.probes},
            streams={s.name: s for s in self.streams},
            slos={s.name: s for s in self.slos},
            canary_failing=canary,
            queue_depth=self.queue_depth,
        )

    def __add__(self, other: Shape) -> Shape:
        """Both shapes' signals together."""
        depth = self.queue_depth if other.queue_depth is None else other.queue_depth
        return Shape(
            self.probes + other.probes,
            self.streams + other.streams,
            self.slos + other.slos,
            depth,
        )


def probes(*items: ProbeSignal) -> Shape:
    """A shape of probes only."""
    return Shape(probes=items)


# --- driving the engine -----------------------------------------------------------------------


def moves(transitions: list[Transition]) -> list[Move]:
    """The (scenario, old, new) of each transition."""
    return [(t.scenario, t.old, t.new) for t in transitions]


def run(
    engine: RecommendationEngine,
    shape: Shape,
    start: float,
    stop: float,
    *,
    canary: bool = False,
) -> list[Move]:
    """Evaluate ``shape`` every STEP seconds from ``start`` up to, not including, ``stop``."""
    out: list[Move] = []
    now = start
    while now < stop:
        out += moves(engine.evaluate(shape.at(now, canary=canary)))
        now += STEP
    return out


def rec_of(engine: RecommendationEngine, scenario: str) -> Recommendation:
    """The engine's one current recommendation for ``scenario``."""
    [rec] = [r for r in engine.current() if r.scenario == scenario]
    return rec


@dataclass(frozen=True)
class Case:
    """One way into a scenario, and the signals around its thresholds."""

    id: str
    scenario: str
    enter: Shape
    """Just beyond the enter threshold."""
    worse: Shape
    """Further beyond it, same severity."""
    below: Shape
    """Just below the enter threshold (does not enter)."""
    stuck: Shape
    """Neither enters nor satisfies the exit condition."""
    good: Shape
    """The exit condition holds."""
    evidence: tuple[str, float, float]
    """(signal, value, threshold) of the first evidence under ``enter``."""
    worse_value: float
    severity: Severity = Severity.SEV2


CASES = [
    Case(
        "sse-lag",
        "sse_degraded",
        enter=Shape(streams=(stream(lag=5.1),)),
        worse=Shape(streams=(stream(lag=8.0),)),
        below=Shape(streams=(stream(lag=4.9),)),
        stuck=Shape(streams=(stream(down=10.0, lag=4.0),)),
        good=Shape(streams=(stream(lag=1.0),)),
        evidence=("stream events lag_p95", 5.1, 5.0),
        worse_value=8.0,
    ),
    Case(
        "sse-down",
        "sse_degraded",
        enter=Shape(streams=(stream(down=60.0, events=0, lag=None),)),
        worse=Shape(streams=(stream(down=600.0, events=0, lag=None),)),
        below=Shape(streams=(stream(down=59.0, events=0, lag=None),)),
        stuck=Shape(streams=(stream(down=30.0, lag=0.5),)),
        good=Shape(streams=(stream(lag=0.5),)),
        evidence=("stream events disconnected_for", 60.0, 60.0),
        worse_value=600.0,
    ),
    Case(
        "sse-reflect",
        "sse_degraded",
        enter=probes(reflect(10)),
        worse=probes(reflect(15)),
        below=probes(reflect(9)),
        stuck=probes(reflect(6)),
        good=probes(reflect(4)),
        evidence=("probe reflect failure_ratio", 0.5, 0.5),
        worse_value=0.75,
    ),
    Case(
        "backlog-jobs",
        "backlog",
        enter=probes(imports(deadline=6, stalled=4)),
        worse=probes(imports(deadline=10, stalled=6)),
        below=probes(imports(deadline=5, stalled=4)),
        stuck=probes(imports(deadline=6)),
        good=probes(imports(deadline=4, status=5)),
        evidence=("probe import stuck_ratio", 0.5, 0.5),
        worse_value=0.8,
    ),
    Case(
        "backlog-queue",
        "backlog",
        enter=Shape(queue_depth=201.0),
        worse=Shape(queue_depth=500.0),
        below=Shape(queue_depth=200.0),
        stuck=Shape(queue_depth=150.0),
        good=Shape(queue_depth=99.0),
        evidence=("queue_depth", 201.0, 200.0),
        worse_value=500.0,
    ),
    Case(
        "rate-limited",
        "rate_limited",
        enter=probes(*http(5)),
        worse=probes(*http(9)),
        below=probes(*http(4)),
        stuck=probes(*http(3)),
        good=probes(*http(2)),
        evidence=("probes rate_limited_share", 0.05, 0.05),
        worse_value=0.09,
        severity=Severity.SEV3,
    ),
    Case(
        "login-failures",
        "login_degraded",
        enter=probes(login(4)),
        worse=probes(login(6)),
        below=probes(login(3)),
        stuck=probes(login(3)),
        good=probes(login(1)),
        evidence=("probe login failure_ratio", 0.2, 0.2),
        worse_value=0.3,
    ),
    Case(
        "login-slow",
        "login_degraded",
        enter=probes(login(0, p95=0.3)),
        worse=probes(login(0, p95=0.5)),
        below=probes(login(0, p95=0.24)),
        stuck=probes(login(3, p95=0.1)),
        good=probes(login(0, p95=0.2)),
        evidence=("probe login p95_seconds", 0.3, 0.25),
        worse_value=0.5,
    ),
    Case(
        "ai-errors",
        "ai_errors",
        enter=probes(fixture(2)),
        worse=probes(fixture(4)),
        below=probes(fixture(1)),
        stuck=probes(fixture(1)),
        good=probes(fixture(0)),
        evidence=("probe ai failure_ratio", 0.1, 0.05),
        worse_value=0.2,
    ),
    Case(
        "fast-burn",
        "fast_burn",
        enter=Shape(slos=(slo(b1h=2.5, b5m=3.0),)),
        worse=Shape(slos=(slo(b1h=5.0, b5m=6.0),)),
        below=Shape(slos=(slo(b1h=1.9, b5m=3.0),)),
        stuck=Shape(slos=(slo(b1h=3.0, b5m=3.0, events=1),)),  # too few runs to tell
        good=Shape(slos=(slo(b1h=2.8, b5m=0.0),)),  # a past blip: the 5m window recovered
        evidence=("slo login_availability burn_rate_1h", 2.5, 2.0),
        worse_value=5.0,
    ),
    Case(
        "target-down",
        "target_down",
        enter=probes(unreachable(10), unreachable(12, "jobs2")),
        worse=probes(unreachable(20), unreachable(20, "jobs2")),
        below=probes(unreachable(20), probe("jobs2", "import")),
        stuck=probes(unreachable(20, runs=1)),  # too few runs to tell
        good=probes(probe("jobs", "import"), probe("jobs2", "import")),
        evidence=("target demo unreachable", 22 / 40, 0.5),
        worse_value=1.0,
        severity=Severity.SEV1,
    ),
    Case(
        "health-failing",
        "health_failing",
        enter=probes(probe("readiness", "http", failures=10)),
        worse=probes(probe("readiness", "http", failures=16)),
        below=probes(probe("readiness", "http", failures=9)),
        stuck=probes(probe("readiness", "http", failures=6)),
        good=probes(probe("readiness", "http", failures=4)),
        evidence=("probe readiness failure_ratio", 0.5, 0.5),
        worse_value=0.8,
    ),
]
LOGIN, SSE_LAG, QUEUE = (
    next(c for c in CASES if c.id == i) for i in ("login-failures", "sse-lag", "backlog-queue")
)
BY_CASE = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


def activate(engine: RecommendationEngine, case: Case) -> float:
    """Hold ``case.enter`` until the scenario is ACTIVE; return the activation time."""
    assert [(case.scenario, None, PENDING)] == run(engine, case.enter, T0, T0 + ENTER_FOR)
    assert [(case.scenario, PENDING, ACTIVE)] == moves(
        engine.evaluate(case.enter.at(T0 + ENTER_FOR))
    )
    return T0 + ENTER_FOR


# --- every scenario: enter, hold, exit, no flap ------------------------------------------------


def test_scenarios_are_covered() -> None:
    """Every scenario has at least one case in the table."""
    assert set(SCENARIOS) == {c.scenario for c in CASES}


@BY_CASE
def test_enters_pending_then_active_after_enter_for(case: Case) -> None:
    """The condition makes the scenario PENDING at once and ACTIVE after enter_for, once each."""
    engine = RecommendationEngine(CFG)
    assert [(case.scenario, None, PENDING)] == moves(engine.evaluate(case.enter.at(T0)))
    pending = rec_of(engine, case.scenario)
    assert (PENDING, T0) == (pending.state, pending.since)
    assert [] == run(engine, case.enter, T0 + STEP, T0 + ENTER_FOR)
    [transition] = engine.evaluate(case.enter.at(T0 + ENTER_FOR))
    assert [(case.scenario, PENDING, ACTIVE)] == moves([transition])
    rec = transition.recommendation
    assert rec == rec_of(engine, case.scenario)
    assert (ACTIVE, T0 + ENTER_FOR, case.severity) == (rec.state, rec.since, rec.severity)
    first = rec.evidence[0]
    assert case.evidence == (first.signal, first.value, first.threshold)
    assert T0 == first.since
    assert f"{CFG.runbook_base_url}#{case.scenario}" == rec.runbook_url
    assert len(rec.actions) >= 3
    assert "5m" in rec.rollback
    assert rec.summary.startswith(f"{rec.title}: ")
    assert "\n" not in rec.summary
    assert [] == run(engine, case.enter, T0 + ENTER_FOR + STEP, T0 + 2 * EXIT_FOR)


@BY_CASE
def test_pending_is_dropped_when_the_condition_stops(case: Case) -> None:
    """A pending scenario whose condition stops holding ends before it was ever issued."""
    engine = RecommendationEngine(CFG)
    assert [(case.scenario, None, PENDING)] == run(engine, case.enter, T0, T0 + 30)
    assert [(case.scenario, PENDING, RESOLVED)] == moves(engine.evaluate(case.below.at(T0 + 30)))
    assert [] == engine.current()
    assert [] == run(engine, case.below, T0 + 40, T0 + 2 * EXIT_FOR)


@BY_CASE
def test_active_holds_and_refreshes_evidence(case: Case) -> None:
    """While the condition holds the recommendation stays ACTIVE with fresh numbers."""
    engine = RecommendationEngine(CFG)
    activated = activate(engine, case)
    assert [] == run(engine, case.worse, activated + STEP, activated + 3 * EXIT_FOR)
    rec = rec_of(engine, case.scenario)
    assert (ACTIVE, activated, case.severity) == (rec.state, rec.since, rec.severity)
    assert case.worse_value == pytest.approx(rec.evidence[0].value)
    assert T0 == rec.evidence[0].since


@BY_CASE
def test_resolves_only_after_exit_for_of_the_exit_condition(case: Case) -> None:
    """Only an uninterrupted exit_for of the exit condition resolves an active recommendation."""
    engine = RecommendationEngine(CFG)
    t = activate(engine, case)
    assert [] == run(engine, case.good, t + STEP, t + EXIT_FOR + STEP)
    assert [] == run(engine, case.stuck, t + EXIT_FOR + STEP, t + 3 * EXIT_FOR)
    back = t + 3 * EXIT_FOR
    assert [] == run(engine, case.good, back, back + EXIT_FOR)
    [transition] = engine.evaluate(case.good.at(back + EXIT_FOR))
    assert [(case.scenario, ACTIVE, RESOLVED)] == moves([transition])
    assert (RESOLVED, t) == (transition.recommendation.state, transition.recommendation.since)
    assert [] == engine.current()
    assert [] == run(engine, case.good, back + EXIT_FOR + STEP, back + 3 * EXIT_FOR)


@BY_CASE
def test_oscillating_signal_does_not_flap(case: Case) -> None:
    """A signal alternating just above and below the threshold never resolves once active."""
    engine = RecommendationEngine(CFG)
    t = activate(engine, case)
    for i in range(1, 200):
        shape = case.below if i % 2 else case.enter
        assert [] == moves(engine.evaluate(shape.at(t + i * STEP)))
    assert ACTIVE == rec_of(engine, case.scenario).state


@BY_CASE
def test_oscillating_signal_never_activates(case: Case) -> None:
    """A condition that never holds for enter_for in a row is never issued."""
    engine = RecommendationEngine(CFG)
    seen: list[Move] = []
    for i in range(200):
        shape = case.enter if i % 2 == 0 else case.below
        seen += moves(engine.evaluate(shape.at(T0 + i * STEP)))
    assert 0 == sum(1 for _, _, new in seen if new is ACTIVE)
    assert {(case.scenario, None, PENDING), (case.scenario, PENDING, RESOLVED)} == set(seen)


# --- not enough data ---------------------------------------------------------------------------


FEW = CFG.min_runs - 1
TOO_LITTLE = [
    pytest.param(probes(login(1, runs=1)), id="login-one-failed-run"),
    pytest.param(probes(login(FEW, runs=FEW, p95=9.0)), id="login-few-runs"),
    pytest.param(probes(reflect(1, runs=1)), id="reflect-one-run"),
    pytest.param(
        probes(probe("import", "import", runs=1, failures=1, reasons={"deadline": 1})),
        id="import-one-run",
    ),
    pytest.param(probes(probe("ai", "fixture", runs=FEW, failures=FEW)), id="fixture-few-runs"),
    pytest.param(probes(*http(1, runs=1, count=1)), id="one-429"),
    pytest.param(probes(*http(FEW, runs=FEW, count=1)), id="few-429s"),
    pytest.param(Shape(streams=(stream(events=FEW, lag=60.0),)), id="few-late-events"),
    pytest.param(Shape(slos=(slo(b1h=100.0, b5m=100.0, events=FEW),)), id="slo-few-events"),
    pytest.param(Shape(slos=(slo(b1h=10.0, b5m=1.5),)), id="slo-5m-not-confirming"),
    pytest.param(Shape(slos=(slo(b1h=None, b5m=None),)), id="slo-no-data"),
    pytest.param(Shape(streams=(stream(down=59.0, lag=None),)), id="stream-down-briefly"),
]


@pytest.mark.parametrize("shape", TOO_LITTLE)
def test_too_little_evidence_never_triggers(shape: Shape) -> None:
    """Fewer than min_runs runs (or a short window not confirming) never raise anything."""
    engine = RecommendationEngine(CFG)
    assert [] == run(engine, shape, T0, T0 + 3 * EXIT_FOR)
    assert [] == engine.current()


def test_thresholds_come_from_the_config() -> None:
    """The same signals trigger or not according to the configured thresholds."""
    lenient = RecommendConfig(login_failure_ratio=0.5, rate_limited_share=0.2)
    strict = RecommendConfig.model_validate({"min_runs": 200})
    shape = probes(login(6), *http(10))
    for cfg in (lenient, strict):
        assert [] == run(RecommendationEngine(cfg), shape, T0, T0 + EXIT_FOR)
    assert {("login_degraded", None, PENDING), ("rate_limited", None, PENDING)} == set(
        run(RecommendationEngine(CFG), shape, T0, T0 + STEP)
    )


def test_unknown_data_holds_an_active_recommendation_until_the_probe_is_gone() -> None:
    """A probe with too few runs proves no recovery; a probe removed by reload releases it."""
    engine = RecommendationEngine(CFG)
    t = activate(engine, LOGIN)
    assert [] == run(engine, probes(login(0, runs=FEW)), t + STEP, t + 3 * EXIT_FOR)
    gone = t + 3 * EXIT_FOR
    assert [] == run(engine, Shape(), gone, gone + EXIT_FOR)
    assert [("login_degraded", ACTIVE, RESOLVED)] == moves(
        engine.evaluate(Shape().at(gone + EXIT_FOR))
    )


def test_canary_probes_are_not_the_product() -> None:
    """A canary probe's own failures and 429s do not count for any scenario."""
    cfg = RecommendConfig(canary=["known_good"])
    canary = probe("known_good", "login", failures=20, rate_limited=20, p95=9.0)
    assert [] == run(RecommendationEngine(cfg), probes(canary), T0, T0 + EXIT_FOR)


# --- canary: inconclusive ---------------------------------------------------------------------


@BY_CASE
def test_inconclusive_when_the_canary_fails_at_activation(case: Case) -> None:
    """A scenario due while the canary fails is INCONCLUSIVE, then waits enter_for again."""
    engine = RecommendationEngine(CFG)
    assert [(case.scenario, None, PENDING)] == run(
        engine, case.enter, T0, T0 + ENTER_FOR, canary=True
    )
    assert [(case.scenario, PENDING, INCONCLUSIVE)] == moves(
        engine.evaluate(case.enter.at(T0 + ENTER_FOR, canary=True))
    )
    rec = rec_of(engine, case.scenario)
    assert (INCONCLUSIVE, T0 + ENTER_FOR) == (rec.state, rec.since)
    assert "inconclusive" in rec.summary
    assert "canary_failing" == rec.inconclusive_reason
    ok = T0 + 2 * ENTER_FOR
    assert [] == run(engine, case.enter, T0 + ENTER_FOR + STEP, ok, canary=True)
    assert [(case.scenario, INCONCLUSIVE, PENDING)] == moves(engine.evaluate(case.enter.at(ok)))
    assert [] == run(engine, case.enter, ok + STEP, ok + ENTER_FOR)
    assert [(case.scenario, PENDING, ACTIVE)] == moves(
        engine.evaluate(case.enter.at(ok + ENTER_FOR))
    )


@BY_CASE
def test_inconclusive_never_issued_ends_if_the_condition_is_gone(case: Case) -> None:
    """When the canary recovers and the condition no longer holds, the unissued one ends."""
    engine = RecommendationEngine(CFG)
    run(engine, case.enter, T0, T0 + ENTER_FOR + STEP, canary=True)
    assert INCONCLUSIVE == rec_of(engine, case.scenario).state
    assert [(case.scenario, INCONCLUSIVE, RESOLVED)] == moves(
        engine.evaluate(case.below.at(T0 + ENTER_FOR + STEP))
    )


def skewed(name: str = "events", lag: float = 30.4) -> StreamSignal:
    """A stream whose lags carry an uncorrected clock offset of -30 s."""
    return replace(stream(name, lag=lag), clock_skew=-30.0)


def test_a_lag_resting_on_an_uncorrected_clock_skew_is_inconclusive() -> None:
    """A skewed stream's lag p95 is never issued: INCONCLUSIVE (clock_skew), kept over a
    restart, and ended once the lag is gone."""
    engine = RecommendationEngine(CFG)
    shape = Shape(streams=(skewed(),))
    assert [("sse_degraded", None, PENDING), ("sse_degraded", PENDING, INCONCLUSIVE)] == run(
        engine, shape, T0, T0 + ENTER_FOR + STEP
    )
    later = T0 + 10 * ENTER_FOR
    assert [] == run(engine, shape, T0 + ENTER_FOR + STEP, later)
    rec = rec_of(engine, "sse_degraded")
    assert (INCONCLUSIVE, "clock_skew") == (rec.state, rec.inconclusive_reason)
    assert "lag p95 30.4s > 5.0s (not corrected for a clock offset of -30.0s)" in rec.summary
    assert "[inconclusive: clock_skew" in rec.summary
    restored = RecommendationEngine(CFG)
    assert [] == restored.restore(json.loads(json.dumps(engine.snapshot())))
    assert "clock_skew" == rec_of(restored, "sse_degraded").inconclusive_reason
    corrected = Shape(streams=(stream(lag=0.2),))
    assert [("sse_degraded", INCONCLUSIVE, RESOLVED)] == moves(engine.evaluate(corrected.at(later)))


def test_a_skewed_lag_beside_a_real_fault_is_issued() -> None:
    """Another stream really down makes sse_degraded ACTIVE, skew or not."""
    engine = RecommendationEngine(CFG)
    shape = Shape(streams=(skewed(), stream("other", down=600.0, events=0, lag=None)))
    run(engine, shape, T0, T0 + ENTER_FOR + STEP)
    rec = rec_of(engine, "sse_degraded")
    assert (ACTIVE, None, Severity.SEV2) == (rec.state, rec.inconclusive_reason, rec.severity)


@BY_CASE
def test_active_is_inconclusive_while_the_canary_fails(case: Case) -> None:
    """An active scenario turns INCONCLUSIVE while the canary fails and back, keeping since."""
    engine = RecommendationEngine(CFG)
    t = activate(engine, case)
    assert [(case.scenario, ACTIVE, INCONCLUSIVE)] == moves(
        engine.evaluate(case.enter.at(t + STEP, canary=True))
    )
    assert [] == run(engine, case.enter, t + 2 * STEP, t + EXIT_FOR, canary=True)
    rec = rec_of(engine, case.scenario)
    assert (INCONCLUSIVE, t) == (rec.state, rec.since)
    assert [(case.scenario, INCONCLUSIVE, ACTIVE)] == moves(
        engine.evaluate(case.stuck.at(t + EXIT_FOR))
    )
    rec = rec_of(engine, case.scenario)
    assert (ACTIVE, t) == (rec.state, rec.since)


# --- severity ---------------------------------------------------------------------------------


SEVERITIES = [
    pytest.param(probes(login(6)), "login_degraded", Severity.SEV2, id="login-30%"),
    pytest.param(probes(login(10)), "login_degraded", Severity.SEV1, id="login-50%"),
    pytest.param(probes(login(12)), "login_degraded", Severity.SEV1, id="login-60%"),
    pytest.param(probes(login(0, p95=2.0)), "login_degraded", Severity.SEV2, id="login-slow"),
    pytest.param(
        probes(probe("login", "login", failures=20, reasons={"slow": 20}, p95=0.45)),
        "login_degraded",
        Severity.SEV2,
        id="login-every-run-slow-is-not-down",
    ),
    pytest.param(
        probes(probe("login", "login", failures=20, reasons={"slow": 10, "status": 10})),
        "login_degraded",
        Severity.SEV1,
        id="login-half-errors-half-slow",
    ),
    pytest.param(Shape(streams=(stream(lag=30.0),)), "sse_degraded", Severity.SEV2, id="sse-late"),
    pytest.param(
        Shape(streams=(stream("a", down=120.0), stream("b", down=60.0)), probes=(reflect(20),)),
        "sse_degraded",
        Severity.SEV1,
        id="sse-dark",
    ),
    pytest.param(
        Shape(streams=(stream("a", down=120.0), stream("b")), probes=(reflect(20),)),
        "sse_degraded",
        Severity.SEV2,
        id="sse-one-stream-up",
    ),
    pytest.param(
        Shape(streams=(stream(down=120.0),), probes=(reflect(19),)),
        "sse_degraded",
        Severity.SEV2,
        id="sse-reflect-not-all-lost",
    ),
    pytest.param(
        Shape(streams=(stream(down=120.0),)), "sse_degraded", Severity.SEV2, id="sse-no-reflect"
    ),
    pytest.param(probes(*http(10)), "rate_limited", Severity.SEV3, id="429-10%"),
    pytest.param(probes(*http(20, count=2)), "rate_limited", Severity.SEV2, id="429-50%"),
    pytest.param(probes(imports(20)), "backlog", Severity.SEV2, id="backlog"),
    pytest.param(probes(fixture(20)), "ai_errors", Severity.SEV2, id="ai"),
    pytest.param(Shape(slos=(slo(b1h=14.0, b5m=14.0),)), "fast_burn", Severity.SEV2, id="burn"),
    pytest.param(
        Shape(slos=(slo(b1h=3.0, b5m=3.0, budget=0.0),)),
        "fast_burn",
        Severity.SEV1,
        id="burn-budget-spent",
    ),
    pytest.param(
        Shape(slos=(slo(b1h=3.0, b5m=3.0, budget=-0.4), slo("other", b1h=0.1, b5m=0.1))),
        "fast_burn",
        Severity.SEV1,
        id="burn-overspent",
    ),
]


@pytest.mark.parametrize(("shape", "scenario", "severity"), SEVERITIES)
def test_severity(shape: Shape, scenario: str, severity: Severity) -> None:
    """Each scenario's severity follows the seeds' matrix from the measured numbers."""
    engine = RecommendationEngine(CFG)
    run(engine, shape, T0, T0 + ENTER_FOR + STEP)
    rec = rec_of(engine, scenario)
    assert (severity, ACTIVE) == (rec.severity, rec.state)


def test_severity_escalates_at_once_and_demotes_after_exit_for() -> None:
    """Login going from 30 % to 60 % failures is Sev-1 at once, and Sev-2 again only later."""
    engine = RecommendationEngine(CFG)
    t = activate(engine, LOGIN)
    assert Severity.SEV2 == rec_of(engine, "login_degraded").severity
    [up] = engine.evaluate(probes(login(12)).at(t + STEP))
    assert (ACTIVE, ACTIVE, Severity.SEV1) == (up.old, up.new, up.recommendation.severity)
    calm = t + 2 * STEP
    assert [] == run(engine, probes(login(6)), calm, calm + EXIT_FOR)
    assert Severity.SEV1 == rec_of(engine, "login_degraded").severity
    [down] = engine.evaluate(probes(login(6)).at(calm + EXIT_FOR))
    assert (ACTIVE, ACTIVE, Severity.SEV2) == (down.old, down.new, down.recommendation.severity)
    assert t == down.recommendation.since


def test_current_is_ordered_by_severity_then_scenario() -> None:
    """current() lists the most severe first, ties by scenario id, pending ones included."""
    engine = RecommendationEngine(CFG)
    shape = probes(login(12), fixture(5), *http(10)) + Shape(slos=(slo(b1h=5.0, b5m=5.0),))
    run(engine, shape, T0, T0 + ENTER_FOR + STEP)
    engine.evaluate((shape + Shape(queue_depth=1000.0)).at(T0 + ENTER_FOR + STEP))
    assert [
        ("login_degraded", Severity.SEV1, ACTIVE),
        ("ai_errors", Severity.SEV2, ACTIVE),
        ("backlog", Severity.SEV2, PENDING),
        ("fast_burn", Severity.SEV2, ACTIVE),
        ("rate_limited", Severity.SEV3, ACTIVE),
    ] == [(r.scenario, r.severity, r.state) for r in engine.current()]


# --- configuration: disabled, apply -----------------------------------------------------------


@BY_CASE
def test_disabled_scenario_never_triggers(case: Case) -> None:
    """A scenario listed in ``disabled`` stays silent whatever the signals."""
    engine = RecommendationEngine(RecommendConfig(disabled=[case.scenario]))
    assert [] == run(engine, case.worse, T0, T0 + 3 * EXIT_FOR)
    assert [] == engine.current()


def test_apply_keeps_state_of_enabled_scenarios() -> None:
    """A reload keeps enabled scenarios as they were and resolves newly disabled ones once."""
    engine = RecommendationEngine(CFG)
    shape = probes(login(6), *http(10))
    run(engine, shape, T0, T0 + ENTER_FOR + STEP)
    before = rec_of(engine, "login_degraded")
    engine.apply(
        RecommendConfig(disabled=["rate_limited"], runbook_base_url="https://wiki.example/rb")
    )
    after = rec_of(engine, "login_degraded")
    assert (ACTIVE, before.since, before.evidence) == (after.state, after.since, after.evidence)
    assert "https://wiki.example/rb#login_degraded" == after.runbook_url
    assert ["login_degraded"] == [r.scenario for r in engine.current()]
    [gone] = engine.evaluate(shape.at(T0 + ENTER_FOR + 2 * STEP))
    assert ("rate_limited", ACTIVE, RESOLVED) == (gone.scenario, gone.old, gone.new)
    assert [] == run(engine, shape, T0 + ENTER_FOR + 3 * STEP, T0 + 3 * EXIT_FOR)
    assert ACTIVE == rec_of(engine, "login_degraded").state


def test_apply_uses_new_thresholds_for_kept_state() -> None:
    """After a reload the kept scenario exits by the new thresholds."""
    engine = RecommendationEngine(CFG)
    t = activate(engine, LOGIN)
    engine.apply(RecommendConfig(login_failure_ratio=0.9))
    assert [] == run(engine, probes(login(6)), t + STEP, t + EXIT_FOR + STEP)
    assert [("login_degraded", ACTIVE, RESOLVED)] == moves(
        engine.evaluate(probes(login(6)).at(t + EXIT_FOR + STEP))
    )


# --- persistence ------------------------------------------------------------------------------


def busy_engine() -> tuple[RecommendationEngine, Shape, float]:
    """An engine mid-incident: issued, exiting, demoting, unissued and pending scenarios."""
    engine = RecommendationEngine(CFG)
    run(engine, probes(login(4)) + SSE_LAG.enter, T0, T0 + ENTER_FOR + STEP)
    # login escalates to Sev-1, sse starts exiting, backlog starts pending
    engine.evaluate((probes(login(12)) + SSE_LAG.good + QUEUE.enter).at(T0 + 70))
    # the canary fails: issued ones turn inconclusive, due ones become inconclusive unissued
    shape = probes(login(6), fixture(3)) + SSE_LAG.good + QUEUE.enter
    run(engine, shape, T0 + 80, T0 + 150, canary=True)
    shape += probes(*http(10))
    engine.evaluate(shape.at(T0 + 150, canary=True))
    return engine, shape, T0 + 160


def test_snapshot_restore_round_trip() -> None:
    """A restored engine shows the same recommendations and then behaves identically."""
    engine, shape, t = busy_engine()
    assert [
        ("login_degraded", INCONCLUSIVE, Severity.SEV1),
        ("ai_errors", INCONCLUSIVE, Severity.SEV2),
        ("backlog", INCONCLUSIVE, Severity.SEV2),
        ("sse_degraded", INCONCLUSIVE, Severity.SEV2),
        ("rate_limited", PENDING, Severity.SEV3),
    ] == [(r.scenario, r.state, r.severity) for r in engine.current()]
    data = json.loads(json.dumps(engine.snapshot()))
    saved = data["scenarios"]
    assert (T0 + 70, T0 + 80) == (
        saved["sse_degraded"]["exit_since"],
        saved["login_degraded"]["demote_since"],
    )
    twin = RecommendationEngine(CFG)
    assert [] == twin.restore(data)
    assert engine.current() == twin.current()
    assert engine.snapshot() == twin.snapshot()
    healthy = SSE_LAG.good + probes(login(0), fixture(0), *http(0)) + Shape(queue_depth=0.0)
    issued = {r.scenario for r in engine.current()}
    changes: list[Move] = []
    for later in (shape, healthy):
        for i in range(60):
            signals = later.at(t + i * STEP)
            mine = engine.evaluate(signals)
            assert mine == twin.evaluate(signals)
            changes += moves(mine)
        t += 60 * STEP
    assert issued == {s for s, _, new in changes if new is RESOLVED}
    assert [] == engine.current() == twin.current()


def valid_entry() -> dict[str, Any]:
    """One scenario entry of a real snapshot (login, active)."""
    engine = RecommendationEngine(CFG)
    activate(engine, LOGIN)
    entry: dict[str, Any] = engine.snapshot()["scenarios"]["login_degraded"]
    return entry


def snap(**entries: Any) -> dict[str, Any]:
    """A snapshot with these scenario entries."""
    return {"version": 1, "scenarios": entries}


def patched(**changes: Any) -> dict[str, Any]:
    """A valid login entry with some keys replaced (or removed when the value is ...)."""
    entry = valid_entry()
    for key, value in changes.items():
        if value is Ellipsis:
            del entry[key]
        else:
            entry[key] = value
    return entry


def bad(**changes: Any) -> dict[str, Any]:
    """A snapshot holding one damaged login entry."""
    return snap(login_degraded=patched(**changes))


GARBAGE = [
    pytest.param(None, "expected a mapping", id="none"),
    pytest.param([1, 2], "expected a mapping", id="list"),
    pytest.param("x", "expected a mapping", id="text"),
    pytest.param({}, "unsupported version None", id="empty"),
    pytest.param({"version": 2, "scenarios": {}}, "unsupported version 2", id="future-version"),
    pytest.param({"version": True, "scenarios": {}}, "unsupported version True", id="bool-ver"),
    pytest.param({"version": 1, "scenarios": []}, "'scenarios' must be a mapping", id="list-sc"),
    pytest.param(snap(nope={}), "unknown scenario 'nope'", id="unknown-scenario"),
    pytest.param(snap(login_degraded=5), "expected a mapping, got 5", id="entry-number"),
    pytest.param(bad(state="resolved"), "'state' must be one of", id="state"),
    pytest.param(bad(state=None), "'state' must be a string", id="no-st"),
    pytest.param(bad(since=...), "missing 'since'", id="no-since"),
    pytest.param(bad(since="x"), "'since' must be a finite", id="since-text"),
    pytest.param(bad(since=math.nan), "'since' must be a finite", id="nan"),
    pytest.param(bad(since=10**400), "'since' must be a finite", id="huge"),
    pytest.param(bad(since=True), "'since' must be a finite", id="since-bool"),
    pytest.param(bad(severity="Sev-9"), "unknown severity", id="sev"),
    pytest.param(bad(activated="yes"), "'activated' must be", id="act"),
    pytest.param(bad(demote_to="Sev-3"), "set together", id="demote"),
    pytest.param(bad(first_seen=[]), "'first_seen' must be", id="fs"),
    pytest.param(bad(first_seen={"a": None}), "first_seen value", id="fs-v"),
    pytest.param(bad(evidence={}), "'evidence' must be a list", id="ev"),
    pytest.param(bad(evidence=[3]), "evidence item must be", id="ev-item"),
    pytest.param(bad(evidence=[{"signal": 1}]), "'evidence signal' must be", id="ev-sig"),
]


@pytest.mark.parametrize(("data", "problem"), GARBAGE)
def test_restore_reports_garbage_without_raising(data: Any, problem: str) -> None:
    """Garbage is reported as a problem naming what is wrong, and nothing is restored."""
    engine = RecommendationEngine(CFG)
    problems = engine.restore(data)
    assert 1 == len(problems)
    assert problem in problems[0]
    assert [] == engine.current()


def test_restore_keeps_the_valid_entries() -> None:
    """Valid scenario entries are restored next to invalid ones, which are dropped."""
    engine = RecommendationEngine(RecommendConfig(disabled=["ai_errors"]))
    data = snap(
        login_degraded=valid_entry(),
        backlog=patched(since="soon"),
        ai_errors=valid_entry(),
    )
    problems = engine.restore(data)
    assert [
        "recommendation state: scenario 'backlog': 'since' must be a finite number, "
        "got 'soon'; dropped",
        "recommendation state: scenario 'ai_errors' is disabled; its state dropped",
    ] == problems
    assert [("login_degraded", ACTIVE)] == [(r.scenario, r.state) for r in engine.current()]


def test_restore_of_a_non_snapshot_keeps_the_current_state() -> None:
    """Restoring something that is not a snapshot at all leaves the engine as it was."""
    engine = RecommendationEngine(CFG)
    activate(engine, LOGIN)
    before = engine.current()
    assert 1 == len(engine.restore({"version": 99}))
    assert before == engine.current()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["active", "pending", "Sev-1", "login_degraded"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists (the root included)."""
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += leaf_paths(item, (*path, index))
    return paths


BUSY_SNAPSHOT = busy_engine()[0].snapshot()


@settings(max_examples=300, deadline=None)
@given(st.data(), json_values)
def test_restore_never_raises_on_a_damaged_snapshot(data: st.DataObject, junk: Any) -> None:
    """Any value replaced anywhere in a real snapshot is reported or accepted, never raised."""
    damaged = copy.deepcopy(BUSY_SNAPSHOT)
    path = data.draw(st.sampled_from(leaf_paths(damaged)))
    if not path:
        damaged = junk
    else:
        parent = damaged
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = junk
    engine = RecommendationEngine(CFG)
    problems = engine.restore(damaged)
    assert all(isinstance(p, str) for p in problems)
    engine.current()
    engine.evaluate(Shape().at(T0))


# --- API and docs -----------------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` is sorted (constants first) and every name in it exists."""
    names = recommend_module.__all__
    assert sorted(names, key=lambda n: (not n.isupper(), n)) == names
    assert all(hasattr(recommend_module, n) for n in names)


def test_scenario_ids_are_labels() -> None:
    """Scenario ids are unique lowercase label values."""
    assert len(SCENARIOS) == len(set(SCENARIOS))
    assert all(s.replace("_", "").isalpha() and s.islower() for s in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_runbook_has_an_anchor_per_scenario(scenario: str) -> None:
    """docs/runbooks.md has the section each runbook_url points at."""
    assert f'<a id="{scenario}"></a>' in RUNBOOKS.read_text(encoding="utf-8")


@pytest.mark.parametrize("down", [0.0, 2.0], ids=["connected", "reconnecting"])
def test_a_stream_without_events_is_dark_whether_connected_or_reconnecting(down: float) -> None:
    """Pings only, connected or between reconnects: sse_degraded on the silence, not the gap."""
    engine = RecommendationEngine(CFG)
    shape = Shape(streams=(stream(down=down, events=0, lag=None, silent=600.0),))
    run(engine, shape, T0, T0 + ENTER_FOR + STEP)
    rec = rec_of(engine, "sse_degraded")
    assert ACTIVE == rec.state
    assert ["stream events no_event_for"] == [e.signal for e in rec.evidence]
    assert 600.0 == rec.evidence[0].value
