"""Benchmark: CPU per fresh-connection GET, probed's aiohttp path beside bare protocol clients.

Run from the repository root::

    python bench/lean_get.py                       # 5,000 GETs per window, 3 windows each
    python bench/lean_get.py --gets 2000 --repeat 5 --event-loop asyncio

Each GET opens a new TCP connection to a loopback target process (``GET /health``,
200 ``ok``, the same child as ``run_path.py``'s), reads the whole response and closes.
``--concurrency`` GETs are in flight at once. The clients, in alternating windows:

``aiohttp``
    probed's aiohttp path: ``probed.probes.exchange.send`` on the fresh session of
    ``create_sessions`` (``force_close``, the trace hooks, a ``PhaseTimer``), with the
    redirect policy and the body cap, as the ``http`` kind calls it.
``wire``
    the same call with the ``http`` kind's own client (``probed.http.wire``), as the
    kind makes it now.
``protocol+llhttp``
    an ``asyncio.Protocol``: ``loop.create_connection``, one request written in
    ``connection_made``, the response fed to aiohttp's C parser (llhttp,
    ``aiohttp.http_parser.HttpResponseParser``) and its body read from the parser's
    payload stream, the transport closed.
``protocol+python``
    the same protocol parsing the status line and headers itself (a ``CIMultiDict``)
    and counting a ``Content-Length`` body.

CPU per GET = ``time.process_time()`` over a window / GETs (the target is another
process and is not counted). Only loopback addresses are used; the target process is
stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from _common import BenchError, Processes, run_bench, say, serve_health, start_printing_port
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpResponseParser
from multidict import CIMultiDict

from probed.config import HttpProbe, TargetConfig
from probed.eventloop import EVENT_LOOPS, loop_factory
from probed.http.session import PhaseTimer, create_sessions
from probed.http.wire import WireClient
from probed.probes.base import ProbeContext
from probed.probes.exchange import send

SELF = Path(__file__).resolve()

Get = Callable[[], Awaitable[int]]


class _LlhttpGet(BaseProtocol):
    """One GET on a new connection, parsed by aiohttp's C parser."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes) -> None:
        super().__init__(loop)
        self._request = request
        self._llhttp = HttpResponseParser(self, loop, 2**16)
        self.done: asyncio.Future[tuple[Any, Any]] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        cast(asyncio.Transport, transport).write(self._request)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        messages, _, _ = self._llhttp.feed_data(data)
        if messages and not self.done.done():
            self.done.set_result(messages[0])

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._llhttp.feed_eof()
        if not self.done.done():
            self.done.set_exception(ConnectionError("closed before the response"))


class _PythonGet(asyncio.Protocol):
    """One GET on a new connection, the head parsed here, a Content-Length body counted."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes) -> None:
        self._request = request
        self._buf = b""
        self._head: tuple[int, CIMultiDict[str]] | None = None
        self._want = 0
        self.done: asyncio.Future[tuple[int, CIMultiDict[str], bytes]] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self._request)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self._buf[:end].decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers: CIMultiDict[str] = CIMultiDict()
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.add(name.strip(), value.strip())
            self._head = status, headers
            self._buf = self._buf[end + 4 :]
            self._want = int(headers.get("Content-Length", "0"))
        if len(self._buf) >= self._want and not self.done.done():
            self.done.set_result((*self._head, self._buf[: self._want]))

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("closed before the response"))


def _request(port: int) -> bytes:
    return (
        f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: probed/bench\r\n"
        "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\n\r\n"
    ).encode()


def clients(port: int, fresh: Any, pooled: Any) -> dict[str, Get]:
    """The ways of making one GET, by name."""
    target = TargetConfig(base_url=f"http://127.0.0.1:{port}")
    target._finish_headers()
    ctx = ProbeContext(target=target, session=fresh, pooled_session=pooled)
    wire_ctx = ProbeContext(target=target, session=fresh, pooled_session=pooled, wire=WireClient())
    spec = HttpProbe(name="bench", target="t", path="/health")
    request = _request(port)
    loop = asyncio.get_running_loop()

    async def aiohttp_get() -> int:
        resp = await send(
            ctx, spec, method="GET", path="/health", headers=ctx.headers(spec), timer=PhaseTimer()
        )
        return resp.status

    async def wire_get() -> int:
        headers = wire_ctx.headers(spec)
        resp = await send(
            wire_ctx, spec, method="GET", path="/health", headers=headers, timer=PhaseTimer()
        )
        return resp.status

    async def llhttp_get() -> int:
        transport, proto = await loop.create_connection(
            lambda: _LlhttpGet(loop, request), "127.0.0.1", port
        )
        try:
            message, payload = await proto.done
            await payload.read()
            return int(message.code)
        finally:
            transport.close()

    async def python_get() -> int:
        transport, proto = await loop.create_connection(
            lambda: _PythonGet(loop, request), "127.0.0.1", port
        )
        try:
            status, _, _ = await proto.done
            return status
        finally:
            transport.close()

    return {
        "aiohttp": aiohttp_get,
        "wire": wire_get,
        "protocol+llhttp": llhttp_get,
        "protocol+python": python_get,
    }


async def window(get: Get, gets: int, concurrency: int) -> float:
    """CPU-µs per GET over ``gets`` GETs, ``concurrency`` at a time."""
    left = gets

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if await get() != 200:
                raise BenchError("the target did not answer 200")

    cpu = time.process_time()
    async with asyncio.timeout(gets / 50 + 60):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / gets * 1e6


async def main(args: argparse.Namespace) -> dict[str, list[float]]:
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="lean-get-") as tmp:
        proc, port = await start_printing_port(
            procs, [sys.executable, str(SELF), "--serve-target"], Path(tmp) / "target.stderr"
        )
        fresh, pooled = create_sessions()
        try:
            ways = clients(port, fresh, pooled)
            for get in ways.values():  # warm-up, uncounted
                await window(get, 200, args.concurrency)
            per_get: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.repeat):
                for name, get in ways.items():
                    per_get[name].append(await window(get, args.gets, args.concurrency))
                    say(f"{name:>16}: {per_get[name][-1]:7.1f} CPU-µs per GET")
        finally:
            await fresh.close()
            await pooled.close()
            await procs.stop(proc)
    return per_get


def report(per_get: dict[str, list[float]]) -> int:
    base = statistics.median(per_get["aiohttp"])
    say("medians, CPU-µs per fresh-connection GET:")
    for name, values in per_get.items():
        median = statistics.median(values)
        say(f"{name:>16}: {median:7.1f} (min-max {min(values):.1f}-{max(values):.1f}), "
            f"{median - base:+7.1f} vs aiohttp ({median / base:.2f}x)")  # fmt: skip
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--gets", type=int, default=5000, help="GETs per window (5,000)")
    parser.add_argument("--repeat", type=int, default=3, help="windows per client (3)")
    parser.add_argument("--concurrency", type=int, default=20, help="GETs in flight (20)")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="uvloop")
    parser.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse_args()
    if options.serve_target:
        sys.exit(serve_health(3600.0))
    sys.exit(run_bench(main(options), report, loop_factory=loop_factory(options.event_loop)))
