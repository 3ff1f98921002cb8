"""The real `probed run` process through its whole life, as systemd would drive it.

READY on a notify socket, a scrape, SIGHUP with a changed config (untouched streams keep
their connections), a bad config (gauge 0, probing continues), SIGKILL and restart (SLO
window counts continue from the state directory), then SIGTERM and exit 0 in the grace period.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
from test_daemon import PASSWORD, fast_demo_config, read_event

from probed.demo import DemoTarget
from probed.results import Reason
from probed.statefile import STATE_FILE


async def notified(sock: socket.socket, field: str, within: float = 10.0) -> str:
    """Wait for a notify datagram containing ``field``; return the whole message."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        while True:
            message = (await loop.sock_recv(sock, 4096)).decode()
            if field in message.split("\n"):
                return message


async def start(path: Path, notify: str) -> asyncio.subprocess.Process:
    """Start `probed run` on ``path`` with the notify socket and a 2 s shutdown grace."""
    env = {**os.environ, "PROBED_DEMO_PASSWORD": PASSWORD, "NOTIFY_SOCKET": notify}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path), "--shutdown-grace", "2",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def status(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """The daemon's /api/v1/status document."""
    async with http.get(f"{base}/api/v1/status") as resp:
        doc: dict[str, Any] = await resp.json()
        return doc


async def evaluated_status(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """The status document once the daemon has evaluated (its SLOs are in it from then)."""
    async with asyncio.timeout(5):
        while (doc := await status(http, base))["evaluated_at"] is None:
            await asyncio.sleep(0.02)
    return doc


def saved_runs(state_dir: Path, probe: str) -> int:
    """Runs of ``probe`` the SLOs count (not ``prober_overloaded``) in the state file, read
    beside the daemon (which created the file before READY)."""
    uri = f"{(state_dir / STATE_FILE).as_uri()}?mode=ro"
    query = "SELECT count(*) FROM results WHERE probe = ? AND reason IS NOT ?"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute(query, (probe, Reason.PROBER_OVERLOADED.value)).fetchone()
    return int(row[0])


def slo_events(doc: dict[str, Any], name: str) -> int:
    """Events counted by SLO ``name`` over its 1h window."""
    slo = next(s for s in doc["slos"] if s["name"] == name)
    return int(slo["events"]["1h"])


async def test_process_lifecycle(tmp_path: Path, notify_socket: socket.socket) -> None:
    """READY, reload by diff, bad reload, SIGKILL with state kept, SIGTERM: the real process."""
    notify = notify_socket.getsockname()
    async with DemoTarget(password=PASSWORD) as demo, aiohttp.ClientSession() as http:
        path = fast_demo_config(tmp_path, demo.base_url)
        text = path.read_text().replace('evaluate_every = "10s"', 'evaluate_every = "500ms"')
        path.write_text(text)
        proc = await start(path, notify)
        assert proc.stdout is not None
        try:
            ready = await notified(notify_socket, "READY=1")
            assert any(line.startswith("STATUS=listening on") for line in ready.split("\n"))
            listen = (await read_event(proc.stdout, "daemon_ready"))["listen"]
            base = f"http://{listen}"
            async with http.get(f"{base}/metrics") as resp:  # the listener is up at READY
                assert 200 == resp.status

            async def stream_up() -> dict[str, Any]:
                async with asyncio.timeout(10):
                    while True:
                        doc = await status(http, base)
                        events = next(s for s in doc["streams"] if s["stream"] == "events")
                        if events["connected"] == 1 and events["received"] > 0:
                            return doc
                        await asyncio.sleep(0.1)

            before = await stream_up()
            ids = next(s for s in before["streams"] if s["stream"] == "events")["connection_ids"]

            # SIGHUP with one probe changed: the untouched stream keeps its connection
            changed = text.replace(
                'path = "/health/liveness"', 'path = "/health/liveness"\nexpect_status = [200, 204]'
            )
            path.write_text(changed)
            proc.send_signal(signal.SIGHUP)
            assert "RELOADING=1" in await notified(notify_socket, "RELOADING=1")
            reloaded = await read_event(proc.stdout, "config_reloaded")
            assert ([], ["liveness"], []) == (
                reloaded["added"],
                reloaded["changed"],
                reloaded["removed"],
            )
            await notified(notify_socket, "READY=1")
            after = await status(http, base)
            assert (
                ids
                == next(s for s in after["streams"] if s["stream"] == "events")["connection_ids"]
            )

            # a bad config keeps the old one running
            path.write_text(changed + '\n[[probes]]\nname = "x"\nkind = "nope"\ntarget = "demo"\n')
            proc.send_signal(signal.SIGHUP)
            await read_event(proc.stdout, "config_reload_failed")
            async with http.get(f"{base}/metrics") as resp:
                assert "probed_config_last_reload_successful 0.0" in await resp.text()
            await read_event(proc.stdout, "probe_run")
            path.write_text(changed)

            # SIGKILL after the state has been written at least once (the first write comes
            # one 5 s results interval after the start) and 5 login runs were counted
            state_dir = tmp_path / "state"
            async with asyncio.timeout(8):
                while True:
                    counted = slo_events(await status(http, base), "login_availability")
                    if counted >= 5 and saved_runs(state_dir, "login") > 0:
                        break
                    await asyncio.sleep(0.1)
            proc.kill()
            await proc.wait()
            killed_at = time.monotonic()
            saved = saved_runs(state_dir, "login")
            proc = await start(path, notify)
            assert proc.stdout is not None
            await notified(notify_socket, "READY=1")
            listen = (await read_event(proc.stdout, "daemon_ready"))["listen"]
            base = f"http://{listen}"
            # at most one results interval (5 s) of 1 s login runs may be lost
            restored = slo_events(await evaluated_status(http, base), "login_availability")
            assert counted - 6 <= restored, (counted, restored)
            assert saved <= restored, (saved, restored)  # every run written is counted again
            assert restored > 0
            assert time.monotonic() - killed_at < 10

            # SIGTERM: STOPPING=1, exit 0 within the grace period
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            await notified(notify_socket, "STOPPING=1")
            assert 0 == await asyncio.wait_for(proc.wait(), 5)
            assert time.monotonic() - stopped_at < 4  # 2 s grace + shutdown
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
