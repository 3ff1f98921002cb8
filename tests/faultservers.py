"""Purpose-built loopback servers for the fault matrix (``tests/test_faults.py``).

Each server misbehaves in exactly one way the demo target cannot: a raw socket
server for faults below HTTP (black hole, slowloris, an SSE stream cut inside
an event) and small aiohttp apps for the rest (malformed JSON, a huge body, a
redirect loop, a login without a token, a 10 MB SSE line, TLS). Every server
is started and stopped inside the test, so the test can check that nothing
(task, socket) outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

__all__ = [
    "API_KEY_HEADER",
    "MidEventSse",
    "RawServer",
    "Received",
    "WebServer",
    "black_hole",
    "elsewhere_app",
    "event_then_reset",
    "full_backlog",
    "huge_body_app",
    "invalid_json_app",
    "long_line_sse_app",
    "ok_app",
    "redirect_away_app",
    "redirect_loop_app",
    "slowloris",
    "tokenless_login_app",
]

API_KEY_HEADER = "X-Api-Key"
"""The header the matrix sends a secret in; servers record what they received."""

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """An asyncio TCP server on 127.0.0.1 running ``behaviour`` for each connection.

    ``stop()`` closes the listener, cancels every connection's handler and closes
    its socket (Python 3.11's ``Server.close()`` leaves accepted connections open).
    """

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = False
        self.connections = 0
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self._behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: this connection is over
        except asyncio.CancelledError:
            # stop() ends a handler by cancelling it; end quietly then (asyncio logs a
            # connection handler that ends cancelled), else let cancellation through
            if not self._stopping:
                raise
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        for writer in list(self._writers):
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read whatever comes, never answer (until the client gives up)."""
    while await reader.read(65536):
        pass


async def event_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer an SSE 200 with one event, then reset the connection (RST, not FIN)."""
    await _read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {}\n\n")
    await writer.drain()
    await asyncio.sleep(0.05)  # the event is read before the reset can discard it
    writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    writer.transport.abort()


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A loopback listener whose accept queue is full: a TCP connect to it never completes.

    Yields ``http://127.0.0.1:PORT``. Linux drops a SYN while the accept queue is full, so
    the client's connect hangs (it retransmits) until the client gives up.
    """
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        while len(fillers) < 8:  # connect until one does not complete: the queue is full
            filler = socket.socket()
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            raise RuntimeError("the accept queue never filled up")
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def slowloris(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer 200 with a 60-byte body, then send the body one byte per second."""
    await _read_head(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 60\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    for _ in range(60):
        await asyncio.sleep(1.0)
        if reader.at_eof() or writer.is_closing():
            return
        writer.write(b"x")
        await writer.drain()  # raises ConnectionResetError once the client is gone


class MidEventSse:
    """An SSE server that closes the connection in the middle of an event.

    A first connection (no ``Last-Event-ID``) gets one complete event (id 1), then
    half of event 2; a reconnection gets only half of event 2 again. The response
    has no length and no chunking, so the close is a clean end of stream (``eof``).
    ``last_event_ids`` records the ``Last-Event-ID`` of every request (None if absent).
    """

    COMPLETE = b'id: 1\nevent: tick\ndata: {"seq": 1, "complete": true}\n\n'
    PARTIAL = b'id: 2\nevent: tick\ndata: {"seq": 2, "comp'

    def __init__(self) -> None:
        self.last_event_ids: list[str | None] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await _read_head(reader)).decode("latin-1")
        last_id: str | None = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "last-event-id":
                last_id = value.strip()
        self.last_event_ids.append(last_id)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        if last_id is None:
            writer.write(self.COMPLETE)
        writer.write(self.PARTIAL)
        await writer.drain()
        await asyncio.sleep(0.05)  # let the partial event arrive on its own, then cut


@dataclass(frozen=True)
class Received:
    """One request as a ``WebServer`` received it: every header and the whole body."""

    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def contains(self, secret: str) -> bool:
        """Whether ``secret`` appears anywhere in the request."""
        head = "\n".join([f"{self.method} {self.path_qs}", *(f"{k}: {v}" for k, v in self.headers)])
        return secret in head or secret.encode() in self.body


class WebServer:
    """An aiohttp app on a loopback address (any free port), optionally over TLS."""

    def __init__(
        self,
        app: web.Application,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.app = app
        self.received: list[Received] = []
        """Every request the app received."""
        app.middlewares.append(self._record)
        self._ssl = ssl_context
        self._host = host
        self._runner: web.AppRunner | None = None
        self.port = 0

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        headers = tuple(request.headers.items())
        self.received.append(Received(request.method, request.path_qs, headers, body))
        return await handler(request)

    @property
    def api_keys(self) -> list[str]:
        """Every ``X-Api-Key`` value the app received."""
        return [k for r in self.received if (k := r.header(API_KEY_HEADER)) is not None]

    def base_url(self, host: str | None = None) -> str:
        """The server's base URL, naming it ``host`` (a ``*.test`` name resolves to loopback)."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{host or self._host}:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, 0, ssl_context=self._ssl)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every connection and the listener."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def ok_app() -> web.Application:
    """``GET /`` answers 200 ``ok`` (the TLS servers; only the handshake matters)."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    return app


def invalid_json_app() -> web.Application:
    """``GET /status`` answers 200 ``application/json`` with a truncated JSON document."""

    async def broken(request: web.Request) -> web.Response:
        return web.Response(text='{"status": "up", "items": [1, 2', content_type="application/json")

    app = web.Application()
    app.router.add_get("/status", broken)
    return app


def huge_body_app(total: int, sent: list[int], chunk: int = 64 * 1024) -> web.Application:
    """``GET /export`` streams ``total`` bytes, chunked (no Content-Length announces the size).

    The bytes each response got written before the client went away are appended to ``sent``.
    """
    block = b"y" * chunk

    async def export(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        written = 0
        try:
            for _ in range(total // chunk):
                await response.write(block)
                written += chunk
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading at its cap: expected
        finally:
            sent.append(written)
        return response

    app = web.Application()
    app.router.add_get("/export", export)
    return app


def redirect_loop_app() -> web.Application:
    """``GET /loop`` redirects to itself forever, echoing the caller's API key in the URL.

    The echo is hostile on purpose: every hop's URL carries a configured secret, which
    must never reach a log line, a metric or the status output, whatever URL a failure
    report names.
    """

    async def loop(request: web.Request) -> web.Response:
        hop = int(request.query.get("hop", "0")) + 1
        echo = request.headers.get(API_KEY_HEADER, "")
        raise web.HTTPFound(f"/loop?hop={hop}&echo={echo}")

    app = web.Application()
    app.router.add_get("/loop", loop)
    return app


def redirect_away_app(elsewhere: Callable[[], str]) -> web.Application:
    """Redirects to another host (the base URL ``elsewhere()`` returns).

    ``GET /away`` answers 302 and ``POST /api/auth/login`` 307 (the login body would go
    along), each to the same path on the other host with ``?sig=…`` (a query string a
    failure report must not show).
    """

    async def away(request: web.Request) -> web.Response:
        status = 307 if request.method == "POST" else 302
        location = f"{elsewhere()}{request.path}?sig=query-marker"
        return web.Response(status=status, headers={hdrs.LOCATION: location})

    app = web.Application()
    app.router.add_get("/away", away)
    app.router.add_post("/api/auth/login", away)
    return app


def elsewhere_app() -> web.Application:
    """The other host of ``redirect_away_app``: any request answers 200 with a JSON token."""

    async def anything(request: web.Request) -> web.Response:
        return web.json_response({"token": "elsewhere-token"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


def tokenless_login_app(passwords: list[str]) -> web.Application:
    """``POST /api/auth/login`` answers 200 with a user but no token (and sets no cookie).

    The ``password`` of every JSON login body is appended to ``passwords``.
    """

    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, dict) and isinstance(body.get("password"), str):
            passwords.append(body["password"])
        return web.json_response({"user": {"id": "u_1"}, "status": "ok"})

    app = web.Application()
    app.router.add_post("/api/auth/login", login)
    return app


def long_line_sse_app(size: int, chunk: int = 64 * 1024) -> web.Application:
    """``GET /events`` is an SSE stream whose first line is ``data: `` plus ``size`` bytes."""
    block = b"z" * chunk

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={hdrs.CONTENT_TYPE: "text/event-stream", hdrs.CACHE_CONTROL: "no-cache"}
        )
        await response.prepare(request)
        try:
            await response.write(b"data: ")
            for _ in range(size // chunk):
                await response.write(block)
            await response.write(b"\n\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the watcher gave up at its line limit: expected
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    return app
