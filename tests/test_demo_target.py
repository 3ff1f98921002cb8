"""The demo target against real loopback clients: endpoints, login, indicators and faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

import probed.demo
from probed.demo import DemoTarget, Faults
from probed.demo.auth import _TokenStore
from probed.demo.indicators import compute_indicators, load_indicators_fixture

PASSWORD = "correct-horse-battery-staple"
USERNAME = "probe@demo.example"
FAULT_KEYS = ("latency", "error_ratio", "rate_limit_ratio", "retry_after", "refuse_connections")
STREAM_FAULT_KEYS = (
    "stream_delay",
    "drop_ratio",
    "duplicate_ratio",
    "reorder_ratio",
    "disconnect_every",
    "stall",
    "wrong_content_type",
    "oversize_event",
    "clock_offset",
    "heartbeat_interval",
    "id_style",
    "import_duration",
    "import_stall_at",
    "import_regress",
)


@pytest.fixture
async def target() -> AsyncIterator[DemoTarget]:
    """A healthy demo target on 127.0.0.1, any free port, seeded draws."""
    async with DemoTarget(password=PASSWORD, seed=1) as demo:
        yield demo


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with a short timeout that keeps cookies from IP hosts."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as client:
        yield client


async def _login(session: aiohttp.ClientSession, target: DemoTarget) -> str:
    async with session.post(
        f"{target.base_url}/api/auth/login", json={"username": USERNAME, "password": PASSWORD}
    ) as resp:
        assert 200 == resp.status
        token: str = (await resp.json())["token"]
        return token


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        await resp.read()
        return resp.status


# --- endpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/health", {"status": "healthy", "version": "1.0.0"}),
        (
            "/health/readiness",
            {
                "status": "ready",
                "checks": {"database": "ok", "redis": "ok", "connection_pool": "ok"},
            },
        ),
        ("/health/liveness", {"status": "alive"}),
        (
            "/health/migrations",
            {"status": "up_to_date", "current": "0042_events", "head": "0042_events"},
        ),
    ],
)
async def test_health_endpoints(
    target: DemoTarget, session: aiohttp.ClientSession, path: str, expected: dict[str, Any]
) -> None:
    """Each health endpoint answers 200 JSON with the seed product's fields."""
    async with session.get(target.base_url + path) as resp:
        assert 200 == resp.status
        assert "application/json" == resp.content_type
        body = await resp.json()
    assert expected == {key: value for key, value in body.items() if key != "timestamp"}


@pytest.mark.parametrize("path", ["/health", "/health/liveness"])
async def test_health_timestamp_is_iso8601_utc(
    target: DemoTarget, session: aiohttp.ClientSession, path: str
) -> None:
    """The health timestamps are ISO 8601 in UTC."""
    async with session.get(target.base_url + path) as resp:
        stamp = (await resp.json())["timestamp"]
    assert stamp.endswith("Z")
    assert timedelta(0) == datetime.fromisoformat(stamp).utcoffset()


async def test_unknown_path_is_json_404(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """A path the demo does not serve answers 404 with a JSON error."""
    async with session.get(f"{target.base_url}/api/import/jobs") as resp:
        assert 404 == resp.status
        assert {"error": "not_found"} == await resp.json()


async def test_base_url_and_port(target: DemoTarget) -> None:
    """``base_url`` is loopback with the port the OS picked."""
    assert f"http://127.0.0.1:{target.port}" == target.base_url
    assert 0 != target.port


def test_port_before_start_raises() -> None:
    """``port`` of a target that never started is an error, not 0."""
    with pytest.raises(RuntimeError, match="not started"):
        _ = DemoTarget(password=PASSWORD).port


def test_repr_never_shows_password() -> None:
    """The password is not part of the target's repr."""
    assert PASSWORD not in repr(DemoTarget(password=PASSWORD))


# --- login -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{"username": USERNAME, "password": PASSWORD}, {"email": USERNAME, "password": PASSWORD}],
)
@pytest.mark.parametrize("encoding", ["json", "form"])
async def test_login_succeeds(
    target: DemoTarget, session: aiohttp.ClientSession, fields: dict[str, str], encoding: str
) -> None:
    """The right credentials, as JSON or form, by username or email, get a bearer token."""
    kwargs: dict[str, Any] = {"json": fields} if encoding == "json" else {"data": fields}
    async with session.post(f"{target.base_url}/api/auth/login", **kwargs) as resp:
        assert 200 == resp.status
        body = await resp.json()
    assert {"token_type": "Bearer", "expires_in": 3600, "user": {"id": "u_1"}} == {
        key: value for key, value in body.items() if key != "token"
    }
    assert 40 <= len(body["token"])


