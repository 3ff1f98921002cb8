"""The daemon end to end: shipped probes against the demo target, promtool, redaction, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from binaries import promtool
from polling import until

from probed.config import load_config
from probed.daemon import RESTART_KEYS, Daemon
from probed.demo import DemoTarget

DEMO_CONFIG = Path(__file__).parent.parent / "probed" / "demo" / "probes.toml"
PASSWORD = "pw-Very-Secret-42"


def fast_demo_config(tmp_path: Path, base_url: str, listen: str = "127.0.0.1:0") -> Path:
    """The shipped demo config with 1 s intervals, pointed at ``base_url``, in ``tmp_path``."""
    text = DEMO_CONFIG.read_text()
    replacements = {
        # reflect and import: shorter deadlines so their runs fit the faster schedule
        'interval = "10s"\ndeadline = "3s"\nlost_after = "6s"\ntimeout = "8s"': (
            'interval = "2s"\ndeadline = "500ms"\nlost_after = "1s"\ntimeout = "1500ms"'
        ),
        'interval = "10s"\njson_body': 'interval = "5s"\njson_body',
        'deadline = "8s"\nstall_after = "5s"\ntimeout = "9s"': (
            'deadline = "4s"\nstall_after = "3s"\ntimeout = "4500ms"'
        ),
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace('interval = "10s"', 'interval = "1s"').replace(
        'timeout = "2s"', 'timeout = "900ms"'
    )
    text = text.replace('"http://127.0.0.1:18115"', f'"{base_url}"')
    text = text.replace('listen = "127.0.0.1:10115"', f'listen = "{listen}"')
    text = text.replace('state_dir = "/tmp/probed-demo"', f'state_dir = "{tmp_path}/state"')
    (tmp_path / "fixtures").mkdir(exist_ok=True)
    shutil.copy(DEMO_CONFIG.parent / "fixtures" / "indicators.json", tmp_path / "fixtures")
    path = tmp_path / "probes.toml"
    path.write_text(text)
    return path


@pytest.fixture
async def demo() -> AsyncIterator[DemoTarget]:
    """The demo target on a loopback port."""
    async with DemoTarget(password=PASSWORD) as target:
        yield target


async def test_shipped_probes_all_succeed_and_promtool_is_clean(
    demo: DemoTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shipped probe succeeds against the demo and promtool finds nothing in a live scrape."""
    monkeypatch.setenv("PROBED_DEMO_PASSWORD", PASSWORD)
    config = load_config(fast_demo_config(tmp_path, demo.base_url))
    daemon = Daemon(config, install_signal_handlers=False, shutdown_grace=1.0)
    task = asyncio.create_task(daemon.run())
    await daemon.wait_started()
    names = {p.name for p in config.probes}
    base = f"http://127.0.0.1:{daemon.bound_port}"
    async with aiohttp.ClientSession() as http:

        async def all_ok() -> bool:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            ok = set(re.findall(r'^probe_success\{probe="(\w+)"\} 1\.0$', text, re.M))
            return ok == names

        await until(all_ok, within=12.0, every=0.05)
        async with http.get(f"{base}/metrics") as resp:
            body = await resp.read()
            assert "text/plain; version=0.0.4; charset=utf-8" == resp.headers["Content-Type"]
        async with http.get(f"{base}/-/ready") as resp:
            assert 200 == resp.status
        async with http.get(f"{base}/api/v1/status") as resp:
            status = await resp.json()
        assert names == {p["probe"] for p in status["probes"]} | {
            s["stream"] for s in status["streams"]
        }
        for fmt, expected in (
            ("markdown", "- API Read: "),
            ("incident", "Sev: "),
            ("table", "login"),
            ("json", '"components"'),
        ):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "probed", "status", "--url", base, "-f", fmt,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            assert 0 == proc.returncode
            assert expected in out.decode(), (fmt, out)
    daemon.request_stop()
    assert 0 == await task
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(body), 30)
    assert (0, b"", b"") == (proc.returncode, out, err)


