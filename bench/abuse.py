"""Benchmark: probed's own HTTP server under abuse, beside Debian's prometheus-blackbox-exporter.

Run from the repository root::

    python bench/abuse.py               # 5 fresh starts per server for the flood, then idle
    python bench/abuse.py --quick       # 1 start per server, a 5 s scrape window
    python bench/abuse.py --only idle   # parts: flood, idle (repeatable)

See bench/README.md for how each figure is measured and how to read it.

Both servers get the same exporter-toolkit web config, generated at start in a
temporary directory: TLS with a certificate for 127.0.0.1 from a throw-away CA
(``trustme``) and one basic-auth user whose bcrypt hash has cost 10. probed runs
as ``python -m probed run -c FILE`` with one http probe (every 1 s) of a tiny
loopback target (``abuse.py --serve-target``, its own process);
blackbox_exporter with a one-module ``blackbox.yml``. Each server is its own
process with an open-file soft limit of 1024 (``ulimit -n 1024``), started
fresh for every measurement, one server at a time. A server is up when it
answers a request without credentials (401), which checks no password.

1. Junk flood (``--rounds`` fresh starts each, rounds alternate the servers):
   ``abuse.py --flood`` in its own process sends ``--flood`` (1,000) concurrent
   HTTPS requests for ``/metrics`` from 127.0.0.2, each on a new connection, half
   for the real user with wrong passwords, half for unknown users (30 s timeout
   each). 0.5 s after it starts them, the bench sends one valid request for
   ``/metrics`` from 127.0.0.1 on a new connection (30 s timeout): its status
   and latency (TLS handshake included), p50 and max over the rounds; and how
   the flood's requests were answered (200, 401, 429, closed, timeout).
2. Idle connections (one start each): after one valid scrape (the credentials
   are now cached) and 1 s, ``--idle`` (2,000) TCP connections from the bench,
   half sending nothing, half the first 6 bytes of a TLS ClientHello. From the
   moment they are all open (or failed to open within 10 s), ``/metrics`` is
   scraped with the valid credentials every 100 ms for 10 s, each scrape on a
   new connection with a 5 s timeout (launched on time even if the previous is
   still running): latency p50/p99/max of the successful ones and the failures.
   The server's open fds (``/proc/PID/fd``) and ``VmRSS`` (``/proc/PID/status``)
   before the idle connections, the most seen while they are open (sampled at
   each scrape), and 2 s after the bench closed them; how many of them the
   server had closed (EOF or reset on a non-blocking read) 5 s and 15 s after
   they were all open. The bench raises its own open-file soft limit to 4096.

Only loopback addresses are used. Every loop is bounded in count and time, and
every process started here is stopped on exit, Ctrl-C or error. Exit codes: 0
when everything was measured, 1 when a part could not be (the reason is
printed; the rest still runs), 2 when it cannot start at all, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import bcrypt
import trustme
from _common import (
    LOOPBACK,
    BenchError,
    Processes,
    cancel_on_sigterm,
    die_with_parent_nofile,
    die_with_parent_raise_nofile,
    fd_count,
    free_port,
    percentile,
    raise_nofile,
    rss_kib,
    run_bench,
    say,
    serve_app,
    set_nofile,
    tail,
)
from aiohttp import web

SELF = Path(__file__).resolve()
REPO = SELF.parent.parent
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
USER, PASSWORD, COST = "prom", "scrape-password", 10
SERVER_NOFILE = 1024
BENCH_NOFILE = 4096
FLOOD_SOURCE = "127.0.0.2"
FLOOD_DELAY = 0.5
VALID_TIMEOUT = FLOOD_TIMEOUT = 30.0
HALF_HELLO = b"\x16\x03\x01\x02\x00\x01"
"""A TLS record header and the start of a ClientHello: the server waits for the rest."""
SCRAPE_EVERY, SCRAPE_TIMEOUT, CONNECT_TIMEOUT = 0.1, 5.0, 10.0
CLOSED_AFTER = (5.0, 15.0)
SERVERS = ("probed", "blackbox_exporter")
PARTS = ("flood", "idle")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def timed_get(
    http: aiohttp.ClientSession, url: str, ctx: ssl.SSLContext, auth: str | None, within: float
) -> tuple[str, float]:
    """GET ``url`` on a new connection: (status or ``timeout`` / ``closed``, seconds)."""
    started = time.monotonic()
    headers = {"Authorization": auth} if auth else {}
    try:
        limit = aiohttp.ClientTimeout(total=within)
        async with http.get(url, ssl=ctx, headers=headers, timeout=limit) as resp:
            await resp.read()
            status = str(resp.status)
    except TimeoutError:
        status = "timeout"
    except (aiohttp.ClientError, OSError):
        status = "closed"
    return status, time.monotonic() - started


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))


# --------------------------------------------------------------------------------------
# child processes: the probe target and the flood


def serve_target(lifetime: float) -> int:
    """``GET /health`` answers 200 ``ok`` on 127.0.0.1:0; print the port; stop on SIGTERM."""

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/health", health)
    asyncio.run(serve_app(app, lifetime, backlog=128))
    return 0


def flood(url: str, cafile: str, count: int) -> int:
    """``count`` concurrent junk requests from 127.0.0.2: print ``go``, then the answer counts."""

    async def main() -> None:
        raise_nofile()
        ctx = ssl.create_default_context(cafile=cafile)
        connector = aiohttp.TCPConnector(local_addr=(FLOOD_SOURCE, 0), force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def one(i: int) -> str:
                user, password = (USER, f"guess-{i}") if i % 2 else (f"nobody-{i}", "x")
                return (await timed_get(http, url, ctx, basic(user, password), FLOOD_TIMEOUT))[0]

            print("go", flush=True)
            answers = Counter(await asyncio.gather(*(one(i) for i in range(count))))
        print(json.dumps(answers), flush=True)

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# the two servers


@dataclass(frozen=True, slots=True)
class Setup:
    scratch: Path
    web_config: Path
    ca_file: Path
    ctx: ssl.SSLContext
    target_port: int


def make_setup(scratch: Path, target_port: int) -> Setup:
    """A CA, a server certificate for 127.0.0.1, a cost-10 bcrypt user, the web config."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(scratch / "server.crt"))
    cert.private_key_pem.write_to_path(str(scratch / "server.key"))
    ca.cert_pem.write_to_path(str(scratch / "ca.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=COST)).decode()
    web_config = scratch / "web-config.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {scratch / 'server.crt'}\n"
        f"  key_file: {scratch / 'server.key'}\nbasic_auth_users:\n  {USER}: {hashed}\n",
        encoding="utf-8",
    )
    (scratch / "blackbox.yml").write_text(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n", encoding="utf-8"
    )
    ctx = ssl.create_default_context(cafile=str(scratch / "ca.pem"))
    return Setup(scratch, web_config, scratch / "ca.pem", ctx, target_port)


class Server:
    """One run of one server with ``ulimit -n 1024``, started fresh by ``start``."""

    def __init__(self, name: str, procs: Processes, setup: Setup) -> None:
        self.name, self._procs, self.setup = name, procs, setup
        self.proc: asyncio.subprocess.Process | None = None
        self.port, self._runs = 0, 0
        self.log = setup.scratch / f"{name}.log"

    def url(self, path: str) -> str:
        return f"https://{LOOPBACK}:{self.port}{path}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _argv(self) -> list[str]:
        s = self.setup
        if self.name == "blackbox_exporter":
            return [
                BLACKBOX,
                f"--config.file={s.scratch / 'blackbox.yml'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                f"--web.config.file={s.web_config}",
            ]
        state = s.scratch / f"state-{self._runs}"
        config = s.scratch / "probed.toml"
        config.write_text(
            f'[daemon]\nlisten = "{LOOPBACK}:{self.port}"\nweb_config_file = "{s.web_config}"\n'
            f'state_dir = "{state}"\nlog_format = "json"\n\n'
            f'[targets.local]\nbase_url = "http://{LOOPBACK}:{s.target_port}"\n\n'
            '[[probes]]\nname = "local"\nkind = "http"\ntarget = "local"\npath = "/health"\n'
            'interval = "1s"\ntimeout = "900ms"\n',
            encoding="utf-8",
        )
        return [sys.executable, "-m", "probed", "run", "-c", str(config)]

    async def start(self, http: aiohttp.ClientSession) -> None:
        """Start on a free port; return once it answers 401 to a request without credentials."""
        self._runs += 1
        self.port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        with self.log.open("wb") as out:
            self.proc = await self._procs.spawn(
                self._argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                preexec=die_with_parent_nofile(SERVER_NOFILE),
            )
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode}\n{tail(self.log)}"
                )
            status, _ = await timed_get(http, self.url("/-/healthy"), self.setup.ctx, None, 2.0)
            if status == "401":
                return
            if status not in ("timeout", "closed"):
                raise BenchError(f"{self.name} answered {status} without credentials")
            await asyncio.sleep(0.02)
        raise BenchError(f"{self.name} did not answer within 30 s\n{tail(self.log)}")

    async def stop(self) -> None:
        if self.proc is not None:
            code = await self._procs.stop(self.proc)
            self.proc = None
            if code not in (0, -15):
                raise BenchError(f"{self.name} exited with code {code}\n{tail(self.log)}")


