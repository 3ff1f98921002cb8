"""The built-in demo target: a small aiohttp app shaped like the seeds' product.

It answers the product's health endpoints, a login path (``POST /api/auth/login``
then ``GET /api/me``) and the AI indicators endpoint (``POST /v1/indicators``),
all in JSON. Fault knobs (``Faults``) let tests and operators rehearse incidents:
added latency, 429 and 503 answers drawn at a set ratio, and refused connections.

Faults are changed from Python (``await DemoTarget.set_faults(...)``) or over
HTTP on the admin endpoints, which faults never touch::

    GET /-/admin/faults        the current faults
    PUT /-/admin/faults        any subset of the fault keys, plus ``refuse_for``

While connections are refused no admin request can arrive, so ``refuse_for``
(seconds) refuses now and re-opens the same port by itself after that time.

Passwords and tokens are never logged or echoed back in errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import hmac
import importlib.resources
import itertools
import json
import math
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self, TypeGuard

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = [
    "ADMIN_PREFIX",
    "DemoTarget",
    "Faults",
    "compute_indicators",
    "load_indicators_fixture",
]

ADMIN_PREFIX: Final = "/-/admin/"
"""Paths under this prefix are admin endpoints: faults never apply to them."""

_MAX_LATENCY: Final = 300.0
_MAX_RETRY_AFTER: Final = 86_400
_MAX_REFUSE_FOR: Final = 3_600.0
_TOKEN_TTL: Final = 3_600.0
_MAX_TOKENS: Final = 10_000
_USER: Final = {"id": "u_1", "role": "user"}
_VERSION: Final = "1.0.0"
_MIGRATION: Final = "0042_events"
_MIN_CLOSES: Final = 15
_MAX_CLOSES: Final = 10_000
_MAX_SYMBOL: Final = 32

_log = structlog.get_logger("probed.demo")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Faults:
    """What the demo target does wrong; the defaults make it healthy.

    ``latency`` seconds are added before answering; then a share
    ``rate_limit_ratio`` of requests is answered 429 (with ``Retry-After:
    retry_after``), then a share ``error_ratio`` 503. A ratio of 1.0 hits every
    request. ``paths`` are ``fnmatch`` globs on the request path limiting the
    faults above (empty: every non-admin path). ``refuse_connections`` closes
    the listening socket. Values are checked on creation: a bad one raises
    ``ValueError`` naming its key.
    """

    latency: float = 0.0
    error_ratio: float = 0.0
    rate_limit_ratio: float = 0.0
    retry_after: int = 5
    refuse_connections: bool = False
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        latency: object = self.latency
        if not _is_number(latency) or not 0.0 <= float(latency) <= _MAX_LATENCY:
            raise ValueError(
                f"latency must be a number of seconds in [0, {_MAX_LATENCY:g}], got {latency!r}"
            )
        for key in ("error_ratio", "rate_limit_ratio"):
            ratio: object = getattr(self, key)
            if not _is_number(ratio) or not 0.0 <= float(ratio) <= 1.0:
                raise ValueError(f"{key} must be a number in [0, 1], got {ratio!r}")
        retry_after: object = self.retry_after
        if (
            not isinstance(retry_after, int)
            or isinstance(retry_after, bool)
            or not 0 <= retry_after <= _MAX_RETRY_AFTER
        ):
            raise ValueError(
                "retry_after must be a whole number of seconds in "
                f"[0, {_MAX_RETRY_AFTER}], got {retry_after!r}"
            )
        refuse: object = self.refuse_connections
        if not isinstance(refuse, bool):
            raise ValueError(f"refuse_connections must be true or false, got {refuse!r}")
        paths: object = self.paths
        if not isinstance(paths, list | tuple):
            raise ValueError(f"paths must be a list of glob strings, got {paths!r}")
        for index, glob in enumerate(paths):
            if not isinstance(glob, str) or not glob.startswith(("/", "*")):
                raise ValueError(
                    f"paths[{index}] must be a glob starting with '/' or '*', got {glob!r}"
                )
        self.latency = float(self.latency)
        self.error_ratio = float(self.error_ratio)
        self.rate_limit_ratio = float(self.rate_limit_ratio)
        self.paths = list(paths)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The fault keys, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def updated(self, changes: Mapping[str, object]) -> Faults:
        """A copy with ``changes`` applied; ``ValueError`` on an unknown key or bad value."""
        unknown = sorted(set(changes) - set(self.keys()))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(self.keys())})")
        kwargs: dict[str, Any] = dict(changes)
        return dataclasses.replace(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The faults as a JSON-ready mapping (the admin endpoints' shape)."""
        return {
            "latency": self.latency,
            "error_ratio": self.error_ratio,
            "rate_limit_ratio": self.rate_limit_ratio,
            "retry_after": self.retry_after,
            "refuse_connections": self.refuse_connections,
            "paths": list(self.paths),
        }

    def applies_to(self, path: str) -> bool:
        """Whether the request faults (latency, 429, 503) apply to ``path``."""
        if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
            return False
        return not self.paths or any(fnmatch.fnmatchcase(path, glob) for glob in self.paths)


