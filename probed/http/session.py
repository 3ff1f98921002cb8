"""The two HTTP client sessions every probe kind uses, and per-request phase timing.

``create_sessions()`` returns ``(fresh, pooled)``:

* ``fresh`` closes every connection after its request (``force_close``) and does
  not cache DNS answers, so each run measures resolve, connect and TLS afresh,
  like blackbox_exporter. aiohttp's silent retry of an idempotent request after
  a dropped connection is switched off here: on a brand-new connection a drop is
  a real failure and a probe run is one attempt.
* ``pooled`` keeps connections alive (``fresh_connection = false``).

Both decompress bodies, keep no cookies between runs (``DummyCookieJar``), ignore
proxy and netrc settings from the environment, and have no timeout of their own:
the runner's ``asyncio.timeout`` owns the deadline.

Phase timing comes from aiohttp's ``TraceConfig`` (and, for ``tls``, from the
sessions' connector and the SSL context): pass a ``PhaseTimer`` as
``trace_request_ctx`` and it accumulates seconds per phase (summed over redirect
hops):

``resolve``
    DNS resolution (zero for an IP literal or a DNS cache hit).
``connect``
    Connection creation as aiohttp reports it, without the resolve time and
    without the TLS handshake (TCP connect only).
``tls``
    The TLS handshake: from the first ``do_handshake()`` call on the connection's
    ``ssl.SSLObject`` (the TCP connection is up by then) until a call succeeds.
    This needs the ``ssl=`` context of the request to come from
    ``timed_ssl_context()`` (``_http_common.ssl_for`` sees to it), whose
    ``sslobject_class`` records those two instants; the connector reads them when
    it hands a connection to a request and counts each handshake once. A run that
    used no TLS has no ``tls`` phase; a reused pooled connection adds nothing to
    ``connect`` or ``tls`` (a run on one reports 0.0 for both).
``processing``
    Request sent (headers, then the last body chunk) until the response headers
    are parsed.
``transfer``
    Response headers until the body has been read (the caller marks the end with
    ``PhaseTimer.body_read()``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiohttp.abc
from aiohttp.connector import Connection

from probed.http import peerinfo
from probed.http.peerinfo import tls_info
from probed.results import TlsInfo

__all__ = [
    "PHASES",
    "PhaseTimer",
    "claim_tls",
    "create_sessions",
    "peer_tls",
    "timed_ssl_context",
]

#: The phase names ``PhaseTimer.phases()`` reports, in request order (``tls`` only
#: for runs that used TLS).
PHASES = ("resolve", "connect", "tls", "processing", "transfer")

_now = time.perf_counter


# --- TLS handshake timing ---------------------------------------------------------------


class _TimedSSLObject(ssl.SSLObject):
    """An ``SSLObject`` that notes when its handshake started and when it completed.

    asyncio's SSL protocol calls ``do_handshake()`` once the TCP connection is up and
    again on every flight from the server until it returns without raising.
    """

    # SSLObject instances are made by SSLContext.wrap_bio without __init__: defaults
    # live on the class, the first assignment makes them per instance.
    _tls_started: float = 0.0
    _tls_ended: float = 0.0
    _tls_claimed: bool = False
    _tls_info: TlsInfo | None = None
    """The connection's certificates and version, read by the first run that used it."""

    def do_handshake(self) -> None:
        if not self._tls_started:
            self._tls_started = _now()
        super().do_handshake()  # raises SSLWantReadError until the handshake is done
        if not self._tls_ended:
            self._tls_ended = _now()


def timed_ssl_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """Make ``context`` time TLS handshakes (the ``tls`` phase) and return it.

    Installs the timing ``sslobject_class`` unless the context already has its own
    subclass; the connections behave exactly as before otherwise.
    """
    if context.sslobject_class is ssl.SSLObject:
        context.sslobject_class = _TimedSSLObject
    return context


#: The TLS handshake seconds of the connection the connector last handed out in this
#: task (0.0 for a reused one, None without timed TLS); the next response consumes it.
_hop_tls: ContextVar[float | None] = ContextVar("probed_hop_tls", default=None)


