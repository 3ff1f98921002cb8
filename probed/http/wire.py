"""The ``http`` kind's own HTTP/1.1 client: one exchange per new connection, on asyncio's protocols.

A run of the ``http`` kind with ``fresh_connection`` (the default) opens a connection, sends
one request, reads the whole response and closes. aiohttp's session machinery around that
(connector, trace hooks, response object, payload stream) costs about two thirds of such a
GET's CPU (``bench/lean_get.py``); ``WireClient.fetch`` does the same exchange without it:

* resolve with the resolver the sessions use (aiohttp's ``ThreadedResolver`` if none; an IP
  literal is not resolved), connect to each address in turn until one answers, over TLS with
  the request's context (``ssl_for``: the handshake is timed by its ``sslobject_class``);
* write the whole request at once (``Connection: close``, ``Accept-Encoding: gzip,
  deflate``, a body's ``Content-Type`` and ``Content-Length`` as aiohttp sets them) and
  read the response (``probed.http.wireparse``: the head parsed in Python, the body by
  ``Content-Length``, chunks or until close, gzip and deflate decoded as aiohttp does, at
  most ``cap`` decoded bytes);
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

``open_stream`` opens a stream watcher's response the same way (resolve, connect, one
``GET`` without ``Connection: close``, redirects under the stream's policy, a URL's user
info sent as Basic auth as aiohttp sends it) and hands it back at its head, for
``probed.http.wirestream.StreamExchange`` to read the body as it comes.

``supports`` says which probes use it (``ProbeContext`` asks once per config): ``kind =
"http"`` with ``fresh_connection``, on a target URL without user info, whose configured
``Accept-Encoding`` (if any) asks only for what this client decodes. Everything else
(pooled connections, Basic auth from the URL, logins, cookies, the other kinds) stays on
aiohttp.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json as jsonlib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import aiohttp.abc
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from probed.config import ProbeSpec
from probed.errors import drop_tracebacks
from probed.http import peerinfo
from probed.http.redirects import RedirectPolicy, followed, next_hop, origin_of
from probed.http.session import PhaseTimer, claim_tls, peer_tls
from probed.http.wireparse import BodyTooLarge, Exchange, charset
from probed.http.wirestream import StreamExchange
from probed.records import record

__all__ = ["BodyTooLarge", "Reply", "WireClient", "WireConnectError", "supports"]

_now = time.perf_counter
_ACCEPT_ENCODING = "gzip, deflate"
_DECODED = frozenset({"gzip", "deflate", "identity", "*"})
_GET_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_POST_METHODS = frozenset({"POST", "PUT", "PATCH"})
_Protocol = TypeVar("_Protocol", bound=Exchange)


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
    (``scheme://host:port`` of ``url``) and ``os_error`` is what the system or ``ssl``
    raised, its tracebacks detached (they hold the frames that hold it)."""

    def __init__(self, stage: str, url: URL, os_error: OSError) -> None:
        drop_tracebacks(os_error)
        origin = origin_of(url)
        super().__init__(stage, origin, os_error)
        self.stage = stage
        self.origin = origin
        self.os_error = os_error


@record
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


