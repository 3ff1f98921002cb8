"""The metric families of ``/metrics``, the collector that writes them, and the registries.

Every family is written from the store on every scrape, so a probe removed by a reload
simply disappears from ``/metrics``. The collector writes its families once, against a
``probed.exposition.Writer``: prometheus_client's objects for its registry and encoders
(``collect``), or the exposition text itself, from label strings cached across scrapes
(``FrozenRegistry.expose``, what ``/metrics`` serves: the same bytes for a fraction of
the CPU). Nothing is registered on the global registry, and no ``_created`` series are
produced. Labels are bounded: probe and SLO names come from the config, the rest from
fixed sets.
"""

from __future__ import annotations

import copy
import platform
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from probed import __version__, clock
from probed.exposition import (
    Family,
    LabelCache,
    MetricWriter,
    Negotiated,
    Writer,
    compress,
    render,
)
from probed.gcpolicy import write_gc_pauses
from probed.maintenance import Maintenance, write_active
from probed.probemetrics import write_probe_families
from probed.recommend import SCENARIOS
from probed.serverstats import REJECT_REASONS, ServerStats
from probed.shard import Shard
from probed.signals import ComponentState, Evaluation, RecommendationState
from probed.sloexclusions import Exclusions
from probed.statehealth import REASONS, StateHealth
from probed.steps import Steps, at_once, batches
from probed.store import Histogram, ProbeState, ResultStore, StreamStats
from probed.streammetrics import write_stream_families

__all__ = ["DaemonInfo", "FrozenRegistry", "ProbedCollector", "ProbedRegistry", "build_registry"]


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
    event_loop: str = "asyncio"
    """The event loop the daemon runs on (``probed.eventloop.loop_name``)."""


class _StoreView:
    """What the collector reads of the store, copied: safe to read off the event loop.

    Probe and stream states are their snapshots (``ProbeState.snapshot``,
    ``StreamStats.snapshot``: counters, histograms and the stream clock copied, the
    collector reads nothing else that changes); ``now`` is the monotonic time of the
    copy, for ages, ``wall`` and ``stepped`` the clock readings the daemon-wide
    families report (so two writes of one snapshot say the same).
    """

    __slots__ = (
        "event_loop_lag",
        "in_flight",
        "now",
        "probes",
        "scheduler_lag",
        "stepped",
        "streams",
        "wall",
    )

    now: float
    wall: float
    stepped: float
    probes: list[ProbeState]
    streams: dict[str, StreamStats]
    scheduler_lag: Histogram
    event_loop_lag: float
    in_flight: int

    @classmethod
    def copy_steps(cls, store: ResultStore) -> Steps[_StoreView]:
        """A copy of ``store``, ``ITEMS_PER_STEP`` probes or streams per step (each one
        copied whole): 200 probes and 500 streams took milliseconds of the loop in one go.
        The clocks are read once all is copied, so no age is negative."""
        view = cls.__new__(cls)
        view.probes, view.streams = [], {}
        for probes in batches(list(store)):
            view.probes.extend(probe.snapshot() for probe in probes)
            yield
        for streams in batches(list(store.streams.items())):
            view.streams.update((name, stream.snapshot()) for name, stream in streams)
            yield
        view.scheduler_lag = store.scheduler_lag.copy()
        view.event_loop_lag = store.event_loop_lag
        view.in_flight = store.in_flight
        view.now = time.monotonic()
        view.wall = clock.wall()
        view.stepped = clock.stepped()
        return view

    def __iter__(self) -> Iterator[ProbeState]:
        return iter(self.probes)


