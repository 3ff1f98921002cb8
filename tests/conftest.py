"""Shared fixtures: probe sessions, loopback servers, and network faults for probe tests.

Plain helpers of the probe-kind tests (the recording app, fault-table rows) are in
``probeservers.py``.

``PROBED_TEST_EVENT_LOOP`` (``asyncio``, the default, or ``uvloop``) is the event loop
the async tests run on, and the one the daemons they start run on
(``PROBED_DAEMON__EVENT_LOOP``): CI runs the probe, stream and process tests once more
on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import aiohttp.abc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from binaries import alertmanager_binary
from probeservers import DEMO_PASSWORD, STREAM, with_hub

from probed.config import TargetConfig
from probed.demo import DemoTarget
from probed.http.session import create_sessions
from probed.http.wire import WireClient
from probed.probes.base import ProbeContext
from probed.results import Reason
from probed.stream.decoder import Event, SSEDecoder
from probed.stream.hub import Hub, ReceivedEvent

TEST_EVENT_LOOP = os.environ.get("PROBED_TEST_EVENT_LOOP", "asyncio")
if TEST_EVENT_LOOP not in ("asyncio", "uvloop"):
    raise pytest.UsageError(f"PROBED_TEST_EVENT_LOOP must be asyncio or uvloop: {TEST_EVENT_LOOP}")
os.environ["PROBED_DAEMON__EVENT_LOOP"] = TEST_EVENT_LOOP  # the daemons the tests start

if TEST_EVENT_LOOP == "uvloop":
    import uvloop

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        """Every async test and fixture runs on uvloop."""
        return {"uvloop": uvloop.new_event_loop}


def pytest_report_header(config: pytest.Config) -> str:
    """Say which loop the async tests run on."""
    return f"event loop: {TEST_EVENT_LOOP} (PROBED_TEST_EVENT_LOOP)"


@pytest.fixture(autouse=True)
def _collector_thresholds() -> Iterator[None]:
    """A daemon started in the test process sets its own collection thresholds; the next
    test starts from those it found (a test of what collections leave would otherwise
    depend on which tests ran before it)."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


class ServeApp(Protocol):
    """The ``serve_app`` fixture: start ``app`` on loopback and return its base URL."""

    async def __call__(self, app: web.Application, *, ssl: ssl.SSLContext | None = None) -> str:
        """Start ``app`` (with TLS if ``ssl`` is given)."""


class MakeProbeContext(Protocol):
    """The ``make_probe_context`` fixture: a ``ProbeContext`` for a target at ``base_url``."""

    def __call__(self, base_url: str, **target_fields: Any) -> ProbeContext:
        """Build the target (``TargetConfig`` fields as keywords) and the context."""


class StubResolver(aiohttp.abc.AbstractResolver):
    """Resolve ``*.test`` to 127.0.0.1; fail any other name as DNS would (never queries DNS)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        self.queries.append(host)
        if host.endswith(".test"):
            return [
                {
                    "hostname": host,
                    "host": "127.0.0.1",
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


@pytest.fixture
def stub_resolver() -> StubResolver:
    """The resolver the probe sessions use: ``*.test`` → 127.0.0.1, anything else fails."""
    return StubResolver()


@pytest.fixture
async def probe_sessions(
    stub_resolver: StubResolver,
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    """``(fresh, pooled)`` from ``create_sessions``, resolving names with ``stub_resolver``."""
    fresh, pooled = create_sessions(resolver=stub_resolver)
    yield fresh, pooled
    await fresh.close()
    await pooled.close()


@pytest.fixture
def http_client() -> str:
    """Which client the ``http`` kind uses in ``make_probe_context``'s contexts: ``wire``
    (its own, as the daemon does) or ``aiohttp``. A module overrides this fixture with
    ``params=HTTP_CLIENTS`` to run its tests on both."""
    return "wire"


HTTP_CLIENTS = ["wire", "aiohttp"]


@pytest.fixture
def make_probe_context(
    probe_sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
    stub_resolver: StubResolver,
    http_client: str,
) -> MakeProbeContext:
    """Build a ``ProbeContext`` for a target: ``make_probe_context(base_url, **target_fields)``."""
    fresh, pooled = probe_sessions
    wire = WireClient(stub_resolver) if http_client == "wire" else None

    def make(base_url: str, **target_fields: Any) -> ProbeContext:
        target = TargetConfig(base_url=base_url, **target_fields)
        target._finish_headers()
        return ProbeContext(target=target, session=fresh, pooled_session=pooled, wire=wire)

    return make


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Start aiohttp apps on 127.0.0.1 (port 0): ``base_url = await serve_app(app)``."""
    servers: list[TestServer] = []

    async def start(app: web.Application, *, ssl: ssl.SSLContext | None = None) -> str:
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server(ssl=ssl)
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def ctx(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext
) -> ProbeContext:
    """A context whose target is the test module's ``app`` fixture, served on loopback."""
    return make_probe_context(await serve_app(app))


