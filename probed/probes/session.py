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

Phase timing comes from aiohttp's ``TraceConfig``: pass a ``PhaseTimer`` as
``trace_request_ctx`` and it accumulates seconds per phase (summed over redirect
hops):

``resolve``
    DNS resolution (zero for an IP literal or a DNS cache hit).
``connect``
    Connection creation as aiohttp reports it, without the resolve time. For
    ``https`` this **includes the TLS handshake**: aiohttp opens the socket and
    runs the handshake inside one ``loop.create_connection`` call and emits no
    signal between the two, so there is no reliable public hook to split them.
``processing``
    Request sent (headers, then the last body chunk) until the response headers
    are parsed.
``transfer``
    Response headers until the body has been read (the caller marks the end with
    ``PhaseTimer.body_read()``).
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiohttp.abc

__all__ = ["PHASES", "PhaseTimer", "create_sessions"]

#: The phase names ``PhaseTimer.phases()`` reports, in request order.
PHASES = ("resolve", "connect", "processing", "transfer")

_now = time.perf_counter


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
        "_transfer",
    )

    def __init__(self) -> None:
        self._resolve = 0.0
        self._connect = 0.0
        self._processing = 0.0
        self._transfer = 0.0
        self._dns_started = 0.0
        self._conn_started = 0.0
        self._resolve_before_conn = 0.0
        self._sent_at = 0.0
        self._awaiting_headers = False
        self._headers_at: float | None = None

    def phases(self) -> dict[str, float]:
        """Seconds per phase: resolve, connect (TLS included), processing, transfer."""
        return {
            "resolve": max(self._resolve, 0.0),
            "connect": max(self._connect, 0.0),
            "processing": max(self._processing, 0.0),
            "transfer": max(self._transfer, 0.0),
        }

    def body_read(self) -> None:
        """Mark the end of reading the response body (ends the ``transfer`` phase)."""
        if self._headers_at is not None:
            self._transfer += _now() - self._headers_at
            self._headers_at = None

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


async def _response_headers(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (timer := _timer(ctx)) is not None:
        timer._on_headers_received()


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


def _session(connector: aiohttp.TCPConnector, trace: aiohttp.TraceConfig) -> aiohttp.ClientSession:
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
        aiohttp.TCPConnector(force_close=True, use_dns_cache=False, limit=limit, resolver=resolver),
        trace,
    )
    # A probe run is one attempt: never resend a request on a new connection behind
    # the probe's back. (aiohttp has no public switch; the attribute is declared.)
    fresh._retry_connection = False
    pooled = _session(aiohttp.TCPConnector(limit=limit, resolver=resolver), trace)
    return fresh, pooled
