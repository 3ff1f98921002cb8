"""What a /metrics scrape of a big daemon costs: CPU per scrape, and how long it stalls the loop.

    python bench/scrape_stall.py                  # 203 probes, 500 streams
    python bench/scrape_stall.py --reps 40        # more repetitions of the CPU table
    python bench/scrape_stall.py --only cpu       # the CPU table alone (or: --only stall)
    python bench/scrape_stall.py --streams 5000

A store is filled like the soak's (``--probes`` http probes with 50 runs each,
``--streams`` streams with 100 timed events each).

**CPU per scrape**, side by side: prometheus_client's encoders (``generate_latest``, and
OpenMetrics' one) against the fast path (``FrozenRegistry.expose``, ``probed.exposition``),
each step and the whole scrape as the daemon does it: copy the store
(``ProbedRegistry.frozen``), then encode, for the text format and for OpenMetrics with
gzip (what Prometheus asks for: its Accept header prefers OpenMetrics 1.0.0, and it
accepts gzip). Thread CPU time (``time.thread_time``) of each step, ``--reps`` times,
median and p90. Between two repetitions, untimed, every probe records a run and every
stream an event, so every scrape formats new numbers (the label cache stays warm, as in
the daemon), then a full garbage collection runs (the garbage of that step is not the
scrape's; what the scrape allocates itself it still pays for). The steps take turns
within each repetition, so a change in the machine's load falls on both columns alike.
CPU time, not wall time: the machine has 2 cores and runs other work, and CPU time is
much less sensitive to that.

**Loop stall**: while a 1 ms ticker runs on the event loop, five scrapes are rendered

* ``collect-loop``: collect on the loop, ``generate_latest`` in a worker thread;
* ``frozen-thread``: copy the store on the loop, ``generate_latest`` in a worker
  thread (what the daemon did before the fast path);
* ``fast-thread``: copy the store on the loop in one go, the fast path's OpenMetrics and
  gzip in a worker thread (what the daemon did before the copy was sliced);
* ``fast-sliced``: the same with the copy in slices of 2 ms (``frozen_steps``, what the
  daemon does),

at CPython's default GIL switch interval (5 ms) and at the daemon's
(``probed.daemon.SWITCH_INTERVAL``). It prints the wall time per scrape and the ticker's
lateness (p50/p99/max): how late the loop got to run anything.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from _common import percentile
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics

from probed.daemon import SWITCH_INTERVAL
from probed.exposition import GZIP_BACKEND, negotiate
from probed.gcpolicy import THRESHOLDS
from probed.metrics import DaemonInfo, FrozenRegistry, ProbedRegistry, build_registry
from probed.results import ProbeResult, ProbeRun
from probed.steps import SLICE_SECONDS, in_slices
from probed.store import ResultStore

MODES = ("collect-loop", "frozen-thread", "fast-thread", "fast-sliced")
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""What Prometheus 2.42 sends (with ``Accept-Encoding: gzip``)."""
OPENMETRICS = negotiate(PROMETHEUS_ACCEPT)
TEXT = negotiate("")
om_latest: Callable[[CollectorRegistry], bytes] = openmetrics.generate_latest
"""OpenMetrics' encoder (untyped in prometheus_client)."""


class Collected(CollectorRegistry):
    """Metric families already collected, for an encoder in a worker thread."""

    def __init__(self, families: list[Metric]) -> None:
        super().__init__(auto_describe=False)
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


SCRAPES = 5
OK = ProbeResult.ok(status_code=200, phases={"connect": 0.001, "processing": 0.002})


def filled_registry(probes: int, streams: int) -> ProbedRegistry:
    """A registry over a store with ``probes`` probes and ``streams`` streams."""
    store = ResultStore()
    now = time.time()
    for i in range(probes):
        store.register(f"p{i}", "http", "demo")
        for k in range(50):
            store.record(ProbeRun(f"p{i}", "http", "demo", "r", "t" * 32, now, 0.01 * k, OK))
    for i in range(streams):
        stats = store.register_stream(f"s{i}", "demo", 1)
        for k in range(100):
            stats.observe_lag(0.01 * k, now - 100 + k)
        stats.reconnects["eof"] += 1
    return build_registry(store, DaemonInfo())


