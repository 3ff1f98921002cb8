"""The http probe kind against real loopback servers, run through ``run_probe``."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import trustme
from aiohttp import web
from conftest import HTTP_CLIENTS, free_port
from cycles import cyclic_garbage
from probeservers import SEEN, Outcome, fails, ok, recording_app, run

from probed.config import HttpProbe, JsonAssertion, TargetConfig
from probed.http.session import PHASES
from probed.http.tls import ssl_for
from probed.probes.base import ProbeContext, run_probe
from probed.probes.exchange import lookup, parse_retry_after
from probed.results import ProbeResult, Reason

if TYPE_CHECKING:
    from conftest import MakeProbeContext, NetworkFault, ServeApp, StubResolver


@pytest.fixture(params=HTTP_CLIENTS)
def http_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the http kind's own client and on aiohttp."""
    return str(request.param)


PLAIN_PHASES = tuple(phase for phase in PHASES if phase != "tls")
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")
TEXT = "service healthy v1"
DOCUMENT = {"status": "up", "items": [{"id": 1, "tags": ["a"]}], "ok": True, "n": 3}


async def _json(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


async def _text(request: web.Request) -> web.Response:
    return web.Response(text=TEXT)


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]))


async def _rate_limited(request: web.Request) -> web.Response:
    form = request.match_info["form"]
    headers: dict[str, str] = {}
    if form == "delta":
        headers["Retry-After"] = "7"
    elif form == "date":
        headers["Retry-After"] = email.utils.formatdate(time.time() + 120, usegmt=True)
    elif form == "invalid":
        headers["Retry-After"] = "soon"
    return web.Response(status=429, headers=headers)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return web.Response(text="done")


async def _slow_body(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"first ")
    # at least 0.1 s by the clock: uvloop's timers count whole milliseconds and may fire early
    deadline = time.monotonic() + 0.1
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(left)
    await resp.write(b"second")
    await resp.write_eof()
    return resp


def _found(location: str) -> web.Response:
    """A 302 answered, not raised: a raised ``HTTPFound`` leaves the test server's own
    reference cycle, which the garbage tests below would count."""
    return web.Response(status=302, headers={"Location": location})


async def _loop(request: web.Request) -> web.Response:
    return _found("/loop")


async def _redirect(request: web.Request) -> web.Response:
    await asyncio.sleep(0.03)  # every hop takes a while to answer
    hops = int(request.match_info["n"])
    if hops > 0:
        return _found(f"/redirect/{hops - 1}")
    return web.Response(text="landed")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 65536)


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()  # chunked, no Content-Length: only the cap stops the client
    await resp.prepare(request)
    chunk = b"y" * 4096
    for _ in range(4096):
        await resp.write(chunk)
    return resp


async def _deep(request: web.Request) -> web.Response:
    return web.Response(text="[" * 200_000, content_type="application/json")


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method})


def http_spec(**fields: Any) -> HttpProbe:
    """An http probe on target ``t`` with ``fields`` overriding the defaults."""
    return HttpProbe(**{"name": "web", "target": "t", "timeout": "1s", **fields})


@pytest.fixture
async def app() -> web.Application:
    """The purpose-built target, one route per behaviour; ``SEEN`` records every request."""
    return recording_app(
        web.get("/json", _json),
        web.get("/text", _text),
        web.route("*", "/status/{code}", _status),
        web.get("/ratelimit/{form}", _rate_limited),
        web.get("/slow/{ms}", _slow),
        web.get("/slowbody", _slow_body),
        web.get("/loop", _loop),
        web.get("/redirect/{n}", _redirect),
        web.get("/big", _big),
        web.get("/endless", _endless),
        web.route("*", "/echo", _echo),
        web.get("/deep", _deep),
    )


