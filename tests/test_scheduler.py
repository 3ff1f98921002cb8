"""Scheduler: fixed rate without drift, no overlap, offsets, concurrency cap, diff, drain."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from typing import Any

import pytest
import structlog

from probed.config import HttpProbe, ProbeSpec
from probed.results import ProbeResult, ProbeRun
from probed.scheduler import Scheduler, monitor_loop_lag, name_fraction, spread_phases
from probed.steps import Steps, in_slices
from probed.store import ResultStore


def spec(name: str, interval: str = "100ms", timeout: str = "50ms") -> HttpProbe:
    """A minimal HTTP probe spec (never sent anywhere: the runner is fake)."""
    return HttpProbe(name=name, target="t", interval=interval, timeout=timeout)


class FakeRunner:
    """Records start times and concurrency; each run sleeps ``duration`` seconds."""

    def __init__(self, duration: float = 0.0) -> None:
        self.duration = duration
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.active: dict[str, int] = defaultdict(int)
        self.max_active: dict[str, int] = defaultdict(int)
        self.total_active = 0
        self.max_total = 0

    async def __call__(self, s: ProbeSpec) -> ProbeRun:
        loop = asyncio.get_running_loop()
        self.starts[s.name].append(loop.time())
        self.active[s.name] += 1
        self.total_active += 1
        self.max_active[s.name] = max(self.max_active[s.name], self.active[s.name])
        self.max_total = max(self.max_total, self.total_active)
        try:
            await asyncio.sleep(self.duration)
        finally:
            self.active[s.name] -= 1
            self.total_active -= 1
        return ProbeRun(s.name, s.kind, s.target, "r", "t", time.time(), self.duration,
                        ProbeResult.ok())  # fmt: skip


async def run_for(sched: Scheduler, specs: list[HttpProbe], seconds: float) -> None:
    """Run the scheduler inside a TaskGroup for ``seconds`` then stop it."""
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, specs)
        await asyncio.sleep(seconds)
        await sched.stop(grace=1.0)


def test_name_fraction_is_deterministic_and_spread() -> None:
    """The order of probes sharing an interval depends only on their names."""
    fractions = [name_fraction(f"probe_{i}") for i in range(200)]
    assert fractions == [name_fraction(f"probe_{i}") for i in range(200)]
    assert all(0 <= f < 1.0 for f in fractions)
    # spread: every tenth of [0, 1) holds some names
    assert 10 == len({int(f * 10) for f in fractions})


def circular_gaps(phases: list[float], interval: float) -> list[float]:
    """The gaps between ``phases`` around a circle of length ``interval``."""
    ordered = sorted(p % interval for p in phases)
    ends = ordered[1:] + ordered[:1]
    return [(b - a) % interval or interval for a, b in zip(ordered, ends, strict=True)]


def test_probes_sharing_an_interval_get_evenly_spaced_phases() -> None:
    """Fifty probes every 2 s start 40 ms apart, in the order of their names' hashes.

    Phases taken from each name's hash alone put some of them within a millisecond of
    each other (the probes and the target then work in bursts); a daemon restarted with
    the same config plans the same order, rotated by its own jitter.
    """
    names = [f"p{i:04d}" for i in range(50)]
    phases = spread_phases({}, [(n, 2.0) for n in names], rotation=lambda interval: 0.0)
    assert set(phases) == set(names)
    gaps = circular_gaps(list(phases.values()), 2.0)
    assert [0.04] * 50 == pytest.approx(gaps)
    assert all(0 <= p < 2.0 for p in phases.values())
    by_hash = sorted(names, key=name_fraction)
    assert by_hash == sorted(names, key=phases.__getitem__)
    again = spread_phases({}, [(n, 2.0) for n in reversed(names)], rotation=lambda i: 0.3)
    assert all(again[n] == pytest.approx((phases[n] + 0.3) % 2.0) for n in names)


def test_each_interval_is_spread_on_its_own() -> None:
    """Probes every 1 s and probes every 10 s are each spread over their own interval."""
    new = [(f"a{i}", 1.0) for i in range(4)] + [(f"b{i}", 10.0) for i in range(5)]
    phases = spread_phases({}, new, rotation=lambda interval: 0.0)
    assert [0.25] * 4 == pytest.approx(circular_gaps([phases[f"a{i}"] for i in range(4)], 1.0))
    assert [2.0] * 5 == pytest.approx(circular_gaps([phases[f"b{i}"] for i in range(5)], 10.0))


def test_probes_added_later_fill_the_widest_gaps() -> None:
    """Probes added to an interval in use go into its widest gaps, one at a time; an
    interval of their own is spread from its rotation."""
    kept = {f"k{i}": (2.0, i * 0.05) for i in range(40)}  # every 2 s, 50 ms apart
    del kept["k7"], kept["k8"], kept["k20"]  # a 150 ms gap after k6, a 100 ms one after k19
    placed = spread_phases(kept, [(f"n{i}", 2.0) for i in range(3)], rotation=lambda i: 0.0)
    assert set(placed) == {"n0", "n1", "n2"}
    # the middle of the 150 ms gap, of the 100 ms one, then of the first 75 ms one
    assert sorted(placed.values()) == pytest.approx([0.3375, 0.375, 1.0])
    gaps = circular_gaps([*(phase for _, phase in kept.values()), *placed.values()], 2.0)
    assert min(gaps) == pytest.approx(0.0375), gaps
    # an interval nothing else uses is spread from its rotation
    alone = spread_phases(kept, [("x", 5.0), ("y", 5.0)], rotation=lambda i: 1.0)
    assert sorted(alone.values()) == pytest.approx([1.0, 3.5])


async def test_runs_start_on_their_spread_phases() -> None:
    """Twenty probes every 400 ms start about 20 ms apart, not in bursts."""
    store = ResultStore()
    runner = FakeRunner()
    sched = Scheduler(store=store, runner=runner, max_concurrency=50, jitter=0)
    await run_for(sched, [spec(f"p{i:04d}", "400ms", "300ms") for i in range(20)], 0.45)
    firsts = [runner.starts[f"p{i:04d}"][0] for i in range(20)]
    ordered = sorted(firsts)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) > 0.01, gaps
    assert ordered[-1] - ordered[0] < 0.4


class LagStore(ResultStore):
    """A store keeping every scheduler lag it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.lags: list[float] = []

    def observe_scheduler_lag(self, seconds: float) -> None:
        self.lags.append(seconds)
        super().observe_scheduler_lag(seconds)


