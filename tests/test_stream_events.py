"""Events, not bytes, make a stream healthy: pings keep a connection, only events prove delivery."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from conftest import ServeApp
from livedaemon import live_daemon, sample, watch_metrics
from polling import until
from test_watcher import event, open_stream, sse_server, stream_spec, watching

from probed.signals import RecommendationState
from probed.streamhints import stream_hints


async def pings_only(request: web.Request) -> web.StreamResponse:
    """A stream that keeps its connection alive with comments and never sends an event."""
    resp = await open_stream(request)
    for _ in range(600):
        await resp.write(b": keepalive\n\n")
        await asyncio.sleep(0.05)
    return resp


async def test_pings_without_events_end_the_connection_as_no_events() -> None:
    """Comments keep the byte clock fresh but not the event clock: reason no_events."""
    spec = stream_spec(idle_timeout="2s", event_timeout="300ms")
    async with sse_server(pings_only) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.reconnects["no_events"] >= 2, within=5)
        assert stats.last_byte is not None
        assert time.monotonic() - stats.last_byte < 0.5
        assert stats.last_event is None
    assert 0 == stats.reconnects["stalled"]
    assert 0 == stats.received


async def test_a_stream_with_events_is_never_cut_for_no_events() -> None:
    """Events more often than event_timeout keep the connection."""

    async def ticking(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for seq in range(1, 200):
            await resp.write(event(seq))
            await asyncio.sleep(0.05)
        return resp

    spec = stream_spec(idle_timeout="2s", event_timeout="300ms")
    async with sse_server(ticking) as url, watching(url, spec) as (stats, _):
        await asyncio.sleep(1.2)
        assert stats.last_event is not None
        assert time.monotonic() - stats.last_event < 0.3
    assert 0 == stats.reconnects["no_events"]
    assert stats.received >= 15


def pings_config(tmp_path: Path, url: str) -> Path:
    """A daemon watching a pings-only stream, with fast recommendation timings."""
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[targets.app]
base_url = "{url}"

[[probes]]
name = "feed"
kind = "sse"
target = "app"
path = "/sse"
idle_timeout = "2s"
event_timeout = "500ms"
reconnect_initial = "50ms"
reconnect_max = "200ms"
min_reconnect_delay = "50ms"

[recommend]
window = "8s"
evaluate_every = "1s"
enter_for = "1s"
stream_down_after = "1s"
"""
    )
    return path


async def test_a_pings_only_stream_is_not_healthy(tmp_path: Path, serve_app: ServeApp) -> None:
    """probe_success 0, event age growing while the byte age stays small, sse_degraded raised."""
    app = web.Application()
    app.router.add_get("/sse", pings_only)
    url = await serve_app(app)
    async with live_daemon(pings_config(tmp_path, url)) as (daemon, task, base):
        async with asyncio.timeout(20):
            while not any(
                r.scenario == "sse_degraded" and r.state is RecommendationState.ACTIVE
                for r in daemon.evaluator.engine.current()
            ):
                await asyncio.sleep(0.2)
        rec = next(r for r in daemon.evaluator.engine.current() if r.scenario == "sse_degraded")
        text, _ = await watch_metrics(base, task, 0.1, lambda _: True)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            doc = await resp.json()
    assert 0.0 == sample(text, "probe_success", probe="feed")
    assert sample(text, "probed_stream_last_byte_age_seconds", stream="feed") < 0.5
    assert sample(text, "probed_stream_last_event_age_seconds", stream="feed") >= 1.0
    assert sample(text, "probed_stream_reconnects_total", stream="feed", reason="no_events") >= 1
    assert ["stream feed no_event_for"] == [e.signal for e in rec.evidence if "feed" in e.signal]
    [feed] = doc["streams"]
    assert feed["hints"][0].startswith("no event for ")
    assert "although the connection is alive" in feed["hints"][0]


# -- coalesced delivery (a buffering proxy) ------------------------------------------------------


async def test_events_held_back_and_delivered_in_one_read_are_a_burst() -> None:
    """20 events stamped 100 ms apart arriving in one read: one burst of 20 spanning 1.9 s."""

    async def buffered(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for round_ in range(3):
            sent = time.time()
            batch = b"".join(
                event(round_ * 20 + i + 1, lag=(19 - i) * 0.1, skew=0.0) for i in range(20)
            )
            await resp.write(batch)  # what a proxy flushing its buffer does
            await asyncio.sleep(max(0.0, 0.3 - (time.time() - sent)))
        await asyncio.sleep(30)
        return resp

    async with sse_server(buffered) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 60, within=5)
    assert 3 == stats.bursts
    assert 60 == stats.burst_events
    assert stats.last_burst is not None
    events, spread, _ = stats.last_burst
    assert 20 == events
    assert 1.85 <= spread <= 1.95
    [hint] = stream_hints(stats, time.monotonic())
    assert hint.startswith("events arrive in bursts (3 so far; the latest: 20 events produced ")
    assert "X-Accel-Buffering: no" in hint


async def test_events_sent_as_they_happen_are_never_a_burst() -> None:
    """Events written one by one, even quickly, are not coalesced delivery."""

    async def live(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for seq in range(1, 41):
            await resp.write(event(seq))
            await asyncio.sleep(0.02)
        await asyncio.sleep(30)
        return resp

    async with sse_server(live) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 40, within=5)
    assert (0, 0, None) == (stats.bursts, stats.burst_events, stats.last_burst)
    assert [] == stream_hints(stats, time.monotonic())
