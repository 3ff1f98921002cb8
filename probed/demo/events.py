"""The demo target's events: sequence numbers, the delayed outbox, replay and fan-out.

Events enter by ``EventBus.enqueue`` (the outbox endpoint, ``DemoTarget.publish``
and the import jobs), are stamped and numbered, wait ``stream_delay`` and meet
the drop, duplicate and reorder faults, then land in the replay buffer and in
every open stream's queue (a ``Subscriber``). Everything is bounded.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from probed.demo.faults import Faults, IdStyle
from probed.records import record

__all__ = ["Event", "EventBus", "OutboxFull", "Subscriber"]

_MAX_EVENT_BYTES: Final = 1024 * 1024
_MAX_OUTBOX_EVENTS: Final = 100_000
_MAX_OUTBOX_BYTES: Final = 64 * 1024 * 1024
_MAX_REPLAY: Final = 10_000
_MAX_REPLAY_BYTES: Final = 64 * 1024 * 1024
_MAX_SUBSCRIBER_QUEUE: Final = 2 * _MAX_REPLAY
_MAX_TYPE: Final = 128
_MAX_LAST_EVENT_ID: Final = 64
_RECENT_EVENTS: Final = 100

_log = structlog.get_logger("probed.demo")


class OutboxFull(RuntimeError):
    """Too many events wait for their ``stream_delay``: the outbox takes no more."""


def _stamp(wall: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-23T10:47:37.123Z``."""
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _check_event_type(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _MAX_TYPE
        or any(char < " " or char == "\x7f" for char in value)
    ):
        raise ValueError(f"'type' must be a string of 1 to {_MAX_TYPE} printable characters")
    return value


@record
class Event:
    """One enqueued event; ``body`` is its compact JSON object, ``size`` its UTF-8 length."""

    seq: int
    type: str
    enqueued_at: str
    composite_id: str
    body: str
    size: int

    def text(self, pad: str) -> str:
        """The JSON object, with a ``"pad"`` field holding ``pad`` if that is not empty."""
        return f'{self.body[:-1]},"pad":"{pad}"}}' if pad else self.body

    def sse_frame(self, id_style: IdStyle, pad: str) -> bytes:
        """The event as an SSE block: ``id``, ``event`` and ``data`` lines, a blank line."""
        event_id = self.composite_id if id_style == "composite" else str(self.seq)
        return f"id: {event_id}\nevent: {self.type}\ndata: {self.text(pad)}\n\n".encode()


class Subscriber:
    """One open stream: the events waiting to be sent, and the wake-up of its writer."""

    __slots__ = ("closed", "queue", "types", "wakeup")

    def __init__(self, types: frozenset[str] | None) -> None:
        self.types = types
        self.queue: deque[Event] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False

    def offer(self, event: Event) -> None:
        """Queue ``event`` if its type is wanted; a consumer too far behind is cut off."""
        if self.closed or (self.types is not None and event.type not in self.types):
            return
        if len(self.queue) >= _MAX_SUBSCRIBER_QUEUE:
            _log.warning("demo_stream_overflow", queued=len(self.queue))
            self.close()
            return
        self.queue.append(event)
        self.wakeup.set()

    def close(self) -> None:
        """Ask the writer to end the stream (it wakes at once)."""
        self.closed = True
        self.wakeup.set()


