"""Reading one response on one connection for ``probed.http.wire``: the protocol.

``Exchange`` writes the request as soon as the connection is up and parses the response
as it comes: the status line and headers here (any interim 1xx skipped), then the body by
``Content-Length``, chunks or until close, gzip and deflate decoded as aiohttp decodes
them, at most ``cap`` decoded bytes (``BodyTooLarge`` beyond, the connection aborted).
What it cannot parse is handed to aiohttp's own parser, only then, so that the failure is
worded as on the aiohttp path (``ClientResponseError``'s message, a payload error's text,
``ServerDisconnectedError``'s partial message). A content coding other than gzip and
deflate (this client asks for no other) fails as aiohttp fails on it (``br`` or ``zstd``
without their decoders) or, where aiohttp would take it, comes as it is, undecoded.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any, cast

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import (
    ContentEncodingError,
    ContentLengthError,
    HttpProcessingError,
    TransferEncodingError,
)
from aiohttp.http_parser import HttpResponseParser
from multidict import CIMultiDict

__all__ = ["BodyTooLarge", "Exchange", "charset"]

_now = time.perf_counter
_NO_BODY = frozenset({204, 304})
_SIZE_LINE, _TRAILERS, _AFTER_DATA = -1, -2, -3
"""What comes next in a chunked body, other than a chunk's data."""
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_MAX_SIZE_DIGITS = 16
"""Hex digits of a chunk size read straight from a read (more: left to ``_read_chunks``)."""
_MAX_HEAD = 8190 * 2 + 128 * 8190
"""Beyond this a head is too long for aiohttp's parser too (its line and field limits)."""


