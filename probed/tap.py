"""``GET /api/v1/streams/NAME/tap``: every event a stream watcher receives, live, with its lag.

The tap subscribes to the :class:`~probed.stream.hub.Hub`, which gets every event
of a stream's primary connection. The hub's callback only appends the
:class:`~probed.stream.hub.ReceivedEvent` to the client's bounded queue (or counts it
dropped) and never waits, so a slow tap client cannot slow the watcher; with no
client tapping a stream the hub finds no subscriber, and the watcher only stores what
it computed anyway on the event. It fills in the event's ``lag``, ``offset``, ``seq``
and ``verdict`` right after publishing it, in the same step, so by the time the
handler formats the queued event (a later step of the loop) they are set.

The response is ``text/event-stream``:

``event: hello``
    ``{"stream": NAME, "queue": N}`` once, when the subscription is in place.
``event: tap``
    one per event: ``{"stream", "at" (our wall clock at receipt, Unix seconds),
    "seq" (null: unsequenced), "id", "type", "lag_ms" (the lag as the watcher
    accounted it: receipt minus the stamp moved onto our clock; negative beyond the
    clock's uncertainty; null: untimed, or no clock estimate yet), "offset_ms" (the
    clock offset, target minus ours, taken off the stamp; null: none applied),
    "verdict" (``new``, ``duplicate``, ``out_of_order``, ``late``, ``reset``; null:
    unsequenced)}``.
``event: dropped``
    ``{"dropped": n, "dropped_total": N}`` before the next events whenever the
    client's queue (:data:`QUEUE_EVENTS` events, :data:`QUEUE_BYTES` of event data)
    was full and ``n`` events were left out.
``event: end``
    ``{"reason": "stream removed" | "daemon stopping"}``, then the response ends.

A comment every :data:`HEARTBEAT` seconds keeps proxies from closing a quiet tap.
At most :data:`MAX_TAP_CLIENTS` taps are open at once (beyond: 429); a client that
takes nothing for :data:`WRITE_TIMEOUT` seconds is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

import structlog
from aiohttp import web

from probed.eventloop import wait_set
from probed.store import ResultStore
from probed.stream.hub import Hub, ReceivedEvent

__all__ = [
    "HEARTBEAT",
    "MAX_TAP_CLIENTS",
    "QUEUE_BYTES",
    "QUEUE_EVENTS",
    "WRITE_TIMEOUT",
    "TapClient",
    "Taps",
    "tap_record",
]

_log = structlog.get_logger("probed.tap")

MAX_TAP_CLIENTS = 8
"""Taps open at once, over all streams (each costs a JSON encoding per event on the loop)."""
QUEUE_EVENTS = 1000
"""Events one client may have waiting; more are dropped and counted."""
QUEUE_BYTES = 4 << 20
"""Event data (and ids) one client may have waiting, so big events cannot pile up memory."""
HEARTBEAT = 15.0
"""Seconds of silence after which a comment is sent."""
WRITE_TIMEOUT = 30.0
"""Seconds a client may take nothing before it is disconnected."""
_POLL = 1.0
"""Seconds between checks that the client is still there and the stream still watched."""
_ID_CHARS = 200
_TYPE_CHARS = 100


def tap_record(received: ReceivedEvent) -> dict[str, Any]:
    """What one ``tap`` event says about ``received`` (see the module docs)."""
    lag, offset, verdict = received.lag, received.offset, received.verdict
    return {
        "stream": received.stream,
        "at": round(received.received_wall, 6),
        "seq": received.seq,
        "id": received.event.id[:_ID_CHARS],
        "type": received.event.event[:_TYPE_CHARS],
        "lag_ms": None if lag is None else round(lag * 1000, 3),
        "offset_ms": round(offset * 1000, 3) if offset else None,
        "verdict": None if verdict is None else verdict.value,
    }


def _frame(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class TapClient:
    """One tap connection: its bounded queue of received events and what it dropped."""

    __slots__ = (
        "_bytes",
        "_queue",
        "_unsubscribe",
        "_wake",
        "dropped",
        "dropped_total",
        "end_reason",
        "limit",
        "sent",
        "stream",
        "transport",
        "writing",
    )

    def __init__(self, hub: Hub, stream: str) -> None:
        self.stream = stream
        self.limit = QUEUE_EVENTS
        self._queue: deque[ReceivedEvent] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self.dropped = 0
        """Events left out since the client was last told."""
        self.dropped_total = 0
        self.sent = 0
        self.end_reason: str | None = None
        self.writing = False
        self.transport: asyncio.Transport | None = None
        self._unsubscribe = hub.subscribe(stream, self._on_event)

    def _on_event(self, received: ReceivedEvent) -> None:
        """The hub's callback, in the watcher's task: queue or count, never wait."""
        size = len(received.event.data) + len(received.event.id)
        if len(self._queue) >= self.limit or self._bytes + size > QUEUE_BYTES:
            self.dropped += 1
            self.dropped_total += 1
            return
        self._queue.append(received)
        self._bytes += size
        self._wake.set()

    @property
    def queued(self) -> int:
        """Events waiting to be sent."""
        return len(self._queue)

    def drain(self) -> list[ReceivedEvent]:
        """Take every queued event."""
        batch = list(self._queue)
        self._queue.clear()
        self._bytes = 0
        self._wake.clear()
        return batch

    async def wait(self, seconds: float) -> None:
        """Until an event is queued, the tap is ended, or ``seconds`` passed."""
        await wait_set(self._wake, time.monotonic() + seconds)

    def end(self, reason: str) -> None:
        """Make the handler send ``end`` and return; a client that takes nothing is cut."""
        if self.end_reason is None:
            self.end_reason = reason
        self._wake.set()
        if self.writing and self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Stop receiving events."""
        self._unsubscribe()
        self._queue.clear()


