"""Metric names and the custom Collector that builds them from the result store.

The collector reads the store on every scrape, so a probe removed by a reload simply
disappears from ``/metrics``. Nothing is registered on the global registry, and no
``_created`` series are produced (families are built without a created timestamp).
Labels are bounded: probe and SLO names come from the config, the rest from fixed sets.
"""

from __future__ import annotations

import copy
import platform
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from probed import __version__, clock
from probed.config import MODEL_OF_KIND
from probed.maintenance import Maintenance, active_family
from probed.peermetrics import peer_families
from probed.recommend import SCENARIOS
from probed.serverstats import REJECT_REASONS, ServerStats
from probed.shard import Shard
from probed.signals import ComponentState, Evaluation, RecommendationState
from probed.sloexclusions import Exclusions
from probed.statehealth import REASONS, StateHealth
from probed.store import Histogram, ProbeState, ResultStore
from probed.streammetrics import stream_families

__all__ = ["DaemonInfo", "ProbedCollector", "ProbedRegistry", "build_registry"]

PHASES = ("resolve", "connect", "tls", "processing", "transfer")


@dataclass(slots=True)
class DaemonInfo:
    """Daemon-wide facts the collector exports besides the store."""

    location: str = "default"
    shard: Shard = field(default_factory=Shard)
    """Which shard of the location this instance is (``[daemon] shard``)."""
    max_concurrency: int = 0
    config_reload_successful: bool = True
    config_reload_timestamp: float = 0.0
    config_reload_error: str | None = None
    """Why the last reload failed (None after a successful one)."""
    config_reload_failed_at: float | None = None
    config_path: str | None = None
    config_hash: str | None = None
    """The running config's ``Config.source_hash`` (None: not loaded from a file)."""
    config_loaded_at: float | None = None
    config_file_hash: str | None = None
    """After a failed reload: the hash of the file that failed (None if it was unreadable)."""
    config_problems: list[str] = field(default_factory=list)
    """After a failed reload: every problem (``config_reload_error`` is them joined)."""
    start_time: float = 0.0
    evaluation: Evaluation | None = None
    """The latest SLO/recommendation evaluation (set by the daemon)."""
    alerts_sent: Counter[str] = field(default_factory=Counter)
    alerts_failed: Counter[str] = field(default_factory=Counter)
    state: StateHealth = field(default_factory=StateHealth)
    """Whether the state directory takes writes (the daemon shares it with the persister)."""
    server: ServerStats = field(default_factory=ServerStats)
    maintenance: Maintenance | None = None
    """The daemon's maintenance windows (``probed_maintenance_active``); shared, not copied."""
    exclusions: Exclusions = field(default_factory=Exclusions)


