"""What a status request costs, built from scratch or from the parts kept since the last one.

    python bench/status_doc.py                      # 200 probes, 500 streams, 30 requests
    python bench/status_doc.py --rounds 3 --changed 0.1
    python bench/status_doc.py --streams 5000 --requests 10

A store is filled as after a long run: ``--probes`` http probes with a full ring of
runs (120, one every 30 s, a few failed) and ``--streams`` streams with an event every
second over the 300 s signal window. Then ``--requests`` times: ``--gap`` seconds pass
(simulated: each probe runs every 30 s, ``--changed`` of the streams get an event every
second, a new evaluation comes every 10 s and reads the windows, as the daemon's does), and
the status is asked for each way, at the same instant, taking turns:

* ``scratch``: ``status_document`` on the loop, ``json.dumps`` in a worker thread (what
  the server did before ``probed.statuscache``);
* ``incremental``: ``StatusCache.build`` and its text on the loop (what it does now);
* ``scratch page`` / ``incremental page``: the document the same way, then the page
  (``/status``) rendered in a worker thread; the incremental way parses its text there
  first, one probe or stream at a time.

For each way it prints the CPU time per request (the loop's thread and the worker's,
measured by ``time.thread_time`` in each, so other threads and the ticker do not count),
median and p90 over the requests, and the loop's stall: how late a 1 ms ticker on the
loop woke up around the request. The first request of the incremental way (nothing kept
yet) is shown apart. The two ways' texts and pages are compared at every request. The
heap is frozen after the fill, so a garbage collection walks what the requests allocate.
``--rounds`` repeats the whole run on a fresh store and prints each round and the median
of the rounds' medians, for a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import percentile, say

from probed.daemon import SWITCH_INTERVAL
from probed.history import Entry, History
from probed.results import ProbeResult, ProbeRun, Reason
from probed.signals import ComponentState, ComponentStatus, Evaluation, Signals
from probed.status import status_document
from probed.statuscache import StatusCache, StatusText
from probed.statuspage import render_page
from probed.store import ResultStore

PROBE_EVERY = 30.0
EVALUATE_EVERY = 10.0
WAYS = ("scratch", "incremental", "scratch page", "incremental page")


@dataclass
class Daemon:
    """A store and what the status document reads besides it, on a simulated clock."""

    store: ResultStore
    history: History
    now: float
    rng: random.Random
    changed: float
    evaluation: Evaluation | None = None
    probes_run: dict[str, float] = field(default_factory=dict)
    sequence: int = 0

    def evaluate(self) -> None:
        """A new evaluation, reading the windows as the daemon's does (which expires them)."""
        for st in self.store:
            st.window.at(self.now)
        for stats in self.store.streams.values():
            stats.lag_window.count(self.now)
        probes = tuple(st.name for st in self.store)
        streams = tuple(self.store.streams)
        half = len(probes) // 2
        components = (
            ComponentStatus("API Read", ComponentState.OK, probes[:half], (), self.now - 5),
            ComponentStatus("API Write", ComponentState.OK, probes[half:], (), self.now - 5),
            ComponentStatus("SSE Stream", ComponentState.OK, streams, (), self.now),
        )
        signals = Signals(now=self.now, window=300.0)
        self.evaluation = Evaluation(self.now, signals, components, ())

    def run(self, name: str, at: float) -> None:
        failed = self.rng.random() < 0.05
        result = (
            ProbeResult.fail(Reason.TIMEOUT, status_code=None)
            if failed
            else ProbeResult.ok(status_code=200, phases={"connect": 0.001, "processing": 0.01})
        )
        run = ProbeRun(
            name, "http", "demo", "run", "t" * 32, at, 0.02 + self.rng.random() / 50, result
        )
        self.store.record(run)
        self.probes_run[name] = at

    def event(self, name: str, wall: float) -> None:
        stats = self.store.streams[name]
        self.sequence += 1
        stats.bytes_read(time.monotonic())
        stats.event_received(time.monotonic(), wall)
        stats.sequence_observed("new", 0)
        stats.observe_lag(0.05 + self.rng.random() / 10, wall)

    def advance(self, seconds: float) -> None:
        """``seconds`` pass: runs, events and evaluations that fall in them."""
        start, self.now = self.now, self.now + seconds
        for name, last in self.probes_run.items():
            at = last + PROBE_EVERY
            while at <= self.now:
                self.run(name, at)
                at += PROBE_EVERY
        active = [n for n in self.store.streams if self.rng.random() < self.changed]
        for second in range(int(start) + 1, int(self.now) + 1):
            for name in active:
                self.event(name, second - 0.5)
        if self.evaluation is None or self.now - self.evaluation.at >= EVALUATE_EVERY:
            self.evaluate()


