"""The http kind's own client (``probed.http.wire``): framings, decoding, the fallback to
aiohttp, and failures worded as on aiohttp, against raw loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import gzip
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from cycles import cyclic_garbage
from faultservers import RawServer, Received, WebServer, elsewhere_app
from probeservers import run

from probed.config import HttpProbe, LoginProbe, TargetConfig
from probed.http.redirects import RedirectPolicy
from probed.http.session import PhaseTimer
from probed.http.tls import ssl_for
from probed.http.wire import BodyTooLarge, Reply, WireClient, supports
from probed.probes.base import ProbeContext
from probed.results import ProbeResult, Reason

if TYPE_CHECKING:
    from conftest import MakeProbeContext, NetworkFault

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD_200 = b"HTTP/1.1 200 OK\r\n"


def spec(**fields: Any) -> HttpProbe:
    """An http probe of ``/`` on target ``t``."""
    return HttpProbe(**{"name": "w", "target": "t", "path": "/", "timeout": "2s", **fields})


@contextlib.asynccontextmanager
async def raw_server(behaviour: Behaviour) -> AsyncIterator[RawServer]:
    """``behaviour`` on a loopback port, stopped afterwards."""
    server = RawServer(behaviour)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def answering(*pieces: bytes, close: bool = True) -> Behaviour:
    """A server that reads the request head, writes ``pieces`` one by one (each its own
    segment), then closes (or keeps the connection open)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.005)
        if not close:
            await reader.read()

    return behaviour


async def fetch(server: RawServer, cap: int = 1 << 20, method: str = "GET") -> Reply:
    """One exchange with ``server`` (no redirects followed)."""
    reply, _ = await WireClient().fetch(
        method,
        f"{server.base_url}/",
        RedirectPolicy(mode="none"),
        headers={},
        data=None,
        json=None,
        ssl_context=ssl_for(TargetConfig(base_url=server.base_url)),
        timer=PhaseTimer(),
        cap=cap,
    )
    return reply


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    """``chunks`` in chunked framing (one with an extension), then the last chunk."""
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return body + b"0\r\n" + trailer + b"\r\n"