def _request_bytes(
    method: str,
    url: URL,
    headers: CIMultiDict[str],
    body: bytes | None,
    content_type: str,
    *,
    close: bool = True,
) -> bytes:
    """The request as aiohttp writes it: Host first, then the given headers, then its
    defaults (``Accept``, ``Accept-Encoding``) and the body's headers where not given;
    ``Connection: close`` if ``close`` (and not given)."""
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
    if "Host" not in headers:
        lines.append(f"Host: {url.host_port_subcomponent}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if "Accept" not in headers:
        lines.append("Accept: */*")
    if "Accept-Encoding" not in headers:
        lines.append(f"Accept-Encoding: {_ACCEPT_ENCODING}")
    if body is None and method in _POST_METHODS:
        body = b""  # aiohttp sends an empty body, with its headers, for POST, PUT, PATCH
    if body is not None:
        if "Content-Type" not in headers:
            lines.append(f"Content-Type: {content_type}")
        if "Content-Length" not in headers:
            lines.append(f"Content-Length: {len(body)}")
    elif method not in _GET_METHODS and "Content-Length" not in headers:
        lines.append("Content-Length: 0")  # DELETE
    if close and "Connection" not in headers:
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
            hops = _hop(hops, policy, method, start, sent)
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
        exchange = await self._connected(
            url, ssl_context, timer, lambda: Exchange(loop, request, method == "HEAD", cap)
        )
        transport = exchange.transport
        assert transport is not None
        try:
            if (peer := peerinfo.current()) is not None:
                peer.connected(peer_tls(transport))
            await exchange.done
        except BaseException:
            transport.abort()
            if exchange.headers_at:  # a body over the cap: the phases up to it count
                timer.headers_received(exchange.headers_at)
            raise
        transport.close()
        if exchange.error is not None:
            raise _response_error(exchange.error, method, url, headers)
        timer.headers_received(exchange.headers_at)
        if (peer := peerinfo.current()) is not None:
            peer.responded(exchange.major, exchange.minor)
        got = exchange.headers
        return Reply(exchange.status, CIMultiDictProxy(got), bytes(exchange.body), charset(got))

    async def open_stream(
        self,
        url: str,
        policy: RedirectPolicy,
        *,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext,
        timer: PhaseTimer,
    ) -> StreamExchange:
        """``GET url`` (its redirects followed under ``policy``) up to the final response's
        head; its body is read by ``StreamExchange.start``. Raises as ``fetch`` does; the
        caller's deadline aborts a connection not yet handed back. A URL's user info is
        sent as Basic auth, as aiohttp sends it, unless ``headers`` authorize already."""
        start = here = URL(url)
        sent = CIMultiDict(headers)
        auth = aiohttp.BasicAuth.from_url(start)
        if auth is not None and "Authorization" not in sent:
            sent["Authorization"] = auth.encode()
        method, hops = "GET", 0
        while True:
            reply = await self._open(here, sent, ssl_context, timer)
            location = reply.headers.get("Location")
            if not followed(policy, reply.status, location):
                return reply
            assert location is not None
            reply.close()
            hops = _hop(hops, policy, method, start, sent)
            here, method, _, _ = next_hop(
                policy, reply.status, method, start, here, location, sent, None, None
            )

    async def _open(
        self, url: URL, headers: CIMultiDict[str], ssl_context: ssl.SSLContext, timer: PhaseTimer
    ) -> StreamExchange:
        loop = asyncio.get_running_loop()
        request = _request_bytes("GET", url, headers, None, "", close=False)
        reply = await self._connected(
            url, ssl_context, timer, lambda: StreamExchange(loop, request)
        )
        try:
            await reply.head
        except BaseException:
            reply.close()
            raise
        if reply.error is not None:
            reply.close()
            raise _response_error(reply.error, "GET", url, headers)
        timer.headers_received(reply.headers_at)
        return reply

    async def _connected(
        self,
        url: URL,
        ssl_context: ssl.SSLContext,
        timer: PhaseTimer,
        protocol: Callable[[], _Protocol],
    ) -> _Protocol:
        """Resolve and connect (``_connect``) and report both, and the request written as
        the connection came up, to ``timer``."""
        started = _now()
        addresses = await self._resolve(url)
        resolved = _now()
        exchange = await self._connect(url, addresses, ssl_context, protocol)
        try:
            tls = claim_tls(exchange.transport) if url.scheme == "https" else None
            connect = exchange.connected_at - resolved - (tls or 0.0)
            timer.connected(resolved - started, connect, tls)
            timer.request_sent(exchange.sent_at)
        except BaseException:
            if exchange.transport is not None:
                exchange.transport.abort()
            raise
        return exchange

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
            raise WireConnectError("dns", url, exc) from None
        return [(h["host"], h["port"], h["family"]) for h in hosts]

    async def _connect(
        self,
        url: URL,
        addresses: list[tuple[str, int, int]],
        ssl_context: ssl.SSLContext,
        protocol: Callable[[], _Protocol],
    ) -> _Protocol:
        """A connection to the first of ``addresses`` that answers, with a new
        ``protocol()`` on it (it writes the request when the connection is up)."""
        loop = asyncio.get_running_loop()
        tls = url.scheme == "https"
        errors: list[OSError] = []
        for address, port, family in addresses:
            exchange = protocol()
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
                raise WireConnectError("certificate", url, exc) from None
            except ssl.SSLError as exc:
                raise WireConnectError("tls", url, exc) from None
            except OSError as exc:
                drop_tracebacks(exc)  # this frame holds the list: no traceback in it
                errors.append(exc)
                continue
            return exchange
        raise WireConnectError("connect", url, _one_error(errors)) from None


def _hop(hops: int, policy: RedirectPolicy, method: str, start: URL, sent: CIMultiDict[str]) -> int:
    """One more redirect followed from ``start``: the count, or ``TooManyRedirects``."""
    if hops + 1 > policy.max_redirects:
        info = aiohttp.RequestInfo(start, method, CIMultiDictProxy(sent), start)
        raise aiohttp.TooManyRedirects(info, ())
    return hops + 1


def _response_error(
    error: HttpProcessingError, method: str, url: URL, headers: CIMultiDict[str]
) -> aiohttp.ClientResponseError:
    """A malformed head (``Exchange.error``) as aiohttp's path raises it."""
    info = aiohttp.RequestInfo(url, method, CIMultiDictProxy(headers), url)
    return aiohttp.ClientResponseError(
        info, (), status=error.code, message=error.message, headers=error.headers
    )


def _one_error(errors: list[OSError]) -> OSError:
    """The error of a connection to every address failing, as asyncio words it."""
    if not errors:
        return OSError("the name resolved to no address")
    if len(errors) == 1 or len({str(exc) for exc in errors}) == 1:
        return errors[0]
    return OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")