FAULTS = [
    ok("ok", path="/json"),
    fails("status", Reason.STATUS, "http_503", path="/status/503"),
    ok("status_expected", path="/status/503", expect_status=[200, 503]),
    fails("rate_limited", Reason.RATE_LIMITED, "http_429", path="/ratelimit/delta"),
    ok("rate_limit_expected", path="/ratelimit/delta", expect_status=[429]),
    ok("body_regex_matches", path="/text", body_regex=r"healthy v\d"),
    fails(
        "body_regex_mismatch",
        Reason.BODY_MISMATCH,
        "body_mismatch",
        path="/text",
        body_regex="degraded",
    ),
    ok("body_not_regex_absent", path="/text", body_not_regex="error|degraded"),
    fails(
        "body_not_regex_matches",
        Reason.BODY_MISMATCH,
        "body_mismatch",
        path="/text",
        body_not_regex="healthy",
    ),
    fails(
        "invalid_json",
        Reason.INVALID_JSON,
        "invalid_json",
        path="/text",
        json_checks=[JsonAssertion(path="status")],
    ),
    fails(
        "json_nested_too_deep",
        Reason.INVALID_JSON,
        "invalid_json",
        path="/deep",
        json_checks=[JsonAssertion(path="status")],
    ),
    ok(
        "json_checks_pass",
        path="/json",
        json_checks=[
            JsonAssertion(path="status", equals="up"),
            JsonAssertion(path="items.0.id", equals=1),
            JsonAssertion(path="items.0.tags.0", equals="a"),
            JsonAssertion(path="ok", equals=True),
            JsonAssertion(path="n", equals=3.0),
            JsonAssertion(path="gone", exists=False),
        ],
    ),
    *[
        fails(case_id, Reason.JSON_MISMATCH, "json_mismatch", path="/json", json_checks=[check])
        for case_id, check in [
            ("json_missing_path", JsonAssertion(path="data.version")),
            ("json_index_out_of_range", JsonAssertion(path="items.5.id")),
            ("json_wrong_value", JsonAssertion(path="status", equals="down")),
            ("json_bool_is_not_a_number", JsonAssertion(path="ok", equals=1)),
            ("json_unexpected_path", JsonAssertion(path="status", exists=False)),
        ]
    ],
    fails("slow", Reason.SLOW, "slow", path="/slow/150", latency_threshold="50ms"),
    fails("timeout", Reason.TIMEOUT, "timeout", path="/slow/1500", timeout="100ms"),
    fails("redirect_loop", Reason.TOO_MANY_REDIRECTS, "too_many_redirects", path="/loop"),
    ok("redirects_within_limit", path="/redirect/2", max_redirects=2),
    fails(
        "redirects_over_limit",
        Reason.TOO_MANY_REDIRECTS,
        "too_many_redirects",
        path="/redirect/2",
        max_redirects=1,
    ),
    fails(
        "no_redirect_allowed",
        Reason.TOO_MANY_REDIRECTS,
        "too_many_redirects",
        path="/redirect/1",
        max_redirects=0,
    ),
    fails(
        "redirect_not_followed",
        Reason.STATUS,
        "http_302",
        path="/redirect/1",
        follow_redirects=False,
    ),
    fails("oversize_content_length", Reason.OVERSIZE, "oversize", path="/big", max_body_size=1000),
    fails("oversize_streamed", Reason.OVERSIZE, "oversize", path="/endless", max_body_size=1000),
    ok("body_at_cap", path="/big", max_body_size=65536),
    ok("head_announcing_big_body", path="/big", method="HEAD", max_body_size=1000),
]


@pytest.mark.parametrize(("fields", "expected"), FAULTS)
async def test_http_faults(ctx: ProbeContext, fields: dict[str, Any], expected: Outcome) -> None:
    """Each response-level fault yields the expected success, reason and error code."""
    result = (await run(ctx, http_spec(**fields))).result

    assert expected == Outcome.of(result), result.detail


async def test_network_faults(network_fault: NetworkFault) -> None:
    """Each network-level fault yields its reason (refused, DNS, unreachable, broken HTTP)."""
    result = (await run(network_fault.ctx, http_spec(path="/"))).result

    assert (False, network_fault.reason) == (result.success, result.reason), result.detail


FAILURES = [case for case in FAULTS if not case.values[1].success]  # type: ignore[union-attr]


@pytest.mark.parametrize(("fields", "expected"), FAILURES)
async def test_a_failed_run_leaves_no_reference_cycle(
    ctx: ProbeContext, fields: dict[str, Any], expected: Outcome
) -> None:
    """A failure is kept as a reason and a detail: the exception, its traceback and the
    response they hold are freed by reference counting, not left for a full collection
    (which holds the memory until it comes and then stalls the loop)."""
    spec = http_spec(**fields)
    await run(ctx, spec)  # first-use caches are not garbage
    with cyclic_garbage() as left:
        for _ in range(3):
            result = (await run(ctx, spec)).result
    assert expected == Outcome.of(result)
    assert [] == left


