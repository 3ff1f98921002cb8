"""The evaluation tick on a large store: it lets the event loop turn, and the answer is the
same as in one go."""

from __future__ import annotations

import asyncio
import time

from bigstore import big_store

from probed.config import Config, TargetConfig
from probed.evaluate import Evaluator
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
