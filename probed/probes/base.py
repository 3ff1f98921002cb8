"""What every probe kind shares: the result type, the context, and the runner.

A kind is one coroutine ``async def probe(ctx, spec) -> ProbeResult`` that
reports only what is specific to it. ``run_probe`` owns the rest: the timeout,
the timing, the latency threshold, and turning exceptions into a ``Reason``
from one fixed set. ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from probed import clock
from probed.errors import ProbeFailure
from probed.probes import peerinfo
from probed.probes.redirects import RedirectRefused
from probed.results import ProbeResult, ProbeRun, Reason

if TYPE_CHECKING:
    from probed.config import ProbeSpec, TargetConfig
    from probed.stream.hub import Hub

__all__ = [
    "ProbeContext",
    "ProbeFn",
    "classify_exception",
    "new_traceparent",
    "run_probe",
]

_run_counter = itertools.count(1)
_RUN_PREFIX = os.urandom(3).hex()


def new_traceparent() -> tuple[str, str]:
    """A fresh W3C ``traceparent`` header value and its trace id (sampled flag set)."""
    trace_id = os.urandom(16).hex()
    span_id = os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id


@dataclass(slots=True)
class ProbeContext:
    """What a kind may use: the target, an HTTP session, tracing and a logger.

    ``session`` is shared by all runs; its connector closes each connection after
    use (``force_close``) so every run measures connect and TLS afresh, unless the
    probe sets ``fresh_connection = false`` and gets ``pooled_session``.
    """

    target: TargetConfig
    session: aiohttp.ClientSession
    pooled_session: aiohttp.ClientSession
    traceparent: str = ""
    trace_id: str = ""
    log: Any = field(default_factory=structlog.get_logger)
    ssl_context: ssl.SSLContext | bool = True
    on_secret: Callable[[str], None] | None = None
    """Called with secrets learnt at run time (a login token) so logs redact them."""
    hub: Hub | None = None
    """Events received by the stream watchers (reflect and import probes wait on it)."""

    def session_for(self, spec: ProbeSpec) -> aiohttp.ClientSession:
        """The session matching the probe's ``fresh_connection`` setting."""
        return self.session if spec.fresh_connection else self.pooled_session

    def url(self, path: str) -> str:
        """The target's base URL joined with ``path``."""
        return self.target.base_url.rstrip("/") + path

    def headers(self, spec: ProbeSpec, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Target headers, then probe headers, then ``extra``, then ``traceparent``."""
        merged = self.target.resolved_headers()
        merged.update(spec.resolved_headers())
        if extra:
            merged.update(extra)
        merged["traceparent"] = self.traceparent
        merged.setdefault("User-Agent", _USER_AGENT)
        return merged


def _user_agent() -> str:
    from probed import __version__

    return f"probed/{__version__}"


_USER_AGENT = _user_agent()

ProbeFn = Callable[[ProbeContext, "ProbeSpec"], Awaitable[ProbeResult]]


def _errno_name(exc: BaseException) -> str:
    import errno

    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, str(code)) if isinstance(code, int) else type(exc).__name__


_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _origin(exc: aiohttp.ClientConnectorError) -> str:
    """``http://host:port`` or ``https://host:port`` of the connection that failed."""
    key = exc.args[0] if exc.args else None  # aiohttp's ConnectionKey
    scheme = "https" if getattr(key, "is_ssl", False) else "http"
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    return f"{scheme}://{host}:{exc.port}"


def _os_text(error: BaseException) -> str:
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code > 0 and not isinstance(error, ssl.SSLError):
        return os.strerror(code)  # "Connection refused", not asyncio's "Connect call failed"
    return str(error) or type(error).__name__


def classify_exception(exc: BaseException) -> tuple[Reason, str, str]:
    """Map an exception raised during a run to (reason, error code, short detail).

    A detail names the target as ``scheme://host:port``, never by a Python object's repr
    (aiohttp's own connector messages show the request's ``SSLContext`` object).
    """
    reason, code, detail = _classify(exc)
    return reason, code, _OBJECT_REPR.sub(r"\1", detail)


def _classify(exc: BaseException) -> tuple[Reason, str, str]:
    if isinstance(exc, ProbeFailure):
        return exc.reason, exc.reason.value, exc.detail
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT, "timeout", "deadline exceeded"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Reason.DNS, "dns_error", f"cannot resolve {_origin(exc)}: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        detail = f"cannot connect to {_origin(exc)}: {exc.certificate_error}"
        return Reason.TLS, "certificate_error", detail
    if isinstance(exc, aiohttp.ClientSSLError):
        return Reason.TLS, "ssl_error", f"cannot connect to {_origin(exc)}: {exc.os_error}"
    if isinstance(exc, ssl.SSLError):
        return Reason.TLS, "ssl_error", str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        detail = f"cannot connect to {_origin(exc)}: {_os_text(exc.os_error)}"
        if isinstance(exc.os_error, ConnectionRefusedError):
            return Reason.CONNECT_REFUSED, "ECONNREFUSED", detail
        return Reason.CONNECT_ERROR, _errno_name(exc.os_error), detail
    if isinstance(exc, RedirectRefused):
        return Reason.REDIRECTED_TO_OTHER_ORIGIN, exc.code, str(exc)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return Reason.TOO_MANY_REDIRECTS, "too_many_redirects", str(exc)
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientResponseError
        | aiohttp.ClientOSError
        | aiohttp.ServerConnectionError,
    ):
        return Reason.PROTOCOL_ERROR, type(exc).__name__, str(exc) or type(exc).__name__
    return Reason.INTERNAL_ERROR, type(exc).__name__, repr(exc)


async def run_probe(
    probe_fn: ProbeFn,
    ctx: ProbeContext,
    spec: ProbeSpec,
) -> ProbeRun:
    """Run one probe attempt: timeout, timing, latency threshold, exception → reason.

    ``ctx`` is the probe's base context; each run gets a copy with its own trace id.
    """
    traceparent, trace_id = new_traceparent()
    ctx = dataclasses.replace(ctx, traceparent=traceparent, trace_id=trace_id)
    run_id = f"{_RUN_PREFIX}-{next(_run_counter):x}"
    started_at = clock.wall()
    start = time.perf_counter()
    with peerinfo.watching() as peer:
        try:
            async with asyncio.timeout(spec.timeout):
                result = await probe_fn(ctx, spec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure must become a reason, never a crash
            reason, error_code, detail = classify_exception(exc)
            if reason is Reason.INTERNAL_ERROR:
                ctx.log.exception("probe_internal_error", probe=spec.name, kind=spec.kind)
            observations = exc.observations if isinstance(exc, ProbeFailure) else {}
            result = ProbeResult(
                False, reason, detail, observations=observations, error_code=error_code
            )
    duration = time.perf_counter() - start
    if peer.http_version is not None:
        result = dataclasses.replace(result, http_version=peer.http_version, tls=peer.tls)
    if result.success and spec.latency_threshold is not None and duration > spec.latency_threshold:
        result = dataclasses.replace(
            result,
            success=False,
            reason=Reason.SLOW,
            detail=f"took {duration * 1000:.1f}ms, threshold {spec.latency_threshold * 1000:g}ms",
            error_code=Reason.SLOW.value,
        )
    return ProbeRun(
        probe=spec.name,
        kind=spec.kind,
        target=spec.target,
        run_id=run_id,
        trace_id=ctx.trace_id,
        started_at=started_at,
        duration=duration,
        result=result,
    )
