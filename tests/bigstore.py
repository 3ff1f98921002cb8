"""A large, varied store and daemon info: what a busy daemon's ``/metrics`` reads.

Probes of every kind (phases, status codes, TLS facts, failures by reason, 429s with and
without Retry-After, skipped ticks, reflect lags, probes that never ran), streams with
one to three subscribers, default and custom lag buckets, clock readings, bursts and
reconnects, SLOs, recommendations, components, maintenance windows, excluded events,
alerts, state-directory failures, server rejections and a shard.
"""

from __future__ import annotations

import dataclasses
import time

from probed.config import SloConfig
from probed.maintenance import Maintenance, MaintenanceWindow
from probed.metrics import DaemonInfo
from probed.recommend import SCENARIOS
from probed.results import ProbeResult, ProbeRun, Reason, TlsInfo
from probed.shard import Shard
from probed.signals import (
    ComponentState,
    ComponentStatus,
    Evaluation,
    Recommendation,
    RecommendationState,
    Severity,
    Signals,
    SloStatus,
)
from probed.sloexclusions import Exclusions
from probed.store import ResultStore

__all__ = ["KINDS", "big_store"]

KINDS = ("http", "login", "fixture", "reflect", "import")
FAILURES = (Reason.TIMEOUT, Reason.STATUS, Reason.CONNECT_REFUSED, Reason.SLOW, Reason.DNS)


def _result(i: int, k: int, kind: str) -> ProbeResult:
    """The ``k``-th run of probe ``i``: mostly successes, some failures of several reasons."""
    phases = {"resolve": 0.0004, "connect": 0.001 * (k % 4), "processing": 0.002 + k / 1e4}
    if k % 9 == 8:
        return ProbeResult.fail(Reason.RATE_LIMITED, status_code=429, retry_after=k % 4 * 1.5)
    if k % 5 == 4:
        reason = FAILURES[(i + k) % len(FAILURES)]
        code = 503 if reason is Reason.STATUS else None
        return ProbeResult.fail(reason, status_code=code, phases=phases)
    observations: dict[str, float] = {}
    if kind == "reflect":
        observations["delivery_lag_seconds"] = 0.01 * (k + 1)
    result = ProbeResult.ok(status_code=200, phases=phases, **observations)
    tls = TlsInfo("TLS 1.3", 1_800_000_000.0 + i, None if i % 3 else 1_900_000_000.5)
    return dataclasses.replace(result, http_version=1.1, tls=tls if i % 2 else None)


def big_store(probes: int = 200, streams: int = 500) -> tuple[ResultStore, DaemonInfo]:
    """A filled store (``probes`` probes, ``streams`` streams) and daemon info over it."""
    store = ResultStore()
    now = time.time()
    for i in range(probes):
        kind = KINDS[i % len(KINDS)]
        name, target = f"probe_{i}", f"target_{i % 7}"
        store.register(name, kind, target)
        if i % 17 == 16:
            continue  # configured, never ran
        for k in range(24 + i % 5):
            result = _result(i, k, kind)
            store.record(ProbeRun(name, kind, target, "r", "t" * 32, now - 60 + k, k / 97, result))
        for _ in range(i % 3):
            store.skipped(name, "overlap" if i % 2 else "missed")
    for i in range(streams):
        buckets = (0.001, 0.01, 0.1, 1.0, 10.0) if i % 11 == 0 else None
        stats = (
            store.register_stream(f"stream_{i}", f"feed_{i % 5}", 1 + i % 3, buckets)
            if buckets is not None
            else store.register_stream(f"stream_{i}", f"feed_{i % 5}", 1 + i % 3)
        )
        stats.connection_opened(0.004 + i / 1e5, primary=True)
        if i % 4:
            stats.first_event(0.05)
            stats.bytes_read(time.monotonic() - 1.5)
            stats.event_received(time.monotonic() - 2.0, now - 2.0)
        for k in range(100):
            stats.observe_lag(0.0003 * k * (1 + i % 13), now - 100 + k, late=k > 95)
        stats.sequence_observed("duplicate" if i % 2 else "new", i % 3)
        stats.connection_ended("eof")
        if i % 6 == 0:
            stats.connection_ended("stalled")
            stats.burst(4, 0.3, time.monotonic())
            stats.server_asked_retry(2.5)
            stats.retry_was_capped()
        if i % 7 == 0:
            stats.clock_reading("date", 0.2, 1.2)
        if stats.subscribers > 1:
            stats.fanout_observed(0.002 * (i % 9))
    return store, _info(now, probes)


def _info(now: float, probes: int) -> DaemonInfo:
    slos = [
        SloConfig(name="api_ok", sli="availability", objective=0.999, probes=["probe_0"]),
        SloConfig(
            name="api_fast", sli="latency", objective=0.99, probes=["probe_1"], threshold="250ms"
        ),
        SloConfig(
            name="feed_lag", sli="delivery_lag", objective=0.95, stream="stream_0", threshold="1s"
        ),
    ]
    exclusions = Exclusions(slos)
    exclusions.run("probe_0", False, 0.3, "maintenance")
    exclusions.run("probe_1", True, 0.1, "prober_overloaded")
    exclusions.lag("stream_0", 2.0, "clock_skew")
    statuses = {
        "api_ok": SloStatus(
            "api_ok", "availability", 0.999, 30 * 86400.0, {"5m": 0.98, "1h": None},
            {"5m": 20.0, "1h": None}, -0.25, {"5m": 50},
        ),
        "api_fast": SloStatus(
            "api_fast", "latency", 0.99, 86400.0, {"5m": 1.0, "1h": 0.995},
            {"5m": 0.0, "1h": 0.5}, 0.75, {"5m": 50, "1h": 600},
        ),
        "feed_lag": SloStatus(
            "feed_lag", "delivery_lag", 0.95, 86400.0, {"5m": None}, {"5m": None}, None, {},
        ),
    }  # fmt: skip
    recommendation = Recommendation(
        scenario=SCENARIOS[0], title="Target down", severity=Severity.SEV1,
        state=RecommendationState.ACTIVE, since=now - 60, evidence=(), actions=("page",),
        rollback="when up", runbook_url="", summary="down",
    )  # fmt: skip
    inconclusive = dataclasses.replace(
        recommendation, scenario=SCENARIOS[2], state=RecommendationState.INCONCLUSIVE
    )
    components = tuple(
        ComponentStatus(name, state, ("probe_0",), (), None)
        for name, state in (
            ("API Read", ComponentState.OK),
            ("API Write", ComponentState.DEGRADED),
            ("SSE Stream", ComponentState.DOWN),
        )
    )
    evaluation = Evaluation(
        at=now,
        signals=Signals(now=now, window=300.0, slos=statuses),
        components=components,
        recommendations=(recommendation, inconclusive),
    )
    window = MaintenanceWindow(
        start=now - 10,
        end=now + 3600,
        targets=frozenset({"target_3"}),
        probes=frozenset({f"probe_{probes // 2}", "stream_7"}),
        reason="upgrade",
    )
    info = DaemonInfo(
        location="lab",
        shard=Shard(1, 3),
        max_concurrency=64,
        config_hash="a1b2c3d4e5f6",
        config_reload_timestamp=now - 3600,
        start_time=now - 7200,
        evaluation=evaluation,
        maintenance=Maintenance([window]),
        exclusions=exclusions,
    )
    info.alerts_sent["alertmanager"] += 12
    info.alerts_failed["webhook"] += 1
    info.state.failures["no_space"] += 2
    info.server.rejected["over_capacity"] += 3
    info.server.connections = 4
    return info
