"""Benchmark: probed's SSE stream watcher and a minimal aiohttp read loop on the same events.

Run from the repository root::

    python bench/stream_side_by_side.py            # 2 rounds of 30 s at 200 events/s, about 70 s
    python bench/stream_side_by_side.py --quick    # 2 rounds of 5 s (1 s warm-up)
    python bench/stream_side_by_side.py --rate 500 --duration 60 --rounds 4

Why
---
``bench/streams.py`` runs the raw loop and probed one after the other, each
against a fresh server, so they never see the same events and a busy moment
of the (shared) machine lands on one of them only. Here both clients are
connected at the same time to one server that broadcasts: every event is
rendered once and the same bytes are written to both connections, so the two
receive times of an event can be compared directly.

What it does
------------
Server (``--serve``, its own process, aiohttp on 127.0.0.1, port 0, printed):
``GET /sse`` holds an SSE connection open. Once ``--clients`` (2) are open
it sends ``W + N`` events at ``--rate`` per second (``W`` warm-up events,
``--warmup`` seconds' worth; ``N`` measured ones, ``--duration`` seconds'
worth), then one more second of events (so a client that lost the last
measured one still ends), then a ``: heartbeat`` comment every second until
the clients have left. For event ``n`` it takes ``t = time.time() - D``
(``D`` = 0.5 s, as in ``streams.py``), renders ``id: n`` /
``data: {"seq": n, "enqueued_at": t}`` once and writes those bytes to every
open connection, nothing awaited between the writes, in the order they
connected for odd ``n`` and the reverse order for even ``n`` (the second
write waits for the first: alternating gives neither client the later one).
``GET /stats`` reports the connections in connection order (probed's
watcher sends a ``traceparent`` header, the raw loop does not), its send
lateness (actual - scheduled), the write loop's duration per event and its
CPU over the measured events.

Clients (``--client probed|raw``), one process each, both connected for the
whole broadcast, one stream each, the very classes ``streams.py`` measures:

``probed``
    ``streams_probed.ProbedStreams``: ``StreamManager`` with one ``StreamWatcher``
    (``SseStream``, ``lag_field = "enqueued_at"``, ``sequence_field = "seq"``)
    on the daemon's stream session; the bench subscribes to the ``Hub`` and
    takes ``ReceivedEvent.received_wall``.
``raw``
    ``streams_raw.RawStreams``: ``async for chunk in resp.content.iter_any()``,
    split on ``b"\\n\\n"``, ``json.loads``, ``time.time()`` at chunk arrival.

Each records ``overhead = receive wall time - t - D`` per ``seq`` for the
measured events and its CPU time (``time.process_time()``) from the last
warm-up event to the last measured one; CPU per event = that CPU / measured
events received (nothing subtracted: timers and housekeeping count). It prints
both as one ``RESULT {json}`` line on stdout.

The parent joins the two results by ``seq``: overhead p50/p90/p99/max of each
client over the events both received, and the per-event difference
probed - raw. Round 1 starts probed first (so it is also written to first),
round 2 raw first, alternating for ``--rounds``; "all rounds" pools the
matched events. Target: probed's overhead p99 ≤ raw's p99 + 0.5 ms, judged in
each round and MET only when it holds in every round (MET / NOT MET computed
from the figures; NOT MEASURED without them).

Only 127.0.0.1 is used; every loop is bounded in count and time; every
process started here is stopped on exit, Ctrl-C or error (and gets SIGTERM if
the bench dies). It exits 0 when every round was measured (whether or not the
target was met), 1 when a round could not be, 2 when it cannot start, 130 on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    LOOPBACK,
    NAN,
    BenchError,
    Processes,
    cancel_on_sigterm,
    flags,
    fmt,
    num,
    percentile,
    positive,
    progress,
    quiet_structlog,
    run_bench,
    run_child_result,
    say,
    serve_app,
    start_printing_port,
    verdict,
)
from aiohttp import web
from streams_client import GcWatch, server_stats
from streams_probed import ProbedStreams
from streams_raw import RawStreams
from streams_servers import D

SELF = Path(__file__).resolve()
CLIENTS = ("probed", "raw")
TARGET_MARGIN_MS = 0.5
"""probed's overhead p99 may exceed the raw loop's by this much (ms)."""
TAIL_SECONDS = 1.0
"""Events sent after the measured ones, so a client that lost the last one still ends."""
HEARTBEAT = 1.0
"""Seconds between heartbeat comments once the events are sent."""
MAX_HEARTBEATS = 600
CONNECT_WITHIN = 30.0
"""Seconds each client has to connect."""


# --------------------------------------------------------------------------------------
# the broadcasting SSE server (its own process: ``--serve``)


@dataclass(slots=True, eq=False)
class Conn:
    """One open SSE connection: which client it is, and how to write to it."""

    label: str
    resp: web.StreamResponse
    transport: asyncio.BaseTransport | None
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    def live(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class Broadcaster:
    """Sends every event once, as the same bytes, to every open connection."""

    def __init__(self, rate: float, warmup_events: int, events: int, clients: int) -> None:
        self.rate = rate
        self.first = warmup_events
        """The last warm-up seq: events ``first + 1 .. last`` are measured."""
        self.last = warmup_events + events
        self.tail = max(10, math.ceil(rate * TAIL_SECONDS))
        self.clients = clients
        self.conns: list[Conn] = []
        self.order: list[str] = []
        """The label of every connection ever accepted, in order."""
        self.enough = asyncio.Event()
        self.state = "waiting for clients"
        self.sent = 0
        self.write_errors = 0
        """Failed writes of warm-up and measured events (later: clients that are done)."""
        self.lateness: list[float] = []
        self.write_loop: list[float] = []
        self.cpu_s = NAN
        self.wall_s = NAN

    def live(self) -> list[Conn]:
        return [c for c in self.conns if c.live()]

    def _drop(self, conn: Conn) -> None:
        conn.gone.set()
        if conn in self.conns:
            self.conns.remove(conn)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        await resp.write(b": connected\n\n")  # the headers go out now, not with event 1
        label = "probed" if "traceparent" in request.headers else "raw"
        conn = Conn(label, resp, request.transport)
        self.conns.append(conn)
        self.order.append(label)
        if len(self.live()) >= self.clients:
            self.enough.set()
        try:
            await conn.gone.wait()  # set by a failed write or the server's shutdown
        finally:
            self._drop(conn)
        return resp

    async def _write_all(self, payload: bytes) -> None:
        failed: list[Conn] = []
        # whoever is written to second waits for the first write: alternate the order per
        # event so that neither client always gets the later write
        for conn in self.conns if self.sent % 2 else self.conns[::-1]:
            try:
                await conn.resp.write(payload)  # buffered: does not wait for the peer
            except (ConnectionError, RuntimeError):
                failed.append(conn)
        for conn in failed:
            if self.sent < self.last:  # ``sent`` is the previous event's seq
                self.write_errors += 1
            self._drop(conn)

    async def run(self) -> None:
        """Wait for the clients, send every event on schedule, then heartbeats."""
        await self.enough.wait()
        self.state = "sending"
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate
        start = loop.time() + period
        cpu0 = wall0 = NAN
        for seq in range(1, self.last + self.tail + 1):
            due = start + (seq - 1) * period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late = loop.time() - due
            stamp = time.time() - D
            payload = f'id: {seq}\ndata: {{"seq": {seq}, "enqueued_at": {stamp!r}}}\n\n'.encode()
            t0 = time.perf_counter()
            await self._write_all(payload)
            took = time.perf_counter() - t0
            self.sent = seq
            if seq == self.first:
                cpu0, wall0 = time.process_time(), time.monotonic()
            elif self.first < seq <= self.last:
                self.lateness.append(late)
                self.write_loop.append(took)
                if seq == self.last:
                    self.cpu_s = time.process_time() - cpu0
                    self.wall_s = time.monotonic() - wall0
        self.state = "sent"
        for _ in range(MAX_HEARTBEATS):
            if not self.conns:
                break
            await asyncio.sleep(HEARTBEAT)
            await self._write_all(b": heartbeat\n\n")
        self.state = "done"

    def release(self) -> None:
        """Let every handler return (at shutdown)."""
        for conn in list(self.conns):
            self._drop(conn)

    def to_dict(self) -> dict[str, Any]:
        late, loop_s = self.lateness, self.write_loop
        return {
            "state": self.state,
            "open": len(self.live()),
            "order": self.order,
            "sent": self.sent,
            "first": self.first,
            "last": self.last,
            "write_errors": self.write_errors,
            "late_ms": [percentile(late, q) * 1000 for q in (0.5, 0.99, 1.0)],
            "write_loop_us": [percentile(loop_s, q) * 1e6 for q in (0.5, 0.99, 1.0)],
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
        }


def serve(args: argparse.Namespace) -> int:
    """The server process: serve ``/sse`` and ``/stats`` on 127.0.0.1:0 (printed)."""
    quiet_structlog(Counter())

    async def main() -> None:
        bcast = Broadcaster(args.rate, args.warmup_events, args.events, args.clients)

        async def stats(_: web.Request) -> web.Response:
            return web.json_response(bcast.to_dict())

        async def release(_: web.Application) -> None:
            bcast.release()

        app = web.Application()
        app.router.add_get("/sse", bcast.handle)
        app.router.add_get("/stats", stats)
        app.on_shutdown.append(release)
        sender = asyncio.create_task(bcast.run())
        try:
            await serve_app(app, args.lifetime, backlog=16, shutdown_timeout=1.0)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# the client processes (``--client probed|raw``)


class SeqRecorder:
    """Overhead per ``seq`` of the measured events; CPU from the last warm-up event to the last.

    A ``streams_raw.EventSink``: ``RawStreams`` and ``ProbedStreams`` call ``record``.
    """

    def __init__(self, first: int, last: int, gc_watch: GcWatch) -> None:
        self.first = first
        self.last = last
        self.gc_watch = gc_watch
        self.overhead: dict[int, float] = {}
        self.duplicates = 0
        self.bad = 0
        self.cpu0 = NAN
        self.cpu1 = NAN
        self.done = asyncio.Event()

    def _start(self) -> None:
        self.cpu0 = time.process_time()
        self.gc_watch.active = True

    def _finish(self) -> None:
        if not self.done.is_set():
            self.cpu1 = time.process_time()
            self.gc_watch.active = False
            self.done.set()

    def record(self, wall: float, data: object) -> None:
        if not isinstance(data, dict):
            self.bad += 1
            return
        seq, stamp = data.get("seq"), data.get("enqueued_at")
        if not isinstance(seq, int) or not isinstance(stamp, float):
            self.bad += 1
        elif seq <= self.first:
            if seq == self.first:
                self._start()
        elif seq > self.last:
            self._finish()
        elif seq in self.overhead:
            self.duplicates += 1
        else:
            if math.isnan(self.cpu0):  # the last warm-up event was lost
                self._start()
            self.overhead[seq] = wall - stamp - D
            if seq == self.last:
                self._finish()


async def client(args: argparse.Namespace) -> dict[str, Any]:
    """Watch the broadcast until the last measured event (or ``--within`` s); the figures."""
    log_counts: Counter[str] = Counter()
    quiet_structlog(log_counts)
    gc_watch = GcWatch()
    gc.callbacks.append(gc_watch)
    recorder = SeqRecorder(args.warmup_events, args.warmup_events + args.events, gc_watch)
    base_url = f"http://{LOOPBACK}:{args.port}"
    streams: RawStreams | ProbedStreams
    if args.client == "raw":
        streams = RawStreams(f"{base_url}/sse", 1, recorder)
    else:
        streams = ProbedStreams(base_url, 1, args.rate, recorder)
        streams.log_counts = log_counts

    async def body() -> dict[str, Any]:
        try:
            await asyncio.wait_for(recorder.done.wait(), args.within)
        except TimeoutError:
            progress(f"  [{args.client}] the last event did not come within {args.within:g} s")
        received = len(recorder.overhead)
        cpu = recorder.cpu1 - recorder.cpu0
        return {
            "client": args.client,
            "finished": recorder.done.is_set(),
            "expected": recorder.last - recorder.first,
            "received": received,
            "duplicates": recorder.duplicates,
            "bad": recorder.bad,
            "seqs": list(recorder.overhead),
            "overhead_s": list(recorder.overhead.values()),
            "cpu_s": cpu,
            "cpu_us_per_event": cpu / received * 1e6 if received else NAN,
            "gc": gc_watch.to_dict(),
            "connected_end": streams.connected(),
            "checks": streams.checks(),
        }

    async with asyncio.timeout(args.within + 30.0):
        return await streams.run(body, time.monotonic() + args.within)


def client_main(args: argparse.Namespace) -> int:
    """A client process: print one ``RESULT {json}`` line on stdout."""
    try:
        result = asyncio.run(client(args))
    except BenchError as exc:
        result = {"error": str(exc)}
    except TimeoutError:
        result = {"error": f"the {args.client} client did not finish within its time budget"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------
# the bench: rounds, the join by seq, the report


@dataclass(slots=True)
class Round:
    number: int
    order: tuple[str, ...]
    results: dict[str, dict[str, Any]]
    server: dict[str, Any]
    load: tuple[float, float]
    """1-minute load average before and after the round."""


@dataclass(frozen=True, slots=True)
class Plan:
    rate: float
    warmup_events: int
    events: int

    @property
    def send_seconds(self) -> float:
        tail = max(10, math.ceil(self.rate * TAIL_SECONDS))
        return (self.warmup_events + self.events + tail) / self.rate


async def wait_connected(
    control: aiohttp.ClientSession, port: int, count: int, task: asyncio.Task[dict[str, Any]]
) -> dict[str, Any]:
    """Poll the server until ``count`` connections are open; BenchError if not within 30 s."""
    deadline = time.monotonic() + CONNECT_WITHIN
    while time.monotonic() < deadline:
        if task.done():
            task.result()  # raises the client's BenchError
            raise BenchError("a client ended before the broadcast started")
        stats = await server_stats(control, port)
        if num(stats.get("open")) >= count:
            return stats
        await asyncio.sleep(0.05)
    raise BenchError(f"{count} client(s) not connected within {CONNECT_WITHIN:g} s")


async def run_round(
    procs: Processes, plan: Plan, number: int, order: tuple[str, ...], tmp: Path
) -> Round:
    """One server and both clients, started in ``order``; every process stopped at the end."""
    load0 = os.getloadavg()[0]
    within = 2 * CONNECT_WITHIN + plan.send_seconds + 10.0
    events = {"rate": plan.rate, "warmup_events": plan.warmup_events, "events": plan.events}
    server_argv = flags(serve=True, clients=len(order), lifetime=within + 120.0, **events)
    server, port = await start_printing_port(
        procs, [sys.executable, str(SELF), *server_argv], tmp / f"server-{number}.log"
    )
    tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
    try:
        control = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10.0),
        )
        async with control:
            for i, kind in enumerate(order, start=1):
                argv = flags(client=kind, port=port, within=within, **events)
                tasks[kind] = asyncio.create_task(
                    run_child_result(procs, [sys.executable, str(SELF), *argv], within + 60.0)
                )
                stats = await wait_connected(control, port, i, tasks[kind])
                if stats.get("order", [])[i - 1 : i] != [kind]:
                    raise BenchError(f"connection {i} is not the {kind} client: {stats['order']}")
            progress(
                f"  round {number}: {' then '.join(order)} connected; "
                f"{plan.warmup_events + plan.events:,} events over {plan.send_seconds:.0f} s ..."
            )
            done = await asyncio.gather(*tasks.values())
            server_figures = await server_stats(control, port)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await procs.stop(server)
    results = dict(zip(tasks, done, strict=True))
    return Round(number, order, results, server_figures, (load0, os.getloadavg()[0]))


@dataclass(slots=True)
class Joined:
    """The overheads (seconds) of the events both clients received, in seq order."""

    probed: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)

    @property
    def diff(self) -> list[float]:
        return [p - r for p, r in zip(self.probed, self.raw, strict=True)]

    def extend(self, other: Joined) -> None:
        self.probed += other.probed
        self.raw += other.raw


def join(results: dict[str, dict[str, Any]]) -> Joined:
    probed = dict(zip(results["probed"]["seqs"], results["probed"]["overhead_s"], strict=True))
    raw = dict(zip(results["raw"]["seqs"], results["raw"]["overhead_s"], strict=True))
    common = sorted(probed.keys() & raw.keys())
    return Joined([float(probed[s]) for s in common], [float(raw[s]) for s in common])


QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))


def quantiles_ms(values: Sequence[float]) -> list[float]:
    return [percentile(values, q) * 1000 for _, q in QUANTILES]


def cpu_per_event(results: Sequence[dict[str, Any]]) -> float:
    """CPU µs per event over several windows: total CPU / total events."""
    cpu = sum(num(r.get("cpu_s")) for r in results)
    events = sum(int(r.get("received", 0)) for r in results)
    return cpu / events * 1e6 if events else NAN


def judge(joined: Joined) -> tuple[float, float, str]:
    """(probed p99, raw p99, verdict) of the target on these matched events."""
    p99_probed = percentile(joined.probed, 0.99) * 1000
    p99_raw = percentile(joined.raw, 0.99) * 1000
    return p99_probed, p99_raw, verdict(p99_probed - p99_raw, TARGET_MARGIN_MS)


def table_lines(rounds: Sequence[Round]) -> list[str]:
    """The side-by-side table: per round and pooled, each client and the per-event difference."""
    head = f"  {'':<36}{'received':>9}{'matched':>9}"
    head += "".join(f"{name:>9}" for name, _ in QUANTILES) + f"{'CPU/event':>11}"
    lines = [
        "  overhead = receive wall time - enqueued_at - D over the events both received (ms); "
        "CPU per event (µs)",
        head,
    ]

    def row(label: str, received: str, matched: int, values: Sequence[float], cpu: str) -> None:
        cells = "".join(f"{fmt(v, 3):>9}" for v in quantiles_ms(values))
        lines.append(f"  {label:<36}{received:>9}{matched:>9,}{cells}{cpu:>11}".rstrip())

    pooled = Joined()
    for rnd in rounds:
        joined = join(rnd.results)
        pooled.extend(joined)
        lines.append(f"  round {rnd.number}: {rnd.order[0]} connected first")
        for kind in CLIENTS:
            res = rnd.results[kind]
            values = joined.probed if kind == "probed" else joined.raw
            row(
                f"    {kind}",
                f"{res['received']:,}",
                len(values),
                values,
                fmt(res["cpu_us_per_event"], 1),
            )
        row("    probed - raw, per event", "", len(joined.probed), joined.diff, "")
    if len(rounds) > 1:
        lines.append(f"  all {len(rounds)} rounds (matched events pooled)")
        for kind in CLIENTS:
            res_all = [r.results[kind] for r in rounds]
            values = pooled.probed if kind == "probed" else pooled.raw
            received = sum(int(r["received"]) for r in res_all)
            row(f"    {kind}", f"{received:,}", len(values), values, fmt(cpu_per_event(res_all), 1))
        row("    probed - raw, per event", "", len(pooled.probed), pooled.diff, "")
    return lines


def details(rnd: Round) -> list[str]:
    """What else each round shows: server, order, accounting, GC, warnings."""
    out: list[str] = []
    srv = rnd.server
    late, loop_us = srv.get("late_ms", []), srv.get("write_loop_us", [])
    wall = num(srv.get("wall_s"))
    cpu_pct = num(srv.get("cpu_s")) / wall * 100 if wall > 0 else NAN
    out.append(
        f"  round {rnd.number}: connected {', then '.join(srv.get('order', []))} "
        "(writes alternate per event); "
        f"{min(int(srv.get('sent', 0)), int(srv.get('last', 0))) - int(srv.get('first', 0)):,} "
        f"measured events sent; send lateness p50/p99/max "
        f"{'/'.join(fmt(v, 2) for v in late)} ms; write loop (all connections) p50/p99/max "
        f"{'/'.join(fmt(v, 0) for v in loop_us)} µs; CPU {fmt(cpu_pct, 0)}% of a core; "
        f"failed writes {srv.get('write_errors', 0)} (up to the last measured event); "
        f"load average {rnd.load[0]:.2f} -> {rnd.load[1]:.2f}"
    )
    joined = join(rnd.results)
    if joined.diff:
        first = sum(1 for d in joined.diff if d < 0) / len(joined.diff) * 100
        out.append(f"    probed received an event before raw for {first:.1f} % of the events")
    for kind in CLIENTS:
        res = rnd.results[kind]
        gc_cells = ", ".join(
            f"gen{g} {v['n']} (max {fmt(v['max_ms'], 1)} ms)" for g, v in res["gc"].items()
        )
        checks = res.get("checks", {})
        extra = (
            f"; watcher: {checks.get('totals')}, reconnects {checks.get('reconnects') or 0}"
            if kind == "probed"
            else f"; connection ends {checks.get('errors') or 0}"
        )
        out.append(f"    {kind}: GC in window {gc_cells}{extra}")
        negative = sum(1 for v in res["overhead_s"] if v < 0)
        if negative:
            out.append(f"    WARNING ({kind}): {negative} negative overheads: a clock problem")
        if not res["finished"] or res["received"] < res["expected"]:
            out.append(
                f"    WARNING ({kind}): received {res['received']:,} of {res['expected']:,} "
                f"measured events{'' if res['finished'] else ', never saw the last'}"
            )
        if res["duplicates"] or res["bad"]:
            out.append(f"    WARNING ({kind}): {res['duplicates']} duplicates, {res['bad']} bad")
    return out


async def bench(args: argparse.Namespace) -> bool:
    """Every round, then the report; True when every round was measured."""
    cancel_on_sigterm()
    procs = Processes()
    plan = Plan(
        args.rate, max(1, round(args.rate * args.warmup)), max(1, round(args.rate * args.duration))
    )
    say(
        "probed SSE watcher beside a raw aiohttp loop, same events (bench/stream_side_by_side.py)"
        + (" --quick" if args.quick else "")
    )
    say(
        f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}, aiohttp {aiohttp.__version__}; load average "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    say(
        f"  one server broadcasting {plan.rate:g} events/s to both clients at once: "
        f"{plan.warmup_events:,} warm-up + {plan.events:,} measured events per round "
        f"({args.warmup:g} s + {args.duration:g} s), {args.rounds} rounds, D = {D:g} s, "
        "loopback only"
    )
    rounds: list[Round] = []
    errors: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="stream-sbs-") as tmp:
            for number in range(1, args.rounds + 1):
                order = CLIENTS if number % 2 else CLIENTS[::-1]
                try:
                    rounds.append(await run_round(procs, plan, number, order, Path(tmp)))
                except BenchError as exc:
                    errors.append(f"round {number}: {exc}")
                    progress(f"  round {number} NOT MEASURED: {exc}")
    finally:
        await procs.stop_all()
    say()
    if rounds:
        for line in table_lines(rounds):
            say(line)
        say()
        for rnd in rounds:
            for line in details(rnd):
                say(line)
        say()
    verdicts: list[str] = []
    for rnd in rounds:
        p99_probed, p99_raw, result = judge(join(rnd.results))
        verdicts.append(result)
        say(
            f"  round {rnd.number} ({rnd.order[0]} first): probed p99 {fmt(p99_probed, 3)} ms "
            f"vs raw p99 {fmt(p99_raw, 3)} ms + {TARGET_MARGIN_MS:g} ms — {result}"
        )
    verdicts += ["NOT MEASURED"] * len(errors)
    if not verdicts:
        overall = "NOT MEASURED"
    elif all(v == "MET" for v in verdicts):
        overall = "MET"
    elif "NOT MET" in verdicts:
        overall = "NOT MET"
    else:
        overall = "NOT MEASURED"
    say(
        f"TARGET probed lag overhead p99 ≤ raw p99 + {TARGET_MARGIN_MS:g} ms (in every round): "
        f"{overall}"
    )
    for error in errors:
        say(f"  ERROR: {error}")
    return not errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="probed's SSE watcher and a minimal aiohttp loop on the same broadcast events."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5 s rounds after a 1 s warm-up"
    )
    parser.add_argument("--rate", type=positive, default=200.0, help="events per second (200)")
    parser.add_argument(
        "--duration", type=positive, help="measured seconds per round (30; --quick: 5)"
    )
    parser.add_argument("--warmup", type=positive, help="warm-up seconds per round (2; --quick: 1)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, start order alternating (2)")
    # internal: the server and client processes
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve", action="store_true", help=hidden)
    parser.add_argument("--client", choices=CLIENTS, help=hidden)
    parser.add_argument("--clients", type=int, default=2, help=hidden)
    parser.add_argument("--port", type=int, default=0, help=hidden)
    parser.add_argument("--warmup-events", type=int, default=1, help=hidden)
    parser.add_argument("--events", type=int, default=1, help=hidden)
    parser.add_argument("--within", type=positive, default=600.0, help=hidden)
    parser.add_argument("--lifetime", type=positive, default=600.0, help=hidden)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        return serve(args)
    if args.client:
        return client_main(args)
    if args.duration is None:
        args.duration = 5.0 if args.quick else 30.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    problems = [
        "--rate must be at most 5000" if args.rate > 5000 else "",
        "--duration must be at most 3600" if args.duration > 3600 else "",
        "--warmup must be at most 60" if args.warmup > 60 else "",
        "--rounds must be in [1, 20]" if not 1 <= args.rounds <= 20 else "",
    ]
    if any(problems):
        print("; ".join(p for p in problems if p), file=sys.stderr)
        return 2
    return run_bench(bench(args), lambda measured: 0 if measured else 1)


if __name__ == "__main__":
    sys.exit(main())