class BodyTooLarge(Exception):
    """The response (``status``) has a body over the cap; its connection is closed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def charset(headers: CIMultiDict[str]) -> str | None:
    """The ``charset`` parameter of ``Content-Type`` (as aiohttp's ``ClientResponse.charset``)."""
    for param in headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def _aiohttp_parser() -> HttpResponseParser:
    loop = asyncio.get_running_loop()
    return HttpResponseParser(BaseProtocol(loop), loop, 2**16)


def _head_error(raw: bytes, fallback: str = "Invalid response head") -> HttpProcessingError:
    """What aiohttp's parser says about a response this client could not parse (``raw``:
    what came of it); only failures take this way."""
    try:
        _aiohttp_parser().feed_data(raw)
    except HttpProcessingError as exc:
        return exc.with_traceback(None)
    return HttpProcessingError(code=400, message=fallback)


def _disconnected(raw: bytes) -> aiohttp.ServerDisconnectedError:
    """A clean close after ``raw``, part of a head, worded as aiohttp words it."""
    if not raw:
        return aiohttp.ServerDisconnectedError()
    parser = _aiohttp_parser()
    try:
        parser.feed_data(raw)
        uncompleted = parser.feed_eof()
    except HttpProcessingError:
        uncompleted = None
    return aiohttp.ServerDisconnectedError(uncompleted)


class Exchange(asyncio.Protocol):
    """Write the request, read one response; ``done`` resolves when it is whole."""

    __slots__ = (
        "_buf", "_cap", "_chunk_left", "_chunked", "_coding", "_decoder", "_head_only",
        "_in_head", "_left", "_length", "_raw_body", "_raw_head", "_request", "body",
        "connected_at", "done", "error", "headers", "headers_at", "major", "minor", "sent_at",
        "status", "transport",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, head_only: bool, cap: int):
        self.done: asyncio.Future[None] = loop.create_future()
        self.connected_at = 0.0
        """When the connection was up (TLS included); the request is written then."""
        self.sent_at = 0.0
        self.headers_at = 0.0
        self.status = 0
        self.major, self.minor = 1, 1
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.body = bytearray()
        self.transport: asyncio.Transport | None = None
        self.error: HttpProcessingError | None = None
        """A malformed head: the caller raises it as aiohttp's ``ClientResponseError``."""
        self._request = request
        self._head_only = head_only
        self._cap = cap
        self._buf = bytearray()
        self._raw_head = b""
        self._raw_body = bytearray()
        """A chunked body as it came, for aiohttp's parser to word a framing error."""
        self._in_head = True
        self._length = -1
        self._left = -1  # Content-Length bytes still to come; -1 chunked or until close
        self._chunked = False
        self._chunk_left = _SIZE_LINE  # > 0: bytes of the chunk's data still to come
        self._decoder: Any = None
        self._coding = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connected_at = _now()
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self._request)
        self.sent_at = _now()

    _KEEPS_RAW_BODY = True
    """Whether a chunked body is also kept as it came (for ``_framing_error``'s words)."""

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            if self._in_head:
                self._buf += data
                self._read_head()
            elif self._chunked:
                if self._KEEPS_RAW_BODY:
                    self._raw_body += data
                if not self._buf and self._chunk_left == _SIZE_LINE:
                    data = self._whole_chunks(data)
                if data:
                    self._buf += data
                    self._read_chunks()
            else:
                self._take(data)
        except TransferEncodingError as exc:
            self._fail(self._framing_error(exc))
        except (HttpProcessingError, aiohttp.ClientPayloadError, BodyTooLarge) as exc:
            self._fail(exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if self._in_head:
            if exc is None:
                self.done.set_exception(_disconnected(bytes(self._buf)))
            else:
                args = exc.args if isinstance(exc, OSError) else (str(exc),)
                self.done.set_exception(aiohttp.ClientOSError(*args))
        elif self._left > 0 or self._chunked:
            error: HttpProcessingError
            if self._chunked:
                error = TransferEncodingError("Not enough data to satisfy transfer length header.")
            else:
                received = self._length - self._left
                error = ContentLengthError(
                    "Not enough data to satisfy content length header "
                    f"(received {received} of {self._length} bytes)."
                )
            message = f"Response payload is not completed: {error!r}"
            if exc is not None:
                message = f"{message}. {exc!r}"
            self.done.set_exception(aiohttp.ClientPayloadError(message))
        else:
            try:
                self._finish()
            except (aiohttp.ClientPayloadError, BodyTooLarge) as failure:
                self._fail(failure)

    def _framing_error(self, exc: TransferEncodingError) -> BaseException:
        """A malformed chunked body, worded by aiohttp's parser over what came of it."""
        return _head_error(self._raw_head + self._raw_body, exc.message)

    def _fail(self, exc: BaseException) -> None:
        exc = exc.with_traceback(None)  # its frames hold this protocol, which holds it
        exc.__context__ = None
        if isinstance(exc, HttpProcessingError):
            self.error = exc
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # the head

    def _read_head(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        size = 4
        if end < 0 or (0 <= buf.find(b"\n\n") < end):
            end, size = buf.find(b"\n\n"), 2
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise _head_error(bytes(buf))
            return
        raw = bytes(buf[:end])
        del buf[: end + size]
        self._parse_head(raw)
        if 100 <= self.status < 200 and self.status != 101:  # interim: the answer follows
            self.headers = CIMultiDict()
            if buf:
                self._read_head()
            return
        self._in_head = False
        self.headers_at = _now()
        self._start_body()

    def _parse_head(self, raw: bytes) -> None:
        self._raw_head = raw + b"\r\n\r\n"
        lines = raw.decode("utf-8", "surrogateescape").split("\n")
        status_line = lines[0].rstrip("\r")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if (
            len(version) != 8
            or not version.startswith("HTTP/")
            or version[6] != "."
            or not (version[5] + version[7]).isascii()
            or not (version[5] + version[7]).isdigit()
            or not (code.isascii() and code.isdigit())
            or rest[3:4] not in ("", " ")
        ):
            raise _head_error(self._raw_head)
        self.major, self.minor = int(version[5]), int(version[7])
        self.status = int(code)
        headers = self.headers
        name = ""
        for line in lines[1:]:
            line = line.rstrip("\r")
            if line[:1] in (" ", "\t") and name:  # obsolete line folding
                value = headers.popall(name)[-1]
                headers.add(name, f"{value} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or " " in name:
                raise _head_error(self._raw_head)
            headers.add(name, value.strip(" \t"))

    # the body

    def _start_body(self) -> None:
        headers = self.headers
        coding = headers.get("Content-Encoding", "").strip().lower()
        if coding in ("gzip", "deflate"):
            self._coding = coding
        elif coding not in ("", "identity") and (error := _head_error(self._raw_head, "")).message:
            raise error  # br or zstd, not asked for, that aiohttp cannot decode here either
        if self._head_only or self.status in _NO_BODY or self.status < 200:
            self._left = 0
            self._finish()
            return
        te = headers.get("Transfer-Encoding")
        lengths = headers.getall("Content-Length", [])
        if te is not None:
            if lengths:
                raise _head_error(self._raw_head)
            self._chunked = te.split(",")[-1].strip().lower() == "chunked"
        elif lengths:
            values = {value.strip() for value in lengths}
            length = values.pop()
            if values or not (length.isascii() and length.isdigit()):
                raise _head_error(self._raw_head)
            self._left = self._length = int(length)
            if self._left > self._cap and not self._coding:
                raise BodyTooLarge(self.status)
        rest, self._buf = bytes(self._buf), bytearray()
        if self._chunked:
            self._buf += rest
            self._raw_body += rest
            self._read_chunks()
        elif self._left == 0:
            self._finish()
        elif rest:
            self._take(rest)

    def _take(self, data: bytes) -> None:
        """Body bytes as they came (not chunked)."""
        if self._left >= 0:
            data = data[: self._left]
            self._left -= len(data)
        self._add(data)
        if self._left == 0:
            self._finish()

    def _whole_chunks(self, data: bytes) -> bytes:
        """Hand on the whole chunks ``data`` starts with (a size line of hex digits, CRLF,
        the data, CRLF) straight from it, without the buffer: a stream's event is usually
        one such chunk in one read. What is left, from the first chunk that is not whole or
        not that plain, is ``_read_chunks``' to parse, as all of it was before."""
        pos, end = 0, len(data)
        while pos < end:
            line_end = data.find(b"\r\n", pos, pos + _MAX_SIZE_DIGITS + 2)
            if line_end <= pos:  # none within reach, or an empty size line
                break
            size_text = data[pos:line_end]
            if size_text.lstrip(_HEX_DIGITS):
                break
            start = line_end + 2
            stop = start + int(size_text, 16)
            if stop == start or data[stop : stop + 2] != b"\r\n":  # the last, or cut short
                break
            self._add(data[start:stop])
            pos = stop + 2
        return data[pos:] if pos else data

    def _read_chunks(self) -> None:
        buf = self._buf
        while True:
            if self._chunk_left > 0:  # inside a chunk's data
                taken = min(len(buf), self._chunk_left)
                if taken:
                    self._add(bytes(buf[:taken]))
                    del buf[:taken]
                    self._chunk_left -= taken
                if self._chunk_left:
                    return
                self._chunk_left = _AFTER_DATA
            newline = buf.find(b"\n")
            if newline < 0:
                if len(buf) > 8190:
                    raise TransferEncodingError("Chunk size line too long")
                return
            line = bytes(buf[:newline]).rstrip(b"\r")
            del buf[: newline + 1]
            if self._chunk_left == _AFTER_DATA:
                if line:
                    raise TransferEncodingError("Chunk data not followed by CRLF")
                self._chunk_left = _SIZE_LINE
            elif self._chunk_left == _TRAILERS:
                if not line:
                    self._chunked = False
                    self._finish()
                    return
            else:
                size = line.split(b";", 1)[0].strip()
                if not size or size.lstrip(_HEX_DIGITS):
                    raise TransferEncodingError("Invalid chunk size")
                self._chunk_left = int(size, 16) or _TRAILERS

    def _decoder_for(self, data: bytes) -> Any:
        """The body's decoder, made from its first bytes ``data`` (not empty) if not yet."""
        if self._decoder is None:
            wbits = 16 + zlib.MAX_WBITS
            if self._coding == "deflate":  # raw deflate without the zlib header, as aiohttp
                wbits = zlib.MAX_WBITS if data[0] & 0xF == 8 else -zlib.MAX_WBITS
            self._decoder = zlib.decompressobj(wbits=wbits)
        return self._decoder

    def _add(self, data: bytes) -> None:
        if self._coding:
            if self._decoder is None and not data:
                return
            self._decoder_for(data)
            try:
                data = self._decoder.decompress(data, self._cap - len(self.body) + 1)
            except zlib.error:
                raise self._coding_error() from None
        if len(self.body) + len(data) > self._cap:
            raise BodyTooLarge(self.status)
        self.body += data

    def _coding_error(self) -> aiohttp.ClientPayloadError:
        error = ContentEncodingError(f"Can not decode content-encoding: {self._coding}")
        return aiohttp.ClientPayloadError(str(error))

    def _finish(self) -> None:
        if self._decoder is not None:
            try:
                tail = self._decoder.flush()
            except zlib.error:
                raise self._coding_error() from None
            if len(self.body) + len(tail) > self._cap:
                raise BodyTooLarge(self.status)
            self.body += tail
            if self._coding == "deflate" and not self._decoder.eof:
                raise self._coding_error()
        if not self.done.done():
            self.done.set_result(None)
