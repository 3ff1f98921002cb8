"""Benchmark: probed's SSE stream watcher beside a minimal aiohttp read loop, and reflect lag.

Run from the repository root::

    python bench/streams.py                  # full run, about 4 minutes
    python bench/streams.py --quick          # smoke run: short windows, (c) with 500 streams
    python bench/streams.py --only b         # one part: a, b, c or reflect (repeatable)
    python bench/streams.py --only b --profile /tmp/prof   # + cProfile of each window

What it measures
----------------
An SSE server runs in its own process (``streams.py --serve``, aiohttp on
127.0.0.1, port 0). ``GET /sse?rate=R`` sends ``R`` events per second on each
connection, each ``id: n`` with JSON data ``{"seq": n, "enqueued_at": t}``
where ``t = time.time() - D`` taken just before the write, with ``D = 0.5 s``.
So a client that receives the event at wall time ``w`` measures a lag of
``w - t = D + overhead``; ``overhead = w - t - D`` is what the measurement
itself adds (loopback, the client's event loop, its parsing). A negative
overhead would show a clock problem, not a small lag. Connections get spread
send phases (golden-ratio offsets) so 1,000 streams do not send at once, a
``: heartbeat`` comment every 10 s, and ``Last-Event-ID`` resumes the sequence.
The server measures its own send lateness (actual - scheduled send time), its
send rate and its CPU, so a server that cannot keep up is reported, not hidden.

Each scenario runs twice, one client after the other, each in a fresh client
process (``streams.py --client raw|probed``) against a fresh server process:

``raw``
    a minimal aiohttp loop per stream: ``async for chunk in
    resp.content.iter_any()``, split events on ``b"\\n\\n"``, ``json.loads`` the
    data line, overhead from ``time.time()`` taken when the chunk arrived.
``probed``
    the real thing: ``StreamManager`` starting one ``StreamWatcher`` per stream
    (``SseStream`` with ``subscribers = 1``, ``lag_field = "enqueued_at"``,
    ``sequence_field = "seq"``, idle timeout 60 s) on the daemon's own stream
    session (``create_sessions(limit=0)``: no connection cap); the bench
    subscribes to the ``Hub`` for every stream and computes the overhead from
    ``ReceivedEvent.received_wall`` (the wall time the watcher itself uses for
    lag). ``StreamStats`` are checked: lost, duplicated, out-of-order, late,
    negative lag, reconnects, connected.

Fresh processes keep the figures apart: RSS per stream is ``(VmRSS after all
streams connected and the warm-up) - (VmRSS before anything was built)`` over
the streams, and one client's freed memory cannot hide the other's. CPU per
event is the client process's CPU time (``time.process_time()``) over the
measured window divided by the events received in it; nothing is subtracted.
The window starts after every stream connected and a warm-up. Garbage
collections in the window (count and longest pause per generation, from
``gc.callbacks``) are printed too: they are where a stalled event loop's
lag usually comes from.

Scenarios: (a) 1 stream x 100 events/s, (b) 1,000 streams x 2 events/s,
(c) 5,000 streams x 0.2 events/s held for 30 s, counting the streams that stayed
connected throughout (connected at the start, same connection at the end, no
reconnect) and the lowest connected count sampled every second.

Reflect: the demo target (``probed.demo.DemoTarget``) runs in its own process
with fault ``stream_delay = 0.2 s``; a client process runs one
``StreamWatcher`` on its ``/api/v1/events/stream`` and the reflect probe
(``probe_reflect`` through ``run_probe``, default settings) 100 times at
10 runs/s; overhead = ``delivery_lag_seconds`` - the delay the target reports
at ``GET /-/admin/faults``. Beside it a raw aiohttp client (``--client
reflect-raw``: POST the outbox, raw SSE read loop, same clock) is measured the
same way, and both again with a pooled inject connection (``fresh_connection =
false``); only the default (``fresh_connection = false`` for reflect: the
inject reuses its connection) is judged. The inject request's phases show where its time
goes.

Every figure is printed beside its target with MET / NOT MET; nothing is
hard-coded. Only loopback addresses are used; every loop is bounded in count
and time; every process started here is stopped on exit, Ctrl-C or error
(and gets SIGTERM if the bench dies). The file-descriptor limit is raised to
the hard limit in every process; a hard limit too low for a scenario is
reported and the scenario skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import json
import logging
import math
import os
import platform
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import aiohttp
from _common import (
    LOOPBACK,
    NAN,
    BenchError,
    CountingHandler,
    Processes,
    cancel_on_sigterm,
    percentile,
    positive,
    quiet_structlog,
    raise_nofile,
    run_bench,
    run_child_result,
    say,
    serve_app,
    status_kib,
    verdict,
    wait_for_stop,
)
from aiohttp import web

from probed.config import ReflectProbe, SseStream, TargetConfig
from probed.demo import DemoTarget, Faults
from probed.http.session import create_sessions
from probed.probes.base import ProbeContext, ProbeFn, run_probe
from probed.probes.reflect import probe_reflect
from probed.results import ProbeRun
from probed.store import ResultStore
from probed.stream.hub import Hub, ReceivedEvent
from probed.stream.manager import StreamManager

SELF = Path(__file__).resolve()
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
IDLE_TIMEOUT = "60s"
CONNECT_TIMEOUT = "30s"
FD_MARGIN = 256
"""File descriptors a process needs besides one per stream."""

# Targets (acceptance criteria).
TARGET_A_P99_MS = 1.0
TARGET_B_P99_MS = 10.0
TARGET_B_CPU_RATIO = 1.5
TARGET_C_RSS_MB = 400.0
TARGET_REFLECT_P99_MS = 2.0


# --------------------------------------------------------------------------------------
# small helpers


def summary_ms(values_s: Sequence[float]) -> dict[str, float | int]:
    """p50 / p99 / max / min in milliseconds and how many values were negative."""
    return {
        "n": len(values_s),
        "p50": percentile(values_s, 0.50) * 1000,
        "p99": percentile(values_s, 0.99) * 1000,
        "max": max(values_s) * 1000 if values_s else NAN,
        "min": min(values_s) * 1000 if values_s else NAN,
        "negative": sum(1 for v in values_s if v < 0),
    }


def num(value: object) -> float:
    """``value`` as a float (NaN if it is not a number): JSON results are untyped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NAN
    return float(value)


