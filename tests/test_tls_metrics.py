"""TLS and HTTP-version facts of a probe's last response, as blackbox_exporter exports them.

``probe_ssl_earliest_cert_expiry``, ``probe_ssl_last_chain_expiry_timestamp_seconds``,
``probe_tls_version_info{version}`` and ``probe_http_version``, from a real TLS handshake
on loopback: a private root, an intermediate and a leaf expiring in 10 days, with an
unrelated certificate expiring in 5 days sent along in the chain (presented, never part
of the verified chain), so the two expiry gauges tell different dates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import trustme
from aiohttp import web
from binaries import promtool
from conftest import HTTP_CLIENTS
from hypothesis import given, settings
from hypothesis import strategies as st
from livedaemon import live_daemon, sample, watch_metrics
from probeservers import DEMO_PASSWORD, run
from prometheus_client import generate_latest

from probed.config import HttpProbe
from probed.demo import DemoTarget, Faults
from probed.http import session
from probed.http.peerinfo import cert_not_after, tls_info, tls_version_label
from probed.metrics import DaemonInfo, build_registry
from probed.results import ProbeResult, ProbeRun, Reason, TlsInfo
from probed.store import ResultStore

if TYPE_CHECKING:
    from conftest import MakeProbeContext, ServeApp


@pytest.fixture(params=HTTP_CLIENTS)
def http_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the http kind's own client and on aiohttp."""
    return str(request.param)


SSL_FAMILIES = (
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_tls_version_info",
)
YEAR_3000 = datetime(3000, 1, 1, tzinfo=UTC).timestamp()
"""trustme's CAs are valid until 3000-01-01 (a GeneralizedTime, not a UTCTime)."""


@dataclass(frozen=True)
class Pki:
    """A root CA file, a server context presenting leaf + intermediate + a stale extra cert."""

    ca_file: Path
    server: ssl.SSLContext
    leaf_der: bytes
    leaf_expiry: float
    """The leaf's notAfter (10 days from now): the earliest expiry of the verified chain."""
    stale_expiry: float
    """The extra certificate's notAfter (5 days from now): the earliest presented one."""
    root_der: bytes

    def server_context(self, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """The server context, or a copy capped at ``maximum``."""
        if maximum is None:
            return self.server
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file.with_name("chain.pem"))
        context.maximum_version = maximum
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test PKI, expiries at whole seconds as certificates store them."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC).replace(microsecond=0)
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1", not_after=now + timedelta(days=10))
    stale = root.issue_cert("stale.test", not_after=now + timedelta(days=5))
    chain = directory / "chain.pem"
    chain.write_bytes(
        leaf.private_key_and_cert_chain_pem.bytes() + stale.cert_chain_pems[0].bytes()
    )
    root.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain)
    return Pki(
        ca_file=directory / "ca.pem",
        server=server,
        leaf_der=ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()),
        leaf_expiry=(now + timedelta(days=10)).timestamp(),
        stale_expiry=(now + timedelta(days=5)).timestamp(),
        root_der=ssl.PEM_cert_to_DER_cert(root.cert_pem.bytes().decode()),
    )


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


@pytest.fixture
def app() -> web.Application:
    """An app answering /health."""
    application = web.Application()
    application.router.add_get("/health", _hello)
    return application


def spec(**fields: Any) -> HttpProbe:
    """An http probe of /health."""
    return HttpProbe(**{"name": "p", "target": "t", "path": "/health", **fields})


# -- reading certificates -------------------------------------------------------------------


def test_cert_not_after_reads_utctime_and_generalizedtime(pki: Pki) -> None:
    """The leaf's notAfter (a UTCTime) and the root's (year 3000, a GeneralizedTime), exactly."""
    assert pki.leaf_expiry == cert_not_after(pki.leaf_der)
    assert YEAR_3000 == cert_not_after(pki.root_der)


