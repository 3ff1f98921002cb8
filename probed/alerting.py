"""Push active recommendations to Alertmanager (v2 API) and to JSON webhooks.

The evaluator calls ``AlertPusher.update()`` after each tick; it is synchronous
and O(n): it records the latest set and wakes the senders, nothing more. The
daemon calls ``AlertPusher.start(tg, session)`` with its own TaskGroup and
session: one sender task per target, so a slow or dead receiver delays nobody
but itself, and a sender never raises except ``CancelledError``.

Only ``ACTIVE`` recommendations are sent: ``PENDING`` has not been issued yet
and ``INCONCLUSIVE`` means our own vantage point is suspect (never page on it).

Alertmanager (``POST {url}/api/v2/alerts``, a JSON list)::

    {"labels": {"alertname": "ProbedDegradedMode", "scenario": "sse_degraded",
                "severity": "Sev-2", "routing": "page", "location": "eu-1"},
     "annotations": {"summary": …, "title": …, "actions": "1. …\\n2. …",
                     "rollback": …, "runbook_url": …,
                     "evidence": "<signal>: value=… threshold=… since=<RFC 3339>"},
     "startsAt": "<since, RFC 3339 UTC>", "endsAt": "<now + 4 * resend_interval>",
     "generatorURL": …}                  (omitted when no generator_url is set)

``severity`` is the Sev level and ``routing`` (``page`` or ``ticket``) follows
from it by ``probed.signals.ROUTING``, as on the generated Prometheus rules. A shard
of a location (``[daemon] shard``, more than one) adds ``shard="i/n"``: each shard
judges its own probes, and without the label Alertmanager would take two shards'
alerts of one scenario for one alert, resolved when either shard resolves it.

Every active alert is re-sent every ``resend_interval`` and at once on a
change, with ``endsAt`` four intervals ahead, so Alertmanager resolves the
alert by itself if probed dies. A change is anything but the evidence values
(which move on every tick and are refreshed by the next resend). A scenario
that leaves ``ACTIVE`` is sent once more with ``endsAt`` = the time it left,
which Alertmanager treats as resolved (it drops the alert from
``GET /api/v2/alerts`` and counts it in
``alertmanager_alerts_received_total{status="resolved"}``).

Webhooks (``POST {url}``) get a document on changes only, not on resends::

    {"version": 1, "location": "eu-1", "status": "firing" | "resolved",
     "alerts": [{…the Alertmanager fields…, "status": "firing" | "resolved"}]}

It lists every firing alert plus the ones resolved since the last delivery;
``status`` is ``firing`` while any alert fires. A failed webhook delivery is
tried again every ``resend_interval`` until the receiver has the latest state.

Delivery: each request has ``ClientTimeout(total=timeout)``; connection errors,
timeouts and 5xx are retried by tenacity (exponential backoff with full jitter,
``max_attempts``); other statuses are not. A resolution that still fails stays
pending for that target and goes out with the next resend, until it is
delivered or ``4 * resend_interval`` after it ended (when Alertmanager has
expired the alert anyway); then it is forgotten. Failures are logged as
``alert_delivery_failed`` naming the target's host and port only (never its
path, query string or credentials) and counted in ``failed[kind]``; successes
in ``sent[kind]`` (``kind`` is ``alertmanager`` or ``webhook``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import structlog
from yarl import URL

from probed import clock
from probed.config import AlertingConfig
from probed.shard import Shard
from probed.signals import (
    EVIDENCE_SHOWN,
    ROUTING_LABEL,
    Evidence,
    Recommendation,
    RecommendationState,
)

__all__ = ["ALERTMANAGER", "ALERT_NAME", "WEBHOOK", "AlertPusher"]

_log = structlog.get_logger("probed.alerting")

ALERT_NAME: Final = "ProbedDegradedMode"
ALERTMANAGER: Final = "alertmanager"
WEBHOOK: Final = "webhook"

#: Firing alerts carry ``endsAt = now + _EXPIRY_INTERVALS * resend_interval``.
_EXPIRY_INTERVALS = 4
_JSON_HEADERS = {"Content-Type": "application/json"}
_ERROR_BODY_LIMIT = 256


class _ServerError(Exception):
    """A 5xx answer: worth retrying."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.body = body