def _histogram(
    name: str, doc: str, labels: list[str], values: list[str], hist: Histogram
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    family.add_metric(values, hist.cumulative(), sum_value=hist.sum)
    return family


class _StoreView:
    """What the collector reads of the store, copied: safe to read off the event loop.

    Probe and stream states are their snapshots (``ProbeState.snapshot``,
    ``StreamStats.snapshot``: counters, histograms and the stream clock copied, the
    collector reads nothing else that changes); ``now`` is the monotonic time of the
    copy, for ages.
    """

    __slots__ = ("event_loop_lag", "in_flight", "now", "probes", "scheduler_lag", "streams")

    def __init__(self, store: ResultStore) -> None:
        self.now = time.monotonic()
        self.probes = [st.snapshot() for st in store]
        self.streams = {name: st.snapshot() for name, st in store.streams.items()}
        self.scheduler_lag = store.scheduler_lag.copy()
        self.event_loop_lag = store.event_loop_lag
        self.in_flight = store.in_flight

    def __iter__(self) -> Iterator[ProbeState]:
        return iter(self.probes)


class ProbedCollector(Collector):
    """Builds every probed metric family from the store on each scrape.

    ``collect`` reads the live store, so it must run on the event loop's thread;
    ``snapshot()`` copies what it reads in a few milliseconds (500 streams) and
    returns a collector over the copy, whose ``collect`` may run in a worker
    thread: building the samples of hundreds of streams takes far longer than the copy
    (bench/README.md has the figures).
    """

    def __init__(self, store: ResultStore | _StoreView, info: DaemonInfo) -> None:
        self._store = store
        self._info = info

    def snapshot(self) -> ProbedCollector:
        """A collector over a copy of the store and daemon info (see the class docs)."""
        info = copy.copy(self._info)
        info.alerts_sent, info.alerts_failed = (
            Counter(self._info.alerts_sent),
            Counter(self._info.alerts_failed),
        )
        info.state = self._info.state.copy()
        info.server = self._info.server.copy()
        info.exclusions = self._info.exclusions.copy()
        store = self._store
        return ProbedCollector(store if isinstance(store, _StoreView) else _StoreView(store), info)

    def collect(self) -> Iterator[Metric]:
        store = self._store
        states = list(store)
        store_now = store.now if isinstance(store, _StoreView) else time.monotonic()

        success = GaugeMetricFamily(
            "probe_success", "Whether the last run of the probe succeeded (1) or not (0).",
            labels=["probe"],
        )  # fmt: skip
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "Duration of the last run of the probe.", labels=["probe"]
        )
        status = GaugeMetricFamily(
            "probe_http_status_code",
            "HTTP status code of the last run's final response (0 if none).",
            labels=["probe"],
        )
        phases = GaugeMetricFamily(
            "probe_http_duration_seconds",
            "Duration of each HTTP phase in the last run.",
            labels=["probe", "phase"],
        )
        info = GaugeMetricFamily(
            "probed_probe_info",
            "Static facts about a configured probe; always 1.",
            labels=["probe", "kind", "target"],
        )
        last_run = GaugeMetricFamily(
            "probed_probe_last_run_timestamp_seconds",
            "Unix time the last run of the probe started.",
            labels=["probe"],
        )
        last_ok = GaugeMetricFamily(
            "probed_probe_last_success_timestamp_seconds",
            "Unix time the last successful run of the probe started.",
            labels=["probe"],
        )
        runs = CounterMetricFamily(
            "probed_probe_runs",
            "Probe runs by result (success or failure).",
            labels=["probe", "result"],
        )
        failures = CounterMetricFamily(
            "probed_probe_failures",
            "Failed probe runs by reason (see the README for the fixed set).",
            labels=["probe", "reason"],
        )
        skipped = CounterMetricFamily(
            "probed_probe_skipped",
            "Scheduled ticks that did not start a run (overlap: previous run still in flight; "
            "missed: the scheduler fell more than an interval behind).",
            labels=["probe", "reason"],
        )
        limited = CounterMetricFamily(
            "probed_probe_rate_limited",
            "Runs answered 429 Too Many Requests.",
            labels=["probe"],
        )
        retry_after = GaugeMetricFamily(
            "probed_probe_retry_after_seconds",
            "Retry-After of the last 429 answer (absent if it had none).",
            labels=["probe"],
        )
        histograms: list[Metric] = []
        for st in states:
            info.add_metric([st.name, st.kind, st.target], 1)
            for result in ("success", "failure"):
                runs.add_metric([st.name, result], st.runs[result])
            for reason, count in sorted(st.failures.items()):
                failures.add_metric([st.name, reason], count)
            for reason in ("overlap", "missed"):
                skipped.add_metric([st.name, reason], st.skipped[reason])
            limited.add_metric([st.name], st.rate_limited)
            if st.last_retry_after is not None:
                retry_after.add_metric([st.name], st.last_retry_after)
            if st.last_success_at is not None:
                last_ok.add_metric([st.name], st.last_success_at)
            last = st.last
            if last is not None:
                success.add_metric([st.name], 1 if last.success else 0)
                duration.add_metric([st.name], last.duration)
                last_run.add_metric([st.name], last.started_at)
                if getattr(MODEL_OF_KIND.get(st.kind), "REPORTS_HTTP_STATUS", False):
                    status.add_metric([st.name], last.result.status_code or 0)
                    for phase in PHASES:
                        if phase in last.result.phases:
                            phases.add_metric([st.name, phase], last.result.phases[phase])
        hist = HistogramMetricFamily(
            "probed_probe_duration_seconds",
            "Distribution of probe run durations.",
            labels=["probe"],
        )
        for st in states:
            hist.add_metric([st.name], st.durations.cumulative(), sum_value=st.durations.sum)
        histograms.append(hist)

        reflect = HistogramMetricFamily(
            "probed_reflect_lag_seconds",
            "Reflect probes: time from just before the inject request to the canary's arrival, "
            "on our monotonic clock.",
            labels=["probe"],
        )
        for st in states:
            if st.delivery_lag is not None:
                reflect.add_metric(
                    [st.name], st.delivery_lag.cumulative(), sum_value=st.delivery_lag.sum
                )
        histograms.append(reflect)

        for stream in store.streams.values():
            # a stream watcher is "succeeding" while all its connections are up and events
            # keep coming (pings alone deliver nothing)
            up = stream.connected >= stream.subscribers and not stream.silent_for(store_now)
            success.add_metric([stream.name], 1 if up else 0)
            info.add_metric([stream.name, "sse", stream.target], 1)
        yield from (success, duration, status, phases, info, last_run, last_ok)
        yield from peer_families(states)
        yield from (runs, failures, skipped, limited, retry_after)
        yield from histograms
        yield from stream_families(store.streams, store_now)
        yield from _evaluation_families(self._info)
        yield from _server_families(self._info.server)
        named = [(st.name, st.target) for st in states] + [
            (st.name, st.target) for st in store.streams.values()
        ]
        yield active_family(self._info.maintenance, named, clock.wall())
        yield self._info.exclusions.family()

        yield _histogram(
            "probed_scheduler_lag_seconds",
            "How late probe runs started compared with their planned time.",
            [],
            [],
            store.scheduler_lag,
        )
        yield GaugeMetricFamily(
            "probed_event_loop_lag_seconds",
            "Latest measured event-loop lag (how late a timer fired).",
            value=store.event_loop_lag,
        )
        yield GaugeMetricFamily(
            "probed_probes_configured", "Number of configured probes.", value=len(states)
        )
        yield GaugeMetricFamily(
            "probed_probes_in_flight", "Probe runs currently executing.", value=store.in_flight
        )
        yield GaugeMetricFamily(
            "probed_concurrency_limit",
            "Maximum number of probe runs executing at once.",
            value=self._info.max_concurrency,
        )
        yield GaugeMetricFamily(
            "probed_config_last_reload_successful",
            "Whether the last configuration (re)load succeeded.",
            value=1 if self._info.config_reload_successful else 0,
        )
        yield GaugeMetricFamily(
            "probed_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=self._info.config_reload_timestamp,
        )
        config = GaugeMetricFamily(
            "probed_config_info",
            "Hash of the running config file (sha256, first 12 hex digits); always 1.",
            labels=["hash"],
        )
        config.add_metric([self._info.config_hash or ""], 1)
        yield config
        yield GaugeMetricFamily(
            "probed_wall_clock_step_seconds",
            "How far the system clock has stepped from probed's own since start "
            "(lags and SLO buckets use probed's, which never steps).",
            value=clock.stepped(),
        )
        yield GaugeMetricFamily(
            "probed_start_time_seconds",
            "Unix time the daemon started.",
            value=self._info.start_time,
        )
        yield from _state_families(self._info.state)
        build = GaugeMetricFamily(
            "probed_build_info",
            "Version of probed, of Python, and the location label; always 1.",
            labels=["version", "python_version", "location"],
        )
        build.add_metric([__version__, platform.python_version(), self._info.location], 1)
        yield build
        shard = GaugeMetricFamily(
            "probed_shard_info",
            "Which shard of its location this instance is (index from 0, of total); always 1.",
            labels=["index", "total"],
        )
        shard.add_metric([str(self._info.shard.index), str(self._info.shard.total)], 1)
        yield shard


