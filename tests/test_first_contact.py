"""A newcomer's first half hour: the shipped config loads from the repository root, read-only
commands need no secrets, and every bad input is one clear line with the documented exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import free_port
from test_process import notified

ROOT = Path(__file__).parent.parent
DEMO_CONFIG = ROOT / "probed" / "demo" / "probes.toml"
UNIT = ROOT / "systemd" / "probed.service"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any PROBED_* variable (a newcomer sets none), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBED_")}
    env.update(extra)
    return env


def probed(*args: str, cwd: Path = ROOT, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m probed ARGS`` as a newcomer would (no PROBED_* set)."""
    return subprocess.run(
        [sys.executable, "-m", "probed", *args],
        cwd=cwd,
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shipped_config_is_a_real_file() -> None:
    """probes.toml at the root is a file an operator can copy, not a link into the package."""
    path = ROOT / "probes.toml"
    assert path.is_file()
    assert not path.is_symlink()


def test_check_accepts_the_shipped_config_from_the_root() -> None:
    """`probed check` with the documented default path and nothing set by hand."""
    result = probed("check")
    assert (0, "") == (result.returncode, result.stderr)
    assert result.stdout.startswith("probes.toml: OK (")


def test_rules_renders_the_shipped_config_from_the_root() -> None:
    """`probed rules` needs nothing set by hand either."""
    result = probed("rules")
    assert (0, "") == (result.returncode, result.stderr)
    assert "groups:" in result.stdout


def test_rules_never_needs_the_probes_secrets() -> None:
    """Rules can be generated in CI: the demo config's password variable is not set."""
    result = probed("rules", "-c", str(DEMO_CONFIG))
    assert (0, "") == (result.returncode, result.stderr)
    assert "probed-slo-login_availability" in result.stdout


def test_status_with_a_config_never_needs_the_probes_secrets(tmp_path: Path) -> None:
    """`status -c` reads the listen address only: no daemon there is rc 1, not a secret error."""
    port = free_port()
    config = tmp_path / "probes.toml"
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    config.write_text(text.replace('listen = "127.0.0.1:10115"', f'listen = "127.0.0.1:{port}"'))
    (tmp_path / "fixtures").symlink_to(DEMO_CONFIG.parent / "fixtures")
    for command in ("status", "healthcheck"):
        result = probed(command, "-c", str(config))
        assert 1 == result.returncode, (command, result.stderr)
        assert "secret" not in result.stderr
        assert "PROBED_DEMO_PASSWORD" not in result.stderr


def test_check_names_the_missing_secret() -> None:
    """`check` validates secrets: the missing one is named, exit code 2."""
    result = probed("check", "-c", str(DEMO_CONFIG))
    assert 2 == result.returncode
    assert "environment variable PROBED_DEMO_PASSWORD is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_paths_resolve_relative_to_the_real_file(tmp_path: Path) -> None:
    """A config reached through a symlink reads its fixture beside the file, not the link."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "fixtures").symlink_to(DEMO_CONFIG.parent / "fixtures")
    (real / "probes.toml").write_text(DEMO_CONFIG.read_text(encoding="utf-8"))
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "probes.toml").symlink_to(real / "probes.toml")
    result = probed("check", "-c", "probes.toml", cwd=elsewhere, PROBED_DEMO_PASSWORD="pw")
    assert (0, "") == (result.returncode, result.stderr)


def test_the_unit_never_restart_loops_on_a_bad_config() -> None:
    """Exit code 2 (bad config) is not worth a restart."""
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    assert "RestartPreventExitStatus=2" in lines


async def test_run_starts_on_the_shipped_config_from_the_root(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """`probed run` with no -c: ready, then a clean stop (listen and state kept out of the way)."""
    env = clean_env(
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        PROBED_DAEMON__LISTEN="127.0.0.1:0",
        PROBED_DAEMON__STATE_DIR=str(tmp_path / "state"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "--shutdown-grace", "1",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await notified(notify_socket, "READY=1", within=15)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert 0 == proc.returncode, err.decode()


async def test_demo_moves_its_ports_and_prints_the_status_page(tmp_path: Path) -> None:
    """`probed demo --listen --target-listen`: both ports move; the banner names the page."""
    listen, target = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "demo", "--listen", listen, "--target-listen", target,
        cwd=tmp_path, env=clean_env(PROBED_DAEMON__STATE_DIR=str(tmp_path / "state")),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    banner: list[str] = []
    try:
        async with asyncio.timeout(20):
            while len(banner) < 3:
                banner.append((await proc.stderr.readline()).decode().rstrip())
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    text = "\n".join(banner)
    assert f"demo target on http://{target}" in text
    assert f"status page at http://{listen}/" in text
    assert f"metrics at http://{listen}/metrics" in text


def test_demo_on_a_busy_port_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    """The demo target's port already taken: no traceback, a line naming the option."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = probed(
            "demo", "--target-listen", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{free_port()}",
            cwd=tmp_path,
        )  # fmt: skip
    assert 1 == result.returncode
    assert "Traceback" not in result.stderr
    assert [
        f"probed demo: cannot listen on 127.0.0.1:{port} for the demo target: address already "
        "in use; choose another with --target-listen HOST:PORT"
    ] == result.stderr.strip().splitlines()


