"""The daemon run in-process for hostile-input tests, its targets, and reading its scrapes."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from probed.config import load_config
from probed.daemon import Daemon

__all__ = [
    "app_of",
    "health",
    "live_daemon",
    "open_fds",
    "rss_mib",
    "sample",
    "watch_metrics",
]


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def app_of(*routes: tuple[str, Handler]) -> web.Application:
    """An app serving each (path, handler) for GET."""
    app = web.Application()
    for path, handler in routes:
        app.router.add_get(path, handler)
    return app


async def health(request: web.Request) -> web.Response:
    """A healthy target's /health."""
    return web.json_response({"status": "ok"})


def rss_mib() -> float:
    """This process's resident memory after a full collection (MiB)."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in exposition text, labels in any order (0 when absent)."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == labels:
            return float(value)
    return 0.0


@asynccontextmanager
async def live_daemon(config_path: Path) -> AsyncIterator[tuple[Daemon, asyncio.Task[int], str]]:
    """Run the daemon in-process on ``config_path``; yield it, its task and its base URL."""
    daemon = Daemon(load_config(config_path), install_signal_handlers=False, shutdown_grace=0.5)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.wait_started(), 5)
    try:
        yield daemon, task, f"http://127.0.0.1:{daemon.bound_port}"
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


async def watch_metrics(
    base: str, task: asyncio.Task[int], seconds: float, done: Callable[[str], bool]
) -> tuple[str, float]:
    """Scrape every 50 ms for at least ``seconds`` and until ``done``; the last text, slowest."""
    slowest = 0.0
    text = ""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline or not done(text):
            assert not task.done(), f"the daemon exited: {task.result()!r}"
            assert time.monotonic() < deadline + 10, "condition not reached in time"
            started = time.monotonic()
            async with http.get(f"{base}/metrics") as resp:
                assert 200 == resp.status
                text = await resp.text()
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.05)
    return text, slowest
