"""Shards of one location live: two daemons on the same config run every probe exactly once.

Two real ``probed run --shard i/2`` processes read one file; each reaches the loopback
target under its own path prefix (``PROBED_TARGETS__APP__BASE_URL``), so the target tells
which shard ran each probe. A reload adding probes hands each new one to exactly one shard.
In process, the demo config split in two: the stream, and the reflect and import probes
following it, run together on one shard and every probe succeeds on its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from binaries import promtool
from conftest import ServeApp
from polling import until
from test_daemon import PASSWORD, fast_demo_config

from probed.config import load_config
from probed.daemon import Daemon
from probed.demo import DemoTarget
from probed.shard import Shard, owner

FIRST = [f"p{i:02d}" for i in range(10)]
ADDED = [f"q{i:02d}" for i in range(6)]


def probes(names: list[str]) -> str:
    return "".join(
        f'[[probes]]\nname = "{n}"\nkind = "http"\ntarget = "app"\npath = "/p/{n}"\n'
        'interval = "1s"\ntimeout = "500ms"\n'
        for n in names
    )


class Process:
    """A ``probed run`` whose JSON log lines are read as they come (the pipe never fills)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    async def event(self, name: str, after: int = 0) -> dict[str, Any]:
        """The first log line ``name`` from index ``after`` on (waits up to 10 s)."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("event") == name), None)

        record: dict[str, Any] = await until(found, within=10.0, what=name)
        return record

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 10)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            await self._reader


@contextlib.asynccontextmanager
async def shard_process(path: Path, shard: str, target: str) -> AsyncIterator[Process]:
    index = shard.split("/")[0]
    env = {
        **os.environ,
        "PROBED_DAEMON__STATE_DIR": str(path.parent / f"state{index}"),
        "PROBED_TARGETS__APP__BASE_URL": f"{target}/s{index}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path), "--shard", shard,
        "--web.listen-address", "127.0.0.1:0", "--shutdown-grace", "1",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    process = Process(proc)
    try:
        yield process
    finally:
        assert 0 == await process.stop()


async def test_two_shards_run_every_probe_exactly_once_also_after_a_reload(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """Each probe reaches the target from its owner only; a reload's new probes too."""
    seen: defaultdict[str, set[str]] = defaultdict(set)
    runs: Counter[str] = Counter()

    async def record(request: web.Request) -> web.Response:
        seen[request.match_info["probe"]].add(request.match_info["shard"])
        runs[request.match_info["probe"]] += 1
        return web.Response(text="ok")

    def ran_twice(names: list[str]) -> bool:
        return all(runs[n] >= 2 for n in names)

    app = web.Application()
    app.router.add_get("/{shard}/p/{probe}", record)
    target = await serve_app(app)
    path = tmp_path / "probes.toml"
    head = '[daemon]\nlocation = "lab"\n[targets.app]\nbase_url = "http://127.0.0.1:9"\n'
    path.write_text(head + probes(FIRST), encoding="utf-8")
    async with (
        shard_process(path, "0/2", target) as zero,
        shard_process(path, "1/2", target) as one,
        aiohttp.ClientSession() as http,
    ):
        owns = [await zero.event("shard_owns"), await one.event("shard_owns")]
        assert [(0, 2), (1, 2)] == [(o["index"], o["total"]) for o in owns]
        assert len(FIRST) == owns[0]["probes"] + owns[1]["probes"]
        assert [0, 0] == [o["streams"] for o in owns]
        await until(lambda: set(FIRST) <= set(seen), within=10.0, what="every probe run")
        # each probe runs again: still from its owner alone
        await until(lambda: ran_twice(FIRST), within=10.0, what="every probe run twice")
        assert {n: {f"s{owner(n, 2)}"} for n in FIRST} == dict(seen)

        bases = [f"http://{(await p.event('daemon_ready'))['listen']}" for p in (zero, one)]
        for index, base in enumerate(bases):
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert f'probed_shard_info{{index="{index}",total="2"}} 1.0' in text
            running = set(re.findall(r'^probe_success\{probe="(\w+)"\} 1\.0$', text, re.M))
            assert {n for n in FIRST if owner(n, 2) == index} == running

        marks = [len(zero.events), len(one.events)]
        path.write_text(head + probes(FIRST + ADDED), encoding="utf-8")
        for p in (zero, one):
            p.proc.send_signal(signal.SIGHUP)
        reloaded = [
            await p.event("config_reloaded", m) for p, m in zip((zero, one), marks, strict=True)
        ]
        assert [[n for n in ADDED if owner(n, 2) == i] for i in (0, 1)] == [
            r["added"] for r in reloaded
        ]
        assert [[], [], [], []] == [r[k] for r in reloaded for k in ("changed", "removed")]
        await until(lambda: set(ADDED) <= set(seen), within=10.0, what="every added probe")
        await until(lambda: ran_twice(ADDED), within=10.0, what="every added probe run twice")
        assert {n: {f"s{owner(n, 2)}"} for n in FIRST + ADDED} == dict(seen)