def test_demo_with_the_daemons_port_busy_names_the_option(tmp_path: Path) -> None:
    """The daemon's port taken: exit code 1 and a line pointing at --listen, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = probed(
            "demo", "--listen", f"127.0.0.1:{port}", "--target-listen", f"127.0.0.1:{free_port()}",
            cwd=tmp_path, PROBED_DAEMON__STATE_DIR=str(tmp_path / "state"),
        )  # fmt: skip
    assert 1 == result.returncode
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"probed demo: the daemon cannot listen on 127.0.0.1:{port} (see the listen_failed line "
        "above); choose another with --listen HOST:PORT"
    )


@pytest.mark.parametrize("url", ["127.0.0.1:10240", "ftp://127.0.0.1:10240", "http://"])
def test_a_url_without_http_scheme_is_refused_in_one_line(url: str) -> None:
    """--url wants http(s)://HOST:PORT: said before anything is dialled, exit code 2."""
    result = probed("status", "--url", url)
    assert 2 == result.returncode
    assert [
        f"probed status: --url {url!r} is not an http(s) URL; write it as http://HOST:PORT "
        "(or https://)"
    ] == result.stderr.strip().splitlines()


def test_once_on_a_stream_says_what_it_is() -> None:
    """A configured SSE watcher is not 'unknown': once runs scheduled probes only."""
    result = probed("once", "-c", str(DEMO_CONFIG), "-p", "events", PROBED_DEMO_PASSWORD="pw")
    assert 2 == result.returncode
    assert [
        f"{DEMO_CONFIG}: 'events' is a stream watcher (kind = \"sse\"), which runs for as long as "
        "the daemon does; `once` runs the scheduled probes only (watch a stream with "
        "`probed run` and `probed status`)"
    ] == result.stderr.strip().splitlines()


