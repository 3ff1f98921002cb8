"""The real Prometheus scrapes a live probed and evaluates the rules of ``probed rules``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from binaries import prometheus
from conftest import free_port
from probeservers import demo_health_toml

from probed.config import load_config
from probed.daemon import Daemon
from probed.demo import DemoTarget
from probed.rulefile import render_rules

#: Everything has to be scraped, recorded and queried within this many seconds.
WITHIN = 20.0

CONFIG = """
[daemon]
listen = "127.0.0.1:0"
location = "e2e"
state_dir = "{state_dir}"
log_level = "error"

{demo_health}
[[probes]]
name = "events"
kind = "sse"
target = "demo"
path = "/api/v1/events/stream"
lag_field = "enqueued_at"
sequence_field = "seq"

[[probes]]
name = "reflect"
kind = "reflect"
target = "demo"
stream = "events"
interval = "1s"
deadline = "500ms"
lost_after = "800ms"
timeout = "900ms"

[[slos]]
name = "health_availability"
sli = "availability"
probes = ["health"]
objective = 0.999

[[slos]]
name = "health_latency"
sli = "latency"
probes = ["health"]
threshold = "5s"
objective = 0.99

[[slos]]
name = "events_delivery"
sli = "delivery_lag"
stream = "events"
threshold = "5s"
objective = 0.95
"""


@contextlib.asynccontextmanager
async def running_prometheus(
    tmp_path: Path,
    rules: str,
    scrape_port: int,
    static_configs: list[dict[str, Any]] | None = None,
) -> AsyncIterator[str]:
    """Prometheus on a free loopback port scraping ``scrape_port`` every second as job
    ``probed`` (or the targets of ``static_configs``, each with its labels); yields its URL."""
    binary = prometheus()
    (tmp_path / "probed.rules.yml").write_text(rules)
    if static_configs is None:
        static_configs = [{"targets": [f"127.0.0.1:{scrape_port}"]}]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["probed.rules.yml"],
        "scrape_configs": [{"job_name": "probed", "static_configs": static_configs}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        "--storage.tsdb.retention.time=10m",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def query(http: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    """The instant vector of ``promql`` (empty while Prometheus is not up yet)."""
    try:
        async with http.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
            if resp.status != 200:
                return []
            body = await resp.json()
    except aiohttp.ClientConnectionError:
        return []
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_probed_and_records_slo_error_ratios(
    demo_target: DemoTarget, tmp_path: Path
) -> None:
    """Within 20 s Prometheus sees probe_success 1 and records a 0 error ratio for each SLO kind."""
    path = tmp_path / "probes.toml"
    demo_health = demo_health_toml(demo_target.base_url)
    path.write_text(CONFIG.format(state_dir=tmp_path / "state", demo_health=demo_health))
    config = load_config(path)
    daemon = Daemon(config, install_signal_handlers=False, shutdown_grace=1.0)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.wait_started(), 10)
        assert daemon.bound_port is not None
        (tmp_path / "prom").mkdir()
        async with (
            running_prometheus(tmp_path / "prom", render_rules(config), daemon.bound_port) as base,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        ):
            wanted = {
                "up": 'up{job="probed"}',
                "health": 'probe_success{probe="health"}',
                **{
                    slo.name: f'slo:sli_error:ratio_rate5m{{slo="{slo.name}"}}'
                    for slo in config.slos
                },
            }
            seen: dict[str, float] = {}
            deadline = time.monotonic() + WITHIN
            while time.monotonic() < deadline and len(seen) < len(wanted):
                for name, promql in wanted.items():
                    if name not in seen and (vector := await query(http, base, promql)):
                        seen[name] = float(vector[0]["value"][1])
                await asyncio.sleep(0.25)
            log = (tmp_path / "prom" / "prometheus.log").read_text(errors="replace")
            assert set(wanted) == set(seen), f"missing {set(wanted) - set(seen)}; log:\n{log}"
            async with http.get(f"{base}/api/v1/rules") as resp:
                groups = (await resp.json())["data"]["groups"]
    finally:
        daemon.request_stop()
        assert 0 == await asyncio.wait_for(task, 15)
    assert {
        "up": 1.0,
        "health": 1.0,
        "health_availability": 0.0,
        "health_latency": 0.0,
        "events_delivery": 0.0,
    } == seen
    assert {
        "probed-slo-health_availability",
        "probed-slo-health_latency",
        "probed-slo-events_delivery",
        "probed",
    } == {g["name"] for g in groups}
    assert all("ok" == r["health"] for g in groups for r in g["rules"]), groups
