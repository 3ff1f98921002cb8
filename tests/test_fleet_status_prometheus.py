"""``probed status --prometheus`` against a real Prometheus on loopback.

A small exporter serves what probed exports at two locations (a fails every probe, b none)
and nothing for the third (c); a real Prometheus scrapes both every second with the
location as a target label and evaluates ``probed rules`` of the fleet config (short
``for``s). The fleet status then shows a isolated, b OK and c no data; once b goes silent
too, a alone is never isolated and b is no data, never OK.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ServeApp
from test_fleet_status import FLEET_TOML
from test_prometheus_e2e import running_prometheus

from probed.cli import main
from probed.config import Config, load_config
from probed.fleetclient import PrometheusClient, read_fleet
from probed.rulefile import render_rules

#: Scraped, recorded, alerted (``for: 1s``) and read back within this many seconds.
WITHIN = 40.0

SHORT_FORS = 'isolated_for = "1s"\ndown_for = "1s"\nquorum_for = "1s"\nrate_window = "5s"\n'


class Exporter:
    """``/metrics/a`` and ``/metrics/b``: probed's series at two locations; counters grow."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.silent: set[str] = set()

    def text(self, location: str) -> str:
        runs = int((time.monotonic() - self.started) * 10) + 1
        failing = location == "a"
        ok = 0 if failing else 1
        lines = [
            f'probed_build_info{{version="0.1.0",python_version="3.11",location="{location}"}} 1',
            *(f'probe_success{{probe="{p}"}} {ok}' for p in ("health", "readiness")),
            *(
                f'probed_probe_last_success_timestamp_seconds{{probe="{p}"}} {time.time() - 1:.3f}'
                for p in ("health", "readiness")
                if not failing
            ),
            *(
                f'probed_probe_runs_total{{probe="{p}",result="{result}"}} {count}'
                for p in ("health", "readiness")
                for result, count in (
                    ("success", 0 if failing else runs),
                    ("failure", runs if failing else 0),
                )
            ),
            *(f'probed_maintenance_active{{probe="{p}"}} 0' for p in ("health", "readiness")),
            'probed_stream_connected{stream="events"} 1',
            'probed_stream_subscribers{stream="events"} 1',
            *(
                f'probed_component_status{{component="{c}",state="{s}"}} {int(s == state)}'
                for c, state in (
                    ("API Read", "DOWN" if failing else "OK"),
                    ("SSE Stream", "OK"),
                )
                for s in ("OK", "DEGRADED", "DOWN", "UNKNOWN")
            ),
            'probed_recommendation_active{scenario="target_down",severity="'
            + ('Sev-2"} 1' if failing else 'none"} 0'),
        ]
        return "\n".join(lines) + "\n"

    async def metrics(self, request: web.Request) -> web.Response:
        location = request.match_info["location"]
        if location in self.silent:
            return web.Response(status=503, text="gone")
        return web.Response(text=self.text(location), content_type="text/plain")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics/{location}", self.metrics)
        return app


async def wait_for(
    client: PrometheusClient, config: Config, done: Any, what: str, log: Path
) -> dict[str, Any]:
    """The fleet document once ``done(doc)`` holds (read as ``probed status`` reads it)."""
    deadline = time.monotonic() + WITHIN
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            doc = await read_fleet(client, config)
        except Exception:  # Prometheus still starting
            doc = {}
        if doc and done(doc):
            return doc
        await asyncio.sleep(0.5)
    text = await asyncio.to_thread(log.read_text)
    pytest.fail(f"not within {WITHIN} s: {what}; last document {doc}; log:\n{text}")


def states(doc: dict[str, Any]) -> dict[str, str]:
    return {loc["location"]: loc["state"] for loc in doc["locations"]}


def firing(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(a["alertname"], a["labels"].get("location", "")) for a in doc["alerts"]}


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_fleet_status_from_a_real_prometheus(
    tmp_path: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET_TOML + SHORT_FORS)
    config = load_config(path, secrets=False)
    exporter = Exporter()
    base = await serve_app(exporter.app())
    host_port = base.removeprefix("http://")
    targets = [
        {"targets": [host_port], "labels": {"location": loc, "__metrics_path__": f"/metrics/{loc}"}}
        for loc in ("a", "b")
    ]
    (tmp_path / "prom").mkdir()
    log = tmp_path / "prom" / "prometheus.log"
    async with running_prometheus(
        tmp_path / "prom", render_rules(config), 0, static_configs=targets
    ) as prom:
        client = PrometheusClient(base_url=prom, timeout=5.0)
        doc = await wait_for(
            client,
            config,
            lambda d: (
                {("ProberIsolated", "a"), ("ProberDown", "c")} <= firing(d)
                and d["slos"][0]["error_ratio"]["5m"] is not None
            ),
            "a isolated and c down, alerted, and a fleet SLO ratio",
            log,
        )
        assert {"a": "isolated", "b": "OK", "c": "no data"} == states(doc)
        assert 0 == await run_cli("status", "--prometheus", prom, "-c", str(path))
        table = capsys.readouterr().out
        assert "Locations: a isolated, b OK, c no data (quorum 2 of 3)" in table, table
        api_read = next(line for line in table.splitlines() if line.startswith("API Read"))
        assert ["UNKNOWN", "DOWN (isolated)", "OK", "no data"] == [
            cell.strip() for cell in api_read.split("  ") if cell.strip()
        ][1:], table
        assert "[Sev-3] ProberIsolated location=a" in table, table
        assert "[Sev-3] ProberDown location=c" in table, table
        for fmt in ("markdown", "incident"):
            assert 0 == await run_cli("status", "--prometheus", prom, "-c", str(path), "-f", fmt)
            out = capsys.readouterr().out.splitlines()
            assert "Locations: a isolated, b OK, c no data" in out, (fmt, out)

        # b goes silent: a alone is never isolated, and b is no data, never OK
        exporter.silent.add("b")
        alone = {"a": "failing", "b": "no data", "c": "no data"}
        doc = await wait_for(
            client, config, lambda d: states(d) == alone, "a alone failing, b without data", log
        )
        health = next(m for m in doc["members"] if m["name"] == "health")
        assert (["a"], False) == (health["failing_at"], health["quorum"])
        assert "UNKNOWN" == doc["overall"]
        assert 0 == await run_cli("status", "--prometheus", prom, "-c", str(path), "-f", "markdown")
        assert "Locations: a failing, b no data, c no data" in capsys.readouterr().out
