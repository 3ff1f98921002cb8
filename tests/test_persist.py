"""Persistence: the state file's round trips, damage handling, SIGKILL and restore."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import structlog

import probed.persist as persist_module
from probed.config import Config, HttpProbe, RecommendConfig, SloConfig, TargetConfig
from probed.evaluate import Evaluator
from probed.persist import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    STATE_FILE,
    LagSample,
    Persister,
    StateStore,
    StoredResult,
)
from probed.results import ProbeResult, ProbeRun, Reason
from probed.slo import SloEvaluator
from probed.slofeed import persisted_parts
from probed.status import status_document
from probed.statuscache import StatusCache
from probed.store import ResultStore

T0 = 1_800_000_000.0
"""A bucket boundary (a multiple of 60 s)."""
STREAM = "events"


# --- helpers -----------------------------------------------------------------------------


def make_config() -> Config:
    """Two probes, SLOs of every kind (two lag thresholds on one stream), a canary."""
    return Config(
        targets={"app": TargetConfig(base_url="http://127.0.0.1:9")},
        probes=[
            HttpProbe(name="login", target="app", interval="10s", timeout="5s"),
            HttpProbe(name="canary", target="app", interval="10s", timeout="5s"),
        ],
        slos=[
            SloConfig(name="login_ok", sli="availability", objective=0.99, probes=["login"]),
            SloConfig(
                name="login_fast",
                sli="latency",
                objective=0.95,
                probes=["login"],
                threshold="250ms",
            ),
            SloConfig(
                name="events_lag",
                sli="delivery_lag",
                objective=0.99,
                stream=STREAM,
                threshold="1.5s",
            ),
            SloConfig(
                name="events_lag_loose",
                sli="delivery_lag",
                objective=0.9,
                stream=STREAM,
                threshold="5s",
            ),
        ],
        recommend=RecommendConfig(enter_for="1m", exit_for="2m", canary=["canary"]),
    )


def make_run(
    probe: str,
    at: float,
    *,
    success: bool = True,
    duration: float = 0.1,
    status_code: int | None = 200,
) -> ProbeRun:
    """A finished run of ``probe`` started at ``at`` (failures for ``status``)."""
    result = (
        ProbeResult.ok(status_code=status_code)
        if success
        else ProbeResult.fail(Reason.STATUS, status_code=status_code)
    )
    return ProbeRun(probe, "http", "app", "r", "t", at, duration, result)


def stored(probe: str, at: float, *, success: bool = True, code: int = 200) -> StoredResult:
    """A ring entry of ``probe`` at ``at``."""
    return StoredResult(probe, at, 0.1, success, None if success else "status", code)


def crash_image(state_dir: Path, into: Path) -> Path:
    """Copy the state file and its WAL as they are now, as a SIGKILL would leave them."""
    into.mkdir()
    for suffix in ("", "-wal"):
        source = state_dir / (STATE_FILE + suffix)
        if source.exists():
            shutil.copyfile(source, into / source.name)
    return into


def moved_aside(state_dir: Path) -> list[str]:
    """Names of the files moved aside in ``state_dir``."""
    return sorted(p.name for p in state_dir.iterdir() if ".corrupt-" in p.name)


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection to a state file (for checks the API does not offer)."""
    return sqlite3.connect(path, isolation_level=None)


