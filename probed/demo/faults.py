"""The demo target's fault knobs: the ``Faults`` model, its checks, and where faults act.

``Faults`` holds every knob and checks its values. Requests meet them in the
``request_faults`` middleware (latency, then 429, then 503) and in the ``Date``
stamp (``clock_offset``); the streams, the outbox and the import jobs read them
where they act. The admin endpoints, which faults never touch, read and change them::

    GET /-/admin/faults        the current faults
    PUT /-/admin/faults        any subset of the fault keys, plus ``refuse_for``
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import fnmatch
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from probed.demo.jsonio import bad_request, is_number, json_response

__all__ = [
    "ADMIN_PREFIX",
    "Faults",
    "IdStyle",
    "SetFaults",
    "admin_routes",
    "check_refuse_for",
    "date_stamper",
    "is_admin",
    "request_faults",
]

ADMIN_PREFIX: Final = "/-/admin/"
"""Paths under this prefix are admin endpoints: faults never apply to them."""

_MAX_LATENCY: Final = 300.0
_MAX_RETRY_AFTER: Final = 86_400
_MAX_REFUSE_FOR: Final = 3_600.0
_MAX_DISCONNECT_EVERY: Final = 86_400.0
_MIN_HEARTBEAT: Final = 0.01
_MAX_OVERSIZE: Final = 64 * 1024 * 1024
_MAX_CLOCK_OFFSET: Final = 366 * 86_400.0
_MAX_IMPORT_DURATION: Final = 3_600.0

IdStyle = Literal["numeric", "composite"]
_ID_STYLES: Final[tuple[IdStyle, ...]] = ("numeric", "composite")


def is_admin(path: str) -> bool:
    """Whether ``path`` is an admin endpoint (faults never apply to it)."""
    return path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/")


def _check_float(key: str, value: object, low: float, high: float, what: str = "a number") -> None:
    if not is_number(value) or not low <= float(value) <= high:
        raise ValueError(f"{key} must be {what} in [{low:g}, {high:g}], got {value!r}")


def _check_int(key: str, value: object, low: int, high: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be {what} in [{low}, {high}], got {value!r}")


def _check_bool(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")


_FLOAT_KEYS: Final = (
    "latency",
    "error_ratio",
    "rate_limit_ratio",
    "stream_delay",
    "drop_ratio",
    "duplicate_ratio",
    "reorder_ratio",
    "disconnect_every",
    "clock_offset",
    "heartbeat_interval",
    "import_duration",
)


@dataclass
class Faults:
    """What the demo target does wrong; the defaults make it healthy.

    Request faults: ``latency`` seconds are added before answering; then a
    share ``rate_limit_ratio`` of requests is answered 429 (with
    ``Retry-After: retry_after``), then a share ``error_ratio`` 503. A ratio of
    1.0 hits every request. ``paths`` are ``fnmatch`` globs on the request path
    limiting these three (empty: every non-admin path). ``refuse_connections``
    closes the listening socket (and ends every open stream).

    Stream faults (the SSE stream and the WebSocket; ``paths`` does not limit
    them): events are published ``stream_delay`` seconds after they are
    enqueued, in enqueue order. A share ``drop_ratio`` is never delivered (nor
    replayed), a share ``duplicate_ratio`` is delivered twice, a share
    ``reorder_ratio`` is held back and delivered right after the next event.
    ``disconnect_every`` seconds (0: never) after it opened, a stream is ended
    cleanly. While ``stall`` is true open streams send nothing (events queue up
    and flow when it ends). ``wrong_content_type`` serves the SSE path as
    ``application/json``. ``oversize_event`` bytes (0: off) of ``"pad"`` are
    added to every event's data. ``heartbeat_interval`` seconds between SSE
    heartbeat comments. ``id_style`` is ``"numeric"`` (the SSE id is the
    ``seq``) or ``"composite"`` (``"<epoch seconds>:<n>"``).

    ``clock_offset`` seconds are added to ``enqueued_at`` stamps and to the
    ``Date`` header of every non-admin response. Import jobs take
    ``import_duration`` seconds; with ``import_stall_at`` (percent, 0: off) a
    job stops at that progress and never finishes; ``import_regress`` makes a
    job's progress go back 20 points once, midway.

    Values are checked on creation: a bad one raises ``ValueError`` naming its key.
    """

    latency: float = 0.0
    error_ratio: float = 0.0
    rate_limit_ratio: float = 0.0
    retry_after: int = 5
    refuse_connections: bool = False
    paths: list[str] = field(default_factory=list)
    stream_delay: float = 0.0
    drop_ratio: float = 0.0
    duplicate_ratio: float = 0.0
    reorder_ratio: float = 0.0
    disconnect_every: float = 0.0
    stall: bool = False
    wrong_content_type: bool = False
    oversize_event: int = 0
    clock_offset: float = 0.0
    heartbeat_interval: float = 1.0
    id_style: IdStyle = "numeric"
    import_duration: float = 2.0
    import_stall_at: int = 0
    import_regress: bool = False

    def __post_init__(self) -> None:
        seconds = "a number of seconds"
        _check_float("latency", self.latency, 0.0, _MAX_LATENCY, seconds)
        for key in (
            "error_ratio",
            "rate_limit_ratio",
            "drop_ratio",
            "duplicate_ratio",
            "reorder_ratio",
        ):
            _check_float(key, getattr(self, key), 0.0, 1.0)
        _check_int(
            "retry_after", self.retry_after, 0, _MAX_RETRY_AFTER, "a whole number of seconds"
        )
        for key in ("refuse_connections", "stall", "wrong_content_type", "import_regress"):
            _check_bool(key, getattr(self, key))
        paths: object = self.paths
        if not isinstance(paths, list | tuple):
            raise ValueError(f"paths must be a list of glob strings, got {paths!r}")
        for index, glob in enumerate(paths):
            if not isinstance(glob, str) or not glob.startswith(("/", "*")):
                raise ValueError(
                    f"paths[{index}] must be a glob starting with '/' or '*', got {glob!r}"
                )
        _check_float("stream_delay", self.stream_delay, 0.0, _MAX_LATENCY, seconds)
        _check_float("disconnect_every", self.disconnect_every, 0.0, _MAX_DISCONNECT_EVERY, seconds)
        _check_int("oversize_event", self.oversize_event, 0, _MAX_OVERSIZE, "a number of bytes")
        _check_float(
            "clock_offset", self.clock_offset, -_MAX_CLOCK_OFFSET, _MAX_CLOCK_OFFSET, seconds
        )
        _check_float(
            "heartbeat_interval", self.heartbeat_interval, _MIN_HEARTBEAT, _MAX_LATENCY, seconds
        )
        if self.id_style not in _ID_STYLES:
            raise ValueError(
                f"id_style must be one of {', '.join(map(repr, _ID_STYLES))}, got {self.id_style!r}"
            )
        _check_float("import_duration", self.import_duration, 0.0, _MAX_IMPORT_DURATION, seconds)
        _check_int("import_stall_at", self.import_stall_at, 0, 100, "a whole percent")
        for key in _FLOAT_KEYS:
            setattr(self, key, float(getattr(self, key)))
        self.paths = list(paths)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The fault keys, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def updated(self, changes: Mapping[str, object]) -> Faults:
        """A copy with ``changes`` applied; ``ValueError`` on an unknown key or bad value."""
        unknown = sorted(set(changes) - set(self.keys()))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(self.keys())})")
        kwargs: dict[str, Any] = dict(changes)
        return dataclasses.replace(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The faults as a JSON-ready mapping (the admin endpoints' shape)."""
        return dataclasses.asdict(self)

    def applies_to(self, path: str) -> bool:
        """Whether the request faults (latency, 429, 503) apply to ``path``."""
        if is_admin(path):
            return False
        return not self.paths or any(fnmatch.fnmatchcase(path, glob) for glob in self.paths)


