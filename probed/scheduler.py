"""Per-probe fixed-rate loops that never drift and never overlap.

Each probe's ticks are planned at ``epoch + offset + k * interval`` on the
monotonic clock (``time.monotonic``), so sleeping late once never shifts later ticks.
``offset`` spreads probes across their interval: a fraction derived from the
probe's name (deterministic, so restarts keep the same phase) plus a small
random jitter (so several daemons with the same config do not probe in step).

A tick whose previous run is still in flight is skipped and counted
(``probed_probe_skipped_total{reason="overlap"}``); a loop that fell more than
one interval behind skips the missed ticks (``reason="missed"``) instead of
bursting. A global semaphore caps concurrent runs. Tasks are created in the
daemon's TaskGroup: the scheduler owns no event loop and no signals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from probed.config import ProbeSpec
from probed.results import ProbeRun, Reason
from probed.sinks import RunSink
from probed.store import ResultStore

__all__ = [
    "OVERLOAD_FLOOR",
    "OVERLOAD_FRACTION",
    "Runner",
    "Scheduler",
    "monitor_loop_lag",
    "start_offset",
]

_FAILURE_LOG_EVERY = 60.0
"""Seconds between tracebacks of a failing result hook, per probe."""

OVERLOAD_FRACTION = 0.1
"""A timed-out run is ``prober_overloaded`` if probed was this share of its timeout behind."""
OVERLOAD_FLOOR = 0.05
"""...and at least this many seconds behind."""

Runner = Callable[[ProbeSpec], Awaitable[ProbeRun]]

_log = structlog.get_logger("probed.scheduler")

_now = time.monotonic
"""Planned and actual start times, and the loop-lag monitor's: not ``loop.time()``, which
uvloop counts in whole milliseconds (``probed.eventloop``); asyncio's is this clock."""


