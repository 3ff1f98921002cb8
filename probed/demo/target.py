"""The built-in demo target: a small aiohttp app shaped like the seeds' product.

It answers the product's health endpoints, a login path (``POST /api/auth/login``
then ``GET /api/me``) and the AI indicators endpoint (``POST /v1/indicators``),
all in JSON. Fault knobs (``Faults``) let tests and operators rehearse incidents:
added latency, 429 and 503 answers drawn at a set ratio, and refused connections.

It also serves the streaming product, for the SSE watcher, reflect and import
probes::

    GET  /api/v1/events/stream    SSE (``Last-Event-ID`` replay, ``?types=a,b``)
    GET  /api/v1/events/ws        WebSocket, one JSON text message per event
    POST /api/v1/outbox           enqueue an event (the body is its payload) -> 202
    POST /api/v1/imports          start an import job -> 202, ``import.progress`` events
    GET  /api/v1/imports/{id}     the job's state

with stream faults (delay, drops, duplicates, reordering, disconnects, stalls,
a wrong content type, oversize events, a skewed clock, stuck or regressing
imports). ``DemoTarget.publish()`` enqueues from Python. Streams, timers and
buffers live on the ``DemoTarget``, are bounded, and end with ``stop()``.

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
import itertools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from probed.demo import health, indicators
from probed.demo.auth import Accounts
from probed.demo.events import EventBus, OutboxFull
from probed.demo.faults import (
    Faults,
    admin_routes,
    check_refuse_for,
    date_stamper,
    request_faults,
)
from probed.demo.jsonio import bad_request, json_response, read_json_body
from probed.demo.streams import Streams

__all__ = ["DemoTarget"]


_log = structlog.get_logger("probed.demo")


# --- import jobs -------------------------------------------------------------------------

_MAX_IMPORT_BODY: Final = 64 * 1024
_MAX_JOBS: Final = 1_000
_MAX_TRADES: Final = 100_000
_DEFAULT_TRADES: Final = 50
_IMPORT_STEPS: Final = 10
_REGRESS_POINTS: Final = 20
_BROKERS: Final = ("mock",)


@dataclass(slots=True)
class _Job:
    """One import job; ``step`` of ``steps`` done."""

    id: str
    total: int
    steps: int
    step: int = 0
    progress: int = 0
    processed: int = 0
    done: bool = False
    stalled: bool = False
    regressed: bool = False
    handle: asyncio.TimerHandle | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``GET /api/v1/imports/{id}`` shape."""
        return {
            "id": self.id,
            "state": "done" if self.done else "running",
            "progress": self.progress,
            "processed": self.processed,
            "total": self.total,
        }


class _Imports:
    """Import jobs that advance on timers and publish ``import.progress`` events."""

    def __init__(self, bus: EventBus, faults: Callable[[], Faults]) -> None:
        self._bus = bus
        self._faults = faults
        self._jobs: dict[str, _Job] = {}  # insertion order == age
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._jobs)

    def create(self, total: int) -> _Job:
        """Start a job over ``total`` trades (a full store forgets an old job first)."""
        loop = asyncio.get_running_loop()
        while len(self._jobs) >= _MAX_JOBS:
            self._evict()
        job = _Job(id=f"imp_{next(self._ids)}", total=total, steps=min(_IMPORT_STEPS, total))
        self._jobs[job.id] = job
        job.handle = loop.call_later(self._step_time(job), self._advance, job)
        return job

    def get(self, job_id: str) -> _Job | None:
        """The job, or ``None`` if unknown or evicted."""
        return self._jobs.get(job_id)

    def shutdown(self) -> None:
        """Stop advancing every job (they stay as they are)."""
        for job in self._jobs.values():
            if job.handle is not None:
                job.handle.cancel()
                job.handle = None

    def _evict(self) -> None:
        jobs = list(self._jobs.values())
        victim = next((j for j in jobs if j.done), None) or next(
            (j for j in jobs if j.stalled), jobs[0]
        )
        if victim.handle is not None:
            victim.handle.cancel()
        del self._jobs[victim.id]

    def _step_time(self, job: _Job) -> float:
        return self._faults().import_duration / job.steps

    def _advance(self, job: _Job) -> None:
        job.handle = None
        faults = self._faults()
        if (
            faults.import_regress
            and not job.regressed
            and job.steps >= 2
            and job.step == job.steps // 2
        ):
            job.regressed = True
            job.progress = max(0, job.progress - _REGRESS_POINTS)
            job.processed = job.total * job.progress // 100
        else:
            step = job.step + 1
            processed = job.total * step // job.steps
            progress = processed * 100 // job.total
            stall_at = faults.import_stall_at
            if stall_at and progress >= stall_at:
                job.stalled = True
                if stall_at <= job.progress:
                    return
                progress, processed = stall_at, job.total * stall_at // 100
            job.step = step
            job.progress, job.processed = progress, processed
            job.done = not job.stalled and step == job.steps
        payload = {
            "job_id": job.id,
            "progress": job.progress,
            "processed": job.processed,
            "total": job.total,
        }
        try:
            self._bus.enqueue("import.progress", payload)
        except OutboxFull:
            _log.warning("demo_outbox_full", job_id=job.id)
        if not (job.done or job.stalled):
            loop = asyncio.get_running_loop()
            job.handle = loop.call_later(self._step_time(job), self._advance, job)