FRAMINGS = [
    pytest.param(
        [HEAD_200 + b"Content-Length: 11\r\n\r\nhello", b" world"], b"hello world", id="length"
    ),
    pytest.param(
        [
            HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n",
            chunked(b"hello", b" world")[:9],
            chunked(b"hello", b" world")[9:],
        ],
        b"hello world",
        id="chunked",
    ),
    pytest.param(
        [HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"ab", trailer=b"X-T: 1\r\n")],
        b"ab",
        id="chunked_with_trailer",
    ),
    pytest.param([HEAD_200 + b"\r\nuntil ", b"close"], b"until close", id="until_close"),
    pytest.param(
        [
            HEAD_200
            + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            % len(gzip.compress(b"zipped" * 50))
            + gzip.compress(b"zipped" * 50)
        ],
        b"zipped" * 50,
        id="gzip",
    ),
    pytest.param(
        [HEAD_200 + b"Content-Encoding: deflate\r\n\r\n" + zlib.compress(b"deflated")],
        b"deflated",
        id="deflate_zlib",
    ),
    pytest.param(
        [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD_200 + b"Content-Length: 2\r\n\r\nok"],
        b"ok",
        id="interim_100",
    ),
    pytest.param([b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok"], b"ok", id="bare_lf_http10"),
    pytest.param([b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"], b"", id="no_content"),
]


@pytest.mark.parametrize(("pieces", "body"), FRAMINGS)
async def test_bodies_by_every_framing(pieces: list[bytes], body: bytes) -> None:
    """Content-Length, chunked (split anywhere, extensions, trailers), until close, gzip and
    deflate, an interim 100, bare LF line ends and a 204 all give the whole decoded body."""
    async with raw_server(answering(*pieces)) as server:
        reply = await fetch(server)

    assert body == reply.body
    assert reply.status in (200, 204)


async def test_raw_deflate_is_decoded() -> None:
    """A deflate body without the zlib header is decoded too, as aiohttp does."""
    packer = zlib.compressobj(wbits=-15)
    data = packer.compress(b"raw deflate " * 20) + packer.flush()
    head = HEAD_200 + b"Content-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(data)
    async with raw_server(answering(head + data)) as server:
        reply = await fetch(server)

    assert b"raw deflate " * 20 == reply.body


async def test_headers_and_charset() -> None:
    """Repeated headers are kept in order and the charset is read from Content-Type."""
    head = (
        HEAD_200 + b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        b'Content-Type: text/plain; charset="latin-1"\r\nContent-Length: 0\r\n\r\n'
    )
    async with raw_server(answering(head)) as server:
        reply = await fetch(server)

    assert (["a=1", "b=2"], "latin-1") == (reply.headers.getall("Set-Cookie"), reply.charset)


async def test_a_compressed_body_is_capped_after_decoding() -> None:
    """A small gzip body that decodes past the cap is oversize, decoded no further."""
    bomb = gzip.compress(b"\0" * 1_000_000)
    head = HEAD_200 + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    async with raw_server(answering(head + bomb)) as server:
        with pytest.raises(BodyTooLarge):
            await fetch(server, cap=10_000)


async def test_head_reads_no_body() -> None:
    """A HEAD response announcing a body ends with its head (the connection stays open)."""
    head = HEAD_200 + b"Content-Length: 5000000\r\n\r\n"
    async with raw_server(answering(head, close=False)) as server:
        reply = await asyncio.wait_for(fetch(server, cap=10, method="HEAD"), 2)

    assert (200, b"") == (reply.status, reply.body)


BROKEN = [
    pytest.param([HEAD_200 + b"Content-Length: 10\r\n\r\nshort"], id="short_length"),
    pytest.param([HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab"], id="short_chunk"),
    pytest.param([HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"], id="bad_chunk_size"),
    pytest.param(
        [HEAD_200 + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"], id="two_lengths"
    ),
    pytest.param([HEAD_200 + b"Content-Encoding: gzip\r\n\r\nnot gzip"], id="bad_gzip"),
    pytest.param([HEAD_200 + b"Bad Header\r\n\r\n"], id="bad_header_line"),
    pytest.param([b"HTTP/1.1 2000 OK\r\n\r\n"], id="bad_status"),
    pytest.param([HEAD_200 + b"Content-Le"], id="head_cut"),
]


@pytest.mark.parametrize("pieces", BROKEN)
async def test_broken_responses_are_protocol_errors(
    pieces: list[bytes], make_probe_context: MakeProbeContext
) -> None:
    """A short, misframed or undecodable response fails as ``protocol_error``, with the error
    code and detail of the aiohttp path."""
    async with raw_server(answering(*pieces)) as server:
        ctx = make_probe_context(server.base_url)
        result = (await run(ctx, spec())).result
        theirs = (await run(_on_aiohttp(ctx), spec())).result

    assert (False, Reason.PROTOCOL_ERROR) == (result.success, result.reason), result.detail
    assert _said(theirs) == _said(result)


def _on_aiohttp(ctx: ProbeContext) -> ProbeContext:
    return dataclasses.replace(ctx, wire=None, prepared={})


def _said(result: ProbeResult) -> tuple[bool, Reason | None, str, str]:
    return result.success, result.reason, result.error_code, result.detail


async def test_network_faults_read_as_on_aiohttp(network_fault: NetworkFault) -> None:
    """Refused, DNS, unreachable and broken HTTP give the reason, error code and detail
    that the aiohttp path gives for the same fault."""
    assert network_fault.ctx.wire is not None
    probe = spec()

    own = (await run(network_fault.ctx, probe)).result
    theirs = (await run(_on_aiohttp(network_fault.ctx), probe)).result

    assert _said(theirs) == _said(own)


async def test_a_timed_out_exchange_closes_its_connection(
    make_probe_context: MakeProbeContext,
) -> None:
    """The runner's deadline cancels the exchange; its socket is closed at once (the server
    sees the end) and nothing is left to a ResourceWarning or a reference cycle."""
    ended = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # returns at the client's close
        ended.set()

    async with raw_server(silent) as server:
        ctx = make_probe_context(server.base_url)
        probe = spec(timeout="100ms")
        await run(ctx, probe)
        ended.clear()
        with warnings.catch_warnings(record=True) as caught, cyclic_garbage() as left:
            warnings.simplefilter("always", ResourceWarning)
            result = (await run(ctx, probe)).result
            await asyncio.wait_for(ended.wait(), 1)
            gc.collect()

    assert Reason.TIMEOUT == result.reason
    assert [] == left
    assert [] == [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize(
    ("probe", "target", "headers", "own"),
    [
        pytest.param(spec(), "http://127.0.0.1:1", {}, True, id="http_fresh"),
        pytest.param(spec(), "https://[::1]:1", {"Accept-Encoding": "gzip"}, True, id="https"),
        pytest.param(spec(fresh_connection=False), "http://a.test", {}, False, id="pooled"),
        pytest.param(
            LoginProbe(name="l", target="t", username="u", password={"env": "PW"}),
            "http://a.test",
            {},
            False,
            id="login",
        ),
        pytest.param(spec(), "http://a.test", {"accept-encoding": "br"}, False, id="brotli"),
        pytest.param(spec(), "http://u:pw@a.test", {}, False, id="user_info"),
    ],
)
def test_which_probes_use_the_own_client(
    probe: Any, target: str, headers: dict[str, str], own: bool
) -> None:
    """Only ``http`` probes on fresh connections use it, unless they ask for a content coding
    it cannot decode or carry user info in the URL: the others stay on aiohttp."""
    assert own == supports(probe, target, headers)


async def test_the_fallback_is_chosen_once_per_config(make_probe_context: MakeProbeContext) -> None:
    """A context hands its own client to the probes it supports and aiohttp to the others."""
    ctx = make_probe_context("http://a.test")
    brotli = spec(name="br", headers={"Accept-Encoding": "br"})
    brotli._finish_headers()

    assert ctx.wire is not None
    assert ctx.wire is ctx.wire_for(spec())
    assert ctx.wire_for(spec(fresh_connection=False)) is None
    assert ctx.wire_for(brotli) is None


ODD = [
    pytest.param(
        [HEAD_200 + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"ab")],
        id="length_and_chunked",
    ),
    pytest.param(
        [HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n"], id="no_crlf"
    ),
    pytest.param(
        [HEAD_200 + b"Name : value\r\nContent-Length: 0\r\n\r\n"], id="space_before_colon"
    ),
    pytest.param([HEAD_200 + b"X-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n"], id="folded"),
    pytest.param([b"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\n"], id="not_modified"),
    pytest.param([b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"], id="no_reason_phrase"),
    pytest.param([b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"], id="http2_status_line"),
    pytest.param([HEAD_200 + b"Content-Length: +2\r\n\r\nok"], id="signed_length"),
    pytest.param([HEAD_200 + b"Transfer-Encoding: gzip\r\n\r\nraw"], id="te_not_chunked"),
    pytest.param([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"], id="switching"),
    pytest.param([HEAD_200 + b"Content-Encoding: br\r\nContent-Length: 3\r\n\r\nraw"], id="br"),
]


@pytest.mark.parametrize("pieces", ODD)
async def test_odd_responses_end_as_on_aiohttp(
    pieces: list[bytes], make_probe_context: MakeProbeContext
) -> None:
    """Responses at the edges of HTTP/1.1 succeed or fail as on aiohttp, with its details."""
    async with raw_server(answering(*pieces)) as server:
        ctx = make_probe_context(server.base_url)
        result = (await run(ctx, spec())).result
        theirs = (await run(_on_aiohttp(ctx), spec())).result

    assert _said(theirs) == _said(result)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="get"),
        pytest.param({"method": "HEAD"}, id="head"),
        pytest.param({"method": "POST"}, id="post_without_body"),
        pytest.param({"method": "DELETE"}, id="delete"),
        pytest.param({"method": "OPTIONS"}, id="options"),
        pytest.param({"method": "PUT", "body": "plain text"}, id="put_text"),
        pytest.param({"method": "POST", "json_body": {"a": [1, "é"]}}, id="post_json"),
        pytest.param({"path": "/p%20q?x=1&y=%2F"}, id="encoded_path_and_query"),
    ],
)
async def test_requests_go_out_as_from_aiohttp(
    fields: dict[str, Any], make_probe_context: MakeProbeContext
) -> None:
    """Method, target, headers and body are what aiohttp sends (``Connection: close`` aside)."""
    server = WebServer(elsewhere_app())
    await server.start()
    try:
        ctx = make_probe_context(server.base_url("127.0.0.1"), headers={"X-Target": "t"})
        probe = spec(**{"headers": {"X-Probe": "p"}, **fields})
        probe._finish_headers()
        own = (await run(ctx, probe)).result
        theirs = (await run(_on_aiohttp(ctx), probe)).result
    finally:
        await server.stop()

    assert (True, True) == (own.success, theirs.success), (own.detail, theirs.detail)
    wire_request, aiohttp_request = server.received

    def sent(received: Received) -> tuple[Any, ...]:
        headers = sorted(
            (name.lower(), value)
            for name, value in received.headers
            if name.lower() not in ("connection", "traceparent")
        )
        return received.method, received.path_qs, headers, received.body

    assert sent(aiohttp_request) == sent(wire_request)
    assert "close" == wire_request.header("Connection")


@pytest.mark.parametrize(
    "pieces",
    [*BROKEN, pytest.param([HEAD_200 + b"Content-Length: 2\r\n\r\nok"], id="success")],
)
async def test_a_broken_response_leaves_no_reference_cycle(
    pieces: list[bytes], make_probe_context: MakeProbeContext
) -> None:
    """The client's failures (and a success) are freed by reference counting."""
    async with raw_server(answering(*pieces)) as server:
        ctx = make_probe_context(server.base_url)
        await run(ctx, spec())
        with cyclic_garbage() as left:
            for _ in range(3):
                await run(ctx, spec())

    assert [] == left
