"""What every probe kind shares: the result type, the context, and the runner.

A kind is one coroutine ``async def probe(ctx, spec) -> ProbeResult`` that
reports only what is specific to it. ``run_probe`` owns the rest: the timeout,
the timing, the latency threshold, and turning exceptions into a ``Reason``
from one fixed set. ``CancelledError`` is never swallowed.

One failure idiom. A kind returns only on success (``ProbeResult.ok``); it
reports a failure by raising ``ProbeFailure(reason, detail, status_code=...,
phases=..., error_code=...)`` (``probed.errors``) and never catches one to turn
it into a result itself: ``run_probe`` builds the failed result from it. What a
kind observes along the way (a request's duration, a counter) it records with
``ctx.observe(name=value)`` as soon as it knows it, and values that must not
show in a result (a password, a token) it names with ``ctx.redact(value)``.
``run_probe`` gives each run a fresh context, adds the observations to whatever
result comes out (success, ``ProbeFailure``, timeout or any other exception) and
scrubs the redacted values from its detail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from probed import clock
from probed.errors import ProbeFailure, drop_tracebacks
from probed.http import peerinfo
from probed.http.classify import classify_exception
from probed.http.redirects import RedirectPolicy
from probed.http.session import new_traceparent
from probed.http.wire import WireClient, supports
from probed.records import record
from probed.results import Observation, ProbeResult, ProbeRun, Reason

if TYPE_CHECKING:
    from probed.config import ProbeSpec, TargetConfig
    from probed.stream.hub import Hub

__all__ = [
    "ProbeContext",
    "ProbeFn",
    "run_probe",
]

_run_counter = itertools.count(1)
_RUN_PREFIX = os.urandom(3).hex()
_REDACTED = "[redacted]"


@dataclass(slots=True)
class ProbeContext:
    """What a kind may use: the target, an HTTP session, tracing and a logger.

    ``session`` is shared by all runs; its connector closes each connection after
    use (``force_close``) so every run measures connect and TLS afresh, unless the
    probe sets ``fresh_connection = false`` and gets ``pooled_session``.

    ``run_probe`` hands each run its own copy, with its own trace id and an empty
    ``observations`` and ``redacted``: what a run records there is its alone.
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
    observations: dict[str, Observation] = field(default_factory=dict)
    """What this run observed so far (read it; record with ``observe``). ``run_probe``
    adds it to the run's result, whatever the outcome."""
    redacted: list[str] = field(default_factory=list, repr=False)
    """Values ``run_probe`` replaces with ``[redacted]`` in the result's detail (``redact``);
    kept out of the context's repr."""
    wire: WireClient | None = None
    """The ``http`` kind's own client (``probed.http.wire``); None: every request on aiohttp."""
    prepared: dict[str, _Prepared] = field(default_factory=dict, repr=False)
    """Per probe, what all its runs on this target send alike, made at its first run (the
    context, and so this, is made anew with each config); shared by the runs' copies."""

    def for_run(self, traceparent: str, trace_id: str) -> ProbeContext:
        """A copy for one run: its trace id, and observations and redacted values of its own."""
        return ProbeContext(
            target=self.target,
            session=self.session,
            pooled_session=self.pooled_session,
            traceparent=traceparent,
            trace_id=trace_id,
            log=self.log,
            ssl_context=self.ssl_context,
            on_secret=self.on_secret,
            hub=self.hub,
            observations={},
            redacted=[],
            wire=self.wire,
            prepared=self.prepared,
        )

    def _prepare(self, spec: ProbeSpec) -> _Prepared:
        prepared = self.prepared.get(spec.name)
        if prepared is None or prepared.spec is not spec:
            headers = self.target.resolved_headers()
            headers.update(spec.resolved_headers())
            wire = self.wire
            if wire is not None and not supports(spec, self.target.base_url, headers):
                wire = None
            prepared = _Prepared(spec, headers, RedirectPolicy.of(self.target, spec), wire)
            self.prepared[spec.name] = prepared
        return prepared

    def redirect_policy(self, spec: ProbeSpec) -> RedirectPolicy:
        """How the probe's requests follow redirects (``RedirectPolicy.of``)."""
        return self._prepare(spec).redirects

    def wire_for(self, spec: ProbeSpec) -> WireClient | None:
        """The ``http`` kind's own client if it can make ``spec``'s requests (decided once per
        config: ``probed.http.wire.supports``), else None: aiohttp's sessions make them."""
        return self._prepare(spec).wire

    def observe(self, **observations: Observation) -> None:
        """Record ``observations`` for this run's result (a later value of a name wins)."""
        self.observations.update(observations)

    def redact(self, *values: str | None) -> None:
        """Keep ``values`` (a password, a token) out of this run's result detail.

        Empty values are ignored. This does not redact logs: a secret learnt at run
        time goes to ``on_secret`` for that.
        """
        self.redacted.extend(value for value in values if value)

    def session_for(self, spec: ProbeSpec) -> aiohttp.ClientSession:
        """The session matching the probe's ``fresh_connection`` setting."""
        return self.session if spec.fresh_connection else self.pooled_session

    def url(self, path: str) -> str:
        """The target's base URL joined with ``path``."""
        return self.target.base_url.rstrip("/") + path

    def headers(self, spec: ProbeSpec, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Target headers, then probe headers, then ``extra``, then ``traceparent``."""
        merged = dict(self._prepare(spec).headers)
        if extra:
            merged.update(extra)
        merged["traceparent"] = self.traceparent
        merged.setdefault("User-Agent", _USER_AGENT)
        return merged


@record
class _Prepared:
    spec: ProbeSpec
    headers: dict[str, str]
    """The target's headers, then the probe's (secrets resolved); copied for each request."""
    redirects: RedirectPolicy
    wire: WireClient | None


def _user_agent() -> str:
    from probed import __version__

    return f"probed/{__version__}"


_USER_AGENT = _user_agent()

ProbeFn = Callable[[ProbeContext, "ProbeSpec"], Awaitable[ProbeResult]]


async def run_probe(
    probe_fn: ProbeFn,
    ctx: ProbeContext,
    spec: ProbeSpec,
) -> ProbeRun:
    """Run one probe attempt: timeout, timing, latency threshold, exception → reason.

    ``ctx`` is the probe's base context; each run gets a copy with its own trace id,
    observations and redacted values. A ``ProbeFailure`` the kind raises becomes the
    failed result with its reason, detail, status code, phases, error code and
    observations; any other exception is classified (``classify_exception``). The
    run's observations are then added to the result, the context's winning over the
    result's own on a shared name, and redacted values are scrubbed from its detail.
    """
    ctx = ctx.for_run(*new_traceparent())
    run_id = f"{_RUN_PREFIX}-{next(_run_counter):x}"
    started_at = clock.wall()
    start = time.perf_counter()
    with peerinfo.watching() as peer:
        try:
            async with asyncio.timeout(spec.timeout):
                result = await probe_fn(ctx, spec)
        except asyncio.CancelledError:
            raise
        except ProbeFailure as exc:
            result = _failed(exc)
            drop_tracebacks(exc)
        except Exception as exc:  # every failure must become a reason, never a crash
            reason, error_code, detail = classify_exception(exc)
            if reason is Reason.INTERNAL_ERROR:
                ctx.log.exception("probe_internal_error", probe=spec.name, kind=spec.kind)
            result = ProbeResult(False, reason, detail, error_code=error_code)
            drop_tracebacks(exc)
    duration = time.perf_counter() - start
    threshold = spec.latency_threshold
    slow = result.success and threshold is not None and duration > threshold
    if ctx.observations or peer.http_version is not None or slow:
        result = _completed(result, ctx.observations, peer, duration if slow else None, threshold)
    if ctx.redacted:
        result = _scrubbed(result, ctx.redacted)
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


def _completed(
    result: ProbeResult,
    observed: dict[str, Observation],
    peer: peerinfo.PeerFacts,
    slow: float | None,
    threshold: float | None,
) -> ProbeResult:
    """``result`` with the run's observations (theirs winning on a shared name), the peer's
    HTTP version and TLS facts if a response came, and failed ``slow`` if it took ``slow``
    seconds, over ``threshold``: one new result, whatever changed."""
    success, reason, detail, error_code = (
        result.success,
        result.reason,
        result.detail,
        result.error_code,
    )
    if slow is not None:
        assert threshold is not None
        success, reason, error_code = False, Reason.SLOW, Reason.SLOW.value
        detail = f"took {slow * 1000:.1f}ms, threshold {threshold * 1000:g}ms"
    known = peer.http_version is not None
    return ProbeResult(
        success=success,
        reason=reason,
        detail=detail,
        status_code=result.status_code,
        phases=result.phases,
        observations={**result.observations, **observed} if observed else result.observations,
        error_code=error_code,
        http_version=peer.http_version if known else result.http_version,
        tls=peer.tls if known else result.tls,
    )


def _failed(exc: ProbeFailure) -> ProbeResult:
    """The failed result ``exc`` describes, with the observations it carries."""
    return ProbeResult.fail(
        exc.reason,
        exc.detail,
        status_code=exc.status_code,
        phases=exc.phases,
        error_code=exc.error_code,
        **exc.observations,
    )


def _scrubbed(result: ProbeResult, secrets: list[str]) -> ProbeResult:
    """``result`` with each of ``secrets`` in its detail replaced, the longest first."""
    detail = result.detail
    for secret in sorted(secrets, key=len, reverse=True):
        detail = detail.replace(secret, _REDACTED)
    return result if detail == result.detail else dataclasses.replace(result, detail=detail)