def check_refuse_for(value: object) -> float:
    """``refuse_for`` as seconds; ``ValueError`` unless a number in (0, 3600]."""
    if not is_number(value) or not 0.0 < float(value) <= _MAX_REFUSE_FOR:
        raise ValueError(
            f"refuse_for must be a number of seconds in (0, {_MAX_REFUSE_FOR:g}], got {value!r}"
        )
    return float(value)


def _parse_admin_update(current: Faults, body: object) -> tuple[Faults, float | None]:
    """The faults a ``PUT /-/admin/faults`` body asks for, and its ``refuse_for``."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object of fault keys")
    changes = dict(body)
    refuse_for: float | None = None
    if "refuse_for" in changes:
        refuse_for = check_refuse_for(changes.pop("refuse_for"))
        if changes.get("refuse_connections", True) is not True:
            raise ValueError("refuse_for needs refuse_connections true (or left out)")
        changes["refuse_connections"] = True
    return current.updated(changes), refuse_for


# --- where faults act ----------------------------------------------------------------------


class SetFaults(Protocol):
    """``DemoTarget.set_faults``: replace the faults, maybe refusing for a while."""

    async def __call__(self, faults: Faults, *, refuse_for: float | None = None) -> None: ...


def request_faults(faults_of: Callable[[], Faults], rng: random.Random) -> Middleware:
    """The middleware applying latency first, then the 429 draw, then the 503 draw."""

    @web.middleware
    async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = faults_of()
        if not faults.applies_to(request.path):
            return await handler(request)
        if faults.latency > 0.0:
            await asyncio.sleep(faults.latency)
        faults = faults_of()  # may have changed while sleeping
        if not faults.applies_to(request.path):
            return await handler(request)
        if faults.rate_limit_ratio > 0.0 and rng.random() < faults.rate_limit_ratio:
            return json_response(
                {"error": "rate_limited", "retry_after": faults.retry_after},
                status=429,
                headers={"Retry-After": str(faults.retry_after)},
            )
        if faults.error_ratio > 0.0 and rng.random() < faults.error_ratio:
            return json_response({"error": "service_unavailable"}, status=503)
        return await handler(request)

    return inject_faults


def date_stamper(
    faults_of: Callable[[], Faults],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """A response-prepare hook: with ``clock_offset``, non-admin ``Date`` headers are off by it."""

    async def stamp_date(request: web.Request, response: web.StreamResponse) -> None:
        offset = faults_of().clock_offset
        if offset and not is_admin(request.path):
            response.headers[hdrs.DATE] = email.utils.formatdate(time.time() + offset, usegmt=True)

    return stamp_date


def admin_routes(faults_of: Callable[[], Faults], set_faults: SetFaults) -> list[web.RouteDef]:
    """``GET`` and ``PUT /-/admin/faults``: the current faults, and changing them."""

    async def get_faults(request: web.Request) -> web.Response:
        return json_response(faults_of().to_dict())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            body: object = await request.json()
        except (ValueError, UnicodeDecodeError):
            return bad_request("body is not valid JSON")
        try:
            faults, refuse_for = _parse_admin_update(faults_of(), body)
        except ValueError as exc:
            return bad_request(str(exc))
        await set_faults(faults, refuse_for=refuse_for)
        return json_response(faults_of().to_dict())

    path = ADMIN_PREFIX + "faults"
    return [web.get(path, get_faults), web.put(path, put_faults)]
