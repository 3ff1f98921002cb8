"""Maintenance windows in a live in-process daemon: runs recorded, nothing raised, no SLO burn."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import ServeApp
from livedaemon import app_of, health, live_daemon, sample, watch_metrics

from probed.cli import main
from probed.signals import RecommendationState


async def broken(request: web.Request) -> web.Response:
    """A failing target's /health."""
    return web.json_response({"status": "down"}, status=500)


def write_config(tmp_path: Path, app_url: str, other_url: str) -> Path:
    """Two failing probes on two targets; target 'app' is under maintenance."""
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[targets.app]
base_url = "{app_url}"

[targets.other]
base_url = "{other_url}"

[[probes]]
name = "health"
kind = "http"
target = "app"
path = "/health"
interval = "200ms"
timeout = "150ms"

[[probes]]
name = "elsewhere"
kind = "http"
target = "other"
path = "/health"
interval = "200ms"
timeout = "150ms"

[[slos]]
name = "availability"
sli = "availability"
probes = ["health", "elsewhere"]
objective = 0.99

[recommend]
window = "8s"
evaluate_every = "1s"
enter_for = "2s"

[[maintenance]]
start = "2020-01-01T00:00:00Z"
end = "2099-01-01T00:00:00+01:00"
targets = ["app"]
reason = "database upgrade"
"""
    )
    return path


async def test_a_failing_target_under_maintenance_raises_nothing(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """Runs of a target under maintenance reach /metrics but neither the SLOs nor the rules."""
    app_url = await serve_app(app_of(("/health", broken)))
    other_url = await serve_app(app_of(("/health", broken)))
    path = write_config(tmp_path, app_url, other_url)
    async with live_daemon(path) as (daemon, task, base):
        slo_probes: list[str] = []
        record = daemon.evaluator.slo.record_run

        def recording(probe: str, success: bool, duration: float, at: float) -> None:
            slo_probes.append(probe)
            record(probe, success, duration, at)

        daemon.evaluator.slo.record_run = recording  # type: ignore[method-assign]

        def active() -> list[str]:
            engine = daemon.evaluator.engine
            return [r.scenario for r in engine.current() if r.state is RecommendationState.ACTIVE]

        async with asyncio.timeout(30):
            while "health_failing" not in active():
                await asyncio.sleep(0.2)
        recs = {r.scenario: r for r in daemon.evaluator.engine.current()}
        text, _ = await watch_metrics(base, task, 0.1, lambda _: True)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            doc = await resp.json()
    evidence = [e.signal for r in recs.values() for e in r.evidence]
    assert ["probe elsewhere failure_ratio"] == [s for s in evidence if s.startswith("probe ")]
    assert "elsewhere" in slo_probes
    assert "health" not in slo_probes
    health_failures = sample(text, "probed_probe_runs_total", probe="health", result="failure")
    assert health_failures >= 3
    # the generated rules subtract what the SLO left out: exactly health's runs, all bad
    excluded = {
        (outcome, why): sample(
            text, "probed_slo_excluded_events_total", slo="availability", outcome=outcome, why=why
        )
        for outcome in ("good", "bad")
        for why in ("maintenance", "prober_overloaded")
    }
    assert {
        ("good", "maintenance"): 0.0,
        ("bad", "maintenance"): health_failures,
        ("good", "prober_overloaded"): 0.0,
        ("bad", "prober_overloaded"): 0.0,
    } == excluded
    assert 1.0 == sample(text, "probed_maintenance_active", probe="health")
    assert 0.0 == sample(text, "probed_maintenance_active", probe="elsewhere")
    until = datetime(2098, 12, 31, 23, tzinfo=UTC).timestamp()
    assert {"health": until, "elsewhere": None} == {
        p["probe"]: p.get("maintenance_until") for p in doc["probes"]
    }
    assert ["database upgrade"] == [w["reason"] for w in doc["maintenance"]]


async def test_probed_silence_opens_a_window_on_a_live_daemon(
    tmp_path: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """``probed silence`` adds an ad hoc window the status shows; an unknown probe is refused."""
    app_url = await serve_app(app_of(("/health", health)))
    path = write_config(tmp_path, app_url, app_url)
    path.write_text(path.read_text().split("[[maintenance]]")[0])
    async with live_daemon(path) as (daemon, _, base):
        silence = ("silence", "--url", base, "--for", "30m", "--reason", "deploy")
        before = time.time()
        assert 0 == await asyncio.to_thread(main, [*silence, "--probe", "elsewhere"])
        out = capsys.readouterr().out
        assert 1 == await asyncio.to_thread(main, [*silence, "--probe", "nope"])
        err = capsys.readouterr().err
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            doc = await resp.json()
        covered = daemon.evaluator.maintenance.covers("elsewhere", "other", time.time())
    assert "maintenance of probes elsewhere until " in out
    assert "unknown probe(s) 'nope'" in err
    assert covered is not None
    assert before + 1800 <= covered.end <= time.time() + 1800
    assert {"health": None, "elsewhere": covered.end} == {
        p["probe"]: p.get("maintenance_until") for p in doc["probes"]
    }
    assert [("deploy", True)] == [(w["reason"], w["active"]) for w in doc["maintenance"]]


async def test_an_ad_hoc_window_survives_a_restart(tmp_path: Path, serve_app: ServeApp) -> None:
    """A silence opened through the API is still in force after the daemon restarts."""
    app_url = await serve_app(app_of(("/health", health)))
    path = write_config(tmp_path, app_url, app_url)
    path.write_text(path.read_text().split("[[maintenance]]")[0])
    silence = ("silence", "--for", "30m", "--reason", "deploy", "--probe", "elsewhere")
    async with live_daemon(path) as (daemon, _, base):
        assert 0 == await asyncio.to_thread(main, [*silence[:1], "--url", base, *silence[1:]])
        opened = daemon.evaluator.maintenance.ad_hoc
    async with live_daemon(path) as (daemon, _, base):
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            doc = await resp.json()
        kept = daemon.evaluator.maintenance.ad_hoc
    assert 1 == len(opened)
    assert opened == kept
    assert [("deploy", True)] == [(w["reason"], w["active"]) for w in doc["maintenance"]]