def full_snapshot() -> dict[str, Any]:
    """An SLO snapshot with more buckets than the packing threshold."""
    evaluator = SloEvaluator(make_config().slos)
    for k in range(500):
        at = T0 - 60.0 * k
        evaluator.record_run("login", k % 7 != 0, 0.1 + (k % 5) / 10, at)
        evaluator.record_lag(STREAM, (k % 9) * 0.8, at)
    evaluator.evaluate(T0)
    return evaluator.snapshot()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state directory that does not exist yet."""
    return tmp_path / "state"


# --- the file: round trips ----------------------------------------------------------------


def test_slo_snapshot_round_trip(state_dir: Path) -> None:
    """An SLO snapshot comes back equal after the file is closed and reopened."""
    snapshot = full_snapshot()
    store = StateStore.open(state_dir)
    store.save_slo(snapshot)
    store.close()

    reopened = StateStore.open(state_dir)

    assert snapshot == reopened.load_slo()
    assert len(snapshot["slos"]["login_ok"]["total"]) >= 500


def test_slo_snapshot_packs_bucket_lists(state_dir: Path) -> None:
    """Long bucket lists are stored as binary blobs, not in the JSON text."""
    store = StateStore.open(state_dir)
    store.save_slo(full_snapshot())
    store.close()

    with raw(state_dir / STATE_FILE) as conn:
        text = conn.execute("SELECT data FROM snapshots WHERE name = 'slo'").fetchone()[0]
        blobs = conn.execute("SELECT count(*) FROM snapshot_blobs").fetchone()[0]

    assert 8 == blobs
    assert len(text) < 2000


def test_recommendations_round_trip(state_dir: Path) -> None:
    """A recommendation snapshot comes back equal after a reopen."""
    snapshot = {"version": 1, "scenarios": {"fast_burn": {"state": "active", "since": T0}}}
    store = StateStore.open(state_dir)
    store.save_recommendations(snapshot)
    store.close()

    assert snapshot == StateStore.open(state_dir).load_recommendations()


def test_results_round_trip(state_dir: Path) -> None:
    """Runs come back per probe, oldest first, with every field."""
    runs = [
        stored("login", T0, code=200),
        stored("canary", T0 + 1),
        stored("login", T0 + 2, success=False, code=503),
    ]
    store = StateStore.open(state_dir)
    store.append_results(runs)
    store.close()

    loaded = StateStore.open(state_dir).load_results()

    assert {"login": [runs[0], runs[2]], "canary": [runs[1]]} == loaded


def test_nothing_saved_loads_as_nothing(state_dir: Path) -> None:
    """A fresh file has no snapshots, runs or replay."""
    store = StateStore.open(state_dir)

    assert (None, None, {}, ([], [])) == (
        store.load_slo(),
        store.load_recommendations(),
        store.load_results(),
        store.load_replay(),
    )


def test_file_is_wal_with_application_id_and_private(state_dir: Path) -> None:
    """The file is in WAL mode, carries probed's application id and schema, owner-only."""
    store = StateStore.open(state_dir)

    with raw(state_dir / STATE_FILE) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        synchronous = store._conn.execute("PRAGMA synchronous").fetchone()[0]

    assert ("wal", "wal", APPLICATION_ID, SCHEMA_VERSION, 1) == (
        store.journal_mode,
        mode,
        app_id,
        version,
        synchronous,
    )
    assert 0o700 == stat.S_IMODE(state_dir.stat().st_mode)
    assert 0o600 == stat.S_IMODE((state_dir / STATE_FILE).stat().st_mode)


def test_ring_pruned_per_probe(state_dir: Path) -> None:
    """Once an SLO snapshot counts them, each probe keeps only its newest ring_size runs."""
    store = StateStore.open(state_dir, ring_size=3)
    store.append_results(stored("login", T0 + i, code=i) for i in range(10))
    store.append_results(stored("canary", T0 + i, code=i) for i in range(2))
    store.save_slo({"version": 1, "bucket_seconds": 60.0, "slos": {}})
    store.append_results([stored("login", T0 + 10, code=10)])

    loaded = store.load_results()
    with raw(state_dir / STATE_FILE) as conn:
        rows = conn.execute("SELECT count(*) FROM results").fetchone()[0]

    assert [8, 9, 10] == [r.status_code for r in loaded["login"]]
    assert [0, 1] == [r.status_code for r in loaded["canary"]]
    assert 5 == rows


def test_runs_not_in_the_slo_snapshot_outlive_the_ring(state_dir: Path) -> None:
    """Runs written after the latest SLO snapshot are kept beyond the ring, for replay."""
    store = StateStore.open(state_dir, ring_size=2)
    store.save_slo({"version": 1, "bucket_seconds": 60.0, "slos": {}})
    store.append_results(stored("login", T0 + i, code=i) for i in range(6))

    runs, _ = store.load_replay()

    assert list(range(6)) == [r.status_code for r in runs]
    assert [4, 5] == [r.status_code for r in store.load_results()["login"]]


def test_keep_seconds_keeps_the_signal_window(state_dir: Path) -> None:
    """Runs within keep_seconds of a probe's newest run survive pruning beyond the ring."""
    store = StateStore.open(state_dir, ring_size=2)
    store.keep_seconds = 30.0
    store.append_results(stored("login", T0 + 10.0 * i, code=i) for i in range(10))
    store.save_slo({"version": 1, "bucket_seconds": 60.0, "slos": {}})

    kept = store.load_results(since=T0 + 60.0)["login"]

    assert [6, 7, 8, 9] == [r.status_code for r in kept]