# --------------------------------------------------------------------------------------
# 1. junk flood


@dataclass(slots=True)
class Flood:
    statuses: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)


async def flood_round(
    server: Server, procs: Processes, http: aiohttp.ClientSession, count: int, result: Flood
) -> None:
    setup = server.setup
    await server.start(http)
    try:
        argv = [sys.executable, str(SELF), "--flood-client", server.url("/metrics")]
        argv += [str(setup.ca_file), str(count)]
        err = setup.scratch / "flood.stderr"
        with err.open("wb") as err_file:
            proc = await procs.spawn(argv, stderr=err_file, preexec=die_with_parent_raise_nofile)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
            if line.strip() != b"go":
                raise BenchError(f"the flood did not start: {line!r}\n{tail(err)}")
            await asyncio.sleep(FLOOD_DELAY)
            good = basic(USER, PASSWORD)
            status, seconds = await timed_get(
                http, server.url("/metrics"), setup.ctx, good, VALID_TIMEOUT
            )
            out = await asyncio.wait_for(proc.stdout.read(), FLOOD_TIMEOUT + 30.0)
        finally:
            await procs.stop(proc)
        try:
            answers: dict[str, int] = json.loads(out)
        except ValueError:
            raise BenchError(f"the flood printed no counts: {out!r:.200}\n{tail(err)}") from None
    finally:
        await server.stop()
    result.statuses.append(status)
    result.seconds.append(seconds)
    result.answers.update(answers)
    say(f"  {server.name}: valid /metrics {status} in {seconds:.3f} s; flood {dict(answers)}")


