"""Wall-clock steps on the probing host: delivery lag and SLO windows stay right.

probed times events against a wall clock that starts at the system's time and
then runs on the monotonic clock, so a step of the system clock (an operator's
``date -s``, an NTP step) changes neither measured lags nor SLO buckets; the
step itself is exported and logged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from conftest import ServeApp
from livedaemon import app_of, live_daemon, sample, watch_metrics

from probed import clock


def test_steady_wall_ignores_steps_of_the_system_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """clock.wall() keeps counting through a step; clock.step() reports the step's size."""
    real = time.time
    before = clock.wall()
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)
    assert abs(clock.wall() - before) < 1.0
    assert 3599.0 < clock.step() < 3601.0
    assert 3599.0 < clock.stepped() < 3601.0
    monkeypatch.setattr(time, "time", lambda: real() - 86400.0)
    assert -86401.0 < clock.step() < -86399.0
    assert 0.0 <= clock.wall() - before < 1.0
    monkeypatch.setattr(time, "time", lambda: real() + 0.0004)
    assert 0.0 == clock.stepped()


def received(text: str) -> float:
    """Events the stream has received, from a scrape."""
    return sample(text, "probed_events_received_total", stream="feed")


def more_than(seen: float) -> Callable[[str], bool]:
    """Whether a scrape shows more events received than ``seen``."""
    return lambda text: received(text) > seen


async def test_clock_steps_do_not_fake_delivery_lag_or_burn_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_app: ServeApp
) -> None:
    """A +1 h then -1 d step of the system clock: lags stay small and the SLO budget whole."""
    real: Callable[[], float] = time.time  # the product's clock does not step

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        seq = 0
        while True:
            seq += 1
            stamp = json.dumps({"seq": seq, "enqueued_at": int(real() * 1000)})
            await resp.write(f"data: {stamp}\n\n".encode())
            await asyncio.sleep(0.02)

    url = await serve_app(app_of(("/sse", stream)))
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[targets.t]
base_url = "{url}"

[[probes]]
name = "feed"
kind = "sse"
target = "t"
path = "/sse"
sequence_field = "seq"

[[slos]]
name = "delivery"
sli = "delivery_lag"
stream = "feed"
threshold = "5s"
objective = 0.95
window = "1h"
"""
    )
    with structlog.testing.capture_logs() as logs:
        async with live_daemon(path) as (daemon, task, base):
            text, _ = await watch_metrics(base, task, 0.5, lambda t: received(t) >= 10)
            for step in (3600.0, -86400.0):
                monkeypatch.setattr(time, "time", lambda step=step: real() + step)
                daemon.evaluator.evaluate()
                text, _ = await watch_metrics(base, task, 1.0, more_than(received(text)))
                evaluation, _ = daemon.evaluator.evaluate()
                slo = evaluation.signals.slos["delivery"]
                # no event may count as bad: the budget stays whole (the 5m ratio may still
                # be withheld for coverage this soon after start)
                assert (1.0, True) == (slo.budget_remaining, slo.events["5m"] > 0), step
                assert slo.ratio["5m"] in (None, 1.0), step
            monkeypatch.setattr(time, "time", real)
    timed = sample(text, "probed_delivery_lag_seconds_count", stream="feed")
    within = sample(text, "probed_delivery_lag_seconds_bucket", stream="feed", le="5.0")
    assert (timed, 0.0) == (within, sample(text, "probed_events_negative_lag_total", stream="feed"))
    assert timed >= 30
    assert -86401.0 < sample(text, "probed_wall_clock_step_seconds") < -86399.0
    jumps = [e["step_seconds"] for e in logs if e["event"] == "wall_clock_step"]
    assert 2 == len(jumps), jumps