def _busy(seconds: float, step: float) -> Steps[None]:
    """Work on the loop for ``seconds``, a checkpoint every ``step`` seconds."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        until = time.perf_counter() + step
        while time.perf_counter() < until:
            pass
        yield


async def test_a_run_due_during_sliced_work_waits_for_one_slice_at_most() -> None:
    """An evaluation hands the loop back between slices. A due run then takes two turns of
    the loop (its timer, its task; three before its timer made its task): if the work took
    a slice at each of them, the run would start two or three slices late (10-15 ms in the
    soak, with 2-5 ms slices), not one."""
    store = LagStore()
    sched = Scheduler(store=store, runner=FakeRunner(), max_concurrency=10, jitter=0)
    slice_s = 0.02
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, [spec("p", "100ms", "50ms")])
        await asyncio.sleep(0.15)
        before = len(store.lags)
        await in_slices(_busy(1.0, 0.002), slice_s)
        during = store.lags[before:]
        await sched.stop(grace=1.0)
    assert len(during) >= 5, during
    # one slice (and the step that ends it) at most, with room for a busy machine
    assert max(during) < 1.5 * slice_s, [round(lag * 1000, 1) for lag in during]


class _BusyTurns:
    """A callback that spins ``busy`` seconds in every turn of the loop (it queues itself
    for the next turn each time), as hundreds of streams' reads may fill turns in a row."""

    def __init__(self, busy: float) -> None:
        self.busy = busy
        self.stopped = False

    def __call__(self) -> None:
        end = time.perf_counter() + self.busy
        while time.perf_counter() < end:
            pass
        if not self.stopped:
            asyncio.get_running_loop().call_soon(self)


async def test_a_due_run_starts_in_the_turn_after_its_timer_fires() -> None:
    """While every turn of the loop is busy, a due run waits for the turn its timer fires in
    to end, then starts in the next one (asyncio; on uvloop, whose timers fire before the
    turn's other callbacks, in the same one): a timer that woke a loop task that made the
    run's task took a turn more, a turn's work more of lag at every late run."""
    uvloop = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    turns = 1 if uvloop else 2  # the turns a run waits through after its timer's turn began
    store = LagStore()
    sched = Scheduler(store=store, runner=FakeRunner(), max_concurrency=10, jitter=0)
    busy = _BusyTurns(0.007)
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, [spec("p", "100ms", "50ms")])
        await asyncio.sleep(0.15)
        before = len(store.lags)
        asyncio.get_running_loop().call_soon(busy)
        await asyncio.sleep(1.5)
        busy.stopped = True
        during = store.lags[before + 1 :]  # the first: due before the busy turns began
        await sched.stop(grace=1.0)
    assert len(during) >= 10, during
    # each lag: the rest of the turn under way when the run came due (half a turn on
    # average), then ``turns`` whole turns; a turn more would be a whole busy turn more
    mean = sum(during) / len(during)
    assert mean < (turns + 0.5 + 0.5) * busy.busy, [round(lag * 1000, 1) for lag in during]


