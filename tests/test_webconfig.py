"""The web config: TLS and basic auth for probed's own server, tested against the live server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web

from probed import webauth
from probed.config import load_config
from probed.daemon import Daemon
from probed.errors import ConfigError
from probed.metrics import DaemonInfo, build_registry
from probed.server import ServerState, create_app
from probed.store import ResultStore
from probed.webconfig import WebConfig, load_web_config
from probed.webserve import auth_middleware

WEB = Path(__file__).parent / "configs" / "web"
BAD = WEB / "bad"

USER = "prometheus"
PASSWORD = "correct horse"
CHALLENGE = 'Basic realm="probed"'
UNAUTHORIZED_BODY = "Unauthorized\n"


def _hash(password: str) -> str:
    """A bcrypt hash at the lowest cost (tests stay fast; the code path is the same)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------
# certificates (generated per test session, never committed)


@dataclass(frozen=True)
class Pki:
    """A CA with a server certificate for 127.0.0.1, and a separate CA for client certificates."""

    ca: trustme.CA
    server: trustme.LeafCert
    client_ca: trustme.CA
    client: trustme.LeafCert

    def write(self, directory: Path) -> None:
        """Write server.crt, server.key, clients-ca.crt and an unrelated other.key."""
        self.server.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
        self.server.private_key_pem.write_to_path(str(directory / "server.key"))
        self.client_ca.cert_pem.write_to_path(str(directory / "clients-ca.crt"))
        self.client.private_key_pem.write_to_path(str(directory / "other.key"))


@pytest.fixture(scope="module")
def pki() -> Pki:
    """Freshly generated certificates for the live TLS tests."""
    ca = trustme.CA()
    client_ca = trustme.CA()
    return Pki(
        ca=ca,
        server=ca.issue_cert("127.0.0.1", "localhost"),
        client_ca=client_ca,
        client=client_ca.issue_cert("probe-client.test"),
    )


def _client_context(pki: Pki | None = None, *, with_client_cert: bool = False) -> ssl.SSLContext:
    """A client context trusting ``pki``'s CA (system CAs only if ``pki`` is None)."""
    context = ssl.create_default_context()
    if pki is not None:
        pki.ca.configure_trust(context)
        if with_client_cert:
            pki.client.configure_cert(context)
    return context


def _write_config(directory: Path, text: str) -> Path:
    path = directory / "web-config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _tls_config(tmp_path: Path, pki: Pki, extra: str = "", users: str = "") -> WebConfig:
    """A loaded web config with TLS (plus ``extra`` tls keys) and ``users`` as basic-auth lines."""
    pki.write(tmp_path)
    text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + extra
    if users:
        text += "basic_auth_users:\n" + users
    return load_web_config(_write_config(tmp_path, text))


def _users_config(tmp_path: Path, users: dict[str, str], headers: str = "") -> WebConfig:
    """A loaded web config with basic auth only (plain HTTP)."""
    lines = "".join(f"  {name}: {hashed}\n" for name, hashed in users.items())
    return load_web_config(_write_config(tmp_path, headers + "basic_auth_users:\n" + lines))


# ---------------------------------------------------------------------------
# the live server, wired the way the daemon will wire it


def build_app(cfg: WebConfig) -> web.Application:
    """The daemon's application with the web-config middleware first in line."""
    store = ResultStore()
    state = ServerState(store=store, registry=build_registry(store, DaemonInfo()), reload=None)
    return create_app(state, middlewares=[auth_middleware(cfg)])