class ProbedCollector(Collector):
    """Writes every probed metric family from the store on each scrape.

    ``write`` and ``collect`` read the live store, so they must run on the event loop's
    thread; ``snapshot()`` copies what they read in a few milliseconds (500 streams) and
    returns a collector over the copy, which may write in a worker thread.
    """

    def __init__(self, store: ResultStore | _StoreView, info: DaemonInfo) -> None:
        self._store = store
        self._info = info

    def snapshot(self) -> ProbedCollector:
        """A collector over a copy of the store and daemon info (see the class docs)."""
        return at_once(self.snapshot_steps())

    def snapshot_steps(self) -> Steps[ProbedCollector]:
        """``snapshot`` in steps (``probed.steps``: ``_StoreView.copy_steps``)."""
        store = self._store
        view = store if isinstance(store, _StoreView) else (yield from _StoreView.copy_steps(store))
        info = copy.copy(self._info)
        info.alerts_sent, info.alerts_failed = (
            Counter(self._info.alerts_sent),
            Counter(self._info.alerts_failed),
        )
        info.state = self._info.state.copy()
        info.server = self._info.server.copy()
        info.exclusions = self._info.exclusions.copy()
        return ProbedCollector(view, info)

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's families (its registry's and encoders' way in)."""
        writer = MetricWriter()
        self.write(writer)
        return iter(writer.metrics)

    def write(self, w: Writer) -> None:
        """Every family, in ``/metrics`` order, to ``w``."""
        store, info = self._store, self._info
        states = list(store)
        streams = list(store.streams.values())
        if isinstance(store, _StoreView):
            now, wall, stepped = store.now, store.wall, store.stepped
        else:
            now, wall, stepped = time.monotonic(), clock.wall(), clock.stepped()
        write_probe_families(w, states, streams, now)
        write_stream_families(w, streams, now)
        _write_evaluation(w, info)
        _write_server(w, info.server)
        named = [(st.name, st.target) for st in states] + [(st.name, st.target) for st in streams]
        write_active(w, info.maintenance, named, wall)
        info.exclusions.write(w)
        w.histograms(SCHEDULER_LAG, [()], [store.scheduler_lag])
        w.value(EVENT_LOOP_LAG, store.event_loop_lag)
        w.value(PROBES_CONFIGURED, len(states))
        w.value(IN_FLIGHT, store.in_flight)
        w.value(CONCURRENCY_LIMIT, info.max_concurrency)
        w.value(RELOAD_SUCCESSFUL, 1 if info.config_reload_successful else 0)
        w.value(RELOAD_TIMESTAMP, info.config_reload_timestamp)
        w.samples(CONFIG_INFO, [(info.config_hash or "",)], [1])
        w.value(WALL_CLOCK_STEP, stepped)
        w.value(START_TIME, info.start_time)
        w.value(STATE_HEALTHY, 1 if info.state.healthy else 0)
        w.samples(
            STATE_FAILURES,
            [(reason,) for reason in REASONS],
            [info.state.failures[r] for r in REASONS],
        )
        build = (__version__, platform.python_version(), info.event_loop, info.location)
        w.samples(BUILD_INFO, [build], [1])
        w.samples(SHARD_INFO, [(str(info.shard.index), str(info.shard.total))], [1])
        write_gc_pauses(w)


SCHEDULER_LAG = Family.histogram(
    "probed_scheduler_lag_seconds",
    "How late probe runs started compared with their planned time.",
)
EVENT_LOOP_LAG = Family.gauge(
    "probed_event_loop_lag_seconds", "Latest measured event-loop lag (how late a timer fired)."
)
PROBES_CONFIGURED = Family.gauge("probed_probes_configured", "Number of configured probes.")
IN_FLIGHT = Family.gauge("probed_probes_in_flight", "Probe runs currently executing.")
CONCURRENCY_LIMIT = Family.gauge(
    "probed_concurrency_limit", "Maximum number of probe runs executing at once."
)
RELOAD_SUCCESSFUL = Family.gauge(
    "probed_config_last_reload_successful", "Whether the last configuration (re)load succeeded."
)
RELOAD_TIMESTAMP = Family.gauge(
    "probed_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful configuration load.",
)
CONFIG_INFO = Family.gauge(
    "probed_config_info",
    "Hash of the running config file (sha256, first 12 hex digits); always 1.",
    "hash",
)
WALL_CLOCK_STEP = Family.gauge(
    "probed_wall_clock_step_seconds",
    "How far the system clock has stepped from probed's own since start "
    "(lags and SLO buckets use probed's, which never steps).",
)
START_TIME = Family.gauge("probed_start_time_seconds", "Unix time the daemon started.")
STATE_HEALTHY = Family.gauge(
    "probed_state_healthy",
    "Whether the last write to the state directory succeeded (0 while writes fail "
    "or state is kept in memory only).",
)
STATE_FAILURES = Family.counter(
    "probed_state_write_failures",
    "Failed writes to the state directory (and failed attempts to open it), by reason.",
    "reason",
)
BUILD_INFO = Family.gauge(
    "probed_build_info",
    "Version of probed, of Python, the event loop and the location label; always 1.",
    "version",
    "python_version",
    "event_loop",
    "location",
)
SHARD_INFO = Family.gauge(
    "probed_shard_info",
    "Which shard of its location this instance is (index from 0, of total); always 1.",
    "index",
    "total",
)

