"""Metrics: the collector over the store, our own registry, and promtool on a live scrape."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from probed.metrics import DaemonInfo, build_registry
from probed.results import ProbeResult, ProbeRun, Reason
from probed.store import ResultStore


def make_run(probe: str, result: ProbeResult, duration: float = 0.12) -> ProbeRun:
    """A finished run of an http probe."""
    return ProbeRun(probe, "http", "app", "r1", "t1", time.time(), duration, result)


def populated() -> tuple[ResultStore, DaemonInfo]:
    """A store with one good and one failing probe."""
    store = ResultStore()
    store.register("health", "http", "app")
    store.register("login", "login", "app")
    store.record(make_run("health", ProbeResult.ok(status_code=200, phases={"connect": 0.001})))
    store.record(
        make_run("login", ProbeResult.fail(Reason.RATE_LIMITED, status_code=429, retry_after=7))
    )
    store.skipped("health", "overlap")
    store.observe_scheduler_lag(0.002)
    return store, DaemonInfo(location="lab", max_concurrency=8)


def test_blackbox_compatible_gauges() -> None:
    """probe_success, probe_duration_seconds, status code and phases carry the last run."""
    store, info = populated()
    reg = build_registry(store, info)
    assert 1.0 == reg.get_sample_value("probe_success", {"probe": "health"})
    assert 0.0 == reg.get_sample_value("probe_success", {"probe": "login"})
    assert 0.12 == reg.get_sample_value("probe_duration_seconds", {"probe": "health"})
    assert 429.0 == reg.get_sample_value("probe_http_status_code", {"probe": "login"})
    assert 0.001 == reg.get_sample_value(
        "probe_http_duration_seconds", {"probe": "health", "phase": "connect"}
    )


def test_counters_and_histograms() -> None:
    """Runs, failures by reason, skips, 429s and durations are exported as counters."""
    store, info = populated()
    reg = build_registry(store, info)
    get = reg.get_sample_value
    assert 1.0 == get("probed_probe_runs_total", {"probe": "health", "result": "success"})
    assert 0.0 == get("probed_probe_runs_total", {"probe": "health", "result": "failure"})
    assert 1.0 == get("probed_probe_failures_total", {"probe": "login", "reason": "rate_limited"})
    assert 1.0 == get("probed_probe_skipped_total", {"probe": "health", "reason": "overlap"})
    assert 1.0 == get("probed_probe_rate_limited_total", {"probe": "login"})
    assert 7.0 == get("probed_probe_retry_after_seconds", {"probe": "login"})
    assert 1.0 == get("probed_probe_duration_seconds_bucket", {"probe": "health", "le": "0.2"})
    assert 0.0 == get("probed_probe_duration_seconds_bucket", {"probe": "health", "le": "0.1"})
    assert 1.0 == get("probed_scheduler_lag_seconds_count")
    assert 1.0 == get(
        "probed_build_info",
        {"version": "0.1.0", "python_version": __import__("platform").python_version(),
         "event_loop": "asyncio", "location": "lab"},
    )  # fmt: skip


def test_forgotten_probe_disappears() -> None:
    """A probe removed from the store has no series in the next scrape."""
    store, info = populated()
    reg = build_registry(store, info)
    store.forget("login")
    text = generate_latest(reg).decode()
    assert 'probe="login"' not in text
    assert 'probe="health"' in text


def test_no_created_series_and_not_global() -> None:
    """No _created series are exposed and nothing lands on the global registry."""
    store, info = populated()
    text = generate_latest(build_registry(store, info)).decode()
    assert "_created" not in text
    assert "probe_success" not in generate_latest(REGISTRY).decode()


def test_frozen_registry_is_a_copy_that_reads_the_same() -> None:
    """frozen() (taken on the loop) says what the live registry says, and nothing later."""
    store, info = populated()
    stream = store.register_stream("events", "app", 2)
    stream.observe_lag(0.3, time.time())
    stream.reconnects["eof"] += 1
    info.alerts_sent["alertmanager"] += 1
    reg = build_registry(store, info)

    def text(registry: CollectorRegistry) -> list[str]:
        lines = generate_latest(registry).decode().splitlines()
        # process_* and the activity age change between two reads by themselves
        return [line for line in lines if not line.startswith(("process_", "probed_stream_last"))]

    frozen = reg.frozen()
    assert text(reg) == text(frozen)
    before = text(frozen)
    store.record(make_run("health", ProbeResult.fail(Reason.TIMEOUT)))
    store.skipped("health", "missed")
    stream.observe_lag(9.0, time.time())
    stream.reconnects["stalled"] += 1
    stream.received += 5
    info.alerts_sent["alertmanager"] += 1
    store.register("new", "http", "app")
    assert before == text(frozen)
    assert before != text(reg)
    assert 2.0 == reg.get_sample_value("probed_alerts_sent_total", {"target": "alertmanager"})
    assert 1.0 == frozen.get_sample_value("probed_alerts_sent_total", {"target": "alertmanager"})


def test_config_info_is_one_series_naming_the_running_config() -> None:
    """probed_config_info is always exactly one series, labelled with the running config's hash."""
    store, info = populated()
    reg = build_registry(store, info)

    def series() -> list[str]:
        lines = generate_latest(reg).decode().splitlines()
        return [line for line in lines if line.startswith("probed_config_info")]

    assert ['probed_config_info{hash=""} 1.0'] == series()
    info.config_hash = "a1b2c3d4e5f6"
    assert ['probed_config_info{hash="a1b2c3d4e5f6"} 1.0'] == series()
    info.config_hash = "d4e5f6a7b8c9"
    assert ['probed_config_info{hash="d4e5f6a7b8c9"} 1.0'] == series()


def test_shard_info_names_the_shard_also_without_sharding() -> None:
    """probed_shard_info{index,total} is one series, 0 of 1 unless ``[daemon] shard`` says
    otherwise, so a query can count a location's shards; promtool finds nothing in it."""
    import subprocess

    from binaries import promtool

    from probed.shard import Shard

    store, info = populated()
    reg = build_registry(store, info)

    def series() -> list[str]:
        lines = generate_latest(reg).decode().splitlines()
        return [line for line in lines if line.startswith("probed_shard_info")]

    assert ['probed_shard_info{index="0",total="1"} 1.0'] == series()
    info.shard = Shard(2, 3)
    assert ['probed_shard_info{index="2",total="3"} 1.0'] == series()
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=generate_latest(reg), capture_output=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert (0, b"", b"") == (checked.returncode, checked.stdout, checked.stderr)