async def test_login_sets_session_cookie(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Login sets ``session=<token>; HttpOnly; Path=/; SameSite=Lax``."""
    async with session.post(
        f"{target.base_url}/api/auth/login", json={"username": USERNAME, "password": PASSWORD}
    ) as resp:
        token = (await resp.json())["token"]
        cookie = resp.headers["Set-Cookie"]
    assert f"session={token}; HttpOnly; Path=/; SameSite=Lax" == cookie


async def test_login_tokens_are_random(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """Two logins get two different tokens."""
    assert await _login(session, target) != await _login(session, target)


@pytest.mark.parametrize(
    "fields",
    [
        {"username": USERNAME, "password": PASSWORD + "x"},
        {"username": "someone@demo.example", "password": PASSWORD},
        {"username": USERNAME, "password": ""},
    ],
)
async def test_login_wrong_credentials_401(
    target: DemoTarget, session: aiohttp.ClientSession, fields: dict[str, str]
) -> None:
    """Wrong credentials answer 401 ``invalid_credentials`` and echo nothing back."""
    async with session.post(f"{target.base_url}/api/auth/login", json=fields) as resp:
        assert 401 == resp.status
        text = await resp.text()
    assert {"error": "invalid_credentials"} == json.loads(text)
    assert "Set-Cookie" not in resp.headers


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'["a", "b"]', "application/json"),
        (json.dumps({"username": USERNAME}).encode(), "application/json"),
        (json.dumps({"username": USERNAME, "password": 1234}).encode(), "application/json"),
        (b"username=probe%40demo.example", "application/x-www-form-urlencoded"),
        (b"username=x&password=y", "text/plain"),
    ],
)
async def test_login_malformed_body_400(
    target: DemoTarget, session: aiohttp.ClientSession, data: bytes, content_type: str
) -> None:
    """A body that is not JSON/form credentials answers 400 ``malformed_body``."""
    async with session.post(
        f"{target.base_url}/api/auth/login", data=data, headers={"Content-Type": content_type}
    ) as resp:
        assert 400 == resp.status
        assert "malformed_body" == (await resp.json())["error"]


async def test_me_with_bearer(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """``/api/me`` answers the user for a bearer token from login."""
    token = await _login(session, target)
    session.cookie_jar.clear()
    async with session.get(
        f"{target.base_url}/api/me", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert 200 == resp.status
        assert {"id": "u_1", "role": "user"} == await resp.json()


async def test_me_with_cookie(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """``/api/me`` answers the user for the session cookie set by login."""
    await _login(session, target)
    async with session.get(f"{target.base_url}/api/me") as resp:
        assert 200 == resp.status
        assert {"id": "u_1", "role": "user"} == await resp.json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic cHJvYmU6cHc="},
        {"Cookie": "session=not-a-token"},
    ],
)
async def test_me_without_valid_token_401(
    target: DemoTarget, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """``/api/me`` answers 401 without a token this target issued."""
    async with session.get(f"{target.base_url}/api/me", headers=headers) as resp:
        assert 401 == resp.status
        assert {"error": "unauthorized"} == await resp.json()


def test_token_store_evicts_oldest_when_full() -> None:
    """A full token store forgets its oldest token first."""
    store = _TokenStore(max_size=3, clock=lambda: 0.0)
    tokens = [store.issue() for _ in range(4)]
    assert [False, True, True, True] == [store.valid(token) for token in tokens]
    assert 3 == len(store)


def test_token_store_expires_tokens() -> None:
    """A token stops being valid once its time to live has passed."""
    now = [0.0]
    store = _TokenStore(ttl=10.0, clock=lambda: now[0])
    token = store.issue()
    now[0] = 9.9
    assert store.valid(token)
    now[0] = 10.0
    assert not store.valid(token)
    assert 0 == len(store)


# --- indicators --------------------------------------------------------------------------


async def test_indicators_are_byte_stable(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Two posts of the fixture get byte-identical answers."""
    bodies = []
    for _ in range(2):
        async with session.post(
            f"{target.base_url}/v1/indicators", json=load_indicators_fixture()
        ) as resp:
            assert 200 == resp.status
            assert "application/json" == resp.content_type
            bodies.append(await resp.read())
    assert bodies[0] == bodies[1]
    assert compute_indicators(load_indicators_fixture()) == json.loads(bodies[0])


def test_indicators_of_the_fixture() -> None:
    """The fixture's indicators have the expected lengths, first values and RSI range."""
    fixture = load_indicators_fixture()
    closes = fixture["closes"]
    result = compute_indicators(fixture)
    indicators = result["indicators"]
    assert "BTC-USD" == result["symbol"]
    assert ["ema_10", "rsi_14", "sma_5"] == sorted(indicators)
    assert 30 == len(closes)
    assert len(closes) - 4 == len(indicators["sma_5"])
    assert len(closes) - 9 == len(indicators["ema_10"])
    assert round(sum(closes[:5]) / 5, 6) == indicators["sma_5"][0]
    assert round(sum(closes[:10]) / 10, 6) == indicators["ema_10"][0]
    assert 0.0 < indicators["rsi_14"] < 100.0


def test_indicators_output_hash_is_pinned() -> None:
    """The canonical JSON of the fixture's indicators hashes to a fixed value."""
    canonical = json.dumps(
        compute_indicators(load_indicators_fixture()), sort_keys=True, separators=(",", ":")
    )
    assert (
        "9001a9e87574331104aea0c07cb770982017eb0ac24a00cefcc6f0e28b17d853"
        == hashlib.sha256(canonical.encode()).hexdigest()
    )


@pytest.mark.parametrize(
    ("closes", "rsi"),
    [([float(i) for i in range(1, 21)], 100.0), ([5.0] * 20, 50.0)],
)
def test_indicators_rsi_edges(closes: list[float], rsi: float) -> None:
    """RSI is 100 with only gains and 50 on a flat series."""
    assert rsi == compute_indicators({"symbol": "X", "closes": closes})["indicators"]["rsi_14"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], "JSON object"),
        ({"closes": [1.0] * 20}, "symbol"),
        ({"symbol": "", "closes": [1.0] * 20}, "symbol"),
        ({"symbol": "X"}, "closes"),
        ({"symbol": "X", "closes": [1.0] * 14}, "closes"),
        ({"symbol": "X", "closes": [1.0] * 19 + ["2"]}, r"closes\[19\]"),
        ({"symbol": "X", "closes": [True] * 20}, r"closes\[0\]"),
    ],
)
async def test_indicators_bad_input_400(
    target: DemoTarget, session: aiohttp.ClientSession, payload: object, message: str
) -> None:
    """Invalid input answers 400 with an error naming what is wrong."""
    async with session.post(f"{target.base_url}/v1/indicators", json=payload) as resp:
        assert 400 == resp.status
        body = await resp.json()
    assert ["error"] == list(body)
    assert re.search(message, body["error"])