def _vm_steps(store: StateStore, write: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions ``write()`` executes (in hundreds)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._conn.set_progress_handler(count, 100)
    try:
        write()
    finally:
        store._conn.set_progress_handler(None, 0)
    return steps


@pytest.mark.parametrize("write", ["runs", "slo"])
def test_pruning_costs_no_more_when_each_probe_keeps_more(tmp_path: Path, write: str) -> None:
    """The ring's pruning looks up each probe's newest run and cut-off in its indexes, not by
    reading every run the probe keeps: four times the runs kept (a longer signal window)
    costs the writes about the same. (The whole table was read, sorted by probe, for every
    SLO snapshot: 44 ms of a minute's write in the soak; and each probe's kept runs for every
    write of runs.)"""
    empty = {"version": 1, "bucket_seconds": 60.0, "slos": {}}
    cost = {}
    for kept in (100, 400):
        store = StateStore.open(tmp_path / f"state-{kept}", ring_size=20)
        store.keep_seconds = 2.0 * kept
        for probe in range(20):
            store.append_results(stored(f"p{probe}", T0 + 2.0 * i) for i in range(kept + 5))
        store.save_slo(empty)
        newer = [stored(f"p{probe}", T0 + 2.0 * (kept + 5)) for probe in range(20)]
        if write == "runs":
            cost[kept] = _vm_steps(store, partial(store.append_results, newer))
        else:
            store.append_results(newer)
            cost[kept] = _vm_steps(store, partial(store.save_slo, empty))
        assert [kept + 1] * 20 == [len(r) for r in store.load_results(10**6).values()]

    assert cost[400] < 1.5 * cost[100], cost


def test_a_file_written_before_the_time_index_gets_it(state_dir: Path) -> None:
    """A state file from a release without ``results_by_probe_time`` is given the index."""
    StateStore.open(state_dir).close()
    with raw(state_dir / STATE_FILE) as conn:
        conn.execute("DROP INDEX results_by_probe_time")

    store = StateStore.open(state_dir)
    store.append_results([stored("login", T0)])

    with raw(state_dir / STATE_FILE) as conn:
        indexes = {
            n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    assert {"results_by_probe", "results_by_probe_time"} <= indexes
    assert [T0] == [r.started_at for r in store.load_results()["login"]]


def test_replay_is_what_the_slo_snapshot_does_not_count(state_dir: Path) -> None:
    """The replay holds the runs and lag samples written after the SLO snapshot, and no more."""
    store = StateStore.open(state_dir)
    store.save(results=[stored("login", T0)], lags=[LagSample(STREAM, T0, 0.5, 3)])
    store.save_slo({"version": 1, "bucket_seconds": 60.0, "slos": {}})
    later = [stored("login", T0 + 1), stored("login", T0 + 2)]
    lag = LagSample(STREAM, T0 + 2, 7.0, 4)
    store.save(results=later, lags=[lag])

    assert (later, [lag]) == store.load_replay()

    store.save_slo({"version": 1, "bucket_seconds": 60.0, "slos": {}})

    assert ([], []) == store.load_replay()


def test_last_success_outlives_the_ring(state_dir: Path) -> None:
    """The latest success of a probe is remembered after it left the ring."""
    store = StateStore.open(state_dir, ring_size=1)
    store.append_results([stored("login", T0), stored("login", T0 + 5, success=False)])
    store.save_slo({"version": 1, "bucket_seconds": 60.0, "slos": {}})

    assert {"login": T0} == store.load_last_success()
    assert [False] == [r.success for r in store.load_results()["login"]]


def test_memory_store_works_without_a_file() -> None:
    """The in-memory store offers the same API and keeps nothing on disk."""
    store = StateStore.memory()
    store.append_results([stored("login", T0)])

    assert (None, "memory", [T0]) == (
        store.path,
        store.journal_mode,
        [r.started_at for r in store.load_results()["login"]],
    )


# --- the file: damage ---------------------------------------------------------------------


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(16384))


def _foreign(path: Path) -> None:
    with raw(path) as conn:
        conn.execute("PRAGMA application_id = 305419896")
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")


def _no_application_id(path: Path) -> None:
    with raw(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('not probed')")


def _newer_schema(path: Path) -> None:
    StateStore.open(path.parent).close()
    with raw(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))


def _damaged_pages(path: Path) -> None:
    store = StateStore.open(path.parent)
    store.append_results(stored("login", T0 + i, code=i) for i in range(3000))
    store.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    garbage = random.Random(3).randbytes(page)
    for start in range(2 * page, len(data), 2 * page):
        data[start : start + page] = garbage
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_random_bytes, "not_sqlite"),
        (_foreign, "foreign"),
        (_no_application_id, "foreign"),
        (_newer_schema, "newer_schema"),
        (_damaged_pages, "corrupt"),
    ],
)
def test_bad_file_is_moved_aside(state_dir: Path, damage: Any, reason: str) -> None:
    """A file that is not a sound probed state file is moved aside, logged, and replaced."""
    state_dir.mkdir()
    path = state_dir / STATE_FILE
    damage(path)
    before = path.read_bytes()

    with structlog.testing.capture_logs() as logs:
        store = StateStore.open(state_dir)
    store.append_results([stored("login", T0)])

    moved = [e for e in logs if e["event"] == "state_file_moved_aside"]
    assert [reason] == [e["reason"] for e in moved]
    assert "warning" == moved[0]["log_level"]
    target = Path(moved[0]["moved_to"])
    assert target.name.startswith(f"{STATE_FILE}.corrupt-")
    assert all(name.startswith(target.name) for name in moved_aside(state_dir))
    assert before == target.read_bytes()
    assert [T0] == [r.started_at for r in store.load_results()["login"]]