async def test_a_network_fault_leaves_no_reference_cycle(network_fault: NetworkFault) -> None:
    """As above for refused, DNS, unreachable and broken HTTP."""
    spec = http_spec(path="/")
    await run(network_fault.ctx, spec)
    with cyclic_garbage() as left:
        for _ in range(3):
            result = (await run(network_fault.ctx, spec)).result
    assert network_fault.reason == result.reason
    assert [] == left


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_refused_connection_names_the_target_as_a_url(
    scheme: str, make_probe_context: MakeProbeContext
) -> None:
    """A refused connection's detail says scheme://host:port, never a Python object's repr."""
    port = free_port()
    ctx = make_probe_context(f"{scheme}://127.0.0.1:{port}")

    result = (await run(ctx, http_spec(path="/"))).result

    assert Reason.CONNECT_REFUSED == result.reason
    assert f"cannot connect to {scheme}://127.0.0.1:{port}: Connection refused" == result.detail
    assert "object at 0x" not in result.detail


async def test_dns_failure_never_queries_real_dns(
    make_probe_context: MakeProbeContext, stub_resolver: StubResolver
) -> None:
    """A ``.invalid`` host is answered by the injected resolver with EAI_NONAME."""
    ctx = make_probe_context("http://probe-target.invalid:8080")

    result = (await run(ctx, http_spec(path="/"))).result

    assert Reason.DNS == result.reason
    assert ["probe-target.invalid"] == stub_resolver.queries


async def test_dropped_connection_is_not_retried(make_probe_context: MakeProbeContext) -> None:
    """A fresh connection dropped by the server fails the run; no silent retry opens another."""
    connections = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        ctx = make_probe_context(f"http://127.0.0.1:{port}")
        result = (await run(ctx, http_spec(path="/", method="GET"))).result
    finally:
        server.close()
        await server.wait_closed()

    assert (Reason.PROTOCOL_ERROR, 1) == (result.reason, connections)


async def test_status_failure_keeps_status_code_and_phases(ctx: ProbeContext) -> None:
    """A failed check still reports the status code and the request phases."""
    result = (await run(ctx, http_spec(path="/status/503"))).result

    assert 503 == result.status_code
    assert set(PLAIN_PHASES) == set(result.phases)


@pytest.mark.parametrize(
    ("form", "low", "high"),
    [("delta", 7.0, 7.0), ("date", 100.0, 121.0)],
)
async def test_rate_limited_records_retry_after(
    ctx: ProbeContext, form: str, low: float, high: float
) -> None:
    """A 429 reports ``retry_after`` in seconds from either Retry-After form."""
    result = (await run(ctx, http_spec(path=f"/ratelimit/{form}"))).result
    retry_after = result.observations["retry_after"]

    assert Reason.RATE_LIMITED == result.reason
    assert isinstance(retry_after, float)
    assert low <= retry_after <= high


