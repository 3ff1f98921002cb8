"""The stream benchmark's reference: a minimal aiohttp read loop, for streams and for reflect.

Part of ``bench/streams.py`` (imported as ``streams_raw``; ``bench/`` is the
script directory). ``RawStreams`` runs one loop per stream; ``client_reflect_raw``
measures reflect with a raw client. ``EventSink`` and ``Identity`` are what
both stream clients, this one and ``streams_probed.ProbedStreams``, offer the
bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from _common import LOOPBACK, NAN, num, raise_nofile, summary_ms


class EventSink(Protocol):
    """Where the stream clients hand each event: ``RawStreams`` and ``ProbedStreams`` call it.

    ``data`` is the event's data parsed as JSON (None if it is not JSON); ``wall``
    the client's receive time (``time.time()`` / ``ReceivedEvent.received_wall``).
    ``stream_side_by_side.py`` keeps a per-``seq`` sink of its own.
    """

    def record(self, wall: float, data: object) -> None: ...


class SseData:
    """The raw clients' SSE parsing: split events on ``b"\\n\\n"``, keep their ``data:`` lines.

    One per connection; ``feed`` each chunk as it arrives.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """What follows ``data:`` on each line of the events ``chunk`` completes, in order."""
        self._buf += chunk
        if b"\n\n" not in self._buf:
            return []
        *blocks, self._buf = self._buf.split(b"\n\n")
        return [
            line[5:] for block in blocks for line in block.split(b"\n") if line.startswith(b"data:")
        ]


Identity = tuple[bool, str | int, int]
"""(connected, connection id, reconnects) of one stream: unchanged means it stayed up."""


class RawStreams:
    """The minimal aiohttp read loop, one task per stream."""

    def __init__(self, url: str, streams: int, recorder: EventSink) -> None:
        self.url = url
        self.recorder = recorder
        self.up = [False] * streams
        self.conn_no = [0] * streams
        self.errors: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []

    async def _stream(self, session: aiohttp.ClientSession, index: int, stop_at: float) -> None:
        record = self.recorder.record
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30.0)
        headers = {"Accept": "text/event-stream"}
        while time.monotonic() < stop_at:
            try:
                async with session.get(self.url, headers=headers, timeout=timeout) as resp:
                    if resp.status != 200:
                        self.errors[f"status {resp.status}"] += 1
                    else:
                        self.up[index] = True
                        self.conn_no[index] += 1
                        events = SseData()
                        async for chunk in resp.content.iter_any():
                            wall = time.time()
                            for data in events.feed(chunk):
                                record(wall, json.loads(data))
                        self.errors["eof"] += 1
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                self.errors[type(exc).__name__] += 1
            finally:
                self.up[index] = False
            await asyncio.sleep(1.0)

    async def run(
        self, body: Callable[[], Awaitable[dict[str, Any]]], stop_at: float
    ) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._tasks = [
                asyncio.create_task(self._stream(session, i, stop_at)) for i in range(len(self.up))
            ]
            try:
                return await body()
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def connected(self) -> int:
        return sum(self.up)

    def identities(self) -> list[Identity]:
        return [(up, n, n) for up, n in zip(self.up, self.conn_no, strict=True)]

    def checks(self) -> dict[str, Any]:
        return {"errors": dict(self.errors)}


async def client_reflect_raw(args: argparse.Namespace) -> dict[str, Any]:
    """The reflect measurement with a minimal aiohttp client: POST the outbox, read raw SSE.

    Same target, same body shape, same connection policy for the inject
    (``--fresh-connection``), same clock: lag = receive time - time just before
    the POST (monotonic), overhead = lag - the target's configured delay.
    """
    raise_nofile()
    base_url = f"http://{LOOPBACK}:{args.port}"
    loop = asyncio.get_running_loop()
    waiters: dict[str, asyncio.Future[float]] = {}
    connected = asyncio.Event()

    async def read_stream(session: aiohttp.ClientSession) -> None:
        url = f"{base_url}/api/v1/events/stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(url, headers={"Accept": "text/event-stream"}, timeout=timeout) as r:
            connected.set()
            events = SseData()
            async for chunk in r.content.iter_any():
                now = time.monotonic()
                for data in events.feed(chunk):
                    payload = json.loads(data).get("payload")
                    nonce = payload.get("nonce") if isinstance(payload, dict) else None
                    waiter = waiters.pop(nonce, None) if isinstance(nonce, str) else None
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)

    async def one(inject: aiohttp.ClientSession, seq: int) -> tuple[float, float] | None:
        nonce = secrets.token_hex(12)
        waiter: asyncio.Future[float] = loop.create_future()
        waiters[nonce] = waiter
        body = json.dumps(
            {"type": "probe.reflect", "nonce": nonce, "sent_at": "", "seq": seq}
        ).encode()
        t0 = time.monotonic()
        async with inject.post(
            f"{base_url}/api/v1/outbox", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            await resp.read()
        injected = time.monotonic() - t0
        try:
            received = await asyncio.wait_for(waiter, 10.0)
        except TimeoutError:
            waiters.pop(nonce, None)
            return None
        return received - t0, injected

    control = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0))
    async with control, control.get(f"{base_url}/-/admin/faults") as resp:
        faults: object = await resp.json()
    delay = num(faults.get("stream_delay")) if isinstance(faults, dict) else NAN
    fresh = args.fresh_connection == "yes"
    results: list[tuple[float, float] | None] = []
    async with (
        aiohttp.ClientSession() as stream_session,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=fresh, limit=0),
            timeout=aiohttp.ClientTimeout(total=15.0),
        ) as inject,
    ):
        reader = asyncio.create_task(read_stream(stream_session))
        try:
            async with asyncio.timeout(60.0 + args.runs / args.rate):
                await connected.wait()
                for i in range(args.warmup_runs):  # uncounted
                    await one(inject, i)
                t0 = time.monotonic()
                tasks: list[asyncio.Task[tuple[float, float] | None]] = []
                for i in range(args.runs):
                    await asyncio.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
                    tasks.append(asyncio.create_task(one(inject, args.warmup_runs + i)))
                results = list(await asyncio.gather(*tasks))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    done = [r for r in results if r is not None]
    return {
        "fresh_connection": fresh,
        "delay": delay,
        "runs": len(results),
        "lost": len(results) - len(done),
        "overhead_ms": summary_ms([lag - delay for lag, _ in done]),
        "inject_ms": summary_ms([inject for _, inject in done]),
        "after_inject_ms": summary_ms([lag - delay - inject for lag, inject in done]),
    }
