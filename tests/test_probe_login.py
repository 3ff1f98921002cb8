"""The login probe kind against a real loopback server, run through ``run_probe``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from probeservers import SEEN, Outcome, fails, ok, recording_app, run

from probed.config import FollowUp, JsonAssertion, LoginProbe, SecretRef
from probed.model import SecretStr
from probed.probes.base import ProbeContext
from probed.results import Reason

if TYPE_CHECKING:
    from conftest import NetworkFault

PASSWORD = "pw-S3cret-9qZ"
TOKEN = "tok-7d1e5c0a9b"
COOKIE_TOKEN = "sid-4b2f8e61"


def _valid(request: web.Request) -> bool:
    values = set(request.app[SEEN][-1].fields.values())
    return {"alice", PASSWORD} <= values


async def _login(request: web.Request) -> web.Response:
    if not _valid(request):
        return web.json_response({"error": "bad credentials"}, status=401)
    variant = request.match_info.get("variant", "")
    if variant == "slow":
        await asyncio.sleep(0.15)
    elif variant == "hang":
        await asyncio.sleep(1.5)
    elif variant == "bogus":
        return web.json_response({"token": "bogus"})
    elif variant == "no-token":
        return web.json_response({"ok": True})
    elif variant == "numeric-token":
        return web.json_response({"token": 12345})
    elif variant == "html":
        return web.Response(text="<html>welcome</html>", content_type="text/html")
    elif variant == "cookie":
        resp = web.Response(text="<html>welcome</html>", content_type="text/html")
        resp.set_cookie("sid", COOKIE_TOKEN, httponly=True)
        return resp
    elif variant == "both":
        resp = web.json_response({"token": TOKEN})
        resp.set_cookie("sid", COOKIE_TOKEN)
        return resp
    elif variant == "429":
        return web.Response(status=429, headers={"Retry-After": "30"})
    elif variant == "503":
        return web.Response(status=503)
    return web.json_response({"token": TOKEN, "expires_in": 3600})


def _authorised(request: web.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {TOKEN}" or (
        request.cookies.get("sid") == COOKIE_TOKEN
    )


async def _me(request: web.Request) -> web.Response:
    if not _authorised(request):
        return web.json_response({"error": "unauthorised"}, status=401)
    return web.json_response({"user": "alice", "role": "admin", "echo": TOKEN})


async def _me_custom(request: web.Request) -> web.Response:
    if request.headers.get("X-Api-Token") != f"Token {TOKEN}":
        return web.json_response({"error": "unauthorised"}, status=401)
    return web.json_response({"user": "alice"})


async def _forbidden(request: web.Request) -> web.Response:
    return web.json_response({"error": "forbidden"}, status=403)


async def _unavailable(request: web.Request) -> web.Response:
    return web.Response(status=503)


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="not json")


def login_spec(password: str = PASSWORD, **fields: Any) -> LoginProbe:
    """A login probe for alice with ``fields`` overriding the defaults."""
    spec = LoginProbe(
        **{
            "name": "login",
            "target": "t",
            "path": "/login",
            "username": "alice",
            "password": SecretRef(env="PROBE_PASSWORD"),
            "timeout": "1s",
            "latency_threshold": None,
            **fields,
        }
    )
    spec._store_secret("password", SecretStr(password))
    return spec


@pytest.fixture
async def app() -> web.Application:
    """The purpose-built login target: one login route per behaviour plus /me."""
    return recording_app(
        web.post("/login", _login),
        web.post("/login/{variant}", _login),
        web.route("*", "/me", _me),
        web.get("/me/custom", _me_custom),
        web.get("/forbidden", _forbidden),
        web.get("/unavailable", _unavailable),
        web.get("/text", _text),
    )


ME = FollowUp(path="/me", json_checks=[JsonAssertion(path="role", equals="admin")])

FAULTS = [
    ok("ok_json"),
    ok("ok_form", encoding="form"),
    ok("ok_follow_up", follow_up=ME),
    ok("ok_follow_up_post", follow_up=FollowUp(path="/me", method="POST")),
    ok("ok_cookie", path="/login/cookie", token_path=None, token_cookie="sid", follow_up=ME),
    ok("ok_cookie_after_json_path", path="/login/cookie", token_cookie="sid", follow_up=ME),
    fails("wrong_password", Reason.STATUS, "http_401", password="wrong"),
    fails("status", Reason.STATUS, "http_503", path="/login/503"),
    fails("rate_limited", Reason.RATE_LIMITED, "http_429", path="/login/429"),
    fails("invalid_json", Reason.INVALID_JSON, "invalid_json", path="/login/html"),
    fails("no_token_json_path", Reason.NO_TOKEN, "no_token", path="/login/no-token"),
    fails("no_token_not_a_string", Reason.NO_TOKEN, "no_token", path="/login/numeric-token"),
    fails(
        "no_token_cookie",
        Reason.NO_TOKEN,
        "no_token",
        path="/login/html",
        token_path=None,
        token_cookie="sid",
    ),
    fails(
        "no_token_either_source",
        Reason.NO_TOKEN,
        "no_token",
        path="/login/no-token",
        token_cookie="sid",
    ),
    fails("auth_failed_401", Reason.AUTH_FAILED, "http_401", path="/login/bogus", follow_up=ME),
    fails("auth_failed_403", Reason.AUTH_FAILED, "http_403", follow_up=FollowUp(path="/forbidden")),
    fails("follow_up_status", Reason.STATUS, "http_503", follow_up=FollowUp(path="/unavailable")),
    *[
        fails(
            case_id,
            Reason.JSON_MISMATCH,
            "json_mismatch",
            follow_up=FollowUp(path="/me", json_checks=[check]),
        )
        for case_id, check in [
            ("follow_up_json_mismatch", JsonAssertion(path="role", equals="x")),
            ("follow_up_json_missing_path", JsonAssertion(path="email")),
            ("follow_up_json_mismatch_on_token", JsonAssertion(path="echo", equals="x")),
        ]
    ],
    fails(
        "follow_up_invalid_json",
        Reason.INVALID_JSON,
        "invalid_json",
        follow_up=FollowUp(path="/text", json_checks=[JsonAssertion(path="user")]),
    ),
    fails("slow", Reason.SLOW, "slow", path="/login/slow", latency_threshold="50ms"),
    fails("timeout", Reason.TIMEOUT, "timeout", path="/login/hang", timeout="100ms"),
]


@pytest.mark.parametrize(("fields", "expected"), FAULTS)
async def test_login_faults(ctx: ProbeContext, fields: dict[str, Any], expected: Outcome) -> None:
    """Each login fault yields the expected success, reason and error code."""
    result = (await run(ctx, login_spec(**fields))).result

    assert expected == Outcome.of(result), result.detail


@pytest.mark.parametrize(("fields", "expected"), FAULTS)
async def test_secrets_never_in_result(
    ctx: ProbeContext, fields: dict[str, Any], expected: Outcome
) -> None:
    """Neither the password nor the token appears in the run's repr, detail or observations."""
    probe_run = await run(ctx, login_spec(**fields))

    text = f"{probe_run!r} {probe_run.result.detail} {dict(probe_run.result.observations)}"
    for secret in (PASSWORD, TOKEN, COOKIE_TOKEN):
        assert secret not in text


