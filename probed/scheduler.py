"""Per-probe fixed-rate ticks that never drift and never overlap.

Each probe's ticks are planned at ``epoch + phase + k * interval`` on the
monotonic clock (``time.monotonic``), so a timer firing late once never shifts later
ticks. Each tick is a timer whose callback makes the run's task and sets the next one: a
due run starts one callback after its timer, not after a task woken by it.
``spread_phases`` gives the probes that share an interval evenly spaced phases, in
the order of their names' hashes (deterministic, so a restart with the same config
plans the same order), turned by a small random jitter per interval (so several
daemons with the same config do not probe in step). Phases drawn from each name's
hash alone put some runs within microseconds of each other: the probes, and the
target, then work in bursts that show in the latencies measured. A reload keeps the
phases of the probes it does not change and puts new ones in the widest gaps.

A tick whose previous run is still in flight is skipped and counted
(``probed_probe_skipped_total{reason="overlap"}``); a timer that fired more than one
interval late skips the missed ticks (``reason="missed"``) instead of bursting. A global
semaphore caps concurrent runs. Tasks are created in the daemon's TaskGroup: the
scheduler owns no event loop and no signals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import heapq
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
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
    "name_fraction",
    "spread_phases",
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


def name_fraction(name: str) -> float:
    """A fraction in [0, 1) from the hash of ``name``: the order ``spread_phases`` follows."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def spread_phases(
    kept: Mapping[str, tuple[float, float]],
    new: Iterable[tuple[str, float]],
    rotation: Callable[[float], float],
) -> dict[str, float]:
    """Phases in [0, interval) for the ``(name, interval)`` pairs in ``new``.

    ``kept`` maps the probes already running to their ``(interval, phase)``. The new
    probes of an interval no kept probe has are spaced ``interval / n`` apart from
    ``rotation(interval)``; the others go one at a time, in the order of their names'
    hashes, into the middle of the widest gap between that interval's phases.
    """
    groups: dict[float, list[str]] = {}
    for name, interval in new:
        groups.setdefault(interval, []).append(name)
    placed: dict[str, float] = {}
    for interval, names in groups.items():
        names.sort(key=name_fraction)
        taken = sorted(phase for every, phase in kept.values() if every == interval)
        if not taken:
            turn = rotation(interval)
            for k, name in enumerate(names):
                placed[name] = (turn + k * interval / len(names)) % interval
            continue
        # the widest gap first, the earliest of equal ones (widths rounded: the
        # differences of float phases that should be equal differ in the last bits)
        gaps: list[tuple[float, float, float]] = []
        for start, end in zip(taken, taken[1:] + taken[:1], strict=True):
            width = (end - start) % interval or interval
            gaps.append((-round(width, 9), start, width))
        heapq.heapify(gaps)
        for name in names:
            _, start, width = heapq.heappop(gaps)
            middle = (start + width / 2) % interval
            placed[name] = middle
            half = -round(width / 2, 9)
            heapq.heappush(gaps, (half, start, width / 2))
            heapq.heappush(gaps, (half, middle, width / 2))
    return placed


@dataclass(slots=True)
class _Probe:
    spec: ProbeSpec
    phase: float
    first: float = 0.0
    """When its tick 0 was planned (monotonic seconds)."""
    tick: int = 0
    """The next tick: planned at ``first + tick * interval`` (:attr:`planned`)."""
    timer: asyncio.TimerHandle | None = None
    runs: set[asyncio.Task[None]] = field(default_factory=set)
    task_name: str = ""
    """Its runs' task name (written once, not on every tick)."""

    @property
    def planned(self) -> float:
        """When its next tick is planned (monotonic seconds)."""
        return self.first + self.tick * self.spec.interval