def fmt(value: object, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or ``n/a``."""
    number = num(value)
    return "n/a" if math.isnan(number) else f"{number:,.{digits}f}"


def progress(message: str) -> None:
    """Progress of a child process, on stderr so stdout stays the result line."""
    print(message, file=sys.stderr, flush=True)


async def wait_until(predicate: Callable[[], bool], within: float, poll: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``within`` seconds passed (False)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


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
    logs = CountingHandler()
    root = logging.getLogger()
    root.addHandler(logs)
    root.setLevel(logging.WARNING)
    stats = ServerStats(logs.counts)
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


# --------------------------------------------------------------------------------------
# the client process (``streams.py --client raw|probed|reflect``)


class EventSink(Protocol):
    """Where the stream clients hand each event: ``RawStreams`` and ``ProbedStreams`` call it.

    ``data`` is the event's data parsed as JSON (None if it is not JSON); ``wall``
    the client's receive time (``time.time()`` / ``ReceivedEvent.received_wall``).
    ``stream_side_by_side.py`` keeps a per-``seq`` sink of its own.
    """

    def record(self, wall: float, data: object) -> None: ...


class Recorder:
    """Overhead samples and event counts while ``active`` (the measured window)."""

    __slots__ = ("active", "bad", "events", "overhead")

    def __init__(self) -> None:
        self.active = False
        self.events = 0
        self.bad = 0
        self.overhead: list[float] = []

    def record(self, wall: float, data: object) -> None:
        """One received event: ``wall`` is our receive time, ``data`` its parsed JSON."""
        if not self.active:
            return
        stamp = data.get("enqueued_at") if isinstance(data, dict) else None
        if isinstance(stamp, float):
            self.events += 1
            if len(self.overhead) < MAX_SAMPLES:
                self.overhead.append(wall - stamp - D)
        else:
            self.bad += 1


class GcWatch:
    """Pauses of the cyclic garbage collector while ``active``, per generation (seconds)."""

    def __init__(self) -> None:
        self.active = False
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.active:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def to_dict(self) -> dict[str, Any]:
        return {
            str(gen): {
                "n": len(p),
                "total_ms": sum(p) * 1000,
                "max_ms": max(p) * 1000 if p else 0.0,
            }
            for gen, p in self.pauses.items()
        }


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


class ProbedStreams:
    """Real ``StreamWatcher``s under a ``StreamManager``, fed to the recorder through the Hub."""

    def __init__(self, base_url: str, streams: int, rate: float, recorder: EventSink) -> None:
        self.recorder = recorder
        self.target = TargetConfig(base_url=base_url)
        self.specs = [
            SseStream.model_validate(
                {
                    "name": f"s{i:05d}",
                    "target": "bench",
                    "path": f"/sse?rate={rate:g}",
                    "subscribers": 1,
                    "lag_field": "enqueued_at",
                    "sequence_field": "seq",
                    "idle_timeout": IDLE_TIMEOUT,
                    "connect_timeout": CONNECT_TIMEOUT,
                }
            )
            for i in range(streams)
        ]
        self.store = ResultStore()
        self.hub = Hub()
        self.log_counts: Counter[str] = Counter()

    def _on_event(self, received: ReceivedEvent) -> None:
        self.recorder.record(received.received_wall, received.json())

    async def run(
        self, body: Callable[[], Awaitable[dict[str, Any]]], stop_at: float
    ) -> dict[str, Any]:
        del stop_at  # the watchers run until the manager stops them
        fresh, pooled = create_sessions(limit=0)
        try:
            manager = StreamManager(self.store, self.hub, pooled)
            for spec in self.specs:
                self.hub.subscribe(spec.name, self._on_event)
            async with asyncio.TaskGroup() as tg:
                manager.start(tg, self.specs, {"bench": self.target})
                try:
                    return await body()
                finally:
                    await manager.stop()
        finally:
            await fresh.close()
            await pooled.close()

    def connected(self) -> int:
        return sum(s.connected for s in self.store.streams.values())

    def identities(self) -> list[Identity]:
        return [
            (s.connected > 0, s.connection_ids[0], sum(s.reconnects.values()))
            for s in (self.store.streams[spec.name] for spec in self.specs)
        ]

    def checks(self) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        reconnects: Counter[str] = Counter()
        for stats in self.store.streams.values():
            for key in (
                "received",
                "lost",
                "duplicated",
                "out_of_order",
                "late",
                "negative_lag",
                "untimed",
                "unsequenced",
                "sequence_resets",
            ):
                totals[key] += getattr(stats, key)
            reconnects.update(stats.reconnects)
        return {
            "totals": dict(totals),
            "reconnects": dict(reconnects),
            "logs": dict(self.log_counts),
        }


async def server_stats(
    control: aiohttp.ClientSession, port: int, *, reset: bool = False
) -> dict[str, Any]:
    url = f"http://{LOOPBACK}:{port}/stats" + ("?reset=1" if reset else "")
    async with control.get(url) as resp:
        data: object = await resp.json()
    if not isinstance(data, dict):
        raise BenchError(f"unexpected /stats answer: {data!r:.200}")
    return data


async def client_streams(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``args.streams`` streams of one client kind; measure one window; return the figures."""
    soft, hard = raise_nofile()
    need = args.streams + FD_MARGIN
    if soft < need:
        raise BenchError(
            f"open-file limit too low for {args.streams} streams: hard limit {hard}, need "
            f"about {need} in the client process (and as many in the server); raise it "
            "(ulimit -Hn / LimitNOFILE=) and run again"
        )
    tag = f"[{args.scenario}/{args.client}]"
    log_counts: Counter[str] = Counter()
    quiet_structlog(log_counts)
    gc.collect()
    rss_before = status_kib()
    recorder = Recorder()
    gc_watch = GcWatch()
    gc.callbacks.append(gc_watch)
    base_url = f"http://{LOOPBACK}:{args.port}"
    client: RawStreams | ProbedStreams
    if args.client == "raw":
        client = RawStreams(f"{base_url}/sse?rate={args.rate:g}", args.streams, recorder)
    else:
        client = ProbedStreams(base_url, args.streams, args.rate, recorder)
        client.log_counts = log_counts
    n = args.streams
    budget = args.connect_within + args.warmup + args.window + 30.0
    stop_at = time.monotonic() + budget

    async def body() -> dict[str, Any]:
        started = time.monotonic()
        all_up = await wait_until(lambda: client.connected() >= n, args.connect_within)
        connect_s = time.monotonic() - started
        progress(
            f"  {tag} {client.connected():,}/{n:,} connected after {connect_s:.1f} s; "
            f"warm-up {args.warmup:g} s, window {args.window:g} s"
        )
        if not all_up:
            progress(f"  {tag} not every stream connected within {args.connect_within:g} s")
        await asyncio.sleep(args.warmup)
        rss_warm = status_kib()
        control = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10.0),
        )
        async with control:
            await server_stats(control, args.port, reset=True)
            before = client.identities()
            connected_start = client.connected()
            min_connected = connected_start
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            cpu0 = time.process_time()
            t0 = time.monotonic()
            recorder.active = gc_watch.active = True
            end = t0 + args.window
            while (left := end - time.monotonic()) > 0:
                await asyncio.sleep(min(1.0, left))
                min_connected = min(min_connected, client.connected())
            recorder.active = gc_watch.active = False
            cpu = time.process_time() - cpu0
            if profiler is not None:
                profiler.disable()
                out = Path(args.profile) / f"{args.scenario}-{args.client}.prof"
                profiler.dump_stats(out)
                progress(f"  {tag} cProfile of the window written to {out}")
            window = time.monotonic() - t0
            after = client.identities()
            server = await server_stats(control, args.port)
        stayed = sum(1 for b, a in zip(before, after, strict=True) if b[0] and b == a)
        events = recorder.events
        return {
            "client": args.client,
            "scenario": args.scenario,
            "streams": n,
            "rate": args.rate,
            "all_connected": all_up,
            "connect_s": connect_s,
            "connected_start": connected_start,
            "connected_end": client.connected(),
            "min_connected": min_connected,
            "stayed": stayed,
            "window_s": window,
            "events": events,
            "bad_events": recorder.bad,
            "expected_events": n * args.rate * window,
            "overhead_ms": summary_ms(recorder.overhead),
            "cpu_s": cpu,
            "cpu_us_per_event": cpu / events * 1e6 if events else NAN,
            "rss_before_kib": rss_before,
            "rss_warm_kib": rss_warm,
            "rss_end_kib": status_kib(),
            "rss_hwm_kib": status_kib("VmHWM"),
            "rss_per_stream_kib": (rss_warm - rss_before) / n,
            "server": server,
            "checks": client.checks(),
            "gc": gc_watch.to_dict(),
            "gc_tracked_objects": len(gc.get_objects()),
            "nofile": [soft, hard],
        }

    async with asyncio.timeout(budget + 30.0):
        return await client.run(body, stop_at)


