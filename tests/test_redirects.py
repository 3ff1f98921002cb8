"""The redirect policy of HTTP probes, against two real loopback servers.

The probed target serves on 127.0.0.1; "elsewhere" is a second server (127.0.0.2 for
another host, or 127.0.0.1 on another port or scheme). Both record every request they
receive, headers and body, so a test can show which configured secret went where.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from aiohttp import web
from conftest import HTTP_CLIENTS
from faultservers import Received, WebServer
from probeservers import run

from probed.config import HttpProbe, LoginProbe, SecretRef, SseStream
from probed.http.classify import classify_exception
from probed.http.redirects import RedirectPolicy, RedirectRefused, request_following
from probed.model import SecretStr
from probed.probes.base import ProbeContext
from probed.results import ProbeResult, Reason

if TYPE_CHECKING:
    from conftest import MakeProbeContext


@pytest.fixture(params=HTTP_CLIENTS)
def http_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the http kind's own client and on aiohttp."""
    return str(request.param)


API_KEY = "redir-key-5e1f0c77"
"""A secret header of the target (``X-Api-Key``)."""
PROBE_TOKEN = "redir-probe-tok-21ab"
"""A secret header of the probe (``X-Probe-Token``)."""
PASSWORD = "redir-Pass-90d4e2"
"""The login probe's password."""
SECRETS = (API_KEY, PROBE_TOKEN, PASSWORD)
QUERY_SECRET = "sig=redir-query-7c"
"""Carried in the query string of every cross-origin Location: never in a result."""


def _leaks(requests: list[Received]) -> list[str]:
    """The configured secrets found anywhere in ``requests`` (first 6 characters)."""
    return [secret[:6] for r in requests for secret in SECRETS if r.contains(secret)]


ELSEWHERE = web.AppKey("elsewhere", str)


async def _landing(request: web.Request) -> web.Response:
    return web.json_response({"token": "landed-token"})


async def _away(request: web.Request) -> web.Response:
    location = f"{request.app[ELSEWHERE]}/landing?{QUERY_SECRET}"
    return web.Response(status=int(request.match_info["code"]), headers={"Location": location})


async def _here(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), headers={"Location": "/landing"})


def _app(elsewhere: str = "") -> web.Application:
    app = web.Application()
    app[ELSEWHERE] = elsewhere
    app.add_routes(
        [
            web.route("*", "/landing", _landing),
            web.route("*", "/away/{code}", _away),
            web.route("*", "/here/{code}", _here),
        ]
    )
    return app


@dataclass
class Pair:
    """The probed target and the server its redirects point to, each recording every request."""

    origin: WebServer
    elsewhere: WebServer
    ca_file: Path | None = None