SLI = Family.gauge(
    "probed_slo_sli_ratio",
    "Share of good events of the SLO over the rolling window (absent without events).",
    "slo",
    "window",
)
BURN_RATE = Family.gauge(
    "probed_slo_burn_rate",
    "Error-budget burn rate over the rolling window ((1 - SLI) / (1 - objective)).",
    "slo",
    "window",
)
BUDGET = Family.gauge(
    "probed_slo_error_budget_remaining_ratio",
    "Share of the error budget left over the SLO's window (negative once overspent).",
    "slo",
)
OBJECTIVE = Family.gauge("probed_slo_objective_ratio", "The SLO's objective.", "slo")
RECOMMENDATION = Family.gauge(
    "probed_recommendation_active",
    "1 while the scenario's degraded-mode recommendation is active (severity label), "
    "else 0 (severity none).",
    "scenario",
    "severity",
)
INCONCLUSIVE = Family.gauge(
    "probed_recommendation_inconclusive",
    "1 while the scenario's condition holds but a canary fails too (prober suspect) or it "
    "rests on lags not corrected for a clock skew.",
    "scenario",
)
COMPONENT = Family.gauge(
    "probed_component_status",
    "1 for the component's current state (OK, DEGRADED, DOWN, UNKNOWN), else 0.",
    "component",
    "state",
)
ALERTS_SENT = Family.counter(
    "probed_alerts_sent", "Notifications delivered, by target kind.", "target"
)
ALERTS_FAILED = Family.counter(
    "probed_alerts_failed",
    "Notifications that could not be delivered after retries, by target kind.",
    "target",
)
_ALERT_TARGETS = ("alertmanager", "webhook")
CONNECTIONS = Family.gauge(
    "probed_http_server_connections",
    "Connections open to the daemon's HTTP server (TLS handshakes included).",
)
REJECTED = Family.counter(
    "probed_http_server_rejected_connections",
    "Connections the HTTP server closed or refused, by reason: over_capacity (every "
    "connection busy), evicted (idle, closed to make room), header_timeout (no request "
    "headers in time), accept_error (accept failed, e.g. out of file descriptors).",
    "reason",
)
AUTH_OVERLOADED = Family.counter(
    "probed_http_server_auth_overloaded",
    "Requests answered 429 because the bcrypt queue was full.",
)


def _write_evaluation(w: Writer, info: DaemonInfo) -> None:
    """SLO, recommendation, component and alert-delivery families."""
    evaluation = info.evaluation
    slos = sorted(evaluation.signals.slos.items()) if evaluation is not None else []
    w.present(
        SLI,
        [((name, window), value) for name, st in slos for window, value in st.ratio.items()],
    )
    w.present(
        BURN_RATE,
        [((name, window), value) for name, st in slos for window, value in st.burn_rate.items()],
    )
    w.present(BUDGET, [((name,), st.budget_remaining) for name, st in slos])
    w.samples(OBJECTIVE, [(name,) for name, _ in slos], [st.objective for _, st in slos])
    active: list[tuple[tuple[str, str], int]] = []
    inconclusive: list[tuple[tuple[str], int]] = []
    components: list[tuple[tuple[str, str], int]] = []
    if evaluation is not None:
        by_scenario = {r.scenario: r for r in evaluation.recommendations}
        for scenario in SCENARIOS:
            rec = by_scenario.get(scenario)
            is_active = rec is not None and rec.state is RecommendationState.ACTIVE
            severity = rec.severity.value if rec is not None and is_active else "none"
            active.append(((scenario, severity), 1 if is_active else 0))
            held = rec is not None and rec.state is RecommendationState.INCONCLUSIVE
            inconclusive.append(((scenario,), 1 if held else 0))
        components = [
            ((comp.name, state.value), 1 if comp.state is state else 0)
            for comp in evaluation.components
            for state in ComponentState
        ]
    for family, pairs in (
        (RECOMMENDATION, active),
        (INCONCLUSIVE, inconclusive),
        (COMPONENT, components),
    ):
        w.samples(family, [key for key, _ in pairs], [value for _, value in pairs])
    targets = [(kind,) for kind in _ALERT_TARGETS]
    w.samples(ALERTS_SENT, targets, [info.alerts_sent[kind] for kind in _ALERT_TARGETS])
    w.samples(ALERTS_FAILED, targets, [info.alerts_failed[kind] for kind in _ALERT_TARGETS])