def test_bad_file_moved_aside_with_its_wal(state_dir: Path, tmp_path: Path) -> None:
    """The -wal of a file moved aside goes with it, under the same new name."""
    store = StateStore.open(state_dir)
    store.append_results([stored("login", T0)])
    with raw(state_dir / STATE_FILE) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    image = crash_image(state_dir, tmp_path / "image")
    store.close()

    with structlog.testing.capture_logs() as logs:
        StateStore.open(image)

    moved = next(e for e in logs if e["event"] == "state_file_moved_aside")
    target = Path(moved["moved_to"]).name
    assert "newer_schema" == moved["reason"]
    assert {target, f"{target}-wal"} <= set(moved_aside(image))


def test_two_bad_files_in_one_second_both_kept(state_dir: Path) -> None:
    """A second file moved aside in the same second gets its own name."""
    state_dir.mkdir()
    for _ in range(2):
        _random_bytes(state_dir / STATE_FILE)
        StateStore.open(state_dir).close()

    assert 2 == len(moved_aside(state_dir))


def test_truncated_wal_recovers_last_complete_commit(state_dir: Path, tmp_path: Path) -> None:
    """A WAL cut mid-frame is logged and the file keeps every complete commit before the cut."""
    store = StateStore.open(state_dir)
    for i in range(5):
        store.append_results([stored("login", T0 + i, code=i)])
    image = crash_image(state_dir, tmp_path / "image")
    store.close()
    wal = image / (STATE_FILE + "-wal")
    with wal.open("r+b") as handle:
        handle.truncate(wal.stat().st_size - 100)

    with structlog.testing.capture_logs() as logs:
        reopened = StateStore.open(image)

    assert ["state_wal_truncated", "state_opened"] == [e["event"] for e in logs]
    assert [0, 1, 2, 3] == [r.status_code for r in reopened.load_results()["login"]]
    assert [] == moved_aside(image)
    with raw(image / STATE_FILE) as conn:
        assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()


def test_unusable_state_dir_falls_back_to_memory(tmp_path: Path) -> None:
    """A state_dir that cannot be created gives an in-memory store and an error line."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with structlog.testing.capture_logs() as logs:
        store = StateStore.open(blocker / "state")
    store.append_results([stored("login", T0)])

    assert [("state_unavailable", "error")] == [(e["event"], e["log_level"]) for e in logs]
    assert None is store.path
    assert 1 == len(store.load_results()["login"])


def test_locked_file_is_not_moved_aside(state_dir: Path) -> None:
    """A file another process holds locked is left alone (memory fallback), never moved."""
    StateStore.open(state_dir).close()
    holder = raw(state_dir / STATE_FILE)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with structlog.testing.capture_logs() as logs:
            store = StateStore.open(state_dir, busy_timeout=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert None is store.path
    assert ["state_unavailable"] == [e["event"] for e in logs]
    assert [] == moved_aside(state_dir)


def test_damaged_snapshot_blob_is_reported_not_raised(state_dir: Path) -> None:
    """A damaged bucket blob loads as None and restore reports that SLO, never raises."""
    store = StateStore.open(state_dir)
    store.save_slo(full_snapshot())
    with raw(state_dir / STATE_FILE) as conn:
        conn.execute("UPDATE snapshot_blobs SET data = x'00ff'")
    evaluator = SloEvaluator(make_config().slos)

    problems = evaluator.restore(store.load_slo() or {}, T0)

    assert 4 == len(problems)
    assert all("'first'" in problem for problem in problems)


# --- the policy ----------------------------------------------------------------------------


def feed(evaluator: Evaluator, store: ResultStore, persister: Persister, run: ProbeRun) -> None:
    """What the daemon's result hook does with one run."""
    store.record(run)
    evaluator.record_run(run)
    persister.record(run)


