"""Streams read on probed's own HTTP/1.1 protocol: what each read costs, and the wire's cases.

The watchers read their responses with ``probed.http.wirestream``: the events of a read
are accounted inside the connection's own callback, and a connection holds a few objects
instead of a client library's dozens. The servers here are raw sockets on 127.0.0.1 where
the case is about the bytes on the wire (framing, codings, a head and events in one write,
a body read until close), and aiohttp's server elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from cycles import cyclic_garbage
from polling import until
from test_watcher import event, open_stream, sse_server, stream_spec, watching

from probed.config import SseStream, TargetConfig
from probed.http.session import create_sessions
from probed.store import ResultStore
from probed.stream.hub import Hub, ReceivedEvent
from probed.stream.manager import StreamManager

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[str]:
    """``serve`` each connection on 127.0.0.1 (port 0), the request's head read first."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await serve(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_SERVER = """
import asyncio

async def serve(reader, writer):
    while (await reader.readline()) not in (b"\\r\\n", b""):
        pass
    body = b'id: 1\\ndata: {"seq": 1}\\n\\n'
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\n"
                 b"Transfer-Encoding: chunked\\r\\n\\r\\n%x\\r\\n%s\\r\\n" % (len(body), body))
    await reader.read()
    writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _references_walked(port: int, subscribers: int) -> int:
    """References a full collection follows with ``subscribers`` connections open and idle."""
    target = TargetConfig(base_url=f"http://127.0.0.1:{port}")
    target._finish_headers()
    spec = SseStream(
        name="s", target="t", path="/sse", subscribers=subscribers, sequence_field="seq"
    )
    store = ResultStore()
    fresh, pooled = create_sessions()
    manager = StreamManager(store, Hub(), pooled)
    try:
        async with asyncio.TaskGroup() as tg:
            manager.start(tg, [spec], {"t": target})
            stats = store.streams["s"]
            await until(lambda: stats.received >= subscribers and stats.connected, 10.0)
            await asyncio.sleep(0.2)
            gc.collect()
            objects = gc.get_objects()
            walked = sum(len(gc.get_referents(obj)) for obj in objects)
            del objects
            await manager.stop()
    finally:
        await fresh.close()
        await pooled.close()
    return walked


async def test_an_open_stream_connection_costs_a_full_collection_few_references() -> None:
    """Every open connection is walked by each full collection (the loop stalls for it):
    forty more idle connections cost at most 300 references each (aiohttp's client: about
    400 on the default loop, 360 on uvloop). The server runs in its own process so that
    only the client's objects are counted."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVER, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = int(await server.stdout.readline())
        await _references_walked(port, 1)  # first use: imports, caches
        one = await _references_walked(port, 1)
        many = await _references_walked(port, 41)
    finally:
        server.kill()
        await server.wait()
    per_connection = (many - one) / 40
    assert per_connection <= 300, f"{per_connection:.0f} references per connection"


async def test_a_read_s_events_are_accounted_in_its_callback_not_in_a_woken_task() -> None:
    """A read's events are accounted (and published) where the read lands, in the
    connection's callback: no task is woken per read, which costs a turn of the loop,
    a future and a task step per event on a stream of single events."""
    tasks: list[asyncio.Task[object] | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await asyncio.sleep(0.05)  # the head is read on its own (see the last test's first events)
        for seq in range(1, 6):
            await resp.write(event(seq))
            await asyncio.sleep(0.02)
        await asyncio.sleep(5)
        return resp

    def seen(received: ReceivedEvent) -> None:
        tasks.append(asyncio.current_task())

    async with sse_server(handler) as url, watching(url, stream_spec()) as (stats, hub):
        hub.subscribe("events", seen)
        await until(lambda: stats.received >= 5)
    assert len(tasks) >= 5
    assert all(task is None for task in tasks), tasks


async def test_a_gzip_stream_is_decoded_as_it_comes() -> None:
    """``Content-Encoding: gzip``, each event flushed on its own: every event is decoded
    and accounted when it arrives, not at the end of the body."""
    coder = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    sent = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_HEAD + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
        for seq in range(1, 4):
            writer.write(chunk(coder.compress(event(seq)) + coder.flush(zlib.Z_SYNC_FLUSH)))
        sent.set()
        await reader.read()

    async with raw_server(serve) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 3)
    assert (3, 0, 0) == (stats.received, stats.lost, stats.duplicated)


async def test_a_compressed_bomb_ends_as_oversize_piece_by_piece() -> None:
    """A few kilobytes of gzip that decode to 64 MB of one line end the connection as
    ``oversize`` once the line passes ``max_line_size``: the body is decoded a piece at a
    time, never whole."""
    bomb = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    payload = bomb.compress(b"data: " + b"x" * (64 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(payload) < 100_000

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_HEAD + b"Content-Encoding: gzip\r\n\r\n" + payload)
        await reader.read()

    spec = stream_spec(max_line_size=65536, max_event_size=131072)
    async with raw_server(serve) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.reconnects["oversize"] >= 2, 10.0)


async def test_user_info_in_the_url_is_sent_as_basic_auth() -> None:
    """A target URL with user info authorizes the stream's request with it (Basic), as
    for every other request to the target."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        resp = await open_stream(request)
        await resp.write(event(1))
        await asyncio.sleep(5)
        return resp

    async with sse_server(handler) as url:
        with_user = url.replace("http://", "http://ops%40site:p%3Ass@")
        async with watching(with_user, stream_spec()) as (stats, _):
            await until(lambda: stats.received >= 1)
    assert seen[0] == "Basic " + base64.b64encode(b"ops@site:p:ss").decode()