async def test_a_reload_keeps_phases_and_fills_gaps() -> None:
    """A probe changed but for its interval keeps its phase; a new one takes a wide gap."""
    store = ResultStore()
    sched = Scheduler(store=store, runner=FakeRunner(), max_concurrency=10, jitter=0)
    specs = [spec(f"a{i}", "1s", "500ms") for i in range(10)]
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, specs)
        before = {name: p.phase for name, p in sched._probes.items()}
        specs[3] = spec("a3", "1s", "400ms")
        specs[4] = spec("a4", "2s", "400ms")
        del specs[5]
        sched.apply([*specs, spec("b", "1s", "500ms")])
        after = {name: p.phase for name, p in sched._probes.items()}
        await sched.stop(grace=1.0)
    unmoved = [n for n in after if n not in {"a4", "b"}]
    assert [before[n] for n in unmoved] == [after[n] for n in unmoved]
    # b goes into the middle of the widest gap a4 and a5 left (a4 now runs every 2 s)
    gaps = circular_gaps([phase for n, phase in after.items() if n != "a4"], 1.0)
    assert min(gaps) == pytest.approx(0.1)
    assert max(gaps) <= 0.2 + 1e-9
    assert 0.0 == after["a4"]


async def test_fixed_rate_does_not_drift() -> None:
    """Tick k starts at first + k*interval even when each run takes 40% of the interval."""
    store = ResultStore()
    runner = FakeRunner(duration=0.02)
    sched = Scheduler(store=store, runner=runner, max_concurrency=10, jitter=0)
    await run_for(sched, [spec("a", "50ms", "40ms")], 1.6)
    starts = runner.starts["a"]
    assert len(starts) >= 25
    first = starts[0]
    errors = [abs(t - (first + k * 0.05)) for k, t in enumerate(starts)]
    # each start is within a few ms of its plan; the last one has not accumulated drift
    assert max(errors) < 0.015, errors
    assert errors[-1] < 0.015


async def test_overlapping_tick_is_skipped_and_counted() -> None:
    """A run longer than the interval makes the next ticks skip with reason overlap."""
    store = ResultStore()
    runner = FakeRunner(duration=0.25)
    sched = Scheduler(store=store, runner=runner, max_concurrency=10, jitter=0)
    await run_for(sched, [spec("slow", "100ms", "90ms")], 1.05)
    assert 1 == runner.max_active["slow"]
    state = store.get("slow")
    assert state is not None
    runs = len(runner.starts["slow"])
    assert 3 <= runs <= 5
    assert state.skipped["overlap"] >= 2 * (runs - 1)


async def test_global_concurrency_cap() -> None:
    """No more than max_concurrency runs execute at once across probes."""
    store = ResultStore()
    runner = FakeRunner(duration=0.08)
    sched = Scheduler(store=store, runner=runner, max_concurrency=2, jitter=0)
    await run_for(sched, [spec(f"p{i}", "100ms", "90ms") for i in range(6)], 0.5)
    assert 2 == runner.max_total
    assert store.scheduler_lag.count > 0


async def test_missed_ticks_are_skipped_not_burst() -> None:
    """After the loop is blocked for several intervals, missed ticks are counted, not replayed."""
    store = ResultStore()
    runner = FakeRunner()
    sched = Scheduler(store=store, runner=runner, max_concurrency=10, jitter=0)
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, [spec("a", "50ms", "10ms")])
        await asyncio.sleep(0.12)
        before = len(runner.starts["a"])
        time.sleep(0.3)  # block the event loop: ~6 ticks are missed
        await asyncio.sleep(0.08)
        after = len(runner.starts["a"])
        await sched.stop(grace=1.0)
    state = store.get("a")
    assert state is not None
    assert after - before <= 3
    assert state.skipped["missed"] >= 4


async def test_apply_diffs_by_name() -> None:
    """apply() keeps unchanged ticks, restarts changed ones and forgets removed ones."""
    store = ResultStore()
    runner = FakeRunner()
    sched = Scheduler(store=store, runner=runner, max_concurrency=10, jitter=0)
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, [spec("keep"), spec("change"), spec("drop")])
        await asyncio.sleep(0.25)
        keep, change = sched._probes["keep"], sched._probes["change"]
        keep_timer = keep.timer
        added, changed, removed = sched.apply([spec("keep"), spec("change", "200ms"), spec("new")])
        assert (["new"], ["change"], ["drop"]) == (added, changed, removed)
        assert keep is sched._probes["keep"]
        assert keep_timer is keep.timer
        assert change is not sched._probes["change"]
        assert store.get("drop") is None
        assert store.get("new") is not None
        await asyncio.sleep(0.25)
        await sched.stop(grace=1.0)
    assert sorted(["keep", "change", "new"]) == sorted(sched.names)


