"""The GC policy: pauses timed per generation on /metrics, what the daemon freezes and when."""

from __future__ import annotations

import asyncio
import gc
import gzip
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bigstore import big_store
from binaries import promtool
from prometheus_client import generate_latest

from probed import startgc
from probed.config import Config, TargetConfig, load_config
from probed.daemon import Daemon
from probed.evaluate import Evaluator
from probed.exposition import negotiate
from probed.gcpolicy import PAUSE_BUCKETS, PAUSES, THRESHOLDS, GcPolicy
from probed.metrics import DaemonInfo, build_registry
from probed.results import ProbeResult, ProbeRun, Reason
from probed.store import ResultStore
from probed.window import SLOTS, LagWindow, RunWindow


def _count(text: str, generation: str) -> float:
    line = f'probed_gc_pause_seconds_count{{generation="{generation}"}} '
    return next(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


def test_pauses_are_timed_per_generation_and_exported() -> None:
    """Each collection lands in ``probed_gc_pause_seconds{generation}``; promtool is content."""
    PAUSES.install()
    PAUSES.install()  # once per process, however often asked
    assert 1 == sum(1 for callback in gc.callbacks if callback is PAUSES)
    registry = build_registry(ResultStore(), DaemonInfo())
    before = generate_latest(registry).decode()
    gc.collect()
    gc.collect(0)
    text = generate_latest(registry).decode()
    assert _count(before, "2") + 1 <= _count(text, "2")
    assert _count(before, "0") + 1 <= _count(text, "0")
    assert 3 == sum(1 for row in text.splitlines() if row.startswith("probed_gc_pause_seconds_sum"))
    buckets = [row for row in text.splitlines() if row.startswith("probed_gc_pause_seconds_bucket")]
    assert 3 * (len(PAUSE_BUCKETS) + 1) == len(buckets)
    # the copy the daemon encodes in a worker thread has them too
    assert 3 == generate_latest(registry.frozen()).decode().count("probed_gc_pause_seconds_count")
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text.encode(), capture_output=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert (0, b"", b"") == (checked.returncode, checked.stdout, checked.stderr)


def test_pauses_are_written_by_the_fast_path() -> None:
    """A scrape writes the pause histograms from the label cache as it writes the probed
    families: prometheus_client's OpenMetrics encoder took 0.5 ms of CPU for their 48 lines,
    a tenth of what was left to it (the process collector's few lines stay with it)."""
    registry = build_registry(ResultStore(), DaemonInfo())
    frozen = registry.frozen()
    assert "probed_gc_pause_seconds" not in [metric.name for metric in frozen.others.collect()]
    zipped = frozen.expose(negotiate("application/openmetrics-text;version=1.0.0"), gzip=True)
    assert 3 == gzip.decompress(zipped).count(b"probed_gc_pause_seconds_count")


def test_start_up_collects_only_young_garbage_until_ended() -> None:
    """``startgc.begin`` holds the older generations back; ``end`` restores the thresholds
    that were there before, once, however often either is called."""
    before = gc.get_threshold()
    try:
        startgc.begin()
        startgc.begin()
        assert startgc.START_THRESHOLDS == gc.get_threshold()
        startgc.end()
        assert before == gc.get_threshold()
        gc.set_threshold(700, 10, 10)
        startgc.end()  # ended already: leaves the thresholds alone
        assert (700, 10, 10) == gc.get_threshold()
    finally:
        gc.set_threshold(*before)


def test_loaded_modules_are_frozen_without_a_full_collection() -> None:
    """``startgc.loaded`` freezes what the imports made at once: no collection runs, and
    the daemon's modules are out of the collector's sight before ready."""
    code = (
        "import gc; from probed import startgc; startgc.begin(); import probed.daemon; "
        "runs = []; gc.callbacks.append(lambda phase, info: runs.append(phase)); "
        "startgc.loaded(); "
        "print(runs, gc.get_freeze_count() > 10000, "
        "any(o is probed.daemon.Daemon for o in gc.get_objects()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, "", "[] True False") == (
        result.returncode,
        result.stderr,
        result.stdout.strip(),
    )


def _tracked(obj: object) -> bool:
    """Whether the collector still scans ``obj`` (False once frozen)."""
    return any(o is obj for o in gc.get_objects())


async def test_the_daemon_freezes_after_warm_up_and_after_a_reload(tmp_path: Path) -> None:
    """At ready, after the second evaluation and after a reload, what the daemon holds is
    frozen (the collector no longer scans it); a failed reload freezes nothing new."""
    path = tmp_path / "probes.toml"
    head = f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n'
    path.write_text(head + 'allow_no_probes = true\n[recommend]\nevaluate_every = "100ms"\n')
    startgc.begin()  # as the probed command does: the daemon's policy ends it at ready
    daemon = Daemon(load_config(path), install_signal_handlers=False)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.wait_started(), 5)
        assert not _tracked(daemon.config)
        assert PAUSES in gc.callbacks
        assert THRESHOLDS == gc.get_threshold()
        # the first evaluation's document is built after ready; the warm-up freezes it
        async with asyncio.timeout(5):
            while daemon.info.evaluation is None:
                await asyncio.sleep(0.01)
            first = daemon.info.evaluation
            while _tracked(first):
                await asyncio.sleep(0.01)
        path.write_text(head + 'allow_no_probes = true\nlog_level = "warning"\n')
        ok, _ = await daemon.reload()
        assert ok
        assert not _tracked(daemon.config)
        path.write_text(head + "[[probes]]\n")
        ok, _ = await daemon.reload()
        assert not ok
        assert _tracked(daemon.info.config_problems)
    finally:
        daemon.request_stop()
        assert 0 == await asyncio.wait_for(task, 10)


