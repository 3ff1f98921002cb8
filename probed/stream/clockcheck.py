"""Readings of a stream server's clock: from a response's ``Date`` header, or from the
stream's ``time_path`` endpoint (a JSON ``{"time": ...}``, read bounded).

A reading is the interval the server's time lay in when it answered (``probed.skew``):
the watcher hands it to its ``StreamStats`` clock, which estimates the offset its lags
are corrected by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import NoReturn

import aiohttp
import structlog

from probed import clock
from probed.config import SseStream, TargetConfig
from probed.http.classify import classify_exception
from probed.http.redirects import RedirectPolicy, request_following
from probed.http.tls import ssl_for
from probed.jsonpath import lookup
from probed.netvalues import json_loads
from probed.skew import reading_bounds
from probed.store import StreamStats
from probed.stream.accounting import parse_timestamp

__all__ = ["CLOCK_BODY_LIMIT", "check_time_path", "clock_checks", "read_date"]

_log = structlog.get_logger("probed.stream")

CLOCK_BODY_LIMIT = 64 * 1024
"""Bytes read at most from a stream's ``time_path`` endpoint."""


def read_date(
    spec: SseStream, headers: Mapping[str, str], sent_wall: float, stats: StreamStats
) -> None:
    """A reading from a response's ``Date`` (``headers``; request sent at ``sent_wall``),
    unless the stream reads ``time_path`` or ignores clocks, or the header is missing or
    unreadable."""
    if spec.time_path is not None or spec.clock == "ignore":
        return
    date = headers.get("Date")
    if not date:
        return
    try:
        server = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, OverflowError):
        return
    # Date is truncated to the second: the server's time lay in [D, D+1)
    bounds = reading_bounds(server, sent_wall, clock.wall(), whole_seconds=True)
    stats.clock_reading("date", *bounds)


async def check_time_path(
    session: aiohttp.ClientSession,
    spec: SseStream,
    target: TargetConfig,
    redirects: RedirectPolicy,
    stats: StreamStats,
) -> None:
    """Read the server's time from the stream's ``time_path`` (bounded) into ``stats``."""
    assert spec.time_path is not None
    url = target.base_url.rstrip("/") + spec.time_path
    sent = clock.wall()
    async with asyncio.timeout(spec.connect_timeout):
        r, _ = await request_following(
            session,
            "GET",
            url,
            redirects,
            headers=target.resolved_headers(),
            ssl=ssl_for(target),
        )
        async with r:
            body = bytearray()
            while len(body) <= CLOCK_BODY_LIMIT:  # read() may return less than asked
                chunk = await r.content.read(CLOCK_BODY_LIMIT + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    got = clock.wall()
    if len(body) > CLOCK_BODY_LIMIT:
        raise ValueError(f"time response larger than {CLOCK_BODY_LIMIT} bytes")
    server = parse_timestamp(_field(json_loads(bytes(body)), "time"), "auto")
    if server is not None:
        whole = server.is_integer()  # a whole-second time is taken as truncated, like Date
        stats.clock_reading("time_path", *reading_bounds(server, sent, got, whole_seconds=whole))


async def clock_checks(
    session: aiohttp.ClientSession,
    spec: SseStream,
    target: TargetConfig,
    redirects: RedirectPolicy,
    stats: StreamStats,
    checked: asyncio.Event,
    on_bug: Callable[[Exception], None],
) -> NoReturn:
    """Ask ``time_path`` every ``clock_check_interval``; ``checked`` is set after the first
    answer or failure. A failure is logged (``clock_check_failed``, the target named as a
    URL); a bug goes to ``on_bug`` and never ends the daemon's TaskGroup."""
    while True:
        try:
            await check_time_path(session, spec, target, redirects, stats)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            message = classify_exception(exc)[2] if isinstance(exc, aiohttp.ClientError) else exc
            _log.warning("clock_check_failed", stream=spec.name, error_message=f"{message}")
        except Exception as exc:
            on_bug(exc)
        checked.set()
        await asyncio.sleep(spec.clock_check_interval)


def _field(data: object, path: str) -> object:
    try:
        return lookup(data, path)
    except LookupError:
        return None