@pytest.fixture
async def demo() -> AsyncIterator[DemoTarget]:
    async with DemoTarget(password=PASSWORD) as target:
        yield target


def demo_shard(path: Path, tmp_path: Path, index: int, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """A daemon of shard ``index`` of 2 on ``path``, with a state directory of its own."""
    monkeypatch.setenv("PROBED_DAEMON__SHARD", f"{index}/2")
    monkeypatch.setenv("PROBED_DAEMON__STATE_DIR", str(tmp_path / f"state{index}"))
    return Daemon(load_config(path), install_signal_handlers=False, shutdown_grace=1.0)


async def test_the_demo_split_in_two_succeeds_with_streams_beside_their_followers(
    demo: DemoTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shipped probe succeeds on exactly one shard; each shard's status names only what
    it owns (SLOs and components included), and promtool finds nothing in its scrape."""
    monkeypatch.setenv("PROBED_DEMO_PASSWORD", PASSWORD)
    path = fast_demo_config(tmp_path, demo.base_url)
    whole = load_config(path)
    with structlog.testing.capture_logs() as logs:
        daemons = [demo_shard(path, tmp_path, i, monkeypatch) for i in (0, 1)]
        tasks = [asyncio.create_task(d.run()) for d in daemons]
        for d in daemons:
            await asyncio.wait_for(d.wait_started(), 5)
    owns = sorted((e["index"], e["total"]) for e in logs if e["event"] == "shard_owns")
    assert [(0, 2), (1, 2)] == owns
    owned = [{p.name for p in d.config.probes} for d in daemons]
    assert [] == [n for n in owned[0] if n in owned[1]]
    assert {p.name for p in whole.probes} == owned[0] | owned[1]
    assert [{"events", "reflect", "import_trades"} <= o for o in owned].count(True) == 1
    bases = [f"http://127.0.0.1:{d.bound_port}" for d in daemons]
    try:
        async with aiohttp.ClientSession() as http:

            async def succeeding(base: str) -> set[str]:
                async with http.get(f"{base}/metrics") as resp:
                    text = await resp.text()
                return set(re.findall(r'^probe_success\{probe="(\w+)"\} 1\.0$', text, re.M))

            async def all_ok() -> bool:
                return [await succeeding(b) for b in bases] == owned

            await until(all_ok, within=15.0, every=0.1, what="every probe succeeding")
            for daemon, base, mine in zip(daemons, bases, owned, strict=True):
                evaluation, _ = daemon.evaluator.evaluate()
                daemon.info.evaluation = evaluation
                async with http.get(f"{base}/api/v1/status") as resp:
                    doc = await resp.json()
                assert {"index": daemon.config.daemon.shard.index, "total": 2} == doc["shard"]
                assert mine == {p["probe"] for p in doc["probes"]} | {
                    s["stream"] for s in doc["streams"]
                }
                assert {s.name for s in daemon.config.slos} == {s["name"] for s in doc["slos"]}
                for component in doc["components"]:
                    assert set(component["probes"]) <= mine
                    assert component["probes"] or component["name"] == "Console/Admin"
                async with http.get(f"{base}/metrics") as resp:
                    body = await resp.read()
                proc = await asyncio.create_subprocess_exec(
                    promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, err = await asyncio.wait_for(proc.communicate(body), 30)
                assert (0, b"", b"") == (proc.returncode, out, err)
    finally:
        for d in daemons:
            d.request_stop()
        assert [0, 0] == [await asyncio.wait_for(t, 10) for t in tasks]


async def test_the_shard_needs_a_restart_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload keeps the running shard (its labels name the instance) and says so."""
    path = tmp_path / "probes.toml"
    head = f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\nshard = "0/2"\n'
    body = '[targets.app]\nbase_url = "http://127.0.0.1:9"\n' + probes(FIRST)
    path.write_text(head + body, encoding="utf-8")
    daemon = Daemon(load_config(path), install_signal_handlers=False)
    assert {n for n in FIRST if owner(n, 2) == 0} == {p.name for p in daemon.config.probes}
    task = asyncio.create_task(daemon.run())
    await daemon.wait_started()
    try:
        path.write_text(head.replace("0/2", "1/3") + body, encoding="utf-8")
        with structlog.testing.capture_logs() as logs:
            ok, _ = await daemon.reload()
        assert ok
        assert [("shard", "0/2", "1/3")] == [
            (e["key"], e["running"], e["configured"])
            for e in logs
            if e["event"] == "config_daemon_change_needs_restart"
        ]
        assert Shard(0, 2) == daemon.config.daemon.shard
        assert {n for n in FIRST if owner(n, 2) == 0} == {p.name for p in daemon.config.probes}
    finally:
        daemon.request_stop()
        assert 0 == await task
