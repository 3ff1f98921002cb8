"""Shared pieces of the probe-kind tests (``tests/test_probe_*.py``).

A recording loopback app (every request lands in ``app[SEEN]`` as a ``Seen``), one way
to run a probe through the real runner, the rows of the table-driven fault tests, and
the demo target's health probe as daemon TOML. The fixtures built on these
(``ctx``, ``demo_target``, ``stream_down``, ``network_fault``) are in ``conftest.py``.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from probed.config import ProbeSpec
from probed.probes import PROBERS
from probed.probes.base import ProbeContext, run_probe
from probed.results import ProbeResult, ProbeRun, Reason
from probed.stream.hub import Hub

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

__all__ = [
    "DEMO_PASSWORD",
    "SEEN",
    "STREAM",
    "Outcome",
    "Seen",
    "demo_health_toml",
    "fails",
    "ok",
    "recording_app",
    "run",
    "with_hub",
]

DEMO_PASSWORD = "correct-horse-battery-staple"
"""The password of the ``demo_target`` fixture's demo target."""
STREAM = "events"
"""The stream name the stream-following probes (reflect, import) watch in their tests."""


@dataclass(frozen=True)
class Seen:
    """One request as a recording test server saw it."""

    path: str
    method: str
    traceparent: str | None
    content_type: str
    """The Content-Type header as sent ("" when absent)."""
    body: bytes
    authorization: str | None
    cookie: str | None
    connection: object
    """The server's per-connection protocol object (kept alive, so identity is unique)."""

    @property
    def mimetype(self) -> str:
        """The media type of ``content_type``, without parameters, lower case."""
        return self.content_type.partition(";")[0].strip().lower()

    @property
    def fields(self) -> dict[str, str]:
        """A JSON object's or a URL-encoded form's fields ({} for any other body)."""
        if self.mimetype == "application/json":
            fields: dict[str, str] = json.loads(self.body)
            return fields
        if self.mimetype == "application/x-www-form-urlencoded":
            return dict(urllib.parse.parse_qsl(self.body.decode(), keep_blank_values=True))
        return {}


SEEN = web.AppKey("seen", list[Seen])


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    body = await request.read()
    request.app[SEEN].append(
        Seen(
            request.path,
            request.method,
            request.headers.get("traceparent"),
            request.headers.get("Content-Type", ""),
            body,
            request.headers.get("Authorization"),
            request.headers.get("Cookie"),
            request.protocol,
        )
    )
    return await handler(request)


def recording_app(*routes: web.RouteDef) -> web.Application:
    """An app serving ``routes`` whose ``app[SEEN]`` records every request, before its handler."""
    app = web.Application(middlewares=[_record])
    app[SEEN] = []
    app.add_routes(routes)
    return app


async def run(ctx: ProbeContext, spec: ProbeSpec) -> ProbeRun:
    """Run ``spec`` once through the real runner."""
    return await run_probe(PROBERS[spec.kind], ctx, spec)


def with_hub(ctx: ProbeContext) -> tuple[ProbeContext, Hub]:
    """``ctx`` with a fresh stream hub, and that hub."""
    hub = Hub()
    return dataclasses.replace(ctx, hub=hub), hub


@dataclass(frozen=True)
class Outcome:
    """How a run ended: success, reason and error code."""

    success: bool
    reason: Reason | None
    error_code: str

    @classmethod
    def of(cls, result: ProbeResult) -> Outcome:
        """The outcome of ``result``."""
        return cls(result.success, result.reason, result.error_code)


def ok(case_id: str, /, **fields: Any) -> ParameterSet:
    """A fault-table row ``(fields, expected)``: ``fields`` give a success, no error code."""
    return pytest.param(fields, Outcome(True, None, ""), id=case_id)


def fails(case_id: str, reason: Reason, error_code: str, /, **fields: Any) -> ParameterSet:
    """A fault-table row ``(fields, expected)``: ``fields`` fail with ``reason``, ``error_code``."""
    return pytest.param(fields, Outcome(False, reason, error_code), id=case_id)


def demo_health_toml(base_url: str) -> str:
    """Daemon TOML: the demo target at ``base_url`` and its 1 s ``health`` http probe."""
    return f"""\
[targets.demo]
base_url = "{base_url}"

[[probes]]
name = "health"
kind = "http"
target = "demo"
path = "/health"
interval = "1s"
timeout = "900ms"
json_checks = [{{ path = "status", equals = "healthy" }}]
"""
