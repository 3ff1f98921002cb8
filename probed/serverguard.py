"""Connection limits and timeouts for the daemon's HTTP server.

aiohttp's ``TCPSite`` accepts every connection asyncio hands it and keeps a
connection that never sends a request for an hour; at the usual 1,024 open files
a few hundred idle clients then starve probes of sockets (EMFILE). The
:class:`GuardedSite` accepts connections itself and the :class:`ConnectionGuard`
keeps them in bounds:

- at most ``max_connections`` open (default: 256, never over half the soft
  ``RLIMIT_NOFILE``, the rest is for probes, streams and files); beyond it the
  idle connection unused longest is closed to make room, or, if every connection
  is serving a request, the new one is closed at once;
- a new connection has ``header_timeout`` to finish TLS and send its first
  request's headers (slowloris, a handshake that never ends, nothing sent);
- a kept-alive connection may wait ``idle_timeout`` for its next request;
- accept errors (EMFILE) free the oldest idle connection and retry after 0.1 s.

Every rejection is counted by reason (``metrics.REJECT_REASONS``), logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import resource
import socket
import ssl
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from probed.serverstats import REJECT_REASONS, ServerStats

__all__ = ["DEFAULT_MAX_CONNECTIONS", "ConnectionGuard", "GuardedSite", "max_connections"]

_log = structlog.get_logger("probed")

DEFAULT_MAX_CONNECTIONS = 256
_LOG_EVERY = 60.0
_ACCEPT_RETRY = 0.1
_SHUTDOWN_TIMEOUT = 2.0  # seconds a TLS close waits for the client's close_notify
_COLLECT_EVERY = 64  # connections the guard closes between two collections
_TRIM_AFTER = 64  # connections open at once before a flood's memory is handed back


def _release_memory() -> None:
    """Free a flood's TLS buffers (256 KiB each; some in reference cycles), give the heap back."""
    import ctypes  # only after a flood: the daemon's start need not load it (bench/README.md)

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def max_connections(configured: int | None) -> int:
    """The connection cap: ``configured`` (or the default), at most half the soft fd limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = configured if configured is not None else DEFAULT_MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))


@dataclass(eq=False, slots=True)
class _Conn:
    sock: socket.socket
    task: asyncio.Task[None] | None = None
    transport: asyncio.Transport | None = None
    timer: asyncio.TimerHandle | None = None
    busy: int = 0


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol for one connection, plus word to the guard when it ends."""

    def __init__(self, guard: ConnectionGuard, conn: _Conn, inner: asyncio.Protocol) -> None:
        self._guard, self._conn, self._inner = guard, conn, inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard._established(self._conn, cast(asyncio.Transport, transport))
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._forget(self._conn)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ConnectionGuard:
    """Caps, times out and counts the server's connections (see the module docs)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        header_timeout: float,
        idle_timeout: float,
        stats: ServerStats,
    ) -> None:
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.stats = stats
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._conns: dict[_Conn, None] = {}
        self._idle: OrderedDict[_Conn, None] = OrderedDict()  # unused longest first
        self._by_transport: dict[asyncio.BaseTransport, _Conn] = {}
        self._unlogged: Counter[str] = Counter()
        self._logged_at = float("-inf")
        self._high_water = 0
        self._churned = 0

    def serve(self, factory: Callable[[], asyncio.Protocol]) -> None:
        """Build each accepted connection's protocol with ``factory`` (aiohttp's server)."""
        self._factory = factory

    def admit(self, sock: socket.socket) -> None:
        """Take an accepted socket: make room if needed, start TLS and the header timer."""
        assert self._factory is not None
        if len(self._conns) >= self.max_connections:
            if not self._idle:
                sock.close()
                self._reject("over_capacity")
                return
            self._close(next(iter(self._idle)), "evicted")
        loop = asyncio.get_running_loop()
        conn = _Conn(sock)
        self._conns[conn] = None
        self._idle[conn] = None
        self.stats.connections = len(self._conns)
        self._high_water = max(self._high_water, len(self._conns))
        conn.timer = loop.call_later(self.header_timeout, self._close, conn, "header_timeout")
        conn.task = loop.create_task(self._start(conn, self._factory))
        conn.task.add_done_callback(functools.partial(self._started, conn))

    async def _start(self, conn: _Conn, factory: Callable[[], asyncio.Protocol]) -> None:
        loop = asyncio.get_running_loop()
        tls = self.ssl_context is not None
        with contextlib.suppress(Exception):  # a failed handshake: see _started
            await loop.connect_accepted_socket(
                lambda: _Tracked(self, conn, factory()),
                conn.sock,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.header_timeout if tls else None,
                ssl_shutdown_timeout=_SHUTDOWN_TIMEOUT if tls else None,
            )

    def _started(self, conn: _Conn, _: asyncio.Task[None]) -> None:
        if conn.transport is None:  # the handshake failed, timed out or was cancelled
            conn.sock.close()  # (asyncio closed it already, unless cancelled before it began)
            self._forget(conn)

    def _established(self, conn: _Conn, transport: asyncio.Transport) -> None:
        conn.transport = transport
        self._by_transport[transport] = conn

    def _forget(self, conn: _Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        self._conns.pop(conn, None)
        self._idle.pop(conn, None)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        self.stats.connections = len(self._conns)
        if self._high_water >= _TRIM_AFTER and len(self._conns) <= self._high_water // 8:
            self._high_water = len(self._conns)
            asyncio.get_running_loop().call_later(1.0, _release_memory)  # once the rest is freed

    def _close(self, conn: _Conn, reason: str | None) -> None:
        """Close ``conn`` now (``reason``: counted as a rejection; None: a normal idle close)."""
        if conn not in self._conns:
            return
        if reason is not None:
            self._reject(reason)
            self._churned += 1
            if self._churned % _COLLECT_EVERY == 0:
                # a flood's evicted TLS connections are reference cycles holding 256 KiB
                # buffers each: collect them in batches (the daemon's long-lived objects
                # are frozen, so a full pass scans only what the flood made)
                asyncio.get_running_loop().call_soon(gc.collect, 2)
        self._forget(conn)
        if conn.transport is not None:
            conn.transport.abort()  # no TLS close_notify dance with an idle client
        elif conn.task is not None:
            conn.task.cancel()  # the handshake: asyncio closes the socket

    def close_idle(self) -> None:
        """Close every connection not serving a request (the server is stopping)."""
        for conn in list(self._idle):
            self._close(conn, None)

    def accept_failed(self, exc: OSError) -> None:
        """Count an accept error; out of descriptors, close the idle connection unused longest."""
        self._reject("accept_error", errno.errorcode.get(exc.errno or 0, str(exc.errno)))
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._idle:
            self._close(next(iter(self._idle)), "evicted")

    def _reject(self, reason: str, detail: str | None = None) -> None:
        assert reason in REJECT_REASONS
        self.stats.rejected[reason] += 1
        self._unlogged[reason] += 1
        now = asyncio.get_running_loop().time()
        if now - self._logged_at >= _LOG_EVERY:
            self._logged_at = now
            _log.warning(
                "http_server_connections_rejected",
                open=len(self._conns),
                max_connections=self.max_connections,
                accept_error=detail,
                **{f"{name}_since_last": count for name, count in self._unlogged.items()},
            )
            self._unlogged.clear()

    def middleware(self) -> Middleware:
        """Marks a connection busy while it serves a request; put it first."""

        @web.middleware
        async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self._by_transport.get(request.transport)  # type: ignore[arg-type]
            if conn is None or conn not in self._conns:
                return await handler(request)
            if conn.timer is not None:
                conn.timer.cancel()
            self._idle.pop(conn, None)
            conn.busy += 1
            try:
                return await handler(request)
            finally:
                conn.busy -= 1
                if conn.busy == 0 and conn in self._conns:
                    self._idle[conn] = None
                    conn.timer = asyncio.get_running_loop().call_later(
                        self.idle_timeout, self._close, conn, None
                    )

        return guard_middleware


class _Listening(asyncio.AbstractServer):
    """The listening sockets, as ``BaseSite`` and ``AppRunner.addresses`` expect them."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return any(sock.fileno() != -1 for sock in self.sockets)

    async def start_serving(self) -> None:
        """Serving starts with the site (the accept loop is GuardedSite's)."""

    async def serve_forever(self) -> None:
        raise NotImplementedError("GuardedSite serves until it is stopped")

    async def wait_closed(self) -> None:
        """Closing the sockets is immediate."""


class GuardedSite(web.BaseSite):
    """A TCP site whose accept loop hands every connection to a :class:`ConnectionGuard`."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner, ssl_context=guard.ssl_context, backlog=1024)
        self._host, self._port, self._guard = host, port, guard
        self._accepting: list[asyncio.Task[None]] = []

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._guard.serve(server)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        sockets: list[socket.socket] = []
        try:
            for family, _, _, _, address in dict.fromkeys((i[0], 0, 0, 0, i[4]) for i in infos):
                sock = socket.socket(family, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        self._server = _Listening(sockets)
        self._accepting = [loop.create_task(self._accept(sock)) for sock in sockets]

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:  # EMFILE and friends: asyncio's own loop would log each
                self._guard.accept_failed(exc)
                await asyncio.sleep(_ACCEPT_RETRY)
                continue
            self._guard.admit(conn)
            # let evicted connections close before the next accept: sock_accept returns at
            # once while the backlog is full, and aborted sockets are closed by callbacks
            await asyncio.sleep(0)

    async def stop(self) -> None:
        for task in self._accepting:
            task.cancel()
        for task in self._accepting:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._guard.close_idle()
        await super().stop()