# --------------------------------------------------------------------------------------
# 2. idle connections


@dataclass(slots=True)
class Idle:
    opened: int = 0
    scrapes: list[str] = field(default_factory=list)
    ok_ms: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    """Before, most while open, after."""
    rss_mb: list[float] = field(default_factory=list)
    closed: list[tuple[int, int]] = field(default_factory=list)
    """(sent nothing, sent half a ClientHello) closed by the server, at each CLOSED_AFTER."""


async def open_idle(port: int, first: bytes) -> socket.socket | None:
    """A TCP connection that sends ``first`` and then nothing (None: it did not open)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await loop.sock_connect(sock, (LOOPBACK, port))
            if first:
                await loop.sock_sendall(sock, first)
    except (OSError, TimeoutError):
        sock.close()
        return None
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True if the server closed or reset the connection (never blocks)."""
    try:
        for _ in range(16):
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False


async def idle_run(
    server: Server, http: aiohttp.ClientSession, count: int, window: float, result: Idle
) -> None:
    await server.start(http)
    ctx, url, good = server.setup.ctx, server.url("/metrics"), basic(USER, PASSWORD)
    socks: list[tuple[socket.socket, bool]] = []
    peak = [0, 0]

    def sample() -> None:
        with contextlib.suppress(OSError, BenchError):
            peak[0], peak[1] = max(peak[0], fd_count(server.pid)), max(peak[1], rss_kib(server.pid))

    try:
        status, _ = await timed_get(http, url, ctx, good, VALID_TIMEOUT)
        if status != "200":
            raise BenchError(f"{server.name}: the first valid scrape answered {status}")
        await asyncio.sleep(1.0)
        result.fds.append(fd_count(server.pid))
        result.rss_mb.append(rss_kib(server.pid) * 1024 / 1e6)
        opened = await asyncio.gather(
            *(open_idle(server.port, HALF_HELLO if i % 2 else b"") for i in range(count))
        )
        socks = [(s, i % 2 == 1) for i, s in enumerate(opened) if s is not None]
        result.opened = len(socks)
        t0 = time.monotonic()
        scrapes: list[asyncio.Task[tuple[str, float]]] = []
        checks = list(CLOSED_AFTER)
        for tick in range(round(window / SCRAPE_EVERY)):
            await asyncio.sleep(max(0.0, t0 + tick * SCRAPE_EVERY - time.monotonic()))
            sample()
            if checks and time.monotonic() >= t0 + checks[0]:
                checks.pop(0)
                result.closed.append(count_closed(socks))
            scrapes.append(asyncio.create_task(timed_get(http, url, ctx, good, SCRAPE_TIMEOUT)))
        done = await asyncio.gather(*scrapes)
        for when in checks:
            await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
            sample()
            result.closed.append(count_closed(socks))
        result.scrapes = [s for s, _ in done]
        result.ok_ms = [t * 1000 for s, t in done if s == "200"]
        result.fds.append(peak[0])
        result.rss_mb.append(peak[1] * 1024 / 1e6)
        for sock, _ in socks:
            sock.close()
        socks = []
        await asyncio.sleep(2.0)
        result.fds.append(fd_count(server.pid))
        result.rss_mb.append(rss_kib(server.pid) * 1024 / 1e6)
    finally:
        for sock, _ in socks:
            sock.close()
        await server.stop()