async def test_indicators_not_json_400(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """A body that is not JSON answers 400."""
    async with session.post(f"{target.base_url}/v1/indicators", data=b"closes=1") as resp:
        assert 400 == resp.status
        assert {"error": "body is not valid JSON"} == await resp.json()


def test_compute_indicators_rejects_non_finite() -> None:
    """NaN and infinity are not closes."""
    with pytest.raises(ValueError, match=r"closes\[3\]"):
        compute_indicators({"symbol": "X", "closes": [1.0, 2.0, 3.0, float("nan")] + [1.0] * 16})


# --- Faults values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"latency": -0.1}, "latency"),
        ({"latency": 301}, "latency"),
        ({"latency": "1"}, "latency"),
        ({"error_ratio": 1.01}, "error_ratio"),
        ({"error_ratio": -0.5}, "error_ratio"),
        ({"error_ratio": float("nan")}, "error_ratio"),
        ({"rate_limit_ratio": 2}, "rate_limit_ratio"),
        ({"rate_limit_ratio": True}, "rate_limit_ratio"),
        ({"retry_after": 1.5}, "retry_after"),
        ({"retry_after": -1}, "retry_after"),
        ({"refuse_connections": 1}, "refuse_connections"),
        ({"paths": "/api/*"}, "paths"),
        ({"paths": ["api/*"]}, r"paths\[0\]"),
        ({"paths": ["/ok", 3]}, r"paths\[1\]"),
        ({"stream_delay": -1}, "stream_delay"),
        ({"stream_delay": 301}, "stream_delay"),
        ({"drop_ratio": 1.5}, "drop_ratio"),
        ({"duplicate_ratio": -0.1}, "duplicate_ratio"),
        ({"reorder_ratio": "0.5"}, "reorder_ratio"),
        ({"disconnect_every": -0.5}, "disconnect_every"),
        ({"disconnect_every": float("inf")}, "disconnect_every"),
        ({"stall": "yes"}, "stall"),
        ({"wrong_content_type": 0}, "wrong_content_type"),
        ({"oversize_event": 1.5}, "oversize_event"),
        ({"oversize_event": -1}, "oversize_event"),
        ({"oversize_event": 64 * 1024 * 1024 + 1}, "oversize_event"),
        ({"clock_offset": float("nan")}, "clock_offset"),
        ({"clock_offset": 1e9}, "clock_offset"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": 0.001}, "heartbeat_interval"),
        ({"id_style": "uuid"}, "id_style"),
        ({"import_duration": -1}, "import_duration"),
        ({"import_stall_at": 101}, "import_stall_at"),
        ({"import_stall_at": 99.5}, "import_stall_at"),
        ({"import_regress": None}, "import_regress"),
    ],
)
def test_faults_reject_bad_values(changes: dict[str, Any], key: str) -> None:
    """A bad fault value raises ValueError naming its key."""
    with pytest.raises(ValueError, match=key):
        Faults(**changes)


