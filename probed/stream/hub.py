"""Fan-out of received stream events to whoever waits for them.

Each stream watcher publishes what its primary connection receives; reflect
probes wait for their nonce and import probes for their job's progress through
the hub, so no probe run opens a connection of its own. Callbacks run
synchronously in the watcher's task: they must be quick and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from probed.eventloop import wait_set
from probed.netvalues import json_loads
from probed.stream.accounting import Verdict
from probed.stream.decoder import Event

__all__ = ["Arrival", "Hub", "NonceWaiter", "ReceivedEvent"]

_log = structlog.get_logger("probed.hub")
_UNPARSED: Any = object()


class ReceivedEvent:
    """One event as a watcher received it, with our receive times.

    ``lag``, ``offset``, ``seq`` and ``verdict`` are what the watcher's accounting made
    of it. The watcher sets them right after :meth:`Hub.publish`, in the same step: a
    callback sees the defaults, whoever keeps the event and reads it later (the tap) sees
    them. ``lag`` is None for an untimed event and for one the clock could not correct yet.
    """

    __slots__ = (
        "_json", "event", "lag", "offset", "received", "received_wall", "seq", "stream",
        "verdict",
    )  # fmt: skip

    def __init__(self, stream: str, event: Event, received: float, received_wall: float) -> None:
        self.stream = stream
        self.event = event
        self.received = received
        """``time.monotonic()`` at receipt."""
        self.received_wall = received_wall
        """``clock.wall()`` at receipt (only for comparing with the event's own stamps)."""
        self._json: Any = _UNPARSED
        self.lag: float | None = None
        """Receipt minus the event's stamp moved onto our clock (seconds), as accounted."""
        self.offset = 0.0
        """The clock offset (target minus ours) taken off the stamp for ``lag``."""
        self.seq: int | None = None
        self.verdict: Verdict | None = None

    def json(self) -> Any:
        """The event's data parsed as JSON (cached), or ``None`` if it is not JSON.

        JSON nested deeper than ``MAX_JSON_DEPTH`` counts as not JSON.
        """
        if self._json is _UNPARSED:
            try:
                self._json = json_loads(self.event.data)
            except ValueError:
                self._json = None
        return self._json


Callback = Callable[[ReceivedEvent], None]


class Hub:
    """Per-stream lists of callbacks; ``publish`` hands each event to all of them."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Callback]] = {}
        self._connected: dict[str, Callable[[], bool]] = {}

    def subscribe(self, stream: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` for every event of ``stream``; returns the unsubscribe function."""
        subs = self._subs.setdefault(stream, [])
        subs.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                subs.remove(callback)

        return unsubscribe

    def publish(self, received: ReceivedEvent) -> None:
        """Deliver ``received`` to the stream's subscribers; a failing callback is logged."""
        subs = self._subs.get(received.stream)
        if not subs:
            return
        for callback in tuple(subs):
            try:
                callback(received)
            except Exception:
                _log.exception("hub_callback_failed", stream=received.stream)

    def register_stream(self, stream: str, is_connected: Callable[[], bool]) -> None:
        """Let probes ask whether ``stream``'s watcher is connected right now."""
        self._connected[stream] = is_connected

    def unregister_stream(self, stream: str) -> None:
        """Forget a stream removed by a reload."""
        self._connected.pop(stream, None)

    def is_connected(self, stream: str) -> bool | None:
        """Whether the stream's watcher is connected (None if no such stream runs)."""
        probe = self._connected.get(stream)
        return None if probe is None else probe()

    def expect(self, stream: str, nonce: str) -> NonceWaiter:
        """Start waiting for an event whose data contains ``nonce`` (call before injecting)."""
        return NonceWaiter(self, stream, nonce)


class Arrival:
    """When and how often a nonce arrived."""

    __slots__ = ("count", "first", "first_wall")

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.first_wall: float | None = None


class NonceWaiter:
    """Waits for the first event containing a nonce and counts later copies.

    Use as a context manager so the subscription always ends::

        with hub.expect("events", nonce) as waiter:
            ...inject...
            received_at = await waiter.wait(timeout)
    """

    def __init__(self, hub: Hub, stream: str, nonce: str) -> None:
        self.nonce = nonce
        self.arrival = Arrival()
        self._event = asyncio.Event()
        self._unsubscribe = hub.subscribe(stream, self._on_event)

    def _on_event(self, received: ReceivedEvent) -> None:
        if self.nonce not in received.event.data:
            return
        arrival = self.arrival
        arrival.count += 1
        if arrival.first is None:
            arrival.first = received.received
            arrival.first_wall = received.received_wall
            self._event.set()

    async def wait(self, timeout: float) -> float | None:  # noqa: ASYNC109
        """The monotonic time of the first arrival, or ``None`` after ``timeout`` seconds."""
        if timeout > 0:
            await wait_set(self._event, time.monotonic() + timeout)
        return self.arrival.first

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()

    def __enter__(self) -> NonceWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