async def client_reflect(args: argparse.Namespace) -> dict[str, Any]:
    """One watcher on the demo target's stream; ``args.runs`` reflect runs at ``args.rate``/s."""
    raise_nofile()
    log_counts: Counter[str] = Counter()
    quiet_structlog(log_counts)
    base_url = f"http://{LOOPBACK}:{args.port}"
    control = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0))
    async with control, control.get(f"{base_url}/-/admin/faults") as resp:
        faults: object = await resp.json()
    delay = num(faults.get("stream_delay")) if isinstance(faults, dict) else NAN
    if math.isnan(delay):
        raise BenchError(f"the demo target did not report its stream_delay: {faults!r:.200}")
    target = TargetConfig(base_url=base_url)
    stream = SseStream.model_validate(
        {
            "name": "events",
            "target": "demo",
            "path": "/api/v1/events/stream",
            "sequence_field": "seq",
            "lag_field": "enqueued_at",
            "idle_timeout": IDLE_TIMEOUT,
        }
    )
    spec = ReflectProbe.model_validate(
        {
            "name": "reflect",
            "target": "demo",
            "stream": "events",
            "fresh_connection": args.fresh_connection == "yes",
        }
    )
    reflect = cast(ProbeFn, probe_reflect)  # run_probe takes the union; this is its kind
    store = ResultStore()
    hub = Hub()
    fresh, pooled = create_sessions(limit=0)
    runs: list[ProbeRun] = []
    try:
        manager = StreamManager(store, hub, pooled)
        ctx = ProbeContext(target=target, session=fresh, pooled_session=pooled, hub=hub)
        async with asyncio.timeout(60.0 + args.runs / args.rate + spec.timeout):
            async with asyncio.TaskGroup() as tg:
                manager.start(tg, [stream], {"demo": target})
                try:
                    if not await wait_until(lambda: hub.is_connected("events") is True, 15.0):
                        raise BenchError("the watcher did not connect to the demo target's stream")
                    for _ in range(args.warmup_runs):  # uncounted
                        await run_probe(reflect, ctx, spec)
                    t0 = time.monotonic()
                    tasks: list[asyncio.Task[ProbeRun]] = []
                    for i in range(args.runs):
                        await asyncio.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
                        tasks.append(asyncio.create_task(run_probe(reflect, ctx, spec)))
                    runs = list(await asyncio.gather(*tasks))
                finally:
                    await manager.stop()
    finally:
        await fresh.close()
        await pooled.close()
    lags = [
        float(lag)
        for run in runs
        if isinstance(lag := run.result.observations.get("delivery_lag_seconds"), int | float)
    ]
    injects = [
        float(v)
        for run in runs
        if isinstance(v := run.result.observations.get("inject_seconds"), int | float)
    ]
    phases: dict[str, list[float]] = {}
    after_inject: list[float] = []
    for run in runs:
        for phase, seconds in run.result.phases.items():
            phases.setdefault(phase, []).append(seconds)
        lag = run.result.observations.get("delivery_lag_seconds")
        inject = run.result.observations.get("inject_seconds")
        if isinstance(lag, int | float) and isinstance(inject, int | float):
            after_inject.append(lag - delay - inject)
    outcomes = Counter("success" if r.success else str(r.result.reason) for r in runs)
    stats = store.streams.get("events")
    return {
        "fresh_connection": spec.fresh_connection,
        "delay": delay,
        "runs": len(runs),
        "outcomes": dict(outcomes),
        "overhead_ms": summary_ms([lag - delay for lag in lags]),
        "inject_ms": summary_ms(injects),
        "after_inject_ms": summary_ms(after_inject),
        "phases_ms": {phase: summary_ms(values) for phase, values in phases.items()},
        "stream": {
            "received": stats.received if stats else 0,
            "lost": stats.lost if stats else 0,
            "duplicated": stats.duplicated if stats else 0,
            "reconnects": sum(stats.reconnects.values()) if stats else 0,
        },
        "logs": dict(log_counts),
    }


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


