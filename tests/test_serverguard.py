"""The daemon's own server under abuse: bcrypt floods, idle connections, user enumeration, banner.

The flood tests run the real ``probed run`` process (TLS + basic auth from a web config
file) on 127.0.0.1, one of them with ``ulimit -n 1024``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import ssl
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from test_webconfig import (
    Pki,
    Serve,
    _basic,
    _client_context,
    _users_config,
    _write_config,
    pki,
    secured_daemon,
    serve,
)

__all__ = ["pki", "serve"]  # fixtures re-used from test_webconfig

USER = "prom"
PASSWORD = "scrape-pw"


def _hash(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


# ---------------------------------------------------------------------------
# the real process


@dataclass
class Running:
    """A ``probed run`` process: its pid, HTTPS base URL, and the JSON log lines read so far."""

    proc: asyncio.subprocess.Process
    base: str
    events: list[dict[str, object]] = field(default_factory=list)

    def fds(self) -> int:
        """Open file descriptors of the process."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss(self) -> int:
        """Resident set size of the process, bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


async def _drain(stream: asyncio.StreamReader, into: list[dict[str, object]]) -> None:
    while line := await stream.readline():
        with contextlib.suppress(ValueError):
            into.append(json.loads(line))


@contextlib.asynccontextmanager
async def probed_process(
    tmp_path: Path, pki: Pki, users: dict[str, str], toml: str = "", nofile: int | None = None
) -> AsyncIterator[Running]:
    """``probed run`` with TLS and ``users`` (basic auth), ``toml`` appended to its config."""
    pki.write(tmp_path)
    lines = "".join(f"  {name}: {hashed}\n" for name, hashed in users.items())
    _write_config(
        tmp_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n{lines}",
    )
    path = tmp_path / "probes.toml"
    path.write_text(
        '[daemon]\nlisten = "127.0.0.1:0"\nweb_config_file = "web-config.yml"\n'
        f'state_dir = "{tmp_path}/state"\nallow_no_probes = true\n' + toml
    )

    def limit_fds() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(7)[1]))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "run", "-c", str(path), "--shutdown-grace", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, preexec_fn=limit_fds,
    )  # fmt: skip
    assert proc.stdout is not None
    events: list[dict[str, object]] = []
    drain = asyncio.create_task(_drain(proc.stdout, events))
    try:
        async with asyncio.timeout(15):
            while not any(e.get("event") == "daemon_ready" for e in events):
                await asyncio.sleep(0.05)
        ready = next(e for e in events if e.get("event") == "daemon_ready")
        yield Running(proc, f"https://{ready['listen']}", events)
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()
        await drain


async def _timed_get(
    http: aiohttp.ClientSession, url: str, ctx: ssl.SSLContext, authorization: str
) -> tuple[int, float, dict[str, str]]:
    started = time.monotonic()
    async with http.get(url, ssl=ctx, headers={"Authorization": authorization}) as resp:
        await resp.read()
        return resp.status, time.monotonic() - started, dict(resp.headers)


def _fresh_session(limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=limit),
        timeout=aiohttp.ClientTimeout(total=30),
    )


# ---------------------------------------------------------------------------
# (a) a bcrypt flood does not starve a valid scrape


# run in its own process, so the scrape measured here does not queue behind the flood's
# thousand TLS handshakes in this process's event loop
_FLOOD = """
import asyncio, base64, json, ssl, sys, aiohttp