def advance(registry: ProbedRegistry, step: int) -> None:
    """One more run per probe and one more event per stream: new numbers to format."""
    store = registry.probed._store
    assert isinstance(store, ResultStore)
    now = time.time()
    for state in store:
        store.record(ProbeRun(state.name, "http", "demo", "r", "t" * 32, now, step % 7 / 10, OK))
    for stats in store.streams.values():
        stats.event_received(time.monotonic(), now)
        stats.observe_lag(step % 13 / 100, now)


# -- CPU per scrape ------------------------------------------------------------------------


Encode = Callable[[FrozenRegistry], object]


def cpu_ms(
    registry: ProbedRegistry, reps: int, *encoders: Encode, copy: bool = True
) -> list[list[float]]:
    """Thread CPU milliseconds of each of ``encoders`` over a fresh snapshot (``copy``:
    the snapshot counted too), ``reps`` times, taken in turn (a change in the machine's
    load falls on all of them alike), the store advanced before each."""
    for encode in encoders:
        encode(registry.frozen())  # warm: the label cache is filled by the first scrape
    spent: list[list[float]] = [[] for _ in encoders]
    for rep in range(reps):
        for encode, times in zip(encoders, spent, strict=True):
            advance(registry, rep)
            gc.collect()  # the garbage advance() left is not the scrape's to collect
            started = time.thread_time()
            frozen = registry.frozen()
            if not copy:
                started = time.thread_time()
            encode(frozen)
            times.append((time.thread_time() - started) * 1000)
    return spent


def cpu_table(registry: ProbedRegistry, reps: int) -> None:
    """Each step of a scrape, prometheus_client's way and the fast path's."""

    def nothing(frozen: FrozenRegistry) -> None:
        return None

    def om_gzip(frozen: FrozenRegistry) -> bytes:
        return gzip.compress(om_latest(frozen))

    def fast_text(frozen: FrozenRegistry) -> bytes:
        return frozen.expose(TEXT)

    def fast_om(frozen: FrozenRegistry) -> bytes:
        return frozen.expose(OPENMETRICS)

    def fast_om_gzip(frozen: FrozenRegistry) -> bytes:
        return frozen.expose(OPENMETRICS, gzip=True)

    steps: list[tuple[str, Encode, Encode, bool]] = [
        ("copy the store (on the loop)", nothing, nothing, True),
        ("encode text 0.0.4", generate_latest, fast_text, False),
        ("encode OpenMetrics", om_latest, fast_om, False),
        ("encode OpenMetrics + gzip", om_gzip, fast_om_gzip, False),
        ("scrape: copy + text", generate_latest, fast_text, True),
        ("scrape: copy + OpenMetrics", om_latest, fast_om_gzip, True),
    ]
    rows: list[tuple[str, list[float], list[float]]] = []
    for label, before, after, copy in steps:
        spent_before, spent_after = cpu_ms(registry, reps, before, after, copy=copy)
        rows.append((label, spent_before, spent_after))
    print(f"CPU per scrape, thread CPU time, {reps} repetitions: median / p90 (ms)")
    print(f"  {'step':31} {'prometheus_client':>19} {'fast path':>17} {'ratio':>7}")
    for label, old, new in rows:
        ratio = statistics.median(old) / statistics.median(new)
        print(
            f"  {label:31} {statistics.median(old):8.1f} / {percentile(old, 0.9):6.1f}"
            f"   {statistics.median(new):6.1f} / {percentile(new, 0.9):5.1f}"
            f"   {ratio:5.1f}x"
        )
    print(
        f"  (gzip: prometheus_client's handler's level 9 / the fast path's level 1, {GZIP_BACKEND}."
        " Last row:"
        "\n   a scrape by Prometheus; the daemon sent it OpenMetrics unzipped, now zipped.)"
    )
    sizes = registry.frozen()
    text, zipped = sizes.expose(OPENMETRICS), sizes.expose(OPENMETRICS, gzip=True)
    print(f"  body: {len(text) / 1e6:.2f} MB, gzipped {len(zipped) / 1e6:.2f} MB")