async def test_token_in_follow_up_detail_is_redacted(ctx: ProbeContext) -> None:
    """A follow-up check that prints the token's value shows it redacted."""
    check = JsonAssertion(path="echo", equals="x")
    result = (
        await run(ctx, login_spec(follow_up=FollowUp(path="/me", json_checks=[check])))
    ).result

    assert "path 'echo' is '[redacted]', expected 'x'" == result.detail


async def test_network_faults(network_fault: NetworkFault) -> None:
    """A login run reports network-level faults with the runner's reasons."""
    result = (await run(network_fault.ctx, login_spec())).result

    assert (False, network_fault.reason) == (result.success, result.reason), result.detail


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [("json", "application/json"), ("form", "application/x-www-form-urlencoded")],
)
async def test_credentials_encoding(
    app: web.Application, ctx: ProbeContext, encoding: str, content_type: str
) -> None:
    """Credentials are posted as JSON or as a form under the configured field names."""
    spec = login_spec(encoding=encoding, username_field="user", password_field="pass")

    assert (await run(ctx, spec)).success

    (seen,) = app[SEEN]
    expected = ("POST", content_type, {"user": "alice", "pass": PASSWORD})
    assert expected == (seen.method, seen.mimetype, seen.fields)


@pytest.mark.parametrize(
    ("path", "fields", "authorization", "cookie"),
    [
        pytest.param("/login", {}, f"Bearer {TOKEN}", None, id="json_token_as_bearer"),
        pytest.param(
            "/login/cookie",
            {"token_path": None, "token_cookie": "sid"},
            None,
            f"sid={COOKIE_TOKEN}",
            id="cookie_token_as_cookie",
        ),
        pytest.param(
            "/login/both",
            {"token_cookie": "sid"},
            f"Bearer {TOKEN}",
            None,
            id="json_path_tried_before_cookie",
        ),
    ],
)
async def test_follow_up_presents_token(
    app: web.Application,
    ctx: ProbeContext,
    path: str,
    fields: dict[str, Any],
    authorization: str | None,
    cookie: str | None,
) -> None:
    """The follow-up sends a JSON token as a bearer token and a cookie token as a cookie."""
    assert (await run(ctx, login_spec(path=path, follow_up=ME, **fields))).success

    login, follow_up = app[SEEN]
    assert (None, None) == (login.authorization, login.cookie)
    assert ("/me", authorization, cookie) == (
        follow_up.path,
        follow_up.authorization,
        follow_up.cookie,
    )