# --- the app -----------------------------------------------------------------------------

_TARGET: Final[web.AppKey[DemoTarget]] = web.AppKey("demo_target")


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
        response = json_response({"error": slug}, status=exc.status, headers=headers)
    finally:
        target._in_flight.discard(protocol)
    if target._site is None and not response.prepared:
        response.force_close()
    return response


async def _post_import(request: web.Request) -> web.Response:
    target = request.app[_TARGET]
    try:
        body = await read_json_body(request, _MAX_IMPORT_BODY)
    except ValueError as exc:
        return bad_request(str(exc))
    assert isinstance(body, dict)
    broker = body.get("broker", "mock")
    if broker not in _BROKERS:
        return bad_request(f"'broker' must be one of: {', '.join(_BROKERS)}")
    trades = body.get("trades", _DEFAULT_TRADES)
    if not isinstance(trades, int) or isinstance(trades, bool) or not 1 <= trades <= _MAX_TRADES:
        return bad_request(f"'trades' must be a whole number in [1, {_MAX_TRADES}]")
    job = target._imports.create(trades)
    status_url = f"/api/v1/imports/{job.id}"
    return json_response(
        {"id": job.id, "status_url": status_url}, status=202, headers={"Location": status_url}
    )


async def _get_import(request: web.Request) -> web.Response:
    job = request.app[_TARGET]._imports.get(request.match_info["job_id"])
    if job is None:
        return json_response({"error": "not_found"}, status=404)
    return json_response(job.to_dict())


def _build_app(target: DemoTarget) -> web.Application:
    app = web.Application(middlewares=[_track, request_faults(target._current_faults, target._rng)])
    app[_TARGET] = target
    app.add_routes(health.routes())
    app.add_routes(target._accounts.routes())
    app.add_routes(indicators.routes())
    app.add_routes(target._streams.routes())
    app.router.add_post("/api/v1/imports", _post_import)
    app.router.add_get("/api/v1/imports/{job_id}", _get_import)
    app.add_routes(admin_routes(target._current_faults, target.set_faults))
    app.on_response_prepare.append(date_stamper(target._current_faults))
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
        self._accounts = Accounts(username=username, password=password)
        if not isinstance(port, int) or not 0 <= port <= 65_535:
            raise ValueError(f"port must be in [0, 65535], got {port!r}")
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._faults = dataclasses.replace(faults) if faults is not None else Faults()
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._lock = asyncio.Lock()
        self._reopen_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._in_flight: set[web.RequestHandler] = set()
        self._bus = EventBus(self._current_faults, self._rng)
        self._streams = Streams(self._bus, self._current_faults)
        self._imports = _Imports(self._bus, self._current_faults)

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
        return self._accounts.issued_tokens()

    def publish(self, type: str, payload: Mapping[str, Any]) -> int:
        """Enqueue an event as ``POST /api/v1/outbox`` does; returns its ``seq``.

        It reaches the streams ``stream_delay`` seconds later (stream faults
        apply). ``ValueError`` for a bad type or a payload that is not JSON;
        ``RuntimeError`` if the target is not started or the outbox is full.
        """
        if self._runner is None:
            raise RuntimeError("DemoTarget is not started")
        if not isinstance(payload, Mapping):
            raise ValueError("payload must be a mapping")
        return self._bus.enqueue(type, dict(payload)).seq

    def stream_subscribers(self) -> int:
        """How many SSE and WebSocket streams are open right now."""
        return self._bus.subscriber_count

    async def start(self) -> None:
        """Bind and serve; honours ``refuse_connections`` once the port is known."""
        if self._runner is not None:
            raise RuntimeError("DemoTarget is already started")
        runner = web.AppRunner(
            _build_app(self),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=5.0,
            handler_cancellation=True,  # a client gone ends its stream's handler at once
        )
        await runner.setup()
        self._runner = runner
        self._streams.open = True
        try:
            await self._open(self._requested_port)
            if self._faults.refuse_connections:
                await self._close()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving: end every stream, stop import jobs, close every connection.

        Safe to call twice. Events still waiting for ``stream_delay`` are dropped.
        """
        self._streams.open = False
        self._bus.shutdown()
        self._imports.shutdown()
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
            refuse_for = check_refuse_for(refuse_for)
            new.refuse_connections = True
        async with self._lock:
            self._generation += 1
            task, self._reopen_task = self._reopen_task, None
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            await self._apply(new)
            self._bus.wake_all()
            if refuse_for is not None and self._runner is not None:
                self._reopen_task = asyncio.create_task(
                    self._reopen_after(refuse_for, self._generation),
                    name="probed-demo-reopen",
                )

    def _current_faults(self) -> Faults:
        """The faults in force (not a copy: the middleware, streams and jobs read them live)."""
        return self._faults

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
        self._bus.close_streams()
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
