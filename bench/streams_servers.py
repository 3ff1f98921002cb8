"""The stream benchmark's servers: the SSE event producer and the demo target for reflect.

Part of ``bench/streams.py`` (imported as ``streams_servers``; ``bench/`` is the
script directory). Each runs in its own process, ``streams.py --serve`` and
``streams.py --serve-demo``, on 127.0.0.1, port 0, and prints its port.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter
from typing import Any

from _common import (
    NAN,
    count_warnings,
    percentile,
    quiet_structlog,
    raise_nofile,
    serve_app,
    wait_for_stop,
)
from aiohttp import web

from probed.demo import DemoTarget, Faults

D = 0.5
"""Seconds the server subtracts from the send time in ``enqueued_at``: the known lag."""
HEARTBEAT = 10.0
"""Seconds between heartbeat comments on each server connection."""
GOLDEN = 0.6180339887498949
"""Phase spread: connection i starts sending at ``(i * GOLDEN mod 1) / rate`` seconds."""
RESYNC_PERIODS = 50
"""A server connection this many periods behind its schedule starts over (counted)."""
MAX_SAMPLES = 2_000_000
"""Bound on the lateness / overhead samples one process keeps."""
REFLECT_DELAY = 0.2
"""The demo target's ``stream_delay`` fault for the reflect part (seconds)."""


# --------------------------------------------------------------------------------------
# the SSE server (its own process: ``streams.py --serve``)


class ServerStats:
    """The server's own view of one window: sends, send lateness, CPU."""

    def __init__(self, logs: Counter[str]) -> None:
        self.accepted = 0
        self.open = 0
        self.logs = logs
        self.reset()

    def reset(self) -> None:
        self.logs.clear()
        self.sends = 0
        self.resyncs = 0
        self.lateness: list[float] = []
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    def to_dict(self) -> dict[str, Any]:
        late = self.lateness
        wall = time.monotonic() - self.wall0
        return {
            "sends": self.sends,
            "resyncs": self.resyncs,
            "late_p50_ms": percentile(late, 0.50) * 1000,
            "late_p99_ms": percentile(late, 0.99) * 1000,
            "late_max_ms": max(late) * 1000 if late else NAN,
            "cpu_s": time.process_time() - self.cpu0,
            "wall_s": wall,
            "open": self.open,
            "accepted": self.accepted,
            "logs": dict(self.logs),
        }


def serve_sse(lifetime: float) -> int:
    """Serve ``GET /sse?rate=R`` and ``GET /stats[?reset=1]`` on 127.0.0.1:0; print the port.

    aiohttp's own warnings and errors are counted and reported by ``/stats`` for
    the window (not printed: clients tearing down thousands of streams at once
    make aiohttp 3.14 log ``InvalidStateError`` tracebacks after the window).
    """
    raise_nofile()
    quiet_structlog(Counter())
    stats = ServerStats(count_warnings().counts)
    conn_index = itertools.count()

    async def sse(request: web.Request) -> web.StreamResponse:
        try:
            rate = float(request.query.get("rate", "1"))
        except ValueError:
            rate = NAN
        if not 0 < rate <= 10_000:
            return web.Response(status=400, text="rate must be in (0, 10000]\n")
        last = request.headers.get("Last-Event-ID", "")
        seq = int(last) if last.isascii() and last.isdigit() else 0
        period = 1.0 / rate
        loop = asyncio.get_running_loop()
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        stats.accepted += 1
        stats.open += 1
        try:
            await resp.write(b": connected\n\n")  # the headers go out now, not with event 1
            now = loop.time()
            due = now + (next(conn_index) * GOLDEN % 1.0) * period
            beat = now + HEARTBEAT
            end = now + lifetime
            while due < end:
                delay = min(due, beat) - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = loop.time()
                if now >= due:
                    seq += 1
                    stamp = time.time() - D
                    await resp.write(
                        f'id: {seq}\ndata: {{"seq": {seq}, "enqueued_at": {stamp!r}}}\n\n'.encode()
                    )
                    stats.sends += 1
                    if len(stats.lateness) < MAX_SAMPLES:
                        stats.lateness.append(now - due)
                    due += period
                    if now - due > RESYNC_PERIODS * period:
                        stats.resyncs += 1
                        due = now + period
                elif now >= beat:
                    await resp.write(b": heartbeat\n\n")
                    beat += HEARTBEAT
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            stats.open -= 1
        return resp

    async def stats_handler(request: web.Request) -> web.Response:
        data = stats.to_dict()
        if request.query.get("reset"):
            stats.reset()
        return web.json_response(data)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/sse", sse)
        app.router.add_get("/stats", stats_handler)
        await serve_app(app, lifetime, backlog=8192, shutdown_timeout=1.0)

    asyncio.run(main())
    return 0


def serve_demo(stream_delay: float, lifetime: float) -> int:
    """Run ``probed.demo.DemoTarget`` with ``stream_delay`` on 127.0.0.1:0; print the port."""
    raise_nofile()
    quiet_structlog(Counter())

    async def main() -> None:
        faults = Faults(stream_delay=stream_delay)
        async with DemoTarget(password=secrets.token_urlsafe(16), faults=faults) as target:
            print(target.port, flush=True)
            await wait_for_stop(lifetime)

    asyncio.run(main())
    return 0