def test_cert_not_after_is_none_for_anything_broken(pki: Pki) -> None:
    """Empty, truncated or corrupted DER gives None, never an exception."""
    der = pki.leaf_der
    broken = [b"", b"\x30", b"\x30\x82\xff\xff", der[:40], der[: len(der) // 2], b"\x00" * 64]
    broken += [der[:i] + bytes([der[i] ^ 0xFF]) + der[i + 1 :] for i in range(0, 120)]
    for data in broken:
        value = cert_not_after(data)
        assert value is None or isinstance(value, float)
    assert [None] * 6 == [cert_not_after(data) for data in broken[:6]]


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag, len(content)]) + content


def _minimal_cert(not_after: bytes, tag: int = 0x17) -> bytes:
    """Certificate{tbs{serial, signature, issuer, validity{notBefore, notAfter}}}, nothing more."""
    validity = _tlv(0x30, _tlv(0x17, b"000101000000Z") + _tlv(tag, not_after))
    tbs = _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x30, b"") + _tlv(0x30, b"") + validity)
    return _tlv(0x30, tbs)


@pytest.mark.parametrize(
    ("tag", "value", "expected"),
    [
        (0x17, b"491231235959Z", datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()),
        (0x17, b"500101000000Z", datetime(1950, 1, 1, tzinfo=UTC).timestamp()),
        (0x18, b"99991231235959Z", 253402300799.0),
        (0x17, b"260231000000Z", None),  # 31 February
        (0x17, b"2602010000Z", None),  # no seconds
        (0x17, b"260201000000+0100", None),  # not UTC
        (0x04, b"260201000000Z", None),  # not a time
    ],
)
def test_cert_not_after_validity_forms(tag: int, value: bytes, expected: float | None) -> None:
    """UTCTime years 50-99 are 19xx; only well-formed Zulu times of real dates count."""
    assert expected == cert_not_after(_minimal_cert(value, tag))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_cert_not_after_never_raises(data: bytes) -> None:
    """Arbitrary bytes never make the parser raise."""
    value = cert_not_after(data)
    assert value is None or isinstance(value, float)


@pytest.mark.parametrize(
    ("version", "label"),
    [
        ("TLSv1", "TLS 1.0"),
        ("TLSv1.1", "TLS 1.1"),
        ("TLSv1.2", "TLS 1.2"),
        ("TLSv1.3", "TLS 1.3"),
        ("SSLv3", "unknown"),
        (None, "unknown"),
    ],
)
def test_tls_version_labels_are_blackbox_exporters(version: str | None, label: str) -> None:
    """Python's version names map onto blackbox_exporter's fixed label values."""
    assert label == tls_version_label(version)


class _LeafOnly:
    """An SSL object as an interpreter without any chain API would have it."""

    def __init__(self, der: bytes, verify_mode: ssl.VerifyMode) -> None:
        self._der = der
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify_mode is ssl.CERT_NONE:
            self.context.check_hostname = False
        self.context.verify_mode = verify_mode

    def version(self) -> str:
        return "TLSv1.3"

    def getpeercert(self, binary_form: bool = False) -> bytes:
        assert binary_form
        return self._der


@pytest.mark.parametrize(
    ("verify_mode", "verified"), [(ssl.CERT_REQUIRED, True), (ssl.CERT_NONE, False)]
)
def test_without_a_chain_api_the_leaf_stands_for_the_chain(
    pki: Pki, verify_mode: ssl.VerifyMode, verified: bool
) -> None:
    """Only the leaf readable: its notAfter for both gauges (the chain one only if verified)."""
    sslobj = cast(ssl.SSLObject, _LeafOnly(pki.leaf_der, verify_mode))
    expected = TlsInfo("TLS 1.3", pki.leaf_expiry, pki.leaf_expiry if verified else None)
    assert expected == tls_info(sslobj)


def test_an_unreadable_certificate_leaves_the_expiries_out() -> None:
    """A peer certificate that does not parse: the TLS version still, no expiry."""
    sslobj = cast(ssl.SSLObject, _LeafOnly(b"\x30\x03\x02\x01\x00", ssl.CERT_REQUIRED))
    assert TlsInfo("TLS 1.3", None, None) == tls_info(sslobj)


