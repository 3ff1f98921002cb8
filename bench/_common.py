"""What the benchmark scripts share: processes, /proc readers, small helpers.

Imported by the scripts in ``bench/`` (``http_probes.py``, ``streams.py``...) and
their parts (``soak_*.py``, ``streams_*.py``) as ``_common``: they run as
``python bench/NAME.py`` (and start themselves again the same way for their
servers and clients), so ``bench/`` is ``sys.path[0]``. mypy finds it the same
way: ``bench/`` has no ``__init__.py``, so it is the base directory of every
script in it. It is not a benchmark and does nothing when run.

Nothing here measures anything by itself; it starts, serves and stops
processes, reads ``/proc`` and formats, so that the scripts do it the
same way.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import json
import logging
import math
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
from aiohttp import web

LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAN = float("nan")

T = TypeVar("T")


class BenchError(Exception):
    """A benchmark, or a part of it, could not be run or measured."""


# --------------------------------------------------------------------------------------
# small helpers


def say(message: str = "") -> None:
    """Results and progress, flushed at once (the output is often piped to a file)."""
    print(message, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear between closest ranks; NaN if empty."""
    if not values:
        return NAN
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float | int]:
    """p50 / p99 / max / min in milliseconds and how many values were negative."""
    return {
        "n": len(values_s),
        "p50": percentile(values_s, 0.50) * 1000,
        "p99": percentile(values_s, 0.99) * 1000,
        "max": max(values_s) * 1000 if values_s else NAN,
        "min": min(values_s) * 1000 if values_s else NAN,
        "negative": sum(1 for v in values_s if v < 0),
    }


def num(value: object) -> float:
    """``value`` as a float (NaN if it is not a number): JSON results are untyped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NAN
    return float(value)


def fmt(value: object, digits: int = 2) -> str:
    """A number with ``digits`` decimals and thousands separators, or ``n/a``."""
    number = num(value)
    return "n/a" if math.isnan(number) else f"{number:,.{digits}f}"


def verdict(value: float, target: float) -> str:
    """MET when ``value <= target``; NOT MEASURED when there is no value."""
    if math.isnan(value):
        return "NOT MEASURED"
    return "MET" if value <= target else "NOT MET"


def positive(text: str) -> float:
    """An argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return value


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def progress(message: str) -> None:
    """Progress of a child process, on stderr so stdout stays the result line."""
    print(message, file=sys.stderr, flush=True)