def filled(probes: int, streams: int, changed: float, seed: int) -> Daemon:
    """A daemon's state after a long run (see the module docstring)."""
    now = 1_770_508_800.0
    daemon = Daemon(ResultStore(), History(), now, random.Random(seed), changed)
    for i in range(probes):
        name = f"probe-{i:03d}"
        daemon.store.register(name, "http", "demo")
        offset = daemon.rng.random() * PROBE_EVERY
        for k in range(daemon.store.ring_size, 0, -1):
            daemon.run(name, now - offset - k * PROBE_EVERY)
    for i in range(streams):
        name = f"stream-{i:03d}"
        stats = daemon.store.register_stream(name, "demo", 1)
        stats.connection_opened(0.01, primary=True)
        stats.clock_reading("date", -0.4, 0.6)
        for second in range(int(now) - 300, int(now)):
            daemon.event(name, second + 0.5)
    for k in range(60):
        entry = Entry(now - 3600 + k * 60, "component", "API Read", "OK", "DEGRADED", "slow")
        daemon.history.add(entry)
    daemon.evaluate()
    return daemon


@dataclass
class Sample:
    """One request: CPU seconds on the loop's thread and the worker's, the loop's stall."""

    loop_cpu: float
    thread_cpu: float
    stall: float

    @property
    def cpu(self) -> float:
        return self.loop_cpu + self.thread_cpu


class Ticker:
    """A 1 ms ticker on the loop that records how late it woke up, and when."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            woke = time.perf_counter()
            self.ticks.append((woke, woke - started - 0.001))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def worst(self, start: float, end: float) -> float:
        return max((late for woke, late in self.ticks if start <= woke <= end), default=0.0)


async def request(
    ticker: Ticker, on_loop: Callable[[], Any], in_thread: Callable[[Any], str] | None
) -> tuple[Sample, str]:
    """``on_loop()``, then ``in_thread`` of it in a worker thread: the response body."""
    started = time.perf_counter()
    cpu = time.thread_time()
    built = on_loop()
    loop_cpu = time.thread_time() - cpu
    body, thread_cpu = built, 0.0
    if in_thread is not None:

        def worker() -> tuple[str, float]:
            cpu = time.thread_time()
            body = in_thread(built)
            return body, time.thread_time() - cpu

        body, thread_cpu = await asyncio.to_thread(worker)
    ended = time.perf_counter()
    await asyncio.sleep(0.005)  # the tick the request delayed, if any, lands
    return Sample(loop_cpu, thread_cpu, ticker.worst(started, ended + 0.004)), body


def _page(status: StatusText) -> str:
    return render_page(status.document())


async def measure(
    daemon: Daemon, requests: int, gap: float
) -> tuple[dict[str, list[Sample]], Sample]:
    """The samples of each way over ``requests`` requests, and the incremental way's first."""
    cache = StatusCache()
    samples: dict[str, list[Sample]] = {way: [] for way in WAYS}
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(0.05)
    first: Sample | None = None
    for k in range(requests + 1):
        if k:
            daemon.advance(gap)
        now, mono = daemon.now, time.monotonic()
        common: dict[str, Any] = {
            "store": daemon.store,
            "evaluation": daemon.evaluation,
            "location": "bench",
            "version": "0",
            "now": now,
            "mono": mono,
            "config": {"path": "probes.toml", "hash": "0" * 12},
            "state": {"healthy": True, "state_dir": "/var/lib/probed"},
            "history": daemon.history,
        }

        def scratch(common: dict[str, Any] = common) -> dict[str, Any]:
            return status_document(**common)

        def incremental(common: dict[str, Any] = common) -> StatusText:
            return cache.build(**common)

        def incremental_text() -> str:
            return incremental().text()

        ways: list[tuple[str, Callable[[], Any], Callable[[Any], str] | None]] = [
            ("incremental", incremental_text, None),
            ("scratch", scratch, json.dumps),
            ("incremental page", incremental, _page),
            ("scratch page", scratch, render_page),
        ]
        if k % 2:
            ways = [ways[1], ways[0], ways[3], ways[2]]
        bodies = {}
        for way, on_loop, in_thread in ways:
            sample, bodies[way] = await request(ticker, on_loop, in_thread)
            if k == 0 and way == "incremental":
                first = sample
            elif k:
                samples[way].append(sample)
        if bodies["scratch"] != bodies["incremental"]:
            raise SystemExit(f"request {k}: the incremental document differs from scratch")
        if bodies["scratch page"] != bodies["incremental page"]:
            raise SystemExit(f"request {k}: the pages differ")
        ticker.ticks.clear()
    await ticker.stop()
    assert first is not None
    return samples, first


