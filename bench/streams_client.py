"""The stream benchmark's client process: one client kind, one measured window, one result.

Part of ``bench/streams.py`` (imported as ``streams_client``; ``bench/`` is the
script directory). ``streams.py --client raw|probed|reflect|reflect-raw`` runs
``client_main``, which prints one ``RESULT {json}`` line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    LOOPBACK,
    NAN,
    BenchError,
    get_json_object,
    progress,
    quiet_structlog,
    raise_nofile,
    status_kib,
    summary_ms,
    wait_until,
)
from streams_probed import ProbedStreams, client_reflect
from streams_raw import RawStreams, client_reflect_raw
from streams_servers import MAX_SAMPLES, D

FD_MARGIN = 256
"""File descriptors a process needs besides one per stream."""


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


async def server_stats(
    control: aiohttp.ClientSession, port: int, *, reset: bool = False
) -> dict[str, Any]:
    url = f"http://{LOOPBACK}:{port}/stats" + ("?reset=1" if reset else "")
    return await get_json_object(control, url, "unexpected /stats answer:")


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
