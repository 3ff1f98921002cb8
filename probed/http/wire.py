"""The ``http`` kind's own HTTP/1.1 client: one exchange per new connection, on asyncio's protocols.

A run of the ``http`` kind with ``fresh_connection`` (the default) opens a connection, sends
one request, reads the whole response and closes. aiohttp's session machinery around that
(connector, trace hooks, response object, payload stream) costs about two thirds of such a
GET's CPU (``bench/lean_get.py``); ``WireClient.fetch`` does the same exchange without it:

* resolve with the resolver the sessions use (aiohttp's ``ThreadedResolver`` if none; an IP
  literal is not resolved), connect to each address in turn until one answers, over TLS with
  the request's context (``ssl_for``: the handshake is timed by its ``sslobject_class``);
* write the whole request at once (``Connection: close``, ``Accept-Encoding: gzip,
  deflate``, a body's ``Content-Type`` and ``Content-Length`` as aiohttp sets them), parse
  the status line and headers here, and read the body by ``Content-Length``, chunks or
  until close, decoding gzip and deflate as aiohttp does, at most ``cap`` decoded bytes;
* report the phases to the run's ``PhaseTimer`` (``connected``, ``request_sent``,
  ``headers_received``: the same phases the trace hooks give) and the TLS facts and HTTP
  version to the run's ``peerinfo.PeerFacts``;
* follow redirects under the probe's ``RedirectPolicy`` (``redirects.next_hop``, the
  policy aiohttp's path uses).

Failures raise what the aiohttp path raises for the same fault, so that
``classify_exception`` gives the same reason and detail: ``WireConnectError`` (resolve,
connect, TLS: worded as aiohttp's connector errors), aiohttp's ``ServerDisconnectedError``,
``ClientOSError``, ``ClientPayloadError`` and ``ClientResponseError`` (a malformed head,
worded by aiohttp's own parser), ``TooManyRedirects``, ``RedirectRefused``, and
``BodyTooLarge`` for a body over the cap. The runner's ``asyncio.timeout`` owns the deadline:
a cancelled exchange aborts its connection.

``supports(spec)`` says which probes use it (decided once per config): ``kind = "http"``
with ``fresh_connection``, whose configured ``Accept-Encoding`` (if any) asks only for what
this client decodes. Everything else (pooled connections, logins, cookies, the other kinds)
stays on aiohttp.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json as jsonlib
import socket
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import aiohttp.abc
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import (
    ContentLengthError,
    HttpProcessingError,
    TransferEncodingError,
)
from aiohttp.http_parser import HttpResponseParser
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from probed.config import ProbeSpec
from probed.http import peerinfo
from probed.http.redirects import RedirectPolicy, followed, next_hop
from probed.http.session import PhaseTimer, claim_tls, peer_tls

__all__ = ["BodyTooLarge", "Reply", "WireClient", "WireConnectError", "supports"]

_now = time.perf_counter
_ACCEPT_ENCODING = "gzip, deflate"
_DECODED = frozenset({"gzip", "deflate", "identity", "*"})
_NO_BODY = frozenset({204, 304})
_GET_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_SIZE_LINE, _TRAILERS, _AFTER_DATA = -1, -2, -3
"""What comes next in a chunked body, other than a chunk's data."""
_MAX_HEAD = 8190 * 2 + 128 * 8190
"""Beyond this a head is too long for aiohttp's parser too (its line and field limits)."""


def supports(spec: ProbeSpec, base_url: str, headers: Mapping[str, str]) -> bool:
    """Whether ``spec``'s runs on the target at ``base_url``, sending ``headers`` (the
    target's and the probe's), can use this client: an ``http`` probe on fresh connections,
    to a URL without user info (aiohttp sends it as Basic auth), that asks for no content
    coding other than gzip and deflate. Others stay on aiohttp."""
    if spec.kind != "http" or not spec.fresh_connection or URL(base_url).raw_user is not None:
        return False
    for name, value in headers.items():
        if name.lower() == "accept-encoding":
            codings = {part.split(";")[0].strip().lower() for part in value.split(",")}
            if not codings <= _DECODED | {""}:
                return False
    return True