def _tracked_from(root: object) -> int:
    """How many GC-tracked objects a full collection walks from ``root`` (classes aside)."""
    seen: set[int] = set()
    todo, count = [root], 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type) or not gc.is_tracked(obj):
            continue
        seen.add(id(obj))
        count += 1
        todo.extend(gc.get_referents(obj))
    return count


def test_a_probe_s_ring_of_runs_holds_no_tracked_object_per_run() -> None:
    """200 probes keep 24,000 runs: as objects, each full collection walks every one of them
    (61 % of what a 200-probe daemon adds). The ring holds the same few objects for 1 run or
    300, and still gives each run back."""
    store = ResultStore(ring_size=120)
    store.register("p", "http", "http://127.0.0.1/")
    state = store.get("p")
    assert state is not None

    def run(k: int) -> ProbeRun:
        result = ProbeResult.ok(status_code=200) if k % 3 else ProbeResult.fail(Reason.TIMEOUT)
        return ProbeRun("p", "http", "http://127.0.0.1/", "r", "t" * 32, 1e9 + k, k / 1e3, result)

    store.record(run(0))
    one = _tracked_from(state.recent)
    for k in range(1, 300):
        store.record(run(k))
    assert one == _tracked_from(state.recent) <= 6
    kept = list(state.recent)
    assert [1e9 + k for k in range(180, 300)] == [r.started_at for r in kept]
    assert [None if k % 3 else "timeout" for k in range(180, 300)] == [r.reason for r in kept]


def test_a_signal_window_s_slots_hold_no_tracked_object_each() -> None:
    """700 windows of 30 slots held 20,119 of the 49,551 objects a soak's full collection
    walked (arrays are tracked). A slot's keys are kept untracked, sparse or dense, and
    expire exactly."""
    lags, runs = LagWindow(300.0), RunWindow(300.0)
    lags.observe(0.5, 1_000.0)
    runs.add(1_000.0, 0.5, None, failed=False, limited=False)
    few = _tracked_from(lags), _tracked_from(runs)
    for k in range(3_000):  # every slot, and one slot dense
        at = 1_000.0 + (k % SLOTS) * 10.0 if k < 1_500 else 1_000.0
        lags.observe(k / 1e4, at)
        runs.add(at, k / 1e4, "timeout" if k % 2 else None, failed=k % 2 == 1, limited=False)
    assert few == (_tracked_from(lags), _tracked_from(runs))
    assert 3_001 == lags.count(1_299.0) == runs.at(1_299.0).runs
    assert 0 == lags.count(1_000.0 + 600.0) == runs.at(1_600.0).runs
    assert ({}, {}) == (lags.sketch.buckets, runs.reasons)


def _in_evaluation(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "_evaluate_steps":
            return True
        frame = frame.f_back
    return False


def test_an_evaluation_s_slices_hold_no_collection() -> None:
    """An evaluation of 500 streams allocates thousands of objects over its slices; the
    collections they would trigger (a young one, then a 3-4 ms middle one on top of a 2-3 ms
    slice, in the soak) wait for its end, and then run once, in a turn of their own."""
    store, _ = big_store(probes=200, streams=500)
    evaluator = Evaluator(
        Config(targets={"app": TargetConfig(base_url="http://127.0.0.1:9")}, probes=[]), store
    )
    policy = GcPolicy()
    inside: list[int] = []
    after: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            (inside if _in_evaluation(sys._getframe(1)) else after).append(info["generation"])

    async def evaluations(now: float) -> None:
        for k in range(3):
            async with policy.held_back():
                await evaluator.evaluate_in_slices(now + 10.0 * k, slice_seconds=0.0)

    before = gc.get_threshold()
    assert THRESHOLDS is not None
    gc.set_threshold(*THRESHOLDS)
    gc.callbacks.append(watch)
    try:
        asyncio.run(evaluations(time.time()))
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*before)
    assert [] == inside
    assert len(after) >= 3
    assert gc.isenabled()


async def test_a_run_due_at_the_body_s_end_starts_before_the_held_back_collection() -> None:
    """Work due by a timer takes turns of the loop to start: a probe run two (its timer
    fires and makes its task, the task starts), a timer that wakes a task that starts
    another three, as here. The collection held back during an evaluation (a middle one:
    2-5 ms in the soak) must not come between them: the work would start late by it. So
    the policy leaves the loop a timer's turn before collecting, not one turn."""
    loop = asyncio.get_running_loop()
    policy = GcPolicy()
    order: list[str] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and "collected" not in order:
            order.append("collected")

    def timer_fires() -> None:
        order.append("timer")
        loop.call_soon(probe_loop_wakes)

    def probe_loop_wakes() -> None:
        order.append("probe loop")
        loop.call_soon(lambda: order.append("run started"))

    gc.callbacks.append(watch)
    try:
        async with policy.held_back():
            await asyncio.sleep(0)
            loop.call_at(loop.time(), timer_fires)  # due as the body's last slice ends
        await asyncio.sleep(0.01)
    finally:
        gc.callbacks.remove(watch)
    assert ["timer", "probe loop", "run started", "collected"] == order[:4], order
    assert gc.isenabled()
