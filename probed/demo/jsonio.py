"""JSON in and out for the demo target's endpoints: compact answers, bounded bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from aiohttp import web

__all__ = ["bad_request", "dumps", "is_number", "json_response", "read_json_body"]

_READ_CHUNK: Final = 256 * 1024


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an int or a float (``True`` and ``False`` are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def dumps(data: object) -> str:
    """Compact JSON, non-ASCII text kept as is."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def json_response(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``data`` as a compact JSON answer."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def bad_request(error: str) -> web.Response:
    """A 400 answer ``{"error": error}``."""
    return json_response({"error": error}, status=400)


async def read_json_body(request: web.Request, limit: int) -> dict[str, Any]:
    """The JSON object in the body (``{}`` when empty); ``ValueError`` saying what is wrong.

    At most ``limit`` bytes are read: a longer body is refused before it is all in memory.
    """
    if request.content_length is not None and request.content_length > limit:
        raise ValueError(f"body must be at most {limit} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        raw += chunk
        if len(raw) > limit:
            raise ValueError(f"body must be at most {limit} bytes")
    if not raw.strip():
        return {}
    try:
        body: object = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body
