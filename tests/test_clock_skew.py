"""Clock skew of a stream's target: measured, corrected (or not), and never raised as a Sev.

Each server here runs on its own clock, ``time.time() + skew``: it stamps
``enqueued_at``, answers ``time_path`` and sends ``Date`` from that clock. Every
event is stamped ``TRUE_LAG`` before the server writes it, so the true delivery
lag is ``TRUE_LAG`` plus the loopback's own delivery time.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from conftest import ServeApp
from livedaemon import live_daemon, sample, watch_metrics
from polling import until
from test_watcher import stream_spec

from probed.config import SseStream, TargetConfig
from probed.signals import RecommendationState
from probed.skew import StreamClock
from probed.store import ResultStore, StreamStats
from probed.stream.hub import Hub
from probed.stream.manager import StreamManager

SKEW = 30.0
TRUE_LAG = 0.2
"""Seconds between an event's enqueue stamp and the server writing it."""


@dataclass
class SkewedServer:
    """An SSE target whose clock is ``skew`` seconds off ours."""

    skew: float
    future: float = 0.0
    """Stamp events this far in the server's future instead of TRUE_LAG in its past."""
    per_connection: int | None = None
    """Close each connection after this many events (None: keep it open)."""
    connections: int = 0
    written: int = 0
    time_answers: int = 0
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def now(self) -> float:
        return time.time() + self.skew

    async def sse(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        date = formatdate(self.now(), usegmt=True)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Date": date})
        await resp.prepare(request)
        for n in itertools.count():
            if self.per_connection is not None and n >= self.per_connection:
                return resp
            stamp = self.now() + self.future if self.future else self.now() - TRUE_LAG
            await resp.write(
                f'data: {{"seq": {next(self.seq)}, "enqueued_at": {stamp!r}}}\n\n'.encode()
            )
            self.written += 1
            await asyncio.sleep(0.02)
        return resp  # pragma: no cover - the loop above only ends by returning

    async def time(self, request: web.Request) -> web.Response:
        self.time_answers += 1
        return web.json_response({"time": self.now()})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sse", self.sse)
        app.router.add_get("/time", self.time)
        return app


@asynccontextmanager
async def watching(
    base_url: str, spec: SseStream
) -> AsyncIterator[tuple[StreamStats, list[float]]]:
    """Run a watcher for ``spec``; yield its stats and every lag it reported to the SLO hook."""
    target = TargetConfig(base_url=base_url)
    target._finish_headers()
    store, lags = ResultStore(), []

    class Lags:
        def lag_measured(self, stream: str, lag: float, wall: float) -> None:
            lags.append(lag)

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
        manager = StreamManager(store, Hub(), session, lag_sinks=[Lags()])
        manager.start(tg, [spec], {"t": target})
        try:
            yield store.streams[spec.name], lags
        finally:
            await manager.stop()


def lag_errors(label: str, lags: list[float]) -> list[float]:
    """Each lag minus TRUE_LAG; prints their mean, min and max (the figures reported)."""
    errors = [lag - TRUE_LAG for lag in lags]
    ms = [round(x * 1000, 3) for x in (statistics.fmean(errors), min(errors), max(errors))]
    print(f"\n{label}: lag error mean {ms[0]:+} ms, min {ms[1]:+} ms, max {ms[2]:+} ms "
          f"over {len(errors)} events")  # fmt: skip
    return errors


def timed_spec(**fields: Any) -> SseStream:
    return stream_spec(
        sequence_field="seq", time_path="/time", clock_check_interval="100ms", **fields
    )


async def test_time_path_corrects_lags_of_a_server_30s_behind(serve_app: ServeApp) -> None:
    """Corrected lags are within 5 ms of the true lag; offset and uncertainty are exported."""
    server = SkewedServer(-SKEW)
    url = await serve_app(server.app())
    async with watching(url, timed_spec()) as (stats, lags):
        await until(lambda: len(lags) >= 40 and server.time_answers >= 5, within=10)
    errors = lag_errors("30 s behind", lags)
    assert abs(statistics.fmean(errors)) < 0.005
    assert min(errors) > -0.005
    hist = stats.delivery_lag
    assert abs(hist.sum / hist.count - TRUE_LAG) < 0.005
    assert 0 == stats.negative_lag
    clock = stats.clock
    offset, uncertainty = clock.offset, clock.uncertainty
    assert offset is not None
    assert uncertainty is not None
    print(f"offset {offset:+.6f} s ± {uncertainty * 1000:.3f} ms")
    assert abs(offset + SKEW) <= uncertainty + 0.001, (offset, uncertainty)
    assert uncertainty < 0.005
    assert offset == clock.applied
    assert not clock.skewed


async def test_time_path_corrects_lags_of_a_server_30s_ahead(serve_app: ServeApp) -> None:
    """30 s ahead: lags are measured (not negative) and within 5 ms of the true lag."""
    server = SkewedServer(SKEW)
    url = await serve_app(server.app())
    async with watching(url, timed_spec()) as (stats, lags):
        await until(lambda: stats.received >= 40 and server.time_answers >= 5, within=10)
    assert 0 == stats.negative_lag
    assert len(lags) == stats.delivery_lag.count >= 40
    errors = lag_errors("30 s ahead", lags)
    assert abs(statistics.fmean(errors)) < 0.005
    assert min(errors) > -0.005


async def test_date_headers_of_several_connections_converge(serve_app: ServeApp) -> None:
    """Without time_path, the Date headers of successive connections narrow the offset down,
    and the true offset stays within the stated uncertainty."""
    skew = SKEW + 0.37
    server = SkewedServer(skew, per_connection=2)
    url = await serve_app(server.app())
    spec = stream_spec(sequence_field="seq", reconnect_initial="50ms")
    async with watching(url, spec) as (stats, lags):
        await until(lambda: stats.clock.samples >= 1, within=5)
        first = (stats.clock.offset, stats.clock.uncertainty)
        await until(lambda: server.connections >= 15, within=15)
        clock = stats.clock
        offset, uncertainty, samples = clock.offset, clock.uncertainty, clock.samples
    assert offset is not None
    assert uncertainty is not None
    assert first[0] is not None
    assert first[1] is not None
    print(
        f"\nDate only: first connection {first[0]:+.3f} s ± {first[1]:.3f} s; after "
        f"{samples} samples {offset:+.3f} s ± {uncertainty:.3f} s (true {skew:+.3f})"
    )
    assert first[1] >= 0.5  # one Date header: 1 s resolution
    assert abs(offset - skew) <= uncertainty
    assert uncertainty < 0.25
    assert samples >= 8
    assert 0 == stats.negative_lag
    assert all(-uncertainty - 0.5 <= lag - TRUE_LAG <= 0.5 + 0.05 for lag in lags)


async def test_future_stamps_beyond_the_uncertainty_are_counted_negative(
    serve_app: ServeApp,
) -> None:
    """Events stamped 2 s in the server's future are counted, never recorded as lag."""
    server = SkewedServer(-SKEW, future=2.0)
    url = await serve_app(server.app())
    async with watching(url, timed_spec()) as (stats, lags):
        await until(lambda: stats.received >= 10, within=10)
    assert [] == lags
    assert stats.received == stats.negative_lag
    assert 0 == stats.delivery_lag.count


def test_negative_lags_within_the_uncertainty_are_recorded_as_zero() -> None:
    """After correction, a lag below 0 by less than the uncertainty is 0 (and counted)."""
    clock = StreamClock("correct", tolerance=1.0)
    assert clock.lag(5.0) is None  # no estimate yet: not corrected, counted
    clock.observe("time_path", -30.004, -29.996)  # offset -30 s ± 4 ms
    assert (-30.0, 0.004) == (round(clock.offset or 0, 6), round(clock.uncertainty or 0, 6))
    assert 0.25 == round(clock.lag(30.25) or 0, 6)  # server 30 s behind: raw = true + 30
    assert 0.0 == clock.lag(29.997)
    assert -0.5 == round(clock.lag(29.5) or 0, 6)
    assert (1, 1) == (clock.uncorrected, clock.within_uncertainty)
    trusted = StreamClock("trust", tolerance=1.0)
    trusted.observe("time_path", -30.004, -29.996)
    assert (30.25, True, 0.0) == (trusted.lag(30.25), trusted.skewed, trusted.applied)


async def test_ignore_measures_no_lag_and_no_clock(serve_app: ServeApp) -> None:
    """clock = "ignore": no lag is recorded and the time endpoint is never asked."""
    server = SkewedServer(-SKEW)
    url = await serve_app(server.app())
    async with watching(url, timed_spec(clock="ignore")) as (stats, lags):
        await until(lambda: stats.received >= 10, within=10)
    assert ([], 0, 0, 0) == (lags, stats.delivery_lag.count, stats.negative_lag, stats.untimed)
    assert (0, None, False) == (server.time_answers, stats.clock.offset, stats.clock.skewed)


def daemon_config(tmp_path: Path, url: str, clock: str) -> Path:
    """One stream on ``url`` with time_path, judged fast; ``clock`` is its clock setting."""
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[recommend]
window = "30s"
evaluate_every = "200ms"
enter_for = "400ms"

[targets.skewed]
base_url = "{url}"

[[probes]]
name = "feed"
kind = "sse"
target = "skewed"
path = "/sse"
sequence_field = "seq"
time_path = "/time"
clock_check_interval = "200ms"
clock = "{clock}"

[[slos]]
name = "lag"
sli = "delivery_lag"
stream = "feed"
threshold = "1s"
objective = 0.99
"""
    )
    return path


async def test_trusted_skew_makes_the_lag_recommendation_inconclusive(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """clock = "trust" with the server 30 s behind: the lag p95 of ~30 s raises no Sev; the
    recommendation is inconclusive (clock_skew), and the skew is on the status page."""
    server = SkewedServer(-SKEW)
    url = await serve_app(server.app())
    async with live_daemon(daemon_config(tmp_path, url, "trust")) as (daemon, task, base):
        engine = daemon.evaluator.engine

        def inconclusive(text: str) -> bool:
            return 1.0 == sample(
                text, "probed_recommendation_inconclusive", scenario="sse_degraded"
            )

        text, _ = await watch_metrics(base, task, 0.5, inconclusive)
        [rec] = [r for r in engine.current() if r.scenario == "sse_degraded"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/status") as resp:
                doc = await resp.json()
            async with http.get(f"{base}/") as resp:
                page = await resp.text()
    print(f"\ntrust, 30 s behind: {rec.summary}")
    assert "clock_skew" == rec.inconclusive_reason
    assert "clock_skew" in rec.summary
    assert [] == [
        r.scenario for r in engine.current() if r.state is not RecommendationState.INCONCLUSIVE
    ]
    actives = [
        line for line in text.splitlines() if line.startswith("probed_recommendation_active{")
    ]
    assert actives
    assert all(line.endswith(" 0.0") for line in actives), actives
    assert 1.0 == sample(text, "probed_recommendation_inconclusive", scenario="sse_degraded")
    assert 1.0 == sample(text, "probed_stream_clock_skewed", stream="feed")
    assert -SKEW == round(sample(text, "probed_stream_clock_offset_seconds", stream="feed"), 1)
    assert 0.0 == sample(text, "probed_stream_clock_offset_applied_seconds", stream="feed")
    assert (
        0.0 < sample(text, "probed_stream_clock_offset_uncertainty_seconds", stream="feed") < 0.01
    )
    # the SLO leaves the skewed lags out, and says so for the generated rules
    assert 0.0 < sample(
        text, "probed_slo_excluded_events_total", slo="lag", outcome="bad", why="clock_skew"
    )
    [stream] = doc["streams"]
    assert (True, "trust") == (stream["clock"]["skewed"], stream["clock"]["mode"])
    [doc_rec] = doc["recommendations"]
    assert ("inconclusive", "clock_skew") == (doc_rec["state"], doc_rec["inconclusive_reason"])
    assert 'data-clock-skewed="true"' in page


async def test_corrected_skew_raises_nothing(tmp_path: Path, serve_app: ServeApp) -> None:
    """clock = "correct" with the server 30 s behind: lags are the true ~0.2 s, nothing raised."""
    server = SkewedServer(-SKEW)
    url = await serve_app(server.app())
    async with live_daemon(daemon_config(tmp_path, url, "correct")) as (daemon, task, base):
        text, _ = await watch_metrics(
            base,
            task,
            1.5,
            lambda t: sample(t, "probed_delivery_lag_seconds_count", stream="feed") >= 30,
        )
        recs = daemon.evaluator.engine.current()
    assert [] == recs
    count = sample(text, "probed_delivery_lag_seconds_count", stream="feed")
    mean = sample(text, "probed_delivery_lag_seconds_sum", stream="feed") / count
    print(f"\ncorrect, 30 s behind: mean lag {mean * 1000:.1f} ms over {count:.0f} events")
    assert abs(mean - TRUE_LAG) < 0.005
    assert 0.0 == sample(text, "probed_stream_clock_skewed", stream="feed")
    assert -SKEW == round(
        sample(text, "probed_stream_clock_offset_applied_seconds", stream="feed"), 1
    )