def row(name: str, samples: Sequence[Sample]) -> str:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.1f} {percentile(values, 0.9) * 1000:7.1f}"

    return (
        f"{name:17} {ms([s.cpu for s in samples])}   {ms([s.loop_cpu for s in samples])}   "
        f"{ms([s.thread_cpu for s in samples])}   {ms([s.stall for s in samples])}"
    )


HEADER = (
    f"{'':17} {'CPU ms':>15}   {'on the loop':>15}   {'in a thread':>15}   {'loop stall ms':>15}\n"
    f"{'':17} {'p50':>7} {'p90':>7}   {'p50':>7} {'p90':>7}   {'p50':>7} {'p90':>7}   "
    f"{'p50':>7} {'p90':>7}"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--probes", type=int, default=200, help="http probes (200)")
    parser.add_argument("--streams", type=int, default=500, help="streams (500)")
    parser.add_argument("--requests", type=int, default=30, help="requests per round (30)")
    parser.add_argument("--gap", type=float, default=10.0, help="seconds between requests (10)")
    parser.add_argument(
        "--changed", type=float, default=1.0, help="share of streams with events (1.0)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="whole runs, fresh store each (1)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sys.setswitchinterval(SWITCH_INTERVAL)  # the daemon's, while worker threads run
    say(
        f"{args.probes} probes, {args.streams} streams ({args.changed:.0%} with events), "
        f"a request every {args.gap:g} s, {args.requests} requests per round"
    )
    medians: dict[str, list[float]] = {way: [] for way in WAYS}
    firsts: list[float] = []
    for round_ in range(args.rounds):
        daemon = filled(args.probes, args.streams, args.changed, args.seed + round_)
        gc.collect()
        gc.freeze()  # the filled store is old: a collection need not walk it (as in the daemon)
        samples, first = asyncio.run(measure(daemon, args.requests, args.gap))
        say(f"\nround {round_ + 1}\n{HEADER}")
        for way in WAYS:
            say(row(way, samples[way]))
            medians[way].append(statistics.median(s.cpu for s in samples[way]))
        say(row("first incremental", [first]) + "   (nothing kept yet)")
        firsts.append(first.cpu)
    if args.rounds > 1:
        say("\nCPU ms per request, median of each round's median (min-max of the rounds)")
        for way, values in [*medians.items(), ("first incremental", firsts)]:
            ms = [v * 1000 for v in values]
            say(f"{way:17} {statistics.median(ms):7.1f}  ({min(ms):.1f}-{max(ms):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