# -- loop stall ----------------------------------------------------------------------------


async def scrape(registry: ProbedRegistry, mode: str) -> bytes:
    """One exposition of ``registry`` the ``mode`` way."""
    if mode == "collect-loop":
        families = list(registry.collect())
        return await asyncio.to_thread(generate_latest, Collected(families))
    if mode == "frozen-thread":
        return await asyncio.to_thread(generate_latest, registry.frozen())
    if mode == "fast-thread":
        return await asyncio.to_thread(registry.frozen().expose, OPENMETRICS, gzip=True)
    frozen = await in_slices(registry.frozen_steps(), SLICE_SECONDS)
    return await asyncio.to_thread(frozen.expose, OPENMETRICS, gzip=True)


async def measure(
    registry: ProbedRegistry, mode: str, scrapes: int = SCRAPES
) -> tuple[float, list[float], int]:
    """(seconds per scrape, sorted ticker lateness, bytes) over ``scrapes`` scrapes."""
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
    for _ in range(scrapes):
        size = len(await scrape(registry, mode))
    per_scrape = (time.perf_counter() - started) / scrapes
    stop.set()
    await task
    return per_scrape, sorted(lateness), size


def stall_table(registry: ProbedRegistry, scrapes: int = SCRAPES) -> None:
    """The ticker's lateness around scrapes, each mode at both switch intervals."""
    print(f"loop stall: {scrapes} scrapes per row, wall time")
    print(f"{'switch interval':>15}  {'mode':14} {'scrape':>9}  ticker lateness p50 / p99 / max")
    default = sys.getswitchinterval()
    for interval in (0.005, SWITCH_INTERVAL):
        sys.setswitchinterval(interval)
        for mode in MODES:
            per_scrape, late, size = asyncio.run(measure(registry, mode, scrapes))
            p50, p99 = late[len(late) // 2], late[int(len(late) * 0.99)]
            print(
                f"{interval * 1000:12.1f} ms  {mode:14} {per_scrape * 1000:6.1f} ms  "
                f"{p50 * 1000:6.2f} / {p99 * 1000:6.2f} / {late[-1] * 1000:6.1f} ms "
                f"({len(late)} ticks, {size / 1e6:.2f} MB)"
            )
    sys.setswitchinterval(default)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--probes", type=int, default=203, help="http probes (203)")
    parser.add_argument("--streams", type=int, default=500, help="streams (500)")
    parser.add_argument("--reps", type=int, default=20, help="CPU table repetitions (20)")
    parser.add_argument("--only", choices=("cpu", "stall"), help="one of the two tables")
    parser.add_argument(
        "--scrapes", type=int, default=SCRAPES, help=f"scrapes per stall row ({SCRAPES})"
    )
    parser.add_argument(
        "--daemon-gc",
        action="store_true",
        help="freeze the filled store and take the daemon's collector thresholds, as it does",
    )
    args = parser.parse_args(argv)
    registry = filled_registry(args.probes, args.streams)
    print(f"{args.probes} probes, {args.streams} streams")
    if args.daemon_gc:
        gc.collect()
        gc.freeze()
        if THRESHOLDS is not None:
            gc.set_threshold(*THRESHOLDS)
        print(f"the store frozen, collector thresholds {THRESHOLDS}")
    if args.only != "stall":
        cpu_table(registry, args.reps)
    if args.only != "cpu":
        stall_table(registry, args.scrapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