def start_offset(name: str, interval: float, jitter: float = 0.0) -> float:
    """The first tick's delay: a per-name fraction of ``interval`` plus ``jitter`` seconds."""
    digest = hashlib.sha256(name.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return (fraction * interval + jitter) % interval


@dataclass(slots=True)
class _Probe:
    spec: ProbeSpec
    loop_task: asyncio.Task[None] | None = None
    runs: set[asyncio.Task[None]] = field(default_factory=set)


class Scheduler:
    """Runs every configured probe on its own fixed-rate loop."""

    def __init__(
        self,
        *,
        store: ResultStore,
        runner: Runner,
        max_concurrency: int,
        sinks: Sequence[RunSink] = (),
        jitter: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._sem = asyncio.Semaphore(max_concurrency)
        self._sinks = tuple(sinks)
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._probes: dict[str, _Probe] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False
        self._failure_logged: dict[str, float] = {}

    def set_max_concurrency(self, max_concurrency: int) -> None:
        """Allow ``max_concurrency`` runs at once from now on (runs in flight finish)."""
        self._sem = asyncio.Semaphore(max_concurrency)

    @property
    def names(self) -> list[str]:
        """Names of the scheduled probes."""
        return list(self._probes)

    def in_flight(self) -> int:
        """Runs executing or waiting for a concurrency slot."""
        return sum(1 for p in self._probes.values() for t in p.runs if not t.done())

    def start(self, tg: asyncio.TaskGroup, specs: Iterable[ProbeSpec]) -> None:
        """Start a loop for every spec, creating tasks in ``tg``."""
        self._tg = tg
        for spec in specs:
            self._add(spec)

    def apply(self, specs: Iterable[ProbeSpec]) -> tuple[list[str], list[str], list[str]]:
        """Diff by name: start new probes, restart changed ones, stop removed ones.

        Unchanged probes keep their loop, phase and state. Returns the names
        (added, changed, removed).
        """
        wanted = {spec.name: spec for spec in specs}
        added, changed, removed = [], [], []
        for name in list(self._probes):
            if name not in wanted:
                self._remove(name)
                self._store.forget(name)
                removed.append(name)
        for name, spec in wanted.items():
            current = self._probes.get(name)
            if current is None:
                self._add(spec)
                added.append(name)
            elif current.spec != spec:
                self._remove(name)
                if (current.spec.kind, current.spec.target) != (spec.kind, spec.target):
                    self._store.forget(name)
                self._add(spec)
                changed.append(name)
        return added, changed, removed

    def _add(self, spec: ProbeSpec) -> None:
        if self._tg is None:
            raise RuntimeError("Scheduler.start() must be called first")
        self._store.register(spec.name, spec.kind, spec.target)
        probe = _Probe(spec)
        self._probes[spec.name] = probe
        probe.loop_task = self._tg.create_task(self._loop(probe), name=f"probe-loop:{spec.name}")

    def _remove(self, name: str) -> None:
        probe = self._probes.pop(name, None)
        if probe is None:
            return
        if probe.loop_task is not None:
            probe.loop_task.cancel()
        for task in probe.runs:
            task.cancel()

    async def _loop(self, probe: _Probe) -> None:
        spec = probe.spec
        interval = spec.interval
        jitter = self._rng.uniform(0, min(self._jitter * interval, 1.0))
        first = _now() + start_offset(spec.name, interval, jitter)
        tick = 0
        current: asyncio.Task[None] | None = None
        while not self._stopping:
            planned = first + tick * interval
            delay = planned - _now()
            if delay > 0:
                await asyncio.sleep(delay)
            behind = _now() - planned
            if behind >= interval:
                missed = int(behind // interval)
                for _ in range(missed):
                    self._store.skipped(spec.name, "missed")
                tick += missed
                planned = first + tick * interval
            tick += 1
            if current is not None and not current.done():
                self._store.skipped(spec.name, "overlap")
                _log.debug("probe_skipped", probe=spec.name, reason="overlap")
                continue
            assert self._tg is not None
            current = self._tg.create_task(self._run(spec, planned), name=f"probe-run:{spec.name}")
            probe.runs.add(current)
            current.add_done_callback(probe.runs.discard)

    async def _run(self, spec: ProbeSpec, planned: float) -> None:
        async with self._sem:
            started = _now()
            lag = max(0.0, started - planned)  # a timer may fire a little early (uvloop)
            self._store.observe_scheduler_lag(lag)
            self._store.in_flight += 1
            try:
                run = await self._runner(spec)
            except Exception:  # the runner maps failures to reasons; this is a bug guard
                _log.exception("probe_runner_crashed", probe=spec.name)
                return
            finally:
                self._store.in_flight -= 1
        if run.result.reason is Reason.TIMEOUT:
            run = self._judge_timeout(spec, run, lag, started, _now())
        try:  # a bug downstream must cost this result, never the daemon's TaskGroup
            self._store.record(run)
            for sink in self._sinks:
                sink.run_finished(run, lag)
        except Exception:
            now = _now()
            if now - self._failure_logged.get(spec.name, -_FAILURE_LOG_EVERY) >= _FAILURE_LOG_EVERY:
                self._failure_logged[spec.name] = now  # a traceback a minute, not one a run
                _log.exception("probe_result_handling_failed", probe=spec.name)

    def _judge_timeout(
        self, spec: ProbeSpec, run: ProbeRun, lag: float, started: float, ended: float
    ) -> ProbeRun:
        """A timeout while probed was behind becomes ``prober_overloaded`` (not the target's).

        Behind means the run started late, its timeout fired late, or the event loop lagged
        during it, by at least ``OVERLOAD_FRACTION`` of the timeout (``OVERLOAD_FLOOR`` s).
        """
        behind = max(lag, run.duration - spec.timeout, self._store.loop_lag_between(started, ended))
        if behind < max(OVERLOAD_FLOOR, OVERLOAD_FRACTION * spec.timeout):
            return run
        detail = (
            f"probed was {behind * 1000:.0f} ms behind during this run; "
            f"the {spec.timeout:g}s timeout is not charged to the target"
        )
        result = dataclasses.replace(
            run.result,
            reason=Reason.PROBER_OVERLOADED,
            detail=detail,
            error_code=Reason.PROBER_OVERLOADED.value,
        )
        return dataclasses.replace(run, result=result)

    async def stop(self, grace: float) -> int:
        """Stop ticking, give in-flight runs ``grace`` seconds, cancel the rest.

        Returns how many runs had to be cancelled.
        """
        self._stopping = True
        for probe in self._probes.values():
            if probe.loop_task is not None:
                probe.loop_task.cancel()
        pending = {t for p in self._probes.values() for t in p.runs if not t.done()}
        cancelled = 0
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            cancelled = len(still)
            if still:
                await asyncio.wait(still)
        loops = [p.loop_task for p in self._probes.values() if p.loop_task is not None]
        if loops:
            await asyncio.wait(loops)
        return cancelled


async def monitor_loop_lag(
    store: ResultStore, period: float = 0.5, on_lag: Callable[[float], None] | None = None
) -> None:
    """Measure how late a timer fires, forever; the lag shows a blocked event loop."""
    while True:
        planned = _now() + period
        await asyncio.sleep(period)
        now = _now()
        lag = max(0.0, now - planned)
        store.observe_loop_lag(lag, now)
        if on_lag is not None:
            on_lag(lag)
