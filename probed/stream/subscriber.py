"""One connection slot of a stream watcher: its decoder, its sequence tracker and the state
of its current connection (``probed.stream.watcher`` runs it).

Between reads the slot's task waits (``Subscriber.wait``) for what the connection's own
callback cannot do: the end, a backlog's turn, a deadline (no byte for ``idle``, no event
for ``quiet``). The deadlines are watched by a timer armed from the last byte (event); when
it fires and finds that one came since, it arms itself again for the new deadline, a
callback of the loop instead of a step of the task. Streams connected together get their
servers' heartbeats together, so their deadlines come together: 500 tasks woken in one loop
turn, each to find its stream alive, took 8-16 ms of it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field

from probed.http.wirestream import StreamExchange
from probed.stream.accounting import SequenceTracker
from probed.stream.decoder import Comment, DecodeError, Event, SSEDecoder

__all__ = ["Item", "Rest", "Subscriber"]

Item = Event | Comment
Rest = tuple[list[Item], int, float, float, float, DecodeError | None, int, float, float]
"""``StreamWatcher._deliver``'s arguments after ``sub``, to go on with a chunk."""


@dataclass(slots=True)
class Subscriber:
    """One of a watcher's ``subscribers`` connections to its stream, over its reconnects."""

    index: int
    decoder: SSEDecoder
    tracker: SequenceTracker
    task: asyncio.Task[None] | None = None
    awaiting_first: bool = True
    rate_since: float = 0.0
    """``time.monotonic()`` when the current one-second rate window began."""
    rate_count: int = 0
    """Events and comments received in the current rate window."""
    last_event: float = 0.0
    """``time.monotonic()`` of this connection's last event (or of its start)."""
    pending: Rest | None = None
    """The rest of a chunk whose accounting waits for the next loop turn (``_deliver``)."""
    reply: StreamExchange | None = None
    """The current connection's response, being read."""
    started: float = 0.0
    """``time.monotonic()`` when the current connection attempt began."""
    got_anything: bool = False
    """Whether the current connection delivered an event or comment yet."""
    last_byte: float = 0.0
    """``time.monotonic()`` of the current connection's last read (or of its start)."""
    backlog: deque[tuple[bytes, float]] | None = None
    """Chunks read (with their read times) while accounting waits for a later loop turn;
    None while accounting keeps up (chunks are then accounted as they are read)."""
    wake: asyncio.Future[None] | None = None
    """What the subscriber's task awaits between reads: a backlog, the end, a deadline."""
    idle: float = math.inf
    """Seconds without a byte after which the current connection is stalled."""
    quiet: float = math.inf
    """Seconds without an event after which the current connection delivers nothing."""
    deadline: asyncio.TimerHandle | None = field(default=None, repr=False)
    """The timer watching ``idle`` and ``quiet`` while the task waits."""

    def due(self) -> float:
        """``time.monotonic()`` at which the current connection passes a deadline."""
        return min(self.last_byte + self.idle, self.last_event + self.quiet)

    async def wait(self) -> None:
        """Return when the task has something to do: ``wake_up`` (the connection's end, a
        backlog's turn) or a deadline passed (by ``time.monotonic()``)."""
        wake = self.wake = asyncio.get_running_loop().create_future()
        self._arm(time.monotonic())
        try:
            await wake
        finally:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None
            self.wake = None

    def _arm(self, now: float) -> None:
        # at least 1 ms: libuv's timers (uvloop) count whole milliseconds
        wait = max(self.due() - now, 0.001)
        self.deadline = asyncio.get_running_loop().call_later(wait, self._deadline_came)

    def _deadline_came(self) -> None:
        now = time.monotonic()
        if now >= self.due():
            self.deadline = None
            self.wake_up()
        else:  # a byte (event) came since it was armed: the next deadline, same task step
            self._arm(now)

    def wake_up(self) -> None:
        """Resolve ``wake``, if the task awaits it."""
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
