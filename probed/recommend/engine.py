"""The recommendation engine: the state machine of every scenario, with dwell times.

The rules (``probed.recommend.scenarios``) say what each ``Signals`` snapshot
shows; the engine decides what is issued and when, and reports every change
as a ``Transition``.

Lifecycle of one scenario::

    (none) --enter holds--> PENDING --enter held for enter_for--> ACTIVE
       ^                      |                                    |  ^
       +--enter stops holding-+            canary fails / recovers |  |
                                                                   v  |
    RESOLVED (forgotten) <--exit held for exit_for-- ACTIVE or INCONCLUSIVE

- Nothing is issued while PENDING; a pending scenario whose condition stops
  holding goes back to nothing, reported as a PENDING -> RESOLVED transition
  (there is nothing to resolve downstream: it never fired).
- If the canary fails when a scenario would become ACTIVE, it becomes
  INCONCLUSIVE instead (our own vantage point may be at fault); an ACTIVE one
  becomes INCONCLUSIVE while the canary fails. When the canary recovers, a
  scenario that had been ACTIVE is ACTIVE again; one that never was goes back
  to PENDING (the dwell starts over) or to nothing if its condition is gone.
- The exit condition is stricter than "not entering" (half the failure ratio
  or 429 share, lag below the threshold, streams connected), so a signal
  oscillating around the threshold keeps an active recommendation active
  instead of flapping. Fast burn is the exception, as in the SRE workbook: it
  clears as soon as the 5m window drops below the rate (held for ``exit_for``),
  since a 1h window keeps a short blip above 1x for an hour. A signal without
  enough data (fewer than ``min_runs`` runs) neither enters nor proves
  recovery; a signal that is gone from ``Signals`` altogether (probe removed)
  no longer holds anything up.
- Severity is refreshed on every evaluation: it escalates at once and is
  demoted only after the lower severity has held for ``exit_for`` (seed 003:
  "demote only after SLOs stable"). A severity change of an ACTIVE or
  INCONCLUSIVE recommendation is reported as a transition with ``old == new``.
- ``evaluate`` returns every change exactly once; changes caused by ``apply``
  (a scenario disabled by a reload resolves) are returned by the next
  ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from probed.config import RecommendConfig
from probed.playbooks import PlaybookConfig, merge, render
from probed.recommend.assess_targets import (
    assess_target_down,
    down_targets,
    suppressed_fact,
    without_targets,
)
from probed.recommend.episode import Episode, Transition
from probed.recommend.facts import INCONCLUSIVE_NOTES, Assessment, Fact, Level
from probed.recommend.scenarios import BY_ID, SCENARIO_LIST, Scenario, placeholders
from probed.recommend.snapshot import dump_episodes, load_episodes
from probed.records import record
from probed.signals import Evidence, Recommendation, RecommendationState, Severity, Signals
from probed.steps import Steps, at_once

__all__ = ["Assessed", "RecommendationEngine"]

_PENDING: Final = RecommendationState.PENDING
_ACTIVE: Final = RecommendationState.ACTIVE
_INCONCLUSIVE: Final = RecommendationState.INCONCLUSIVE
_RESOLVED: Final = RecommendationState.RESOLVED

_RANK: Final = {Severity.SEV1: 1, Severity.SEV2: 2, Severity.SEV3: 3, Severity.SEV4: 4}
"""Lower is more severe."""


@record
class Assessed:
    """What the rules made of one ``Signals``: ``RecommendationEngine.assess_steps``."""

    assessments: dict[str, Assessment]
    down: list[str]
    """Targets none of whose probes can connect (their knock-ons are suppressed)."""
    suppressed: list[Fact]
    """Evidence of the scenarios that would have been raised but for a down target."""


class RecommendationEngine:
    """Turns successive ``Signals`` into degraded-mode recommendations with hysteresis."""

    def __init__(self, cfg: RecommendConfig, playbooks: Iterable[PlaybookConfig] = ()) -> None:
        self._cfg = cfg
        self._playbooks = merge(playbooks)
        self._episodes: dict[str, Episode] = {}
        self._queued: list[Transition] = []

    # public API

    def evaluate(self, signals: Signals) -> list[Transition]:
        """Update every enabled scenario from ``signals``; return the changes, once each."""
        return self.settle(at_once(self.assess_steps(signals)), signals)

    def assess_steps(self, signals: Signals) -> Steps[Assessed]:
        """What each enabled scenario's rule makes of ``signals``, one scenario per step.

        Changes nothing: the rules over hundreds of streams are most of an evaluation's
        cost, so the loop may turn between them (``probed.steps``). Pass the result to
        ``settle`` with no ``apply`` in between.
        """
        cfg = self._cfg
        disabled = set(cfg.disabled)
        # cause before symptoms: the other rules do not see a target that cannot be reached
        down = set() if "target_down" in disabled else set(down_targets(signals, cfg))
        visible = without_targets(signals, down)
        suppressed: list[Fact] = []
        assessments: dict[str, Assessment] = {}
        for scenario in SCENARIO_LIST:
            if scenario.id in disabled or scenario.id == "target_down":
                continue
            yield
            assessments[scenario.id] = assessment = yield from scenario.assess(visible, cfg)
            if down and not assessment.enter:
                yield  # a second look, as long as the first: the loop may turn between
                if (yield from scenario.assess(signals, cfg)).enter:
                    title = self._playbooks[scenario.id].title
                    suppressed.append(suppressed_fact(scenario.id, title, sorted(down)))
        if "target_down" not in disabled:
            cause = assess_target_down(signals, cfg)
            if cause.enter:
                cause = replace(cause, facts=cause.facts + tuple(suppressed))
            assessments["target_down"] = cause
        return Assessed(assessments, sorted(down), suppressed)

    def settle(self, assessed: Assessed, signals: Signals) -> list[Transition]:
        """Step every scenario's state machine on what ``assess_steps`` found; the changes
        (those ``apply`` queued first), once each."""
        out, self._queued = self._queued, []
        assessments = assessed.assessments
        knock_ons = {f.signal.removeprefix("suppressed ") for f in assessed.suppressed}
        for scenario in SCENARIO_LIST:
            if scenario.id not in assessments:
                continue
            if (override := self._playbooks[scenario.id].severity) is not None:
                assessments[scenario.id] = replace(assessments[scenario.id], severity=override)
            ep = self._episodes.get(scenario.id)
            if scenario.id in knock_ons and ep is not None:
                # raised before the target was seen down: withdrawn, target_down covers it
                transition = self._resolve(scenario, ep, assessments[scenario.id], signals.now)
                out.append(_withdrawn(transition, assessed.down))
                continue
            out += self._step(scenario, assessments[scenario.id], signals)
        return out

    def current(self) -> list[Recommendation]:
        """Pending, active and inconclusive recommendations, most severe first, then by id."""
        recs = [self._recommendation(sid, ep) for sid, ep in self._episodes.items()]
        return sorted(recs, key=lambda r: (_RANK[r.severity], r.scenario))

    def apply(self, cfg: RecommendConfig, playbooks: Iterable[PlaybookConfig] = ()) -> None:
        """Take a reloaded configuration; scenarios still enabled keep their state.

        A scenario disabled now is dropped; the next ``evaluate`` reports it RESOLVED.
        Playbook text applies at once; a changed severity override at the next ``evaluate``.
        """
        self._cfg = cfg
        self._playbooks = merge(playbooks)
        disabled = set(cfg.disabled)
        for sid in [sid for sid in self._episodes if sid in disabled]:
            ep = self._episodes.pop(sid)
            rec = replace(
                self._recommendation(sid, ep),
                state=_RESOLVED,
                summary=f"{self._playbooks[sid].title}: scenario disabled by configuration",
            )
            self._queued.append(Transition(sid, ep.state, _RESOLVED, rec))

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-compatible data, for ``restore`` after a restart."""
        return dump_episodes(self._episodes)

    def restore(self, data: Mapping[str, Any]) -> list[str]:
        """Load a ``snapshot``; return the problems found (never raises).

        Valid scenario entries replace the current state; invalid ones are dropped
        and reported. If ``data`` is not a snapshot at all, the state is unchanged.
        """
        episodes, problems = load_episodes(data, BY_ID, set(self._cfg.disabled))
        if episodes is not None:
            self._episodes = episodes
        return problems

    # the state machine

    def _step(self, sc: Scenario, a: Assessment, signals: Signals) -> list[Transition]:
        # a failing canary or a condition resting on suspect facts alone: inconclusive
        why = "canary_failing" if signals.canary_failing else a.suspect
        now, canary = signals.now, why is not None
        cfg = self._cfg
        out: list[Transition] = []
        ep = self._episodes.get(sc.id)
        if ep is None:
            if not a.enter:
                return out
            ep = Episode(_PENDING, now, now, a.severity, summary="", reason=why)
            self._episodes[sc.id] = ep
            self._refresh(sc, ep, a, now)
            out.append(self._transition(sc.id, None, ep))
        ep.reason = why
        if ep.state is _PENDING:
            if not a.enter:
                return [*out, self._resolve(sc, ep, a, now)]
            ep.severity = a.severity
            if now - ep.entered_at >= cfg.enter_for:
                ep.since, ep.exit_since = now, None
                ep.state = _INCONCLUSIVE if canary else _ACTIVE
                ep.activated = not canary
                self._refresh(sc, ep, a, now)
                out.append(self._transition(sc.id, _PENDING, ep))
            else:
                self._refresh(sc, ep, a, now)
            return out
        # ACTIVE or INCONCLUSIVE: the exit clock runs whatever the canary says.
        if not a.exit:
            ep.exit_since = None
        elif ep.exit_since is None:
            ep.exit_since = now
        if ep.exit_since is not None and now - ep.exit_since >= cfg.exit_for:
            return [*out, self._resolve(sc, ep, a, now)]
        old = ep.state
        changed = self._reseverity(ep, a.severity, now)
        if old is _ACTIVE and canary:
            ep.state = _INCONCLUSIVE
        elif old is _INCONCLUSIVE and not canary:
            if ep.activated:
                ep.state = _ACTIVE
            elif a.enter:
                # Never issued: the dwell starts over on trustworthy data.
                ep.state, ep.entered_at, ep.since, ep.exit_since = _PENDING, now, now, None
                ep.severity, ep.demote_since, ep.demote_to = a.severity, None, None
            else:
                return [*out, self._resolve(sc, ep, a, now)]
        self._refresh(sc, ep, a, now)
        if ep.state is not old or changed:
            out.append(self._transition(sc.id, old, ep))
        return out

    def _reseverity(self, ep: Episode, computed: Severity, now: float) -> bool:
        """Escalate at once, demote after ``exit_for`` of lower severity; True if changed."""
        if _RANK[computed] < _RANK[ep.severity]:
            ep.severity, ep.demote_since, ep.demote_to = computed, None, None
            return True
        if computed is ep.severity:
            ep.demote_since = ep.demote_to = None
            return False
        if ep.demote_since is None or ep.demote_to is None:
            ep.demote_since, ep.demote_to = now, computed
        elif _RANK[computed] < _RANK[ep.demote_to]:
            ep.demote_to = computed
        if now - ep.demote_since >= self._cfg.exit_for:
            ep.severity, ep.demote_since, ep.demote_to = ep.demote_to, None, None
            return True
        return False

    def _refresh(self, sc: Scenario, ep: Episode, a: Assessment, now: float) -> None:
        """Record first sightings and rebuild the evidence and summary from ``a``."""
        for f in a.facts:
            if f.level is not Level.OK:
                ep.first_seen.setdefault(f.signal, now)
        chosen = (
            [f for f in a.facts if f.level is Level.ENTER]
            or [f for f in a.facts if f.level is Level.HOLD]
            or [f for f in a.facts if f.signal in ep.first_seen]
        )
        ep.evidence = tuple(
            Evidence(
                signal=f.signal,
                value=f.value,
                threshold=f.threshold,
                since=ep.first_seen.get(f.signal, now),
                detail=f"{f.text}; {f.detail}" if f.detail else f.text,
            )
            for f in chosen
        )
        body = "; ".join(f.text for f in chosen[:2])
        if len(chosen) > 2:
            body += f" (+{len(chosen) - 2} more)"
        title = self._playbooks[sc.id].title
        summary = f"{title}: {body}" if body else title
        if ep.state is _INCONCLUSIVE:
            summary += INCONCLUSIVE_NOTES[ep.reason or "canary_failing"]
        ep.summary = summary

    def _resolve(self, sc: Scenario, ep: Episode, a: Assessment, now: float) -> Transition:
        """Forget the episode; the transition carries its last recommendation as RESOLVED."""
        del self._episodes[sc.id]
        old = ep.state
        self._refresh(sc, ep, a, now)
        ep.state = _RESOLVED
        return self._transition(sc.id, old, ep)

    def _transition(self, sid: str, old: RecommendationState | None, ep: Episode) -> Transition:
        return Transition(sid, old, ep.state, self._recommendation(sid, ep))

    def _recommendation(self, sid: str, ep: Episode) -> Recommendation:
        pb, cfg = self._playbooks[sid], self._cfg
        values = placeholders(cfg)
        return Recommendation(
            scenario=sid,
            title=pb.title,
            severity=ep.severity,
            state=ep.state,
            since=ep.since,
            evidence=ep.evidence,
            actions=tuple(render(a, values) for a in pb.actions),
            rollback=render(pb.rollback, values),
            runbook_url=pb.runbook_url or f"{cfg.runbook_base_url}#{sid}",
            summary=ep.summary,
            inconclusive_reason=ep.reason if ep.state is _INCONCLUSIVE else None,
        )


def _withdrawn(transition: Transition, targets: list[str]) -> Transition:
    """``transition`` (to RESOLVED) saying it was withdrawn as a knock-on of a down target."""
    rec = transition.recommendation
    note = f" [withdrawn: a knock-on of target {', '.join(map(repr, targets))} down]"
    return replace(transition, recommendation=replace(rec, summary=rec.summary + note))
