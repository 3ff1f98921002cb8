"""A chunked body on probed's own HTTP/1.1 protocol: whole chunks are read straight from
each read, and whatever the split, the bytes handed on and the outcome are the buffer
parser's (``_read_chunks`` alone)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probed.http.wireparse import Exchange
from probed.http.wirestream import StreamExchange

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class _Transport(asyncio.Transport):
    """What the exchanges ask of a transport, with no socket behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _BufferOnly(StreamExchange):
    """The stream exchange with every read going through the buffer, as before."""

    __slots__ = ()

    def _whole_chunks(self, data: bytes) -> bytes:
        return data


class _BufferOnlyExchange(Exchange):
    __slots__ = ()

    def _whole_chunks(self, data: bytes) -> bytes:
        return data


def _stream(cls: type[StreamExchange], reads: list[bytes]) -> tuple[list[bytes], str]:
    """What ``cls`` hands its sink for ``reads`` (the head first), and how it ended."""

    async def read() -> tuple[list[bytes], str]:
        exchange = cls(asyncio.get_running_loop(), b"GET / HTTP/1.1\r\n\r\n")
        exchange.connection_made(_Transport())
        got: list[bytes] = []
        exchange.start(got.append)
        for data in reads:
            exchange.data_received(data)
        return got, _outcome(exchange.done)

    return asyncio.run(read())


def _exchange(cls: type[Exchange], reads: list[bytes], cap: int) -> tuple[bytes, str]:

    async def read() -> tuple[bytes, str]:
        exchange = cls(asyncio.get_running_loop(), b"GET / HTTP/1.1\r\n\r\n", False, cap)
        exchange.connection_made(_Transport())
        for data in reads:
            exchange.data_received(data)
        return bytes(exchange.body), _outcome(exchange.done)

    return asyncio.run(read())


def _outcome(done: asyncio.Future[None]) -> str:
    if not done.done():
        return "open"
    error = done.exception()
    return "whole" if error is None else f"{type(error).__name__}: {error}"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@st.composite
def _chunk(draw: st.DrawFn) -> bytes:
    data = draw(st.binary(max_size=40))
    size = draw(st.sampled_from(["%x", "%X", "%04x", " %x", "%x ", "%x;name=value"]))
    size = size % len(data) if "%" in size else size
    newline = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    after = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"x\r\n", b""]))
    return size.encode() + newline + data + after


_BODIES = st.tuples(
    st.lists(_chunk(), max_size=6),
    st.sampled_from([b"", b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b"zz\r\n", b"\r\n"]),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(_BODIES)
def test_any_split_of_a_stream_gives_what_the_buffer_alone_gives(
    body: tuple[list[bytes], bytes, list[int]],
) -> None:
    chunks, end, cuts = body
    data = HEAD + b"".join(chunks) + end
    reads = _split(data, cuts)
    got, outcome = _stream(StreamExchange, reads)
    want, expected = _stream(_BufferOnly, reads)
    assert (b"".join(got), outcome) == (b"".join(want), expected)


@settings(max_examples=300, deadline=None)
@given(_BODIES, st.sampled_from([0, 10, 60, 1 << 20]))
def test_any_split_of_a_body_gives_what_the_buffer_alone_gives(
    body: tuple[list[bytes], bytes, list[int]], cap: int
) -> None:
    chunks, end, cuts = body
    reads = _split(HEAD + b"".join(chunks) + end, cuts)
    assert _exchange(Exchange, reads, cap) == _exchange(_BufferOnlyExchange, reads, cap)


def test_events_each_a_whole_chunk_in_a_read_skip_the_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One event per chunk per read, the usual stream: each goes to the sink straight from
    the read, the buffer parser never runs (it ran once per read)."""
    events = [b'id: %d\ndata: {"seq": %d}\n\n' % (n, n) for n in range(50)]
    reads = [HEAD] + [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
    reads.append(b"%x\r\n%s\r\n%x\r\n" % (len(events[0]), events[0], len(events[1])))
    parsed: list[int] = []
    read_chunks = Exchange._read_chunks

    def counted(self: Exchange) -> None:
        parsed.append(len(self._buf))
        read_chunks(self)

    monkeypatch.setattr(Exchange, "_read_chunks", counted)
    got, outcome = _stream(StreamExchange, reads)
    assert (got, outcome) == ([*events, events[0]], "open")
    # the head's read (nothing after it), then the last read's cut chunk, from its size line
    assert parsed == [0, len(b"%x\r\n" % len(events[1]))]