def feed_lag(evaluator: Evaluator, persister: Persister, lag: float, wall: float) -> None:
    """What the daemon's stream lag hook does with one timed event."""
    evaluator.record_lag(STREAM, lag, wall)
    persister.record_lag(STREAM, lag, wall)


def build(
    state: StateStore, *, results_every: float = 5.0, slo_every: float = 60.0
) -> tuple[Evaluator, ResultStore, Persister]:
    """A daemon's evaluator, result store and persister on ``state`` (small ring)."""
    config = make_config()
    store = ResultStore(ring_size=20, signal_window=config.recommend.window)
    for spec in config.scheduled:  # what the scheduler does when it starts a probe
        store.register(spec.name, spec.kind, spec.target)
    evaluator = Evaluator(config, store)
    persister = Persister(
        state, persisted_parts(evaluator), store, results_every=results_every, slo_every=slo_every
    )
    return evaluator, store, persister


async def test_restore_gives_the_same_evaluation(state_dir: Path, tmp_path: Path) -> None:
    """SLOs, signals and recommendations after a crash and restore equal those before it."""
    evaluator, store, persister = build(StateStore.open(state_dir))
    for step in range(90):
        at = T0 - 900.0 + 10.0 * step
        failing = step >= 40 and step % 2 == 0
        feed(evaluator, store, persister, make_run("login", at, success=not failing))
        feed(evaluator, store, persister, make_run("canary", at + 1.0, duration=0.3))
        for k, lag in enumerate((0.4, 1.5, 2.0, 7.0, -1.0)):
            feed_lag(evaluator, persister, lag + step % 3 * 0.1, at + 0.7 * k)
        if step % 3 == 0:
            evaluator.evaluate(at)
        if step == 40:
            assert await persister.flush(slo=True)
        if step == 70:
            assert await persister.flush()
    evaluator.evaluate(T0)
    assert await persister.flush()
    assert 2 * 49 == len(persister.state.load_replay()[0]), "runs after the SLO snapshot"
    image = crash_image(state_dir, tmp_path / "image")

    evaluator2, store2, persister2 = build(StateStore.open(image))
    problems = persister2.restore(now=T0)
    before, _ = evaluator.evaluate(T0 + 10.0)
    after, _ = evaluator2.evaluate(T0 + 10.0)

    assert [] == problems
    assert before.recommendations, "the scenario must have something to carry over"
    assert before.signals.slos == after.signals.slos
    assert before.signals.probes == after.signals.probes
    assert before == after
    assert list(store.get("login").recent) == list(store2.get("login").recent)  # type: ignore[union-attr]


async def test_restore_replays_lag_classes_exactly(state_dir: Path) -> None:
    """Aggregated lag samples replay to the same good/total of every delivery_lag SLO."""
    state = StateStore.open(state_dir)
    evaluator, _, persister = build(state)
    for k in range(400):
        feed_lag(evaluator, persister, (k % 13) * 0.5, T0 - 200.0 + k * 0.37)
        if k == 100:
            assert await persister.flush(slo=True)
    assert await persister.flush()
    assert 299 == sum(sample.events for sample in state.load_replay()[1])

    evaluator2, _, persister2 = build(StateStore.open(state_dir))
    persister2.restore(now=T0)

    assert evaluator.slo.evaluate(T0) == evaluator2.slo.evaluate(T0)
    assert 400 == evaluator2.slo.evaluate(T0)["events_lag"].events["30d"]


def test_record_lag_ignores_what_no_slo_counts(state_dir: Path) -> None:
    """Lags of streams without a delivery_lag SLO, negative or NaN lags are not queued."""
    _, _, persister = build(StateStore.open(state_dir))
    persister.record_lag("other", 1.0, T0)
    persister.record_lag(STREAM, -0.5, T0)
    persister.record_lag(STREAM, float("nan"), T0)
    persister.record_lag(STREAM, 1.0, float("inf"))

    assert {} == persister._lags