# -- what a run records ---------------------------------------------------------------------


async def test_verified_run_reports_the_presented_and_the_verified_chain(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext, pki: Pki
) -> None:
    """Earliest presented expiry (the stale extra cert), earliest of the verified chain (leaf)."""
    ctx = make_probe_context(await serve_app(app, ssl=pki.server), ca_file=pki.ca_file)

    result = (await run(ctx, spec())).result

    assert result.success, result.detail
    assert TlsInfo("TLS 1.3", pki.stale_expiry, pki.leaf_expiry) == result.tls
    assert 1.1 == result.http_version


async def test_insecure_skip_verify_has_no_verified_chain(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext, pki: Pki
) -> None:
    """Without verification there is no verified chain: only the presented expiry is known."""
    ctx = make_probe_context(await serve_app(app, ssl=pki.server), insecure_skip_verify=True)

    result = (await run(ctx, spec())).result

    assert result.success, result.detail
    assert TlsInfo("TLS 1.3", pki.stale_expiry, None) == result.tls


async def test_tls_version_of_the_connection(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext, pki: Pki
) -> None:
    """A server capped at TLS 1.2 is reported as "TLS 1.2"."""
    server = pki.server_context(ssl.TLSVersion.TLSv1_2)
    ctx = make_probe_context(await serve_app(app, ssl=server), ca_file=pki.ca_file)

    result = (await run(ctx, spec())).result

    assert result.tls is not None
    assert "TLS 1.2" == result.tls.version


async def test_plain_http_has_a_version_and_no_tls(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext
) -> None:
    """An http:// run: HTTP/1.1, no TLS facts."""
    ctx = make_probe_context(await serve_app(app))

    result = (await run(ctx, spec())).result

    assert (True, 1.1, None) == (result.success, result.http_version, result.tls)


async def test_failed_check_after_a_response_keeps_the_facts(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext, pki: Pki
) -> None:
    """A run failing on its status still reports the connection it got an answer on."""
    ctx = make_probe_context(await serve_app(app, ssl=pki.server), ca_file=pki.ca_file)

    result = (await run(ctx, spec(path="/missing"))).result

    assert (False, Reason.STATUS, 1.1) == (result.success, result.reason, result.http_version)
    assert result.tls is not None
    assert pki.stale_expiry == result.tls.earliest_cert_expiry


async def test_no_response_no_facts(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext
) -> None:
    """A handshake that fails verification leaves both the version and the TLS facts unknown."""
    untrusted = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    untrusted.issue_cert("127.0.0.1").configure_cert(server)
    ctx = make_probe_context(await serve_app(app, ssl=server))

    result = (await run(ctx, spec())).result

    assert (Reason.TLS, None, None) == (result.reason, result.http_version, result.tls)


