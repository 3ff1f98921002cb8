"""``probed tap STREAM``: print each event a running daemon's watcher receives, live.

Reads ``GET /api/v1/streams/STREAM/tap`` (see :mod:`probed.tap`) with the URL,
TLS and credential options of every client command (:mod:`probed.client`) and
prints one line per event on stdout::

    2026-02-08T10:02:00.123Z  seq=42  id=42  type=order.created  lag=1.234ms  offset=+2247.5ms

``seq=-`` for an unsequenced event, ``lag=-`` for an untimed one (or one the
stream's clock could not correct yet); ``offset=`` is the clock offset taken off
the event's stamp, when one was; ``verdict=`` is added for anything but a new
sequence number (``duplicate``, ``out_of_order``, ``late``, ``reset``).
``--json`` prints the daemon's JSON object per event instead. When the daemon had
to leave events out because this client read too slowly, a line says how many.

Exit codes: 0 after ``--count`` events or on Ctrl-C; 1 when the daemon cannot be
reached, refuses the tap (unknown stream, credentials, too many taps) or ends it
(the stream was removed, the daemon stops, the connection broke).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

from probed.client import DaemonClient
from probed.stream.decoder import Event, SSEDecoder

__all__ = ["format_line", "positive_count", "run_tap"]

EXIT_OK = 0
EXIT_FAILED = 1

_CONNECT_TIMEOUT = 10.0
_IDLE_TIMEOUT = 45.0
"""Seconds without a byte from the daemon (it sends a heartbeat every 15 s) before giving up."""
_ERROR_BODY = 64 * 1024


class TapEnded(Exception):
    """The tap cannot go on; the message is the one line to print."""


def format_line(record: dict[str, Any]) -> str:
    """One ``tap`` record as a line (see the module docs)."""
    at = datetime.fromtimestamp(float(record["at"]), UTC)
    parts = [
        at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        f"seq={_or_dash(record.get('seq'))}",
        f"id={_or_dash(record.get('id'))}",
        f"type={_or_dash(record.get('type'))}",
        "lag=-" if record.get("lag_ms") is None else f"lag={float(record['lag_ms']):.3f}ms",
    ]
    offset = record.get("offset_ms")
    if offset is not None:
        parts.append(f"offset={float(offset):+.1f}ms")
    verdict = record.get("verdict")
    if verdict not in (None, "new"):
        parts.append(f"verdict={verdict}")
    return "  ".join(parts)


def positive_count(text: str) -> int:
    """``--count``: a whole number above zero (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def _or_dash(value: object) -> str:
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text) or "-"


def run_tap(
    client: DaemonClient, stream: str, *, count: int | None, as_json: bool, out: TextIO
) -> int:
    """Tap ``stream`` until ``count`` events (None: until Ctrl-C); the exit code."""
    url = f"{client.base_url}/api/v1/streams/{quote(stream, safe='')}/tap"
    try:
        asyncio.run(_tap(client, url, count, as_json, out))
    except KeyboardInterrupt:
        return EXIT_OK
    except TapEnded as exc:
        print(f"probed tap: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `probed tap x | head -3`
        return EXIT_OK
    return EXIT_OK


async def _tap(
    client: DaemonClient, url: str, count: int | None, as_json: bool, out: TextIO
) -> None:
    import aiohttp

    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=_IDLE_TIMEOUT
    )
    headers = {**client.headers(), "Accept": "text/event-stream"}
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(
                url, headers=headers, ssl=client.ssl_option(), server_hostname=client.server_name
            ) as resp,
        ):
            if resp.status != 200:
                error = _error_of(await resp.content.read(_ERROR_BODY))
                raise TapEnded(f"{url}: HTTP {resp.status}: {error}")
            await _print_events(resp, count, as_json, out)
    except ValueError as exc:  # not JSON, or a line past the decoder's limits
        raise TapEnded(f"{url}: not a probed tap: {exc}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise TapEnded(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _error_of(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return "-"
    error = doc.get("error") if isinstance(doc, dict) else None
    return str(error) if error else "-"


async def _print_events(resp: Any, count: int | None, as_json: bool, out: TextIO) -> None:
    decoder = SSEDecoder()
    seen = 0
    while True:
        chunk = await resp.content.readany()
        if not chunk:
            raise TapEnded("the daemon closed the tap")
        for item in decoder.feed(chunk):
            if not isinstance(item, Event):
                continue
            data = json.loads(item.data)
            if item.event == "tap":
                print(json.dumps(data) if as_json else format_line(data), file=out, flush=True)
                seen += 1
                if count is not None and seen >= count:
                    return
            elif item.event == "dropped":
                note = (
                    json.dumps(data)
                    if as_json
                    else f"-- {data['dropped']} events left out: this client read too slowly "
                    f"({data['dropped_total']} in all)"
                )
                print(note, file=out, flush=True)
            elif item.event == "end":
                raise TapEnded(f"the daemon ended the tap: {data.get('reason')}")