@pytest.mark.parametrize("form", ["invalid", "absent"])
async def test_rate_limited_without_usable_retry_after(ctx: ProbeContext, form: str) -> None:
    """A 429 with a missing or invalid Retry-After records ``retry_after`` None."""
    result = (await run(ctx, http_spec(path=f"/ratelimit/{form}"))).result

    assert (Reason.RATE_LIMITED, None) == (result.reason, result.observations["retry_after"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),
        ("1.5", None),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After parses delta-seconds and HTTP-dates (relative to now), else None."""
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT

    assert expected == parse_retry_after(value, now=now)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("status", "up"),
        ("items.0.id", 1),
        ("items.0.tags.0", "a"),
        ("items", DOCUMENT["items"]),
    ],
)
def test_lookup_finds_dotted_paths(path: str, expected: object) -> None:
    """Dotted paths walk objects by key and lists by integer index."""
    assert expected == lookup(DOCUMENT, path)


@pytest.mark.parametrize("path", ["missing", "items.1", "items.x", "status.0", "items.-1", "n.a"])
def test_lookup_raises_for_absent_paths(path: str) -> None:
    """A missing key, an index out of range or a non-container part is a LookupError."""
    with pytest.raises(LookupError):
        lookup(DOCUMENT, path)


async def test_json_mismatch_details(ctx: ProbeContext) -> None:
    """JSON mismatches name the path and, for a wrong value, both values."""
    missing = await run(
        ctx, http_spec(path="/json", json_checks=[JsonAssertion(path="data.version")])
    )
    wrong = await run(
        ctx, http_spec(path="/json", json_checks=[JsonAssertion(path="status", equals="down")])
    )

    assert "path 'data.version' missing" == missing.result.detail
    assert "path 'status' is 'up', expected 'down'" == wrong.result.detail


async def test_deep_json_body_is_invalid_json_with_the_bound(ctx: ProbeContext) -> None:
    """A body nested 200,000 deep fails invalid_json naming the bound, never internal_error."""
    deep = await run(ctx, http_spec(path="/deep", json_checks=[JsonAssertion(path="x")]))

    assert "body is not valid JSON: JSON nested deeper than 256 levels" == deep.result.detail


async def test_ok_reports_status_and_content_length(ctx: ProbeContext) -> None:
    """A successful run reports the status code and the body length."""
    result = (await run(ctx, http_spec(path="/big"))).result

    assert (200, {"content_length": 65536}) == (result.status_code, dict(result.observations))


async def test_traceparent_on_every_request(app: web.Application, ctx: ProbeContext) -> None:
    """Every request, redirect hops included, carries the run's W3C traceparent."""
    runs = [await run(ctx, http_spec(path=p)) for p in ("/json", "/redirect/2", "/status/503")]

    seen = app[SEEN]
    assert 5 == len(seen)
    matches = [TRACEPARENT.fullmatch(s.traceparent or "") for s in seen]
    assert all(matches), [s.traceparent for s in seen]
    trace_ids = [m.group(1) for m in matches if m]
    assert [runs[0].trace_id, *[runs[1].trace_id] * 3, runs[2].trace_id] == trace_ids


@pytest.mark.parametrize(("fresh", "connections"), [(True, 3), (False, 1)])
async def test_fresh_connection_setting(
    app: web.Application, ctx: ProbeContext, fresh: bool, connections: int
) -> None:
    """``fresh_connection`` opens a new TCP connection per run; otherwise one is reused."""
    for _ in range(3):
        assert (await run(ctx, http_spec(path="/json", fresh_connection=fresh))).success

    assert connections == len({id(s.connection) for s in app[SEEN]})


async def test_phases_present_non_negative_and_within_duration(
    app: web.Application, serve_app: ServeApp, make_probe_context: MakeProbeContext
) -> None:
    """Plain HTTP reports all phases but ``tls``, none negative, together no longer than the run."""
    base_url = await serve_app(app)
    ctx = make_probe_context(base_url.replace("127.0.0.1", "probe.test"))

    probe_run = await run(ctx, http_spec(path="/json"))
    phases = probe_run.result.phases

    assert probe_run.success, probe_run.result.detail
    assert list(PLAIN_PHASES) == list(phases)
    assert all(value >= 0 for value in phases.values()), phases
    assert phases["resolve"] > 0
    assert phases["connect"] > 0
    assert sum(phases.values()) <= probe_run.duration


async def test_pooled_reuse_has_no_connect_phase(ctx: ProbeContext) -> None:
    """A run on a reused pooled connection spends no time connecting."""
    spec = http_spec(path="/json", fresh_connection=False)
    first = await run(ctx, spec)
    second = await run(ctx, spec)

    assert first.result.phases["connect"] > 0
    assert 0.0 == second.result.phases["connect"]


async def test_processing_sums_over_redirect_hops(ctx: ProbeContext) -> None:
    """``processing`` adds up the server time of every redirect hop (3 hops x 30 ms)."""
    probe_run = await run(ctx, http_spec(path="/redirect/2"))
    phases = probe_run.result.phases

    assert probe_run.success
    assert phases["processing"] >= 0.09
    assert sum(phases.values()) <= probe_run.duration


async def test_transfer_covers_reading_the_body(ctx: ProbeContext) -> None:
    """``transfer`` runs from the response headers until the body has been read."""
    phases = (await run(ctx, http_spec(path="/slowbody"))).result.phases

    assert phases["transfer"] >= 0.1
    assert phases["processing"] < 0.1


@pytest.mark.parametrize(
    ("fields", "content_type", "body"),
    [
        ({"method": "POST", "body": "plain text"}, "application/octet-stream", b"plain text"),
        ({"method": "PUT", "json_body": {"a": [1, 2]}}, "application/json", b'{"a": [1, 2]}'),
        ({"method": "POST", "json_body": []}, "application/json", b"[]"),
        ({"method": "DELETE"}, "", b""),
    ],
)
async def test_request_method_and_body(
    app: web.Application,
    ctx: ProbeContext,
    fields: dict[str, Any],
    content_type: str,
    body: bytes,
) -> None:
    """The probe sends its method with ``body`` or ``json_body`` as given."""
    assert (await run(ctx, http_spec(path="/echo", **fields))).success

    (seen,) = app[SEEN]
    assert (fields["method"], content_type, body) == (seen.method, seen.content_type, seen.body)


async def test_probe_headers_cannot_override_traceparent(
    app: web.Application, ctx: ProbeContext
) -> None:
    """A ``traceparent`` in the probe's headers is replaced by the run's own."""
    spec = http_spec(path="/json", headers={"traceparent": "spoofed"})

    probe_run = await run(ctx, spec)

    (seen,) = app[SEEN]
    assert probe_run.trace_id in (seen.traceparent or "")


async def test_probe_fn_exception_is_internal_error(ctx: ProbeContext) -> None:
    """A bug in a probe function becomes ``internal_error``, not a crash."""

    async def broken(ctx: ProbeContext, spec: Any) -> ProbeResult:
        raise RuntimeError("bug")

    probe_run = await run_probe(broken, ctx, http_spec(path="/json"))

    assert (False, Reason.INTERNAL_ERROR) == (probe_run.success, probe_run.result.reason)


# --- TLS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key."""

    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A throwaway self-signed certificate made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)


