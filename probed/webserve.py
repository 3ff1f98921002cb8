"""The web config applied to probed's server: basic auth and headers as aiohttp middleware.

``LiveWebConfig`` holds the loaded :class:`probed.webconfig.WebConfig` and swaps
its users and headers on a reload (TLS needs a restart); the bcrypt checks run in
:mod:`probed.webauth`'s pool.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from probed.webauth import Authenticator, BcryptPool, Overloaded
from probed.webconfig import REALM, WebConfig

__all__ = ["LiveWebConfig", "auth_middleware"]


def _set_headers(target: CIMultiDict[str], headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        target[name] = value


class LiveWebConfig:
    """The web config the server enforces now; a reload swaps it without a restart.

    What a reload changes takes effect for the next request (users, headers)
    or the next TLS handshake (certificate, key, client CA, client auth, TLS
    versions): the listening socket is kept, so certificates rotate in place.
    The one change that needs a restart is turning TLS on or off, because the
    socket was opened with or without it; ``apply`` says so and keeps the old
    TLS state.

    Certificates are swapped through the server context's SNI callback, which
    OpenSSL runs on every ClientHello (with or without a server name): it
    points the handshake at the newest context.
    """

    def __init__(self, cfg: WebConfig | None, pool: BcryptPool | None = None) -> None:
        self.pool = pool if pool is not None else BcryptPool()  # kept across reloads
        self._authenticator: Authenticator | None = None
        self._headers: dict[str, str] = {}
        self.source: Path | None = None
        self._set_auth(cfg)
        self.ssl_context: ssl.SSLContext | None = None
        """The context the listening socket was opened with (None: plain HTTP)."""
        self._current: ssl.SSLContext | None = None
        context = cfg.ssl_context() if cfg is not None else None
        if context is not None:
            context.sni_callback = self._point_at_current
            self.ssl_context = self._current = context

    def _set_auth(self, cfg: WebConfig | None) -> None:
        users = cfg.basic_auth_users if cfg is not None else {}
        old = self._authenticator
        self._authenticator = Authenticator(users, self.pool, previous=old) if users else None
        self._headers = dict(cfg.headers) if cfg is not None else {}
        self.source = cfg.source if cfg is not None else None

    def _point_at_current(
        self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, base: ssl.SSLContext
    ) -> None:
        current = self._current
        if current is not None and current is not base:
            conn.context = current

    def prepare(self, cfg: WebConfig | None) -> ssl.SSLContext | None:
        """Build what ``apply`` will install; raises ``ConfigError`` if the TLS files fail."""
        if cfg is None or cfg.tls is None or self.ssl_context is None:
            return None
        return cfg.ssl_context()

    def apply(self, cfg: WebConfig | None, context: ssl.SSLContext | None) -> list[str]:
        """Install ``cfg`` (``context`` from ``prepare``); return what needs a restart."""
        needs_restart: list[str] = []
        self._set_auth(cfg)
        has_tls = cfg is not None and cfg.tls is not None
        if has_tls != (self.ssl_context is not None):
            needs_restart.append("tls_server_config")
        elif context is not None and self.ssl_context is not None and cfg is not None:
            assert cfg.tls is not None
            # Versions and the verify mode are copied from the listening context into
            # each new connection before the SNI callback runs, so set them there too.
            base = self.ssl_context
            base.minimum_version = cfg.tls.min_version
            base.maximum_version = cfg.tls.max_version
            base.verify_mode = context.verify_mode
            self._current = context
        return needs_restart

    def middleware(self) -> Middleware:
        """Middleware enforcing the current ``basic_auth_users`` on every path, adding headers.

        Put it first in the application's middlewares so nothing runs before the check.
        """
        challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'}

        def refuse(
            status: int, text: str, extra: Mapping[str, str], headers: Mapping[str, str]
        ) -> web.Response:
            response = web.Response(status=status, text=text, headers=extra)
            _set_headers(response.headers, headers)
            return response

        @web.middleware
        async def web_config_middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            authenticator, headers = self._authenticator, self._headers
            if authenticator is not None:
                try:
                    header = request.headers.get(hdrs.AUTHORIZATION)
                    if not await authenticator.verify(header, request.remote or ""):
                        return refuse(401, "Unauthorized\n", challenge, headers)
                except Overloaded:
                    return refuse(429, "Too Many Requests\n", {"Retry-After": "1"}, headers)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                _set_headers(exc.headers, headers)
                raise
            if not response.prepared:
                _set_headers(response.headers, headers)
            return response

        return web_config_middleware


def auth_middleware(cfg: WebConfig) -> Middleware:
    """Middleware enforcing ``cfg``'s ``basic_auth_users`` on every path (fixed: no reload)."""
    return LiveWebConfig(
        WebConfig(source=cfg.source, basic_auth_users=cfg.basic_auth_users, headers=cfg.headers)
    ).middleware()
