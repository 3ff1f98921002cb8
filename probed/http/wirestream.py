"""A response without end on probed's own HTTP/1.1 protocol: the stream watchers' reads.

``StreamExchange`` is ``wireparse.Exchange`` for an event stream. It writes the request and
parses the head as ``Exchange`` does (``head`` resolves then), and from then on hands each
piece of the body (chunks unframed, gzip and deflate decoded in pieces of at most
``PIECE`` bytes) to the reader's ``sink`` as it arrives, inside the protocol's own
callback: no reader object, no task woken per read, nothing kept of what was handed on.

``done`` resolves when the body ends (a clean end of a chunked or sized body, or a close
of one read until close) and fails as ``Exchange`` fails (aiohttp's exceptions, worded
alike), or with whatever the sink raised: the connection is then aborted. The reader
can ``pause`` and ``resume`` reading (the socket's flow control) while it catches up.
"""

from __future__ import annotations

import asyncio
import sys
import zlib
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp.http_exceptions import TransferEncodingError

from probed.http.wireparse import Exchange

__all__ = ["PIECE", "StreamExchange", "media_type"]

PIECE = 1 << 16
"""Most decoded bytes handed to the sink at once: a small compressed chunk that decodes to
a lot (a compression bomb) reaches the sink's own limits piece by piece."""


def media_type(headers: Mapping[str, str]) -> str:
    """The media type of ``Content-Type``, as aiohttp's ``ClientResponse.content_type``."""
    raw = headers.get("Content-Type")
    if raw is None:
        return "application/octet-stream"
    return raw.split(";", 1)[0].strip().lower()


class StreamExchange(Exchange):
    """Write a request, read its head (``head``), then hand the body to a sink as it comes."""

    __slots__ = ("_early", "_paused", "_sink", "head", "on_done")

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes) -> None:
        super().__init__(loop, request, False, sys.maxsize)
        self.head: asyncio.Future[None] = loop.create_future()
        """Resolves once the head is read (the status, version and headers are set), or
        fails as ``done`` did before it."""
        self.on_done: Callable[[], None] | None = None
        """Called (soon) when ``done`` resolves or fails."""
        self._sink: Callable[[bytes], None] | None = None
        self._early: list[bytes] = []
        """Body that came before ``start``."""
        self._paused = False
        self.done.add_done_callback(self._settled)

    def start(self, sink: Callable[[bytes], None]) -> None:
        """Hand the body to ``sink`` from now on, the body that came before first. What it
        raises here is raised to the caller, and the connection is aborted."""
        self._sink = sink
        early, self._early = self._early, []
        try:
            for data in early:
                sink(data)
        except BaseException:
            self.close()
            raise

    def pause(self) -> None:
        """Stop reading from the socket until ``resume`` (what was read still comes)."""
        transport = self.transport
        if not self._paused and transport is not None and not transport.is_closing():
            self._paused = True
            transport.pause_reading()

    def resume(self) -> None:
        """Read from the socket again."""
        transport = self.transport
        if self._paused and transport is not None and not transport.is_closing():
            self._paused = False
            transport.resume_reading()

    def close(self) -> None:
        """Drop the connection (an endless response is never read to its end)."""
        if self.transport is not None:
            self.transport.abort()

    def _settled(self, done: asyncio.Future[None]) -> None:
        error = None if done.cancelled() else done.exception()  # retrieved: never logged
        if not self.head.done():
            if error is not None:
                self.head.set_exception(error)
            else:
                self.head.set_result(None)
        if self.on_done is not None:
            self.on_done()

    # the protocol: what the sink raises ends the connection

    _KEEPS_RAW_BODY = False  # this body has no end

    def _framing_error(self, exc: TransferEncodingError) -> BaseException:
        return aiohttp.ClientPayloadError(f"Response payload is not completed: {exc!r}")

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Exception as exc:  # the sink's
            self._end(exc)

    def eof_received(self) -> bool:
        """The server closed its side: the body ends here, as at ``connection_lost``, but the
        socket stays open (reading stopped) until the reader lets it go (``close``), so
        hundreds of streams cut at once close their sockets as their ends take turns rather
        than all in the turn the cuts came. Over TLS the transport closes it now (asyncio's
        TLS transport cannot keep a connection whose peer ended it)."""
        self._body_end(None)
        transport = self.transport
        return transport is not None and transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._body_end(exc)

    def _body_end(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        except Exception as failure:  # the sink's, at the body's end
            self._end(failure)

    def _end(self, exc: Exception) -> None:
        """What the sink raised ends the connection (its traceback kept: a bug's is logged;
        ``Exchange`` itself fails on what the connection sent)."""
        if not self.done.done():
            self.done.set_exception(exc)
        self.close()

    # the head and the body

    def _start_body(self) -> None:
        super()._start_body()
        if not self.head.done():
            self.head.set_result(None)

    def _add(self, data: bytes) -> None:
        if not self._coding:
            self._give(data)
            return
        if self._decoder is None and not data:
            return
        decoder = self._decoder_for(data)
        try:
            self._give(decoder.decompress(data, PIECE))
            while decoder.unconsumed_tail:
                self._give(decoder.decompress(decoder.unconsumed_tail, PIECE))
        except zlib.error:
            raise self._coding_error() from None

    def _give(self, data: bytes) -> None:
        if not data:
            return
        if self._sink is None:
            self._early.append(data)
        else:
            self._sink(data)

    def _finish(self) -> None:
        if self._decoder is not None:
            try:
                self._give(self._decoder.flush())
            except zlib.error:
                raise self._coding_error() from None
            if self._coding == "deflate" and not self._decoder.eof:
                raise self._coding_error()
        if not self.done.done():
            self.done.set_result(None)