class _Rejected(Exception):
    """Any other non-2xx answer: retrying would not help."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.body = body


_RETRYABLE = (aiohttp.ClientConnectionError, TimeoutError, _ServerError)

_Resolution = tuple[Recommendation, float]
"""A recommendation that left ACTIVE and the (wall) time it did."""


@dataclass(eq=False)
class _Target:
    """One receiver and its own delivery state."""

    kind: str
    url: str
    """The configured URL."""
    endpoint: str
    """Where to POST."""
    host: str
    """``host:port`` for logs: no path, query string or credentials."""
    dirty: bool = True
    """Something changed since the last delivery: send now."""
    due: float | None = None
    """Monotonic time of the next scheduled send (resend or retry), if any."""
    delivered: tuple[Any, ...] = ()
    """Webhooks: the change key of the firing set the receiver last got."""
    resolutions: dict[str, _Resolution] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _evidence_line(ev: Evidence) -> str:
    line = f"{ev.signal}: value={ev.value:g} threshold={ev.threshold:g} since={_rfc3339(ev.since)}"
    return f"{line} ({ev.detail})" if ev.detail else line


def _evidence_text(evidence: tuple[Evidence, ...]) -> str:
    """The first ``EVIDENCE_SHOWN`` pieces of evidence, a line each, and how many more."""
    lines = [_evidence_line(e) for e in evidence[:EVIDENCE_SHOWN]]
    if (more := len(evidence) - EVIDENCE_SHOWN) > 0:
        lines.append(f"and {more} more (the status document lists them all)")
    return "\n".join(lines)


def _change_key(rec: Recommendation) -> tuple[Any, ...]:
    """Everything that identifies what we tell the receiver, except the evidence values."""
    return (
        rec.scenario,
        rec.title,
        rec.severity,
        rec.since,
        rec.actions,
        rec.rollback,
        rec.runbook_url,
        rec.summary,
        tuple((e.signal, e.threshold, e.since) for e in rec.evidence),
    )


def _make_target(kind: str, url: str) -> _Target:
    parsed = URL(url)
    if kind == ALERTMANAGER:
        endpoint = str(parsed.with_path(parsed.path.rstrip("/") + "/api/v2/alerts"))
    else:
        endpoint = url
    host = parsed.host or "?"
    if ":" in host:
        host = f"[{host}]"
    if parsed.explicit_port is not None:
        host = f"{host}:{parsed.explicit_port}"
    return _Target(kind=kind, url=url, endpoint=endpoint, host=host)


def _describe(exc: BaseException, timeout: float) -> tuple[str, str]:
    """(error code, message) for the log, never echoing a URL."""
    if isinstance(exc, _ServerError | _Rejected):
        return f"status_{exc.status}", exc.body
    if isinstance(exc, TimeoutError):
        return "timeout", f"no response within {timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connect_refused", "connection refused"
        return "connect_error", exc.os_error.strerror or type(exc.os_error).__name__
    return type(exc).__name__, type(exc).__name__


class AlertPusher:
    """Sends active recommendations to every configured Alertmanager and webhook.

    ``sent`` and ``failed`` count deliveries (one per document, after retries)
    by target kind for the metrics collector. ``max_attempts``,
    ``backoff_initial`` and ``backoff_max`` tune the retries of one delivery.
    """

    def __init__(
        self,
        cfg: AlertingConfig,
        *,
        location: str,
        shard: Shard | None = None,
        session: aiohttp.ClientSession | None = None,
        generator_url: str = "",
    ) -> None:
        self._cfg = cfg
        self._location = location
        self._shard = {"shard": str(shard)} if shard is not None and shard.sharded else {}
        self._session = session
        self._generator_url = generator_url
        self.sent: Counter[str] = Counter({ALERTMANAGER: 0, WEBHOOK: 0})
        self.failed: Counter[str] = Counter({ALERTMANAGER: 0, WEBHOOK: 0})
        self.max_attempts = 3
        self.backoff_initial = 0.5
        self.backoff_max = 5.0
        self._active: dict[str, Recommendation] = {}
        self._now: float | None = None
        self._now_mono = 0.0
        self._targets: dict[tuple[str, str], _Target] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._run_session: aiohttp.ClientSession | None = None
        self._set_targets(cfg)

    # -- the daemon's side --------------------------------------------------------------

    def update(self, recommendations: Sequence[Recommendation], now: float) -> None:
        """Record the latest recommendations (Unix time ``now``) and wake the senders.

        Synchronous and O(n); never does I/O.
        """
        active = {r.scenario: r for r in recommendations if r.state is RecommendationState.ACTIVE}
        self._now, self._now_mono = now, time.monotonic()
        changed = False
        for scenario, old in self._active.items():
            if scenario not in active:
                changed = True
                for t in self._targets.values():
                    t.resolutions[scenario] = (old, now)
        for scenario, rec in active.items():
            old_rec = self._active.get(scenario)
            if old_rec is None or _change_key(old_rec) != _change_key(rec):
                changed = True
                for t in self._targets.values():
                    t.resolutions.pop(scenario, None)
        self._active = active
        if changed:
            for t in self._targets.values():
                t.dirty = True
                t.wake.set()

    def start(self, tg: asyncio.TaskGroup, session: aiohttp.ClientSession) -> None:
        """Start one sender task per target in ``tg`` (the daemon's), posting with ``session``.

        The caller owns both: the tasks end with ``stop()`` or with the group, the session
        is the caller's to close. Shutdown does not resolve active alerts (a restart would
        page twice): they expire in Alertmanager after ``4 * resend_interval`` unless probed
        is back by then. Call ``flush()`` first to get pending changes and resolutions out.
        """
        if self._tg is not None:
            raise RuntimeError("AlertPusher.start() was already called")
        self._tg, self._run_session = tg, session
        for t in self._targets.values():
            self._start(t)

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancel the sender tasks (returned, to await) and forget the group and session."""
        tasks = [t.task for t in self._targets.values() if t.task is not None]
        for t in self._targets.values():
            if t.task is not None:
                t.task.cancel()
            t.task = None
        self._tg = self._run_session = None
        return tasks

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The running sender tasks, one per target."""
        return [t.task for t in self._targets.values() if t.task is not None]

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 (the daemon's grace budget)
        """Best effort: deliver pending changes and resolutions now, within ``timeout`` seconds."""
        targets = [t for t in self._targets.values() if self._pending(t)]
        if not targets:
            return
        session = self._run_session or self._session
        temporary = None
        if session is None or session.closed:
            temporary = session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self._flush_one(t, session) for t in targets))
        except TimeoutError:
            pending = sorted(t.host for t in targets if self._pending(t))
            _log.warning("alert_flush_timeout", timeout_s=timeout, pending=pending)
        finally:
            if temporary is not None:
                await temporary.close()

    def apply(self, cfg: AlertingConfig) -> None:
        """Apply a reloaded config: kept targets keep their state, new ones start, old stop."""
        self._cfg = cfg
        self._set_targets(cfg)

    # -- targets --------------------------------------------------------------------------

    def _set_targets(self, cfg: AlertingConfig) -> None:
        old = self._targets
        new: dict[tuple[str, str], _Target] = {}
        for kind, urls in ((ALERTMANAGER, cfg.alertmanager_urls), (WEBHOOK, cfg.webhook_urls)):
            for url in urls:
                key = (kind, url)
                if key in new:
                    continue
                target = old.get(key)
                if target is None:
                    target = _make_target(kind, url)
                    new[key] = target
                    self._start(target)
                else:
                    new[key] = target
                    if target.due is not None:
                        target.due = min(target.due, time.monotonic() + cfg.resend_interval)
                    target.wake.set()
        for key, target in old.items():
            if key not in new and target.task is not None:
                target.task.cancel()
                target.task = None
        self._targets = new

    def _start(self, target: _Target) -> None:
        if self._tg is None:
            return
        name = f"alert:{target.kind}:{target.host}"
        with contextlib.suppress(RuntimeError):  # the group is shutting down
            target.task = self._tg.create_task(self._target_loop(target), name=name)

    async def _target_loop(self, target: _Target) -> None:
        while True:
            try:
                await self._wait_until_due(target)
                session = self._run_session
                if session is None:  # pragma: no cover - start() gave the task a session
                    return
                async with target.lock:
                    await self._deliver(target, session)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("alert_loop_error", target_kind=target.kind, target=target.host)
                target.dirty = False
                target.due = time.monotonic() + self._cfg.resend_interval

    async def _wait_until_due(self, target: _Target) -> None:
        while not target.dirty:
            target.wake.clear()
            delay = None if target.due is None else target.due - time.monotonic()
            if delay is not None and delay <= 0:
                return
            try:
                async with asyncio.timeout(delay):
                    await target.wake.wait()
            except TimeoutError:
                return

    async def _flush_one(self, target: _Target, session: aiohttp.ClientSession) -> None:
        try:
            async with target.lock:
                if self._pending(target):
                    await self._deliver(target, session)
        except Exception:
            _log.exception("alert_loop_error", target_kind=target.kind, target=target.host)

    # -- delivery -------------------------------------------------------------------------

    def _firing(self) -> tuple[Recommendation, ...]:
        return tuple(rec for _, rec in sorted(self._active.items()))

    def _pending(self, target: _Target) -> bool:
        """Whether the target lacks a change or resolution (resends do not count)."""
        if target.dirty or target.resolutions:
            return True
        return target.kind == WEBHOOK and target.delivered != tuple(
            _change_key(r) for r in self._firing()
        )

    def _wall(self) -> float:
        """Wall time on the caller's clock (the ``now`` of the last update, advanced)."""
        if self._now is None:
            return time.time()
        return self._now + (time.monotonic() - self._now_mono)

    def _alert(self, rec: Recommendation, ends_at: float) -> dict[str, Any]:
        actions = "\n".join(f"{i}. {step}" for i, step in enumerate(rec.actions, 1))
        alert: dict[str, Any] = {
            "labels": {
                "alertname": ALERT_NAME,
                "scenario": rec.scenario,
                "severity": rec.severity.value,
                ROUTING_LABEL: rec.severity.routing.value,
                "location": self._location,
                **self._shard,
            },
            "annotations": {
                "summary": rec.summary,
                "title": rec.title,
                "actions": actions,
                "rollback": rec.rollback,
                "runbook_url": rec.runbook_url,
                "evidence": _evidence_text(rec.evidence),
            },
            # on the system clock, as Alertmanager's is (probed's own never steps)
            "startsAt": _rfc3339(clock.on_system_clock(rec.since)),
            # Alertmanager rejects endsAt before startsAt.
            "endsAt": _rfc3339(clock.on_system_clock(max(ends_at, rec.since))),
        }
        if self._generator_url:
            alert["generatorURL"] = self._generator_url
        return alert

    async def _deliver(self, target: _Target, session: aiohttp.ClientSession) -> None:
        """Send the current state to one target (with retries) and schedule the next send."""
        target.dirty = False
        started = time.monotonic()
        now = self._wall()
        interval = self._cfg.resend_interval
        horizon = _EXPIRY_INTERVALS * interval
        for scenario, (_, ended) in list(target.resolutions.items()):
            if ended + horizon < now:
                del target.resolutions[scenario]
                _log.info(
                    "alert_resolution_dropped",
                    target_kind=target.kind,
                    target=target.host,
                    scenario=scenario,
                )
        resolutions = dict(target.resolutions)
        active = self._firing()
        body: Any
        if target.kind == ALERTMANAGER:
            if not active and not resolutions:
                target.due = None
                return
            body = [self._alert(r, now + horizon) for r in active]
            body += [self._alert(r, ended) for r, ended in resolutions.values()]
            key: tuple[Any, ...] = ()
        else:
            key = tuple(_change_key(r) for r in active)
            if key == target.delivered and not resolutions:
                target.due = None
                return
            alerts = [{**self._alert(r, now + horizon), "status": "firing"} for r in active]
            alerts += [
                {**self._alert(r, ended), "status": "resolved"} for r, ended in resolutions.values()
            ]
            body = {
                "version": 1,
                "location": self._location,
                "status": "firing" if active else "resolved",
                "alerts": alerts,
            }
        ok = await self._post(target, session, body)
        if ok:
            for scenario, entry in resolutions.items():
                if target.resolutions.get(scenario) is entry:
                    del target.resolutions[scenario]
            if target.kind == WEBHOOK:
                target.delivered = key
        if not ok:
            target.due = time.monotonic() + interval
        elif target.kind == ALERTMANAGER and (self._active or target.resolutions):
            target.due = started + interval
        else:
            target.due = None

    async def _post(self, target: _Target, session: aiohttp.ClientSession, body: Any) -> bool:
        """POST ``body`` as JSON with retries; count and log the outcome."""
        data = json.dumps(body).encode()
        timeout = self._cfg.timeout
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        attempts = 0
        # only a configured receiver needs tenacity: not imported at start (RSS, start-up time)
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_random_exponential,
        )

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_RETRYABLE),
                wait=wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
                stop=stop_after_attempt(self.max_attempts),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    await self._post_once(session, target.endpoint, data, client_timeout)
        except Exception as exc:
            self.failed[target.kind] += 1
            code, message = _describe(exc, timeout)
            _log.warning(
                "alert_delivery_failed",
                target_kind=target.kind,
                target=target.host,
                attempts=attempts,
                error_code=code,
                error_message=message,
            )
            return False
        self.sent[target.kind] += 1
        _log.debug(
            "alert_delivered", target_kind=target.kind, target=target.host, attempts=attempts
        )
        return True

    @staticmethod
    async def _post_once(
        session: aiohttp.ClientSession, url: str, data: bytes, client_timeout: aiohttp.ClientTimeout
    ) -> None:
        async with session.post(
            url,
            data=data,
            headers=_JSON_HEADERS,
            timeout=client_timeout,
            allow_redirects=False,
        ) as resp:
            if 200 <= resp.status < 300:
                await resp.read()
                return
            text = (await resp.content.read(_ERROR_BODY_LIMIT)).decode("utf-8", "replace")
            if resp.status >= 500:
                raise _ServerError(resp.status, text.strip())
            raise _Rejected(resp.status, text.strip())
