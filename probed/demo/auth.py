"""The demo target's login: ``POST /api/auth/login`` then ``GET /api/me``.

One user exists. A login with its username (or ``email``) and password, as JSON
or a form, answers a bearer token and sets it as the ``session`` cookie;
``/api/me`` accepts either. Passwords and tokens are never logged or echoed back.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from aiohttp import web

from probed.demo.jsonio import json_response

__all__ = ["Accounts"]

_TOKEN_TTL: Final = 3_600.0
_MAX_TOKENS: Final = 10_000
_USER: Final[Mapping[str, str]] = MappingProxyType({"id": "u_1", "role": "user"})


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


class Accounts:
    """The one user, ``username`` / ``password``, and the sessions its logins opened."""

    def __init__(self, *, username: str, password: str) -> None:
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        if not isinstance(username, str) or not username:
            raise ValueError("username must be a non-empty string")
        self._username = username
        self._password = password
        self._tokens = _TokenStore()

    def issued_tokens(self) -> list[str]:
        """Every live session token, oldest first."""
        return self._tokens.tokens()

    def routes(self) -> list[web.RouteDef]:
        """``POST /api/auth/login`` and ``GET /api/me``."""
        return [web.post("/api/auth/login", self._login), web.get("/api/me", self._me)]

    async def _login(self, request: web.Request) -> web.Response:
        credentials = await _read_credentials(request)
        if isinstance(credentials, str):
            return _malformed(credentials)
        username, password = credentials
        user_ok = hmac.compare_digest(username.encode(), self._username.encode())
        password_ok = hmac.compare_digest(password.encode(), self._password.encode())
        if not (user_ok and password_ok):
            return json_response({"error": "invalid_credentials"}, status=401)
        token = self._tokens.issue()
        response = json_response(
            {
                "token": token,
                "token_type": "Bearer",
                "expires_in": int(_TOKEN_TTL),
                "user": {"id": _USER["id"]},
            }
        )
        response.set_cookie("session", token, httponly=True, path="/", samesite="Lax")
        return response

    async def _me(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            token = request.cookies.get("session", "")
        if not token or not self._tokens.valid(token.strip()):
            return json_response(
                {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return json_response(dict(_USER))


def _malformed(detail: str) -> web.Response:
    return json_response({"error": "malformed_body", "detail": detail}, status=400)


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