async def test_a_broken_chunk_mid_stream_is_a_protocol_error_after_its_events() -> None:
    """Events before a malformed chunk size are accounted; the connection then ends as
    ``protocol_error``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(event(1)))
        await asyncio.sleep(0.05)
        writer.write(b"zz\r\n" + event(2) + b"\r\n")
        await reader.read()

    async with raw_server(serve) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.reconnects["protocol_error"] >= 2)
    assert stats.received >= 2
    assert stats.lost == 0


async def test_a_body_read_until_close_ends_as_eof_after_its_events() -> None:
    """An HTTP/1.0-style response (no length, no chunks) is read until the server closes:
    its events count, then the connection ends as ``eof``; the head and the first events
    may come in one write."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n" + event(1) + event(2))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(event(3))
        await writer.drain()

    spec = stream_spec(sequence_field=None, lag_field=None)
    async with raw_server(serve) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.reconnects["eof"] >= 2)
    assert stats.received >= 6


async def test_an_interim_response_before_the_stream_is_skipped() -> None:
    """A ``100 Continue`` (a proxy's, say) before the response is not the response."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0.02)
        writer.write(_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(event(1)))
        await reader.read()

    async with raw_server(serve) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 1)
        assert stats.connected
        assert not stats.reconnects


@pytest.mark.parametrize("end", ["oversize", "flood", "protocol_error", "internal_error"])
async def test_a_connection_ended_inside_its_read_leaves_no_reference_cycle(
    end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection ended where its read lands (the accounting's ``oversize`` or
    ``flood``, a broken chunk, a bug in probed) keeps its reason on the response and
    is aborted there; all of it must be freed by reference counting."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.01)
        if end == "oversize":
            writer.write(chunk(b"data: " + b"x" * 2048))
        elif end == "flood":
            writer.write(chunk(b"".join(event(seq) for seq in range(1, 40))))
        elif end == "protocol_error":
            writer.write(chunk(event(1)) + b"zz\r\n")
        else:
            writer.write(chunk(event(1)))
        await reader.read()

    spec = stream_spec(
        max_line_size=1024, max_event_rate=10, reconnect_initial="10ms", reconnect_max="20ms",
        min_reconnect_delay="10ms",
    )  # fmt: skip
    if end == "internal_error":
        monkeypatch.setattr("probed.stream.watcher.parse_timestamp", _bug)
    async with raw_server(serve) as url, watching(url, spec) as (stats, _):
        await until(lambda: connections >= 3, 10.0)
        with cyclic_garbage() as left:
            first = connections
            await until(lambda: connections >= first + 10, 20.0)
    assert stats.reconnects[end] >= 10
    assert [] == left, left


def _bug(*_: object) -> None:
    raise RuntimeError("a bug in probed's accounting")
