"""The flags a Prometheus exporter user types: --config.file, --web.listen-address,
--config.check, --log.level (warn), --log.format (logfmt)."""

from __future__ import annotations

import asyncio
import io
import shlex
import signal
import socket
import sys
from pathlib import Path

import structlog
from conftest import free_port
from test_first_contact import ROOT, clean_env, probed
from test_process import notified

from probed.logging import configure_logging


def test_config_file_is_an_alias_of_config() -> None:
    result = probed("check", "--config.file", "probes.toml")
    assert (0, "") == (result.returncode, result.stderr)
    assert result.stdout.startswith("probes.toml: OK")


def test_run_config_check_validates_and_exits(tmp_path: Path) -> None:
    """`run --config.check` is `check`: 0 for a good file, 2 with the problems for a bad one."""
    good = probed("run", "--config.check")
    assert (0, "") == (good.returncode, good.stderr)
    assert good.stdout.startswith("probes.toml: OK")
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nlisten = 1\n")
    result = probed("run", "--config.check", "--config.file", str(bad))
    assert 2 == result.returncode
    assert "key 'listen'" in result.stderr


def test_warn_is_a_log_level() -> None:
    for flag in ("--log.level", "--log-level"):
        result = probed("run", flag, "warn", "--config.check")
        assert (0, "") == (result.returncode, result.stderr), flag


def test_logfmt_renders_one_event_per_line() -> None:
    out = io.StringIO()
    configure_logging(level="info", fmt="logfmt", env="test", location="here", stream=out)
    structlog.get_logger("probed.test").info("probe_run", probe="login", detail="two words")
    [line] = out.getvalue().splitlines()
    fields = dict(part.split("=", 1) for part in shlex.split(line))
    assert "probe_run" == fields["event"]
    assert "login" == fields["probe"]
    assert "two words" == fields["detail"]
    assert "info" == fields["level"]
    assert line.startswith("ts=")


async def test_web_listen_address_moves_the_listener(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """`run --web.listen-address` serves there; the log is logfmt with --log.format logfmt."""
    port = free_port()
    env = clean_env(
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        PROBED_DAEMON__STATE_DIR=str(tmp_path / "state"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "--web.listen-address", f"127.0.0.1:{port}",
        "--log.format", "logfmt", "--shutdown-grace", "1",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await notified(notify_socket, "READY=1", within=15)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /-/healthy HTTP/1.0\r\n\r\n")
        status_line = await reader.readline()
        writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert 0 == proc.returncode, err.decode()
    assert status_line.startswith(b"HTTP/1.0 200") or status_line.startswith(b"HTTP/1.1 200")
    first = out.decode().splitlines()[0]
    assert first.startswith("ts=")
    assert " event=" in first
