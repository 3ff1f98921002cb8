"""The result store: the latest run per probe, counters, histograms and a ring of recent runs.

The store is the one place results are kept. The Prometheus collector, the
status API and (later) the SLO evaluator read it; only the scheduler writes.
Everything is plain in-process state touched from the event loop's thread, so
no locks are needed.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from probed.buckets import (
    DELIVERY_LAG_BUCKETS,
    DURATION_BUCKETS,
    LAG_BUCKETS,
    REFLECT_LAG_BUCKETS,
)
from probed.results import ProbeRun, Reason
from probed.runring import RecentResult, RunRing
from probed.skew import Source, StreamClock
from probed.window import LagWindow, RunWindow

__all__ = [
    "Histogram",
    "ProbeState",
    "RecentResult",
    "ResultStore",
    "StreamStats",
]

_OVERLOADED = Reason.PROBER_OVERLOADED.value
_RATE_LIMITED = Reason.RATE_LIMITED.value

_LOOP_LAGS_KEPT = 64
"""Event-loop lag samples kept with their times (32 s at the monitor's 0.5 s period)."""


class Histogram:
    """A classic cumulative histogram with fixed upper bounds."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def copy(self) -> Histogram:
        """An independent copy (for reading off the event loop)."""
        other = Histogram.__new__(Histogram)
        other.bounds, other.counts, other.sum, other.count = (
            self.bounds,
            list(self.counts),
            self.sum,
            self.count,
        )
        return other

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs ending with ``+Inf``, as Prometheus exposes them."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else _fmt(bound), running))
        return out


def _fmt(value: float) -> str:
    text = repr(float(value))
    return text


_T = TypeVar("_T")


def _shallow_copier(cls: type[_T]) -> Callable[[_T], _T]:
    """A shallow copy of a slots dataclass's instances, five times faster than
    ``copy.copy`` (a scrape copies every probe and stream state): one attribute
    assignment per slot, written out as ``dataclasses`` writes its ``__init__``."""
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    assert all(name.isidentifier() for name in names)
    lines = "".join(f"    other.{name} = obj.{name}\n" for name in names)
    source = f"def shallow(obj):\n    other = new(cls)\n{lines}    return other\n"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    exec(source, namespace)  # names are the class's own slots, checked above
    copier: Callable[[_T], _T] = namespace["shallow"]
    return copier


def _counter(counts: Counter[str]) -> Counter[str]:
    """A copy of ``counts`` (``Counter(counts)`` goes through Python-level ``update``)."""
    copied: Counter[str] = Counter.__new__(Counter)
    dict.update(copied, counts)
    return copied


@dataclass(slots=True)
class ProbeState:
    """Everything the store knows about one probe."""

    name: str
    kind: str
    target: str
    ring_size: int
    signal_window: float = 300.0
    last: ProbeRun | None = None
    last_success_at: float | None = None
    runs: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    rate_limited: int = 0
    last_retry_after: float | None = None
    delivery_lag: Histogram | None = None
    """Reflect probes: the canary's delivery lag (created on first observation)."""
    recent: RunRing = field(init=False)
    """The last ``ring_size`` runs (charts, persistence), as columns (``probed.runring``)."""
    window: RunWindow = field(init=False)
    """Runs that started within the store's signal window (recommendations, status)."""
    version: int = 0
    """Bumped whenever a field the status document shows changes (``ResultStore.record``,
    a restore), so its cache (``probed.statuscache``) knows whether to rebuild the probe's part."""

    def __post_init__(self) -> None:
        self.recent = RunRing(self.ring_size)
        self.window = RunWindow(self.signal_window)

    def snapshot(self) -> ProbeState:
        """A copy whose counters and histograms are its own, for reading off the event
        loop (the ring and the window are shared, not copied: do not read them there)."""
        view = _copy_probe(self)
        view.runs, view.failures, view.skipped = (
            _counter(self.runs),
            _counter(self.failures),
            _counter(self.skipped),
        )
        view.durations = self.durations.copy()
        view.delivery_lag = self.delivery_lag.copy() if self.delivery_lag is not None else None
        return view

    def count_in_window(self, entry: RecentResult) -> None:
        """``count_run`` for a ring entry (a restore)."""
        self.count_run(
            entry.started_at, entry.duration, entry.success, entry.reason, entry.status_code
        )

    def count_run(
        self,
        started_at: float,
        duration: float,
        success: bool,
        reason: str | None,
        code: int | None,
    ) -> None:
        """Add one run to the signal window (``record`` does; so does a restore).

        A ``prober_overloaded`` run is left out: it judged probed, not the target.
        """
        if reason == _OVERLOADED:
            return
        self.window.add(
            started_at,
            duration,
            reason,
            failed=not success,
            limited=code == 429 or reason == _RATE_LIMITED,
        )


@dataclass(slots=True)
class StreamStats:
    """Everything the store knows about one stream watcher (all its subscribers)."""

    name: str
    target: str
    subscribers: int
    connected: int = 0
    connection_ids: list[str] = field(default_factory=list)
    connect_duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    first_event_seconds: float | None = None
    reconnects: Counter[str] = field(default_factory=Counter)
    last_byte: float | None = None
    """``time.monotonic()`` of the last bytes read on any subscriber (events, comments, pings)."""
    last_event: float | None = None
    """``time.monotonic()`` of the last event on any subscriber (comments do not count)."""
    event_timeout: float | None = None
    """The stream's ``event_timeout``: without an event for this long it delivers nothing."""
    watching_since: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when probed started watching (the event age before any event)."""
    last_event_wall: float | None = None
    received: int = 0
    untimed: int = 0
    unsequenced: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    late: int = 0
    negative_lag: int = 0
    sequence_resets: int = 0
    bursts: int = 0
    """Reads that delivered events held back and released together (``burst_spread``)."""
    burst_events: int = 0
    last_burst: tuple[int, float, float] | None = None
    """(events, stamp spread in seconds, ``time.monotonic()``) of the latest burst."""
    delivery_lag: Histogram = field(default_factory=lambda: Histogram(DELIVERY_LAG_BUCKETS))
    clock: StreamClock = field(default_factory=StreamClock)
    """The target's clock offset and how lags are corrected for it (``probed.skew``)."""
    fanout_spread: Histogram = field(default_factory=lambda: Histogram(DELIVERY_LAG_BUCKETS))
    down_since: float | None = None
    """``time.monotonic()`` since when the primary connection is down (None while up)."""
    server_retry: float | None = None
    """The reconnection time (seconds) the server last asked for with ``retry:``, uncapped."""
    retry_capped: int = 0
    """Reconnect waits for which the server's ``retry:`` was capped at ``retry_max``."""
    signal_window: float = 300.0
    lag_window: LagWindow = field(init=False)
    """Timed events within the signal window (lag p95, the status page's lag line)."""
    version: int = 0
    """Bumped by every recording method below, so a reader (the status document's cache,
    ``probed.statuscache``) knows whether anything changed since it last looked."""

    def __post_init__(self) -> None:
        if not self.connection_ids:
            self.connection_ids = [""] * self.subscribers
        self.lag_window = LagWindow(self.signal_window)

    def event_age(self, now: float) -> float:
        """Seconds since the last event, or since watching began if none came yet."""
        return max(0.0, now - (self.watching_since if self.last_event is None else self.last_event))

    def silent_for(self, now: float) -> float:
        """The event age once it reaches ``event_timeout`` (the stream delivers nothing), else 0."""
        age = self.event_age(now)
        return age if self.event_timeout is not None and age >= self.event_timeout else 0.0

    def snapshot(self) -> StreamStats:
        """A copy whose counters, histograms and clock are its own, for reading off the
        event loop (the connection ids and the lag window are shared, not copied)."""
        view = _copy_stream(self)
        view.reconnects = _counter(self.reconnects)
        view.delivery_lag = self.delivery_lag.copy()
        view.connect_duration = self.connect_duration.copy()
        view.fanout_spread = self.fanout_spread.copy()
        view.clock = _copy_clock(self.clock)
        return view

    @property
    def clock_offset(self) -> float | None:
        """Estimated target clock minus ours (seconds)."""
        return self.clock.offset

    # -- recording: the stream watcher's API (nothing else writes these fields) ------

    def went_down(self, now: float) -> None:
        """The primary connection is down from ``now`` (watching began, or it ended)."""
        self.version += 1
        self.down_since = now

    def connecting(self, subscriber: int, connection_id: str) -> None:
        """Subscriber ``subscriber`` starts connection attempt ``connection_id``."""
        self.version += 1
        self.connection_ids[subscriber] = connection_id

    def connection_opened(self, took: float, *, primary: bool) -> None:
        """A subscriber connected after ``took`` seconds (the primary: the stream is up)."""
        self.version += 1
        self.connect_duration.observe(took)
        self.connected += 1
        if primary:
            self.down_since = None

    def connection_closed(self, now: float, *, primary: bool) -> None:
        """A subscriber's connection ended at ``now``."""
        self.version += 1
        self.connected -= 1
        if primary:
            self.down_since = now

    def connection_ended(self, reason: str) -> None:
        """Count why a connection attempt or connection ended (a reconnect reason)."""
        self.version += 1
        self.reconnects[reason] += 1

    def bytes_read(self, now: float) -> None:
        """Bytes (events, comments or pings) arrived at ``now``."""
        self.version += 1
        self.last_byte = now

    def first_event(self, seconds: float) -> None:
        """A connection's first event came ``seconds`` after its attempt began."""
        self.version += 1
        self.first_event_seconds = seconds

    def event_received(self, now: float, wall: float) -> None:
        """One event (not a comment) arrived at ``now`` (monotonic) and ``wall``."""
        self.version += 1
        self.last_event = now
        self.received += 1
        self.last_event_wall = wall

    def untimed_event(self) -> None:
        """An event carried no readable enqueue stamp."""
        self.version += 1
        self.untimed += 1

    def clock_reading(self, source: Source, low: float, high: float) -> None:
        """A reading of the target's clock: its time lay in [low, high] of ours."""
        self.version += 1
        self.clock.observe(source, low, high)

    def observe_lag(self, lag: float, wall: float, *, late: bool = False) -> None:
        """Record one event's delivery lag (seconds, non-negative) received at ``wall``;
        ``late``: beyond the stream's ``late_after``."""
        self.version += 1
        self.delivery_lag.observe(lag)
        self.lag_window.observe(lag, wall)
        if late:
            self.late += 1

    def timed_event(self, raw: float, wall: float, late_after: float) -> float | None:
        """One event's ``raw`` lag (our wall clock minus its enqueue stamp), received at
        ``wall``, corrected for the clock offset: recorded (``observe_lag``; late beyond
        ``late_after``), or counted as negative (stamped after it arrived, beyond what the
        offset explains). Returns it, or None while the offset is unknown and must be
        corrected (the clock counts that)."""
        self.version += 1
        lag = self.clock.lag(raw)
        if lag is None:
            return None
        if lag < 0:
            self.negative_lag += 1
            return lag
        self.delivery_lag.observe(lag)
        self.lag_window.observe(lag, wall)
        if lag > late_after:
            self.late += 1
        return lag

    def unsequenced_event(self) -> None:
        """An event carried no readable sequence number."""
        self.version += 1
        self.unsequenced += 1

    def sequence_observed(self, verdict: str, lost: int) -> None:
        """One sequence number's verdict (``duplicate``, ``out_of_order``, ``late``,
        ``reset`` or ``new``) and the events it declared lost."""
        self.version += 1
        self.lost += lost
        if verdict == "new":
            return
        if verdict == "duplicate":
            self.duplicated += 1
        elif verdict == "out_of_order":
            self.out_of_order += 1
        elif verdict == "late":
            self.late += 1
        elif verdict == "reset":
            self.sequence_resets += 1

    def gaps_expired(self, lost: int) -> None:
        """Gaps older than the loss timeout were declared lost."""
        self.version += 1
        self.lost += lost

    def burst(self, events: int, spread: float, now: float) -> None:
        """One read delivered ``events`` stamped over ``spread`` seconds (held back)."""
        self.version += 1
        self.bursts += 1
        self.burst_events += events
        self.last_burst = (events, spread, now)

    def fanout_observed(self, spread: float) -> None:
        """Every subscriber got one event, the last ``spread`` seconds after the first."""
        self.version += 1
        self.fanout_spread.observe(spread)

    def server_asked_retry(self, seconds: float) -> None:
        """The server's ``retry:`` field (seconds, uncapped)."""
        self.version += 1
        self.server_retry = seconds

    def retry_was_capped(self) -> None:
        """A reconnect wait used ``retry_max`` instead of the server's longer ``retry:``."""
        self.version += 1
        self.retry_capped += 1


_copy_probe = _shallow_copier(ProbeState)
_copy_stream = _shallow_copier(StreamStats)
_copy_clock = _shallow_copier(StreamClock)


class ResultStore:
    """Per-probe state plus daemon-wide scheduler and event-loop measurements."""

    def __init__(self, ring_size: int = 120, signal_window: float = 300.0) -> None:
        self.ring_size = ring_size
        self.signal_window = signal_window
        self._probes: dict[str, ProbeState] = {}
        self.streams: dict[str, StreamStats] = {}
        self.scheduler_lag = Histogram(LAG_BUCKETS)
        self.event_loop_lag = 0.0
        self.event_loop_lag_max = 0.0
        self._loop_lags: deque[tuple[float, float]] = deque(maxlen=_LOOP_LAGS_KEPT)
        self.in_flight = 0

    def register(self, name: str, kind: str, target: str) -> ProbeState:
        """Start tracking a probe (a no-op that updates kind/target if it exists)."""
        state = self._probes.get(name)
        if state is None or state.kind != kind or state.target != target:
            state = ProbeState(name, kind, target, self.ring_size, self.signal_window)
            self._probes[name] = state
        return state

    def forget(self, name: str) -> None:
        """Stop tracking a probe: its series disappear from the next scrape."""
        self._probes.pop(name, None)

    def register_stream(
        self,
        name: str,
        target: str,
        subscribers: int,
        lag_buckets: Sequence[float] = DELIVERY_LAG_BUCKETS,
        *,
        event_timeout: float | None = None,
        clock: StreamClock | None = None,
    ) -> StreamStats:
        """Start tracking a stream watcher (fresh stats; ``lag_buckets``: of its lag
        histograms; ``event_timeout`` and ``clock``: the stream's settings)."""
        stats = StreamStats(
            name,
            target,
            subscribers,
            event_timeout=event_timeout,
            delivery_lag=Histogram(lag_buckets),
            fanout_spread=Histogram(lag_buckets),
            clock=StreamClock() if clock is None else clock,
            signal_window=self.signal_window,
        )
        self.streams[name] = stats
        return stats

    def forget_stream(self, name: str) -> None:
        """Stop tracking a stream: its series disappear from the next scrape."""
        self.streams.pop(name, None)

    def __iter__(self) -> Iterator[ProbeState]:
        return iter(list(self._probes.values()))

    def __len__(self) -> int:
        return len(self._probes)

    def get(self, name: str) -> ProbeState | None:
        """The state of ``name``, if tracked."""
        return self._probes.get(name)

    def record(self, run: ProbeRun) -> None:
        """Account one finished run."""
        state = self._probes.get(run.probe)
        if state is None:  # removed by a reload while the run was in flight
            return
        result = run.result
        state.version += 1
        state.last = run
        state.runs["success" if result.success else "failure"] += 1
        state.durations.observe(run.duration)
        if result.success:
            state.last_success_at = run.started_at
        elif result.reason is not None:
            state.failures[result.reason.value] += 1
        lag = result.observations.get("delivery_lag_seconds")
        if isinstance(lag, int | float):
            if state.delivery_lag is None:
                state.delivery_lag = Histogram(REFLECT_LAG_BUCKETS)
            state.delivery_lag.observe(lag)
        if result.reason is Reason.RATE_LIMITED or result.status_code == 429:
            state.rate_limited += 1
            retry_after = result.observations.get("retry_after")
            state.last_retry_after = (
                float(retry_after) if isinstance(retry_after, int | float) else None
            )
        reason = result.reason.value if result.reason else None
        state.recent.append(
            run.started_at, run.duration, result.success, reason, result.status_code
        )
        state.count_run(run.started_at, run.duration, result.success, reason, result.status_code)

    def skipped(self, name: str, reason: str) -> None:
        """Count a tick that did not start a run (``overlap`` or ``missed``)."""
        state = self._probes.get(name)
        if state is not None:
            state.skipped[reason] += 1

    def observe_scheduler_lag(self, seconds: float) -> None:
        """Record how late a run started compared with its planned time."""
        self.scheduler_lag.observe(max(0.0, seconds))

    def observe_loop_lag(self, seconds: float, at: float | None = None) -> None:
        """Record the latest event-loop lag sample (measured at monotonic time ``at``)."""
        self.event_loop_lag = seconds
        self.event_loop_lag_max = max(self.event_loop_lag_max, seconds)
        if at is not None:
            self._loop_lags.append((at, seconds))

    def loop_lag_between(self, start: float, end: float) -> float:
        """The largest event-loop lag sampled between monotonic ``start`` and ``end``."""
        return max((lag for at, lag in self._loop_lags if start <= at <= end), default=0.0)
