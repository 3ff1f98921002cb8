"""Following redirects hop by hop under a probe's ``follow_redirects`` policy.

aiohttp's own redirect following drops ``Authorization`` and ``Cookie`` when the
origin changes, but sends every other header (a secret ``X-Api-Key``) on, re-sends a
307/308 body (a login's password) anywhere, and follows https to http. Every probe
request therefore goes through ``request_following`` (``allow_redirects=False`` and a
loop here), which applies ``RedirectPolicy`` to each hop:

``same-origin`` (the default; ``true`` in older configs)
    follow only to the origin (scheme, host, port) of the first request;
``same-host``
    follow to any port or scheme of the same host;
``any``
    follow anywhere;
``none`` (``false``)
    follow nothing: the 3xx is the answer.

A hop outside the policy raises ``RedirectRefused``. Where a hop is allowed to another
origin, the request goes on without ``Authorization``, ``Cookie``,
``Proxy-Authorization`` and every header whose configured value is a secret (they stay
dropped for the rest of the chain), and a 307/308 whose body contains a secret is
refused rather than re-sent. https to http is refused unless
``allow_insecure_redirects`` is set. 303, and 301/302 after a POST, continue as a GET
without body (as browsers and aiohttp do). At most ``max_redirects`` hops are followed;
one more raises ``aiohttp.TooManyRedirects``.

A refusal names the origin the server pointed to (``scheme://host:port``), never its
path or query string, which may carry secrets.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import field
from typing import Any, NamedTuple

import aiohttp
import structlog
from aiohttp import hdrs
from multidict import CIMultiDict
from yarl import URL

from probed.config import ProbeSpec, RedirectMode, SseStream, TargetConfig
from probed.records import record

__all__ = [
    "Followed",
    "RedirectPolicy",
    "RedirectRefused",
    "followed",
    "next_hop",
    "origin_of",
    "request_following",
]

_log = structlog.get_logger("probed.probes")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ALWAYS_PRIVATE = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers never sent to another origin, whatever their configured value."""
_BODY_HEADERS = (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING)

Body = bytes | Mapping[str, str] | None


@record
class RedirectPolicy:
    """How far redirects are followed, and what must not go along."""

    mode: RedirectMode = "same-origin"
    max_redirects: int = 10
    allow_insecure: bool = False
    """Follow https to http (refused otherwise)."""
    secret_headers: frozenset[str] = frozenset()
    """Lower-case names of the headers whose configured value is a secret."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every configured secret value (a body containing one is never re-sent elsewhere)."""

    @classmethod
    def of(cls, target: TargetConfig, spec: ProbeSpec | SseStream) -> RedirectPolicy:
        """The policy of ``spec`` on ``target`` (a stream watcher gets the defaults)."""
        names: set[str] = set()
        secrets: list[str] = []
        for holder in (target, spec):
            for key, value in holder.resolved_secrets().items():
                if key.startswith("headers."):
                    names.add(key.removeprefix("headers.").lower())
                if value:
                    secrets.append(value)
        if isinstance(spec, SseStream):
            return cls(secret_headers=frozenset(names), secrets=tuple(secrets))
        return cls(
            spec.follow_redirects,
            spec.max_redirects,
            spec.allow_insecure_redirects,
            frozenset(names),
            tuple(secrets),
        )


class RedirectRefused(aiohttp.ClientError):
    """A redirect the policy does not allow; ``status`` is the 3xx, ``origin`` where it led.

    The message names the origin only. ``code`` is a finer error code for logs.
    """

    def __init__(self, status: int, origin: str, message: str, code: str) -> None:
        self.status = status
        self.origin = origin
        self.code = code
        super().__init__(message)


class Followed(NamedTuple):
    """The final response (unread: the caller reads and releases it) and the hops before it.

    The hops are released; their status and headers (``Set-Cookie``) stay readable.
    """

    response: aiohttp.ClientResponse
    history: tuple[aiohttp.ClientResponse, ...]


def origin_of(url: URL) -> str:
    """``scheme://host:port`` of ``url`` (the port even when it is the default)."""
    return f"{url.scheme}://{url.host_subcomponent}:{url.port}"


def _carries_secret(data: Body, json: Any, secrets: tuple[str, ...]) -> bool:
    """Whether the request body contains a secret (as is, or escaped in JSON)."""
    if json is not None:
        text = jsonlib.dumps(json, ensure_ascii=False)
    elif isinstance(data, Mapping):
        text = "\n".join(data.values())
    elif data is not None:
        text = data.decode("utf-8", errors="replace")
    else:
        return False
    return any(
        s in text or jsonlib.dumps(s, ensure_ascii=False)[1:-1] in text for s in secrets if s
    )


