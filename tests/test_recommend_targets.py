"""Cause before symptoms: a target that cannot be reached, and a probe failing on its own."""

from __future__ import annotations

import dataclasses

from test_recommend import (
    ACTIVE,
    ENTER_FOR,
    EXIT_FOR,
    PENDING,
    RESOLVED,
    STEP,
    T0,
    Shape,
    probe,
    rec_of,
    run,
    stream,
)

from probed.config import RecommendConfig
from probed.recommend import RecommendationEngine
from probed.signals import ProbeSignal, Severity


def refused(name: str, kind: str, target: str = "demo") -> ProbeSignal:
    """A probe whose every run of the window failed to connect (connection refused)."""
    failing = probe(name, kind, failures=20, reasons={"connect_refused": 20})
    return dataclasses.replace(failing, target=target, last_reason="connect_refused")


DEMO_DEAD = Shape(
    probes=(
        refused("health", "http"),
        refused("login", "login"),
        refused("reflect", "reflect"),
        refused("indicators", "fixture"),
    ),
    streams=(stream(down=120.0),),
)


def test_a_dead_target_is_one_target_down_with_the_knock_ons_suppressed() -> None:
    """Killing the product gives exactly one Sev-1 target_down; the rest are listed, not raised."""
    engine = RecommendationEngine(RecommendConfig())

    moves = run(engine, DEMO_DEAD, T0, T0 + ENTER_FOR + STEP)

    assert [("target_down", None, PENDING), ("target_down", PENDING, ACTIVE)] == moves
    rec = rec_of(engine, "target_down")
    assert Severity.SEV1 == rec.severity
    assert "'demo'" in rec.summary
    suppressed = sorted(e.signal for e in rec.evidence if e.signal.startswith("suppressed "))
    assert [
        "suppressed ai_errors",
        "suppressed health_failing",
        "suppressed login_degraded",
        "suppressed sse_degraded",
    ] == suppressed
    assert ["target_down"] == [r.scenario for r in engine.current()]


def test_target_down_resolves_once_the_target_answers() -> None:
    """One successful run of the target's probes starts the exit; it resolves after exit_for."""
    engine = RecommendationEngine(RecommendConfig())
    run(engine, DEMO_DEAD, T0, T0 + ENTER_FOR + STEP)
    back = Shape(probes=(probe("health", "http"), probe("login", "login")), streams=(stream(),))

    moves = run(engine, back, T0 + ENTER_FOR + STEP, T0 + ENTER_FOR + 2 * STEP + EXIT_FOR)

    assert [("target_down", ACTIVE, RESOLVED)] == moves


def test_another_targets_outage_does_not_hide_this_ones_symptoms() -> None:
    """Only the dead target's probes are suppressed; a failing login elsewhere still counts."""
    engine = RecommendationEngine(RecommendConfig())
    shape = Shape(
        probes=(
            refused("cdn", "http", target="static"),
            refused("cdn_assets", "http", target="static"),
            dataclasses.replace(probe("login", "login", failures=20), last_reason="status"),
        )
    )

    run(engine, shape, T0, T0 + ENTER_FOR + STEP)

    assert {"target_down", "login_degraded"} == {r.scenario for r in engine.current()}
    assert "'static'" in rec_of(engine, "target_down").summary


def test_a_readiness_probe_failing_on_its_own_is_recommended() -> None:
    """A health probe answering 503 alone raises health_failing at the configured severity."""
    ready = probe("readiness", "http", failures=20, reasons={"status": 20})
    others = (probe("login", "login"), probe("health", "http"))
    lenient = RecommendConfig(probe_failing_severity="Sev-3")
    for cfg, severity in ((RecommendConfig(), Severity.SEV2), (lenient, Severity.SEV3)):
        engine = RecommendationEngine(cfg)

        run(engine, Shape(probes=(ready, *others)), T0, T0 + ENTER_FOR + STEP)

        rec = rec_of(engine, "health_failing")
        assert (ACTIVE, severity) == (rec.state, rec.severity)
        assert ["probe readiness failure_ratio"] == [e.signal for e in rec.evidence]
        assert ["health_failing"] == [r.scenario for r in engine.current()]