class Serve(Protocol):
    """The ``serve`` fixture: start the app for ``cfg`` on 127.0.0.1 and return its base URL."""

    async def __call__(self, cfg: WebConfig) -> str:
        """Start the server (TLS if ``cfg`` has it) on an ephemeral port."""


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start apps like the daemon: ``AppRunner`` + ``TCPSite(ssl_context=cfg.ssl_context())``."""
    runners: list[web.AppRunner] = []

    async def start(cfg: WebConfig) -> str:
        runner = web.AppRunner(build_app(cfg), handle_signals=False, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=cfg.ssl_context())
        await site.start()
        port = runner.addresses[0][1]
        return f"{cfg.scheme}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session without connection reuse (each request does its own handshake)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
        yield client


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    authorization: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with session.get(url, headers=headers, ssl=ssl_context or True) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


# ---------------------------------------------------------------------------
# TLS + basic auth against the live server


async def test_metrics_over_tls_with_valid_credentials(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A client trusting the CA with the right credentials scrapes /metrics over TLS."""
    cfg = _tls_config(tmp_path, pki, users=f"  {USER}: {_hash(PASSWORD)}\n")
    base = await serve(cfg)
    status, body, headers = await _get(
        session,
        f"{base}/metrics",
        authorization=_basic(USER, PASSWORD),
        ssl_context=_client_context(pki),
    )
    assert "https" == base.split(":")[0]
    assert 200 == status
    assert headers["Content-Type"].startswith("text/plain")
    assert "# TYPE probed_build_info gauge" in body