@pytest.mark.parametrize(
    ("path", "fields", "token"),
    [
        ("/login", {}, TOKEN),
        ("/login/cookie", {"token_cookie": "sid"}, COOKIE_TOKEN),
    ],
)
async def test_token_reported_to_on_secret(
    ctx: ProbeContext, path: str, fields: dict[str, Any], token: str
) -> None:
    """The token is handed to ``on_secret`` so logs can redact it."""
    secrets: list[str] = []
    ctx = dataclasses.replace(ctx, on_secret=secrets.append)

    assert (await run(ctx, login_spec(path=path, **fields))).success

    assert [token] == secrets


async def test_observations_time_both_requests(ctx: ProbeContext) -> None:
    """A login with a follow-up reports ``login_seconds`` and ``follow_up_seconds``."""
    probe_run = await run(ctx, login_spec(follow_up=ME))
    observations = probe_run.result.observations

    assert {"login_seconds", "follow_up_seconds"} == set(observations)
    assert all(
        isinstance(value, float) and 0 < value < probe_run.duration
        for value in observations.values()
    )


async def test_failed_follow_up_keeps_login_seconds(ctx: ProbeContext) -> None:
    """A failing follow-up still reports how long the login took."""
    result = (await run(ctx, login_spec(follow_up=FollowUp(path="/forbidden")))).result

    assert (403, True) == (result.status_code, "login_seconds" in result.observations)


async def test_phases_add_up_over_both_requests(ctx: ProbeContext) -> None:
    """Phases cover the login and the follow-up and fit within the run."""
    probe_run = await run(ctx, login_spec(follow_up=ME))
    phases = probe_run.result.phases

    assert {"resolve", "connect", "processing", "transfer"} == set(phases)
    assert all(value >= 0 for value in phases.values())
    assert sum(phases.values()) <= probe_run.duration


async def test_traceparent_on_both_requests(app: web.Application, ctx: ProbeContext) -> None:
    """The login and its follow-up carry the same traceparent, the run's."""
    probe_run = await run(ctx, login_spec(follow_up=ME))

    login, follow_up = app[SEEN]
    assert login.traceparent is not None
    assert probe_run.trace_id == login.traceparent.split("-")[1]
    assert login.traceparent == follow_up.traceparent


async def test_the_follow_up_presents_the_token_in_the_configured_header(
    app: web.Application, ctx: ProbeContext
) -> None:
    """A product that wants ``X-Api-Token: Token <t>`` gets exactly that, and no bearer."""
    follow_up = FollowUp(path="/me/custom")
    spec = login_spec(follow_up=follow_up, token_header="X-Api-Token", token_prefix="Token ")
    result = await run(ctx, spec)
    assert result.success, result.result.detail
    _, me = app[SEEN]
    assert ("/me/custom", None) == (me.path, me.authorization)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"token_header": "Bad Header"}, "token_header 'Bad Header' is not a valid header name"),
        ({"token_prefix": "Bearer\r\nX: y"}, "token_prefix must not contain line breaks"),
    ],
)
def test_a_bad_token_header_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        login_spec(**fields)
