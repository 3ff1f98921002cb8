"""Cause before symptoms: a target that cannot be reached, and a probe failing on its own."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from livedaemon import live_daemon, watch_metrics
from test_daemon import PASSWORD, fast_demo_config
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
from probed.demo import DemoTarget
from probed.recommend import RecommendationEngine
from probed.recommend import engine as engine_module
from probed.recommend.scenarios import SCENARIO_LIST
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


def test_a_knock_on_raised_before_the_outage_was_seen_is_withdrawn() -> None:
    """A login_degraded already active is resolved, marked withdrawn, once the target is down."""
    engine = RecommendationEngine(RecommendConfig())
    login_failing = dataclasses.replace(probe("login", "login", failures=20), last_reason="status")
    run(engine, Shape(probes=(login_failing, probe("health", "http"))), T0, T0 + ENTER_FOR + STEP)
    assert ["login_degraded"] == [r.scenario for r in engine.current()]

    transitions = engine.evaluate(DEMO_DEAD.at(T0 + ENTER_FOR + 2 * STEP))

    assert [("target_down", None, PENDING), ("login_degraded", ACTIVE, RESOLVED)] == [
        (t.scenario, t.old, t.new) for t in transitions
    ]
    withdrawn = transitions[1].recommendation.summary
    assert withdrawn.endswith("[withdrawn: a knock-on of target 'demo' down]"), withdrawn


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


async def test_killing_the_demo_gives_one_target_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live demo stopped: exactly one active recommendation, target_down, knock-ons listed."""
    monkeypatch.setenv("PROBED_DEMO_PASSWORD", PASSWORD)
    demo = DemoTarget(password=PASSWORD)
    await demo.start()
    path = fast_demo_config(tmp_path, demo.base_url)
    text = path.read_text()
    faster = [
        ('window = "5m"', 'window = "8s"'),
        ('evaluate_every = "10s"', 'evaluate_every = "1s"'),
        ('enter_for = "30s"', 'enter_for = "2s"'),
    ]
    for old, new in faster:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    async with live_daemon(path) as (daemon, task, base):
        await watch_metrics(base, task, 3.0, lambda _: True)
        await demo.stop()

        def issued() -> list[str]:
            return [r.scenario for r in daemon.evaluator.engine.current() if r.state is ACTIVE]

        async with asyncio.timeout(30):
            while "target_down" not in issued():
                await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # a few more evaluations: nothing else becomes active
        active = issued()
        rec = rec_of(daemon.evaluator.engine, "target_down")
    assert ["target_down"] == active
    assert "'demo'" in rec.summary
    assert any(e.signal.startswith("suppressed ") for e in rec.evidence), rec.evidence


def test_with_a_target_down_each_rule_looks_at_the_signals_once_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a target down every rule runs twice, on the signals without the target and on
    all of them (to list what it would have raised). Over hundreds of streams each look is
    milliseconds, so the loop may turn between the two: one look per step of the steps the
    evaluation runs in slices (``probed.steps``)."""
    looks: list[str] = []
    wrapped = [
        dataclasses.replace(s, assess=_counting(s.id, s.assess, looks)) for s in SCENARIO_LIST
    ]
    monkeypatch.setattr(engine_module, "SCENARIO_LIST", wrapped)
    engine = RecommendationEngine(RecommendConfig())
    other = Shape(probes=(probe("api", "http"),))
    other = dataclasses.replace(
        other, probes=tuple(dataclasses.replace(p, target="other") for p in other.probes)
    )
    steps = engine.assess_steps((DEMO_DEAD + other).at(T0))
    per_step: list[int] = []
    done = False
    while not done:
        before = len(looks)
        try:
            next(steps)
        except StopIteration:
            done = True
        per_step.append(len(looks) - before)
    assert len(looks) > len(wrapped)  # looked twice at some: a target is down
    assert max(per_step) <= 1, f"looks per step: {per_step}"


def _counting(name: str, assess: Any, looks: list[str]) -> Any:
    def counted(signals: Any, cfg: Any) -> Any:
        looks.append(name)
        return (yield from assess(signals, cfg))

    return counted