def test_restore_with_nothing_saved_is_quiet(state_dir: Path) -> None:
    """Restoring from a fresh file reports no problems and leaves the store empty."""
    _, store, persister = build(StateStore.open(state_dir))

    with structlog.testing.capture_logs() as logs:
        problems = persister.restore(now=T0)

    assert [] == problems
    assert ["state_restored"] == [e["event"] for e in logs]
    assert [] == list(store.get("login").recent)  # type: ignore[union-attr]


def test_restore_reports_bad_snapshots_and_never_raises(state_dir: Path) -> None:
    """Unusable saved snapshots come back as logged problems, not exceptions."""
    state = StateStore.open(state_dir)
    state.save(slo={"version": 99}, recommendations={"version": "x"})
    _, _, persister = build(state)

    with structlog.testing.capture_logs() as logs:
        problems = persister.restore(now=T0)

    assert 2 == len(problems)
    assert "unsupported version 99" in problems[0]
    assert problems == [e["problem"] for e in logs if e["event"] == "state_restore_problem"]


def test_restore_survives_a_failing_store(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while restoring one part is a problem string; the other parts restore."""
    state = StateStore.open(state_dir)
    state.append_results([stored("login", T0 - 5.0)])
    _, store, persister = build(state)

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(state, "load_slo", broken)
    problems = persister.restore(now=T0)

    assert ["SLO state: not restored (RuntimeError: boom)"] == problems
    assert [T0 - 5.0] == [r.started_at for r in store.get("login").recent]  # type: ignore[union-attr]


def test_restore_rebuilds_the_last_run_only_if_recent(state_dir: Path) -> None:
    """``last`` is rebuilt from a run within the signal window, not from an old one."""
    state = StateStore.open(state_dir)
    state.append_results(
        [stored("login", T0 - 10.0, success=False, code=503), stored("canary", T0 - 3600.0)]
    )
    _, store, persister = build(state)

    persister.restore(now=T0)
    login, canary = store.get("login"), store.get("canary")

    assert login is not None
    assert login.last is not None
    assert (False, Reason.STATUS, 503, "restored") == (
        login.last.success,
        login.last.result.reason,
        login.last.result.status_code,
        login.last.run_id,
    )
    assert canary is not None
    assert (None, T0 - 3600.0) == (canary.last, canary.last_success_at)
    assert 0 == canary.window.at(T0).runs


def test_a_restored_ring_reaches_the_status_document_the_server_keeps(state_dir: Path) -> None:
    """The server's status cache built before the restore (nothing ran yet) shows the
    restored runs afterwards, as the document built from scratch does."""
    state = StateStore.open(state_dir)
    state.append_results([stored("login", T0 - 10.0, success=False, code=503)])
    state.append_results([stored("login", T0 - 5.0)])
    _, store, persister = build(state)
    cache = StatusCache()
    at: dict[str, Any] = {"evaluation": None, "location": "x", "version": "1", "now": T0}
    cache.build(store=store, mono=0.0, **at)

    persister.restore(now=T0)

    expected = json.dumps(status_document(store=store, mono=0.0, **at))
    assert expected == cache.build(store=store, mono=0.0, **at).text()
    assert '"t": 1799999995.0' in expected


async def test_failed_write_keeps_the_batch(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write is logged and its runs are written by the next flush, in order."""
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state)
    feed(evaluator, store, persister, make_run("login", T0))
    real_save = state.save

    def full_disk(**kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(state, "save", full_disk)
    with structlog.testing.capture_logs() as logs:
        assert not await persister.flush(slo=True)
    monkeypatch.setattr(state, "save", real_save)
    feed(evaluator, store, persister, make_run("login", T0 + 10.0))

    assert await persister.flush()
    assert ["state_save_failed"] == [e["event"] for e in logs]
    assert [T0, T0 + 10.0] == [r.started_at for r in state.load_results()["login"]]


async def test_failing_snapshot_is_a_failed_write(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that raises fails the write, keeps the queue and never escapes flush."""
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state)
    feed(evaluator, store, persister, make_run("login", T0))

    def broken() -> dict[str, Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(evaluator.slo, "snapshot", broken)
    with structlog.testing.capture_logs() as logs:
        written = await persister.flush(slo=True)
    monkeypatch.undo()

    assert (False, ["state_save_failed"]) == (written, [e["event"] for e in logs])
    assert await persister.flush()
    assert [T0] == [r.started_at for r in state.load_results()["login"]]


async def test_file_damaged_while_running_is_replaced(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that finds the file damaged moves it aside; the next flush writes a fresh one."""
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state)
    feed(evaluator, store, persister, make_run("login", T0))
    real_save = state.save

    def damaged(**kwargs: Any) -> None:
        exc = sqlite3.DatabaseError("database disk image is malformed")
        exc.sqlite_errorname = "SQLITE_CORRUPT"
        raise exc

    monkeypatch.setattr(state, "save", damaged)
    with structlog.testing.capture_logs() as logs:
        assert not await persister.flush()
    monkeypatch.setattr(state, "save", real_save)

    assert await persister.flush()
    assert ["state_save_failed", "state_file_moved_aside", "state_opened"] == [
        e["event"] for e in logs
    ]
    assert 1 == len(moved_aside(state_dir))
    assert state.load_slo() is not None, "the fresh file gets the SLO buckets at once"
    assert [T0] == [r.started_at for r in state.load_results()["login"]]


async def test_run_writes_results_and_slo_on_their_intervals(state_dir: Path) -> None:
    """The loop writes queued runs every results_every and the SLO buckets every slo_every."""
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state, results_every=0.02, slo_every=0.1)
    task = asyncio.create_task(persister.run())
    try:
        feed(evaluator, store, persister, make_run("login", time.time()))
        await asyncio.sleep(0.06)
        written = state.load_results()
        feed(evaluator, store, persister, make_run("login", time.time()))
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert 1 == len(written["login"])
    assert state.load_slo() is not None
    assert ([], []) == state.load_replay()
    assert 2 == len(state.load_results()["login"])


