"""What the soak collects from the running daemon: RSS, fds and CPU readings, /metrics scrapes.

Part of ``bench/soak.py`` (imported as ``soak_sampler``; ``bench/`` is the
script directory). Readings come from ``/proc/PID``; a scrape is one
``GET /metrics``, parsed by ``soak_exposition``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from _common import LOOPBACK, BenchError, cpu_seconds, fd_count, rss_kib, say
from soak_exposition import Metrics, parse_metrics

SAMPLE_EVERY = 10.0
"""Seconds between RSS / fd samples."""
PROGRESS_EVERY = 60.0
"""Seconds between progress lines."""
FD_READS = 5
"""fd counts taken (0.5 s apart) for a start or end reading; the least is used."""


def mib(kib: float) -> float:
    return kib / 1024.0


@dataclass(slots=True)
class Reading:
    """RSS, fds and CPU of the daemon at one moment."""

    at: float
    rss_kib: int
    fds: int
    cpu_s: float


def reading(pid: int) -> Reading:
    """RSS, fds and CPU of process ``pid`` now."""
    return Reading(time.monotonic(), rss_kib(pid), fd_count(pid), cpu_seconds(pid))


async def quiet_reading(pid: int) -> Reading:
    """A reading whose fd count is the least of ``FD_READS`` counts 0.5 s apart."""
    fds = []
    for i in range(FD_READS):
        if i:
            await asyncio.sleep(0.5)
        fds.append(fd_count(pid))
    now = reading(pid)
    now.fds = min(fds)
    return now


async def sample(
    pid: int,
    samples: list[Reading],
    started: float,
    stop: asyncio.Event,
    seconds: float,
    faults: Callable[[], str],
) -> None:
    """Sample RSS and fds every ``SAMPLE_EVERY`` s; a progress line every minute.

    Appends to ``samples`` until ``stop`` is set, for at most ``seconds``;
    ``faults`` describes the faults in the progress line.
    """
    next_progress = PROGRESS_EVERY
    for _ in range(math.ceil(seconds / SAMPLE_EVERY)):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
        if stop.is_set():
            return
        try:
            now = reading(pid)
        except (OSError, BenchError):
            return  # the daemon is gone; the main flow reports it
        samples.append(now)
        elapsed = now.at - started
        if elapsed >= next_progress:
            next_progress += PROGRESS_EVERY
            say(
                f"  [{elapsed:5.0f} s] RSS {mib(now.rss_kib):6.1f} MiB, fds "
                f"{now.fds:4d}, CPU {now.cpu_s:7.1f} s; faults: {faults()}"
            )


@dataclass(slots=True)
class Snapshot:
    """One /metrics scrape."""

    at: float
    """time.monotonic() when the scrape returned."""
    wall: float
    seconds: float
    size: int
    text: str
    """The exposition as scraped."""

    def metrics(self) -> Metrics:
        """The samples the report uses, parsed from ``text``.

        Parsing takes a while (about half a second for the ~2.5 MB of 500 streams),
        so it waits for the report: the scrape and the readings around it are not
        delayed by it, nor is the bench's own CPU in the window increased.
        """
        return parse_metrics(self.text)


async def scrape(session: aiohttp.ClientSession, port: int) -> Snapshot:
    started = time.monotonic()
    async with session.get(f"http://{LOOPBACK}:{port}/metrics") as resp:
        text = await resp.text()
        if resp.status != 200:
            raise BenchError(f"/metrics answered {resp.status}")
    done = time.monotonic()
    return Snapshot(done, time.time(), done - started, len(text), text)
