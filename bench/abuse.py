"""Benchmark: probed's own HTTP server under abuse, beside Debian's prometheus-blackbox-exporter.

Run from the repository root::

    python bench/abuse.py               # 5 fresh starts per server for the flood, then idle
    python bench/abuse.py --quick       # 1 start per server, a 5 s scrape window
    python bench/abuse.py --only idle   # parts: flood, idle (repeatable)

See bench/README.md for how each figure is measured and how to read it.

Both servers read the same exporter-toolkit web config, made in a temporary
directory at start: TLS (a ``trustme`` CA and a certificate for 127.0.0.1) and
one basic-auth user, bcrypt cost 10. probed runs as ``python -m probed run -c
FILE`` with one http probe a second of a tiny target (``--serve-target``, its
own process); blackbox_exporter with a one-module ``blackbox.yml``. Each server
is its own process, started with an open-file soft limit of 1024, fresh for
every measurement, one at a time; it is up once it answers 401 to a request
without credentials (no password checked, nothing cached).

1. Junk flood, ``--rounds`` (5) fresh starts of each, alternating: a child
   (``--flood-client``) sends ``--flood`` (1,000) concurrent HTTPS requests
   from 127.0.0.2, each on a new connection, half with wrong passwords, half
   for unknown users (30 s timeout). 0.5 s after it starts them, one valid
   ``/metrics`` request from 127.0.0.1 on a new connection (30 s timeout):
   status and latency, p50 and max over the rounds; the junk's answers.
2. Idle connections: after a valid scrape (credentials cached) and 1 s,
   ``--idle`` (2,000) TCP connections, half silent, half sending 6 bytes of a
   TLS ClientHello. Once all are open, ``/metrics`` is scraped every 100 ms for
   ``--window`` (10 s), each on a new connection with a 5 s timeout: latency
   p50/p99/max of the 200s, and the failures. The server's fds and ``VmRSS``
   (``/proc/PID/...``) before, the most while open, and 2 s after the bench
   closed them; how many the server closed 5 s and 15 s after all were open.
   The bench raises its own open-file soft limit to 4096.

Only loopback addresses are used. Every loop is bounded in count and time, and
every process started here is stopped on exit, Ctrl-C or error. Exit codes: 0
everything measured, 1 a part was not (the reason is printed, the rest runs), 2
cannot start, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
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
from _common import (
    LOOPBACK,
    NAN,
    BenchError,
    Processes,
    basic_auth,
    cancel_on_sigterm,
    closed_by_peer,
    die_with_parent_nofile,
    die_with_parent_raise_nofile,
    fd_count,
    free_port,
    nofile_soft,
    open_silent,
    percentile,
    raise_nofile,
    rss_kib,
    run_bench,
    say,
    serve_health,
    set_nofile,
    start_printing_port,
    tail,
    timed_get,
    wait_http_ok,
    write_web_config,
)

SELF = Path(__file__).resolve()
REPO = SELF.parent.parent
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
USER, PASSWORD, COST = "prom", "scrape-password", 10
SERVER_NOFILE, BENCH_NOFILE = 1024, 4096
FLOOD_SOURCE, FLOOD_DELAY, VALID_TIMEOUT, FLOOD_TIMEOUT = "127.0.0.2", 0.5, 30.0, 30.0
HALF_HELLO = b"\x16\x03\x01\x02\x00\x01"
"""A TLS record header and the start of a ClientHello: the server waits for the rest."""
SCRAPE_EVERY, SCRAPE_TIMEOUT, CONNECT_TIMEOUT = 0.1, 5.0, 10.0
CLOSED_AFTER = (5.0, 15.0)
SERVERS = ("probed", "blackbox_exporter")
PARTS = ("flood", "idle")
BLACKBOX_YML = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n"


# --------------------------------------------------------------------------------------
# the flood (a child process)


def flood(url: str, cafile: str, count: int) -> int:
    """``count`` concurrent junk requests from 127.0.0.2: print ``go``, then the answer counts."""

    async def main() -> None:
        raise_nofile()
        ctx = ssl.create_default_context(cafile=cafile)
        connector = aiohttp.TCPConnector(local_addr=(FLOOD_SOURCE, 0), force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def one(i: int) -> str:
                user, password = (USER, f"guess-{i}") if i % 2 else (f"nobody-{i}", "x")
                auth = basic_auth(user, password)
                return (
                    await timed_get(http, url, FLOOD_TIMEOUT, ssl_context=ctx, authorization=auth)
                )[0]

            print("go", flush=True)
            answers = Counter(await asyncio.gather(*(one(i) for i in range(count))))
        print(json.dumps(answers), flush=True)

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# the two servers


@dataclass(frozen=True, slots=True)
class Setup:
    """What every server run shares: the web config, the CA trusting it, the probe target."""

    scratch: Path
    web_config: Path
    ca_file: Path
    ctx: ssl.SSLContext
    target_port: int


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

    async def scrape(self, http: aiohttp.ClientSession, within: float) -> tuple[str, float]:
        """``/metrics`` with the valid credentials on a new connection: (status, seconds)."""
        good = basic_auth(USER, PASSWORD)
        return await timed_get(
            http, self.url("/metrics"), within, ssl_context=self.setup.ctx, authorization=good
        )

    def readings(self) -> tuple[int, float]:
        """Open fds and VmRSS (MB) of the server process."""
        return fd_count(self.pid), rss_kib(self.pid) * 1024 / 1e6

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
        try:
            url = self.url("/-/healthy")
            await wait_http_ok(
                http, url, self.proc, 30.0, 0.02, status=401, ssl_context=self.setup.ctx
            )
        except BenchError as exc:
            raise BenchError(f"{self.name} did not start: {exc}\n{tail(self.log)}") from None

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
            status, seconds = await server.scrape(http, VALID_TIMEOUT)
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
    nofile: str = "n/a"
    """The server's open-file soft limit as the kernel has it (``/proc/PID/limits``)."""
    closed: list[tuple[int, int]] = field(default_factory=list)
    """(sent nothing, sent half a ClientHello) closed by the server, at each CLOSED_AFTER."""