def _check_refuse_for(value: object) -> float:
    if not _is_number(value) or not 0.0 < float(value) <= _MAX_REFUSE_FOR:
        raise ValueError(
            f"refuse_for must be a number of seconds in (0, {_MAX_REFUSE_FOR:g}], got {value!r}"
        )
    return float(value)


def _parse_admin_update(current: Faults, body: object) -> tuple[Faults, float | None]:
    """The faults a ``PUT /-/admin/faults`` body asks for, and its ``refuse_for``."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object of fault keys")
    changes = dict(body)
    refuse_for: float | None = None
    if "refuse_for" in changes:
        refuse_for = _check_refuse_for(changes.pop("refuse_for"))
        if changes.get("refuse_connections", True) is not True:
            raise ValueError("refuse_for needs refuse_connections true (or left out)")
        changes["refuse_connections"] = True
    return current.updated(changes), refuse_for


# --- indicators --------------------------------------------------------------------------


def _round(value: float) -> float:
    return round(value, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def _sma(closes: list[float], period: int) -> list[float]:
    return [
        _round(math.fsum(closes[end - period : end]) / period)
        for end in range(period, len(closes) + 1)
    ]


def _ema(closes: list[float], period: int) -> list[float]:
    alpha = 2.0 / (period + 1)
    ema = math.fsum(closes[:period]) / period
    out = [ema]
    for close in closes[period:]:
        ema = alpha * close + (1.0 - alpha) * ema
        out.append(ema)
    return [_round(value) for value in out]


def _rsi(closes: list[float], period: int) -> float:
    """Wilder's RSI over the whole series; 100 with no losses, 50 when flat."""
    changes = [b - a for a, b in itertools.pairwise(closes)]
    gains = [max(change, 0.0) for change in changes]
    losses = [max(-change, 0.0) for change in changes]
    avg_gain = math.fsum(gains[:period]) / period
    avg_loss = math.fsum(losses[:period]) / period
    for gain, loss in zip(gains[period:], losses[period:], strict=True):
        avg_gain = (avg_gain * (period - 1) + gain) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return _round(100.0 - 100.0 / (1.0 + avg_gain / avg_loss))


