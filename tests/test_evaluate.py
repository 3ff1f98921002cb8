"""The evaluation tick on a large store: it lets the event loop turn, and the answer is the
same as in one go."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from typing import Any

import pytest
import structlog
from bigstore import big_store
from test_recommend import T0, Shape, stream

from probed import evaluate
from probed.components import compute_components
from probed.config import Config, RecommendConfig, TargetConfig
from probed.evaluate import Evaluator, log_transition
from probed.logging import configure_logging
from probed.recommend import RecommendationEngine, assess_symptoms
from probed.recommend.facts import Fact, fact
from probed.signals import Signals
from probed.store import ResultStore

_CONFIG = Config(targets={"app": TargetConfig(base_url="http://127.0.0.1:9")}, probes=[])


async def _turns_while(work: asyncio.Task[object]) -> int:
    """Loop turns another task got while ``work`` ran."""
    turns = 0
    while not work.done():
        turns += 1
        await asyncio.sleep(0)
    return turns


def _evaluators(store: ResultStore) -> tuple[Evaluator, Evaluator]:
    return Evaluator(_CONFIG, store), Evaluator(_CONFIG, store)


def test_an_evaluation_of_500_streams_lets_the_loop_turn() -> None:
    """With no time allowed per slice, the evaluation hands the loop back between slices of
    streams, of probes and between scenarios: other tasks run dozens of times meanwhile
    (in one go they would not run at all)."""
    store, _ = big_store(probes=200, streams=500)
    evaluator, _ = _evaluators(store)

    async def main() -> int:
        work = asyncio.create_task(evaluator.evaluate_in_slices(time.time(), slice_seconds=0.0))
        turns = await _turns_while(work)
        await work
        return turns

    turns = asyncio.run(main())
    # 500 streams and 200 probes in slices of 25, the scenarios one by one
    assert turns >= 500 // 25 + 200 // 25


def test_an_evaluation_in_slices_gives_what_one_in_one_go_gives() -> None:
    """Signals, recommendations, components and transitions are the same either way."""
    store, _ = big_store(probes=200, streams=500)
    at_once, sliced = _evaluators(store)
    now = time.time()
    for step in range(3):
        expected = at_once.evaluate(now + step * 10)
        got = asyncio.run(sliced.evaluate_in_slices(now + step * 10, slice_seconds=0.0))
        assert expected == got
    assert expected[0].recommendations  # the store gives the engine something to say


def test_a_reload_during_an_evaluation_in_slices_is_taken_whole() -> None:
    """A reload that disables a scenario while an evaluation is between slices: the
    evaluation reads again under the new configuration, and raises nothing the new
    configuration disabled. Streams forgotten meanwhile break nothing."""
    store, _ = big_store(probes=200, streams=500)
    evaluator, _ = _evaluators(store)
    disabled = _CONFIG.model_copy(
        update={"recommend": _CONFIG.recommend.model_copy(update={"disabled": ["ai_errors"]})}
    )

    async def main() -> list[str]:
        work = asyncio.create_task(evaluator.evaluate_in_slices(time.time(), slice_seconds=0.0))
        for _ in range(25):  # into the streams
            await asyncio.sleep(0)
        for name in list(store.streams)[-100:]:
            store.forget_stream(name)
        for _ in range(10):  # into the scenarios
            await asyncio.sleep(0)
        evaluator.apply(disabled)
        evaluation, _ = await work
        return [r.scenario for r in evaluation.recommendations]

    scenarios = asyncio.run(main())
    assert "login_degraded" in scenarios
    assert "ai_errors" not in scenarios


def test_an_evaluation_settles_and_builds_components_in_steps_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the scenarios, settling the recommendations, building the components and
    recording the history were one step: 2.3 ms of the loop at the median and up to 6 ms
    in a soak of 500 streams, above the 2 ms slice. Each now ends with a checkpoint."""
    store, _ = big_store(probes=200, streams=500)
    evaluator, _ = _evaluators(store)
    step = [0]
    seen: dict[str, int] = {}

    def noting(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[name] = step[0]
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(evaluator.engine, "settle", noting("settle", evaluator.engine.settle))
    monkeypatch.setattr(evaluate, "compute_components", noting("components", compute_components))
    monkeypatch.setattr(
        evaluator.history, "components", noting("history", evaluator.history.components)
    )
    steps = evaluator._evaluate_steps(time.time())
    while True:
        try:
            next(steps)
        except StopIteration as done:
            evaluation, _ = done.value
            break
        step[0] += 1
    assert evaluation.recommendations
    assert seen["settle"] < seen["components"] < seen["history"], seen


def _lagging(count: int) -> Signals:
    """``count`` connected streams whose lag p95 (15.4 s) is over the threshold."""
    return Shape(streams=tuple(stream(f"s{i:04d}", lag=15.4) for i in range(count))).at(T0)


def test_the_streams_scenario_assesses_500_streams_in_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live-updates rule makes a fact or two of every stream: over 500 streams that
    held the loop 3-5 ms in one step (18-35 ms with a collection inside, in a soak). It
    hands the loop back after every 25 streams, like the signals' slices."""
    made = [0]

    def counting(real: Any) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            made[0] += 1
            return real(*args, **kwargs)

        return make

    monkeypatch.setattr(assess_symptoms, "Fact", counting(Fact))
    monkeypatch.setattr(assess_symptoms, "fact", counting(fact))
    steps = RecommendationEngine(RecommendConfig()).assess_steps(_lagging(500))
    per_step: list[int] = []
    while True:
        before = made[0]
        try:
            next(steps)
        except StopIteration:
            break
        finally:
            per_step.append(made[0] - before)
    assert sum(per_step) >= 1000  # both facts of every stream
    assert max(per_step) <= 2 * 25, f"facts per step: {per_step}"


def test_a_transition_over_500_streams_logs_a_bounded_line() -> None:
    """A recommendation resting on 500 lagging streams: its transition line carries the
    first 20 pieces of evidence and how many there are, not all 500 (a 38 kB line, longer
    than log shippers take in one piece, and milliseconds of the loop to redact and
    render)."""
    engine = RecommendationEngine(RecommendConfig())
    signals = _lagging(500)
    transitions = engine.evaluate(signals)
    assert [t.scenario for t in transitions] == ["sse_degraded"]
    buf = io.StringIO()
    configure_logging(stream=buf)
    try:
        log_transition(transitions[0])
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    [line] = buf.getvalue().splitlines()
    assert len(line) < 8192
    logged = json.loads(line)
    assert logged["evidence_count"] == 500
    assert [e["signal"] for e in logged["evidence"]] == [
        e.signal for e in transitions[0].recommendation.evidence[:20]
    ]