StartPair = Callable[..., Awaitable[Pair]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway CA that issued the TLS target's certificate for 127.0.0.1."""
    return trustme.CA()


@pytest.fixture
async def start_pair(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[StartPair]:
    """Start a target and its elsewhere: ``await start_pair(host="127.0.0.2", tls=False)``."""
    servers: list[WebServer] = []

    async def start(*, host: str = "127.0.0.2", tls: bool = False) -> Pair:
        context, ca_file = None, None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            ca_file = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
        elsewhere = WebServer(_app(), host=host)
        await elsewhere.start()
        servers.append(elsewhere)
        origin = WebServer(_app(elsewhere.base_url()), ssl_context=context)
        await origin.start()
        servers.append(origin)
        return Pair(origin, elsewhere, ca_file)

    yield start
    for server in servers:
        await server.stop()


def _context(make_probe_context: MakeProbeContext, pair: Pair) -> ProbeContext:
    """A context for ``pair.origin`` whose target sends ``X-Api-Key`` (a secret) and ``X-Plain``."""
    ctx = make_probe_context(
        pair.origin.base_url(),
        headers={"X-Api-Key": SecretRef(env="REDIRECT_API_KEY"), "X-Plain": "visible"},
        ca_file=pair.ca_file,
    )
    ctx.target._store_secret("headers.X-Api-Key", SecretStr(API_KEY))
    return ctx


def _http(**fields: Any) -> HttpProbe:
    """An http probe sending the secret header ``X-Probe-Token``, ``fields`` overriding."""
    spec = HttpProbe(
        **{
            "name": "web",
            "target": "t",
            "timeout": "2s",
            "headers": {"X-Probe-Token": SecretRef(env="REDIRECT_PROBE_TOKEN")},
            **fields,
        }
    )
    spec._store_secret("headers.X-Probe-Token", SecretStr(PROBE_TOKEN))
    return spec


def _login(**fields: Any) -> LoginProbe:
    """A login probe posting ``PASSWORD`` as JSON, ``fields`` overriding."""
    spec = LoginProbe(
        **{
            "name": "login",
            "target": "t",
            "username": "alice",
            "password": SecretRef(env="REDIRECT_PASSWORD"),
            "timeout": "2s",
            "latency_threshold": None,
            **fields,
        }
    )
    spec._store_secret("password", SecretStr(PASSWORD))
    return spec


def _refused(result: ProbeResult) -> tuple[bool, Reason | None]:
    return result.success, result.reason


REFUSED = (False, Reason.REDIRECTED_TO_OTHER_ORIGIN)


@pytest.mark.parametrize(
    ("code", "method"), [(302, "GET"), (307, "POST"), (308, "PUT")], ids=["302", "307", "308"]
)
async def test_redirect_to_another_host_is_refused_by_default(
    start_pair: StartPair, make_probe_context: MakeProbeContext, code: int, method: str
) -> None:
    """A redirect to another host fails ``redirected_to_other_origin``; nothing reaches it."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path=f"/away/{code}", method=method, body="hello"))).result

    assert REFUSED == _refused(result), result.detail
    assert code == result.status_code
    assert [] == pair.elsewhere.received


async def test_refusal_names_the_origin_but_never_the_query(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """The failure detail names scheme://host:port of the redirect target, not its query."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path="/away/302"))).result

    assert pair.elsewhere.base_url() in result.detail
    assert QUERY_SECRET not in result.detail
    assert "/landing" not in result.detail


@pytest.mark.parametrize("policy", [True, "same-host", "any"])
async def test_login_307_to_another_host_never_resends_the_password(
    start_pair: StartPair, make_probe_context: MakeProbeContext, policy: str | bool
) -> None:
    """A 307 of the login POST to another host fails; the password is not re-sent, even on any.

    ``True`` is the old boolean setting, which now means ``same-origin``.
    """
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _login(path="/away/307", follow_redirects=policy))).result

    assert REFUSED == _refused(result), result.detail
    assert [] == _leaks(pair.elsewhere.received)
    assert PASSWORD not in result.detail