async def wait_until(predicate: Callable[[], bool], within: float, poll: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``within`` seconds passed (False)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


def flags(**options: str | float | bool) -> list[str]:
    """Flags for a child process: ``port=5`` -> ``--port 5``, ``serve=True`` -> ``--serve``."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, float):
            argv += [flag, f"{value:.6g}"]
        else:
            argv += [flag, str(value)]
    return argv


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, indented, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------
# /proc readers


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (its own threads, not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(key: str = "VmRSS", pid: int | None = None) -> int:
    """A KiB field (``VmRSS``, ``VmHWM``) of process ``pid`` (None: this process)."""
    where = "self" if pid is None else str(pid)
    for line in Path(f"/proc/{where}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/self/status" if pid is None else f"no {key} for pid {pid}")


def rss_kib(pid: int) -> int:
    """VmRSS of process ``pid`` in KiB."""
    return status_kib("VmRSS", pid)


def fd_count(pid: int) -> int:
    """Open file descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_soft(pid: int) -> int | str:
    """The open-file soft limit of process ``pid`` as the kernel has it (``unlimited``: str)."""
    for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else soft
    raise BenchError(f"no open-file limit for pid {pid}")


def nofile_limit(pid: int) -> str:
    """The 'Max open files' soft/hard of process ``pid`` from ``/proc/PID/limits`` (``?``)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    return "?"


# --------------------------------------------------------------------------------------
# in each process: open-file limit, logs, serving until stopped


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file soft limit to the hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def quiet_structlog(counts: Counter[str]) -> None:
    """Count structlog events by level and name in ``counts`` and drop them (no printing)."""
    import structlog
    from structlog.typing import EventDict, WrappedLogger

    def count(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        counts[f"{method}:{event_dict.get('event')}"] += 1
        raise structlog.DropEvent

    structlog.configure(processors=[count], cache_logger_on_first_use=True)


class CountingHandler(logging.Handler):
    """Counts standard-library log records (aiohttp's) by logger, message and exception.

    The keys are ``logger: message (ExceptionType)``, prefixed with the level
    (``warning:``) when ``with_level``.
    """

    def __init__(self, counts: Counter[str] | None = None, *, with_level: bool = False) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._with_level = with_level

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        suffix = f" ({type(exc).__name__})" if exc is not None else ""
        level = f"{record.levelname.lower()}:" if self._with_level else ""
        self.counts[f"{level}{record.name}: {record.getMessage()}{suffix}"] += 1


def count_warnings(
    counts: Counter[str] | None = None, *, with_level: bool = False
) -> CountingHandler:
    """Count standard-library warnings and worse (aiohttp's) on the root logger, not print them.

    Returns the handler; its ``counts`` is ``counts`` when given.
    """
    handler = CountingHandler(counts, with_level=with_level)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return handler


async def wait_for_stop(lifetime: float) -> None:
    """Return on SIGTERM / SIGINT or after ``lifetime`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), lifetime)


async def serve_app(
    app: web.Application, lifetime: float, *, backlog: int, shutdown_timeout: float = 60.0
) -> None:
    """Serve ``app`` on 127.0.0.1, port 0, and print the port; stop as ``wait_for_stop``."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0, backlog=backlog)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    print(port, flush=True)
    await wait_for_stop(lifetime)
    await runner.cleanup()


def serve_health(lifetime: float) -> int:
    """A child's main: ``GET /health`` answers 200 ``ok`` on 127.0.0.1, port 0 (printed)."""

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/health", health)
    asyncio.run(serve_app(app, lifetime, backlog=128))
    return 0


def write_web_config(directory: Path, user: str, password: str, cost: int) -> tuple[Path, Path]:
    """An exporter-toolkit web config: TLS for 127.0.0.1 and ``user`` at bcrypt ``cost``.

    Writes a throw-away CA (``trustme``), the server's certificate and key, and
    ``web-config.yml`` in ``directory``; returns (web config, CA file).
    """
    import bcrypt
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    web_config = directory / "web-config.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {directory / 'server.crt'}\n"
        f"  key_file: {directory / 'server.key'}\nbasic_auth_users:\n  {user}: {hashed}\n",
        encoding="utf-8",
    )
    return web_config, directory / "ca.pem"


# --------------------------------------------------------------------------------------
# the bench's child processes


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def die_with_parent_raise_nofile() -> None:
    """In the child before exec: SIGTERM if the bench dies; open-file soft limit = hard."""
    die_with_parent()
    raise_nofile()


def die_with_parent_nofile(soft: int) -> Callable[[], None]:
    """A ``preexec``: SIGTERM if the bench dies; open-file soft limit ``soft`` (``ulimit -n``)."""

    def preexec() -> None:
        die_with_parent()
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return preexec


def set_nofile(soft: int) -> int:
    """Set this process's open-file soft limit to ``soft`` (at most the hard limit); return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Processes:
    """Every subprocess the bench starts; all are stopped on exit, whatever happens.

    Each child runs ``preexec`` before exec (by default: SIGTERM when the bench
    dies) in a session of its own, so Ctrl-C reaches the bench only and it
    stops the rest. ``stop`` waits ``grace`` seconds after SIGTERM by default.
    """

    def __init__(
        self, *, preexec: Callable[[], None] = die_with_parent, grace: float = 10.0
    ) -> None:
        self._procs: list[asyncio.subprocess.Process] = []
        self._preexec = preexec
        self._grace = grace
        atexit.register(self._kill_remaining)

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        stdout: int | IO[bytes] = subprocess.PIPE,
        stderr: int | IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` with stdin from /dev/null; stderr None: the bench's own stderr.

        ``preexec`` replaces the instance's for this child (e.g. ``die_with_parent_nofile``).
        """
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches the bench only; it stops the rest
            preexec_fn=self._preexec if preexec is None else preexec,
        )
        self._procs.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, grace: float | None = None) -> int:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; return the exit code."""
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self._grace if grace is None else grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(proc.wait(), 5.0)
        if proc in self._procs:
            self._procs.remove(proc)
        assert proc.returncode is not None
        return proc.returncode

    async def stop_all(self) -> None:
        """Stop every process still running (5 s grace each)."""
        for proc in list(self._procs):
            with contextlib.suppress(Exception):
                await self.stop(proc, grace=5.0)

    def _kill_remaining(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


async def get_json_object(
    session: aiohttp.ClientSession, url: str, unexpected: str
) -> dict[str, Any]:
    """GET ``url``: its JSON object; BenchError ``unexpected`` and the answer if it is not one."""
    async with session.get(url) as resp:
        data: object = await resp.json()
    if not isinstance(data, dict):
        raise BenchError(f"{unexpected} {data!r:.200}")
    return data


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def timed_get(
    http: aiohttp.ClientSession,
    url: str,
    within: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    authorization: str | None = None,
) -> tuple[str, float]:
    """GET ``url`` and read the body: (status, or ``timeout`` / ``closed``; seconds taken)."""
    started = time.monotonic()
    headers = {"Authorization": authorization} if authorization else {}
    limit = aiohttp.ClientTimeout(total=within)
    try:
        async with http.get(url, ssl=ssl_context or True, headers=headers, timeout=limit) as resp:
            await resp.read()
            status = str(resp.status)
    except TimeoutError:
        status = "timeout"
    except (aiohttp.ClientError, OSError):
        status = "closed"
    return status, time.monotonic() - started


async def open_silent(port: int, first: bytes, within: float) -> socket.socket | None:
    """A TCP connection to 127.0.0.1:``port`` that sends ``first``, then nothing (None: failed).

    The socket is non-blocking and nothing reads it; ``closed_by_peer`` tells if
    the server has given up on it.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(within):
            await loop.sock_connect(sock, (LOOPBACK, port))
            if first:
                await loop.sock_sendall(sock, first)
    except (OSError, TimeoutError):
        sock.close()
        return None
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the peer closed or reset the non-blocking ``sock`` (reads what it sent)."""
    try:
        for _ in range(16):
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False


async def wait_http_ok(
    session: aiohttp.ClientSession,
    url: str,
    proc: asyncio.subprocess.Process,
    within: float,
    poll: float = 0.005,
    *,
    status: int = 200,
    ssl_context: ssl.SSLContext | None = None,
) -> float:
    """Poll ``url`` every ``poll`` s until it answers ``status``; return when (perf_counter).

    BenchError if ``proc`` exits first or ``url`` does not answer ``status``
    within ``within`` seconds; a failed or timed-out request is retried.
    ``status=401`` waits for a server behind basic auth without checking a password.
    """
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if proc.returncode is not None:
            raise BenchError(f"process exited with code {proc.returncode} before {url} was up")
        try:
            async with session.get(url, ssl=ssl_context or True) as resp:
                await resp.read()
                if resp.status == status:
                    return time.perf_counter()
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(poll)
    raise BenchError(f"{url} did not answer {status} within {within:g} s")


async def start_printing_port(
    procs: Processes, argv: Sequence[str], stderr_path: Path, within: float = 30.0
) -> tuple[asyncio.subprocess.Process, int]:
    """Start a child that prints the port it listens on as its first line; return both."""
    with stderr_path.open("wb") as err:
        proc = await procs.spawn(argv, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    try:
        return proc, int(await asyncio.wait_for(proc.stdout.readline(), within))
    except (TimeoutError, ValueError) as exc:
        raise BenchError(
            f"{argv[1:2]} did not print its port: {exc!r}\n{tail(stderr_path)}"
        ) from None


async def run_child_result(procs: Processes, argv: Sequence[str], within: float) -> dict[str, Any]:
    """Run a child to its end; return the JSON object of its ``RESULT {json}`` stdout line.

    BenchError if it does not finish within ``within`` seconds (it is then
    stopped), prints no such line, or its result is ``{"error": ...}``. Its
    stderr is the bench's own.
    """
    what = " ".join([Path(argv[1]).name, *argv[2:]] if len(argv) > 1 else argv)
    proc = await procs.spawn(argv)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        raise BenchError(f"{what} did not finish within {within:g} s") from None
    finally:
        await procs.stop(proc)
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            result: object = json.loads(line[len("RESULT ") :])
            if isinstance(result, dict):
                if "error" in result:
                    raise BenchError(str(result["error"]))
                return result
    raise BenchError(f"{what} exited ({proc.returncode}) without a result")


# --------------------------------------------------------------------------------------
# main


def cancel_on_sigterm() -> None:
    """In the bench's main task: SIGTERM cancels it (``run_bench`` then returns 143)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def run_bench(
    main: Coroutine[Any, Any, T],
    exit_code: Callable[[T], int],
    *,
    failed: str = "bench failed",
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> int:
    """Run ``main`` (on ``loop_factory``'s loop, asyncio's by default); its ``exit_code``, or
    130 on Ctrl-C, 143 on SIGTERM, 2 on BenchError."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(main)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; every process started was stopped", file=sys.stderr)
        return 143
    except BenchError as exc:
        print(f"{failed}: {exc}", file=sys.stderr)
        return 2
    return exit_code(result)


def http_probes_config(
    scratch: Path,
    name: str,
    *,
    listen_port: int,
    target_port: int,
    probes: int,
    interval_ms: int,
    path: str,
    timeout_ms: int,
) -> Path:
    """Write ``probed-NAME.toml`` in ``scratch``: ``probes`` http probes of ``path`` on
    127.0.0.1:``target_port``, each every ``interval_ms``, JSON logs at info, the state in
    ``state-NAME``; return its path."""
    state_dir = scratch / f"state-{name}"
    state_dir.mkdir(exist_ok=True)
    parts = [
        "[daemon]",
        f'listen = "{LOOPBACK}:{listen_port}"',
        'location = "bench"',
        'env = "bench"',
        f'state_dir = "{state_dir}"',
        'log_level = "info"',
        'log_format = "json"',
        "max_concurrency = 256",
        "",
        "[targets.bench]",
        f'base_url = "http://{LOOPBACK}:{target_port}"',
        "",
    ]
    for i in range(probes):
        parts += [
            "[[probes]]",
            f'name = "p{i:04d}"',
            'kind = "http"',
            'target = "bench"',
            f'path = "{path}"',
            f'interval = "{interval_ms}ms"',
            f'timeout = "{timeout_ms}ms"',
            "",
        ]
    config = scratch / f"probed-{name}.toml"
    config.write_text("\n".join(parts), encoding="utf-8")
    return config