def test_rules_command(tmp_path: Path) -> None:
    """probed rules prints the committed rule file for the shipped config."""
    env = {**os.environ, "PROBED_DEMO_PASSWORD": "x" * 8}
    out = subprocess.run(
        [sys.executable, "-m", "probed", "rules", "-c", str(DEMO_CONFIG)],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    committed = Path(__file__).parent.parent / "rules" / "probed.rules.yml"
    assert (0, committed.read_text()) == (out.returncode, out.stdout)


def test_status_command_without_daemon() -> None:
    """probed status against a port where nothing listens exits 1 with a clear message."""
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    out = subprocess.run(
        [sys.executable, "-m", "probed", "status", "--url", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert 1 == out.returncode
    assert out.stderr.startswith(f"probed status: cannot read {url}/api/v1/status:")


def test_check_command(tmp_path: Path) -> None:
    """probed check exits 0 on the shipped config and 2 with the exact problem on a bad one."""
    env = {**os.environ, "PROBED_DEMO_PASSWORD": "x" * 8}
    ok = subprocess.run(
        [sys.executable, "-m", "probed", "check", "-c", str(DEMO_CONFIG)],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert (0, f"{DEMO_CONFIG}: OK (9 probes, 1 targets)\n") == (ok.returncode, ok.stdout)
    bad = Path(__file__).parent / "configs" / "bad" / "unknown_target.toml"
    out = subprocess.run(
        [sys.executable, "-m", "probed", "check", "-c", str(bad)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert 2 == out.returncode
    assert (
        f"{bad}:7: probe 'health' (probes[0]) key 'target': unknown target 'staging' "
        "(targets: app)\n"
    ) == out.stderr


async def test_once_command(demo: DemoTarget, tmp_path: Path) -> None:
    """probed once prints results, exits 0 when all pass and 1 when one fails."""
    path = fast_demo_config(tmp_path, demo.base_url)

    async def once(*args: str, password: str = PASSWORD) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "probed", "once", "-c", str(path), *args,
            env={**os.environ, "PROBED_DEMO_PASSWORD": password}, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    # four independent processes: they run at once
    (code, out), (code2, out2), (code3, out3), (code4, _) = await asyncio.gather(
        once("--json"),
        once("-p", "health", "-p", "login"),
        once("-p", "login", password="wrong-password"),
        once("-p", "nope"),
    )
    results = json.loads(out)
    assert 0 == code
    assert 8 == len(results)
    assert all(r["success"] for r in results)
    assert 0 == code2
    assert ["PROBE", "health", "login"] == [line.split()[0] for line in out2.splitlines()]
    assert 1 == code3
    assert ["login", "login", "FAIL", "status", "401"] == out3.splitlines()[1].split()[:5]
    assert 2 == code4


async def test_no_secret_in_any_output(demo: DemoTarget, tmp_path: Path) -> None:
    """The real daemon's logs, metrics and status never contain the password or a token."""
    path = fast_demo_config(tmp_path, demo.base_url, listen="127.0.0.1:0")
    text = path.read_text().replace('log_level = "info"', 'log_level = "debug"')
    # a second login probe whose follow-up fails, so failure paths are logged too
    text += (
        '\n[[probes]]\nname = "login_bad_follow_up"\nkind = "login"\ntarget = "demo"\n'
        'interval = "1s"\ntimeout = "900ms"\nusername = "probe@demo.example"\n'
        'password = { env = "PROBED_DEMO_PASSWORD" }\nfollow_up = { path = "/api/me", '
        "expect_status = [204] }\n"
    )
    path.write_text(text)
    env = {**os.environ, "PROBED_DEMO_PASSWORD": PASSWORD}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    early: list[bytes] = []
    while True:  # keep every line, not only daemon_ready: all of them are scanned
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line, "daemon exited before daemon_ready"
        early.append(line)
        first = json.loads(line)
        if first["event"] == "daemon_ready":
            break
    base = f"http://{first['listen']}"
    scraped = []
    async with aiohttp.ClientSession() as http:

        async def logins_ran() -> bool:
            """Both login probes (the only ones given the password or a token) ran: two
            tokens issued, the bad follow-up failed on its status."""
            async with http.get(f"{base}/api/v1/status") as resp:
                doc = await resp.json()
            runs = {p["probe"]: p for p in doc["probes"]}
            return (
                runs["login"]["runs"] > 0
                and runs["login_bad_follow_up"]["reasons"].get("status", 0) > 0
                and len(demo.issued_tokens()) >= 2
            )

        await until(logins_ran, within=15.0, every=0.1, what="a run of both login probes")
        for path_ in ("/metrics", "/api/v1/status", "/"):
            async with http.get(base + path_) as resp:
                scraped.append(await resp.text())
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert 0 == proc.returncode
    logs = b"".join(early).decode() + out.decode() + err.decode()
    tokens = demo.issued_tokens()
    assert len(tokens) >= 2
    everything = logs + "".join(scraped)
    assert [] == [s for s in [PASSWORD, *tokens] if s in everything]
    assert "probe@demo.example" not in logs
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert {"login", "login_bad_follow_up"} <= {e.get("probe") for e in events}
    assert any(
        e.get("reason") == "status" for e in events if e.get("probe") == "login_bad_follow_up"
    )


async def read_event(
    stream: asyncio.StreamReader, event: str, within: float = 10.0
) -> dict[str, object]:
    """Read JSON log lines until one has ``event``; return it."""
    async with asyncio.timeout(within):
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {event!r}")
            record: dict[str, object] = json.loads(line)
            if record.get("event") == event:
                return record


async def test_process_reload_and_graceful_stop(demo: DemoTarget, tmp_path: Path) -> None:
    """The real process reloads on SIGHUP by diff, keeps running on a bad file, exits 0 on TERM."""
    path = fast_demo_config(tmp_path, demo.base_url)
    good = path.read_text()
    env = {**os.environ, "PROBED_DEMO_PASSWORD": PASSWORD}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path), "--shutdown-grace", "2",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        ready = await read_event(proc.stdout, "daemon_ready")
        base = f"http://{ready['listen']}"
        # change "liveness", add "health_copy"
        changed = good.replace(
            'path = "/health/liveness"',
            'path = "/health/liveness"\nmethod = "GET"\nexpect_status = [200, 204]',
        )
        changed += (
            '\n[[probes]]\nname = "health_copy"\nkind = "http"\ntarget = "demo"\n'
            'path = "/health"\ninterval = "1s"\ntimeout = "900ms"\n'
        )
        path.write_text(changed)
        proc.send_signal(signal.SIGHUP)
        reloaded = await read_event(proc.stdout, "config_reloaded")
        assert (["health_copy"], ["liveness"], []) == (
            reloaded["added"], reloaded["changed"], reloaded["removed"],
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert 'probed_probe_info{kind="http",probe="health_copy",target="demo"} 1.0' in text
            bad = changed + '\n[[probes]]\nname = "x"\nkind = "http"\ntarget = "nope"\n'
            path.write_text(bad)
            line = bad.splitlines().index('target = "nope"') + 1
            async with http.post(f"{base}/-/reload") as resp:
                assert 400 == resp.status
            failed = await read_event(proc.stdout, "config_reload_failed")
            assert [
                f"{path}:{line}: probe 'x' (probes[10]) key 'target': unknown target 'nope' "
                "(targets: demo)"
            ] == failed["problems"]
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert "probed_config_last_reload_successful 0.0" in text
            assert "probed_probes_configured 9.0" in text
            await read_event(proc.stdout, "probe_run")  # probing continues
            # back to the original: the added probe is removed and its series vanish
            path.write_text(good)
            async with http.post(f"{base}/-/reload") as resp:
                assert 200 == resp.status
            reloaded = await read_event(proc.stdout, "config_reloaded")
            assert ([], ["liveness"], ["health_copy"]) == (
                reloaded["added"], reloaded["changed"], reloaded["removed"],
            )  # fmt: skip
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert 'probe="health_copy"' not in text
            assert "probed_config_last_reload_successful 1.0" in text
        proc.send_signal(signal.SIGTERM)
        await read_event(proc.stdout, "daemon_stopped")
        assert 0 == await asyncio.wait_for(proc.wait(), 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_reload_names_the_changes_that_need_a_restart(tmp_path: Path) -> None:
    """A new listen address or signal window is logged as needing a restart, not half-applied."""
    import structlog

    path = tmp_path / "probes.toml"
    daemon_section = f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n'
    path.write_text(daemon_section + "allow_no_probes = true\n")
    daemon = Daemon(load_config(path), install_signal_handlers=False)
    task = asyncio.create_task(daemon.run())
    await daemon.wait_started()
    try:
        path.write_text(
            daemon_section.replace("127.0.0.1:0", "127.0.0.1:1")
            + 'allow_no_probes = true\n[recommend]\nwindow = "10m"\n'
        )
        with structlog.testing.capture_logs() as logs:
            ok, _ = await daemon.reload()
        events = [(e["event"], e.get("key")) for e in logs if e["event"].endswith("_needs_restart")]
        assert ok
        assert [
            ("config_daemon_change_needs_restart", "listen"),
            ("config_recommend_window_change_needs_restart", None),
        ] == events
        assert 300.0 == daemon.store.signal_window
        assert "127.0.0.1:0" == daemon.config.daemon.listen
    finally:
        daemon.request_stop()
        assert 0 == await task


async def test_every_daemon_key_applies_on_reload_or_is_named(tmp_path: Path) -> None:
    """Log settings and max_concurrency apply; the other [daemon] keys keep their running value."""
    import structlog

    from probed.config import DaemonConfig

    path = tmp_path / "probes.toml"
    base = f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n'
    path.write_text(base + "allow_no_probes = true\n")
    applied: list[DaemonConfig] = []
    daemon = Daemon(load_config(path), install_signal_handlers=False, configure_logs=applied.append)
    task = asyncio.create_task(daemon.run())
    await daemon.wait_started()
    try:
        path.write_text(
            base.replace(f"{tmp_path}/state", f"{tmp_path}/other")
            + 'location = "elsewhere"\nenv = "staging"\nlog_level = "debug"\n'
            'log_format = "console"\nmax_concurrency = 3\nresults_ring_size = 7\n'
            'allow_no_probes = true\nhttp_max_connections = 9\nhttp_header_timeout = "2s"\n'
            'http_idle_timeout = "7s"\n'
        )
        with structlog.testing.capture_logs() as logs:
            ok, _ = await daemon.reload()
        assert ok
        restart = [e["key"] for e in logs if e["event"] == "config_daemon_change_needs_restart"]
        assert ["state_dir", "location", "results_ring_size"] == restart
        running = daemon.config.daemon
        assert (tmp_path / "state", "default", 120) == (
            running.state_dir,
            running.location,
            running.results_ring_size,
        )
        assert [("debug", "console", "staging")] == [
            (d.log_level, d.log_format, d.env) for d in applied
        ]
        assert (3, 3) == (running.max_concurrency, daemon.info.max_concurrency)
        assert daemon.guard is not None
        assert (9, 2.0, 7.0) == (
            daemon.guard.max_connections,
            daemon.guard.header_timeout,
            daemon.guard.idle_timeout,
        )
        applied_keys = {"env", "log_level", "log_format", "max_concurrency", "allow_no_probes"}
        applied_keys |= {"http_max_connections", "http_header_timeout", "http_idle_timeout"}
        assert {"web_config_file", *RESTART_KEYS} | applied_keys == set(DaemonConfig.model_fields)
    finally:
        daemon.request_stop()
        assert 0 == await task


async def test_a_port_in_use_exits_1_with_the_reason(tmp_path: Path) -> None:
    """listen_failed names the address and the error; the daemon releases what it opened."""
    import socket

    import structlog

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "probes.toml"
        path.write_text(
            f'[daemon]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path}/state"\n'
            "allow_no_probes = true\n"
        )
        daemon = Daemon(load_config(path), install_signal_handlers=False)
        with structlog.testing.capture_logs() as logs:
            assert 1 == await daemon.run()
    [failed] = [e for e in logs if e["event"] == "listen_failed"]
    assert f"127.0.0.1:{port}" == failed["listen"]
    assert "address already in use" in failed["error_message"].lower()