def test_a_bug_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever goes wrong inside a command, the user reads one line and gets exit code 1."""
    from probed import cli

    def broken(args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_cmd_check", broken)
    monkeypatch.delenv("PROBED_TRACEBACK", raising=False)
    assert 1 == cli.main(["check"])
    assert [
        "probed check: unexpected error (RuntimeError: boom); this is a bug in probed, please "
        "report it (PROBED_TRACEBACK=1 shows the traceback)"
    ] == capsys.readouterr().err.strip().splitlines()


# -- every broken config, through the command a newcomer types ------------------------------


def _bad_cases() -> list[str]:
    from test_config import BAD_CASES

    return sorted(BAD_CASES)


@pytest.mark.parametrize("name", _bad_cases())
def test_check_reports_each_broken_config_in_one_line(name: str) -> None:
    """`probed check` on each broken fixture: exit code 2, exactly the one expected line."""
    from test_config import BAD, BAD_CASES

    path = BAD / f"{name}.toml"
    result = probed("check", "-c", str(path), HOME="/root")
    expected = f"{path}:" + BAD_CASES[name].replace("{dir}", str(BAD))
    assert (2, "") == (result.returncode, result.stdout)
    assert [expected] == result.stderr.splitlines()


def _special_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Config paths a file cannot be read from, and the message each gets."""
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x00\x01\x02\xff\xfe")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[daemon]\nenv = "caf\xe9"\n'.encode("latin-1"))
    empty = tmp_path / "empty.toml"
    empty.write_bytes(b"")
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    missing = tmp_path / "missing.toml"
    return {
        "binary": (binary, f"{binary}:1: not valid UTF-8 (byte 0xff); save the file as UTF-8"),
        "latin1": (latin1, f"{latin1}:2: not valid UTF-8 (byte 0xe9); save the file as UTF-8"),
        "empty": (
            empty,
            f"{empty}: no probes configured (an empty or cut-short file?); set "
            "allow_no_probes = true under [daemon] if that is intended",
        ),
        "directory": (directory, f"{directory}: cannot read config file: not a regular file"),
        "fifo": (fifo, f"{fifo}: cannot read config file: not a regular file"),
        "missing": (missing, f"{missing}: cannot read config file: No such file or directory"),
    }


@pytest.mark.parametrize("case", ["binary", "latin1", "empty", "directory", "fifo", "missing"])
@pytest.mark.parametrize("command", ["check", "run", "rules"])
def test_unreadable_config_paths_are_one_line(tmp_path: Path, case: str, command: str) -> None:
    """Non-UTF-8, binary, empty, a directory, a FIFO, nothing: rc 2, one line, never a hang."""
    path, message = _special_paths(tmp_path)[case]
    result = probed(command, "-c", str(path))
    assert 2 == result.returncode
    assert [message] == result.stderr.splitlines()


# -- README command 1 in a fresh venv from a clean clone ---------------------------------------


def readme_setup_commands() -> list[str]:
    """The two set-up commands at the top of the README (comments stripped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_starts_with_exactly_two_setup_commands() -> None:
    assert [
        "pip install -e '.[dev]' && probed demo",
        "python -m pytest",
    ] == readme_setup_commands()


@pytest.mark.process
async def test_readme_command_one_brings_the_demo_up_green(tmp_path: Path) -> None:
    """A clean clone, a fresh venv, README command 1: banner with the page, every probe green.

    The venv sees the machine's packages (no download of the dependencies) and the ports
    are moved off the defaults, which a test must not take.
    """
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    for argv in (
        ["git", "clone", "-q", str(ROOT), str(clone)],
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
    ):
        await asyncio.to_thread(subprocess.run, argv, check=True, timeout=120)
    expected = {p["name"] for p in tomllib.loads(DEMO_CONFIG.read_text())["probes"]}
    listen, target = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    command = readme_setup_commands()[0] + f" --listen {listen} --target-listen {target}"
    env = clean_env(
        PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
        VIRTUAL_ENV=str(venv),
        PROBED_DAEMON__STATE_DIR=str(tmp_path / "state"),
    )
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", f"exec 2>&1; {command}", cwd=clone, env=env, start_new_session=True,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    green: dict[str, float] = {}
    try:
        async with asyncio.timeout(180):
            while f"status page at http://{listen}/" not in "\n".join(seen):
                line = await proc.stdout.readline()
                assert line, "\n".join(seen[-20:])
                seen.append(line.decode(errors="replace").rstrip())
            drain = asyncio.create_task(_drain(proc.stdout))
            while set(green) != expected or min(green.values()) < 1:
                await asyncio.sleep(1)
                green = await _probe_success(f"http://{listen}/metrics")
            drain.cancel()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    assert expected == set(green)
    assert all(value == 1 for value in green.values()), green


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _probe_success(url: str) -> dict[str, float]:
    """probe_success by probe from a scrape ({} while the daemon does not answer)."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("probe_success{"):
            probe = line.split('probe="', 1)[1].split('"', 1)[0]
            values[probe] = float(line.rsplit(" ", 1)[1])
    return values