REJECTED = {
    "wrong_password": _basic(USER, "battery staple"),
    "unknown_user": _basic("grafana", PASSWORD),
    "no_header": None,
    "empty_password": _basic(USER, ""),
    "password_over_72_bytes": _basic(USER, PASSWORD + "x" * 80),
    "not_base64": "Basic %%%not-base64%%%",
    "no_colon": "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode(),
    "bearer_scheme": "Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    "scheme_only": "Basic",
    "non_ascii": "Basic pässwörd",
}


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_bad_credentials_get_a_bare_401(
    case: str, tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Missing, wrong or malformed credentials get the same 401 with a challenge and no detail."""
    cfg = _tls_config(tmp_path, pki, users=f"  {USER}: {_hash(PASSWORD)}\n")
    base = await serve(cfg)
    status, body, headers = await _get(
        session, f"{base}/metrics", authorization=REJECTED[case], ssl_context=_client_context(pki)
    )
    assert (401, UNAUTHORIZED_BODY) == (status, body)
    assert CHALLENGE == headers["WWW-Authenticate"]


PROTECTED = [
    ("GET", "/metrics"),
    ("GET", "/-/healthy"),
    ("GET", "/-/ready"),
    ("POST", "/-/reload"),
    ("POST", "/api/v1/maintenance"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/recommendations"),
    ("GET", "/"),
    ("GET", "/status"),
    ("GET", "/status/fragment"),
    ("GET", "/no-such-path"),
    ("HEAD", "/-/healthy"),
]


async def test_every_path_is_protected(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Every endpoint, health checks and unknown paths included, answers 401 without credentials."""
    cfg = _tls_config(tmp_path, pki, users=f"  {USER}: {_hash(PASSWORD)}\n")
    base = await serve(cfg)
    context = _client_context(pki)
    statuses = {}
    for method, path in PROTECTED:
        async with session.request(method, f"{base}{path}", ssl=context) as resp:
            statuses[f"{method} {path}"] = resp.status
    assert {f"{m} {p}": 401 for m, p in PROTECTED} == statuses
    status, body, _ = await _get(
        session, f"{base}/-/healthy", authorization=_basic(USER, PASSWORD), ssl_context=context
    )
    assert (200, "OK\n") == (status, body)


async def test_plain_http_to_the_tls_port_fails(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Plain HTTP sent to the TLS listener gets no HTTP response at all."""
    base = await serve(_tls_config(tmp_path, pki))
    with pytest.raises(aiohttp.ClientError):
        await _get(session, base.replace("https://", "http://") + "/-/healthy")


async def test_client_without_the_ca_fails_verification(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A client that does not trust the generated CA refuses the server's certificate."""
    base = await serve(_tls_config(tmp_path, pki))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _get(session, f"{base}/-/healthy", ssl_context=_client_context())


async def test_tls_without_users_needs_no_credentials(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """With TLS but no basic_auth_users, requests need no Authorization header."""
    base = await serve(_tls_config(tmp_path, pki))
    status, body, _ = await _get(session, f"{base}/-/healthy", ssl_context=_client_context(pki))
    assert (200, "OK\n") == (status, body)


async def test_client_certificate_required(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """RequireAndVerifyClientCert rejects a client without a certificate, accepts a signed one."""
    extra = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n"
    base = await serve(_tls_config(tmp_path, pki, extra))
    with pytest.raises(aiohttp.ClientError):
        await _get(session, f"{base}/-/healthy", ssl_context=_client_context(pki))
    status, body, _ = await _get(
        session, f"{base}/-/healthy", ssl_context=_client_context(pki, with_client_cert=True)
    )
    assert (200, "OK\n") == (status, body)


async def test_client_certificate_from_another_ca_is_rejected(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A client certificate not signed by client_ca_file is refused."""
    extra = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n"
    base = await serve(_tls_config(tmp_path, pki, extra))
    context = _client_context(pki)
    pki.ca.issue_cert("stranger.test").configure_cert(context)  # signed by the server's CA
    with pytest.raises(aiohttp.ClientError):
        await _get(session, f"{base}/-/healthy", ssl_context=context)


async def test_min_version_tls13_refuses_a_tls12_client(
    tmp_path: Path, pki: Pki, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """min_version TLS13 refuses a client capped at TLS 1.2 and serves a TLS 1.3 one."""
    base = await serve(_tls_config(tmp_path, pki, "  min_version: TLS13\n"))
    old = _client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(aiohttp.ClientError):
        await _get(session, f"{base}/-/healthy", ssl_context=old)
    status, _, _ = await _get(session, f"{base}/-/healthy", ssl_context=_client_context(pki))
    assert 200 == status


async def test_htpasswd_2y_hashes_are_accepted(
    tmp_path: Path, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A $2y$ hash (htpasswd -B, as exporter-toolkit's docs suggest) authenticates."""
    hashed = "$2y$" + _hash(PASSWORD)[4:]
    base = await serve(_users_config(tmp_path, {USER: hashed}))
    status, _, _ = await _get(session, f"{base}/-/healthy", authorization=_basic(USER, PASSWORD))
    assert 200 == status


async def test_extra_headers_on_every_response(
    tmp_path: Path, serve: Serve, session: aiohttp.ClientSession
) -> None:
    """http_server_config.headers are set on successful, 401 and 404 responses alike."""
    headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    base = await serve(_users_config(tmp_path, {USER: _hash(PASSWORD)}, headers))
    good = _basic(USER, PASSWORD)
    seen = []
    for path, authorization in (("/-/healthy", good), ("/metrics", None), ("/nope", good)):
        status, _, response_headers = await _get(
            session, f"{base}{path}", authorization=authorization
        )
        seen.append((status, response_headers.get("X-Frame-Options")))
    assert [(200, "deny"), (401, "deny"), (404, "deny")] == seen


# ---------------------------------------------------------------------------
# bcrypt: off the event loop, once per attempt, cached on success


CheckFn = Callable[[bytes, bytes], bool]


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, int]]:
    """Record (hash, thread id) of every ``bcrypt.checkpw`` call."""
    calls: list[tuple[bytes, int]] = []
    real: CheckFn = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        calls.append((hashed, threading.get_ident()))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    return calls


async def test_unknown_user_and_wrong_password_cost_one_bcrypt_each(
    tmp_path: Path,
    serve: Serve,
    session: aiohttp.ClientSession,
    bcrypt_calls: list[tuple[bytes, int]],
) -> None:
    """An unknown user costs one bcrypt check (a dummy of equal cost), like a wrong password."""
    hashed = _hash(PASSWORD)
    base = await serve(_users_config(tmp_path, {USER: hashed}))
    url = f"{base}/-/healthy"

    status, _, _ = await _get(session, url, authorization=_basic("grafana", PASSWORD))
    assert 401 == status
    assert 1 == len(bcrypt_calls)
    dummy = bcrypt_calls[0][0]
    assert hashed[:7].replace("$2y$", "$2b$") == dummy[:7].decode()
    assert hashed.encode() != dummy

    bcrypt_calls.clear()
    status, _, _ = await _get(session, url, authorization=_basic(USER, "battery staple"))
    assert 401 == status
    assert [hashed.encode()] == [h for h, _ in bcrypt_calls]


async def test_successful_check_is_cached(
    tmp_path: Path,
    serve: Serve,
    session: aiohttp.ClientSession,
    bcrypt_calls: list[tuple[bytes, int]],
) -> None:
    """Repeated scrapes with the right password run bcrypt once; a wrong one still runs it."""
    base = await serve(_users_config(tmp_path, {USER: _hash(PASSWORD)}))
    url = f"{base}/-/healthy"
    statuses = [
        (await _get(session, url, authorization=_basic(USER, PASSWORD)))[0] for _ in range(3)
    ]
    assert [200, 200, 200] == statuses
    assert 1 == len(bcrypt_calls)
    statuses = [(await _get(session, url, authorization=_basic(USER, "nope")))[0] for _ in range(2)]
    assert [401, 401] == statuses
    assert 3 == len(bcrypt_calls)


async def test_bcrypt_runs_off_the_event_loop(
    tmp_path: Path, serve: Serve, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With this client's two bcrypt places stuck in worker threads, a cached request is served.

    The client's three other wrong checks are refused with 429 at once (its share is two).
    """
    base = await serve(_users_config(tmp_path, {USER: _hash(PASSWORD)}))
    good, wrong = _basic(USER, PASSWORD), _basic(USER, "battery staple")
    assert 200 == (await _get(session, f"{base}/-/healthy", authorization=good))[0]  # warm cache

    real: CheckFn = bcrypt.checkpw
    threads: list[int] = []
    release = threading.Event()

    def stuck(password: bytes, hashed: bytes) -> bool:
        # on the event loop this would freeze the server until the timeout below
        threads.append(threading.get_ident())
        release.wait(timeout=10)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", stuck)
    checks = [
        asyncio.create_task(_get(session, f"{base}/metrics", authorization=wrong)) for _ in range(5)
    ]
    async with asyncio.timeout(5):
        while not threads:
            await asyncio.sleep(0.01)
    try:
        async with asyncio.timeout(5):
            status, body, _ = await _get(session, f"{base}/-/healthy", authorization=good)
        pending = sum(not task.done() for task in checks)
    finally:
        release.set()
    results = await asyncio.gather(*checks)

    assert (200, "OK\n") == (status, body)
    assert 2 == pending
    assert [401, 401, 429, 429, 429] == sorted(result[0] for result in results)
    assert 2 == len(threads)
    assert threading.get_ident() not in threads


def test_cache_is_bounded() -> None:
    """The success cache keeps at most ``cache_size`` entries, dropping the oldest."""
    users = {f"user{i}": _hash(f"pw{i}") for i in range(3)}
    auth = webauth.Authenticator(users, cache_size=2)

    async def run() -> list[bool]:
        return [await auth.verify(_basic(f"user{i}", f"pw{i}")) for i in range(3)]

    assert [True, True, True] == asyncio.run(run())
    assert 2 == len(auth._cache)


# ---------------------------------------------------------------------------
# loading


def _copy_with_pki(source: Path, directory: Path, pki: Pki) -> Path:
    """Copy a fixture next to freshly generated TLS files (no keys live in the repository)."""
    pki.write(directory)
    target = directory / source.name
    shutil.copyfile(source, target)
    return target


def test_good_config_loads(tmp_path: Path, pki: Pki) -> None:
    """Every supported key loads; file names resolve against the config file's directory."""
    cfg = load_web_config(_copy_with_pki(WEB / "good.yml", tmp_path, pki))
    assert cfg.tls is not None
    assert tmp_path / "server.crt" == cfg.tls.cert_file
    assert tmp_path / "clients-ca.crt" == cfg.tls.client_ca_file
    assert "RequireAndVerifyClientCert" == cfg.tls.client_auth_type
    assert ssl.TLSVersion.TLSv1_2 == cfg.tls.min_version
    assert {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "deny"} == cfg.headers
    assert [USER] == list(cfg.basic_auth_users)
    context = cfg.ssl_context()
    assert context is not None
    assert ssl.CERT_REQUIRED == context.verify_mode


def test_repr_hides_password_hashes(tmp_path: Path, pki: Pki) -> None:
    """A WebConfig's repr never shows the bcrypt hashes."""
    cfg = load_web_config(_copy_with_pki(WEB / "good.yml", tmp_path, pki))
    assert "$2b$" not in repr(cfg)


_CONFIGURES_NOTHING = (
    "configures neither TLS nor basic auth nor headers; "
    "remove web_config_file to serve without them"
)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "http_server_config: {}\n"])
def test_a_web_config_that_configures_nothing_is_refused(tmp_path: Path, text: str) -> None:
    """A web config file without TLS, users or headers is an error, not a silent plain HTTP."""
    path = _write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert [f"{path}: web config file {_CONFIGURES_NOTHING}"] == info.value.problems


def test_a_web_config_must_be_a_regular_file() -> None:
    """/dev/null (or any device, FIFO or directory) is refused as a web config file."""
    with pytest.raises(ConfigError) as info:
        load_web_config(Path("/dev/null"))
    assert ["/dev/null: cannot read web config file: not a regular file"] == info.value.problems


@pytest.mark.parametrize("empty", ["/dev/null", "empty.yml"])
def test_web_config_from_the_environment_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    """An unusable web config from PROBED_DAEMON__WEB_CONFIG_FILE is reported as from there."""
    web_path = tmp_path / empty
    if empty == "empty.yml":
        web_path.write_text("")
    (tmp_path / "probes.toml").write_text("[daemon]\nallow_no_probes = true\n")
    monkeypatch.setenv("PROBED_DAEMON__WEB_CONFIG_FILE", str(web_path))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "probes.toml")
    origin = "web config file (from environment variable PROBED_DAEMON__WEB_CONFIG_FILE)"
    expected = (
        f"/dev/null: cannot read {origin}: not a regular file"
        if empty == "/dev/null"
        else f"{web_path}: {origin} {_CONFIGURES_NOTHING}"
    )
    assert [expected] == info.value.problems


def test_missing_file() -> None:
    """A web config path that does not exist is a clear error."""
    with pytest.raises(ConfigError) as info:
        load_web_config(WEB / "nope.yml")
    assert [f"{WEB / 'nope.yml'}: cannot read web config file: No such file or directory"] == (
        info.value.problems
    )


_TLS_KEYS = "cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version"
_TOP_KEYS = "tls_server_config, http_server_config, basic_auth_users"
_BAD_HASH = "not a bcrypt hash: expected $2a$, $2b$ or $2y$, a cost and 53 characters"

BAD_CASES = {
    "unknown_key": "4: key 'tls_server_config.min_versoin': unknown key; "
    f"supported keys: {_TLS_KEYS}",
    "unknown_top_key": f"1: key 'basic_auth_user': unknown key; supported keys: {_TOP_KEYS}",
    "missing_cert_file": "2: key 'tls_server_config.cert_file': cannot read {dir}/missing.crt: "
    "No such file or directory",
    "missing_key_file": "1: key 'tls_server_config.key_file': required key is missing",
    "key_does_not_match": "3: key 'tls_server_config.key_file': cannot use {dir}/other.key with "
    "{dir}/server.crt: key values mismatch",
    "bad_hash": f"2: key 'basic_auth_users.prometheus': {_BAD_HASH}",
    "bad_hash_prefix": f"2: key 'basic_auth_users.prometheus': {_BAD_HASH}",
    "user_with_colon": "2: key 'basic_auth_users.prom:etheus': user name must not contain ':' "
    "(basic auth cannot send it)",
    "duplicate_user": "3: key 'basic_auth_users.prometheus': duplicate key",
    "unsupported_key": "4: key 'tls_server_config.cipher_suites': not supported by probed; "
    f"supported keys: {_TLS_KEYS}",
    "unsupported_rate_limit": "1: key 'rate_limit': not supported by probed; "
    f"supported keys: {_TOP_KEYS}",
    "unsupported_http2": "2: key 'http_server_config.http2': not supported by probed; "
    "supported keys: headers",
    "unsupported_client_auth": "4: key 'tls_server_config.client_auth_type': "
    "'RequireAnyClientCert' is not supported by probed (it accepts unverified client "
    "certificates); use RequireAndVerifyClientCert",
    "unknown_client_auth": "4: key 'tls_server_config.client_auth_type': unknown "
    "client_auth_type 'Mandatory'; expected one of: NoClientCert, VerifyClientCertIfGiven, "
    "RequireAndVerifyClientCert",
    "missing_client_ca": "1: key 'tls_server_config.client_ca_file': required when "
    "client_auth_type is RequireAndVerifyClientCert: the CA file client certificates are "
    "verified against",
    "client_ca_without_client_auth": "4: key 'tls_server_config.client_ca_file': "
    "client_auth_type is NoClientCert, so this file would never be used; "
    "set client_auth_type: RequireAndVerifyClientCert",
    "bad_min_version": "4: key 'tls_server_config.min_version': 'TLS11' is not supported; "
    "expected TLS12 or TLS13",
    "min_above_max": "4: key 'tls_server_config.min_version': min_version TLS13 is above "
    "max_version TLS12",
    "unsupported_header": "3: key 'http_server_config.headers.X-Powered-By': header not "
    "supported; supported headers: Content-Security-Policy, X-Frame-Options, "
    "X-Content-Type-Options, X-XSS-Protection, Strict-Transport-Security",
    "bad_header_value": "3: key 'http_server_config.headers.X-Frame-Options': invalid value "
    "'allow'; expected one of: deny, sameorigin",
    "invalid_yaml": "3: invalid YAML: expected ',' or ']', but got '<stream end>'",
    "section_not_a_mapping": "1: key 'basic_auth_users': expected a mapping",
    "not_a_mapping": " a web config file must be a YAML mapping",
}


def test_every_bad_fixture_has_a_case() -> None:
    """Each file in tests/configs/web/bad is covered by BAD_CASES and vice versa."""
    assert sorted(BAD_CASES) == sorted(p.stem for p in BAD.glob("*.yml"))


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_config_exact_message(name: str, tmp_path: Path, pki: Pki) -> None:
    """Each rule's fixture fails with exactly one message naming the file, line and key."""
    path = _copy_with_pki(BAD / f"{name}.yml", tmp_path, pki)
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    expected = f"{path}:" + BAD_CASES[name].replace("{dir}", str(tmp_path))
    assert [expected] == info.value.problems


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    """Several problems in one file are all reported, not just the first."""
    path = _write_config(
        tmp_path,
        "tls_server_config:\n  cert_file: a.crt\n  min_version: TLS10\n"
        "basic_auth_users:\n  alice: plain\n",
    )
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert [
        f"{path}:2: key 'tls_server_config.cert_file': cannot read {tmp_path}/a.crt: "
        "No such file or directory",
        f"{path}:1: key 'tls_server_config.key_file': required key is missing",
        f"{path}:3: key 'tls_server_config.min_version': 'TLS10' is not supported; "
        "expected TLS12 or TLS13",
        f"{path}:5: key 'basic_auth_users.alice': {_BAD_HASH}",
    ] == info.value.problems


def test_bad_hash_is_never_echoed(tmp_path: Path) -> None:
    """A value that is not a bcrypt hash (maybe a pasted password) never appears in the error."""
    path = _write_config(tmp_path, "basic_auth_users:\n  alice: hunter2-secret\n")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert "hunter2" not in str(info.value)


@contextlib.asynccontextmanager
async def secured_daemon(tmp_path: Path, pki: Pki, password: str) -> AsyncIterator[Daemon]:
    """The real daemon serving TLS with basic-auth user ``prom`` from ``web-config.yml``."""
    pki.write(tmp_path)
    _write_config(
        tmp_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prom: {_hash(password)}\n",
    )
    (tmp_path / "probes.toml").write_text(
        '[daemon]\nlisten = "127.0.0.1:0"\nweb_config_file = "web-config.yml"\n'
        f'state_dir = "{tmp_path}/state"\nallow_no_probes = true\n'
    )
    daemon = Daemon(load_config(tmp_path / "probes.toml"), install_signal_handlers=False)
    task = asyncio.create_task(daemon.run())
    await daemon.wait_started()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        assert 0 == await task


async def test_daemon_serves_tls_and_basic_auth_from_its_config(
    tmp_path: Path, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """The real daemon, given web_config_file, serves /metrics over TLS behind basic auth."""
    ssl_ctx = _client_context(pki)
    async with secured_daemon(tmp_path, pki, "scrape-pw") as daemon:
        base = f"https://localhost:{daemon.bound_port}"
        async with session.get(
            f"{base}/metrics", ssl=ssl_ctx, headers={"Authorization": _basic("prom", "scrape-pw")}
        ) as resp:
            assert 200 == resp.status
            assert "probed_build_info" in await resp.text()
        async with session.get(
            f"{base}/metrics", ssl=ssl_ctx, headers={"Authorization": _basic("prom", "nope")}
        ) as resp:
            assert (401, "Unauthorized\n") == (resp.status, await resp.text())
        async with session.get(f"{base}/-/healthy", ssl=ssl_ctx) as resp:
            assert 401 == resp.status


async def test_reload_rotates_certificate_and_users_without_a_restart(
    tmp_path: Path, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A reload puts a new certificate, client policy and users in force for new connections."""
    web_path = tmp_path / "web-config.yml"
    old_ca, new_ca = _client_context(pki), ssl.create_default_context()
    rotated = trustme.CA()
    rotated.configure_trust(new_ca)

    async def status(ctx: ssl.SSLContext, password: str, host: str = "localhost") -> int | str:
        try:
            async with session.get(
                f"https://{host}:{port}/metrics",
                ssl=ctx,
                headers={"Authorization": _basic("prom", password)},
            ) as resp:
                return resp.status
        except aiohttp.ClientConnectorCertificateError:
            return "untrusted"

    async with secured_daemon(tmp_path, pki, "old-pw") as daemon:
        port = daemon.bound_port
        assert (200, "untrusted") == (await status(old_ca, "old-pw"), await status(new_ca, "x"))

        # rotate: a certificate from another CA, a new password, a new header
        leaf = rotated.issue_cert("localhost", "127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "new.crt"))
        leaf.private_key_pem.write_to_path(str(tmp_path / "new.key"))
        web_path.write_text(
            "tls_server_config:\n  cert_file: new.crt\n  key_file: new.key\n"
            f"basic_auth_users:\n  prom: {_hash('new-pw')}\n"
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        )
        assert (True, "added 0, changed 0, removed 0") == await daemon.reload()
        assert daemon.info.config_reload_successful
        assert "untrusted" == await status(old_ca, "new-pw")
        assert (401, 200) == (await status(new_ca, "old-pw"), await status(new_ca, "new-pw"))
        # a client dialling an IP address sends no server name; the swap holds for it too
        assert 200 == await status(new_ca, "new-pw", host="127.0.0.1")
        async with session.get(
            f"https://localhost:{port}/-/healthy",
            ssl=new_ca,
            headers={"Authorization": _basic("prom", "new-pw")},
        ) as resp:
            assert "deny" == resp.headers["X-Frame-Options"]

        # now require client certificates from the client CA
        web_path.write_text(
            "tls_server_config:\n  cert_file: new.crt\n  key_file: new.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n"
            f"basic_auth_users:\n  prom: {_hash('new-pw')}\n"
        )
        assert (await daemon.reload())[0]
        with_cert = ssl.create_default_context()
        rotated.configure_trust(with_cert)
        pki.client.configure_cert(with_cert)
        assert 200 == await status(with_cert, "new-pw")
        with pytest.raises(aiohttp.ClientError):
            await status(new_ca, "new-pw")

        # a web config whose TLS files are unusable fails the reload and changes nothing
        (tmp_path / "new.key").write_text("not a key\n")
        web_path.write_text(web_path.read_text() + "\n")
        ok, message = await daemon.reload()
        assert not ok
        assert "tls_server_config" in message
        assert not daemon.info.config_reload_successful
        assert 200 == await status(with_cert, "new-pw")