async def test_flush_all_saves_everything(state_dir: Path) -> None:
    """flush_all writes the queue, the SLO buckets and the recommendations."""
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state)
    feed(evaluator, store, persister, make_run("login", T0))

    assert await persister.flush_all()
    assert (True, True, ([], [])) == (
        state.load_slo() is not None,
        state.load_recommendations() is not None,
        state.load_replay(),
    )


# --- SIGKILL ------------------------------------------------------------------------------

RESULTS_EVERY = 0.1
SLO_EVERY = 0.3


async def _child_main(state_dir: Path) -> None:
    """The killed process: restore, then record a run and a lag event every ~2 ms forever."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    evaluator, store, persister = build(
        StateStore.open(state_dir), results_every=RESULTS_EVERY, slo_every=SLO_EVERY
    )
    persister.restore()
    events = evaluator.slo.evaluate(time.time())
    runs, lags = events["login_ok"].events["30d"], events["events_lag"].events["30d"]
    print("restored", runs, lags, flush=True)
    task = asyncio.create_task(persister.run())
    index = runs  # every earlier run 0..runs-1 is in the restored windows
    while not task.done():
        now = time.time()
        # the run's index rides in its status code
        run = make_run("login", now, success=index % 3 != 0, status_code=index)
        feed(evaluator, store, persister, run)
        feed_lag(evaluator, persister, (index % 4) * 1.0, now)
        print("run", index, repr(now), flush=True)
        index += 1
        if index % 50 == 0:
            evaluator.evaluate(now)
        await asyncio.sleep(0.002)


def _kill_after(proc: subprocess.Popen[str], seconds: float) -> list[tuple[int, float]]:
    """Read the child's run lines for ``seconds``, SIGKILL it, return every complete line."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the child died on its own"
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    lines.extend(proc.stdout.read().splitlines(keepends=True))
    runs = []
    for line in lines:
        parts = line.split()
        if line.endswith("\n") and len(parts) == 3 and parts[0] == "run":
            runs.append((int(parts[1]), float(parts[2])))
    return runs


def _persisted(state_dir: Path) -> list[tuple[int, float]]:
    """(index, started_at) of every run in the file, checking the file's integrity first."""
    with raw(state_dir / STATE_FILE) as conn:
        assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
        rows = conn.execute("SELECT status_code, started_at FROM results ORDER BY seq").fetchall()
    return [(int(i), float(t)) for i, t in rows]


