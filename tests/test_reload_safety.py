"""Hostile config files on reload: the running config stays, the loop stays free, probes go on.

Each case swaps the daemon's config file for something a careless edit, a full
disk or a mistyped path can produce, then reloads. The reload must fail with a
one-line reason (also in the gauge and the status document), the old probes
must keep running and keep their series, and ``/metrics`` must answer within
100 ms meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import ServeApp
from livedaemon import app_of, health, live_daemon, sample, watch_metrics

MAX_BYTES = 4 << 20


def config_text(tmp_path: Path, url: str, extra_daemon: str = "") -> str:
    """One healthy 200 ms HTTP probe against ``url``."""
    return f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"
{extra_daemon}

[targets.good]
base_url = "{url}"

[[probes]]
name = "healthy"
kind = "http"
target = "good"
path = "/health"
interval = "200ms"
timeout = "150ms"
"""


def digest(data: bytes) -> str:
    """The config hash probed shows: the first 12 hex digits of the bytes' sha256."""
    return hashlib.sha256(data).hexdigest()[:12]


def readable_digest(path: Path) -> str | None:
    """The hash of the file at ``path`` if probed can read it as a config file, else None."""
    if not path.is_file() or path.stat().st_size > MAX_BYTES:
        return None
    return digest(path.read_bytes())


def iso(at: float) -> str:
    """A Unix time as the status page and ``probed status`` print it."""
    return datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def status_config(base: str) -> dict[str, Any]:
    """The ``config`` object of the daemon's ``/api/v1/status``."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
        config: dict[str, Any] = (await resp.json())["config"]
    return config


async def healthy_setup(tmp_path: Path, serve_app: ServeApp) -> tuple[str, Path]:
    """A healthy target on loopback and a config probing it; their URL and the config path."""
    url = await serve_app(app_of(("/health", health)))
    path = tmp_path / "probes.toml"
    path.write_text(config_text(tmp_path, url))
    return url, path


def swap_symlink(path: Path, to: str) -> None:
    """Make ``path`` a symlink to ``to``."""
    path.unlink()
    path.symlink_to(to)


def dev_zero(path: Path) -> None:
    """The config path points at /dev/zero (endless bytes)."""
    swap_symlink(path, "/dev/zero")


def fifo(path: Path) -> None:
    """The config path is a FIFO nobody writes to."""
    path.unlink()
    os.mkfifo(path)


def deep_nesting(path: Path) -> None:
    """5,000 nested arrays."""
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")


def too_large(path: Path) -> None:
    """A file over the size cap (a valid TOML comment padding a valid config)."""
    text = path.read_text()
    path.write_text(text + "#" * MAX_BYTES + "\n")


def empty(path: Path) -> None:
    """An empty file (a truncated write)."""
    path.write_text("")


def truncated(path: Path) -> None:
    """Only the first table survived."""
    text = path.read_text()
    path.write_text(text[: text.index("[targets.good]")])


def not_utf8(path: Path) -> None:
    """A Latin-1 byte on line 3."""
    path.write_bytes(path.read_bytes().replace(b"[daemon]", b"[daemon]\n# caf\xe9", 1))


def missing(path: Path) -> None:
    """The file was removed."""
    path.unlink()


def directory(path: Path) -> None:
    """The path is a directory."""
    path.unlink()
    path.mkdir()


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "dev_zero": (dev_zero, "not a regular file"),
    "fifo": (fifo, "not a regular file"),
    "directory": (directory, "not a regular file"),
    "deep_nesting": (deep_nesting, "nested too deeply"),
    "too_large": (too_large, "larger than 4 MiB"),
    "empty": (empty, "no probes configured"),
    "truncated": (truncated, "no probes configured"),
    "not_utf8": (not_utf8, ":3: not valid UTF-8"),
    "missing": (missing, "cannot read config file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_hostile_file_on_reload_keeps_the_running_config(
    case: str, tmp_path: Path, serve_app: ServeApp
) -> None:
    """The reload fails with the reason; the old probe keeps running and keeps its series."""
    damage, reason = CASES[case]
    _, path = await healthy_setup(tmp_path, serve_app)
    running = digest(path.read_bytes())
    async with live_daemon(path) as (daemon, task, base):
        damage(path)
        on_disk = readable_digest(path)
        reload = asyncio.create_task(daemon.reload())
        text, slowest = await watch_metrics(base, task, 0.5, lambda _: reload.done())
        ok, message = await reload
        assert (False, True) == (ok, reason in message), message
        assert "\n" not in message
        assert 0.0 == sample(text, "probed_config_last_reload_successful")
        assert 1.0 == sample(text, "probed_config_info", hash=running)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            doc = await resp.json()
        assert {"last_reload_successful": False, "last_reload_error": message} == {
            k: doc["config"][k] for k in ("last_reload_successful", "last_reload_error")
        }
        assert (running, on_disk, [message], 0) == (
            doc["config"]["hash"], doc["config"]["file_hash"],
            doc["config"]["problems"], doc["config"]["more_problems"],
        )  # fmt: skip
        before = sample(text, "probed_probe_runs_total", probe="healthy", result="success")

        def ran_again(text: str) -> bool:
            runs = sample(text, "probed_probe_runs_total", probe="healthy", result="success")
            return runs > before

        # until the 200 ms probe has run again (watch_metrics fails the test after 10 s)
        text, _ = await watch_metrics(base, task, 0.0, ran_again)
        after = sample(text, "probed_probe_runs_total", probe="healthy", result="success")
        assert 1.0 == sample(text, "probe_success", probe="healthy")
    assert after > before
    assert slowest < 0.1, f"slowest scrape {slowest * 1000:.0f} ms"


async def test_status_names_the_running_config_and_follows_a_good_reload(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """The status names the loaded file's path, hash and load time; a good reload moves them."""
    url, path = await healthy_setup(tmp_path, serve_app)
    started = digest(path.read_bytes())
    async with live_daemon(path) as (daemon, _, base):
        first = await status_config(base)
        path.write_text(config_text(tmp_path, url) + "# edited\n")
        assert (True, "added 0, changed 0, removed 0") == await daemon.reload()
        second = await status_config(base)
    assert (str(path), started, True) == (
        first["path"],
        first["hash"],
        first["last_reload_successful"],
    )
    assert digest(path.read_bytes()) == second["hash"]
    assert started != second["hash"]
    assert second["loaded_at"] > first["loaded_at"]
    assert {"problems", "file_hash", "failed_at"}.isdisjoint(first.keys() | second.keys())


