"""Work in steps: long synchronous work that lets the event loop take a turn between steps.

A piece of work that would hold the loop for milliseconds (the evaluation of 500 streams)
is written as a generator that ``yield``s at its checkpoints and returns its result. Run
it with ``at_once`` where nothing else waits (tests, a command), or with ``in_slices`` on
the loop: between checkpoints, once ``slice_seconds`` of monotonic time have gone since the
last turn, it awaits ``asyncio.sleep(0)`` so that timers and I/O run before it goes on.

A generator must leave shared state consistent at every ``yield``: what the loop runs
meanwhile (a reload, a stream going away) may change what it reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Generator
from typing import TypeAlias, TypeVar

__all__ = ["Steps", "TurnCount", "TurnShare", "at_once", "in_slices"]

_T = TypeVar("_T")

Steps: TypeAlias = Generator[None, None, _T]
"""Work that yields at its checkpoints and returns a ``T``."""


def at_once(steps: Steps[_T]) -> _T:
    """Run ``steps`` to the end without handing the loop back; its result."""
    while (done := _step(steps)) is None:
        pass
    result: _T = done.value
    return result


async def in_slices(steps: Steps[_T], slice_seconds: float) -> _T:
    """Run ``steps``, letting the loop turn once each slice of ``slice_seconds`` is used up."""
    since = time.perf_counter()
    try:
        while (done := _step(steps)) is None:
            if time.perf_counter() - since >= slice_seconds:
                await asyncio.sleep(0)
                since = time.perf_counter()
    finally:
        steps.close()
    result: _T = done.value
    return result


def _step(steps: Steps[_T]) -> StopIteration | None:
    """Run ``steps`` to its next checkpoint; how it ended (holding its result), if it did."""
    try:
        next(steps)
    except StopIteration as done:
        return done
    return None


class TurnShare:
    """How much of each event loop turn one kind of work may take, over every task doing it.

    Work in many tasks that become ready together (500 streams each handed a backlog in
    the same turn) is bounded per task by slicing, but not per turn: the loop runs every
    ready task before it looks at its timers again. Tasks that share a ``TurnShare``
    check ``open()`` before a slice and report what it took with ``use()``; once
    ``per_turn`` seconds are used, the others wait for ``next_turn()``. The share is
    renewed by a callback the first ``use()`` of a turn puts at the end of the loop's
    queue; the task that used it last is queued right behind that callback, so it keeps the
    share until its work is done, and the others follow in the order they came (first
    come, first served). A slice always gets one unit of work done: with ``per_turn`` 0
    every turn does one. A share may count units instead of seconds (connections started);
    ``TurnCount`` does, and queues its waiters.
    """

    __slots__ = ("_renewing", "_used", "per_turn")

    def __init__(self, per_turn: float) -> None:
        self.per_turn = per_turn
        self._used = 0.0
        self._renewing = False

    def open(self) -> bool:
        """Whether a slice may start in this turn."""
        return self._used == 0.0 or self._used < self.per_turn

    def left(self) -> float:
        """Seconds of this turn's share not used yet (0 or less: stop after one unit)."""
        return self.per_turn - self._used

    def use(self, seconds: float) -> None:
        """Count ``seconds`` of work done in this turn (or units, for a share that counts)."""
        self._used += seconds if seconds > 0.0 else 1e-9
        self._renew_soon()

    def _renew_soon(self) -> None:
        if not self._renewing:
            self._renewing = True
            asyncio.get_running_loop().call_soon(self._renew)

    def _renew(self) -> None:
        self._used = 0.0
        self._renewing = False

    async def next_turn(self) -> None:
        """Return once a slice may start (at once if it may now)."""
        # one yield per turn keeps the waiters in the loop's own queue, in the order they
        # came; an Event would wake them all at once, the very burst this avoids
        while not self.open():  # noqa: ASYNC110
            await asyncio.sleep(0)


class TurnCount(TurnShare):
    """A share of each turn counted in units (connections started or ended) whose waiters
    queue: each renewal wakes the next ``per_turn`` of them (one, with 0), in the order they
    came, so a waiting task is woken once, in the turn it may go. ``TurnShare.next_turn``
    yields every turn instead, a task step per waiter per turn: hundreds of streams waiting
    to reconnect would fill each turn they wait through with steps that only wait again.

    A woken waiter goes without asking again: its caller ``use``s the share and does its
    unit of work. Its place in the turn it is woken for is taken from the moment it is woken
    (a task arriving meanwhile finds the share used), and a waiter cancelled before its turn
    takes none."""

    __slots__ = ("_waiters",)

    def __init__(self, per_turn: float) -> None:
        super().__init__(per_turn)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def open(self) -> bool:
        return not self._waiters and super().open()

    async def next_turn(self) -> None:
        """Return once a unit may start: at once if it may now, else in its own turn."""
        if self.open():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._renew_soon()  # whoever used this turn's share may never use another
        await waiter

    def _renew(self) -> None:
        super()._renew()
        waiters, woken = self._waiters, 0
        while waiters and woken < max(1, int(self.per_turn)):
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter takes no place
                waiter.set_result(None)
                woken += 1
        if woken:
            self._used = float(woken)
        if waiters:
            self._renew_soon()  # after the woken ones have run