def test_faults_updated_rejects_unknown_key() -> None:
    """An unknown fault key raises ValueError naming it."""
    with pytest.raises(ValueError, match="'latncy'"):
        Faults().updated({"latncy": 1.0})


@pytest.mark.parametrize(
    ("paths", "path", "applies"),
    [
        ([], "/health", True),
        ([], "/-/admin/faults", False),
        (["*"], "/-/admin/faults", False),
        (["/api/*"], "/api/me", True),
        (["/api/*"], "/health", False),
        (["/health", "/v1/*"], "/v1/indicators", True),
    ],
)
def test_faults_apply_to_paths(paths: list[str], path: str, applies: bool) -> None:
    """Faults apply to paths matching a glob (all when none), never to admin paths."""
    assert applies == Faults(paths=paths).applies_to(path)


# --- admin -------------------------------------------------------------------------------


async def test_admin_get_faults(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """``GET /-/admin/faults`` shows the current (default) faults."""
    async with session.get(f"{target.base_url}/-/admin/faults") as resp:
        assert 200 == resp.status
        assert {
            "latency": 0.0,
            "error_ratio": 0.0,
            "rate_limit_ratio": 0.0,
            "retry_after": 5,
            "refuse_connections": False,
            "paths": [],
            "stream_delay": 0.0,
            "drop_ratio": 0.0,
            "duplicate_ratio": 0.0,
            "reorder_ratio": 0.0,
            "disconnect_every": 0.0,
            "stall": False,
            "wrong_content_type": False,
            "oversize_event": 0,
            "clock_offset": 0.0,
            "heartbeat_interval": 1.0,
            "id_style": "numeric",
            "import_duration": 2.0,
            "import_stall_at": 0,
            "import_regress": False,
        } == await resp.json()


async def test_admin_put_stream_faults(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """Stream fault keys are set over admin like the others, numbers coming back as floats."""
    changes: dict[str, Any] = {
        "stream_delay": 2,
        "drop_ratio": 0.1,
        "stall": True,
        "oversize_event": 10_000_000,
        "clock_offset": -30,
        "id_style": "composite",
        "import_stall_at": 99,
    }
    async with session.put(f"{target.base_url}/-/admin/faults", json=changes) as resp:
        assert 200 == resp.status
        body = await resp.json()
    expected = Faults(**changes)
    assert expected.to_dict() == body
    assert expected == target.faults
    assert (2.0, -30.0) == (target.faults.stream_delay, target.faults.clock_offset)


async def test_admin_put_changes_a_subset(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """A PUT with some keys changes only those and answers the new state."""
    await target.set_faults(Faults(retry_after=9))
    async with session.put(
        f"{target.base_url}/-/admin/faults", json={"error_ratio": 1, "paths": ["/health"]}
    ) as resp:
        assert 200 == resp.status
        body = await resp.json()
    expected = Faults(error_ratio=1.0, retry_after=9, paths=["/health"])
    assert expected.to_dict() == body
    assert expected == target.faults
    assert 503 == await _status(session, f"{target.base_url}/health")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"error_ratio": 0.5, "latncy": 1}, "latncy"),
        ({"error_ratio": 0.5, "latency": 301}, "latency"),
        ({"error_ratio": 0.5, "refuse_for": 0}, "refuse_for"),
        ({"refuse_for": 1, "refuse_connections": False}, "refuse_for"),
        (["error_ratio"], "JSON object"),
    ],
)
async def test_admin_put_rejects_and_changes_nothing(
    target: DemoTarget, session: aiohttp.ClientSession, body: object, key: str
) -> None:
    """A PUT with an unknown key or bad value answers 400 naming it and applies nothing."""
    before = target.faults
    async with session.put(f"{target.base_url}/-/admin/faults", json=body) as resp:
        assert 400 == resp.status
        error = (await resp.json())["error"]
    assert key in error
    assert before == target.faults
    assert 200 == await _status(session, f"{target.base_url}/health")


