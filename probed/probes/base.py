"""What every probe kind shares: the result type, the context, and the runner.

A kind is one coroutine ``async def probe(ctx, spec) -> ProbeResult`` that
reports only what is specific to it. ``run_probe`` owns the rest: the timeout,
the timing, the latency threshold, and turning exceptions into a ``Reason``
from one fixed set. ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
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
from probed.probes.peerinfo import TlsInfo
from probed.probes.redirects import RedirectRefused

if TYPE_CHECKING:
    from probed.config import ProbeSpec, TargetConfig
    from probed.stream.hub import Hub

__all__ = [
    "Observation",
    "ProbeContext",
    "ProbeFn",
    "ProbeResult",
    "ProbeRun",
    "Reason",
    "classify_exception",
    "fail_with",
    "new_traceparent",
    "run_probe",
]

Observation = float | int | str | None


class Reason(enum.StrEnum):
    """Why a probe run failed. The set is fixed and documented in the README."""

    TIMEOUT = "timeout"
    """The run did not finish within the probe's ``timeout``."""
    DNS = "dns"
    """The target's host name could not be resolved."""
    CONNECT_REFUSED = "connect_refused"
    """The TCP connection was actively refused (nothing listening)."""
    CONNECT_ERROR = "connect_error"
    """Any other failure to open the TCP connection (unreachable, reset during connect)."""
    TLS = "tls"
    """The TLS handshake or certificate verification failed."""
    PROTOCOL_ERROR = "protocol_error"
    """The server broke HTTP: closed the connection early, sent a malformed response."""
    TOO_MANY_REDIRECTS = "too_many_redirects"
    """More redirects than ``max_redirects`` (a redirect loop)."""
    REDIRECTED_TO_OTHER_ORIGIN = "redirected_to_other_origin"
    """A redirect led where ``follow_redirects`` does not allow (another origin or host,
    https to http, a body with a secret re-sent elsewhere); the detail names the origin."""
    STATUS = "status"
    """The HTTP status was not in ``expect_status``."""
    RATE_LIMITED = "rate_limited"
    """The server answered 429 Too Many Requests (its Retry-After is recorded)."""
    OVERSIZE = "oversize"
    """The response body exceeded ``max_body_size``."""
    BODY_MISMATCH = "body_mismatch"
    """``body_regex`` did not match, or ``body_not_regex`` did."""
    INVALID_JSON = "invalid_json"
    """A JSON body was required but the response was not valid JSON."""
    JSON_MISMATCH = "json_mismatch"
    """A ``json_checks`` assertion failed (path missing or value different)."""
    OUTPUT_MISMATCH = "output_mismatch"
    """A fixture probe's canonical output hash differed from ``expected_sha256``."""
    NO_TOKEN = "no_token"
    """A login succeeded by status but no token was found where configured."""
    AUTH_FAILED = "auth_failed"
    """A login probe's follow-up request was rejected with the obtained token."""
    SLOW = "slow"
    """The run succeeded but took longer than ``latency_threshold``."""
    LATE = "late"
    """Reflect: the canary event arrived, but after ``deadline`` (its lag is recorded)."""
    LOST = "lost"
    """Reflect: the canary event did not arrive within ``lost_after``."""
    DUPLICATED = "duplicated"
    """Reflect: the canary event arrived more than once."""
    STALLED = "stalled"
    """Import: progress did not advance for ``stall_after``; stream: no event or heartbeat
    for ``idle_timeout``."""
    REGRESSED = "regressed"
    """Import: progress went backwards."""
    DEADLINE = "deadline"
    """Import: the job was not complete within ``deadline``."""
    STREAM_DOWN = "stream_down"
    """Reflect/import: the stream watcher the probe relies on is not connected."""
    INTERNAL_ERROR = "internal_error"
    """A bug in probed itself; the log line carries the exception."""
    PROBER_OVERLOADED = "prober_overloaded"
    """A timeout while probed itself was behind (a late start, a saturated event loop):
    it says nothing about the target, so SLOs and recommendations do not count it."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome a kind reports: success or a reason, plus observations."""

    success: bool
    reason: Reason | None = None
    detail: str = ""
    status_code: int | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    observations: Mapping[str, Observation] = field(default_factory=dict)
    error_code: str = ""
    """A finer code than the reason for logs (``ECONNREFUSED``, ``http_503``); never a label."""
    http_version: float | None = None
    """HTTP version of the run's last response (1.1); None if no response arrived.
    Set by ``run_probe`` (``probed.probes.peerinfo``), like ``tls``."""
    tls: TlsInfo | None = None
    """TLS facts of the last response's connection; None for plain HTTP or no response."""

    @classmethod
    def ok(
        cls,
        *,
        status_code: int | None = None,
        phases: Mapping[str, float] | None = None,
        **observations: Observation,
    ) -> ProbeResult:
        """A successful run."""
        return cls(True, None, "", status_code, phases or {}, observations)

    @classmethod
    def fail(
        cls,
        reason: Reason,
        detail: str = "",
        *,
        status_code: int | None = None,
        phases: Mapping[str, float] | None = None,
        error_code: str = "",
        **observations: Observation,
    ) -> ProbeResult:
        """A failed run with ``reason``."""
        return cls(
            False, reason, detail, status_code, phases or {}, observations, error_code or reason
        )


def fail_with(
    reason: Reason,
    detail: str,
    observations: Mapping[str, Observation],
    *,
    status_code: int | None = None,
    phases: Mapping[str, float] | None = None,
    error_code: str = "",
) -> ProbeResult:
    """``ProbeResult.fail`` with the observations collected so far (copied: they may change)."""
    return ProbeResult.fail(
        reason,
        detail,
        status_code=status_code,
        phases=phases,
        error_code=error_code,
        **observations,
    )


@dataclass(frozen=True, slots=True)
class ProbeRun:
    """One finished run as the store keeps it."""

    probe: str
    kind: str
    target: str
    run_id: str
    trace_id: str
    started_at: float
    """Wall-clock start (Unix seconds), for display and logs only."""
    duration: float
    """Seconds, measured with ``time.perf_counter``."""
    result: ProbeResult

    @property
    def success(self) -> bool:
        """Whether the run succeeded."""
        return self.result.success


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