def _write_server(w: Writer, stats: ServerStats) -> None:
    w.value(CONNECTIONS, stats.connections)
    w.samples(
        REJECTED,
        [(reason,) for reason in REJECT_REASONS],
        [stats.rejected[reason] for reason in REJECT_REASONS],
    )
    w.value(AUTH_OVERLOADED, stats.auth_overloaded)


class FrozenRegistry(CollectorRegistry):
    """A registry over a snapshot of the store, to encode in a worker thread.

    prometheus_client's encoders read it like any registry; :meth:`expose` writes the same
    bytes, the probed families from the registry's label cache (``probed.exposition``),
    the process and platform collectors' few through prometheus_client.
    """

    def __init__(
        self, probed: ProbedCollector, labels: LabelCache, others: tuple[Collector, ...]
    ) -> None:
        super().__init__(auto_describe=False)
        self.probed = probed
        self.labels = labels
        self.register(probed)
        self.others = CollectorRegistry(auto_describe=False)
        for collector in others:
            self.register(collector)
            self.others.register(collector)

    def expose(self, chosen: Negotiated, *, gzip: bool = False) -> bytes:
        """The body for ``chosen`` (``probed.exposition.negotiate``), gzipped if asked."""
        if chosen.format is None:
            body = chosen.encoder(self)
        else:
            # the process and platform collectors' few lines, prometheus_client's own
            tail = chosen.encoder(self.others)
            body = render(self.probed.write, chosen.format, self.labels, tail=tail)
        return compress(body) if gzip else body


class ProbedRegistry(CollectorRegistry):
    """The daemon's own registry: the probed collector plus process, platform and GC ones,
    and the label cache its scrapes share."""

    def __init__(self, store: ResultStore, info: DaemonInfo) -> None:
        super().__init__(auto_describe=False)
        self.probed = ProbedCollector(store, info)
        self.register(self.probed)
        self._others: tuple[Collector, ...] = (
            ProcessCollector(registry=self),
            PlatformCollector(registry=self),
            # python_gc_objects_collected_total: reference cycles found per generation
            GCCollector(registry=self),
        )
        self.labels = LabelCache()
        """The line prefixes of the last scrape's series (``probed.exposition``)."""

    def frozen(self) -> FrozenRegistry:
        """A registry over a snapshot of the store, to collect and encode in a worker thread.

        Call it on the event loop (it copies the store: cheap next to encoding); the
        process and platform collectors read ``/proc`` and the GC one copies its
        histograms: safe anywhere.
        """
        return at_once(self.frozen_steps())

    def frozen_steps(self) -> Steps[FrozenRegistry]:
        """``frozen`` in steps, for ``probed.steps.in_slices`` on the loop."""
        probed = yield from self.probed.snapshot_steps()
        return FrozenRegistry(probed, self.labels, self._others)


def build_registry(store: ResultStore, info: DaemonInfo) -> ProbedRegistry:
    """A fresh registry with the probed collector and process/platform collectors."""
    registry = ProbedRegistry(store, info)
    if not info.start_time:
        info.start_time = time.time()
    return registry
