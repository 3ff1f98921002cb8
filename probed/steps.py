"""Work in steps: long synchronous work that lets the event loop take a turn between steps.

A piece of work that would hold the loop for milliseconds (the evaluation of 500 streams)
is written as a generator that ``yield``s at its checkpoints and returns its result. Run
it with ``at_once`` where nothing else waits (tests, a command), or with ``in_slices`` on
the loop: between checkpoints, once ``slice_seconds`` of monotonic time have gone since the
last turn, it leaves the loop to the rest for ``TURN_SECONDS`` (a timer, not
``asyncio.sleep(0)``) so that timers and I/O run, and what they start, before it goes on.

A generator must leave shared state consistent at every ``yield``: what the loop runs
meanwhile (a reload, a stream going away) may change what it reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from typing import TypeAlias, TypeVar

__all__ = [
    "ITEMS_PER_STEP",
    "SLICE_SECONDS",
    "TURN_SECONDS",
    "Steps",
    "TurnCount",
    "TurnShare",
    "TurnWindow",
    "at_once",
    "batches",
    "in_slices",
]

_T = TypeVar("_T")

Steps: TypeAlias = Generator[None, None, _T]
"""Work that yields at its checkpoints and returns a ``T``."""

SLICE_SECONDS = 0.002
"""Work done on the loop before it may turn, by default (an evaluation, a scrape's copy)."""

TURN_SECONDS = 0.002
"""How long sliced work leaves the loop to the rest between two slices. A due probe run
takes two turns of the loop to start (its timer fires and makes its task, the task starts;
one on uvloop) and an arriving event two or three: after ``asyncio.sleep(0)`` the work
would come back at the next turn and take a whole slice before each of them (a run 10-15
ms late in the soak, with 2-5 ms slices, when a run took three turns). Behind a timer it
comes back once that chain has run. 2 ms, as libuv's timers (uvloop) count whole
milliseconds from the last whole one: 1 ms there is 0-1 ms. It costs the work wall time
(an evaluation of 500 streams takes twice as long), not CPU."""

ITEMS_PER_STEP = 25
"""Probes or streams a stepped piece of work handles between two checkpoints (the signals
of an evaluation, the live-updates rule, a scrape's copy of the store): each a few tens of
microseconds, so a step stays well inside ``SLICE_SECONDS``."""


def batches(items: Iterable[_T], size: int = ITEMS_PER_STEP) -> Iterator[list[_T]]:
    """``items`` in lists of ``size`` (the last one shorter): work on one between checkpoints."""
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def at_once(steps: Steps[_T]) -> _T:
    """Run ``steps`` to the end without handing the loop back; its result."""
    while (done := _step(steps)) is None:
        pass
    result: _T = done.value
    return result


async def in_slices(steps: Steps[_T], slice_seconds: float = SLICE_SECONDS) -> _T:
    """Run ``steps``, letting the loop turn once each slice of ``slice_seconds`` is used up."""
    since = time.perf_counter()
    try:
        while (done := _step(steps)) is None:
            if time.perf_counter() - since >= slice_seconds:
                await asyncio.sleep(TURN_SECONDS)
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
    queue. A slice always gets one unit of work done: with ``per_turn`` 0 every turn does
    one. A share may count units instead of seconds (connections started): ``TurnCount``.

    Waiters queue, in the order they came, and each renewal wakes the first of them: a
    waiting task is woken once, in the turn it may go, and goes without asking again (its
    slice gets at least one unit done). Waking every waiter every turn to look again was a
    task step per waiter per turn: hundreds of streams waiting through a backlog filled each
    turn with steps that only waited again. The task that used the share last keeps its
    place at the head when it waits again, so it works on until its work is done, and the
    others follow first come, first served. Work that runs in a callback (not a task) may
    take what is left of a turn's share without queueing (``open()``).
    """

    __slots__ = ("_holder", "_renewing", "_used", "_waiters", "per_turn")

    def __init__(self, per_turn: float) -> None:
        self.per_turn = per_turn
        self._used = 0.0
        self._renewing = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._holder: asyncio.Task[object] | None = None

    def open(self) -> bool:
        """Whether a slice may start in this turn."""
        return self._used == 0.0 or self._used < self.per_turn

    def left(self) -> float:
        """Seconds of this turn's share not used yet (0 or less: stop after one unit)."""
        return self.per_turn - self._used

    def use(self, seconds: float) -> None:
        """Count ``seconds`` of work done in this turn (or units, for a share that counts)."""
        self._used += seconds if seconds > 0.0 else 1e-9
        self._holder = asyncio.current_task()
        self._renew_soon()

    async def next_turn(self) -> None:
        """Return once a slice may start: at once if it may now, else in its own turn."""
        if self.open():
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._keeps_place():
            self._waiters.appendleft(waiter)
            self._renew_soon()
        else:
            self.queue(waiter)
        await waiter

    def queue(self, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` in its own turn, after those queued before it: a task that
        waits on a future of its own is woken when it may go, not first to queue itself."""
        self._waiters.append(waiter)
        self._renew_soon()  # whoever used this turn's share may never use another

    def _keeps_place(self) -> bool:
        return self._holder is asyncio.current_task()  # always a task: next_turn is awaited

    def _renew_soon(self) -> None:
        if not self._renewing:
            self._renewing = True
            asyncio.get_running_loop().call_soon(self._renew)

    def _renew(self) -> None:
        self._used = 0.0
        self._renewing = False
        self._wake_next()
        if self._waiters:
            self._renew_soon()  # after the woken ones have run

    def _wake_next(self) -> None:
        """At a renewal: wake the waiters whose turn it is (the first one)."""
        self._wake(1)

    def _wake(self, most: int) -> int:
        """Wake the first ``most`` waiters still waiting; how many were woken."""
        waiters, woken = self._waiters, 0
        while waiters and woken < most:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter takes no place
                waiter.set_result(None)
                woken += 1
        return woken


class TurnWindow(TurnShare):
    """A share of each turn in seconds of the turn itself: from the start of the turn's first
    slice to now, whatever ran between the slices.

    Slices done in callbacks that come together (hundreds of connections readable in one
    poll of the loop) leave out what comes around each of them: the connection's read, its
    framing, its decoding. Counted slice by slice, 250 streams each handed one event took
    2-3 ms of a 4 ms share and 7-12 ms of the loop, in one go (``bench/stream_storm.py
    --backlog 1``). Counted as a window, the share is used up once ``per_turn`` seconds have
    gone since the turn's first slice began, what ran between its slices included, and the
    rest waits for later turns."""

    __slots__ = ("_since",)

    def __init__(self, per_turn: float) -> None:
        super().__init__(per_turn)
        self._since = 0.0
        """``time.perf_counter()`` when this turn's first slice began."""

    def open(self) -> bool:
        return self._used == 0.0 or time.perf_counter() - self._since < self.per_turn

    def left(self) -> float:
        if self._used == 0.0:
            return self.per_turn
        return self.per_turn - (time.perf_counter() - self._since)

    def use(self, seconds: float) -> None:
        """Count a slice of ``seconds`` that ends now: the turn's share is used from the
        start of its first slice to now."""
        now = time.perf_counter()
        if self._used == 0.0:  # the turn's first slice: the window opens where it began
            self._since = now - seconds
        super().use(now - self._since - self._used)  # what the window grew by


class TurnCount(TurnShare):
    """A share of each turn counted in units (connections started or ended): each renewal
    wakes the next ``per_turn`` waiters (one, with 0), in the order they came, and nobody
    starts a unit while others wait.

    A woken waiter goes without asking again: its caller ``use``s the share and does its
    unit of work. Its place in the turn it is woken for is taken from the moment it is woken
    (a task arriving meanwhile finds the share used), and a waiter cancelled before its turn
    takes none."""

    __slots__ = ()

    def open(self) -> bool:
        return not self._waiters and super().open()

    def _keeps_place(self) -> bool:
        return False  # one unit per task: whoever came first goes first

    def _wake_next(self) -> None:
        if woken := self._wake(max(1, int(self.per_turn))):
            self._used = float(woken)
