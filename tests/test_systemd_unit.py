"""systemd/probed.service: what it declares, `systemd-analyze verify`, the security score,
and that the daemon runs under the memory and socket restrictions the unit imposes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import platform
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from binaries import systemd_analyze
from conftest import ServeApp

REPO = Path(__file__).parent.parent
UNIT = REPO / "systemd" / "probed.service"
MAX_EXPOSURE = 2.0


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [systemd_analyze(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → values in order (comments and blank lines skipped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_declares_notify_watchdog_reload_and_hardening() -> None:
    service = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    expected = {
        "Type": ["notify"],  # systemd 252: no notify-reload
        "NotifyAccess": ["main"],
        "WatchdogSec": ["30s"],
        "ExecStart": ["/usr/bin/env probed run --config /etc/probed/probes.toml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["on-failure"],
        "StateDirectory": ["probed"],
        "DynamicUser": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "CapabilityBoundingSet": [""],
        "MemoryDenyWriteExecute": ["yes"],
    }
    assert expected == {key: service.get(key) for key in expected}
    assert "TimeoutStopSec" in service
    # it hides /proc/stat and the process_* metrics would vanish
    assert "ProcSubset" not in service
    # secrets come through credentials; the example is there to copy
    assert re.search(r"^# LoadCredential=\S+:/\S+$", UNIT.read_text(), re.MULTILINE)


def verifiable_copy(directory: Path, extra: str = "") -> Path:
    """The shipped unit with the commented LoadCredential= example enabled (and ``extra``).

    Every other line is the shipped text, so the example's syntax is verified too.
    """
    text = UNIT.read_text(encoding="utf-8")
    text = re.sub(r"^# (LoadCredential=)", r"\1", text, flags=re.MULTILINE)
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    path = directory / "probed.service"
    path.write_text(text, encoding="utf-8")
    return path


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify systemd/probed.service` prints nothing, shipped or with secrets."""
    for path in (UNIT, verifiable_copy(tmp_path)):
        result = _analyze("verify", str(path))
        assert ("", "", 0) == (result.stdout, result.stderr, result.returncode), path


def test_systemd_analyze_verify_would_complain(tmp_path: Path) -> None:
    """The check has teeth: a misspelt key or a bad value is reported (exit code stays 0)."""
    path = verifiable_copy(tmp_path, extra="WatchdogSecs=30s\nProtectSystem=sometimes\n")
    output = _analyze("verify", str(path)).stderr
    assert "Unknown key 'WatchdogSecs'" in output
    assert "Failed to parse protect system value" in output


def test_security_exposure(capsys: pytest.CaptureFixture[str]) -> None:
    result = _analyze("security", "--offline=true", "--no-pager", str(UNIT))
    assert 0 == result.returncode, result.stderr
    match = re.search(
        r"Overall exposure level for probed\.service: (\d+\.\d+) (\S+)", result.stdout
    )
    assert match is not None, result.stdout
    exposure, verdict = float(match[1]), match[2]
    with capsys.disabled():
        print(
            f"\nsystemd-analyze security --offline=true systemd/probed.service: "
            f"overall exposure {exposure} {verdict}"
        )
    assert exposure <= MAX_EXPOSURE
    # the CI gate: --threshold takes the exposure x 10
    limit = int(MAX_EXPOSURE * 10)
    gate = _analyze("security", "--offline=true", f"--threshold={limit}", str(UNIT))
    assert 0 == gate.returncode
    too_strict = round(exposure * 10) - 1
    rejected = _analyze("security", "--offline=true", f"--threshold={too_strict}", str(UNIT))
    assert 0 != rejected.returncode


# --- MemoryDenyWriteExecute= and RestrictAddressFamilies= without systemd --------------------
#
# systemd 252 implements both with seccomp filters installed right before execve():
#   MemoryDenyWriteExecute=yes: mmap() with PROT_WRITE|PROT_EXEC, mprotect() and
#     pkey_mprotect() with PROT_EXEC, shmat() with SHM_EXEC fail with EPERM;
#   RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX: socket() of any other family fails
#     with EAFNOSUPPORT (no AF_NETLINK: glibc's getaddrinfo must cope).
# systemd is not PID 1 here, so the test installs the same filter itself (classic BPF,
# through prctl) in the child between fork and exec, and runs the real daemon under it.


@dataclass(frozen=True)
class _Arch:
    audit: int
    mmap: int
    mprotect: int
    pkey_mprotect: int
    shmat: int
    socket: int


_ARCHES = {
    "x86_64": _Arch(0xC000003E, mmap=9, mprotect=10, pkey_mprotect=329, shmat=30, socket=41),
    "aarch64": _Arch(0xC00000B7, mmap=222, mprotect=226, pkey_mprotect=288, shmat=196, socket=198),
}

_LD_ABS_W, _JEQ_K, _AND_K, _RET_K = 0x20, 0x15, 0x54, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_NR, _ARCH_OFFSET, _ARG0, _ARG2 = 0, 4, 16, 32  # struct seccomp_data (little endian)
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_SET_NO_NEW_PRIVS = 22, 2, 38

Insn = tuple[int, int, str | None, str | None]


def _assemble(program: list[Insn | str]) -> bytes:
    """Classic BPF with labels: a str is a label, jumps name labels (None = next)."""
    labels: dict[str, int] = {}
    index = 0
    for item in program:
        if isinstance(item, str):
            labels[item] = index
        else:
            index += 1
    out, index = [], 0
    for item in program:
        if isinstance(item, str):
            continue
        code, k, jt, jf = item
        offsets = [0 if j is None else labels[j] - index - 1 for j in (jt, jf)]
        assert all(0 <= o < 256 for o in offsets)
        out.append(struct.pack("=HBBI", code, offsets[0], offsets[1], k))
        index += 1
    return b"".join(out)