@pytest.fixture
async def tls_base_url(app: web.Application, serve_app: ServeApp, certificate: Certificate) -> str:
    """``app`` served over TLS with the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert, certificate.key)
    return await serve_app(app, ssl=context)


@pytest.mark.parametrize(
    ("target", "success", "reason"),
    [
        pytest.param({}, False, Reason.TLS, id="untrusted_certificate"),
        pytest.param({"insecure_skip_verify": True}, True, None, id="insecure_skip_verify"),
        pytest.param({"ca_file": "CERT"}, True, None, id="ca_file"),
        pytest.param({"ca_file": "MISSING"}, False, Reason.TLS, id="ca_file_unreadable"),
    ],
)
async def test_tls(
    tls_base_url: str,
    make_probe_context: MakeProbeContext,
    certificate: Certificate,
    target: dict[str, Any],
    success: bool,
    reason: Reason | None,
) -> None:
    """Certificate verification fails as ``tls`` unless skipped or trusted via ``ca_file``."""
    paths = {"CERT": certificate.cert, "MISSING": certificate.cert.with_name("missing.pem")}
    if "ca_file" in target:
        target = {"ca_file": paths[target["ca_file"]]}
    ctx = make_probe_context(tls_base_url, **target)

    result = (await run(ctx, http_spec(path="/json"))).result

    assert (success, reason) == (result.success, result.reason), result.detail


def test_ca_file_context_loaded_once(certificate: Certificate) -> None:
    """A target's ``ca_file`` is loaded into one SSL context that later requests reuse."""
    target = TargetConfig(base_url="https://127.0.0.1", ca_file=certificate.cert)

    first = ssl_for(target)

    assert first is ssl_for(target)


def test_every_tls_context_is_shared_and_timed(certificate: Certificate) -> None:
    """The default, ``insecure_skip_verify`` and ``ca_file`` contexts are shared and timed."""
    targets = [
        TargetConfig(base_url="https://x.test"),
        TargetConfig(base_url="https://x.test", insecure_skip_verify=True),
        TargetConfig(base_url="https://x.test", ca_file=certificate.cert),
    ]

    contexts = [ssl_for(target) for target in targets]

    assert contexts == [ssl_for(target) for target in targets]
    assert 3 == len({id(context) for context in contexts})
    assert [ssl.CERT_REQUIRED, ssl.CERT_NONE, ssl.CERT_REQUIRED] == [
        context.verify_mode for context in contexts
    ]
    assert all(
        issubclass(context.sslobject_class, ssl.SSLObject)
        and context.sslobject_class is not ssl.SSLObject
        for context in contexts
    ), [context.sslobject_class for context in contexts]