class WireConnectError(Exception):
    """Resolving, connecting or the TLS handshake failed; ``stage`` says which (``dns``,
    ``connect``, ``tls``, ``certificate``), ``origin`` names the target
    (``scheme://host:port``) and ``os_error`` is what the system or ``ssl`` raised."""

    def __init__(self, stage: str, origin: str, os_error: OSError) -> None:
        super().__init__(stage, origin, os_error)
        self.stage = stage
        self.origin = origin
        self.os_error = os_error


class BodyTooLarge(Exception):
    """The response (``status``) has a body over the cap; its connection is closed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    """One response, fully read (body decoded, at most the cap)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    charset: str | None


@functools.lru_cache(maxsize=256)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _charset(headers: CIMultiDict[str]) -> str | None:
    """The ``charset`` parameter of ``Content-Type`` (as aiohttp's ``ClientResponse.charset``)."""
    for param in headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def _head_error(raw: bytes) -> HttpProcessingError:
    """What aiohttp's parser says about a head this client could not parse."""
    loop = asyncio.get_running_loop()
    parser = HttpResponseParser(BaseProtocol(loop), loop, 2**16)
    try:
        parser.feed_data(raw)
        parser.feed_eof()
    except HttpProcessingError as exc:
        return exc
    return HttpProcessingError(code=400, message="Invalid response head")


# --- one exchange on one connection ----------------------------------------------------