class Taps:
    """The open taps of a daemon and the request handler that opens one."""

    def __init__(self, hub: Hub, store: ResultStore) -> None:
        self._hub = hub
        self._store = store
        self.clients: list[TapClient] = []

    def close_all(self, reason: str) -> None:
        """End every open tap (the daemon is stopping)."""
        for client in list(self.clients):
            client.end(reason)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/streams/{name}/tap``."""
        name = request.match_info["name"]
        streams = self._store.streams
        if name not in streams:
            known = ", ".join(sorted(streams)) or "none"
            error = f"unknown stream {name[:100]!r} (streams: {known})"
            return web.json_response({"status": "error", "error": error}, status=404)
        if len(self.clients) >= MAX_TAP_CLIENTS:
            error = f"too many tap clients ({len(self.clients)} open, at most {MAX_TAP_CLIENTS})"
            return web.json_response(
                {"status": "error", "error": error}, status=429, headers={"Retry-After": "5"}
            )
        client = TapClient(self._hub, name)
        client.transport = request.transport
        self.clients.append(client)
        _log.info("tap_opened", stream=name, clients=len(self.clients))
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await resp.prepare(request)
            await self._write(
                client, resp, _frame("hello", {"stream": name, "queue": client.limit})
            )
            await self._serve(client, resp)
        except ConnectionError:
            client.end_reason = client.end_reason or "client gone"
        except TimeoutError:
            client.end_reason = client.end_reason or "client took nothing"
        finally:
            client.close()
            self.clients.remove(client)
            _log.info(
                "tap_closed",
                stream=name,
                reason=client.end_reason,
                sent=client.sent,
                dropped=client.dropped_total,
            )
        return resp

    async def _serve(self, client: TapClient, resp: web.StreamResponse) -> None:
        """Send queued events until the tap ends."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            await client.wait(_POLL)
            transport = client.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the tap client went away")
            if client.stream not in self._store.streams:
                client.end("stream removed")
            if client.end_reason is not None:
                await self._write(client, resp, _frame("end", {"reason": client.end_reason}))
                return
            batch = client.drain()
            if not batch and not client.dropped:
                if loop.time() - quiet_since >= HEARTBEAT:
                    await self._write(client, resp, b": heartbeat\n\n")
                    quiet_since = loop.time()
                continue
            parts = []
            if client.dropped:
                dropped = {"dropped": client.dropped, "dropped_total": client.dropped_total}
                parts.append(_frame("dropped", dropped))
                client.dropped = 0
            parts.extend(_frame("tap", tap_record(r)) for r in batch)
            await self._write(client, resp, b"".join(parts))
            client.sent += len(batch)
            quiet_since = loop.time()

    @staticmethod
    async def _write(client: TapClient, resp: web.StreamResponse, data: bytes) -> None:
        client.writing = True
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await resp.write(data)
        finally:
            client.writing = False