@contextlib.asynccontextmanager
async def delaying_proxy(upstream: str, delay: float) -> AsyncIterator[str]:
    """A TCP proxy to ``upstream`` holding the server's first bytes back ``delay`` seconds.

    Yields the proxy's ``https`` base URL; with TLS upstream this delays the handshake only.
    """
    upstream_port = urlsplit(upstream).port
    relays: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if hold:
                    await asyncio.sleep(hold)
                    hold = 0.0
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        if (task := asyncio.current_task()) is not None:
            relays.add(task)
        writers.append(client_writer)
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        writers.append(server_writer)
        await asyncio.gather(
            pipe(client_reader, server_writer, 0.0), pipe(server_reader, client_writer, delay)
        )

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:  # ends every pipe: its reads see EOF
            writer.close()
        if relays:
            await asyncio.wait(relays, timeout=5)
        await server.wait_closed()


@pytest.mark.parametrize(
    "target",
    [
        pytest.param({"insecure_skip_verify": True}, id="insecure_skip_verify"),
        pytest.param({"ca_file": "CERT"}, id="ca_file"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/json"), ("HEAD", "/json"), ("GET", "/redirect/1")]
)
async def test_tls_phase_on_fresh_connection(
    tls_base_url: str,
    make_probe_context: MakeProbeContext,
    certificate: Certificate,
    target: dict[str, Any],
    method: str,
    path: str,
) -> None:
    """A fresh HTTPS connection reports a ``tls`` phase apart from ``connect``, within the run."""
    if "ca_file" in target:
        target = {"ca_file": certificate.cert}
    ctx = make_probe_context(tls_base_url, **target)

    probe_run = await run(ctx, http_spec(path=path, method=method))
    phases = probe_run.result.phases

    assert probe_run.success, probe_run.result.detail
    assert list(PHASES) == list(phases)
    assert 0 < phases["tls"]
    assert 0 <= phases["connect"]
    assert all(0 <= value for value in phases.values()), phases
    assert probe_run.duration >= sum(phases.values())


async def test_tls_phase_zero_on_reused_pooled_connection(
    app: web.Application,
    tls_base_url: str,
    make_probe_context: MakeProbeContext,
    certificate: Certificate,
) -> None:
    """A run on a reused pooled HTTPS connection reports no connect and no TLS time."""
    ctx = make_probe_context(tls_base_url, ca_file=certificate.cert)
    spec = http_spec(path="/json", fresh_connection=False)

    first = (await run(ctx, spec)).result
    second = (await run(ctx, spec)).result

    assert (True, True) == (first.success, second.success)
    assert 1 == len({id(seen.connection) for seen in app[SEEN]})
    assert 0 < first.phases["tls"]
    assert 0 < first.phases["connect"]
    assert (0.0, 0.0) == (second.phases["connect"], second.phases["tls"])


@pytest.mark.parametrize(("path", "handshakes"), [("/json", 1), ("/redirect/1", 2)])
async def test_slow_handshake_counts_as_tls_not_connect(
    tls_base_url: str,
    make_probe_context: MakeProbeContext,
    certificate: Certificate,
    path: str,
    handshakes: int,
) -> None:
    """A handshake held back 100 ms per connection counts in ``tls``; ``connect`` stays small."""
    async with delaying_proxy(tls_base_url, 0.1) as proxy_url:
        ctx = make_probe_context(proxy_url, ca_file=certificate.cert)
        probe_run = await run(ctx, http_spec(path=path))
    phases = probe_run.result.phases

    assert probe_run.success, probe_run.result.detail
    assert 0.09 * handshakes <= phases["tls"]
    assert 0.05 > phases["connect"]
    assert probe_run.duration >= sum(phases.values())


def test_system_cas_are_loaded_once_per_process(tmp_path: Path) -> None:
    """probed's verifying context is aiohttp's own (the system CAs cost ~2.3 MB each load)."""
    import aiohttp.connector

    from probed.http import tls as _http_common

    target = TargetConfig(base_url="https://127.0.0.1:1")
    assert aiohttp.connector._SSL_CONTEXT_VERIFIED is ssl_for(target)
    assert ssl.CERT_REQUIRED == ssl_for(target).verify_mode
    # a ca_file context is made at configure time and reused; a bad one fails the run instead
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with_ca = TargetConfig(base_url="https://127.0.0.1:1", ca_file=tmp_path / "ca.pem")
    missing = TargetConfig(base_url="https://127.0.0.1:1", ca_file=tmp_path / "none.pem")
    _http_common.prepare_tls([with_ca, missing])
    assert ssl_for(with_ca) is _http_common._ca_contexts[str(tmp_path / "ca.pem")][1]
    assert str(tmp_path / "none.pem") not in _http_common._ca_contexts