class EventBus:
    """Sequence numbers, the delayed outbox, the replay buffer and the fan-out to streams.

    Everything runs on the event loop without tasks: the outbox is a FIFO of
    ``(due, event)`` with one timer for its head, so events are published in
    enqueue order ``stream_delay`` seconds (or more) after they were enqueued.
    """

    def __init__(self, faults: Callable[[], Faults], rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        self._seq = 0
        self._second = 0
        self._in_second = -1
        self._outbox: deque[tuple[float, Event]] = deque()
        self._outbox_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._held: tuple[Event, int] | None = None
        self._replay: deque[Event] = deque()
        self._replay_bytes = 0
        self._subscribers: set[Subscriber] = set()
        self._pad = ""

    @property
    def subscriber_count(self) -> int:
        """Streams (SSE and WebSocket) open right now."""
        return len(self._subscribers)

    def enqueue(self, event_type: str, payload: Mapping[str, Any]) -> Event:
        """Stamp, number and queue an event; it is published after ``stream_delay``.

        ``ValueError`` if the type or payload is unusable, ``OutboxFull`` if too
        many events wait.
        """
        loop = asyncio.get_running_loop()
        _check_event_type(event_type)
        if len(self._outbox) >= _MAX_OUTBOX_EVENTS or self._outbox_bytes >= _MAX_OUTBOX_BYTES:
            raise OutboxFull("the outbox is full: too many events wait for stream_delay")
        faults = self._faults()
        wall = time.time() + faults.clock_offset
        seq = self._seq + 1
        enqueued_at = _stamp(wall)
        try:
            body = json.dumps(
                {"seq": seq, "type": event_type, "enqueued_at": enqueued_at, "payload": payload},
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
            )
            size = len(body.encode())
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise ValueError(f"payload must be strict JSON of valid text: {exc}") from None
        if size > _MAX_EVENT_BYTES:
            raise ValueError(f"event must be at most {_MAX_EVENT_BYTES} bytes of JSON")
        second = math.floor(wall)
        self._in_second = self._in_second + 1 if second == self._second else 0
        self._second = second
        self._seq = seq
        event = Event(seq, event_type, enqueued_at, f"{second}:{self._in_second}", body, size)
        due = loop.time() + faults.stream_delay
        if self._outbox:
            due = max(due, self._outbox[-1][0])
        self._outbox.append((due, event))
        self._outbox_bytes += size
        if self._timer is None:
            self._timer = loop.call_at(self._outbox[0][0], self._release)
        return event

    def subscribe(self, types: frozenset[str] | None, last_event_id: str | None) -> Subscriber:
        """A new stream, first fed the buffered events after ``last_event_id``."""
        subscriber = Subscriber(types)
        for event in self._replay_after(last_event_id):
            subscriber.offer(event)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream that ended."""
        subscriber.close()
        self._subscribers.discard(subscriber)

    def recent(self, types: frozenset[str] | None) -> list[Event]:
        """The last published events (at most ``_RECENT_EVENTS``) of the wanted types."""
        events = [e for e in self._replay if types is None or e.type in types]
        return events[-_RECENT_EVENTS:]

    def pad(self, size: int) -> str:
        """``size`` bytes of padding (the last one is kept for the next event)."""
        if len(self._pad) != size:
            self._pad = "x" * size
        return self._pad

    def wake_all(self) -> None:
        """Make every stream writer look at the faults again."""
        for subscriber in self._subscribers:
            subscriber.wakeup.set()

    def close_streams(self) -> None:
        """End every open stream (cleanly: each writer finishes its response)."""
        for subscriber in self._subscribers:
            subscriber.close()

    def shutdown(self) -> None:
        """End every stream and drop what waits in the outbox or is held back."""
        self.close_streams()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._outbox.clear()
        self._outbox_bytes = 0
        self._held = None

    def _replay_after(self, last_event_id: str | None) -> list[Event]:
        if last_event_id is None:
            return []
        last = last_event_id.strip()
        if not 0 < len(last) <= _MAX_LAST_EVENT_ID:
            return []
        if last.isascii() and last.isdigit():
            after = int(last)
            return [event for event in self._replay if event.seq > after]
        events = list(self._replay)
        for index, event in enumerate(events):
            if event.composite_id == last:
                return events[index + 1 :]
        return []

    def _release(self) -> None:
        """Publish the outbox head (its timer fired) and everything else now due."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        first = True
        while self._outbox and (first or self._outbox[0][0] <= now):
            first = False
            _, event = self._outbox.popleft()
            self._outbox_bytes -= event.size
            self._publish(event)
        if self._outbox:
            self._timer = loop.call_at(self._outbox[0][0], self._release)

    def _publish(self, event: Event) -> None:
        """Apply the drop, duplicate and reorder draws, then deliver."""
        faults = self._faults()
        rng = self._rng
        if faults.drop_ratio > 0.0 and rng.random() < faults.drop_ratio:
            return
        copies = 1
        if faults.duplicate_ratio > 0.0 and rng.random() < faults.duplicate_ratio:
            copies = 2
        if (
            self._held is None
            and faults.reorder_ratio > 0.0
            and rng.random() < faults.reorder_ratio
        ):
            self._held = (event, copies)
            return
        self._deliver(event, copies)
        if self._held is not None:
            held, self._held = self._held, None
            self._deliver(*held)

    def _deliver(self, event: Event, copies: int) -> None:
        self._replay.append(event)
        self._replay_bytes += event.size
        while len(self._replay) > _MAX_REPLAY or self._replay_bytes > _MAX_REPLAY_BYTES:
            self._replay_bytes -= self._replay.popleft().size
        for subscriber in self._subscribers:
            for _ in range(copies):
                subscriber.offer(event)