def count_closed(socks: list[tuple[socket.socket, bool]]) -> tuple[int, int]:
    closed = [hello for sock, hello in socks if closed_by_server(sock)]
    return closed.count(False), closed.count(True)


# --------------------------------------------------------------------------------------
# report and main


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def rows(args: argparse.Namespace, floods: dict[str, Flood], idles: dict[str, Idle]) -> list[str]:
    table: dict[str, dict[str, str]] = {}
    for name, f in floods.items():
        got = Counter(f.statuses)
        table.setdefault("flood: valid /metrics answers", {})[name] = (
            " ".join(f"{k} x{v}" for k, v in sorted(got.items())) or "n/a"
        )
        for label, q in (("p50", 0.5), ("max", 1.0)):
            table.setdefault(f"flood: valid /metrics latency {label} (s)", {})[name] = fmt(
                percentile(f.seconds, q)
            )
        keys = sorted({"200", "401", "429", "closed"} | set(f.answers))
        for key in keys:
            table.setdefault(f"flood: junk answered {key} (all rounds)", {})[name] = str(
                f.answers[key] if f.seconds else "n/a"
            )
    for name, i in idles.items():
        sent = len(i.scrapes)
        put = table.setdefault
        put(f"idle: connections opened (of {args.idle})", {})[name] = str(i.opened)
        put("idle: scrapes 200 / sent", {})[name] = f"{len(i.ok_ms)} / {sent}"
        put("idle: scrape latency p50/p99/max (ms)", {})[name] = "/".join(
            fmt(percentile(i.ok_ms, q), 1) for q in (0.5, 0.99, 1.0)
        )
        put("idle: server fds before/during/after", {})[name] = "/".join(map(str, i.fds)) or "n/a"
        put("idle: server RSS MB before/during/after", {})[name] = (
            "/".join(fmt(v, 1) for v in i.rss_mb) or "n/a"
        )
        for when, (nothing, hello) in zip(CLOSED_AFTER, i.closed, strict=False):
            put(f"idle: closed by server after {when:g} s (silent+hello)", {})[name] = (
                f"{nothing + hello} ({nothing}+{hello})"
            )
    width = max((len(k) for k in table), default=10) + 2
    lines = [f"{'figure':{width}}{'probed':>22}{'blackbox_exporter':>22}"]
    for label, values in table.items():
        lines.append(f"{label:{width}}" + "".join(f"{values.get(s, 'n/a'):>22}" for s in SERVERS))
    return lines