def seccomp_program(arch: _Arch) -> bytes:
    """The filter systemd 252 would install for the unit's two settings (native ABI)."""
    masked: list[Insn | str] = []
    for label, mask in (("mmap", _PROT_WRITE | _PROT_EXEC), ("mprotect", _PROT_EXEC)):
        masked += [
            label,
            (_LD_ABS_W, _ARG2, None, None),
            (_AND_K, mask, None, None),
            (_JEQ_K, mask, "eperm", "allow"),
        ]
    return _assemble(
        [
            (_LD_ABS_W, _ARCH_OFFSET, None, None),
            (_JEQ_K, arch.audit, None, "allow"),
            (_LD_ABS_W, _NR, None, None),
            (_JEQ_K, arch.mmap, "mmap", None),
            (_JEQ_K, arch.mprotect, "mprotect", None),
            (_JEQ_K, arch.pkey_mprotect, "mprotect", None),
            (_JEQ_K, arch.shmat, "shmat", None),
            (_JEQ_K, arch.socket, "socket", "allow"),
            *masked,
            "shmat",
            (_LD_ABS_W, _ARG2, None, None),
            (_AND_K, _SHM_EXEC, None, None),
            (_JEQ_K, _SHM_EXEC, "eperm", "allow"),
            "socket",
            (_LD_ABS_W, _ARG0, None, None),
            (_JEQ_K, socket.AF_UNIX, "allow", None),
            (_JEQ_K, socket.AF_INET, "allow", None),
            (_JEQ_K, socket.AF_INET6, "allow", None),
            (_RET_K, _RET_ERRNO | errno.EAFNOSUPPORT, None, None),
            "allow",
            (_RET_K, _RET_ALLOW, None, None),
            "eperm",
            (_RET_K, _RET_ERRNO | errno.EPERM, None, None),
        ]
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Confinement:
    """Installs the filter in a child process (``preexec_fn``): nothing allocated after fork."""

    def __init__(self, arch: _Arch) -> None:
        program = seccomp_program(arch)
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def __call__(self) -> None:
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0):
            raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


# Runs in the confined child: prove the filter is in place, then start the daemon.
_CHILD = """\
import ctypes, errno, mmap, socket, sys
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit("not confined: a writable+executable mapping was allowed")
page = mmap.mmap(-1, 4096)
libc = ctypes.CDLL(None, use_errno=True)
address = ctypes.addressof(ctypes.c_char.from_buffer(page))
if libc.mprotect(ctypes.c_void_p(address), 4096, mmap.PROT_READ | mmap.PROT_EXEC) == 0:
    sys.exit("not confined: mprotect(PROT_EXEC) was allowed")
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
except OSError as exc:
    if exc.errno != errno.EAFNOSUPPORT:
        raise
else:
    sys.exit("not confined: an AF_NETLINK socket was allowed")
print("confined: W+X mmap, mprotect(PROT_EXEC) and AF_NETLINK refused", file=sys.stderr)
from probed.cli import main
sys.exit(main(sys.argv[1:]))
"""


def confinement() -> Confinement:
    """The filter for this machine; skipped where seccomp or the architecture is unavailable."""
    arch = _ARCHES.get(platform.machine())
    if sys.platform != "linux" or arch is None:
        pytest.skip(f"no seccomp syscall table for {sys.platform}/{platform.machine()}")
    confine = Confinement(arch)
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=confine, check=True)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot install a seccomp filter here: {exc}")
    return confine


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


@pytest.fixture
async def target(serve_app: ServeApp) -> str:
    app = web.Application()
    app.router.add_get("/health", _health)
    url = await serve_app(app)
    # a name, so the probe resolves it through getaddrinfo (which may try netlink)
    return url.replace("127.0.0.1", "localhost")


async def _events(stream: asyncio.StreamReader) -> AsyncIterator[dict[str, object]]:
    while line := await stream.readline():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                yield record


@pytest.mark.process
async def test_daemon_runs_under_memory_deny_write_execute(target: str, tmp_path: Path) -> None:
    """CPython 3.11 has no JIT: the daemon starts, probes, serves and stops under the filter."""
    confine = confinement()
    config = tmp_path / "probes.toml"
    config.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[targets.app]\nbase_url = "{target}"\n\n'
        '[[probes]]\nname = "health"\nkind = "http"\ntarget = "app"\npath = "/health"\n'
        'interval = "1s"\ntimeout = "500ms"\n',
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, "run", "--config", str(config), "--shutdown-grace", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=confine, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        listen: object = None
        async with asyncio.timeout(15):
            async for record in _events(proc.stdout):
                if record.get("event") == "daemon_ready":
                    listen = record["listen"]
                elif record.get("event") == "probe_run" and listen is not None:
                    assert "success" == record["status"], record
                    break
            else:
                raise AssertionError("daemon exited: " + (await proc.stderr.read()).decode())
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as resp:
            text = await resp.text()
        assert 'probe_success{probe="health"' in text
        assert "process_cpu_seconds_total" in text  # /proc/self/stat readable
        proc.send_signal(signal.SIGTERM)
        stdout_rest = await proc.stdout.read()
        assert 0 == await asyncio.wait_for(proc.wait(), 10)
        stderr = (await proc.stderr.read()).decode()
        assert stderr.startswith("confined: W+X mmap, mprotect(PROT_EXEC) and AF_NETLINK refused")
        assert "Traceback" not in stderr
        assert b'"daemon_stopped"' in stdout_rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