class _Exchange(asyncio.Protocol):
    """Write the request, read one response; ``done`` resolves when it is whole."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, head_only: bool, cap: int):
        self.done: asyncio.Future[None] = loop.create_future()
        self.sent_at = 0.0
        self.headers_at = 0.0
        self.status = 0
        self.minor = 1
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.body = bytearray()
        self.transport: asyncio.Transport | None = None
        self.error: HttpProcessingError | None = None
        """A malformed head: the caller raises it as aiohttp's ``ClientResponseError``."""
        self._request = request
        self._head_only = head_only
        self._cap = cap
        self._buf = bytearray()
        self._in_head = True
        self._left = -1  # Content-Length bytes still to come; -1 chunked or until close
        self._chunked = False
        self._chunk_left = _SIZE_LINE  # > 0: bytes of the chunk's data still to come
        self._decoder: Any = None
        self._coding = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self._request)
        self.sent_at = _now()

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            if self._in_head:
                self._buf += data
                self._read_head()
            elif self._chunked:
                self._buf += data
                self._read_chunks()
            else:
                self._take(data)
        except (HttpProcessingError, aiohttp.ClientPayloadError, BodyTooLarge) as exc:
            self._fail(exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            args = exc.args if isinstance(exc, OSError) else (str(exc),)
            self.done.set_exception(aiohttp.ClientOSError(*args))
        elif self._in_head:
            self.done.set_exception(aiohttp.ServerDisconnectedError())
        elif self._left > 0 or self._chunked:
            error = (ContentLengthError if self._left > 0 else TransferEncodingError)(
                f"Not enough data to satisfy {'content' if self._left > 0 else 'transfer'} "
                "length header."
            )
            message = f"Response payload is not completed: {error!r}"
            self.done.set_exception(aiohttp.ClientPayloadError(message))
        else:
            try:
                self._finish()
            except (aiohttp.ClientPayloadError, BodyTooLarge) as failure:
                self._fail(failure)

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
        if 100 <= self.status < 200:  # an interim response: the real one follows
            self.headers = CIMultiDict()
            if buf:
                self._read_head()
            return
        self._in_head = False
        self.headers_at = _now()
        self._start_body()

    def _parse_head(self, raw: bytes) -> None:
        lines = raw.decode("utf-8", "surrogateescape").split("\n")
        status_line = lines[0].rstrip("\r")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if (
            len(version) != 8
            or not version.startswith("HTTP/1.")
            or not version[7].isdigit()
            or not (code.isascii() and code.isdigit())
            or rest[3:4] not in ("", " ")
        ):
            raise _head_error(raw + b"\r\n\r\n")
        self.minor = int(version[7])
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
                raise _head_error(raw + b"\r\n\r\n")
            headers.add(name, value.strip(" \t"))

    # the body

    def _start_body(self) -> None:
        headers = self.headers
        coding = headers.get("Content-Encoding", "").strip().lower()
        if coding in ("gzip", "deflate"):
            self._coding = coding
        if self._head_only or self.status in _NO_BODY:
            self._left = 0
            self._finish()
            return
        te = headers.get("Transfer-Encoding")
        lengths = headers.getall("Content-Length", [])
        if te is not None:
            if lengths:
                raise _head_error(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            self._chunked = te.split(",")[-1].strip().lower() == "chunked"
        elif lengths:
            values = {value.strip() for value in lengths}
            length = values.pop()
            if values or not (length.isascii() and length.isdigit()):
                raise _head_error(b"HTTP/1.1 200 OK\r\nContent-Length: " + length.encode() +
                                  b"\r\nContent-Length: x\r\n\r\n")  # fmt: skip
            self._left = int(length)
            if self._left > self._cap and not self._coding:
                raise BodyTooLarge(self.status)
        rest, self._buf = bytes(self._buf), bytearray()
        if self._chunked:
            self._buf += rest
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
                if not size or size.lstrip(b"0123456789abcdefABCDEF"):
                    raise TransferEncodingError("Invalid chunk size")
                self._chunk_left = int(size, 16) or _TRAILERS

    def _add(self, data: bytes) -> None:
        if self._coding:
            if self._decoder is None:
                if not data:
                    return
                wbits = 16 + zlib.MAX_WBITS
                if self._coding == "deflate":  # raw deflate without the zlib header, as aiohttp
                    wbits = zlib.MAX_WBITS if data[0] & 0xF == 8 else -zlib.MAX_WBITS
                self._decoder = zlib.decompressobj(wbits=wbits)
            try:
                data = self._decoder.decompress(data, self._cap - len(self.body) + 1)
            except zlib.error:
                raise self._coding_error() from None
        if len(self.body) + len(data) > self._cap:
            raise BodyTooLarge(self.status)
        self.body += data

    def _coding_error(self) -> aiohttp.ClientPayloadError:
        return aiohttp.ClientPayloadError(
            f"400, message='Can not decode content-encoding: {self._coding}'"
        )

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


# --- the client ----------------------------------------------------------------------


def _origin(url: URL) -> str:
    return f"{url.scheme}://{url.host_subcomponent}:{url.port}"


def _request_bytes(
    method: str, url: URL, headers: CIMultiDict[str], body: bytes | None, content_type: str
) -> bytes:
    """The request as aiohttp writes it: Host first, then the given headers, then its
    defaults (``Accept``, ``Accept-Encoding``) and the body's headers where not given."""
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
    if "Host" not in headers:
        lines.append(f"Host: {url.host_port_subcomponent}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if "Accept" not in headers:
        lines.append("Accept: */*")
    if "Accept-Encoding" not in headers:
        lines.append(f"Accept-Encoding: {_ACCEPT_ENCODING}")
    if body is not None:
        if "Content-Type" not in headers:
            lines.append(f"Content-Type: {content_type}")
        if "Content-Length" not in headers:
            lines.append(f"Content-Length: {len(body)}")
    elif method not in _GET_METHODS and "Content-Length" not in headers:
        lines.append("Content-Length: 0")
    if "Connection" not in headers:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return head + body if body else head


class WireClient:
    """Fetches for the ``http`` kind (``fetch``); ``resolver`` is the one the sessions use
    (None: aiohttp's default, made on first use)."""

    def __init__(self, resolver: aiohttp.abc.AbstractResolver | None = None) -> None:
        self._resolver = resolver

    async def fetch(
        self,
        method: str,
        url: str,
        policy: RedirectPolicy,
        *,
        headers: Mapping[str, str],
        data: bytes | None,
        json: Any,
        ssl_context: ssl.SSLContext,
        timer: PhaseTimer,
        cap: int,
    ) -> tuple[Reply, list[str]]:
        """``method url`` and its redirects under ``policy``: the final response and the
        ``Set-Cookie`` headers of every hop. Raises as the module docstring says."""
        start = here = URL(url)
        sent = CIMultiDict(headers)
        cookies: list[str] = []
        hops = 0
        body: Any = data
        while True:
            if json is not None:
                payload, content_type = jsonlib.dumps(json).encode(), "application/json"
            else:
                payload, content_type = body, "application/octet-stream"
            reply = await self._exchange(
                method, here, sent, payload, content_type, ssl_context, timer, cap
            )
            cookies.extend(reply.headers.getall("Set-Cookie", ()))
            location = reply.headers.get("Location")
            if not followed(policy, reply.status, location):
                return reply, cookies
            assert location is not None
            hops += 1
            if hops > policy.max_redirects:
                info = aiohttp.RequestInfo(start, method, CIMultiDictProxy(sent), start)
                raise aiohttp.TooManyRedirects(info, ())
            here, method, body, json = next_hop(
                policy, reply.status, method, start, here, location, sent, body, json
            )

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | None,
        content_type: str,
        ssl_context: ssl.SSLContext,
        timer: PhaseTimer,
        cap: int,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        request = _request_bytes(method, url, headers, body, content_type)
        started = _now()
        addresses = await self._resolve(url)
        resolved = _now()
        exchange = await self._connect(loop, url, addresses, request, method, cap, ssl_context)
        transport = exchange.transport
        assert transport is not None
        try:
            tls = claim_tls(transport) if url.scheme == "https" else None
            timer.connected(resolved - started, exchange.sent_at - resolved - (tls or 0.0), tls)
            if (peer := peerinfo.current()) is not None:
                peer.connected(peer_tls(transport))
            timer.request_sent(exchange.sent_at)
            await exchange.done
        except BaseException:
            transport.abort()
            if exchange.headers_at:  # a body over the cap: the phases up to it count
                timer.headers_received(exchange.headers_at)
            raise
        transport.close()
        if exchange.error is not None:
            error = exchange.error
            info = aiohttp.RequestInfo(url, method, CIMultiDictProxy(headers), url)
            raise aiohttp.ClientResponseError(
                info, (), status=error.code, message=error.message, headers=error.headers
            )
        timer.headers_received(exchange.headers_at)
        if (peer := peerinfo.current()) is not None:
            peer.responded(1, exchange.minor)
        got = exchange.headers
        return Reply(exchange.status, CIMultiDictProxy(got), bytes(exchange.body), _charset(got))

    async def _resolve(self, url: URL) -> list[tuple[str, int, int]]:
        """``(address, port, family)`` to try, in order."""
        host, port = url.raw_host or "", url.port or 0
        if _is_ip(host):
            return [(host, port, socket.AF_INET6 if ":" in host else socket.AF_INET)]
        if self._resolver is None:
            self._resolver = aiohttp.ThreadedResolver()
        try:
            hosts = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except OSError as exc:
            raise WireConnectError("dns", _origin(url), _bare(exc)) from None
        return [(h["host"], h["port"], h["family"]) for h in hosts]

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        url: URL,
        addresses: list[tuple[str, int, int]],
        request: bytes,
        method: str,
        cap: int,
        ssl_context: ssl.SSLContext,
    ) -> _Exchange:
        tls = url.scheme == "https"
        errors: list[OSError] = []
        for address, port, family in addresses:
            exchange = _Exchange(loop, request, method == "HEAD", cap)
            try:
                await loop.create_connection(
                    lambda: exchange,  # noqa: B023 (called before the next iteration)
                    address,
                    port,
                    family=family,
                    ssl=ssl_context if tls else None,
                    server_hostname=(url.raw_host or "").rstrip(".") if tls else None,
                )
            except ssl.CertificateError as exc:
                raise WireConnectError("certificate", _origin(url), _bare(exc)) from None
            except ssl.SSLError as exc:
                raise WireConnectError("tls", _origin(url), _bare(exc)) from None
            except OSError as exc:
                errors.append(_bare(exc))  # this frame holds the list: no traceback in it
                continue
            return exchange
        raise WireConnectError("connect", _origin(url), _one_error(errors)) from None


def _bare(exc: OSError) -> OSError:
    """``exc`` without its traceback (which holds the frames that hold it)."""
    return exc.with_traceback(None)


def _one_error(errors: list[OSError]) -> OSError:
    """The error of a connection to every address failing, as asyncio words it."""
    if not errors:
        return OSError("the name resolved to no address")
    if len(errors) == 1 or len({str(exc) for exc in errors}) == 1:
        return errors[0]
    return OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")