def claim_tls(transport: asyncio.BaseTransport | None) -> float | None:
    """The TLS handshake seconds of the connection of ``transport``: 0.0 once an earlier
    request counted them, None without timed TLS (``timed_ssl_context``)."""
    sslobj = None if transport is None else transport.get_extra_info("ssl_object")
    if not isinstance(sslobj, _TimedSSLObject):
        return None
    if sslobj._tls_claimed:  # handshake counted by an earlier request on this connection
        return 0.0
    sslobj._tls_claimed = True
    return max(sslobj._tls_ended - sslobj._tls_started, 0.0)


def peer_tls(transport: asyncio.BaseTransport | None) -> TlsInfo | None:
    """The TLS facts of the connection of ``transport`` (None: plain), read once per timed
    connection."""
    sslobj = None if transport is None else transport.get_extra_info("ssl_object")
    if not isinstance(sslobj, ssl.SSLObject):
        return None
    if not isinstance(sslobj, _TimedSSLObject):
        return tls_info(sslobj)
    if sslobj._tls_info is None:
        sslobj._tls_info = tls_info(sslobj)
    return sslobj._tls_info


class _Connector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that notes the TLS handshake time of each connection it hands out.

    The response often releases its connection while its headers are parsed (the
    whole body arrived with them), so the connection is examined here, when the
    request gets it, in the request's own task; inside a probe run, its TLS facts
    go to the run's ``peerinfo.PeerFacts`` too.
    """

    async def connect(self, req: aiohttp.ClientRequest, *args: Any, **kwargs: Any) -> Connection:
        conn = await super().connect(req, *args, **kwargs)
        _hop_tls.set(claim_tls(conn.transport))
        if (peer := peerinfo.current()) is not None:
            peer.connected(peer_tls(conn.transport))
        return conn


class PhaseTimer:
    """Seconds spent per request phase, filled in by the sessions' trace hooks.

    One timer may be passed to several requests (a login and its follow-up):
    phases then add up, as they do across redirect hops.
    """

    __slots__ = (
        "_awaiting_headers",
        "_conn_started",
        "_connect",
        "_dns_started",
        "_headers_at",
        "_processing",
        "_resolve",
        "_resolve_before_conn",
        "_sent_at",
        "_tls",
        "_transfer",
        "_used_tls",
    )

    def __init__(self) -> None:
        self._resolve = 0.0
        self._connect = 0.0
        self._tls = 0.0
        self._used_tls = False
        self._processing = 0.0
        self._transfer = 0.0
        self._dns_started = 0.0
        self._conn_started = 0.0
        self._resolve_before_conn = 0.0
        self._sent_at = 0.0
        self._awaiting_headers = False
        self._headers_at: float | None = None

    def phases(self) -> dict[str, float]:
        """Seconds per phase: resolve, connect, tls (only if TLS was used), processing, transfer."""
        phases = {"resolve": max(self._resolve, 0.0), "connect": max(self._connect, 0.0)}
        if self._used_tls:
            phases["tls"] = max(self._tls, 0.0)
        phases["processing"] = max(self._processing, 0.0)
        phases["transfer"] = max(self._transfer, 0.0)
        return phases

    @property
    def awaiting_headers(self) -> bool:
        """Whether a request went out on an open connection and its response headers have not
        come yet (a connection still being made, or a finished hop, is not awaiting)."""
        return self._awaiting_headers

    def body_read(self) -> None:
        """Mark the end of reading the response body (ends the ``transfer`` phase)."""
        if self._headers_at is not None:
            self._transfer += _now() - self._headers_at
            self._headers_at = None

    # a client without trace hooks (``probed.http.wire``) reports each hop in three calls

    def connected(self, resolve: float, connect: float, tls: float | None) -> None:
        """A hop's connection is up: ``resolve`` and TCP ``connect`` seconds, and ``tls``,
        the handshake's (None: no TLS)."""
        self._resolve += resolve
        self._connect += connect
        if tls is not None:
            self._used_tls = True
            self._tls += tls

    def request_sent(self, at: float) -> None:
        """The hop's whole request was written at ``at`` (``time.perf_counter``)."""
        self._awaiting_headers = True
        self._sent_at = at

    def headers_received(self, at: float) -> None:
        """The hop's response headers were parsed at ``at``."""
        if self._awaiting_headers:
            self._processing += at - self._sent_at
            self._awaiting_headers = False
        self._headers_at = at

    # trace hooks (called through the module-level handlers below)

    def _on_dns_start(self) -> None:
        self._dns_started = _now()

    def _on_dns_end(self) -> None:
        self._resolve += _now() - self._dns_started

    def _on_conn_start(self) -> None:
        self._conn_started = _now()
        self._resolve_before_conn = self._resolve

    def _on_conn_end(self) -> None:
        # aiohttp resolves the host inside connection creation: count that time once.
        resolved = self._resolve - self._resolve_before_conn
        self._connect += _now() - self._conn_started - resolved

    def _on_sent(self, *, headers: bool) -> None:
        if headers:
            self._awaiting_headers = True
            self._sent_at = _now()
        elif self._awaiting_headers:
            self._sent_at = _now()

    def _on_headers_received(self) -> None:
        now = _now()
        if self._awaiting_headers:
            self._processing += now - self._sent_at
            self._awaiting_headers = False
        self._headers_at = now
        # This hop's connection: move its handshake time from connect to tls.
        tls = _hop_tls.get()
        if tls is not None:
            _hop_tls.set(None)
            self._used_tls = True
            self._tls += tls
            self._connect -= tls


