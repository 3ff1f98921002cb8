"""The demo target's streams: the SSE stream, the WebSocket and the outbox endpoint::

    GET  /api/v1/events/stream    SSE (``Last-Event-ID`` replay, ``?types=a,b``)
    GET  /api/v1/events/ws        WebSocket, one JSON text message per event
    POST /api/v1/outbox           enqueue an event (the body is its payload) -> 202

Each open stream is fed from its ``Subscriber`` queue by ``_pump``, which also
sends the SSE heartbeats and honours ``stall`` and ``disconnect_every``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import WSCloseCode, hdrs, web

from probed.demo.events import Event, EventBus, OutboxFull, Subscriber
from probed.demo.faults import Faults
from probed.demo.jsonio import bad_request, json_response, read_json_body

__all__ = ["Streams"]

_MAX_OUTBOX_BODY: Final = 64 * 1024
_WRITE_CHUNK: Final = 256 * 1024
_HEARTBEAT: Final = b": heartbeat\n\n"
_WS_HEARTBEAT: Final = 10.0
_WS_CLOSE_TIMEOUT: Final = 1.0


class Streams:
    """The stream endpoints over one ``EventBus``; ``open`` is false outside start and stop."""

    def __init__(self, bus: EventBus, faults_of: Callable[[], Faults]) -> None:
        self._bus = bus
        self._faults = faults_of
        self.open = False

    def routes(self) -> list[web.RouteDef]:
        """The SSE stream, the WebSocket and ``POST /api/v1/outbox``, in that order."""
        return [
            web.get("/api/v1/events/stream", self._events_stream, allow_head=False),
            web.get("/api/v1/events/ws", self._events_ws, allow_head=False),
            web.post("/api/v1/outbox", self._post_outbox),
        ]

    async def _post_outbox(self, request: web.Request) -> web.Response:
        try:
            body = await read_json_body(request, _MAX_OUTBOX_BODY)
            event = self._bus.enqueue(body.get("type", "outbox.event"), body)
        except OutboxFull:
            return json_response({"error": "outbox_full"}, status=503, headers={"Retry-After": "1"})
        except ValueError as exc:
            return bad_request(str(exc))
        return json_response({"seq": event.seq, "enqueued_at": event.enqueued_at}, status=202)

    async def _events_stream(self, request: web.Request) -> web.StreamResponse:
        """The SSE stream: replay after ``Last-Event-ID``, then live events and heartbeats."""
        bus = self._bus
        types = _parse_types(request.query.get("types"))
        if self._faults().wrong_content_type:
            events = ",".join(event.body for event in bus.recent(types))
            return web.Response(text=f'{{"events":[{events}]}}', content_type="application/json")
        if not self.open:
            return json_response({"error": "service_unavailable"}, status=503)
        subscriber = bus.subscribe(types, request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(
            headers={
                hdrs.CONTENT_TYPE: "text/event-stream",
                hdrs.CACHE_CONTROL: "no-cache",
                "X-Accel-Buffering": "no",
            }
        )

        async def send_events(events: list[Event], faults: Faults) -> None:
            pad = bus.pad(faults.oversize_event)
            chunk: list[bytes] = []
            size = 0
            for event in events:
                frame = event.sse_frame(faults.id_style, pad)
                chunk.append(frame)
                size += len(frame)
                if size >= _WRITE_CHUNK:
                    await response.write(b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                await response.write(b"".join(chunk))

        async def send_heartbeat() -> None:
            await response.write(_HEARTBEAT)

        try:
            await response.prepare(request)
            await _pump(subscriber, self._faults, send_events, send_heartbeat)
        except ConnectionResetError:
            pass
        finally:
            bus.unsubscribe(subscriber)
        response.force_close()
        return response

    async def _events_ws(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket: one text message (the event's JSON object) per delivered event."""
        bus = self._bus
        if not self.open:
            return json_response({"error": "service_unavailable"}, status=503)
        ws = web.WebSocketResponse(heartbeat=_WS_HEARTBEAT, timeout=_WS_CLOSE_TIMEOUT)
        subscriber = bus.subscribe(_parse_types(request.query.get("types")), None)

        async def send_events(events: list[Event], faults: Faults) -> None:
            pad = bus.pad(faults.oversize_event)
            for event in events:
                await ws.send_str(event.text(pad))

        try:
            await ws.prepare(request)
            reader = asyncio.create_task(_read_ws(ws, subscriber), name="probed-demo-ws-reader")
            try:
                await _pump(subscriber, self._faults, send_events, None)
            except ConnectionResetError:
                pass
            finally:
                await ws.close(code=WSCloseCode.GOING_AWAY)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            bus.unsubscribe(subscriber)
        return ws


def _parse_types(raw: str | None) -> frozenset[str] | None:
    """``?types=a,b`` as a set; ``None`` (every type) when absent or empty."""
    if raw is None:
        return None
    types = frozenset(part.strip() for part in raw.split(",") if part.strip())
    return types or None


async def _read_ws(ws: web.WebSocketResponse, subscriber: Subscriber) -> None:
    """Read (and ignore) client messages so pings, pongs and the client's close are seen."""
    try:
        async for _ in ws:
            pass
    finally:
        subscriber.close()


async def _pump(
    subscriber: Subscriber,
    faults_of: Callable[[], Faults],
    send_events: Callable[[list[Event], Faults], Awaitable[None]],
    send_heartbeat: Callable[[], Awaitable[None]] | None,
) -> None:
    """Feed one stream until it is closed or ``disconnect_every`` ends it.

    Sends queued events (in batches) and heartbeats, nothing at all while
    ``stall`` holds; sleeps on the subscriber's wake-up in between.
    """
    loop = asyncio.get_running_loop()
    opened = last_beat = loop.time()
    while not subscriber.closed:
        subscriber.wakeup.clear()
        faults = faults_of()
        now = loop.time()
        waits: list[float] = []
        if faults.disconnect_every > 0.0:
            left = opened + faults.disconnect_every - now
            if left <= 0.0:
                return
            waits.append(left)
        if not faults.stall:
            if subscriber.queue:
                events = list(subscriber.queue)
                subscriber.queue.clear()
                await send_events(events, faults)
                await asyncio.sleep(0)
                continue
            if send_heartbeat is not None:
                due = last_beat + faults.heartbeat_interval
                if now >= due:
                    last_beat = now
                    await send_heartbeat()
                    continue
                waits.append(due - now)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(waits) if waits else None):
                await subscriber.wakeup.wait()
