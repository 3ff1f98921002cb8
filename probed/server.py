"""The daemon's HTTP server: metrics, health, status API and reload.

=====================  ===================================================
``GET /metrics``       Prometheus exposition (text 0.0.4, or OpenMetrics
                       when the scraper asks for it)
``GET /-/healthy``     200 while the process serves requests
``GET /-/ready``       200 once probes are scheduled, 503 before
``GET /api/v1/status`` JSON: every probe's last result
``POST /-/reload``     reload the configuration file (see daemon)
``GET /``              a small HTML index of the above
=====================  ===================================================
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, exposition

from probed import __version__
from probed.store import ProbeState, ResultStore, StreamStats

__all__ = ["ReloadFn", "ServerState", "create_app", "probe_status", "stream_status"]

ReloadFn = Callable[[], Awaitable[tuple[bool, str]]]


class ServerState:
    """What the handlers need; the daemon owns it and flips ``ready``."""

    def __init__(
        self, store: ResultStore, registry: CollectorRegistry, reload: ReloadFn | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.reload = reload
        self.ready = False


_STATE = web.AppKey("state", ServerState)


def probe_status(state: ProbeState) -> dict[str, Any]:
    """The JSON view of one probe's latest result."""
    last = state.last
    out: dict[str, Any] = {
        "probe": state.name,
        "kind": state.kind,
        "target": state.target,
        "runs": dict(state.runs),
        "failures": dict(state.failures),
        "skipped": dict(state.skipped),
        "last_success_at": state.last_success_at,
    }
    if last is not None:
        out["last"] = {
            "run_id": last.run_id,
            "trace_id": last.trace_id,
            "started_at": last.started_at,
            "duration_seconds": round(last.duration, 6),
            "success": last.success,
            "reason": last.result.reason.value if last.result.reason else None,
            "status_code": last.result.status_code,
            "phases": dict(last.result.phases),
        }
    return out


def stream_status(stats: StreamStats) -> dict[str, Any]:
    """The JSON view of one stream watcher."""
    lag = stats.delivery_lag
    return {
        "stream": stats.name,
        "target": stats.target,
        "connected": stats.connected,
        "subscribers": stats.subscribers,
        "connection_ids": list(stats.connection_ids),
        "reconnects": dict(stats.reconnects),
        "received": stats.received,
        "lost": stats.lost,
        "duplicated": stats.duplicated,
        "out_of_order": stats.out_of_order,
        "late": stats.late,
        "negative_lag": stats.negative_lag,
        "untimed": stats.untimed,
        "mean_lag_seconds": round(lag.sum / lag.count, 6) if lag.count else None,
        "clock_offset_seconds": stats.clock_offset,
        "last_event_at": stats.last_event_wall,
    }


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    accept = request.headers.get("Accept", "")
    encoder, content_type = exposition.choose_encoder(accept)
    body = encoder(state.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def _ready(request: web.Request) -> web.Response:
    if request.app[_STATE].ready:
        return web.Response(text="Ready\n")
    return web.Response(status=503, text="Not ready\n")


async def _status(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    payload = {
        "version": __version__,
        "generated_at": time.time(),
        "probes": [probe_status(s) for s in state.store],
        "streams": [stream_status(s) for s in state.store.streams.values()],
    }
    return web.json_response(payload)


async def _reload(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if state.reload is None:
        return web.json_response({"status": "error", "error": "reload not available"}, status=501)
    ok, message = await state.reload()
    return web.json_response(
        {"status": "success" if ok else "error", "message": message}, status=200 if ok else 400
    )


async def _index(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    rows = []
    for st in state.store:
        last = st.last
        ok = "never run" if last is None else ("ok" if last.success else "FAIL")
        reason = last.result.reason.value if last and last.result.reason else ""
        took = f"{last.duration * 1000:.1f} ms" if last else ""
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>" for c in (st.name, st.kind, ok, reason, took)
            )
            + "</tr>"
        )
    stream_rows = [
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                st.name,
                f"{st.connected}/{st.subscribers}",
                st.received,
                st.lost,
                sum(st.reconnects.values()),
            )
        )
        + "</tr>"
        for st in state.store.streams.values()
    ]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>probed</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}
td,th{{padding:.2em .8em;text-align:left}}</style>
</head><body><h1>probed {html.escape(__version__)}</h1>
<p><a href="/metrics">/metrics</a> · <a href="/api/v1/status">/api/v1/status</a>
· <a href="/-/healthy">/-/healthy</a> · <a href="/-/ready">/-/ready</a></p>
<table><tr><th>probe</th><th>kind</th><th>last</th><th>reason</th><th>took</th></tr>
{"".join(rows)}</table>
<table><tr><th>stream</th><th>connected</th><th>received</th><th>lost</th><th>reconnects</th></tr>
{"".join(stream_rows)}</table></body></html>
"""
    return web.Response(text=page, content_type="text/html")


def create_app(state: ServerState) -> web.Application:
    """The aiohttp application serving the daemon's endpoints."""
    app = web.Application()
    app[_STATE] = state
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_get("/api/v1/status", _status)
    app.router.add_post("/-/reload", _reload)
    app.router.add_get("/", _index)
    return app
