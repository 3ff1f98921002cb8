"""Work in steps (``probed.steps``): run at once or in slices, and a share of each turn."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pytest

from probed.steps import (
    ITEMS_PER_STEP,
    TURN_SECONDS,
    Steps,
    TurnCount,
    TurnShare,
    TurnWindow,
    at_once,
    batches,
    in_slices,
)


def _count(to: int, log: list[str]) -> Steps[int]:
    try:
        for i in range(to):
            log.append(f"step {i}")
            yield
        return to
    finally:
        log.append("closed")


def test_at_once_runs_every_step_and_returns_the_result() -> None:
    log: list[str] = []
    assert 3 == at_once(_count(3, log))
    assert ["step 0", "step 1", "step 2", "closed"] == log


def test_in_slices_lets_the_loop_turn_and_closes_the_work_when_cancelled() -> None:
    log: list[str] = []

    async def main() -> None:
        work = asyncio.create_task(in_slices(_count(1000, log), slice_seconds=0.0))
        for _ in range(3):
            await asyncio.sleep(0.01)
            log.append("other task")
        work.cancel()
        with pytest.raises(asyncio.CancelledError):
            await work

    asyncio.run(main())
    assert log.count("other task") == 3
    assert log[-1] == "closed"
    # the work went on between the other task's turns, a step per turn it left the loop
    others = [i for i, entry in enumerate(log) if entry == "other task"]
    assert all(b - a > 1 for a, b in itertools.pairwise([-1, *others])), log
    # and left it for TURN_SECONDS each time (after sleep(0) it would take every turn: the
    # 1,000 steps would be done within the 30 ms)
    assert sum(entry.startswith("step") for entry in log) < 0.03 / TURN_SECONDS * 4


def test_a_turn_share_of_zero_lets_one_slice_a_turn_first_come_first_served() -> None:
    """Three tasks of three slices each on a share of 0: one slice per loop turn (a ticking
    task sees at most one between two of its ticks); the first task keeps the share until
    its work is done, then the next in the order they came."""
    share = TurnShare(0.0)
    log: list[str] = []

    async def worker(name: str) -> None:
        for i in range(3):
            await share.next_turn()
            log.append(f"{name}{i}")
            share.use(0.0)

    async def main() -> None:
        tasks = [asyncio.create_task(worker(name)) for name in "abc"]
        while not all(t.done() for t in tasks):
            log.append("|")
            await asyncio.sleep(0)

    asyncio.run(main())
    slices = "".join(log).split("|")
    assert all(len(s) <= 2 for s in slices), slices
    assert ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"] == [e for e in log if e != "|"]


def test_a_turn_share_is_renewed_each_turn() -> None:
    async def main() -> list[bool]:
        share = TurnShare(0.001)
        share.use(0.0005)
        seen = [share.open()]
        share.use(0.0005)
        seen.append(share.open())
        await asyncio.sleep(0)
        seen.append(share.open())
        return seen

    assert [True, False, True] == asyncio.run(main())


def test_a_turn_window_counts_what_ran_between_its_slices() -> None:
    """A share counted as a window of the turn is used up by the time since its first slice
    began, slices or not (other connections' reads and decoding between two accountings);
    a share counted slice by slice only by its slices. Both are renewed each turn."""

    async def main(share: TurnShare) -> list[bool]:
        share.use(0.01)
        seen = [share.open()]
        time.sleep(0.06)  # the turn goes on with work that is no slice of the share
        seen.append(share.open())
        await asyncio.sleep(0)
        seen.append(share.open())
        return seen

    assert [True, False, True] == asyncio.run(main(TurnWindow(0.05)))
    assert [True, True, True] == asyncio.run(main(TurnShare(0.05)))


class _Stepped(Coroutine[Any, Any, None]):
    """A coroutine that counts the times its task stepped it (woke it up)."""

    def __init__(self, coro: Coroutine[Any, Any, None], steps: list[int]) -> None:
        self._coro, self._steps = coro, steps

    def send(self, value: Any) -> Any:
        self._steps[0] += 1
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        self._steps[0] += 1
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        return self._coro.__await__()


@pytest.mark.parametrize(
    ("share", "unit"),
    [(lambda: TurnShare(0.0), 0.0), (lambda: TurnCount(2), 1.0)],
    ids=["a time share of one slice a turn", "a counted share of two a turn"],
)
def test_waiters_for_a_turn_share_wake_only_in_their_own_turn(
    share: Callable[[], TurnShare], unit: float
) -> None:
    """Forty streams handed a backlog in the same turn (one slice a turn), or forty
    connections wanting to start at once (two a turn): each turn lets its share go, in the
    order they came, and a waiting task is woken once, in its own turn, rather than once
    every turn until then (forty tasks stepped every turn only to wait again filled each
    turn with steps that did nothing: 820 task steps for the forty slices)."""
    shared = share()
    log: list[str] = []
    steps = [0]

    async def work(name: int) -> None:
        if not shared.open():
            await shared.next_turn()
        shared.use(unit)
        log.append(f"w{name}")

    async def main() -> None:
        tasks = [asyncio.create_task(_Stepped(work(i), steps)) for i in range(40)]
        while not all(t.done() for t in tasks):
            log.append("|")
            await asyncio.sleep(0)

    asyncio.run(main())
    turns = "".join(log).split("|")
    assert all(len(t.split("w")) - 1 <= 2 for t in turns), turns
    assert [f"w{i}" for i in range(40)] == [e for e in log if e != "|"]
    assert steps[0] <= 2 * 40 + 2, f"{steps[0]} task steps for 40 slices"


def test_a_cancelled_waiter_for_counted_turns_takes_no_turn_and_holds_up_nobody() -> None:
    """A waiter cancelled before its turn (its stream removed by a reload) is skipped; one
    cancelled in the turn it was woken for uses nothing, and the next still get theirs."""
    share = TurnCount(1)
    log: list[str] = []

    async def connect(name: str) -> None:
        if not share.open():
            await share.next_turn()
        share.use(1.0)
        log.append(name)

    async def main() -> None:
        share.use(1.0)
        tasks = {n: asyncio.create_task(connect(n)) for n in "abcd"}
        await asyncio.sleep(0)  # the renewal let a start; b, c and d wait
        tasks["b"].cancel()
        await asyncio.sleep(0)  # the next renewal skips b and wakes c
        tasks["c"].cancel()
        async with asyncio.timeout(1.0):
            await asyncio.wait(tasks.values())

    asyncio.run(main())
    assert ["a", "d"] == log


def test_batches_split_work_between_checkpoints() -> None:
    """``batches`` hands out lists of ``size`` items, the last one shorter, none empty."""
    assert [[0, 1, 2], [3, 4, 5], [6]] == list(batches(range(7), 3))
    assert [] == list(batches([], 3))
    assert [ITEMS_PER_STEP] * 2 == [len(b) for b in batches(range(50))]