async def test_reused_pooled_connection_keeps_its_facts_parsed_once(
    app: web.Application,
    serve_app: ServeApp,
    make_probe_context: MakeProbeContext,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Certificates are read once per connection; a run on a reused one reports the same."""
    calls: list[object] = []
    original = tls_info

    def counting(sslobj: ssl.SSLObject) -> TlsInfo:
        calls.append(sslobj)
        return original(sslobj)

    monkeypatch.setattr(session, "tls_info", counting)
    ctx = make_probe_context(await serve_app(app, ssl=pki.server), ca_file=pki.ca_file)
    pooled = spec(fresh_connection=False)

    first = (await run(ctx, pooled)).result
    second = (await run(ctx, pooled)).result

    assert 0.0 == second.phases["tls"]  # the same connection
    assert first.tls == second.tls
    assert TlsInfo("TLS 1.3", pki.stale_expiry, pki.leaf_expiry) == second.tls
    assert 1 == len(calls)


async def test_the_final_hop_decides(
    serve_app: ServeApp, make_probe_context: MakeProbeContext, pki: Pki
) -> None:
    """http:// redirected to https:// reports the TLS of the https:// answer."""
    secure = web.Application()
    secure.router.add_get("/health", _hello)
    secure_url = await serve_app(secure, ssl=pki.server)

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{secure_url}/health")

    plain = web.Application()
    plain.router.add_get("/health", bounce)
    ctx = make_probe_context(await serve_app(plain), ca_file=pki.ca_file)

    result = (await run(ctx, spec(follow_redirects="any"))).result

    assert result.success, result.detail
    assert TlsInfo("TLS 1.3", pki.stale_expiry, pki.leaf_expiry) == result.tls


# -- the exported families ------------------------------------------------------------------


def _run(probe: str, result: ProbeResult) -> ProbeRun:
    return ProbeRun(probe, "http", "app", "r1", "t1", time.time(), 0.1, result)


def test_collector_exports_the_last_runs_facts() -> None:
    """TLS families only for a TLS answer; probe_http_version 0 without any answer."""
    store = ResultStore()
    for name in ("secure", "plain", "down", "restored", "never"):
        store.register(name, "http", "app")
    tls = TlsInfo("TLS 1.3", 1_800_000_000.0, 1_900_000_000.0)
    ok = ProbeResult.ok(status_code=200)
    store.record(_run("secure", dataclasses.replace(ok, http_version=1.1, tls=tls)))
    store.record(_run("plain", dataclasses.replace(ok, http_version=1.0)))
    store.record(_run("down", ProbeResult.fail(Reason.CONNECT_REFUSED)))
    store.record(_run("restored", ProbeResult(True, status_code=200)))  # from the state file
    reg = build_registry(store, DaemonInfo())
    get = reg.get_sample_value

    assert 1_800_000_000.0 == get("probe_ssl_earliest_cert_expiry", {"probe": "secure"})
    assert 1_900_000_000.0 == get(
        "probe_ssl_last_chain_expiry_timestamp_seconds", {"probe": "secure"}
    )
    assert 1.0 == get("probe_tls_version_info", {"probe": "secure", "version": "TLS 1.3"})
    assert {"secure": 1.1, "plain": 1.0, "down": 0.0} == {
        name: get("probe_http_version", {"probe": name})
        for name in ("secure", "plain", "down", "restored", "never")
        if get("probe_http_version", {"probe": name}) is not None
    }
    text = generate_latest(reg).decode()
    ssl_lines = [line for line in text.splitlines() if line.startswith(SSL_FAMILIES)]
    assert all('probe="secure"' in line for line in ssl_lines), ssl_lines
    assert 3 == len(ssl_lines)


def test_collector_leaves_unknown_expiries_out() -> None:
    """No verified chain (insecure_skip_verify): no last-chain series; the others stay."""
    store = ResultStore()
    store.register("insecure", "http", "app")
    tls = TlsInfo("TLS 1.2", 1_800_000_000.0, None)
    store.record(_run("insecure", ProbeResult(True, status_code=200, http_version=1.1, tls=tls)))
    reg = build_registry(store, DaemonInfo())

    assert reg.get_sample_value("probe_ssl_earliest_cert_expiry", {"probe": "insecure"})
    assert None is reg.get_sample_value(
        "probe_ssl_last_chain_expiry_timestamp_seconds", {"probe": "insecure"}
    )
    assert 1.0 == reg.get_sample_value(
        "probe_tls_version_info", {"probe": "insecure", "version": "TLS 1.2"}
    )


# -- every HTTP kind in a live daemon -------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_terminator(upstream_port: int, context: ssl.SSLContext) -> AsyncIterator[str]:
    """A TLS-terminating TCP relay to 127.0.0.1:``upstream_port``; yields its https:// URL."""
    tasks: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (task := asyncio.current_task()) is not None:
            tasks.add(task)
        writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        writers.append(up_writer)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await server.wait_closed()


def _kinds_config(tmp_path: Path, secure_url: str, plain_url: str, ca_file: Path) -> Path:
    """One probe of every HTTP kind on the TLS target, one http probe on the plain one."""
    fixture = Path(__file__).parent.parent / "probed" / "demo" / "fixtures" / "indicators.json"
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[targets.secure]
base_url = "{secure_url}"
ca_file = "{ca_file}"

[targets.plain]
base_url = "{plain_url}"

[[probes]]
name = "health"
kind = "http"
target = "secure"
path = "/health"
interval = "1s"
timeout = "900ms"

[[probes]]
name = "login"
kind = "login"
target = "secure"
interval = "1s"
timeout = "900ms"
username = "probe@demo.example"
password = {{ env = "PROBED_TLS_TEST_PASSWORD" }}
token_path = "token"
follow_up = {{ path = "/api/me" }}

[[probes]]
name = "indicators"
kind = "fixture"
target = "secure"
path = "/v1/indicators"
interval = "1s"
timeout = "900ms"
input_file = "{fixture}"
expected_sha256 = "9001a9e87574331104aea0c07cb770982017eb0ac24a00cefcc6f0e28b17d853"

[[probes]]
name = "events"
kind = "sse"
target = "secure"
path = "/api/v1/events/stream"
idle_timeout = "10s"
lag_field = "enqueued_at"
sequence_field = "seq"

[[probes]]
name = "reflect"
kind = "reflect"
target = "secure"
stream = "events"
interval = "2s"
deadline = "500ms"
lost_after = "1s"
timeout = "1500ms"

[[probes]]
name = "import_trades"
kind = "import"
target = "secure"
interval = "5s"
json_body = {{ broker = "mock", trades = 5 }}
progress_source = "stream"
stream = "events"
deadline = "4s"
stall_after = "3s"
timeout = "4500ms"

[[probes]]
name = "plain"
kind = "http"
target = "plain"
path = "/health"
interval = "1s"
timeout = "900ms"
"""
    )
    return path


SECURE_PROBES = ("health", "login", "indicators", "reflect", "import_trades")


async def test_every_http_kind_exports_the_facts_live(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http, login, fixture, reflect and import over TLS; plain http without ssl series."""
    monkeypatch.setenv("PROBED_TLS_TEST_PASSWORD", DEMO_PASSWORD)
    async with (
        # the import's job in 0.5 s, not the demo's 2 s: its run is all the test waits for
        DemoTarget(password=DEMO_PASSWORD, seed=1, faults=Faults(import_duration=0.5)) as demo,
        tls_terminator(demo.port, pki.server) as secure_url,
    ):
        config = _kinds_config(tmp_path, secure_url, demo.base_url, pki.ca_file)
        async with live_daemon(config) as (_, task, base):

            def done(text: str) -> bool:
                ready = all(
                    sample(text, "probe_ssl_earliest_cert_expiry", probe=name)
                    for name in SECURE_PROBES
                )
                return ready and 1.1 == sample(text, "probe_http_version", probe="plain")

            text, _ = await watch_metrics(base, task, 0.0, done)

    for name in SECURE_PROBES:
        assert pki.stale_expiry == sample(text, "probe_ssl_earliest_cert_expiry", probe=name)
        assert pki.leaf_expiry == sample(
            text, "probe_ssl_last_chain_expiry_timestamp_seconds", probe=name
        )
        assert 1.0 == sample(text, "probe_tls_version_info", probe=name, version="TLS 1.3")
        assert 1.1 == sample(text, "probe_http_version", probe=name), name
    assert 1.1 == sample(text, "probe_http_version", probe="plain")
    assert [] == [
        line
        for line in text.splitlines()
        if line.startswith(SSL_FAMILIES) and 'probe="plain"' in line
    ]
    assert 'probe="events"' not in "".join(
        line for line in text.splitlines() if line.startswith(SSL_FAMILIES)
    )
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    assert (0, b"", b"") == (proc.returncode, out, err)