def _state_families(state: StateHealth) -> Iterator[Metric]:
    """``probed_state_healthy`` and ``probed_state_write_failures_total{reason}``."""
    yield GaugeMetricFamily(
        "probed_state_healthy",
        "Whether the last write to the state directory succeeded (0 while writes fail "
        "or state is kept in memory only).",
        value=1 if state.healthy else 0,
    )
    failures = CounterMetricFamily(
        "probed_state_write_failures",
        "Failed writes to the state directory (and failed attempts to open it), by reason.",
        labels=["reason"],
    )
    for reason in REASONS:
        failures.add_metric([reason], state.failures[reason])
    yield failures


def _evaluation_families(info: DaemonInfo) -> Iterator[Metric]:
    """SLO, recommendation, component and alert-delivery families."""
    evaluation = info.evaluation
    sli = GaugeMetricFamily(
        "probed_slo_sli_ratio",
        "Share of good events of the SLO over the rolling window (absent without events).",
        labels=["slo", "window"],
    )
    burn = GaugeMetricFamily(
        "probed_slo_burn_rate",
        "Error-budget burn rate over the rolling window ((1 - SLI) / (1 - objective)).",
        labels=["slo", "window"],
    )
    budget = GaugeMetricFamily(
        "probed_slo_error_budget_remaining_ratio",
        "Share of the error budget left over the SLO's window (negative once overspent).",
        labels=["slo"],
    )
    objective = GaugeMetricFamily(
        "probed_slo_objective_ratio", "The SLO's objective.", labels=["slo"]
    )
    active = GaugeMetricFamily(
        "probed_recommendation_active",
        "1 while the scenario's degraded-mode recommendation is active (severity label), "
        "else 0 (severity none).",
        labels=["scenario", "severity"],
    )
    inconclusive = GaugeMetricFamily(
        "probed_recommendation_inconclusive",
        "1 while the scenario's condition holds but a canary fails too (prober suspect) or it "
        "rests on lags not corrected for a clock skew.",
        labels=["scenario"],
    )
    component = GaugeMetricFamily(
        "probed_component_status",
        "1 for the component's current state (OK, DEGRADED, DOWN, UNKNOWN), else 0.",
        labels=["component", "state"],
    )
    if evaluation is not None:
        for name, st in sorted(evaluation.signals.slos.items()):
            objective.add_metric([name], st.objective)
            for window, value in st.ratio.items():
                if value is not None:
                    sli.add_metric([name, window], value)
            for window, value in st.burn_rate.items():
                if value is not None:
                    burn.add_metric([name, window], value)
            if st.budget_remaining is not None:
                budget.add_metric([name], st.budget_remaining)
        by_scenario = {r.scenario: r for r in evaluation.recommendations}
        for scenario in SCENARIOS:
            rec = by_scenario.get(scenario)
            is_active = rec is not None and rec.state is RecommendationState.ACTIVE
            severity = rec.severity.value if rec is not None and is_active else "none"
            active.add_metric([scenario, severity], 1 if is_active else 0)
            inconclusive.add_metric(
                [scenario],
                1 if rec is not None and rec.state is RecommendationState.INCONCLUSIVE else 0,
            )
        for comp in evaluation.components:
            for state in ComponentState:
                component.add_metric([comp.name, state.value], 1 if comp.state is state else 0)
    yield from (sli, burn, budget, objective, active, inconclusive, component)
    sent = CounterMetricFamily(
        "probed_alerts_sent", "Notifications delivered, by target kind.", labels=["target"]
    )
    failed = CounterMetricFamily(
        "probed_alerts_failed",
        "Notifications that could not be delivered after retries, by target kind.",
        labels=["target"],
    )
    for kind in ("alertmanager", "webhook"):
        sent.add_metric([kind], info.alerts_sent[kind])
        failed.add_metric([kind], info.alerts_failed[kind])
    yield from (sent, failed)


