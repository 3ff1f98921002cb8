"""The daemon's event loop: uvloop by default, asyncio's own on request or without uvloop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import structlog
from test_daemon import read_event

from probed import eventloop
from probed.stream.hub import Hub


async def _running_loop() -> str:
    return eventloop.loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_run_builds_the_loop_it_is_asked_for(name: str) -> None:
    """``run`` makes the chosen loop before the coroutine starts, and names it."""
    with structlog.testing.capture_logs() as logs:
        assert name == eventloop.run(_running_loop(), name)
    assert [] == logs


def test_without_uvloop_the_daemon_runs_on_asyncio_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop chosen but not importable: asyncio's loop, and one warning that says so."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with structlog.testing.capture_logs() as logs:
        assert "asyncio" == eventloop.run(_running_loop(), "uvloop")
    assert [("event_loop_unavailable", "warning", "uvloop", "asyncio")] == [
        (e["event"], e["log_level"], e["event_loop"], e["using"]) for e in logs
    ]
    assert "uvloop" in str(logs[0]["error_message"])


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n'
        "allow_no_probes = true\n"
    )
    return path


async def _start(path: Path, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path),
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
async def test_the_process_names_its_loop_at_start_and_on_metrics(
    tmp_path: Path, name: str
) -> None:
    """``daemon_ready`` and ``probed_build_info`` say which loop runs; SIGTERM still stops it."""
    proc = await _start(_config(tmp_path), PROBED_DAEMON__EVENT_LOOP=name)
    assert proc.stdout is not None
    try:
        ready = await read_event(proc.stdout, "daemon_ready")
        assert name == ready["event_loop"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{ready['listen']}/metrics") as resp,
        ):
            text = await resp.text()
        build = [line for line in text.splitlines() if line.startswith("probed_build_info{")]
        assert 1 == len(build)
        assert f'event_loop="{name}"' in build[0]
        assert 0 == await _stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_process_without_uvloop_warns_and_runs_on_asyncio(tmp_path: Path) -> None:
    """A uvloop that cannot be imported costs a warning line, never the start."""
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "uvloop.py").write_text('raise ImportError("uvloop is broken here")\n')
    path = os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])
    proc = await _start(_config(tmp_path), PROBED_DAEMON__EVENT_LOOP="uvloop", PYTHONPATH=path)
    assert proc.stdout is not None
    try:
        warning = await read_event(proc.stdout, "event_loop_unavailable")
        assert ("warning", "uvloop", "asyncio", {"message": "uvloop is broken here"}) == (
            warning["level"],
            warning["event_loop"],
            warning["using"],
            warning["error"],
        )
        ready = await read_event(proc.stdout, "daemon_ready")
        assert "asyncio" == ready["event_loop"]
        assert 0 == await _stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _early_waits(waits: int) -> list[float]:
    """How much before its timeout each of ``waits`` nonce waits ended (0: not before)."""
    hub = Hub()
    early = []
    for i in range(waits):
        seconds = 0.0051 + (i % 7) * 0.00013  # between two of libuv's whole milliseconds
        with hub.expect("events", "nonce") as waiter:
            started = time.monotonic()
            assert await waiter.wait(seconds) is None
            early.append(max(0.0, seconds - (time.monotonic() - started)))
        event = asyncio.Event()
        started = time.monotonic()
        assert not await eventloop.wait_set(event, started + seconds)
        early.append(max(0.0, seconds - (time.monotonic() - started)))
    return early


@pytest.mark.parametrize("name", eventloop.EVENT_LOOPS)
def test_a_wait_never_ends_before_its_deadline(name: str) -> None:
    """uvloop's timers may fire up to a millisecond early (about one wait in twelve here):
    a reflect run waiting for its event until ``lost_after`` must not call it lost before
    then (``test_reflect_over_sse[lost]`` read a run of 0.79998 s against 0.8)."""
    with asyncio.Runner(loop_factory=eventloop.loop_factory(name)) as runner:
        early = runner.run(_early_waits(100))
    assert [] == [round(e * 1000, 3) for e in early if e > 0]
