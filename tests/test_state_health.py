"""Persistence problems are visible: health gauge, failure counter, readiness, retries, lock."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from binaries import promtool
from conftest import ServeApp
from prometheus_client import generate_latest
from test_daemon import read_event
from test_persist import T0, build, feed, make_run, raw

from probed import __version__
from probed.config import load_config
from probed.daemon import Daemon
from probed.metrics import DaemonInfo, build_registry
from probed.persist import STATE_FILE, StateStore
from probed.server import ServerState, create_app
from probed.statehealth import LOCK_FILE, StateDirLocked, StateHealth, StateLock, failure_reason
from probed.status import status_document
from probed.statuspage import render_page
from probed.store import ResultStore


def _sqlite_error(name: str, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorname = name
    return exc


def _failing_save(exc: BaseException) -> Any:
    def save(**kwargs: Any) -> None:
        raise exc

    return save


def _events(logs: list[MutableMapping[str, Any]]) -> list[str]:
    """The state_* events of ``logs`` above debug level."""
    return [
        e["event"] for e in logs if e["event"].startswith("state_") and e["log_level"] != "debug"
    ]


def _metrics(health: StateHealth) -> str:
    info = DaemonInfo(state=health)
    return generate_latest(build_registry(ResultStore(), info).frozen()).decode()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state directory that does not exist yet."""
    return tmp_path / "state"


# --- classifying failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (OSError(errno.EROFS, "Read-only file system"), "read_only"),
        (PermissionError(errno.EACCES, "Permission denied"), "read_only"),
        (OSError(errno.ENOSPC, "No space left on device"), "no_space"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "no_space"),
        (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), "locked"),
        (_sqlite_error("SQLITE_READONLY", "attempt to write a readonly database"), "read_only"),
        (_sqlite_error("SQLITE_FULL", "database or disk is full"), "no_space"),
        (_sqlite_error("SQLITE_BUSY", "database is locked"), "locked"),
        (_sqlite_error("SQLITE_CANTOPEN", "unable to open database file"), "other"),
        (StateDirLocked(Path("/x"), 42), "locked"),
        (RuntimeError("bug"), "other"),
    ],
)
def test_failure_reason_is_one_of_a_fixed_set(exc: BaseException, reason: str) -> None:
    """Errno values and SQLite result codes map to read_only, no_space, locked or other."""
    assert reason == failure_reason(exc)


# --- failed writes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (OSError(errno.EROFS, "Read-only file system"), "read_only"),
        (OSError(errno.ENOSPC, "No space left on device"), "no_space"),
        (_sqlite_error("SQLITE_READONLY", "attempt to write a readonly database"), "read_only"),
        (_sqlite_error("SQLITE_FULL", "database or disk is full"), "no_space"),
    ],
)
async def test_failed_writes_set_the_gauge_count_and_log_once(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, reason: str
) -> None:
    """Failing writes set probed_state_healthy 0, count each failure by reason, log one line;
    the next good write sets it back to 1 with one recovery line and nothing lost."""
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state)
    real_save = state.save
    monkeypatch.setattr(state, "save", _failing_save(exc))
    with structlog.testing.capture_logs() as logs:
        for k in range(3):
            feed(evaluator, store, persister, make_run("login", T0 + k))
            assert not await persister.flush()
        failing = _metrics(persister.health)
        monkeypatch.setattr(state, "save", real_save)
        assert await persister.flush()

    assert "probed_state_healthy 0.0" in failing
    assert f'probed_state_write_failures_total{{reason="{reason}"}} 3.0' in failing
    assert ["state_save_failed", "state_recovered"] == _events(logs)
    assert "probed_state_healthy 1.0" in _metrics(persister.health)
    assert [T0, T0 + 1, T0 + 2] == [r.started_at for r in state.load_results()["login"]]