def compute_indicators(payload: Mapping[str, Any]) -> dict[str, Any]:
    """SMA(5), EMA(10) and RSI(14) of ``payload["closes"]``, floats rounded to 6 places.

    ``payload`` is ``{"symbol": str, "closes": [number, ...]}`` with 15 to 10,000
    finite closes; other keys are ignored. ``sma_5`` and ``ema_10`` end at each
    close from the 5th (10th) on; the EMA starts from the SMA of the first 10.
    Raises ``ValueError`` on invalid input. Same input, same output, always.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("body must be a JSON object with 'symbol' and 'closes'")
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not 0 < len(symbol) <= _MAX_SYMBOL:
        raise ValueError(f"'symbol' must be a string of 1 to {_MAX_SYMBOL} characters")
    raw = payload.get("closes")
    if not isinstance(raw, list) or not _MIN_CLOSES <= len(raw) <= _MAX_CLOSES:
        raise ValueError(f"'closes' must be a list of {_MIN_CLOSES} to {_MAX_CLOSES} numbers")
    closes: list[float] = []
    for index, value in enumerate(raw):
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"'closes[{index}]' must be a finite number, got {value!r}")
        closes.append(float(value))
    return {
        "symbol": symbol,
        "indicators": {
            "sma_5": _sma(closes, 5),
            "ema_10": _ema(closes, 10),
            "rsi_14": _rsi(closes, 14),
        },
    }


def load_indicators_fixture() -> dict[str, Any]:
    """The shipped input for ``POST /v1/indicators`` (``fixtures/indicators.json``)."""
    text = (
        importlib.resources.files("probed.demo")
        .joinpath("fixtures", "indicators.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


# --- sessions ----------------------------------------------------------------------------


class _TokenStore:
    """Bearer tokens and their expiry: ``ttl`` seconds, at most ``max_size`` (oldest go first)."""

    def __init__(
        self,
        *,
        ttl: float = _TOKEN_TTL,
        max_size: int = _MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._expiry: dict[str, float] = {}  # insertion order == expiry order

    def __len__(self) -> int:
        return len(self._expiry)

    def tokens(self) -> list[str]:
        """Every live token, oldest first."""
        return list(self._expiry)

    def issue(self) -> str:
        """A new random token, valid for ``ttl`` seconds."""
        now = self._clock()
        self._purge(now)
        while len(self._expiry) >= self._max_size:
            del self._expiry[next(iter(self._expiry))]
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self._ttl
        return token

    def valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and has not expired or been evicted."""
        expiry = self._expiry.get(token)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._expiry[token]
            return False
        return True

    def _purge(self, now: float) -> None:
        while self._expiry:
            oldest = next(iter(self._expiry))
            if self._expiry[oldest] > now:
                return
            del self._expiry[oldest]


# --- the app -----------------------------------------------------------------------------