def many_problems(tmp_path: Path, url: str) -> str:
    """A config whose five probes name five unknown targets (five problems)."""
    probes = "".join(
        f'[[probes]]\nname = "p{i}"\nkind = "http"\ntarget = "nope{i}"\npath = "/"\n\n'
        for i in range(5)
    )
    text = config_text(tmp_path, url)
    return text[: text.index("[[probes]]")] + probes


async def test_a_failed_reload_shows_the_running_and_the_failing_file(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """After a bad reload the status keeps the running hash, names the file's and its first
    problems, and the page warns; the next good reload clears the warning."""
    url, path = await healthy_setup(tmp_path, serve_app)
    running = digest(path.read_bytes())
    async with live_daemon(path) as (daemon, _, base):
        path.write_text(many_problems(tmp_path, url))
        ok, message = await daemon.reload()
        failed = await status_config(base)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/") as resp:
            page = await resp.text()
        path.write_text(config_text(tmp_path, url))
        assert (True, "added 0, changed 0, removed 0") == await daemon.reload()
        recovered = await status_config(base)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/") as resp:
            page_after = await resp.text()
    problems = message.split("\n")
    assert (False, 5) == (ok, len(problems))
    assert (running, digest(many_problems(tmp_path, url).encode())) == (
        failed["hash"],
        failed["file_hash"],
    )
    assert (problems[:3], 2) == (failed["problems"], failed["more_problems"])
    assert failed["failed_at"] >= failed["loaded_at"]
    warning = (
        f"config reload failed at {iso(failed['failed_at'])}: "
        f"{html.escape(problems[0])} (and 4 more problems); running config {running} "
        f"from {iso(failed['loaded_at'])}, file on disk {failed['file_hash']}"
    )
    assert warning in page
    assert (True, running) == (recovered["last_reload_successful"], recovered["hash"])
    assert "problems" not in recovered
    assert 'id="config" data-ok="false"' in page
    assert (
        f'id="config" data-ok="true">config {running} from {html.escape(str(path))}' in page_after
    )


async def test_reloads_are_listed_in_the_status_history(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """A failed then a good reload appear in ``/api/v1/status``'s history, newest first."""
    url, path = await healthy_setup(tmp_path, serve_app)
    async with live_daemon(path) as (daemon, _, base):
        path.write_text(many_problems(tmp_path, url))
        _, message = await daemon.reload()
        path.write_text(config_text(tmp_path, url))
        await daemon.reload()
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            history = (await resp.json())["history"]
    reloads = [(h["new"], h["detail"]) for h in history if h["kind"] == "reload"]
    first = message.split("\n")[0]
    assert [
        ("ok", "added 0, changed 0, removed 0"),
        ("failed", f"{first} (and 4 more)"),
    ] == reloads
    assert {"config"} == {h["name"] for h in history if h["kind"] == "reload"}


async def test_removing_every_probe_needs_the_flag(tmp_path: Path, serve_app: ServeApp) -> None:
    """With allow_no_probes = true an empty probe list is applied; the series go away."""
    url, path = await healthy_setup(tmp_path, serve_app)
    async with live_daemon(path) as (daemon, task, base):
        text = config_text(tmp_path, url, "allow_no_probes = true")
        path.write_text(text[: text.index("[[probes]]")])
        ok, message = await daemon.reload()
        assert (True, "added 0, changed 0, removed 1") == (ok, message)
        text, _ = await watch_metrics(base, task, 0.1, lambda _: True)
        assert "probe_success{" not in text


async def test_a_large_valid_config_is_parsed_off_the_loop(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """Reading and parsing a 3 MiB config does not stall scrapes beyond 100 ms."""
    url, path = await healthy_setup(tmp_path, serve_app)
    async with live_daemon(path) as (daemon, task, base):
        filler = "".join(f'k{i} = "{"v" * 40}"\n' for i in range(70_000))
        path.write_text(config_text(tmp_path, url) + "\n[filler]\n" + filler)
        assert path.stat().st_size > 3 << 20
        reload = asyncio.create_task(daemon.reload())
        _, slowest = await watch_metrics(base, task, 0.2, lambda _: reload.done())
        ok, message = await reload
    assert (False, True) == (ok, "key 'filler'" in message), message
    assert slowest < 0.1, f"slowest scrape {slowest * 1000:.0f} ms"


async def test_sighup_during_start_up_is_queued_not_fatal(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """A SIGHUP while probed still loads neither kills it nor is lost: it reloads once ready.

    The signal is sent as soon as the process catches SIGHUP at all (its first
    statement), long before the daemon is ready; the interpreter's own start before
    that is the one moment no Python program can cover.
    """
    _, path = await healthy_setup(tmp_path, serve_app)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path), "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(5):
        while not catches_sighup(proc.pid):
            await asyncio.sleep(0.001)
    proc.send_signal(signal.SIGHUP)
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(10):
            while b'"config_reloaded"' not in b"".join(lines):
                line = await proc.stdout.readline()
                assert line, f"probed exited: rc {await proc.wait()}"
                lines.append(line)
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await proc.wait()
    assert 0 == rc
    assert time.monotonic() - started < 5
    assert any(b'"signal_queued_during_start_up"' in line for line in lines)


def catches_sighup(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGHUP (bit 0 of SigCgt in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def test_other_commands_keep_the_default_sighup() -> None:
    """Outside the daemon a held SIGHUP is re-delivered on release: the command ends as usual."""
    code = (
        "import os, signal, time\n"
        "from probed import startsignals\n"
        "startsignals.hold()\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "assert [signal.SIGHUP] == startsignals.take()\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "startsignals.release()\n"
        "time.sleep(5)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=10, check=False)
    assert -signal.SIGHUP == proc.returncode