async def test_admin_put_not_json_400(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """A PUT body that is not JSON answers 400."""
    async with session.put(f"{target.base_url}/-/admin/faults", data=b"latency=1") as resp:
        assert 400 == resp.status


# --- request faults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "path", "status"),
    [
        (Faults(), "/health", 200),
        (Faults(error_ratio=1.0), "/health", 503),
        (Faults(rate_limit_ratio=1.0), "/health", 429),
        (Faults(rate_limit_ratio=1.0, error_ratio=1.0), "/health", 429),
        (Faults(error_ratio=1.0, paths=["/api/*"]), "/health", 200),
        (Faults(error_ratio=1.0, paths=["/api/*"]), "/api/me", 503),
        (Faults(error_ratio=1.0, rate_limit_ratio=1.0), "/-/admin/faults", 200),
    ],
)
async def test_fault_table(
    target: DemoTarget, session: aiohttp.ClientSession, faults: Faults, path: str, status: int
) -> None:
    """Each fault setting gives the expected status on a path."""
    await target.set_faults(faults)
    assert status == await _status(session, target.base_url + path)


async def test_latency_delays_answers(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """A latency fault delays the answer by at least that many seconds."""
    await target.set_faults(Faults(latency=0.3))
    started = time.monotonic()
    assert 200 == await _status(session, f"{target.base_url}/health")
    assert 0.3 <= time.monotonic() - started


async def test_error_ratio_one_fails_every_request(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``error_ratio=1`` answers 503 JSON to every request."""
    await target.set_faults(Faults(error_ratio=1.0))
    for path in ["/health", "/health/readiness", "/api/me", "/nope"] * 5:
        async with session.get(target.base_url + path) as resp:
            assert 503 == resp.status
            assert {"error": "service_unavailable"} == await resp.json()


async def test_rate_limit_ratio_one_limits_every_request(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``rate_limit_ratio=1`` answers 429 with ``Retry-After`` to every request."""
    await target.set_faults(Faults(rate_limit_ratio=1.0, retry_after=7))
    for _ in range(20):
        async with session.get(f"{target.base_url}/health") as resp:
            assert 429 == resp.status
            assert "7" == resp.headers["Retry-After"]
            assert {"error": "rate_limited", "retry_after": 7} == await resp.json()


async def test_rate_limit_is_drawn_before_errors(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """With both ratios at 1 the 429 wins: it is drawn first."""
    await target.set_faults(Faults(rate_limit_ratio=1.0, error_ratio=1.0))
    assert 429 == await _status(session, f"{target.base_url}/health")


async def test_ratio_zero_never_fails(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """Ratios of 0 never fail a request."""
    await target.set_faults(Faults(error_ratio=0.0, rate_limit_ratio=0.0))
    statuses = {await _status(session, f"{target.base_url}/health") for _ in range(20)}
    assert {200} == statuses


async def test_seeded_draws_repeat(session: aiohttp.ClientSession) -> None:
    """Two targets with the same seed answer the same sequence of statuses."""
    faults = Faults(error_ratio=0.5)
    sequences = []
    for _ in range(2):
        async with DemoTarget(password=PASSWORD, faults=faults, seed=42) as demo:
            sequences.append([await _status(session, f"{demo.base_url}/health") for _ in range(30)])
    assert sequences[0] == sequences[1]
    assert {200, 503} == set(sequences[0])


async def test_paths_scope_the_faults(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """Faults with ``paths`` hit matching paths only."""
    await target.set_faults(Faults(error_ratio=1.0, paths=["/api/*"]))
    assert 503 == await _status(session, f"{target.base_url}/api/me")
    assert 200 == await _status(session, f"{target.base_url}/health")


@pytest.mark.parametrize("paths", [[], ["*"], ["/-/admin/*"]])
async def test_faults_never_hit_admin(
    target: DemoTarget, session: aiohttp.ClientSession, paths: list[str]
) -> None:
    """Admin endpoints answer at once and 200 whatever the faults."""
    await target.set_faults(Faults(latency=2.0, error_ratio=1.0, rate_limit_ratio=1.0, paths=paths))
    started = time.monotonic()
    assert 200 == await _status(session, f"{target.base_url}/-/admin/faults")
    assert 1.0 > time.monotonic() - started


# --- refused connections -----------------------------------------------------------------


async def _assert_refused(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.get(url):
            pass
    assert isinstance(caught.value.os_error, ConnectionRefusedError)


async def test_refuse_connections_then_reopen_same_port(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Refusing closes the port (even for a pooled connection); re-opening serves it again."""
    url = f"{target.base_url}/health"
    port = target.port
    assert 200 == await _status(session, url)  # leaves a keep-alive connection in the pool
    await target.set_faults(Faults(refuse_connections=True))
    assert target.refusing
    await _assert_refused(session, url)
    await target.set_faults(Faults())
    assert not target.refusing
    assert port == target.port
    assert 200 == await _status(session, url)


async def test_refusing_lets_in_flight_requests_finish(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """A request in flight when refusing starts is answered, then its connection closes."""

    async def slow_get() -> tuple[int, str]:
        async with session.get(f"{target.base_url}/health") as resp:
            await resp.read()
            return resp.status, resp.headers.get("Connection", "")

    await target.set_faults(Faults(latency=0.3))
    request = asyncio.create_task(slow_get())
    await asyncio.sleep(0.1)
    await target.set_faults(Faults(latency=0.3, refuse_connections=True))
    assert (200, "close") == await request


async def test_admin_refuse_for_reopens_by_itself(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``refuse_for`` over admin refuses at once and re-opens the same port after that time."""
    url = f"{target.base_url}/health"
    async with session.put(f"{target.base_url}/-/admin/faults", json={"refuse_for": 0.5}) as resp:
        assert 200 == resp.status
        assert True is (await resp.json())["refuse_connections"]
    await _assert_refused(session, url)
    await asyncio.sleep(0.7)
    assert 200 == await _status(session, url)
    assert Faults() == target.faults


async def test_new_faults_cancel_a_pending_reopen(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Faults set while ``refuse_for`` runs replace it: no late re-open follows."""
    await target.set_faults(Faults(), refuse_for=0.2)
    await target.set_faults(Faults(refuse_connections=True))
    await asyncio.sleep(0.4)
    await _assert_refused(session, f"{target.base_url}/health")


async def test_start_refusing(session: aiohttp.ClientSession) -> None:
    """A target started with ``refuse_connections`` knows its port but refuses it."""
    async with DemoTarget(password=PASSWORD, faults=Faults(refuse_connections=True)) as demo:
        await _assert_refused(session, f"{demo.base_url}/health")
        await demo.set_faults(Faults())
        assert 200 == await _status(session, f"{demo.base_url}/health")


async def test_stop_twice_is_fine() -> None:
    """``stop`` on a stopped target does nothing."""
    demo = DemoTarget(password=PASSWORD)
    await demo.start()
    await demo.stop()
    await demo.stop()


# --- package -----------------------------------------------------------------------------


def test_all_is_sorted_and_resolves() -> None:
    """``probed.demo.__all__`` is sorted and names only things the package has."""
    assert sorted(probed.demo.__all__) == probed.demo.__all__
    assert all(hasattr(probed.demo, name) for name in probed.demo.__all__)


def test_fault_keys_cover_the_dataclass() -> None:
    """Every fault key is a Faults field and shows up in the admin shape."""
    assert (*FAULT_KEYS, "paths", *STREAM_FAULT_KEYS) == Faults.keys()
    assert list(Faults.keys()) == list(Faults().to_dict())
