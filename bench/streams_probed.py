"""The stream benchmark's probed side: real ``StreamWatcher``s, and the reflect probe.

Part of ``bench/streams.py`` (imported as ``streams_probed``; ``bench/`` is the
script directory). ``ProbedStreams`` runs the daemon's ``StreamManager`` with
one watcher per stream; ``client_reflect`` runs ``probe_reflect`` through
``run_probe`` against the demo target.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from _common import (
    LOOPBACK,
    NAN,
    BenchError,
    num,
    quiet_structlog,
    raise_nofile,
    summary_ms,
    wait_until,
)
from streams_raw import EventSink, Identity

from probed.config import ReflectProbe, SseStream, TargetConfig
from probed.http.session import create_sessions
from probed.probes.base import ProbeContext, ProbeFn, run_probe
from probed.probes.reflect import probe_reflect
from probed.results import ProbeRun
from probed.store import ResultStore
from probed.stream.hub import Hub, ReceivedEvent
from probed.stream.manager import StreamManager

IDLE_TIMEOUT = "60s"
CONNECT_TIMEOUT = "30s"


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
