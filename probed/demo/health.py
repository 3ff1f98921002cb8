"""The demo target's health endpoints: ``/health`` and its readiness, liveness and migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from probed.demo.jsonio import json_response

__all__ = ["routes"]

_VERSION: Final = "1.0.0"
_MIGRATION: Final = "0042_events"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _health(request: web.Request) -> web.Response:
    return json_response({"status": "healthy", "timestamp": _now(), "version": _VERSION})


async def _readiness(request: web.Request) -> web.Response:
    checks = {"database": "ok", "redis": "ok", "connection_pool": "ok"}
    return json_response({"status": "ready", "checks": checks})


async def _liveness(request: web.Request) -> web.Response:
    return json_response({"status": "alive", "timestamp": _now()})


async def _migrations(request: web.Request) -> web.Response:
    return json_response({"status": "up_to_date", "current": _MIGRATION, "head": _MIGRATION})


def routes() -> list[web.RouteDef]:
    """``GET /health``, ``/health/readiness``, ``/health/liveness`` and ``/health/migrations``."""
    return [
        web.get("/health", _health),
        web.get("/health/readiness", _readiness),
        web.get("/health/liveness", _liveness),
        web.get("/health/migrations", _migrations),
    ]
