"""What the http-based kinds share: one request, status rules, JSON checks.

Every check that fails after a response arrived raises ``ProbeFailure`` carrying
the status code, the phases and a finer error code (``Response.failure``). Kinds
let it propagate: ``run_probe`` builds the failed result from it and adds the
observations the kind recorded with ``ctx.observe`` (``probed.probes.base``).
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import field
from datetime import UTC
from http.cookies import CookieError, SimpleCookie
from typing import Any

from multidict import CIMultiDictProxy

from probed.config import JsonAssertion, ProbeSpec
from probed.errors import ProbeFailure
from probed.http.redirects import RedirectRefused, request_following
from probed.http.session import PhaseTimer
from probed.http.tls import ssl_for
from probed.http.wire import BodyTooLarge, WireClient
from probed.jsonpath import lookup
from probed.netvalues import JsonTooDeep, json_loads
from probed.probes.base import ProbeContext
from probed.records import record
from probed.results import Observation, Reason

__all__ = [
    "Response",
    "check_json",
    "check_status",
    "lookup",
    "parse_json",
    "parse_retry_after",
    "read_json",
    "send",
]

_AUTH_STATUSES = (401, 403)


@record
class Response:
    """A fully read response (body capped at the probe's ``max_body_size``)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    phases: dict[str, float]
    charset: str | None = None
    set_cookies: tuple[str, ...] = field(default=(), repr=False)
    """Every ``Set-Cookie`` header of the final response and of the redirect hops."""
    label: str = ""
    """The request's name in failure details (``send``'s ``label``), or empty."""

    def failure(
        self, reason: Reason, detail: str = "", *, error_code: str = "", **observations: Observation
    ) -> ProbeFailure:
        """A ``ProbeFailure`` for this response (raise it); ``label`` prefixes its detail."""
        return ProbeFailure(
            reason,
            _labelled(self.label, detail),
            status_code=self.status,
            phases=self.phases,
            error_code=error_code,
            **observations,
        )

    def text(self) -> str:
        """The body decoded with the response charset (UTF-8 if none or unknown)."""
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` as the server set it (the last one wins), or None."""
        found: str | None = None
        for header in self.set_cookies:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(header)
            except CookieError:
                continue
            morsel = jar.get(name)
            if morsel is not None:
                found = morsel.coded_value
        return found or None


# --- sending --------------------------------------------------------------------------


def _labelled(label: str, detail: str) -> str:
    return f"{label}: {detail}" if label else detail


def _identity_encoded(headers: CIMultiDictProxy[str]) -> bool:
    return headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")


async def send(
    ctx: ProbeContext,
    spec: ProbeSpec,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    data: bytes | Mapping[str, str] | None = None,
    json: Any = None,
    timer: PhaseTimer,
    label: str = "",
) -> Response:
    """Send one request for ``spec`` and read the whole body, at most ``max_body_size`` bytes.

    Redirects are followed under the probe's policy (``probed.http.redirects``): a hop
    it refuses fails ``REDIRECTED_TO_OTHER_ORIGIN``; one hop more than ``max_redirects``
    raises ``aiohttp.TooManyRedirects``. A body over the cap raises
    ``ProbeFailure(Reason.OVERSIZE)`` without reading further. A ``label`` (``"status
    poll"``) prefixes the detail of these failures and of the response's ``failure``.
    """
    cap = spec.max_body_size
    wire = ctx.wire_for(spec)
    if wire is not None and not isinstance(data, Mapping):
        return await _send_wire(
            wire, ctx, spec, method, path, headers, data, json, timer, label, cap
        )
    try:
        resp, history = await request_following(
            ctx.session_for(spec),
            method,
            ctx.url(path),
            ctx.redirect_policy(spec),
            headers=headers,
            data=data,
            json=json,
            ssl=ssl_for(ctx.target, ctx.ssl_context),
            trace_request_ctx=timer,
        )
    except RedirectRefused as exc:
        raise _refused(exc, timer, label) from None
    async with resp:
        length = resp.content_length  # a HEAD response announces a body it does not send
        if (
            length is not None
            and length > cap
            and method != "HEAD"
            and _identity_encoded(resp.headers)
        ):
            resp.close()
            raise _oversize(resp.status, cap, timer, label)
        body = bytearray()
        while chunk := await resp.content.readany():
            if len(body) + len(chunk) > cap:
                resp.close()
                raise _oversize(resp.status, cap, timer, label)
            body += chunk
        timer.body_read()
        cookies: tuple[str, ...] = ()
        for hop in (*history, resp):
            if "Set-Cookie" in hop.headers:
                cookies += tuple(hop.headers.getall("Set-Cookie"))
        return Response(
            status=resp.status,
            headers=resp.headers,
            body=bytes(body),
            phases=timer.phases(),
            charset=resp.charset,
            set_cookies=cookies,
            label=label,
        )


def _refused(exc: RedirectRefused, timer: PhaseTimer, label: str) -> ProbeFailure:
    """The failure of a request whose redirect the probe's policy refused."""
    return ProbeFailure(
        Reason.REDIRECTED_TO_OTHER_ORIGIN,
        _labelled(label, str(exc)),
        status_code=exc.status,
        phases=timer.phases(),
        error_code=exc.code,
    )


async def _send_wire(
    wire: WireClient,
    ctx: ProbeContext,
    spec: ProbeSpec,
    method: str,
    path: str,
    headers: Mapping[str, str],
    data: bytes | None,
    json: Any,
    timer: PhaseTimer,
    label: str,
    cap: int,
) -> Response:
    """``send`` on the http kind's own client (``probed.http.wire``)."""
    try:
        reply, cookies = await wire.fetch(
            method,
            ctx.url(path),
            ctx.redirect_policy(spec),
            headers=headers,
            data=data,
            json=json,
            ssl_context=ssl_for(ctx.target, ctx.ssl_context),
            timer=timer,
            cap=cap,
        )
    except RedirectRefused as exc:
        raise _refused(exc, timer, label) from None
    except BodyTooLarge as exc:
        raise _oversize(exc.status, cap, timer, label) from None
    timer.body_read()
    return Response(
        status=reply.status,
        headers=reply.headers,
        body=reply.body,
        phases=timer.phases(),
        charset=reply.charset,
        set_cookies=tuple(cookies),
        label=label,
    )


def _oversize(status: int, cap: int, timer: PhaseTimer, label: str) -> ProbeFailure:
    timer.body_read()
    return ProbeFailure(
        Reason.OVERSIZE,
        _labelled(label, f"body larger than max_body_size ({cap} bytes)"),
        status_code=status,
        phases=timer.phases(),
    )


# --- status ---------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); None if invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def check_status(resp: Response, expect: Iterable[int], *, auth: bool = False) -> None:
    """Raise unless ``resp.status`` is expected.

    429 (when not expected) → ``RATE_LIMITED`` with observation ``retry_after``; with
    ``auth``, 401/403 → ``AUTH_FAILED``; anything else → ``STATUS`` (``http_<status>``).
    """
    status = resp.status
    if status in expect:
        return
    code = f"http_{status}"
    if status == 429:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        hint = f", retry after {retry_after:g}s" if retry_after is not None else ""
        raise resp.failure(
            Reason.RATE_LIMITED,
            f"429 Too Many Requests{hint}",
            error_code=code,
            retry_after=retry_after,
        )
    wanted = "/".join(str(s) for s in expect)
    if auth and status in _AUTH_STATUSES:
        raise resp.failure(
            Reason.AUTH_FAILED, f"rejected with status {status}, expected {wanted}", error_code=code
        )
    raise resp.failure(Reason.STATUS, f"status {status}, expected {wanted}", error_code=code)


# --- JSON -----------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def read_json(resp: Response) -> tuple[Any, str]:
    """The body as JSON and ``""``, or None and why it is not (strict: no NaN/Infinity,
    bounded nesting). For a body that may fairly not be JSON; else ``parse_json``."""
    try:
        return json_loads(resp.body, parse_constant=_reject_constant), ""
    except json.JSONDecodeError as exc:
        what = "empty body" if not resp.body.strip() else f"{exc.msg} at line {exc.lineno}"
    except JsonTooDeep as exc:
        what = str(exc)
    except ValueError as exc:  # UnicodeDecodeError, NaN/Infinity
        what = type(exc).__name__
    return None, f"body is not valid JSON: {what}"


def parse_json(resp: Response) -> Any:
    """The body as JSON (as ``read_json`` reads it); ``INVALID_JSON`` if it is not."""
    value, problem = read_json(resp)
    if problem:
        raise resp.failure(Reason.INVALID_JSON, problem)
    return value


def _same(actual: Any, expected: str | int | float | bool) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is bool and type(expected) is bool and actual is expected
    if isinstance(expected, int | float):
        return (
            isinstance(actual, int | float)
            and not (isinstance(actual, float) and math.isnan(actual))
            and actual == expected
        )
    return isinstance(actual, str) and actual == expected


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_json(resp: Response, obj: Any, checks: Iterable[JsonAssertion]) -> None:
    """Raise ``JSON_MISMATCH`` on the first failing assertion (path missing or value different)."""
    for check in checks:
        try:
            value = lookup(obj, check.path)
        except LookupError:
            if check.exists:
                raise resp.failure(Reason.JSON_MISMATCH, f"path {check.path!r} missing") from None
            continue
        if not check.exists:
            raise resp.failure(
                Reason.JSON_MISMATCH, f"path {check.path!r} is present, expected it absent"
            )
        if check.equals is not None and not _same(value, check.equals):
            raise resp.failure(
                Reason.JSON_MISMATCH,
                f"path {check.path!r} is {_show(value)}, expected {_show(check.equals)}",
            )