async def idle_run(
    server: Server, http: aiohttp.ClientSession, count: int, window: float, result: Idle
) -> None:
    await server.start(http)
    socks: list[tuple[socket.socket, bool]] = []
    peak = (0, 0.0)

    def sample() -> None:
        nonlocal peak
        with contextlib.suppress(OSError, BenchError):
            fds, rss = server.readings()
            peak = (max(peak[0], fds), max(peak[1], rss))

    try:
        status, _ = await server.scrape(http, VALID_TIMEOUT)
        if status != "200":
            raise BenchError(f"{server.name}: the first valid scrape answered {status}")
        await asyncio.sleep(1.0)
        result.nofile = str(nofile_soft(server.pid))
        before = server.readings()
        opened = await asyncio.gather(
            *(
                open_silent(server.port, HALF_HELLO if i % 2 else b"", CONNECT_TIMEOUT)
                for i in range(count)
            )
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
            scrapes.append(asyncio.create_task(server.scrape(http, SCRAPE_TIMEOUT)))
        done = await asyncio.gather(*scrapes)
        for when in checks:
            await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
            sample()
            result.closed.append(count_closed(socks))
        result.scrapes = [s for s, _ in done]
        result.ok_ms = [t * 1000 for s, t in done if s == "200"]
        for sock, _ in socks:
            sock.close()
        socks = []
        await asyncio.sleep(2.0)
        after = server.readings()
        result.fds = [before[0], peak[0], after[0]]
        result.rss_mb = [before[1], peak[1], after[1]]
    finally:
        for sock, _ in socks:
            sock.close()
        await server.stop()


def count_closed(socks: list[tuple[socket.socket, bool]]) -> tuple[int, int]:
    closed = [hello for sock, hello in socks if closed_by_peer(sock)]
    return closed.count(False), closed.count(True)


# --------------------------------------------------------------------------------------
# report and main


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def rows(args: argparse.Namespace, floods: dict[str, Flood], idles: dict[str, Idle]) -> list[str]:
    table: dict[str, dict[str, str]] = {}

    def put(label: str, name: str, value: str) -> None:
        table.setdefault(label, {})[name] = value

    for name, f in floods.items():
        got = sorted(Counter(f.statuses).items())
        put("flood: valid /metrics answers", name, " ".join(f"{k} x{v}" for k, v in got) or "n/a")
        put("flood: valid /metrics latency p50 (s)", name, fmt(percentile(f.seconds, 0.5)))
        put("flood: valid /metrics latency max (s)", name, fmt(max(f.seconds, default=NAN)))
        keys = {"200", "401", "429", "closed"}.union(*(g.answers for g in floods.values()))
        for key in sorted(keys):
            put(f"flood: junk answered {key}, all rounds", name, str(f.answers[key]))
    for name, i in idles.items():
        put("idle: server's open-file soft limit", name, i.nofile)
        put(f"idle: connections opened (of {args.idle})", name, str(i.opened))
        put("idle: scrapes answered 200 / sent", name, f"{len(i.ok_ms)} / {len(i.scrapes)}")
        quantiles = (percentile(i.ok_ms, q) for q in (0.5, 0.99, 1.0))
        put("idle: scrape latency p50/p99/max (ms)", name, "/".join(fmt(v, 1) for v in quantiles))
        put("idle: server fds before/during/after", name, "/".join(map(str, i.fds)) or "n/a")
        put("idle: server RSS MB before/during/after", name, "/".join(fmt(v, 1) for v in i.rss_mb))
        for when, (nothing, hello) in zip(CLOSED_AFTER, i.closed, strict=False):
            label = f"idle: closed by server after {when:g} s (silent+hello)"
            put(label, name, f"{nothing + hello} ({nothing}+{hello})")
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
        argv = [sys.executable, str(SELF), "--serve-target"]
        _, target_port = await start_printing_port(procs, argv, scratch / "target.stderr")
        web_config, ca_file = write_web_config(scratch, USER, PASSWORD, COST)
        (scratch / "blackbox.yml").write_text(BLACKBOX_YML, encoding="utf-8")
        ctx = ssl.create_default_context(cafile=str(ca_file))
        setup = Setup(scratch, web_config, ca_file, ctx, target_port)
        say(f"  web config: TLS + user {USER!r}, bcrypt cost {COST}; servers at ulimit -n 1024")
        servers = [Server(name, procs, setup) for name in SERVERS]
        floods: dict[str, Flood] = {}
        idles: dict[str, Idle] = {}
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
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
        return serve_health(3600.0)
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
