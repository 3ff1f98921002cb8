"""Fault drills on the demo target: a degraded mode is recommended everywhere, then resolved.

Scenario A (SSE delayed past 5 s) and C (429s) are rehearsed against a live daemon: the
recommendation must show in /api/v1/recommendations, the status page, the metrics, one log
line per transition and the real Alertmanager, and disappear from all of them once the fault
is removed. Windows are shortened so the drill takes about half a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from polling import until

from probed.config import load_config
from probed.daemon import Daemon
from probed.demo import DemoTarget, Faults
from probed.signals import Severity

PASSWORD = "drill-Secret-77"


def drill_config(tmp_path: Path, demo_url: str, alertmanager: str) -> Path:
    """Two health probes, the event stream, short recommendation windows, Alertmanager."""
    text = f"""
[daemon]
listen = "127.0.0.1:0"
location = "drill"
state_dir = "{tmp_path}/state"

[targets.demo]
base_url = "{demo_url}"

[[probes]]
name = "health"
kind = "http"
target = "demo"
path = "/health"
interval = "500ms"
timeout = "400ms"

[[probes]]
name = "liveness"
kind = "http"
target = "demo"
path = "/health/liveness"
interval = "500ms"
timeout = "400ms"

[[probes]]
name = "events"
kind = "sse"
target = "demo"
path = "/api/v1/events/stream"
idle_timeout = "10s"
lag_field = "enqueued_at"
sequence_field = "seq"

[recommend]
window = "6s"
evaluate_every = "250ms"
min_runs = 3
enter_for = "1s"
exit_for = "2s"

[alerting]
alertmanager_urls = ["{alertmanager}"]
resend_interval = "1s"
timeout = "2s"
"""
    path = tmp_path / "probes.toml"
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def publishing(demo: DemoTarget) -> AsyncIterator[None]:
    """Publish an event every 100 ms so the stream has traffic to time."""

    async def loop() -> None:
        n = 0
        while True:
            n += 1
            demo.publish("drill.tick", {"n": n})
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Views:
    """Everything an operator can look at, read from the live daemon and Alertmanager."""

    def __init__(self, http: aiohttp.ClientSession, base: str, alertmanager: str) -> None:
        self.http, self.base, self.am = http, base, alertmanager

    async def recommendation(
        self, scenario: str, severity: str | None = None
    ) -> dict[str, Any] | None:
        """The scenario's active recommendation (with ``severity`` if given), else None."""
        async with self.http.get(f"{self.base}/api/v1/recommendations") as resp:
            doc = await resp.json()
        for rec in doc["recommendations"]:
            if (
                rec["scenario"] == scenario
                and rec["state"] == "active"
                and (severity is None or rec["severity"] == severity)
            ):
                return dict(rec)
        return None

    async def page(self) -> str:
        async with self.http.get(f"{self.base}/") as resp:
            return await resp.text()

    async def metric(self, scenario: str) -> str:
        async with self.http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        prefix = f'probed_recommendation_active{{scenario="{scenario}",'
        return next(line for line in text.splitlines() if line.startswith(prefix))

    async def alert(self, scenario: str) -> dict[str, Any] | None:
        async with self.http.get(f"{self.am}/api/v2/alerts") as resp:
            alerts = await resp.json()
        for alert in alerts:
            if alert["labels"].get("scenario") == scenario:
                return dict(alert)
        return None


async def _with_severity(
    alert: Awaitable[dict[str, Any] | None], severity: str
) -> dict[str, Any] | None:
    found = await alert
    if found is not None and found["labels"]["severity"] == severity:
        return found
    return None


async def drill(
    views: Views,
    logs: Sequence[Mapping[str, Any]],
    scenario: str,
    severity: str,
    start: Callable[[], Any],
    stop: Callable[[], Any],
    within: float,
) -> dict[str, Any]:
    """Apply a fault, check the recommendation appears everywhere, remove it, check it goes."""
    await start()
    rec: dict[str, Any] = await until(
        lambda: views.recommendation(scenario, severity),
        within,
        every=0.2,
        what=f"{scenario} {severity}",
    )
    assert f'data-scenario="{scenario}"' in await views.page()
    assert f'{{scenario="{scenario}",severity="{severity}"}} 1.0' in await views.metric(scenario)
    alert = await until(
        lambda: _with_severity(views.alert(scenario), severity),
        5,
        every=0.2,
        what=f"{scenario} in Alertmanager",
    )
    routing = Severity(severity).routing.value
    expected = {"scenario": scenario, "severity": severity, "routing": routing, "location": "drill"}
    assert expected.items() <= alert["labels"].items()
    assert rec["runbook_url"] == alert["annotations"]["runbook_url"]
    await stop()

    async def gone() -> bool:
        return await views.recommendation(scenario) is None

    await until(gone, within + 10, every=0.2, what=f"{scenario} resolved")
    assert 'severity="none"} 0.0' in await views.metric(scenario)
    assert f'data-scenario="{scenario}"' not in await views.page()

    async def alert_gone() -> bool:
        return await views.alert(scenario) is None

    await until(alert_gone, 5, every=0.2, what=f"{scenario} resolved in Alertmanager")
    transitions = [
        (e["old_state"], e["new_state"])
        for e in logs
        if e.get("event") == "recommendation_transition"
        and e.get("scenario") == scenario
        and e["old_state"] != e["new_state"]  # same-state lines are severity changes
    ]
    assert [(None, "pending"), ("pending", "active"), ("active", "resolved")] == transitions
    return rec


async def test_drill_sse_delay_and_rate_limits(
    tmp_path: Path, alertmanager: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stream delay past 5 s recommends scenario A, 429s scenario C; both resolve everywhere."""
    async with DemoTarget(password=PASSWORD) as demo, publishing(demo):
        config = load_config(drill_config(tmp_path, demo.base_url, alertmanager))
        daemon = Daemon(config, install_signal_handlers=False, shutdown_grace=1.0)
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(daemon.run())
            await daemon.wait_started()
            base = f"http://127.0.0.1:{daemon.bound_port}"
            try:
                async with aiohttp.ClientSession() as http:
                    views = Views(http, base, alertmanager)
                    rec = await drill(
                        views,
                        logs,
                        "sse_degraded",
                        "Sev-2",
                        lambda: demo.set_faults(Faults(stream_delay=5.5)),
                        lambda: demo.set_faults(Faults()),
                        within=15,
                    )
                    lag = next(e for e in rec["evidence"] if "lag_p95" in e["signal"])
                    assert lag["value"] > 5.0
                    assert 5.0 == lag["threshold"]
                    assert "events" in lag["signal"]
                    await drill(
                        views,
                        logs,
                        "rate_limited",
                        "Sev-2",
                        lambda: demo.set_faults(Faults(rate_limit_ratio=1.0, paths=["/health*"])),
                        lambda: demo.set_faults(Faults()),
                        within=10,
                    )
            finally:
                daemon.request_stop()
                assert 0 == await task
