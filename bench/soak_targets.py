"""The soak's demo targets: the target process itself and its handle in the bench.

Part of ``bench/soak.py`` (imported as ``soak_targets``; ``bench/`` is the
script directory). Each target is ``soak.py --serve-target`` in its own
process: ``probed.demo.DemoTarget`` on 127.0.0.1, port 0, an in-process
publisher of ``soak.g<N>`` events, and a control listener on a port of its own
(it answers while the target refuses connections) reporting open streams,
events published and the target's own log counts.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    LOOPBACK,
    BenchError,
    Processes,
    count_warnings,
    get_json_object,
    quiet_structlog,
    raise_nofile,
    tail,
    wait_for_stop,
)
from aiohttp import web

SOAK = Path(__file__).resolve().parent / "soak.py"
"""The script a target process runs (``soak.py --serve-target``)."""
REPO = SOAK.parent.parent
PASSWORD_ENV = "SOAK_DEMO_PASSWORD"
"""The demo login password, in the environment of the targets and the daemon."""


# --------------------------------------------------------------------------------------
# the demo target (its own process: ``soak.py --serve-target``)


def serve_target(index: int, events_rate: float, groups: int, lifetime: float) -> int:
    """Run a DemoTarget, its publisher and a control listener; print both ports."""
    from probed.demo import DemoTarget

    raise_nofile()
    logs: Counter[str] = Counter()
    quiet_structlog(logs)
    count_warnings(logs, with_level=True)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(16)
    stats: dict[str, int] = {"published": 0, "publish_errors": 0, "publisher_resyncs": 0}

    async def publish_loop(target: DemoTarget) -> None:
        """``events_rate`` events/s round-robin over ``groups`` types, each with its sequence."""
        loop = asyncio.get_running_loop()
        gseq = [0] * groups
        started = loop.time()
        sent = 0
        ticks = math.ceil(lifetime / 0.05) + 1
        for _ in range(ticks):  # bounded: the process lives at most ``lifetime``
            await asyncio.sleep(0.05)
            due = math.floor((loop.time() - started) * events_rate)
            if due - sent > events_rate * 5:  # the loop was stalled: do not burst
                stats["publisher_resyncs"] += 1
                sent = due - 1
            while sent < due:
                group = sent % groups
                sent += 1
                gseq[group] += 1
                try:
                    target.publish(f"soak.g{group}", {"gseq": gseq[group], "target": index})
                except (RuntimeError, ValueError):
                    gseq[group] -= 1
                    stats["publish_errors"] += 1
                else:
                    stats["published"] += 1

    async def main() -> None:
        target = DemoTarget(host=LOOPBACK, port=0, password=password, seed=index)
        await target.start()
        publisher: asyncio.Task[None] | None = None
        control = web.Application()

        async def stats_handler(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    **stats,
                    "subscribers": target.stream_subscribers(),
                    "refusing": target.refusing,
                    "logs": dict(logs),
                }
            )

        control.router.add_get("/stats", stats_handler)
        runner = web.AppRunner(control, access_log=None, handle_signals=False)
        try:
            await runner.setup()
            site = web.TCPSite(runner, LOOPBACK, 0)
            await site.start()
            control_port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
            print(f"{target.port} {control_port}", flush=True)
            if events_rate > 0:
                publisher = asyncio.create_task(publish_loop(target), name="soak-publisher")
            await wait_for_stop(lifetime)
        finally:
            if publisher is not None:
                publisher.cancel()
                await asyncio.gather(publisher, return_exceptions=True)
            await runner.cleanup()
            await target.stop()

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# the demo targets, seen from the orchestrating bench


@dataclass(slots=True)
class TargetProc:
    """One demo target process: its ports and its share of the streams."""

    index: int
    proc: asyncio.subprocess.Process
    port: int
    control_port: int
    streams: int
    groups: int
    events_rate: float

    @property
    def name(self) -> str:
        return f"t{self.index}"

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        return await get_json_object(
            session,
            f"http://{LOOPBACK}:{self.control_port}/stats",
            f"target {self.name}: unexpected /stats answer",
        )


async def start_target(
    procs: Processes,
    scratch: Path,
    env: dict[str, str],
    *,
    index: int,
    streams: int,
    groups: int,
    events_rate: float,
    lifetime: float,
) -> TargetProc:
    argv = [
        sys.executable,
        str(SOAK),
        "--serve-target",
        "--index",
        str(index),
        "--target-events-rate",
        f"{events_rate:.6g}",
        "--groups",
        str(groups),
        "--lifetime",
        f"{lifetime:.0f}",
    ]
    err_path = scratch / f"target{index}.stderr"
    with err_path.open("wb") as err:
        proc = await procs.spawn(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        port, control_port = (int(p) for p in line.split())
    except (TimeoutError, ValueError) as exc:
        raise BenchError(
            f"target {index} did not print its ports: {exc!r}\n{tail(err_path)}"
        ) from None
    return TargetProc(index, proc, port, control_port, streams, groups, events_rate)