def _timer(ctx: SimpleNamespace) -> PhaseTimer | None:
    timer = ctx.trace_request_ctx
    return timer if isinstance(timer, PhaseTimer) else None


async def _dns_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_dns_start()


async def _dns_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_dns_end()


async def _conn_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_conn_start()


async def _conn_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_conn_end()


async def _headers_sent(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_sent(headers=True)


async def _chunk_sent(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_sent(headers=False)


async def _response_headers(_s: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_headers_received()
    if (peer := peerinfo.current()) is not None:
        version = params.response.version
        peer.responded(version.major, version.minor)


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(_dns_start)
    config.on_dns_resolvehost_end.append(_dns_end)
    config.on_connection_create_start.append(_conn_start)
    config.on_connection_create_end.append(_conn_end)
    config.on_request_headers_sent.append(_headers_sent)
    config.on_request_chunk_sent.append(_chunk_sent)
    # A redirect hop ends with on_request_redirect, the final hop with on_request_end;
    # both fire once the response headers have been parsed.
    config.on_request_redirect.append(_response_headers)
    config.on_request_end.append(_response_headers)
    return config


def _session(connector: _Connector, trace: aiohttp.TraceConfig) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        trust_env=False,
        trace_configs=[trace],
    )


def create_sessions(
    *, resolver: aiohttp.abc.AbstractResolver | None = None, limit: int = 0
) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
    """Create the ``(fresh, pooled)`` sessions; ``limit`` caps connections (0 = no cap).

    Call inside the running event loop; the caller closes both sessions.
    """
    trace = _trace_config()
    fresh = _session(
        _Connector(force_close=True, use_dns_cache=False, limit=limit, resolver=resolver),
        trace,
    )
    # A probe run is one attempt: never resend a request on a new connection behind
    # the probe's back. (aiohttp has no public switch; the attribute is declared.)
    fresh._retry_connection = False
    pooled = _session(_Connector(limit=limit, resolver=resolver), trace)
    return fresh, pooled


def new_traceparent() -> tuple[str, str]:
    """A fresh W3C ``traceparent`` header value and its trace id (sampled flag set)."""
    ids = os.urandom(24).hex()  # one read: the trace id, then the span id
    trace_id = ids[:32]
    return f"00-{trace_id}-{ids[32:]}-01", trace_id