_TARGET: Final[web.AppKey[DemoTarget]] = web.AppKey("demo_target")


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _json(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@web.middleware
async def _track(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: JSON routing errors; tracks in-flight requests; no keep-alive while refusing."""
    target = request.app[_TARGET]
    protocol = request.protocol
    target._in_flight.add(protocol)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        slug = exc.reason.lower().replace(" ", "_")
        response = _json({"error": slug}, status=exc.status, headers=headers)
    finally:
        target._in_flight.discard(protocol)
    if target._site is None and not response.prepared:
        response.force_close()
    return response


@web.middleware
async def _inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency first, then the 429 draw, then the 503 draw, then the handler."""
    target = request.app[_TARGET]
    faults = target._faults
    if not faults.applies_to(request.path):
        return await handler(request)
    if faults.latency > 0.0:
        await asyncio.sleep(faults.latency)
    faults = target._faults  # may have changed while sleeping
    if not faults.applies_to(request.path):
        return await handler(request)
    rng = target._rng
    if faults.rate_limit_ratio > 0.0 and rng.random() < faults.rate_limit_ratio:
        return _json(
            {"error": "rate_limited", "retry_after": faults.retry_after},
            status=429,
            headers={"Retry-After": str(faults.retry_after)},
        )
    if faults.error_ratio > 0.0 and rng.random() < faults.error_ratio:
        return _json({"error": "service_unavailable"}, status=503)
    return await handler(request)


async def _health(request: web.Request) -> web.Response:
    return _json({"status": "healthy", "timestamp": _now(), "version": _VERSION})


async def _readiness(request: web.Request) -> web.Response:
    checks = {"database": "ok", "redis": "ok", "connection_pool": "ok"}
    return _json({"status": "ready", "checks": checks})


async def _liveness(request: web.Request) -> web.Response:
    return _json({"status": "alive", "timestamp": _now()})


async def _migrations(request: web.Request) -> web.Response:
    return _json({"status": "up_to_date", "current": _MIGRATION, "head": _MIGRATION})


def _malformed(detail: str) -> web.Response:
    return _json({"error": "malformed_body", "detail": detail}, status=400)


async def _read_credentials(request: web.Request) -> tuple[str, str] | str:
    """``(username, password)`` from a JSON or form body, or what is wrong with it."""
    fields: Mapping[str, object]
    content_type = request.content_type
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            body: object = await request.json()
        except (ValueError, UnicodeDecodeError):
            return "body is not valid JSON"
        if not isinstance(body, dict):
            return "body must be a JSON object"
        fields = body
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            fields = await request.post()
        except ValueError:
            return "body is not a valid form"
    else:
        return "Content-Type must be application/json or application/x-www-form-urlencoded"
    username = fields.get("username", fields.get("email"))
    password = fields.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return "'username' (or 'email') and 'password' must be strings"
    return username, password


async def _login(request: web.Request) -> web.Response:
    target = request.app[_TARGET]
    credentials = await _read_credentials(request)
    if isinstance(credentials, str):
        return _malformed(credentials)
    username, password = credentials
    user_ok = hmac.compare_digest(username.encode(), target._username.encode())
    password_ok = hmac.compare_digest(password.encode(), target._password.encode())
    if not (user_ok and password_ok):
        return _json({"error": "invalid_credentials"}, status=401)
    token = target._tokens.issue()
    response = _json(
        {
            "token": token,
            "token_type": "Bearer",
            "expires_in": int(_TOKEN_TTL),
            "user": {"id": _USER["id"]},
        }
    )
    response.set_cookie("session", token, httponly=True, path="/", samesite="Lax")
    return response


async def _me(request: web.Request) -> web.Response:
    target = request.app[_TARGET]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = request.cookies.get("session", "")
    if not token or not target._tokens.valid(token.strip()):
        return _json({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})
    return _json(dict(_USER))


async def _indicators(request: web.Request) -> web.Response:
    try:
        body: object = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _json({"error": "body is not valid JSON"}, status=400)
    try:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object with 'symbol' and 'closes'")
        result = compute_indicators(body)
    except ValueError as exc:
        return _json({"error": str(exc)}, status=400)
    return _json(result)


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[_TARGET]._faults.to_dict())


async def _put_faults(request: web.Request) -> web.Response:
    target = request.app[_TARGET]
    try:
        body: object = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _json({"error": "body is not valid JSON"}, status=400)
    try:
        faults, refuse_for = _parse_admin_update(target._faults, body)
    except ValueError as exc:
        return _json({"error": str(exc)}, status=400)
    await target.set_faults(faults, refuse_for=refuse_for)
    return _json(target._faults.to_dict())


def _build_app(target: DemoTarget) -> web.Application:
    app = web.Application(middlewares=[_track, _inject_faults])
    app[_TARGET] = target
    app.router.add_get("/health", _health)
    app.router.add_get("/health/readiness", _readiness)
    app.router.add_get("/health/liveness", _liveness)
    app.router.add_get("/health/migrations", _migrations)
    app.router.add_post("/api/auth/login", _login)
    app.router.add_get("/api/me", _me)
    app.router.add_post("/v1/indicators", _indicators)
    app.router.add_get(ADMIN_PREFIX + "faults", _get_faults)
    app.router.add_put(ADMIN_PREFIX + "faults", _put_faults)
    return app


class DemoTarget:
    """The demo product on ``host:port`` (``port=0``: any free port, see ``.port``).

    Use as ``async with DemoTarget(password=...) as target:`` or call
    ``start()`` and ``stop()``. One user exists: ``username`` / ``password``.
    ``seed`` seeds the draws of the ratio faults.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "probe@demo.example",
        password: str,
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        if not isinstance(username, str) or not username:
            raise ValueError("username must be a non-empty string")
        if not isinstance(port, int) or not 0 <= port <= 65_535:
            raise ValueError(f"port must be in [0, 65535], got {port!r}")
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._username = username
        self._password = password
        self._faults = dataclasses.replace(faults) if faults is not None else Faults()
        self._rng = random.Random(seed)
        self._tokens = _TokenStore()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._lock = asyncio.Lock()
        self._reopen_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._in_flight: set[web.RequestHandler] = set()

    def __repr__(self) -> str:
        return f"DemoTarget(host={self._host!r}, port={self._port or self._requested_port})"

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when created with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("DemoTarget is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` without a trailing slash (loopback for a wildcard host)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> Faults:
        """A copy of the current faults (change them with ``set_faults``)."""
        return dataclasses.replace(self._faults)

    @property
    def refusing(self) -> bool:
        """Whether the listening socket is closed right now."""
        return self._runner is not None and self._site is None

    def issued_tokens(self) -> list[str]:
        """Every live session token (tests scan outputs for them)."""
        return self._tokens.tokens()

    async def start(self) -> None:
        """Bind and serve; honours ``refuse_connections`` once the port is known."""
        if self._runner is not None:
            raise RuntimeError("DemoTarget is already started")
        runner = web.AppRunner(
            _build_app(self), handle_signals=False, access_log=None, shutdown_timeout=5.0
        )
        await runner.setup()
        self._runner = runner
        try:
            await self._open(self._requested_port)
            if self._faults.refuse_connections:
                await self._close()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        task, self._reopen_task = self._reopen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runner, self._runner = self._runner, None
        self._site = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def set_faults(self, faults: Faults, *, refuse_for: float | None = None) -> None:
        """Replace the faults; open or close the listening socket to match.

        With ``refuse_for`` (seconds) connections are refused now and the same
        port re-opens by itself after that time (unless faults change first).
        Re-opening raises ``OSError`` if another process took the port. Before
        ``start()`` only the faults are stored (``start`` honours them, with no
        timed re-open).
        """
        new = dataclasses.replace(faults)
        if refuse_for is not None:
            refuse_for = _check_refuse_for(refuse_for)
            new.refuse_connections = True
        async with self._lock:
            self._generation += 1
            task, self._reopen_task = self._reopen_task, None
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            await self._apply(new)
            if refuse_for is not None and self._runner is not None:
                self._reopen_task = asyncio.create_task(
                    self._reopen_after(refuse_for, self._generation),
                    name="probed-demo-reopen",
                )

    async def _apply(self, new: Faults) -> None:
        if self._runner is not None:
            if new.refuse_connections and self._site is not None:
                await self._close()
            elif not new.refuse_connections and self._site is None:
                await self._open(self.port)
        self._faults = new

    async def _reopen_after(self, delay: float, generation: int) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if generation != self._generation:
                return
            self._reopen_task = None
            self._generation += 1
            try:
                await self._apply(dataclasses.replace(self._faults, refuse_connections=False))
            except OSError as exc:
                _log.warning("demo_reopen_failed", port=self._port, error=str(exc))

    async def _open(self, port: int) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self._host, port)
        await site.start()
        self._site = site
        self._port = int(self._runner.addresses[0][1])

    async def _close(self) -> None:
        """Close the listener and every idle connection; in-flight requests finish, then close."""
        assert self._runner is not None
        assert self._site is not None
        site, self._site = self._site, None
        await site.stop()
        server = self._runner.server
        if server is not None:
            for connection in server.connections:
                if connection in self._in_flight:
                    connection.close()
                else:
                    connection.force_close()
        # Let the closes reach the sockets, so same-process clients see them at once.
        for _ in range(4):
            await asyncio.sleep(0)