def test_sigkill_loses_at_most_one_interval(state_dir: Path) -> None:
    """SIGKILLed twice mid-write, the file stays sound and the SLO windows continue."""
    command = [
        sys.executable,
        "-c",
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); import test_persist as t; "
        "asyncio.run(t._child_main(t.Path(sys.argv[2])))",
        str(Path(__file__).parent),
        str(state_dir),
    ]
    rng = random.Random(11)
    expected_restored = 0
    for _ in range(2):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        restored = proc.stdout.readline().split()
        recorded = _kill_after(proc, 1.0 + rng.uniform(0, RESULTS_EVERY))
        persisted = _persisted(state_dir)

        # the windows hold exactly the runs (and lag events) the file had
        assert ["restored", str(expected_restored), str(expected_restored)] == restored
        indices = [i for i, _ in persisted]
        assert list(range(indices[0], indices[-1] + 1)) == indices, "no run missing"
        last_recorded, last_persisted = recorded[-1], persisted[-1]
        assert last_recorded[0] >= last_persisted[0] >= expected_restored
        # the newest run written is at most one interval (+ one write's time) older
        assert last_recorded[1] - last_persisted[1] <= RESULTS_EVERY + 0.15
        assert [] == moved_aside(state_dir)
        expected_restored = last_persisted[0] + 1

    evaluator, _, persister = build(StateStore.open(state_dir))
    assert [] == persister.restore()
    events = evaluator.slo.evaluate(time.time())
    assert (expected_restored, expected_restored) == (
        events["login_ok"].events["30d"],
        events["events_lag"].events["30d"],
    )


def test_all_is_sorted_and_honest() -> None:
    """``__all__`` is sorted the way ruff sorts it (constants first) and every name exists."""
    names = list(persist_module.__all__)

    assert sorted(names, key=lambda n: (not n.isupper(), n)) == names
    assert all(hasattr(persist_module, n) for n in names)


# --- the transition history ----------------------------------------------------------------


def test_history_round_trip(state_dir: Path) -> None:
    """A history snapshot comes back equal after a reopen."""
    snapshot = {
        "version": 1,
        "entries": [
            {"at": T0, "kind": "reload", "name": "config", "old": None, "new": "ok",
             "detail": "added 1, changed 0, removed 0"},
        ],
        "components": {"API": "OK"},
    }  # fmt: skip
    store = StateStore.open(state_dir)
    store.save_history(snapshot)
    store.close()

    assert snapshot == StateStore.open(state_dir).load_history()


async def test_history_survives_a_restart(state_dir: Path) -> None:
    """The history written with the state is the history after a restart, and unchanged
    history is not written again."""
    evaluator, store, persister = build(StateStore.open(state_dir))
    for step in range(30):
        at = T0 - 300.0 + 10.0 * step
        feed(evaluator, store, persister, make_run("login", at, success=step < 20))
        evaluator.evaluate(at + 1.0)
    evaluator.history.reload_failed(T0, ["probes.toml: <script>"])
    assert await persister.flush()
    saved = persister.state.load_history()
    query = "SELECT saved_at FROM snapshots WHERE name = 'history'"
    with raw(state_dir / STATE_FILE) as conn:
        written_at = conn.execute(query).fetchone()
    time.sleep(0.01)
    assert await persister.flush()
    with raw(state_dir / STATE_FILE) as conn:
        assert written_at == conn.execute(query).fetchone()
    persister.close()

    evaluator2, _, persister2 = build(StateStore.open(state_dir))
    problems = persister2.restore(now=T0)

    assert [] == problems
    assert evaluator.history.snapshot() == saved
    assert evaluator.history.latest() == evaluator2.history.latest()
    assert ["reload", "component"] == [e["kind"] for e in evaluator2.history.latest(2)]


def test_bad_history_is_a_restore_problem(state_dir: Path) -> None:
    """A history snapshot that is not one is reported by restore, which goes on."""
    store = StateStore.open(state_dir)
    store.save_history({"version": 1, "entries": [{"at": "soon"}]})
    store.close()
    with raw(state_dir / STATE_FILE) as conn:
        conn.execute("UPDATE snapshots SET data = 'not json' WHERE name = 'history'")
    evaluator, _, persister = build(StateStore.open(state_dir))
    assert [] == persister.restore(now=T0)

    persister.state.save_history({"version": 1, "entries": [{"at": "soon"}]})
    problems = persister.restore(now=T0)

    assert 1 == len(problems)
    assert problems[0].startswith("history: bad entry")
    assert [] == evaluator.history.latest()
