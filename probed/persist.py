"""State that survives a restart: SLO buckets, recommendation states, the results ring
and the transition history.

Everything lives in one SQLite file, ``<state_dir>/state.sqlite3``, in WAL mode
with ``synchronous=NORMAL``: a commit survives a killed process (SIGKILL, OOM)
and the file stays consistent after a power loss, which may lose only the last
commits. The file's format and how it is opened live in ``probed.statefile``,
``StateStore`` in ``probed.statestore``; this module is the policy and
re-exports the names callers need. Two objects:

``StateStore``
    The file: small synchronous methods (``sqlite3``), safe to call from
    ``asyncio.to_thread`` (one connection opened with
    ``check_same_thread=False``, every call under one lock). ``open()`` never
    raises: a file that is not SQLite, is damaged, belongs to another
    application (``PRAGMA application_id``) or has a newer schema is moved aside
    to ``state.sqlite3.corrupt-<UTC timestamp>`` (with its ``-wal`` and
    ``-shm``), logged as ``state_file_moved_aside`` with the reason, and a fresh
    file is started. A state directory that cannot be used at all (read-only,
    locked by another process) gives an in-memory store and a
    ``state_unavailable`` error line: the daemon runs, unpersisted.

``Persister``
    The policy the daemon runs. Runs (``record``) and timed stream events
    (``record_lag``) are appended to memory as they are fed to the SLO
    evaluator, and written every ``results_every`` (5 s); the recommendation
    states and the transition history (``probed.history``) are written with them
    when they changed; the SLO buckets every
    ``slo_every`` (60 s), because a snapshot of many long SLOs costs the event
    loop milliseconds (bench/README.md has the figures).

How a SIGKILL loses at most one interval
    The results ring keeps every run written after the latest SLO snapshot
    (pruning to ``ring_size`` per probe only touches runs the snapshot already
    counts), and each SLO snapshot is written in the same transaction as the
    runs taken from memory with it, together with the highest run (and lag
    row) number it covers. ``restore`` loads the snapshot and replays the runs
    and lag rows written after it into the SLO evaluator, so the windows
    continue exactly as the last write left them: a SIGKILL loses the runs and
    stream events of at most one ``results_every`` (plus the few milliseconds
    of a write in progress), and so does the recommendation state.

Stream lag samples
    Timed stream events can arrive by the thousand per second, so they are
    not kept one by one: ``record_lag`` counts them per stream, wall-clock
    second and *threshold class* (which of the stream's ``delivery_lag`` SLO
    thresholds they fall within) and keeps the largest lag of each class.
    Replaying ``count`` events of that largest lag at that second gives every
    delivery_lag SLO exactly the good/total counts it had, as long as its
    buckets are whole seconds (the default is 60 s). The lag rows are only a
    replay journal: the next SLO snapshot deletes them. The store's own lag
    window (the stream lag p95 signal) is not restored; it refills within the
    signal window.

When the state directory fails
    A failed write keeps its runs queued and marks ``health``
    (``probed.statehealth.StateHealth``) unhealthy with the reason; the next
    write waits ``results_every``, then twice as long each time up to
    ``retry_max`` (60 s). A store that fell back to memory keeps being written
    in memory, and every retry tries ``reopen``; once the file opens, the runs
    memory held are queued for it and the SLO buckets and recommendation
    states are written at once, so nothing held meanwhile is lost. The first
    successful write to the file marks ``health`` healthy again.

Counters are not persisted
    ``probed_probe_runs_total``, the failure counters and the duration
    histogram start from zero after a restart, as Prometheus counters may:
    ``rate()`` and ``increase()`` treat the drop as a reset. Restoring them
    would do harm: a restored value lower than the last scraped one (the lost
    interval) reads as a reset whose whole value counts as an increase.

What ``restore`` puts back in the result store
    Per configured probe: the recent ring (``ProbeState.recent``), the runs of
    it within the signal window (``ProbeState.window``, so failure ratios and
    p95s continue), ``last_success_at``, and, if the newest run lies within the
    signal window, ``last`` rebuilt from it (``run_id`` ``"restored"``, no
    phases or observations), so a failing canary keeps a recommendation
    inconclusive across a restart instead of briefly issuing it.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from probed import clock
from probed.config import ProbeSpec
from probed.history import History
from probed.maintenance import Maintenance
from probed.recommend import RecommendationEngine
from probed.results import ProbeResult, ProbeRun, Reason
from probed.slo import SloEvaluator
from probed.statefile import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    STATE_FILE,
    LagSample,
    StoredResult,
    is_damage,
)
from probed.statehealth import StateHealth, StateLock
from probed.statestore import StateStore
from probed.store import RecentResult, ResultStore

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "STATE_FILE",
    "LagSample",
    "Persisted",
    "Persister",
    "StateStore",
    "StoredResult",
]

_log = structlog.get_logger("probed.persist")

_MAX_PENDING_RESULTS = 200_000
_MAX_PENDING_LAG_KEYS = 200_000
_MAX_REPLAY_EVENTS = 10_000_000
"""A lag journal row claiming more events than this is damage, not data."""


# --- the policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class Persisted:
    """What the state file holds beside the result rings: objects the daemon owns and
    keeps across reloads; the persister saves and restores them, nothing more."""

    slo: SloEvaluator
    recommendations: RecommendationEngine
    history: History
    maintenance: Maintenance
    counts_for_slo: Callable[[str, str | None, float], bool]
    """Whether a run (probe, reason, start) or a stream's event (stream, None, arrival)
    counts in the SLOs: the replay leaves out what the live feed left out."""


class Persister:
    """Feeds the state file from the daemon and restores from it at startup.

    ``record`` and ``record_lag`` must be called for exactly the runs and
    events fed to the SLO evaluator, right beside those calls (same loop
    step, no ``await`` between): the replay after a SIGKILL relies on it.
    """

    def __init__(
        self,
        state: StateStore,
        parts: Persisted,
        store: ResultStore,
        *,
        results_every: float = 5.0,
        slo_every: float = 60.0,
        health: StateHealth | None = None,
        lock: StateLock | None = None,
        retry_max: float = 60.0,
    ) -> None:
        if not (results_every > 0 and slo_every > 0):
            raise ValueError("results_every and slo_every must be positive")
        self.state = state
        self.health = health if health is not None else StateHealth()
        """Whether the last write reached the state directory (read by the server)."""
        self.reopen: Callable[[], StateStore] | None = None
        """Opens the state file again after a fallback to memory, taking ``lock`` first
        (raises if it cannot)."""
        if state.state_dir is not None:
            self.health.state_dir = str(state.state_dir)
            self.reopen = functools.partial(
                StateStore.open_file, state.state_dir, ring_size=state.ring_size, lock=lock
            )
        self.retry_max = retry_max
        """Longest wait between two retries of a failing state directory (seconds)."""
        self._retry_delay = 0.0
        self._retry_at = -math.inf
        """``time.monotonic()`` before which a failing state directory is left alone."""
        if state.error is not None:  # StateStore.open fell back and logged why
            self.health.failed(state.error, in_memory=True, log=False)
        self.results_every = results_every
        self.slo_every = slo_every
        self._parts = parts
        self._store = store
        state.keep_seconds = max(state.keep_seconds, store.signal_window)
        self._results: deque[StoredResult] = deque(maxlen=_MAX_PENDING_RESULTS)
        self._lags: dict[tuple[str, int, int], list[float]] = {}
        """(stream, wall second, threshold class) -> [count, largest lag]."""
        self._dropped = 0
        self._saved_recommendations: dict[str, Any] | None = None
        self._saved_history: int | None = None
        self._saved_maintenance: int | None = None
        """``History.revision`` last written (None: write it at the next flush)."""
        self._slo_due = True
        self._lock = asyncio.Lock()

    # -- feeds (event loop, cheap) -------------------------------------------------------

    def record(self, run: ProbeRun) -> None:
        """Queue one finished run for the next write."""
        result = run.result
        if len(self._results) == self._results.maxlen:
            self._dropped += 1
        self._results.append(
            StoredResult(
                run.probe,
                run.started_at,
                run.duration,
                result.success,
                result.reason.value if result.reason is not None else None,
                result.status_code,
            )
        )

    def record_lag(self, stream: str, lag: float, wall: float) -> None:
        """Count one timed event of ``stream`` for the SLO replay journal."""
        bounds = self._parts.slo.lag_thresholds.get(stream)
        if bounds is None or not lag >= 0 or not math.isfinite(wall):
            return  # no delivery_lag SLO on it, or no measurement: the SLOs ignore it too
        key = (stream, math.floor(wall), bisect.bisect_left(bounds, lag))
        agg = self._lags.get(key)
        if agg is not None:
            agg[0] += 1
            if lag > agg[1]:
                agg[1] = lag
        elif len(self._lags) < _MAX_PENDING_LAG_KEYS:
            self._lags[key] = [1, lag]
        else:
            self._dropped += 1

    # -- writing ------------------------------------------------------------------------

    async def run(self) -> None:
        """Write every ``results_every``; the SLO buckets every ``slo_every``. Never dies."""
        loop = asyncio.get_running_loop()
        next_slo = loop.time() + self.slo_every
        tick = loop.time()
        while True:
            tick += self.results_every
            now = loop.time()
            if tick < now:  # fell behind (suspended, slow disk): no burst of catch-up writes
                tick = now + self.results_every
            await asyncio.sleep(tick - now)
            retry = time.monotonic() >= self._retry_at
            if not (retry or self.state.fallback):
                continue  # the file fails: the queue waits for the next retry
            due = loop.time() >= next_slo
            if await self.flush(slo=due, retry=retry) and due:
                next_slo = loop.time() + self.slo_every

    async def flush_all(self) -> bool:
        """Write everything now (at shutdown, after the scheduler and watchers stopped),
        retrying the state file at once if the daemon fell back to memory."""
        return await self.flush(slo=True, recommendations=True, retry=True)

    async def flush(
        self, *, slo: bool = False, recommendations: bool = False, retry: bool = False
    ) -> bool:
        """Write the queued runs and lags, changed recommendations, and the SLO buckets if
        ``slo``; True if written. Never raises: failures go to ``health`` (which logs
        ``state_save_failed`` once) and the queue is kept for the next try. In memory after
        a fallback, ``retry`` first tries to open the file again (``run`` passes it as the
        backoff allows).
        """
        async with self._lock:
            if retry and self.state.fallback:
                await self._reopen()
            slo = slo or self._slo_due
            results = list(self._results)
            self._results.clear()
            lag_keys, self._lags = self._lags, {}
            dropped, self._dropped = self._dropped, 0
            if dropped:
                _log.warning("state_results_dropped", count=dropped)
            started = time.perf_counter()
            try:
                # taken in the same loop step as the queues: the snapshot counts exactly them
                slo_snapshot = self._parts.slo.snapshot() if slo else None
                rec = self._parts.recommendations.snapshot()
                rec_changed = recommendations or rec != self._saved_recommendations
                history = self._parts.history
                revision = history.revision
                history_changed = recommendations or revision != self._saved_history
                windows = self._parts.maintenance
                windows_revision = windows.revision
                windows_changed = recommendations or windows_revision != self._saved_maintenance
                lags = [
                    LagSample(stream, float(second), agg[1], int(agg[0]))
                    for (stream, second, _), agg in lag_keys.items()
                ]
                await asyncio.to_thread(
                    self.state.save,
                    results=results,
                    lags=lags,
                    slo=slo_snapshot,
                    recommendations=rec if rec_changed else None,
                    history=history.snapshot() if history_changed else None,
                    maintenance=windows.snapshot() if windows_changed else None,
                )
            except Exception as exc:
                self._requeue(results, lag_keys)
                fallback = self.state.fallback
                self.health.failed(exc, in_memory=fallback, queued_results=len(self._results))
                self._back_off()
                if is_damage(exc):
                    await asyncio.to_thread(self.state.reset, "corrupt", str(exc))
                    self.health.in_memory = self.state.fallback
                    self._slo_due = True  # the fresh file needs the buckets at once
                    self._saved_recommendations = self._saved_history = self._saved_maintenance = (
                        None
                    )
                return False
            if not self.state.fallback:
                self.health.succeeded()
                self._retry_delay, self._retry_at = 0.0, -math.inf
            if rec_changed:
                self._saved_recommendations = rec
            if history_changed:
                self._saved_history = revision
            if windows_changed:
                self._saved_maintenance = windows_revision
            if slo:
                self._slo_due = False
                _log.debug(
                    "state_saved",
                    results=len(results),
                    lag_rows=len(lags),
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            return True

    async def _reopen(self) -> None:
        """Open the state file again; on success the runs memory held are queued for it."""
        assert self.reopen is not None
        try:
            fresh = await asyncio.to_thread(self.reopen)
        except Exception as exc:
            self.health.failed(exc, in_memory=True, event="state_reopen_failed")
            self._back_off()
            return
        held, self.state = self.state, fresh
        fresh.keep_seconds = max(fresh.keep_seconds, held.keep_seconds)
        runs = [run for ring in held.load_results(since=-math.inf).values() for run in ring]
        self._requeue(sorted(runs, key=lambda run: run.started_at), {})
        held.close()
        self._slo_due = True  # the SLO buckets count the held runs: write them at once
        self._saved_recommendations = self._saved_history = self._saved_maintenance = None

    def _back_off(self) -> None:
        """Leave a failing state directory alone for longer each time, up to ``retry_max``."""
        self._retry_delay = min(self.retry_max, max(self.results_every, 2 * self._retry_delay))
        self._retry_at = time.monotonic() + self._retry_delay

    def _requeue(
        self, results: list[StoredResult], lags: dict[tuple[str, int, int], list[float]]
    ) -> None:
        """Put an unwritten batch back in front of what arrived meanwhile (newest kept)."""
        queue: deque[StoredResult] = deque(results, maxlen=_MAX_PENDING_RESULTS)
        queue.extend(self._results)
        self._results = queue
        for key, agg in self._lags.items():
            old = lags.get(key)
            if old is None:
                lags[key] = agg
            else:
                old[0] += agg[0]
                old[1] = max(old[1], agg[1])
        self._lags = lags

    def close(self) -> None:
        """Close the state file (after ``flush_all``)."""
        self.state.close()

    # -- restoring ----------------------------------------------------------------------

    def restore(self, now: float | None = None, probes: Iterable[ProbeSpec] = ()) -> list[str]:
        """Load the saved state into the persisted objects and the result store (``probes``,
        the scheduled ones, are registered in it first); never raises.

        Call it once at startup, before any run or stream event is recorded
        (blocking, for long SLO windows a noticeable while; nothing else touches
        those objects yet, so ``asyncio.to_thread`` is fine). Returns the problems
        found, each also logged as ``state_restore_problem``.
        """
        now = clock.wall() if now is None else now
        problems: list[str] = []
        summary: dict[str, Any] = {
            "path": None if self.state.path is None else str(self.state.path)
        }
        steps = (
            # ad hoc windows first: the SLO replay leaves out what they cover
            ("maintenance windows", self._restore_maintenance),
            ("SLO state", self._restore_slo),
            ("recommendation state", self._restore_recommendations),
            ("results ring", functools.partial(self._restore_ring, probes)),
            ("history", self._restore_history),
        )
        for what, step in steps:
            try:
                problems.extend(step(now, summary))
            except Exception as exc:
                problems.append(f"{what}: not restored ({type(exc).__name__}: {exc})")
        for problem in problems:
            _log.warning("state_restore_problem", problem=problem)
        _log.info("state_restored", problems=len(problems), **summary)
        return problems

    def _restore_slo(self, now: float, summary: dict[str, Any]) -> list[str]:
        slo = self._parts.slo
        problems: list[str] = []
        snapshot = self.state.load_slo()
        if snapshot is not None:
            problems = slo.restore(snapshot, now)
        runs, lags = self.state.load_replay()
        counts = self._parts.counts_for_slo  # not prober_overloaded, not in maintenance
        for run in runs:
            if counts(run.probe, run.reason, run.started_at):
                slo.record_run(run.probe, run.success, run.duration, run.started_at)
        events = 0
        for sample in lags:
            if not 0 < sample.events <= _MAX_REPLAY_EVENTS:
                problems.append(
                    f"SLO state: a lag journal row of stream {sample.stream!r} claims "
                    f"{sample.events} events; ignored"
                )
                continue
            if not counts(sample.stream, None, sample.at):
                continue
            for _ in range(sample.events):
                slo.record_lag(sample.stream, sample.lag, sample.at)
            events += sample.events
        summary.update(slo_snapshot=snapshot is not None, replayed_runs=len(runs))
        summary["replayed_lag_events"] = events
        return problems

    def _restore_recommendations(self, now: float, summary: dict[str, Any]) -> list[str]:
        engine = self._parts.recommendations
        data = self.state.load_recommendations()
        problems = [] if data is None else engine.restore(data)
        self._saved_recommendations = engine.snapshot() if data is not None else None
        summary["recommendations"] = len(engine.current())
        return problems

    def _restore_history(self, now: float, summary: dict[str, Any]) -> list[str]:
        history = self._parts.history
        data = self.state.load_history()
        problems = [] if data is None else history.restore(data)
        self._saved_history = history.revision if data is not None else None
        summary["history"] = len(history.latest())
        return problems

    def _restore_maintenance(self, now: float, summary: dict[str, Any]) -> list[str]:
        windows = self._parts.maintenance
        data = self.state.load_maintenance()
        problems = [] if data is None else windows.restore(data, now)
        self._saved_maintenance = windows.revision if data is not None else None
        summary["maintenance_windows"] = len(windows.ad_hoc)
        return problems

    def _restore_ring(
        self, probes: Iterable[ProbeSpec], now: float, summary: dict[str, Any]
    ) -> list[str]:
        store = self._store
        for spec in probes:
            store.register(spec.name, spec.kind, spec.target)
        horizon = now - store.signal_window
        rings = self.state.load_results(store.ring_size, since=horizon)
        last_ok = self.state.load_last_success()
        restored = 0
        for state in store:
            if state.last is not None or state.recent:
                continue  # already running: nothing to restore into
            ring = rings.get(state.name, [])
            entries = [
                RecentResult(r.started_at, r.duration, r.success, r.reason, r.status_code)
                for r in ring
            ]
            state.version += 1  # the status document's cached part of it is stale
            state.recent.extend(entries)  # a ring of ring_size: keeps the newest
            for e in entries:
                if horizon <= e.started_at <= now:
                    state.count_in_window(e)
            successes = [e.started_at for e in entries if e.success]
            if state.name in last_ok:
                successes.append(last_ok[state.name])
            if successes:
                state.last_success_at = max(successes)
            if ring and horizon <= ring[-1].started_at <= now:
                state.last = _rebuilt_run(ring[-1], state.kind, state.target)
            restored += bool(entries)
        summary["probes_restored"] = restored
        return []


def _rebuilt_run(run: StoredResult, kind: str, target: str) -> ProbeRun:
    """A ``ProbeRun`` standing in for the newest saved run (no phases, observations, ids)."""
    try:
        reason = None if run.reason is None else Reason(run.reason)
    except ValueError:
        reason = Reason.INTERNAL_ERROR
    if not run.success and reason is None:
        reason = Reason.INTERNAL_ERROR
    return ProbeRun(
        probe=run.probe,
        kind=kind,
        target=target,
        run_id="restored",
        trace_id="",
        started_at=run.started_at,
        duration=run.duration,
        result=ProbeResult(run.success, reason, status_code=run.status_code),
    )