def _becomes_get(status: int, method: str) -> bool:
    """303 (but after HEAD), and 301/302 after POST, continue as a GET without body."""
    return (status == 303 and method != hdrs.METH_HEAD) or (
        status in (301, 302) and method == hdrs.METH_POST
    )


def _refusal(
    policy: RedirectPolicy, status: int, start: URL, here: URL, there: URL, body: Body, json: Any
) -> RedirectRefused | None:
    """Why following ``status`` from ``here`` to ``there`` is refused, or None if it is not."""
    if there.scheme not in ("http", "https") or not there.host:
        message = f"{status} redirect to a Location that is not an http(s) URL"
        return RedirectRefused(status, "", message, "bad_location")
    origin = origin_of(there)
    if here.scheme == "https" and there.scheme == "http" and not policy.allow_insecure:
        message = (
            f"{status} redirect from https to http refused ({origin}); "
            "set allow_insecure_redirects to follow it"
        )
        return RedirectRefused(status, origin, message, "insecure_redirect")
    elsewhere = there.origin() != start.origin()
    if (policy.mode == "same-origin" and elsewhere) or (
        policy.mode == "same-host" and there.host != start.host
    ):
        message = f"{status} redirect to {origin} refused (follow_redirects = {policy.mode!r})"
        return RedirectRefused(status, origin, message, "redirected_to_other_origin")
    if elsewhere and _carries_secret(body, json, policy.secrets):
        message = f"{status} redirect to {origin} refused: it would re-send a body with a secret"
        return RedirectRefused(status, origin, message, "secret_body_redirect")
    return None


def next_hop(
    policy: RedirectPolicy,
    status: int,
    method: str,
    start: URL,
    here: URL,
    location: str,
    sent: CIMultiDict[str],
    data: Body,
    json: Any,
) -> tuple[URL, str, Body, Any]:
    """Where a followed ``status`` redirect from ``here`` to ``location`` goes on: the URL,
    the method, the body (``data``, ``json``); ``sent`` (the headers) loses the body's
    headers when the request becomes a GET and the private ones when it leaves the origin
    of ``start``. Raises ``RedirectRefused`` for a hop outside ``policy``.

    Every client's redirect loop calls it for a hop it follows (``request_following``
    for aiohttp, ``probed.http.wire`` for the http kind's own client); the count of hops
    against ``max_redirects`` is the loop's.
    """
    try:
        there = here.join(URL(location))
    except ValueError:
        there = URL()
    if _becomes_get(status, method):
        method, data, json = hdrs.METH_GET, None, None
        for header in _BODY_HEADERS:
            sent.popall(header, None)
    refused = _refusal(policy, status, start, here, there, data, json)
    if refused is not None:
        raise refused
    if there.origin() != start.origin():
        private = policy.secret_headers | _ALWAYS_PRIVATE
        dropped = [name for name in sent if name.lower() in private]
        for name in dropped:
            sent.popall(name, None)
        if dropped:
            _log.debug("redirect_headers_dropped", origin=origin_of(there), headers=dropped)
    return there, method, data, json


def followed(policy: RedirectPolicy, status: int, location: str | None) -> bool:
    """Whether a response with ``status`` and ``location`` is a redirect to follow (else
    it is the answer)."""
    return status in _REDIRECTS and policy.mode != "none" and location is not None


async def request_following(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    policy: RedirectPolicy,
    *,
    headers: Mapping[str, str],
    data: Body = None,
    json: Any = None,
    **kwargs: Any,
) -> Followed:
    """Send ``method url`` and follow its redirects under ``policy``, one request per hop.

    ``kwargs`` go to every hop's ``session.request`` (``ssl``, ``timeout``,
    ``trace_request_ctx``). Raises ``RedirectRefused`` for a hop outside the policy and
    ``aiohttp.TooManyRedirects`` after ``max_redirects`` hops; the response of the hop
    that failed is closed.
    """
    start = here = URL(url)
    sent = CIMultiDict(headers)
    history: list[aiohttp.ClientResponse] = []
    while True:
        resp = await session.request(
            method, here, headers=sent, data=data, json=json, allow_redirects=False, **kwargs
        )
        location = resp.headers.get(hdrs.LOCATION)
        if not followed(policy, resp.status, location):
            return Followed(resp, tuple(history))
        assert location is not None
        try:
            history.append(resp)
            if len(history) > policy.max_redirects:
                raise aiohttp.TooManyRedirects(history[0].request_info, tuple(history))
            here, method, data, json = next_hop(
                policy, resp.status, method, start, here, location, sent, data, json
            )
        except BaseException:
            resp.close()
            raise
        resp.release()