async def test_login_302_on_any_follows_as_get_without_the_password(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """On ``any``, a 302 of the login POST is followed as a GET without body or secrets."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _login(path="/away/302", follow_redirects="any"))).result

    assert result.success, result.detail
    assert [("GET", b"")] == [(hit.method, hit.body) for hit in pair.elsewhere.received]
    assert [] == _leaks(pair.elsewhere.received)


@pytest.mark.parametrize("policy", [True, "same-host", "any"])
async def test_https_to_http_is_refused(
    start_pair: StartPair, make_probe_context: MakeProbeContext, policy: str | bool
) -> None:
    """A redirect from https to http fails even to the same host, unless explicitly allowed."""
    pair = await start_pair(host="127.0.0.1", tls=True)
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path="/away/302", follow_redirects=policy))).result

    assert REFUSED == _refused(result), result.detail
    assert pair.elsewhere.base_url() in result.detail
    assert "https to http" in result.detail
    assert [] == pair.elsewhere.received


async def test_https_to_http_with_opt_in_follows_without_secrets(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """``allow_insecure_redirects`` lets a downgrade through on ``any``, secrets stripped."""
    pair = await start_pair(host="127.0.0.1", tls=True)
    ctx = _context(make_probe_context, pair)
    spec = _http(path="/away/302", follow_redirects="any", allow_insecure_redirects=True)

    result = (await run(ctx, spec)).result

    assert result.success, result.detail
    assert 1 == len(pair.elsewhere.received)
    assert [] == _leaks(pair.elsewhere.received)


async def test_same_origin_redirect_keeps_the_secrets(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """A redirect within the target's origin is followed with its secret headers, as before."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path="/here/302"))).result

    assert result.success, result.detail
    landing = pair.origin.received[-1]
    assert ("/landing", API_KEY, PROBE_TOKEN) == (
        landing.path_qs,
        landing.header("X-Api-Key"),
        landing.header("X-Probe-Token"),
    )


async def test_any_follows_to_another_host_without_secrets(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """``any`` follows to another host, dropping secret headers, Authorization and Cookie."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)
    plain = {"Authorization": "Basic cGxhaW4=", "Cookie": "c=1"}
    spec = _http(path="/away/302", follow_redirects="any")
    spec = spec.model_copy(update={"headers": {**spec.headers, **plain}})
    spec._store_secret("headers.X-Probe-Token", SecretStr(PROBE_TOKEN))
    spec._finish_headers()

    result = (await run(ctx, spec)).result

    assert result.success, result.detail
    (hit,) = pair.elsewhere.received
    assert [] == _leaks([hit])
    assert (None, None, "visible") == (
        hit.header("Authorization"),
        hit.header("Cookie"),
        hit.header("X-Plain"),
    )
    assert "Basic cGxhaW4=" == pair.origin.received[0].header("Authorization")


async def test_same_host_follows_to_another_port_without_secrets(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """``same-host`` follows to another port of the host (secrets stay with the origin)."""
    pair = await start_pair(host="127.0.0.1")
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path="/away/302", follow_redirects="same-host"))).result

    assert result.success, result.detail
    assert [] == _leaks(pair.elsewhere.received)
    assert 1 == len(pair.elsewhere.received)


async def test_same_host_refuses_another_host(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """``same-host`` refuses a redirect to another host."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path="/away/302", follow_redirects="same-host"))).result

    assert REFUSED == _refused(result), result.detail
    assert [] == pair.elsewhere.received


@pytest.mark.parametrize("policy", ["none", False])
async def test_none_reports_the_redirect_status(
    start_pair: StartPair, make_probe_context: MakeProbeContext, policy: str | bool
) -> None:
    """``none`` (or ``false``) follows nothing: the 3xx status is the answer checked."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path="/away/302", follow_redirects=policy))).result

    assert (False, Reason.STATUS, "http_302") == (
        result.success,
        result.reason,
        result.error_code,
    )
    assert [] == pair.elsewhere.received


async def test_max_redirects_counts_before_leaving(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """``max_redirects`` still applies on ``any``: a redirect over the limit is not followed."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    spec = _http(path="/away/302", follow_redirects="any", max_redirects=0)
    result = (await run(ctx, spec)).result

    assert (False, Reason.TOO_MANY_REDIRECTS) == (result.success, result.reason)
    assert [] == pair.elsewhere.received


@pytest.mark.parametrize(
    ("code", "method", "expected"),
    [
        (301, "POST", ("GET", b"")),
        (302, "POST", ("GET", b"")),
        (303, "POST", ("GET", b"")),
        (303, "PUT", ("GET", b"")),
        (302, "PUT", ("PUT", b"hello")),
        (307, "POST", ("POST", b"hello")),
        (308, "POST", ("POST", b"hello")),
    ],
)
async def test_method_and_body_after_a_redirect(
    start_pair: StartPair,
    make_probe_context: MakeProbeContext,
    code: int,
    method: str,
    expected: tuple[str, bytes],
) -> None:
    """303, and 301/302 after POST, become a GET without body; others keep method and body."""
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)

    result = (await run(ctx, _http(path=f"/here/{code}", method=method, body="hello"))).result

    assert result.success, result.detail
    landing = pair.origin.received[-1]
    assert expected == (landing.method, landing.body)
    if expected[1] == b"":
        assert landing.header("Content-Type") is None


async def test_request_following_for_a_stream_watcher(
    start_pair: StartPair, make_probe_context: MakeProbeContext
) -> None:
    """Called directly (as a stream watcher would), a stream's default policy refuses another host.

    The refusal is an ``aiohttp.ClientError`` that ``classify_exception`` maps to the reason.
    """
    pair = await start_pair()
    ctx = _context(make_probe_context, pair)
    policy = RedirectPolicy.of(ctx.target, SseStream(name="events", target="t"))

    with pytest.raises(RedirectRefused) as caught:
        await request_following(
            ctx.session,
            "GET",
            f"{pair.origin.base_url()}/away/302",
            policy,
            headers={"X-Api-Key": API_KEY},
        )

    assert ("same-origin", frozenset({"x-api-key"})) == (policy.mode, policy.secret_headers)
    assert Reason.REDIRECTED_TO_OTHER_ORIGIN == classify_exception(caught.value)[0]
    assert [] == pair.elsewhere.received