@pytest.fixture
async def demo_target() -> AsyncIterator[DemoTarget]:
    """A healthy demo target on 127.0.0.1, any free port, seeded draws."""
    async with DemoTarget(password=DEMO_PASSWORD, seed=1) as demo:
        yield demo


@dataclass(frozen=True)
class StreamDown:
    """A context on ``demo_target`` whose stream watcher is down, and the detail that says so."""

    ctx: ProbeContext
    detail: str


@pytest.fixture(params=["disconnected", "no_watcher"])
def stream_down(
    request: pytest.FixtureRequest,
    demo_target: DemoTarget,
    make_probe_context: MakeProbeContext,
) -> StreamDown:
    """The ``STREAM`` watcher registered but not connected, then not registered at all."""
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    if request.param == "disconnected":
        hub.register_stream(STREAM, lambda: False)
        return StreamDown(ctx, "is not connected")
    return StreamDown(ctx, "no stream watcher 'events' is running")


@dataclass(frozen=True)
class NetworkFault:
    """A base URL that fails in one way below HTTP, and the reason a probe must report."""

    name: str
    base_url: str
    reason: Reason
    ctx: ProbeContext
    """A probe context whose target is ``base_url``."""


async def _close_before_response(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def _garbage_status_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
    await writer.drain()


async def _truncated_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":')
    await writer.drain()


_RAW_HANDLERS = {
    "close_before_response": _close_before_response,
    "garbage_status_line": _garbage_status_line,
    "truncated_body": _truncated_body,
}


def _raw(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return serve


@pytest.fixture(
    params=[
        "connect_refused",
        "dns",
        "connect_error",
        "close_before_response",
        "garbage_status_line",
        "truncated_body",
    ]
)
async def network_fault(
    request: pytest.FixtureRequest, make_probe_context: MakeProbeContext
) -> AsyncIterator[NetworkFault]:
    """Each network-level fault in turn (refused, DNS, unreachable, broken HTTP)."""
    name: str = request.param
    server: asyncio.Server | None = None
    if name == "connect_refused":
        base_url, reason = f"http://127.0.0.1:{free_port()}", Reason.CONNECT_REFUSED
    elif name == "dns":
        base_url, reason = "http://no-such-host.invalid", Reason.DNS
    elif name == "connect_error":
        # connect() to the broadcast address fails at once (EACCES or ENETUNREACH)
        base_url, reason = "http://255.255.255.255:9", Reason.CONNECT_ERROR
    else:
        server = await asyncio.start_server(_raw(_RAW_HANDLERS[name]), "127.0.0.1", 0)
        base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        reason = Reason.PROTOCOL_ERROR
    try:
        yield NetworkFault(name, base_url, reason, make_probe_context(base_url))
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def _free_ports() -> Iterator[int]:
    """Loopback ports below the kernel's ephemeral range, from a random start, each once.

    Not a port-0 bind's: those come from the ephemeral range, which every outgoing
    connection's local port and every other port-0 bind are drawn from, so one of them could
    take the port before the server meant for it binds it (Alertmanager in the fleet drill
    failed so once: "address already in use").
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    ports = range(10000, max(low, 12000))
    start = secrets.randbelow(len(ports))  # not the random module: tests may seed it
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # something holds it now
        yield port


_FREE_PORTS = _free_ports()


def free_port() -> int:
    """A loopback port that was bound, then closed: nothing listens there.

    Never handed out twice in one test run, and never one the kernel hands out meanwhile.
    """
    return next(_FREE_PORTS)


_AM_CONFIG = """\
route:
  receiver: "null"
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """The real Alertmanager binary on a free loopback port, gossip off; killed afterwards."""
    binary = alertmanager_binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text(_AM_CONFIG, encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"alertmanager exited: {log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=0.5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"alertmanager not ready: {log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.asynccontextmanager
async def sse_feed(
    hub: Hub,
    base_url: str,
    *,
    connected: Callable[[], bool] = lambda: True,
    stream: str = "events",
) -> AsyncIterator[None]:
    """Stand in for the stream watcher: publish the demo's SSE events to ``hub`` as ``stream``."""
    hub.register_stream(stream, connected)
    live = asyncio.Event()

    async def pump(session: aiohttp.ClientSession) -> None:
        async with session.get(f"{base_url}/api/v1/events/stream") as resp:
            assert 200 == resp.status
            live.set()  # the demo registers the subscriber before sending the headers
            decoder = SSEDecoder()
            async for chunk in resp.content.iter_any():
                for item in decoder.feed(chunk):
                    if isinstance(item, Event):
                        hub.publish(ReceivedEvent(stream, item, time.monotonic(), time.time()))

    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(pump(session))
        try:
            for _ in range(200):
                if live.is_set() or task.done():
                    break
                await asyncio.sleep(0.01)
            if task.done():
                task.result()  # raises what ended the stream
            assert live.is_set(), "the SSE stream did not open within 2 s"
            yield
        finally:
            task.cancel()
            await asyncio.wait([task])