async def main(url: str, cafile: str, count: int) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    connector = aiohttp.TCPConnector(force_close=True, limit=0, local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one(i: int) -> list[object]:
            user, password = ("prom", f"guess-{i}") if i % 2 else (f"nobody-{i}", "x")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            try:
                async with http.get(url, ssl=ctx, headers={"Authorization": "Basic " + token},
                                    timeout=aiohttp.ClientTimeout(total=20)) as resp:
                    await resp.read()
                    return [resp.status, resp.headers.get("Retry-After")]
            except aiohttp.ClientError:  # cut off past the connection cap
                return ["closed", None]
        # waves of `count` until the test closes stdin (its scrape is done), 30 at most
        done = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        answers = []
        for wave in range(30):
            flood = asyncio.gather(*(one(i) for i in range(count)))
            if wave == 0:
                await asyncio.sleep(0.2)  # the first wave's handshakes under way
                print("flooding", flush=True)
            answers += await flood
            if done.done():
                break
        print(json.dumps(answers))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_valid_scrape_is_answered_at_once_during_a_bcrypt_flood(
    tmp_path: Path, pki: Pki
) -> None:
    """With 1,000 junk credentials in flight from another address, a valid scrape gets 200 in 1 s.

    Each client address holds at most two places in the bcrypt pool, so the flood (from
    127.0.0.2) is refused with 429 beyond its share while the scrape is checked at once.
    """
    users = {USER: _hash(PASSWORD, 10), "grafana": _hash("other", 10)}
    ctx = _client_context(pki)
    pki.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async with probed_process(tmp_path, pki, users) as daemon, _fresh_session() as http:
        url = f"{daemon.base}/metrics"
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _FLOOD, url, str(tmp_path / "ca.pem"), "1000",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert flood.stdout is not None
        started = await asyncio.wait_for(flood.stdout.readline(), 20)
        status, elapsed, _ = await _timed_get(http, url, ctx, _basic(USER, PASSWORD))
        in_flight = flood.returncode is None  # it floods until its stdin closes
        out, _ = await asyncio.wait_for(flood.communicate(b""), 30)
        answers = [tuple(a) for a in json.loads(out)]

    print(f"valid scrape: {status} in {elapsed:.3f} s; "
          f"flood: {sorted(Counter(a[0] for a in answers).items(), key=str)}")  # fmt: skip
    assert b"flooding\n" == started
    assert in_flight
    assert 200 == status
    assert elapsed < 1.0, f"valid scrape took {elapsed:.2f} s"
    assert {401, 429} <= {s for s, _ in answers} <= {401, 429, "closed"}
    assert {"1"} == {retry for s, retry in answers if s == 429}


# ---------------------------------------------------------------------------
# (b) idle connections at ulimit -n 1024


HEADER_TIMEOUT = 2.0


@contextlib.contextmanager
def _client_fds(wanted: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _raw_connect(port: int, first_bytes: bytes) -> socket.socket:
    """A TCP connection to the daemon that sends ``first_bytes`` and then nothing."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if first_bytes:
        await loop.sock_sendall(sock, first_bytes)
    return sock


async def _closed_raw(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        while await loop.sock_recv(sock, 4096):
            pass
    sock.close()


async def _tls_connect(
    port: int, ctx: ssl.SSLContext, first_bytes: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A finished TLS handshake, then ``first_bytes`` and nothing more (None: refused)."""
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
    except (OSError, ssl.SSLError):
        return None
    writer.write(first_bytes)
    return reader, writer


async def _closed_tls(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if conn is None:
        return
    reader, writer = conn
    with contextlib.suppress(OSError, ssl.SSLError):
        while await reader.read(4096):
            pass
    writer.transport.abort()


def _sample(text: str, name: str) -> float:
    """The value of the first sample line starting with ``name`` (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# the probed target answers from its own process: in this one, the flood's 1,400 connects
# and 600 TLS handshakes hold the event loop long enough to time out a probe's 0.9 s
_TARGET = """
import asyncio, socket
from aiohttp import web

async def main() -> None:
    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok\\n")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def _target_process() -> AsyncIterator[str]:
    """The base URL of a ``/health`` target served by a process of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TARGET, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        await proc.wait()


async def test_idle_connections_do_not_exhaust_file_descriptors(tmp_path: Path, pki: Pki) -> None:
    """2,000 idle connections at ulimit -n 1024 stop no probe or scrape and leave nothing behind."""
    async with _target_process() as target:
        await _idle_connections_stop_nothing(tmp_path, pki, target)


async def _idle_connections_stop_nothing(tmp_path: Path, pki: Pki, target: str) -> None:
    toml = (
        f'http_header_timeout = "{HEADER_TIMEOUT:g}s"\n\n'
        f'[targets.local]\nbase_url = "{target}"\n\n'
        '[[probes]]\nname = "local"\nkind = "http"\ntarget = "local"\npath = "/health"\n'
        'interval = "1s"\ntimeout = "900ms"\n'
    )
    ctx = _client_context(pki)
    good = _basic(USER, PASSWORD)
    with _client_fds(4096):
        async with (
            probed_process(tmp_path, pki, {USER: _hash(PASSWORD, 4)}, toml, nofile=1024) as daemon,
            _fresh_session() as http,
        ):
            url = f"{daemon.base}/metrics"
            port = int(daemon.base.rsplit(":", 1)[1])
            assert 200 == (await _timed_get(http, url, ctx, good))[0]  # credentials cached
            await asyncio.sleep(1.5)
            fds_before, rss_before = daemon.fds(), daemon.rss()

            nothing = [_raw_connect(port, b"") for _ in range(700)]
            half_hello = [_raw_connect(port, b"\x16\x03\x01\x02\x00\x01") for _ in range(700)]
            raw = await asyncio.gather(*nothing, *half_hello)
            half_header = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
            tls = await asyncio.gather(
                *(_tls_connect(port, ctx, half_header if i % 2 else b"") for i in range(600))
            )
            opened = time.monotonic()
            peak_fds = daemon.fds()
            status, elapsed, _ = await _timed_get(http, url, ctx, good)

            async with asyncio.timeout(HEADER_TIMEOUT + 5):
                await asyncio.gather(*map(_closed_raw, raw), *map(_closed_tls, tls))
            all_closed = time.monotonic() - opened
            await asyncio.sleep(1.5)  # a probe run or two after the flood
            _, _, _ = await _timed_get(http, url, ctx, good)
            async with http.get(url, ssl=ctx, headers={"Authorization": good}) as resp:
                metrics = await resp.text()
            fds_after, rss_after = daemon.fds(), daemon.rss()

    rss = f"{rss_before >> 20} -> {rss_after >> 20} MiB"
    print(f"scrape {elapsed:.3f} s; fds {fds_before} -> {peak_fds} -> {fds_after}; rss {rss}")
    assert 200 == status
    assert elapsed < 1.0, f"scrape took {elapsed:.2f} s"
    assert all_closed < HEADER_TIMEOUT + 3
    assert 0 == _sample(metrics, 'probed_probe_runs_total{probe="local",result="failure"}')
    assert _sample(metrics, 'probed_probe_runs_total{probe="local",result="success"}') >= 3
    assert (
        _sample(metrics, 'probed_http_server_rejected_connections_total{reason="header_timeout"}')
        > 0
    )
    assert fds_after <= fds_before + 4
    assert rss_after <= rss_before + 32 * 2**20
    logged = [e for e in daemon.events if e.get("event") == "http_server_connections_rejected"]
    assert len(logged) <= 2
    assert not [e for e in daemon.events if "out of system resource" in str(e.get("event"))]


# ---------------------------------------------------------------------------
# (c) timing does not tell which users exist


async def test_unknown_user_costs_as_much_as_the_dearest_hash(tmp_path: Path, serve: Serve) -> None:
    """With bcrypt costs 4 and 10, unknown users and cheap users take the cost-10 time."""
    users = {"cheap1": _hash("a", 4), "cheap2": _hash("b", 4), "dear": _hash("c", 10)}
    base = await serve(_users_config(tmp_path, users))

    async with aiohttp.ClientSession() as http:

        async def median(user: str) -> float:
            times = []
            for i in range(5):
                started = time.monotonic()
                headers = {"Authorization": _basic(user, f"wrong-{i}")}
                async with http.get(f"{base}/-/healthy", headers=headers) as resp:
                    assert 401 == resp.status
                times.append(time.monotonic() - started)
            return statistics.median(times)

        dear, unknown, cheap = await median("dear"), await median("nobody"), await median("cheap1")

    assert unknown >= 0.7 * dear, f"unknown {unknown * 1000:.0f} ms, dear {dear * 1000:.0f} ms"
    assert cheap >= 0.7 * dear, f"cheap {cheap * 1000:.0f} ms, dear {dear * 1000:.0f} ms"


# ---------------------------------------------------------------------------
# (d) no version banner


async def _raw_response(port: int, ctx: ssl.SSLContext, request: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
    )
    try:
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    finally:
        writer.transport.abort()
    status = int(head.split(" ", 2)[1])
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    return status, "".join(server)


async def test_no_server_version_banner(tmp_path: Path, pki: Pki) -> None:
    """Responses 200, 401, 404 and 400 carry no Server header naming aiohttp or Python."""
    ctx = _client_context(pki)
    auth = _basic("prom", "pw").encode()
    requests = [
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n",
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
    ]
    async with secured_daemon(tmp_path, pki, "pw") as daemon:
        assert daemon.bound_port is not None
        seen = [await _raw_response(daemon.bound_port, ctx, r) for r in requests]

    assert [200, 401, 404, 400] == [status for status, _ in seen]
    leaks = [s for _, s in seen if "aiohttp" in s.lower() or "python" in s.lower()]
    assert [] == leaks


async def test_one_client_address_holds_at_most_its_share_of_the_bcrypt_pool() -> None:
    """A third check from one address is refused at once; another address still gets a place."""
    from probed.webauth import BcryptPool, Overloaded

    pool = BcryptPool(workers=1, queue=8, per_client=2)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
    try:
        first = [asyncio.create_task(pool.check(b"x", hashed, None, "127.0.0.2")) for _ in "ab"]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await pool.check(b"x", hashed, None, "127.0.0.2")
        assert await pool.check(b"pw", hashed, None, "127.0.0.3")
        assert [False, False] == await asyncio.gather(*first)
        assert (0, 1) == (pool.pending, pool.stats.auth_overloaded)
        assert await pool.check(b"pw", hashed, None, "127.0.0.2")
    finally:
        pool.close()
