"""How much a /metrics scrape of a big daemon stalls the event loop, three ways.

    python bench/scrape_stall.py                  # 203 probes, 500 streams
    python bench/scrape_stall.py --streams 5000

A store is filled like the soak's (``--probes`` http probes with 50 runs each,
``--streams`` streams with 100 timed events each). While a 1 ms ticker runs on
the event loop, five scrapes are rendered

* ``loop``: ``generate_latest`` on the loop (the simple way);
* ``collect-loop``: collect on the loop, encode in a worker thread;
* ``frozen-thread``: copy the store on the loop (``ProbedRegistry.frozen``),
  collect and encode in a worker thread (what the daemon does);

at CPython's default GIL switch interval (5 ms) and at the daemon's
(``probed.daemon.SWITCH_INTERVAL``). It prints the time per scrape and the
ticker's lateness (p50/p99/max): how late the loop got to run anything.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from probed.daemon import SWITCH_INTERVAL
from probed.metrics import DaemonInfo, ProbedRegistry, build_registry
from probed.results import ProbeResult, ProbeRun
from probed.store import ResultStore

MODES = ("loop", "collect-loop", "frozen-thread")


class Collected(CollectorRegistry):
    """Metric families already collected, for an encoder in a worker thread."""

    def __init__(self, families: list[Metric]) -> None:
        super().__init__(auto_describe=False)
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


SCRAPES = 5


def filled_registry(probes: int, streams: int) -> ProbedRegistry:
    """A registry over a store with ``probes`` probes and ``streams`` streams."""
    store = ResultStore()
    now = time.time()
    ok = ProbeResult.ok(status_code=200, phases={"connect": 0.001, "processing": 0.002})
    for i in range(probes):
        store.register(f"p{i}", "http", "demo")
        for k in range(50):
            store.record(ProbeRun(f"p{i}", "http", "demo", "r", "t" * 32, now, 0.01 * k, ok))
    for i in range(streams):
        stats = store.register_stream(f"s{i}", "demo", 1)
        for k in range(100):
            stats.observe_lag(0.01 * k, now - 100 + k)
        stats.reconnects["eof"] += 1
    return build_registry(store, DaemonInfo())


async def scrape(registry: ProbedRegistry, mode: str) -> bytes:
    """One exposition of ``registry`` the ``mode`` way."""
    if mode == "loop":
        return generate_latest(registry)
    if mode == "collect-loop":
        families = list(registry.collect())
        return await asyncio.to_thread(generate_latest, Collected(families))
    return await asyncio.to_thread(generate_latest, registry.frozen())


async def measure(registry: ProbedRegistry, mode: str) -> tuple[float, list[float], int]:
    """(seconds per scrape, sorted ticker lateness, bytes) over ``SCRAPES`` scrapes."""
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - started - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.2)
    lateness.clear()
    started = time.perf_counter()
    size = 0
    for _ in range(SCRAPES):
        size = len(await scrape(registry, mode))
    per_scrape = (time.perf_counter() - started) / SCRAPES
    stop.set()
    await task
    return per_scrape, sorted(lateness), size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--probes", type=int, default=203, help="http probes (203)")
    parser.add_argument("--streams", type=int, default=500, help="streams (500)")
    args = parser.parse_args(argv)
    registry = filled_registry(args.probes, args.streams)
    print(f"{args.probes} probes, {args.streams} streams; {SCRAPES} scrapes per row")
    print(f"{'switch interval':>15}  {'mode':14} {'scrape':>9}  ticker lateness p50 / p99 / max")
    default = sys.getswitchinterval()
    for interval in (0.005, SWITCH_INTERVAL):
        sys.setswitchinterval(interval)
        for mode in MODES:
            per_scrape, late, size = asyncio.run(measure(registry, mode))
            p50, p99 = late[len(late) // 2], late[int(len(late) * 0.99)]
            print(
                f"{interval * 1000:12.1f} ms  {mode:14} {per_scrape * 1000:6.1f} ms  "
                f"{p50 * 1000:6.2f} / {p99 * 1000:6.2f} / {late[-1] * 1000:6.1f} ms "
                f"({len(late)} ticks, {size / 1e6:.2f} MB)"
            )
    sys.setswitchinterval(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