def _server_families(stats: ServerStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "probed_http_server_connections",
        "Connections open to the daemon's HTTP server (TLS handshakes included).",
        value=stats.connections,
    )
    rejected = CounterMetricFamily(
        "probed_http_server_rejected_connections",
        "Connections the HTTP server closed or refused, by reason: over_capacity (every "
        "connection busy), evicted (idle, closed to make room), header_timeout (no request "
        "headers in time), accept_error (accept failed, e.g. out of file descriptors).",
        labels=["reason"],
    )
    for reason in REJECT_REASONS:
        rejected.add_metric([reason], stats.rejected[reason])
    yield rejected
    yield CounterMetricFamily(
        "probed_http_server_auth_overloaded",
        "Requests answered 429 because the bcrypt queue was full.",
        value=stats.auth_overloaded,
    )


class ProbedRegistry(CollectorRegistry):
    """The daemon's own registry: the probed collector plus process and platform ones."""

    def __init__(self, store: ResultStore, info: DaemonInfo) -> None:
        super().__init__(auto_describe=False)
        self.probed = ProbedCollector(store, info)
        self.register(self.probed)
        ProcessCollector(registry=self)
        PlatformCollector(registry=self)

    def frozen(self) -> CollectorRegistry:
        """A registry over a snapshot of the store, to collect and encode in a worker thread.

        Call it on the event loop (it copies the store: cheap next to collecting); the
        process and platform collectors read ``/proc`` and are safe anywhere.
        """
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.probed.snapshot())
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        return registry


def build_registry(store: ResultStore, info: DaemonInfo) -> ProbedRegistry:
    """A fresh registry with the probed collector and process/platform collectors."""
    registry = ProbedRegistry(store, info)
    if not info.start_time:
        info.start_time = time.time()
    return registry
