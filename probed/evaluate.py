"""The evaluation tick: store → Signals → SLOs, recommendations, components → outputs.

Every ``[recommend] evaluate_every`` seconds the daemon builds a ``Signals``
snapshot from the result store (failure ratios, p95s and 429 shares over the
signal window; stream connectivity, lag p95 and losses), asks the pure SLO
evaluator and recommendation engine what it means, and publishes the
resulting ``Evaluation`` to the status API, the metrics, one log line per
recommendation transition, and the alert pusher; the transitions and component
changes also go to ``history`` (``probed.history``). The SLO evaluator is fed
continuously (every run, every timed event) through ``record_run`` and
``record_lag``.

With 500 streams an evaluation is over 10 ms of CPU, so the daemon runs it in slices
(``evaluate_in_slices``, ``probed.steps``): the signals are read 25 probes or streams at a
time and the rules assessed one scenario at a time, the loop turning between slices; the
state machines step, the components are computed and the transitions logged in one go at
the end. A reload that lands in between makes the evaluation read again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import aiohttp
import structlog

from probed import clock
from probed.components import compute_components
from probed.config import Config
from probed.history import History
from probed.jsonpath import lookup
from probed.maintenance import Maintenance, under_maintenance, windows_of
from probed.recommend import RecommendationEngine, Transition
from probed.results import ProbeRun, Reason
from probed.signals import (
    EVIDENCE_SHOWN,
    Evaluation,
    ProbeSignal,
    RecommendationState,
    Signals,
    StreamSignal,
)
from probed.slo import SloEvaluator
from probed.sloexclusions import Exclusions, Why
from probed.steps import SLICE_SECONDS, Steps, at_once, batches, in_slices
from probed.store import ProbeState, ResultStore, StreamStats

__all__ = ["Evaluator", "log_transition", "run_rates"]

_log = structlog.get_logger("probed.evaluate")


def run_rates(config: Config) -> dict[str, float]:
    """Runs per second of each scheduled probe (what an SLO's budget window will hold)."""
    return {spec.name: 1.0 / spec.interval for spec in config.scheduled}


def log_transition(t: Transition) -> None:
    """One ``recommendation_transition`` line: a warning when issued, routine ones info."""
    rec = t.recommendation
    # pending/cleared-before-issue transitions are routine; issued ones are not
    issued = RecommendationState.ACTIVE in (t.old, t.new) or (
        RecommendationState.INCONCLUSIVE in (t.old, t.new)
    )
    log = _log.warning if issued else _log.info
    log(
        "recommendation_transition",
        scenario=t.scenario,
        old_state=t.old.value if t.old is not None else None,
        new_state=t.new.value,
        severity=rec.severity.value,
        inconclusive_reason=rec.inconclusive_reason,
        summary=rec.summary,
        runbook_url=rec.runbook_url,
        evidence=[
            {"signal": e.signal, "value": e.value, "threshold": e.threshold}
            for e in rec.evidence[:EVIDENCE_SHOWN]
        ],
        evidence_count=len(rec.evidence),
    )


def _targets_of(config: Config) -> dict[str, str]:
    """The target of each probe and stream."""
    return {spec.name: spec.target for spec in config.probes}


class Evaluator:
    """Owns the SLO evaluator and the recommendation engine; produces Evaluations."""

    def __init__(self, config: Config, store: ResultStore) -> None:
        self.config = config
        self.store = store
        self.slo = SloEvaluator(config.slos, rates=run_rates(config))
        self.engine = RecommendationEngine(config.recommend, config.playbooks)
        self.maintenance = Maintenance.from_config(config)
        self.exclusions = Exclusions(config.slos)
        """What the SLOs left out (``probed_slo_excluded_events_total``)."""
        self._targets = _targets_of(config)
        self.history = History()
        """The last transitions (``probed.history``); the daemon adds its reloads."""
        self.queue_depth: float | None = None
        self._stream_marks: dict[str, deque[tuple[float, int]]] = {}
        self._steps = clock.StepWatch()
        self._applied = 0
        """Reloads so far: an evaluation in slices that spans one reads again."""

    # -- continuous feeds ---------------------------------------------------------------

    def counts_for_slo(self, probe: str, reason: str | None, at: float) -> bool:
        """Whether a run (or timed event) of ``probe`` at ``at`` is the SLOs' to count.

        Not one that judged probed itself (``prober_overloaded``), nor one during a
        maintenance window over the probe or its target. The persister's replay asks too.
        """
        return self._left_out(probe, reason, at) is None

    def _left_out(self, probe: str, reason: str | None, at: float) -> Why | None:
        if reason == Reason.PROBER_OVERLOADED.value:
            return "prober_overloaded"
        if self.maintenance.covers(probe, self._targets.get(probe, ""), at) is not None:
            return "maintenance"
        return None

    def record_run(self, run: ProbeRun) -> None:
        """Feed one finished run to the SLO evaluator, or count it as left out."""
        reason = None if run.result.reason is None else run.result.reason.value
        why = self._left_out(run.probe, reason, run.started_at)
        if why is None:
            self.slo.record_run(run.probe, run.success, run.duration, run.started_at)
        else:
            self.exclusions.run(run.probe, run.success, run.duration, why)

    def record_lag(self, stream: str, lag: float, wall: float) -> bool:
        """Feed one timed stream event to the SLO evaluator (True), or count it as left out."""
        why = self._left_out(stream, None, wall)
        if why is None and (st := self.store.streams.get(stream)) and st.clock.skewed:
            why = "clock_skew"  # its lag carries an uncorrected clock offset
        if why is None:
            self.slo.record_lag(stream, lag, wall)
            return True
        self.exclusions.lag(stream, lag, why)
        return False

    def apply(self, config: Config) -> None:
        """Reload: keep SLO buckets and recommendation states that still apply."""
        self.config = config
        self.maintenance.configure(windows_of(config))
        self._targets = _targets_of(config)
        self.slo.apply(config.slos, run_rates(config))
        self.exclusions.configure(config.slos)
        self.engine.apply(config.recommend, config.playbooks)
        self._applied += 1

    # -- signals ------------------------------------------------------------------------

    def _probe_signal(self, st: ProbeState, now: float) -> ProbeSignal:
        window = st.window.at(now)
        last = st.last
        return ProbeSignal(
            name=st.name,
            kind=st.kind,
            target=st.target,
            runs=window.runs,
            failures=window.failures,
            reasons=dict(window.reasons),
            rate_limited=window.rate_limited,
            p95_seconds=window.durations.quantile(0.95),
            last_success=None if last is None else last.success,
            last_success_at=st.last_success_at,
            last_reason=None
            if last is None or last.result.reason is None
            else last.result.reason.value,
        )

    def _stream_signal(self, st: StreamStats, now: float, horizon: float) -> StreamSignal:
        marks = self._stream_marks.setdefault(st.name, deque())
        marks.append((now, st.lost))
        while len(marks) > 1 and marks[1][0] <= horizon:
            marks.popleft()
        lost = st.lost - marks[0][1]  # marks[0]: the last mark at or before the horizon
        lags = st.lag_window
        down = 0.0 if st.down_since is None else time.monotonic() - st.down_since
        return StreamSignal(
            name=st.name,
            target=st.target,
            connected=st.connected >= st.subscribers,
            disconnected_for=down,
            events=lags.count(now),
            lag_p95=lags.quantile(0.95, now),
            lost=max(0, lost),
            silent_for=st.silent_for(time.monotonic()),
            clock_skew=st.clock.offset if st.clock.skewed else None,
        )

    def signals(self, now: float) -> Signals:
        """A snapshot of the store over the signal window ending at ``now`` (Unix seconds)."""
        return at_once(self._signal_steps(now))

    def _signal_steps(self, now: float) -> Steps[Signals]:
        """``signals`` in steps of ``ITEMS_PER_STEP`` probes or streams (from lists: the loop
        may add or forget some meanwhile)."""
        window = self.config.recommend.window
        horizon = now - window
        probes: dict[str, ProbeSignal] = {}
        for batch in batches(list(self.store)):
            probes.update((st.name, self._probe_signal(st, now)) for st in batch)
            yield
        streams: dict[str, StreamSignal] = {}
        for pairs in batches(list(self.store.streams.items())):
            streams.update((name, self._stream_signal(s, now, horizon)) for name, s in pairs)
            yield
        for gone in set(self._stream_marks) - set(streams):
            del self._stream_marks[gone]
        canary = any(
            (sig := probes.get(name)) is not None and sig.last_success is False
            for name in self.config.recommend.canary
        )
        signals = Signals(
            now=now,
            window=window,
            probes=probes,
            streams=streams,
            slos=self.slo.evaluate(now),
            canary_failing=canary,
            queue_depth=self.queue_depth,
        )
        return under_maintenance(signals, self.maintenance)

    # -- the tick -----------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> tuple[Evaluation, list[Transition]]:
        """Run one evaluation now; log every transition; return the result.

        ``now`` defaults to ``clock.wall()``, the clock runs and lags are stamped with;
        a step of the system clock since the last evaluation is logged once.
        """
        return at_once(self._evaluate_steps(now))

    async def evaluate_in_slices(
        self, now: float | None = None, *, slice_seconds: float = SLICE_SECONDS
    ) -> tuple[Evaluation, list[Transition]]:
        """``evaluate``, handing the loop back once each ``slice_seconds`` of work.

        With 500 streams an evaluation takes over 10 ms of CPU; in one go it would hold
        back every probe due meanwhile (``probed.steps``).
        """
        return await in_slices(self._evaluate_steps(now), slice_seconds)

    def _evaluate_steps(self, now: float | None) -> Steps[tuple[Evaluation, list[Transition]]]:
        self._steps.check()
        now = clock.wall() if now is None else now
        while True:
            applied = self._applied
            signals = yield from self._signal_steps(now)
            assessed = yield from self.engine.assess_steps(signals)
            if self._applied == applied:
                break
            # reloaded in between: what was read may mix two configurations; read again
        transitions = self.engine.settle(assessed, signals)
        components_cfg = self.config.status_components
        current = tuple(self.engine.current())
        yield  # settling, the components and the records: a millisecond or more each
        components = compute_components(components_cfg, signals, current)
        yield
        evaluation = Evaluation(
            at=now, signals=signals, components=components, recommendations=current
        )
        self.history.recommendations(now, transitions)
        self.history.components(now, evaluation.components)
        for t in transitions:
            log_transition(t)
        return evaluation, transitions

    async def poll_queue_depth(self, session: aiohttp.ClientSession) -> None:
        """Read the optional backlog gauge from ``[recommend] backlog_queue_url``."""
        cfg = self.config.recommend
        if cfg.backlog_queue_url is None:
            self.queue_depth = None
            return
        try:
            async with asyncio.timeout(5.0), session.get(cfg.backlog_queue_url) as resp:
                body = await resp.json(content_type=None)
            value = lookup(body, cfg.backlog_queue_path)
            self.queue_depth = float(value) if isinstance(value, int | float) else None
        except (aiohttp.ClientError, TimeoutError, ValueError, LookupError) as exc:
            self.queue_depth = None
            _log.warning("queue_depth_unavailable", error_message=str(exc))