def blackbox_version() -> str:
    out = subprocess.run(
        [BLACKBOX, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return ((out.stdout + out.stderr).strip().splitlines() or ["unknown version"])[0]


async def bench(args: argparse.Namespace) -> list[str]:
    cancel_on_sigterm()
    parts = set(args.only or PARTS)
    if not os.access(BLACKBOX, os.X_OK):
        raise BenchError(f"{BLACKBOX} not found: apt-get install prometheus-blackbox-exporter")
    soft = set_nofile(BENCH_NOFILE)
    if soft < args.idle + 64:
        raise BenchError(f"the bench needs {args.idle + 64} open files, its soft limit is {soft}")
    errors: list[str] = []
    procs = Processes(grace=15.0)
    scratch_dir = tempfile.TemporaryDirectory(prefix="probed-abuse-")
    scratch = Path(scratch_dir.name)
    try:
        say("probed's server under abuse (bench/abuse.py)")
        say(
            f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
        )
        say(f"  blackbox_exporter: {blackbox_version()}")
        with (scratch / "target.stderr").open("wb") as err:
            target = await procs.spawn([sys.executable, str(SELF), "--serve-target"], stderr=err)
        assert target.stdout is not None
        try:
            target_port = int(await asyncio.wait_for(target.stdout.readline(), 30.0))
        except (TimeoutError, ValueError):
            raise BenchError(f"no target port\n{tail(scratch / 'target.stderr')}") from None
        setup = make_setup(scratch, target_port)
        say(f"  web config: TLS + user {USER!r}, bcrypt cost {COST}; servers at ulimit -n 1024")
        servers = [Server(name, procs, setup) for name in SERVERS]
        floods: dict[str, Flood] = {}
        idles: dict[str, Idle] = {}
        async with new_session() as http:
            if "flood" in parts:
                say(f"[flood] {args.flood} junk requests from {FLOOD_SOURCE}, {args.rounds} rounds")
                for round_no in range(1, args.rounds + 1):
                    say(f" round {round_no}")
                    for server in servers:
                        result = floods.setdefault(server.name, Flood())
                        try:
                            await flood_round(server, procs, http, args.flood, result)
                        except BenchError as exc:
                            errors.append(f"flood, {server.name}, round {round_no}: {exc}")
            if "idle" in parts:
                say(f"[idle] {args.idle} idle connections, scrapes for {args.window:g} s")
                for server in servers:
                    idle = idles[server.name] = Idle()
                    try:
                        await idle_run(server, http, args.idle, args.window, idle)
                    except (BenchError, OSError) as exc:
                        errors.append(f"idle, {server.name}: {exc}")
        say("")
        for line in rows(args, floods, idles):
            say(line)
        for error in errors:
            say(f"NOT MEASURED: {error}")
    finally:
        await procs.stop_all()
        scratch_dir.cleanup()
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="probed's server under abuse, beside blackbox")
    parser.add_argument("--rounds", type=int, default=5, help="fresh starts for the flood (5)")
    parser.add_argument("--flood", type=int, default=1000, help="junk requests (1000)")
    parser.add_argument("--idle", type=int, default=2000, help="idle connections (2000)")
    parser.add_argument("--window", type=float, default=10.0, help="scrape window, s (10)")
    parser.add_argument("--quick", action="store_true", help="1 round, 5 s scrape window")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part")
    parser.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flood-client", nargs=3, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_target:
        return serve_target(3600.0)
    if args.flood_client:
        url, cafile, count = args.flood_client
        return flood(url, cafile, int(count))
    if args.quick:
        args.rounds, args.window = 1, min(args.window, 5.0)
    if min(args.rounds, args.flood, args.idle) < 1 or not args.window > 0:
        print("--rounds, --flood and --idle must be at least 1, --window > 0", file=sys.stderr)
        return 2
    return run_bench(bench(args), lambda errors: 1 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