def client_main(args: argparse.Namespace) -> int:
    """A client process: print one ``RESULT {json}`` line on stdout."""
    try:
        if args.client == "reflect":
            result = asyncio.run(client_reflect(args))
        elif args.client == "reflect-raw":
            result = asyncio.run(client_reflect_raw(args))
        else:
            result = asyncio.run(client_streams(args))
    except BenchError as exc:
        result = {"error": str(exc)}
    except TimeoutError:
        result = {"error": "the client did not finish within its time budget"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------
# processes (the orchestrating bench)


async def start_server(
    procs: Processes, argv: Sequence[str]
) -> tuple[asyncio.subprocess.Process, int]:
    """Start a server process that prints its port first; return it and the port."""
    proc = await procs.spawn([sys.executable, str(SELF), *argv])
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        return proc, int(line)
    except (TimeoutError, ValueError) as exc:
        await procs.stop(proc)
        raise BenchError(f"server {' '.join(argv)} did not print its port: {exc!r}") from None


async def run_client(procs: Processes, argv: Sequence[str], within: float) -> dict[str, Any]:
    """Run a client process (``streams.py`` with ``argv``) to its end; return its result."""
    return await run_child_result(procs, [sys.executable, str(SELF), *argv], within)


# --------------------------------------------------------------------------------------
# scenarios and the report


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    streams: int
    rate: float
    warmup: float
    window: float
    connect_within: float

    @property
    def title(self) -> str:
        return (
            f"({self.key}) {self.streams:,} stream{'s' if self.streams > 1 else ''} x "
            f"{self.rate:g} events/s: warm-up {self.warmup:g} s, window {self.window:g} s"
        )


def scenarios(quick: bool) -> dict[str, Scenario]:
    if quick:
        return {
            "a": Scenario("a", 1, 100.0, 2.0, 5.0, 30.0),
            "b": Scenario("b", 1000, 2.0, 3.0, 5.0, 60.0),
            "c": Scenario("c", 500, 0.2, 5.0, 10.0, 60.0),
        }
    return {
        "a": Scenario("a", 1, 100.0, 5.0, 20.0, 30.0),
        "b": Scenario("b", 1000, 2.0, 5.0, 20.0, 60.0),
        "c": Scenario("c", 5000, 0.2, 5.0, 30.0, 120.0),
    }


@dataclass(slots=True)
class Report:
    targets: list[tuple[str, str, str]] = field(default_factory=list)
    """(what, measured, verdict)."""
    errors: list[str] = field(default_factory=list)

    def target(self, what: str, measured: str, result: str) -> None:
        self.targets.append((what, measured, result))
        say(f"  TARGET {what}: {measured} — {result}")


def server_line(result: dict[str, Any], sc: Scenario) -> tuple[str, bool]:
    """The server's own figures for one client run, and whether it kept up."""
    server = result.get("server", {})
    wall = num(server.get("wall_s"))
    sends = num(server.get("sends"))
    wanted = sc.streams * sc.rate
    rate = sends / wall if wall > 0 else NAN
    late99 = num(server.get("late_p99_ms"))
    kept_up = rate >= 0.97 * wanted and late99 <= 10.0 and num(server.get("resyncs")) == 0
    logs = server.get("logs") or {}
    line = (
        f"{fmt(sends, 0)} sent = {fmt(rate, 1)}/s of {wanted:g}/s, send lateness p50/p99/max "
        f"{fmt(server.get('late_p50_ms'))}/{fmt(late99)}/{fmt(server.get('late_max_ms'))} ms, "
        f"CPU {fmt(num(server.get('cpu_s')) / wall * 100 if wall > 0 else NAN, 0)}% of a core"
        f"{', ' + fmt(server.get('resyncs'), 0) + ' resyncs' if server.get('resyncs') else ''}"
        f" — {'kept up' if kept_up else 'DID NOT KEEP UP: the figures of this run are suspect'}"
        + (f"; aiohttp logged {logs}" if logs else "")
    )
    return line, kept_up


def gc_cell(gen: str) -> Callable[[dict[str, Any]], str]:
    """A table cell: collections of generation ``gen`` in the window and the longest pause."""

    def cell(r: dict[str, Any]) -> str:
        return f"{r['gc'][gen]['n']:,}/{fmt(r['gc'][gen]['max_ms'], 1)}"

    return cell


def report_scenario(sc: Scenario, results: dict[str, dict[str, Any]], report: Report) -> None:
    say()
    say(sc.title)
    cols = ("probed", "raw")
    have = [c for c in cols if c in results]
    if not have:
        say("  (no result)")
        return

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        cells = "".join(f"{cell(results[c]) if c in results else 'n/a':>26}" for c in cols)
        say(f"  {label:<34}{cells}")

    say(f"  {'':<34}{'probed':>26}{'raw aiohttp loop':>26}")
    row(
        "connected: start / min / stayed",
        lambda r: f"{r['connected_start']:,}/{r['min_connected']:,}/{r['stayed']:,}",
    )
    row("all connected after (s)", lambda r: fmt(r["connect_s"], 1))
    row(
        "events in window / expected",
        lambda r: f"{r['events']:,}/{num(r['expected_events']):,.0f}",
    )
    row(
        "overhead p50 / p99 / max (ms)",
        lambda r: (
            f"{fmt(r['overhead_ms']['p50'], 3)}/{fmt(r['overhead_ms']['p99'], 3)}/"
            f"{fmt(r['overhead_ms']['max'], 2)}"
        ),
    )
    row(
        "overhead min (ms) / negative",
        lambda r: f"{fmt(r['overhead_ms']['min'], 3)}/{r['overhead_ms']['negative']}",
    )
    row("CPU per event (µs)", lambda r: fmt(r["cpu_us_per_event"], 1))
    row("CPU in window (% of a core)", lambda r: fmt(r["cpu_s"] / r["window_s"] * 100, 1))
    row("RSS per stream (KiB)", lambda r: fmt(r["rss_per_stream_kib"], 1))
    row(
        "RSS before / warm / end (MB)",
        lambda r: (
            f"{r['rss_before_kib'] / 1024:.0f}/{r['rss_warm_kib'] / 1024:.0f}/"
            f"{r['rss_end_kib'] / 1024:.0f}"
        ),
    )
    row("RSS peak (VmHWM, MB)", lambda r: f"{r['rss_hwm_kib'] / 1024:.0f}")
    row("GC-tracked objects after window", lambda r: f"{r['gc_tracked_objects']:,}")
    for gen in ("0", "1", "2"):
        row(f"GC gen{gen} in window: n / max ms", gc_cell(gen))
    kept: dict[str, bool] = {}
    for c in have:
        line, kept[c] = server_line(results[c], sc)
        say(f"  server during the {c} run: {line}")
    if "probed" in results:
        checks = results["probed"]["checks"]
        totals = checks.get("totals", {})
        say(
            "  probed accounting: "
            + ", ".join(f"{k} {v:,}" for k, v in totals.items())
            + f"; reconnects {checks.get('reconnects') or 0}"
        )
        if checks.get("logs"):
            say(f"  probed log events: {checks['logs']}")
        bad = {k: totals.get(k, 0) for k in ("lost", "duplicated", "negative_lag")}
        if any(bad.values()):
            say(f"  WARNING: the watchers counted {bad} (expected all 0)")
    if "raw" in results and results["raw"]["checks"].get("errors"):
        say(f"  raw loop connection ends: {results['raw']['checks']['errors']}")
    for c in have:
        if results[c]["overhead_ms"]["negative"]:
            say(f"  WARNING ({c}): negative overheads: a clock problem, the figures are suspect")
    if not all(kept.values()):
        say("  NOTE: the server process did not keep up in at least one run (see above)")

    probed = results.get("probed")
    raw = results.get("raw")
    p99 = num(probed["overhead_ms"]["p99"]) if probed else NAN
    if sc.key == "a":
        report.target(
            f"(a) probed overhead p99 ≤ {TARGET_A_P99_MS:g} ms",
            f"{fmt(p99, 3)} ms",
            verdict(p99, TARGET_A_P99_MS),
        )
    elif sc.key == "b":
        report.target(
            f"(b) probed overhead p99 ≤ {TARGET_B_P99_MS:g} ms",
            f"{fmt(p99, 3)} ms",
            verdict(p99, TARGET_B_P99_MS),
        )
        cpu = num(probed["cpu_us_per_event"]) if probed else NAN
        raw_cpu = num(raw["cpu_us_per_event"]) if raw else NAN
        ratio = cpu / raw_cpu if raw_cpu > 0 else NAN
        report.target(
            f"(b) probed CPU per event ≤ {TARGET_B_CPU_RATIO:g}x the raw loop's",
            f"{fmt(cpu, 1)} µs vs {fmt(raw_cpu, 1)} µs = {fmt(ratio, 2)}x",
            verdict(ratio, TARGET_B_CPU_RATIO),
        )
    elif sc.key == "c":
        if probed:
            n = probed["streams"]
            stayed = probed["stayed"]
            ok = stayed == n and probed["min_connected"] == n
            report.target(
                f"(c) all {n:,} probed streams stay connected for {sc.window:g} s",
                f"{stayed:,} stayed, lowest sample {probed['min_connected']:,}",
                "MET" if ok else "NOT MET",
            )
            rss_mb = max(probed["rss_warm_kib"], probed["rss_end_kib"]) / 1024
            report.target(
                f"(c) probed RSS with {n:,} streams ≤ {TARGET_C_RSS_MB:g} MB",
                f"{rss_mb:.0f} MB (peak {probed['rss_hwm_kib'] / 1024:.0f} MB)",
                verdict(rss_mb, TARGET_C_RSS_MB),
            )
        else:
            report.target("(c) all streams stay connected", "n/a", "NOT MEASURED")
            report.target(f"(c) RSS ≤ {TARGET_C_RSS_MB:g} MB", "n/a", "NOT MEASURED")


def report_reflect(results: dict[str, dict[str, Any]], report: Report) -> None:
    say()
    say(
        f"(reflect) demo target in its own process with stream_delay {REFLECT_DELAY:g} s: "
        "probed's reflect probe via run_probe on one StreamWatcher, beside a raw aiohttp "
        "client (POST the outbox, raw SSE read loop), each 'overhead = lag - configured delay'"
    )

    def trio(summary: dict[str, Any] | None) -> str:
        if not summary:
            return "n/a"
        return "/".join(fmt(summary.get(q), 3) for q in ("p50", "p99", "max"))

    for fresh, label in (
        ("yes", "fresh_connection = true (new connection per inject; for comparison)"),
        ("no", "fresh_connection = false (the reflect default: pooled inject; judged)"),
    ):
        probed = results.get(f"reflect/{fresh}")
        raw = results.get(f"reflect-raw/{fresh}")
        say(f"  inject on {label}:")
        if probed:
            say(
                f"    configured delay {probed['delay']:g} s (GET /-/admin/faults); probed "
                f"{probed['runs']} runs: {probed['outcomes']}; watcher: {probed['stream']}"
            )
        if raw:
            say(f"    raw: {raw['runs']} runs, {raw['lost']} not received")
        say(f"    {'p50/p99/max (ms)':<44}{'probed':>24}{'raw aiohttp':>24}")
        for key, what in (
            ("overhead_ms", "overhead (delivery lag - delay)"),
            ("inject_ms", "  inject request"),
            ("after_inject_ms", "  after the inject answered"),
        ):
            cells = "".join(f"{trio(r.get(key) if r else None):>24}" for r in (probed, raw))
            say(f"    {what:<44}{cells}")
        if probed:
            for phase, values in probed.get("phases_ms", {}).items():
                say(f"    {'    inject phase ' + phase:<44}{trio(values):>24}")
    judged = results.get("reflect/no")
    p99 = num(judged["overhead_ms"]["p99"]) if judged else NAN
    report.target(
        f"reflect overhead p99 ≤ {TARGET_REFLECT_P99_MS:g} ms",
        f"{fmt(p99, 3)} ms",
        verdict(p99, TARGET_REFLECT_P99_MS),
    )


PARTS = ("a", "b", "c", "reflect")


def flags(**options: str | float | bool) -> list[str]:
    """Flags for a child process: ``port=5`` -> ``--port 5``, ``serve=True`` -> ``--serve``."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, float):
            argv += [flag, f"{value:.6g}"]
        else:
            argv += [flag, str(value)]
    return argv


async def bench(args: argparse.Namespace) -> Report:
    cancel_on_sigterm()
    parts = [p for p in PARTS if p in (args.only or PARTS)]
    report = Report()
    procs = Processes()
    soft, hard = raise_nofile()
    all_scenarios = scenarios(args.quick)
    say("probed SSE stream benchmark (bench/streams.py)" + (" --quick" if args.quick else ""))
    say(
        f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
    )
    say(
        f"  open-file limit: soft {soft}, hard {hard} (each client and server process "
        "raises its own soft limit to the hard limit)"
    )
    say(
        f"  known lag D = {D:g} s: overhead = receive wall time - enqueued_at - D; "
        "server and each client in their own processes, loopback only"
    )
    try:
        for key in parts:
            if key == "reflect":
                continue
            sc = all_scenarios[key]
            need = sc.streams + FD_MARGIN
            if hard < need:
                msg = (
                    f"({key}) skipped: the hard open-file limit {hard} is below the {need} a "
                    f"process needs for {sc.streams} streams; raise it (ulimit -Hn) and rerun"
                )
                say(msg)
                report.errors.append(msg)
                continue
            progress(f"{sc.title} ...")
            results: dict[str, dict[str, Any]] = {}
            lifetime = sc.connect_within + sc.warmup + sc.window + 120.0
            for client in ("raw", "probed"):
                server, port = await start_server(procs, flags(serve=True, lifetime=lifetime))
                argv = flags(
                    client=client,
                    scenario=sc.key,
                    port=port,
                    streams=sc.streams,
                    rate=sc.rate,
                    warmup=sc.warmup,
                    window=sc.window,
                    connect_within=sc.connect_within,
                    **({"profile": args.profile} if args.profile else {}),
                )
                try:
                    results[client] = await run_client(procs, argv, lifetime + 60.0)
                except BenchError as exc:
                    msg = f"({key}) {client}: {exc}"
                    progress(f"  {msg}")
                    report.errors.append(msg)
                finally:
                    await procs.stop(server)
            report_scenario(sc, results, report)
        if "reflect" in parts:
            progress(f"(reflect) {args.reflect_runs} runs at {args.reflect_rate:g}/s ...")
            lifetime = 120.0 + 4 * args.reflect_runs / args.reflect_rate
            demo, port = await start_server(
                procs, flags(serve_demo=True, stream_delay=REFLECT_DELAY, lifetime=lifetime)
            )
            reflect_results: dict[str, dict[str, Any]] = {}
            try:
                for fresh, client in itertools.product(("yes", "no"), ("reflect", "reflect-raw")):
                    argv = flags(
                        client=client,
                        port=port,
                        runs=args.reflect_runs,
                        rate=args.reflect_rate,
                        fresh_connection=fresh,
                    )
                    try:
                        reflect_results[f"{client}/{fresh}"] = await run_client(
                            procs, argv, lifetime
                        )
                    except BenchError as exc:
                        report.errors.append(f"({client}, fresh_connection={fresh}): {exc}")
            finally:
                await procs.stop(demo)
            report_reflect(reflect_results, report)
        say()
        say("Summary")
        width = max((len(t[0]) for t in report.targets), default=10)
        for what, measured, result_text in report.targets:
            say(f"  {what:<{width}}  {measured:<38} {result_text}")
        met = sum(1 for t in report.targets if t[2] == "MET")
        say(f"  {met} of {len(report.targets)} targets met")
        for error in report.errors:
            say(f"  ERROR: {error}")
    finally:
        await procs.stop_all()
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark probed's SSE stream watcher and reflect probe on loopback."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: short windows, (c) with 500 streams",
    )
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="write a cProfile of each client's measured window to DIR/<part>-<client>.prof "
        "(the figures of a profiled run are inflated: use it to find where time goes)",
    )
    parser.add_argument("--reflect-runs", type=int, default=100, help="reflect runs (100)")
    parser.add_argument(
        "--reflect-rate", type=positive, default=10.0, help="reflect runs started per second (10)"
    )
    # internal: the server and client processes
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve", action="store_true", help=hidden)
    parser.add_argument("--serve-demo", action="store_true", help=hidden)
    parser.add_argument("--stream-delay", type=float, default=REFLECT_DELAY, help=hidden)
    parser.add_argument("--lifetime", type=positive, default=600.0, help=hidden)
    parser.add_argument(
        "--client", choices=("raw", "probed", "reflect", "reflect-raw"), help=hidden
    )
    parser.add_argument("--scenario", default="?", help=hidden)
    parser.add_argument("--port", type=int, default=0, help=hidden)
    parser.add_argument("--streams", type=int, default=1, help=hidden)
    parser.add_argument("--rate", type=positive, default=1.0, help=hidden)
    parser.add_argument("--warmup", type=float, default=5.0, help=hidden)
    parser.add_argument("--window", type=positive, default=20.0, help=hidden)
    parser.add_argument("--connect-within", type=positive, default=60.0, help=hidden)
    parser.add_argument("--runs", type=int, default=100, help=hidden)
    parser.add_argument("--warmup-runs", type=int, default=5, help=hidden)
    parser.add_argument("--fresh-connection", choices=("yes", "no"), default="yes", help=hidden)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        return serve_sse(args.lifetime)
    if args.serve_demo:
        return serve_demo(args.stream_delay, args.lifetime)
    if args.client:
        return client_main(args)
    if args.reflect_runs < 1 or args.reflect_runs > 10_000:
        print("--reflect-runs must be in [1, 10000]", file=sys.stderr)
        return 2
    if args.quick:
        args.reflect_runs = min(args.reflect_runs, 30)
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
        args.profile = str(profile_dir)
    return run_bench(bench(args), lambda report: 1 if report.errors else 0)


if __name__ == "__main__":
    sys.exit(main())
