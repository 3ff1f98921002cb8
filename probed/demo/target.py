"""The built-in demo target: a small aiohttp app shaped like the seeds' product.

``DemoTarget`` puts the parts of this package together on one port and owns
their lifecycle (start, stop, refusing and re-opening the port):

* ``health``: ``/health`` and its readiness, liveness and migrations endpoints;
* ``auth``: ``POST /api/auth/login`` then ``GET /api/me``;
* ``indicators``: ``POST /v1/indicators``;
* ``streams`` over ``events``: the SSE stream and the WebSocket, fed by
  ``POST /api/v1/outbox`` and ``DemoTarget.publish()``;
* ``imports``: import jobs and their ``import.progress`` events;
* ``faults``: the fault knobs, the request faults and ``GET``/``PUT /-/admin/faults``.

Faults are changed from Python (``await DemoTarget.set_faults(...)``) or over
HTTP on the admin endpoints, which faults never touch. While connections are
refused no admin request can arrive, so ``refuse_for`` (seconds) refuses now and
re-opens the same port by itself after that time. Streams, timers and buffers
live on the ``DemoTarget``, are bounded, and end with ``stop()``.

Passwords and tokens are never logged or echoed back in errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from probed.demo import health, indicators
from probed.demo.auth import Accounts
from probed.demo.events import EventBus
from probed.demo.faults import (
    Faults,
    admin_routes,
    check_refuse_for,
    date_stamper,
    request_faults,
)
from probed.demo.imports import Imports
from probed.demo.jsonio import json_response
from probed.demo.streams import Streams

__all__ = ["DemoTarget"]

_log = structlog.get_logger("probed.demo")


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
        self._imports = Imports(self._bus, self._current_faults)

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
            self._build_app(),
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

    def _build_app(self) -> web.Application:
        faults_of = self._current_faults
        app = web.Application(middlewares=[self._track, request_faults(faults_of, self._rng)])
        app.add_routes(health.routes())
        app.add_routes(self._accounts.routes())
        app.add_routes(indicators.routes())
        app.add_routes(self._streams.routes())
        app.add_routes(self._imports.routes())
        app.add_routes(admin_routes(faults_of, self.set_faults))
        app.on_response_prepare.append(date_stamper(faults_of))
        return app

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: JSON routing errors, in-flight tracking, no keep-alive while refusing."""
        protocol = request.protocol
        self._in_flight.add(protocol)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            slug = exc.reason.lower().replace(" ", "_")
            response = json_response({"error": slug}, status=exc.status, headers=headers)
        finally:
            self._in_flight.discard(protocol)
        if self._site is None and not response.prepared:
            response.force_close()
        return response

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