class Scheduler:
    """Runs every configured probe on its own fixed-rate ticks."""

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
        self._turns: dict[float, float] = {}
        self._epoch = 0.0
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
        self._epoch = _now()  # phases of 0 start now: a later clock reading would be past them
        self._add_all(list(specs), {}, self._epoch)

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
        starting: list[ProbeSpec] = []
        phases: dict[str, float] = {}
        for name, spec in wanted.items():
            current = self._probes.get(name)
            if current is None:
                added.append(name)
            elif current.spec != spec:
                self._remove(name)
                if (current.spec.kind, current.spec.target) != (spec.kind, spec.target):
                    self._store.forget(name)
                if current.spec.interval == spec.interval:
                    phases[name] = current.phase
                changed.append(name)
            else:
                continue
            starting.append(spec)
        self._add_all(starting, phases, _now())
        return added, changed, removed

    def _add_all(self, specs: Sequence[ProbeSpec], phases: Mapping[str, float], now: float) -> None:
        """Start ``specs`` at ``now``: with their ``phases`` where given, spread out otherwise."""
        kept = {name: (p.spec.interval, p.phase) for name, p in self._probes.items()}
        kept.update((s.name, (s.interval, phases[s.name])) for s in specs if s.name in phases)
        fresh = [(s.name, s.interval) for s in specs if s.name not in phases]
        placed = {**spread_phases(kept, fresh, self._rotation), **phases}
        for spec in specs:
            self._add(spec, placed[spec.name], now)

    def _rotation(self, interval: float) -> float:
        """This daemon's jitter for ``interval``: where its evenly spaced phases begin."""
        if interval not in self._turns:
            self._turns[interval] = self._rng.uniform(0, min(self._jitter * interval, 1.0))
        return self._turns[interval]

    def _add(self, spec: ProbeSpec, phase: float, now: float) -> None:
        if self._tg is None:
            raise RuntimeError("Scheduler.start() must be called first")
        self._store.register(spec.name, spec.kind, spec.target)
        # the first tick on the phase's grid from now on
        behind = now - (self._epoch + phase)
        first = self._epoch + phase + max(0, math.ceil(behind / spec.interval)) * spec.interval
        probe = _Probe(spec, phase, first, task_name=f"probe-run:{spec.name}")
        self._probes[spec.name] = probe
        self._arm(probe)

    def _remove(self, name: str) -> None:
        probe = self._probes.pop(name, None)
        if probe is None:
            return
        if probe.timer is not None:
            probe.timer.cancel()
        for task in probe.runs:
            task.cancel()

    def _arm(self, probe: _Probe) -> None:
        """Set the timer of ``probe``'s next tick."""
        delay = probe.planned - _now()
        loop = asyncio.get_running_loop()
        probe.timer = loop.call_later(max(0.0, delay), self._due, probe)

    def _due(self, probe: _Probe) -> None:
        """A tick's timer fired: start its run, or count it skipped; then set the next one.

        The run's task is made here, in the timer's callback: its first step is the next
        callback the loop runs (asyncio: in the next turn; uvloop, which runs timers before
        the turn's other callbacks: in this one). A task that slept until the tick took a
        turn more to wake and make it, each turn of a busy loop's work more of lag.
        """
        if self._stopping:  # stop() cancels the timers too
            return
        spec = probe.spec
        interval = spec.interval
        try:
            planned = probe.planned
            behind = _now() - planned
            if behind >= interval:
                missed = int(behind // interval)
                for _ in range(missed):
                    self._store.skipped(spec.name, "missed")
                probe.tick += missed
                planned = probe.planned
            probe.tick += 1
            if probe.runs and any(not task.done() for task in probe.runs):
                self._store.skipped(spec.name, "overlap")
                _log.debug("probe_skipped", probe=spec.name, reason="overlap")
            else:
                assert self._tg is not None
                run = self._run(spec, planned)
                try:
                    current = self._tg.create_task(run, name=probe.task_name)
                except RuntimeError:  # the group ends (the daemon goes down): so do the ticks
                    run.close()
                    return
                probe.runs.add(current)
                current.add_done_callback(probe.runs.discard)
        except Exception:  # a bug guard: this tick is lost, never the probe's next ones
            self._log_failure("probe_tick_failed", spec.name)
        self._arm(probe)

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
            self._log_failure("probe_result_handling_failed", spec.name)

    def _log_failure(self, event: str, name: str) -> None:
        """Log the exception being handled: a traceback a minute per probe, not one a run."""
        now = _now()
        if now - self._failure_logged.get(name, -_FAILURE_LOG_EVERY) >= _FAILURE_LOG_EVERY:
            self._failure_logged[name] = now
            _log.exception(event, probe=name)

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
            if probe.timer is not None:
                probe.timer.cancel()
        pending = {t for p in self._probes.values() for t in p.runs if not t.done()}
        cancelled = 0
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            cancelled = len(still)
            if still:
                await asyncio.wait(still)
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