async def test_locked_database_is_unhealthy_until_released(state_dir: Path) -> None:
    """Another connection's exclusive lock fails writes as ``locked``; released, they resume."""
    state = StateStore.open(state_dir, busy_timeout=0.1)
    evaluator, store, persister = build(state)
    feed(evaluator, store, persister, make_run("login", T0))
    holder = raw(state_dir / STATE_FILE)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert not await persister.flush()
        health = persister.health
        assert (False, "locked", 1) == (health.healthy, health.reason, health.failures["locked"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert await persister.flush()
    assert (True, None) == (persister.health.healthy, persister.health.reason)
    assert [T0] == [r.started_at for r in state.load_results()["login"]]


async def test_memory_store_by_choice_is_healthy(state_dir: Path) -> None:
    """A store kept in memory on purpose (no state directory) is healthy and never retried."""
    evaluator, store, persister = build(StateStore.memory())
    feed(evaluator, store, persister, make_run("login", T0))

    assert await persister.flush()
    assert (True, False) == (persister.health.healthy, persister.health.in_memory)


# --- falling back to memory and recovering -------------------------------------------------


async def test_unusable_file_falls_back_then_recovers_with_what_memory_held(
    state_dir: Path,
) -> None:
    """With the state file path a directory (fails even as root) the daemon runs in memory,
    unhealthy; once it is fixed a retry opens the file and writes what memory held."""
    (state_dir / STATE_FILE).mkdir(parents=True)
    state = StateStore.open(state_dir)
    evaluator, store, persister = build(state)
    health = persister.health
    assert (False, True, "other") == (health.healthy, health.in_memory, health.reason)
    feed(evaluator, store, persister, make_run("login", T0))
    assert await persister.flush(retry=True), "kept in memory meanwhile"
    assert (False, True, 2) == (health.healthy, health.in_memory, health.failures["other"])

    (state_dir / STATE_FILE).rmdir()
    feed(evaluator, store, persister, make_run("login", T0 + 10.0))
    with structlog.testing.capture_logs() as logs:
        assert await persister.flush(retry=True)

    assert (True, False, None) == (health.healthy, health.in_memory, health.reason)
    assert ["state_opened", "state_recovered"] == _events(logs)
    reopened = StateStore.open(state_dir)
    assert [T0, T0 + 10.0] == [r.started_at for r in reopened.load_results()["login"]]
    assert reopened.load_slo() is not None, "the SLO buckets are written at once"
    assert reopened.load_recommendations() is not None


async def test_read_only_directory_at_start_recovers(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory that cannot be created (EROFS) is ``read_only`` until a retry succeeds."""

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "mkdir", read_only)
    evaluator, store, persister = build(StateStore.open(state_dir))
    feed(evaluator, store, persister, make_run("login", T0))
    assert await persister.flush(retry=True)
    assert ("read_only", 2) == (persister.health.reason, persister.health.failures["read_only"])
    monkeypatch.undo()

    assert await persister.flush(retry=True)
    assert persister.health.healthy
    assert [T0] == [r.started_at for r in StateStore.open(state_dir).load_results()["login"]]


async def test_retries_back_off_up_to_retry_max(state_dir: Path) -> None:
    """While the file cannot be opened, retries come ever less often, at most retry_max apart."""
    (state_dir / STATE_FILE).mkdir(parents=True)
    _, _, persister = build(StateStore.open(state_dir), results_every=0.01, slo_every=1.0)
    persister.retry_max = 0.08
    attempts: list[float] = []
    real = persister.reopen
    assert real is not None

    def counting() -> StateStore:
        attempts.append(time.monotonic())
        return real()

    persister.reopen = counting
    task = asyncio.create_task(persister.run())
    await asyncio.sleep(0.6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert 4 <= len(attempts) <= 15, attempts
    assert gaps[0] < gaps[2], gaps
    assert max(gaps) < 0.08 + 0.05, gaps


# --- what the server and status show -------------------------------------------------------


async def test_ready_reflects_state_health_healthy_does_not(serve_app: ServeApp) -> None:
    """/-/ready is 503 with the reason while the state directory cannot be written;
    /-/healthy stays 200 (liveness)."""
    health = StateHealth(state_dir="/var/lib/probed")
    store = ResultStore()
    server = ServerState(store, build_registry(store, DaemonInfo(state=health)), state=health)
    server.ready = True
    base = await serve_app(create_app(server))
    async with aiohttp.ClientSession() as http:
        health.failed(OSError(errno.ENOSPC, "No space left on device"), in_memory=False)
        async with http.get(f"{base}/-/ready") as resp:
            not_ready = (resp.status, await resp.text())
        async with http.get(f"{base}/-/healthy") as resp:
            alive = resp.status
        health.succeeded()
        async with http.get(f"{base}/-/ready") as resp:
            ready = (resp.status, await resp.text())

    assert (
        503,
        "Not ready: state directory /var/lib/probed cannot be written (no_space)\n",
    ) == not_ready
    assert 200 == alive
    assert (200, "Ready\n") == ready


def test_status_document_and_page_show_state_health() -> None:
    """The status JSON has a ``state`` object and the page a line saying whether it is saved."""
    health = StateHealth(state_dir="/var/lib/probed")
    health.failed(OSError(errno.EROFS, "Read-only file system"), in_memory=True, now=T0)
    doc = status_document(
        store=ResultStore(),
        evaluation=None,
        location="eu-1",
        version=__version__,
        now=T0 + 5,
        state=health.document(),
    )
    page = render_page(json.loads(json.dumps(doc)))

    assert {
        "healthy": False,
        "state_dir": "/var/lib/probed",
        "in_memory": True,
        "reason": "read_only",
        "since": T0,
        "write_failures": 1,
    } == doc["state"]
    assert (
        '<p class="state" id="state" data-healthy="false">state NOT saved since '
        "2027-01-15T08:00:00Z (read_only), kept in memory only</p>"
    ) in page


async def test_promtool_accepts_the_state_metrics() -> None:
    """promtool check metrics finds nothing wrong with the state families."""
    health = StateHealth(state_dir="/s")
    health.failed(OSError(errno.EROFS, "Read-only file system"), in_memory=True)
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate(_metrics(health).encode())
    state_lines = [line for line in out.decode().splitlines() if "probed_state" in line]

    assert [] == state_lines
    assert "# HELP probed_state_healthy " in _metrics(health)
    assert "# TYPE probed_state_write_failures_total counter" in _metrics(health)


async def test_daemon_with_an_unusable_state_file_serves_but_is_not_ready(
    tmp_path: Path, state_dir: Path
) -> None:
    """The daemon wires state health through: probing runs, /-/ready is 503 with the reason,
    the gauge is 0 and the status document says state is kept in memory."""
    (state_dir / STATE_FILE).mkdir(parents=True)
    daemon = Daemon(load_config(_config(tmp_path, state_dir, "d")), install_signal_handlers=False)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.wait_started(), 30)
        base = f"http://127.0.0.1:{daemon.bound_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/-/ready") as resp:
                ready = (resp.status, await resp.text())
            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
            async with http.get(f"{base}/api/v1/status") as resp:
                doc = await resp.json()
    finally:
        daemon.request_stop()
        assert 0 == await asyncio.wait_for(task, 30)

    assert (
        503,
        f"Not ready: state directory {state_dir} cannot be written (other)\n",
    ) == ready
    assert "probed_state_healthy 0.0" in metrics
    assert (False, True, "other") == (
        doc["state"]["healthy"],
        doc["state"]["in_memory"],
        doc["state"]["reason"],
    )


# --- the lock ------------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_the_holder(state_dir: Path) -> None:
    """A second lock on the directory fails naming the holder's PID; released, it is free."""
    first = StateLock(state_dir)
    first.acquire()
    try:
        with pytest.raises(StateDirLocked) as caught:
            StateLock(state_dir).acquire()
        assert f"{os.getpid()}\n" == (state_dir / LOCK_FILE).read_text()
    finally:
        first.release()
    second = StateLock(state_dir)
    second.acquire()
    second.release()

    assert (state_dir, os.getpid()) == (caught.value.state_dir, caught.value.pid)
    assert f"{state_dir} is locked by process {os.getpid()}" in str(caught.value)


def _config(tmp_path: Path, state_dir: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{state_dir}"\nallow_no_probes = true\n'
    )
    return path


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(config), "--shutdown-grace", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.fixture
async def first_daemon(
    tmp_path: Path, state_dir: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real ``probed run`` on ``state_dir``, started and ready; killed at the end."""
    proc = await _start(_config(tmp_path, state_dir, "first"))
    assert proc.stdout is not None
    await read_event(proc.stdout, "daemon_ready", within=30.0)
    yield proc
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_second_daemon_on_the_state_dir_refuses_to_start(
    tmp_path: Path, state_dir: Path, first_daemon: asyncio.subprocess.Process
) -> None:
    """A second daemon on the same state directory exits 1 with one error line naming the
    directory and the holder's PID, and no traceback."""
    second = await _start(_config(tmp_path, state_dir, "second"))
    try:
        async with asyncio.timeout(30):
            out, err = await second.communicate()
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()

    [line] = [json.loads(x) for x in out.decode().splitlines() if '"error"' in x]
    assert 1 == second.returncode
    assert ("state_dir_locked", str(state_dir), first_daemon.pid) == (
        line["event"],
        line["state_dir"],
        line["holder_pid"],
    )
    assert "Traceback" not in err.decode()


async def test_restart_after_sigkill_starts(
    tmp_path: Path, state_dir: Path, first_daemon: asyncio.subprocess.Process
) -> None:
    """SIGKILL releases the lock (the kernel drops the flock): a restart starts and is ready."""
    first_daemon.send_signal(signal.SIGKILL)
    await first_daemon.wait()
    again = await _start(_config(tmp_path, state_dir, "again"))
    try:
        assert again.stdout is not None
        ready = await read_event(again.stdout, "daemon_ready", within=30.0)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{ready['listen']}/-/ready") as resp,
        ):
            assert (200, "Ready\n") == (resp.status, await resp.text())
        again.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.wait_for(again.wait(), 30)
    finally:
        if again.returncode is None:
            again.kill()
            await again.wait()
