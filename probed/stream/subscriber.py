"""One connection slot of a stream watcher: its decoder, its sequence tracker and the state
of its current connection (``probed.stream.watcher`` runs it)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

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

    def wake_up(self) -> None:
        """Resolve ``wake``, if the task awaits it."""
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