@pytest.mark.parametrize(("run_seconds", "cancelled"), [(0.1, 0), (5.0, 1)])
async def test_stop_drains_within_grace(run_seconds: float, cancelled: int) -> None:
    """stop() lets in-flight runs finish within the grace period and cancels the rest."""
    store = ResultStore()
    runner = FakeRunner(duration=run_seconds)
    sched = Scheduler(store=store, runner=runner, max_concurrency=10, jitter=0)
    async with asyncio.TaskGroup() as tg:
        sched.start(tg, [spec("a", "500ms", "400ms")])
        while not runner.starts["a"]:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        assert cancelled == await sched.stop(grace=0.3)
        assert time.monotonic() - started < 1.0


async def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    """The loop-lag monitor records a lag when the event loop is blocked."""
    store = ResultStore()
    task = asyncio.create_task(monitor_loop_lag(store, period=0.02))
    await asyncio.sleep(0.005)
    time.sleep(0.1)
    await asyncio.sleep(0.05)
    task.cancel()
    assert store.event_loop_lag_max >= 0.05


async def test_a_failing_result_hook_costs_one_result_not_the_scheduler() -> None:
    """An exception in a run sink is logged; runs go on and the TaskGroup never sees it."""
    calls = 0

    class Broken:
        def run_finished(self, run: ProbeRun, lag: float) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("a bug downstream of the store")

    store = ResultStore()
    sched = Scheduler(store=store, runner=FakeRunner(), max_concurrency=4, sinks=[Broken()])
    with structlog.testing.capture_logs() as logs:
        await run_for(sched, [spec("a", interval="50ms", timeout="20ms")], 0.4)
    state = store.get("a")
    assert state is not None
    assert calls >= 5
    assert calls == state.runs["success"]
    assert ["probe_result_handling_failed"] == [
        e["event"] for e in logs if e["event"] == "probe_result_handling_failed"
    ]


async def test_a_failing_tick_costs_that_tick_not_the_probe() -> None:
    """A bug in a tick's accounting is logged once a minute; the next ticks come."""

    class BrokenSkips(ResultStore):
        def skipped(self, name: str, reason: str) -> None:
            raise RuntimeError("a bug in the skip accounting")

    store = BrokenSkips()
    runner = FakeRunner(duration=0.12)  # every other tick finds the run in flight: skipped
    sched = Scheduler(store=store, runner=runner, max_concurrency=4, jitter=0)
    with structlog.testing.capture_logs() as logs:
        await run_for(sched, [spec("a", interval="50ms", timeout="40ms")], 0.6)
    assert len(runner.starts["a"]) >= 3
    assert ["probe_tick_failed"] == [e["event"] for e in logs if e["event"] == "probe_tick_failed"]


async def test_ticks_end_with_the_task_group() -> None:
    """A TaskGroup that ends (another task failed: the daemon goes down) ends the ticks:
    no tick fails against it, and none is left to fire."""
    sched = Scheduler(store=ResultStore(), runner=FakeRunner(), max_concurrency=4, jitter=0)
    handled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: handled.append(context))
    due = sched._due
    fired: list[float] = []

    def counted(probe: Any) -> None:
        fired.append(time.monotonic())
        due(probe)

    sched._due = counted  # type: ignore[method-assign]

    async def fail() -> None:
        await asyncio.sleep(0.12)
        raise ValueError("another task's bug")

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            sched.start(tg, [spec("a", interval="20ms", timeout="10ms")])
            tg.create_task(fail())

    with structlog.testing.capture_logs() as logs, pytest.raises(ExceptionGroup):
        await group()
    ended = time.monotonic()
    await asyncio.sleep(0.1)  # five ticks' time
    assert len(fired) >= 4  # it ticked while the group ran
    assert len([t for t in fired if t > ended]) <= 1  # the tick that found it ended, no more
    assert [] == handled
    assert [] == [e for e in logs if e["log_level"] in ("error", "critical")]


class LagRecorder:
    """A run sink keeping each run's scheduler lag."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    def run_finished(self, run: ProbeRun, scheduler_lag: float) -> None:
        self.lags.append(scheduler_lag)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_lags_are_measured_on_the_monotonic_clock(loop_name: str) -> None:
    """On either loop a lag is never negative and has sub-millisecond resolution.

    uvloop's ``loop.time()`` counts whole milliseconds and its timers fire up to one early:
    lags taken from it would be negative or share one fraction of a millisecond.
    """
    from probed import eventloop

    store = ResultStore()
    recorder = LagRecorder()
    sched = Scheduler(store=store, runner=FakeRunner(), max_concurrency=10, sinks=[recorder])

    eventloop.run(run_for(sched, [spec("a", "20ms", "10ms")], 1.2), loop_name)
    assert len(recorder.lags) >= 40
    assert min(recorder.lags) >= 0.0
    fractions = {round(lag * 1000 % 1, 2) for lag in recorder.lags if lag > 0}
    assert len(fractions) >= 3, sorted(recorder.lags)
