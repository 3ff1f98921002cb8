"""The status document: THE JSON of ``GET /api/v1/status`` and ``/api/v1/recommendations``.

``status_document`` builds it (the daemon serves it, ``probed status`` fetches it and
renders it with ``probed.statustext``, the page is rendered from it by
``probed.statuspage``)::

    {"version", "location", "shard": {index, total}, "generated_at", "evaluated_at", "overall",
     "components": [{name, state, probes, failing, last_healthy}],
     "recommendations": [{scenario, title, severity, routing, state, since, summary,
                          actions, rollback, runbook_url, inconclusive_reason,
                          evidence: [{signal, value, threshold, since, detail}]}],
     "slos": [{name, sli, objective, window, ratio, burn_rate,
               budget_remaining, events}],
     "maintenance": [{start, end, targets, probes, reason, active}],
     "probes": [{probe, kind, target, runs, failures, reasons, last_success_at,
                 maintenance_until (only under maintenance),
                 last: {success, reason, status_code, duration_seconds,
                        started_at, run_id, trace_id, phases} | null,
                 recent: [{t, d, ok, reason}]}],
     "streams": [{stream, target, connected, subscribers, received, lost,
                  duplicated, out_of_order, late, negative_lag, reconnects,
                  reconnect_reasons, clock_offset_seconds, clock (probed.skew),
                  mean_lag_seconds, bursts, burst_events, hints: [str],
                  last_event_age_seconds, last_byte_age_seconds,
                  maintenance_until (only under maintenance), lag: [{t, lag}]}],
     "config": {last_reload_successful, last_reload_error, last_reload_at,
                path, hash, loaded_at,
                failed_at, file_hash, problems, more_problems},
     "state": {healthy, state_dir, in_memory, reason, since, write_failures},
     "history": [{at, kind, name, old, new, detail}] (probed.historypage)}

``config`` names the running config file, its hash and load time; the last
four keys are there only after a failed reload (``probed.configstatus``).
Components and ``overall`` are judged by ``probed.components``.
Times are Unix seconds; a non-finite number becomes ``null`` (browsers'
``JSON.parse`` rejects ``Infinity``). Recommendations are ordered active,
inconclusive, pending, then by severity (Sev-1 first) and age; their
``routing`` (``page`` or ``ticket``) is ``probed.signals.ROUTING`` of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from probed.components import overall
from probed.history import History
from probed.historypage import history_list
from probed.maintenance import Maintenance
from probed.maintenancepage import annotate
from probed.shard import Shard
from probed.signals import (
    ComponentState,
    ComponentStatus,
    Evaluation,
    Recommendation,
    SloStatus,
)
from probed.store import ProbeState, RecentResult, ResultStore, StreamStats
from probed.streamhints import stream_hints

__all__ = [
    "document_head",
    "evaluation_parts",
    "lag_point",
    "probe_head",
    "recent_entry",
    "recommendations_document",
    "status_document",
    "stream_ages",
    "stream_clock",
    "stream_counts",
]


def _finite(value: float | None, digits: int | None = None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def _finite_map(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {key: _finite(value) for key, value in values.items()}


_REC_STATE_ORDER = {"active": 0, "inconclusive": 1, "pending": 2, "resolved": 3}


def _rec_key(rec: Recommendation) -> tuple[int, str, float]:
    return (_REC_STATE_ORDER.get(rec.state.value, 4), rec.severity.value, rec.since)


def _recommendation_doc(rec: Recommendation) -> dict[str, Any]:
    return {
        "scenario": rec.scenario,
        "title": rec.title,
        "severity": rec.severity.value,
        "routing": rec.severity.routing.value,
        "state": rec.state.value,
        "since": _finite(rec.since, 3),
        "summary": rec.summary,
        "actions": list(rec.actions),
        "rollback": rec.rollback,
        "runbook_url": rec.runbook_url,
        "inconclusive_reason": rec.inconclusive_reason,
        "evidence": [
            {
                "signal": ev.signal,
                "value": _finite(ev.value),
                "threshold": _finite(ev.threshold),
                "since": _finite(ev.since, 3),
                "detail": ev.detail,
            }
            for ev in rec.evidence
        ],
    }


def _recommendations(evaluation: Evaluation | None) -> list[dict[str, Any]]:
    if evaluation is None:
        return []
    recs = sorted(evaluation.recommendations, key=_rec_key)
    return [_recommendation_doc(r) for r in recs]


def _slo_doc(slo: SloStatus) -> dict[str, Any]:
    return {
        "name": slo.name,
        "sli": slo.sli,
        "objective": slo.objective,
        "window": slo.window,
        "ratio": _finite_map(slo.ratio),
        "burn_rate": _finite_map(slo.burn_rate),
        "budget_remaining": _finite(slo.budget_remaining),
        "budget_allowed": _finite(slo.budget_allowed, 3),
        "events": dict(slo.events),
        "coverage": _finite_map(slo.coverage),
    }


def _component_doc(component: ComponentStatus) -> dict[str, Any]:
    return {
        "name": component.name,
        "state": component.state.value,
        "probes": list(component.probes),
        "failing": list(component.failing),
        "degraded_by": list(component.degraded_by),
        "last_healthy": _finite(component.last_healthy, 3),
    }


def probe_head(state: ProbeState) -> dict[str, Any]:
    """A probe's object in the document up to ``recent``, which comes last."""
    last = state.last
    last_doc: dict[str, Any] | None = None
    if last is not None:
        last_doc = {
            "success": last.success,
            "reason": last.result.reason.value if last.result.reason else None,
            "status_code": last.result.status_code,
            "duration_seconds": _finite(last.duration, 6),
            "started_at": _finite(last.started_at, 3),
            "run_id": last.run_id,
            "trace_id": last.trace_id,
            "phases": {k: _finite(v, 6) for k, v in last.result.phases.items()},
        }
    return {
        "probe": state.name,
        "kind": state.kind,
        "target": state.target,
        "runs": sum(state.runs.values()),
        "failures": state.runs.get("failure", 0),
        "reasons": dict(state.failures),
        "last_success_at": _finite(state.last_success_at, 3),
        "last": last_doc,
    }


def recent_entry(entry: RecentResult) -> dict[str, Any]:
    """One run of a probe's ``recent`` list."""
    return {
        "t": _finite(entry.started_at, 3),
        "d": _finite(entry.duration, 6),
        "ok": entry.success,
        "reason": entry.reason,
    }


def _probe_doc(state: ProbeState) -> dict[str, Any]:
    return {**probe_head(state), "recent": [recent_entry(r) for r in state.recent]}


def stream_counts(stats: StreamStats) -> dict[str, Any]:
    """A stream's object in the document up to ``hints``: what only its recording changes."""
    return {
        "stream": stats.name,
        "target": stats.target,
        "connected": stats.connected,
        "subscribers": stats.subscribers,
        "connection_ids": list(stats.connection_ids),
        "received": stats.received,
        "lost": stats.lost,
        "duplicated": stats.duplicated,
        "out_of_order": stats.out_of_order,
        "late": stats.late,
        "negative_lag": stats.negative_lag,
        "reconnects": sum(stats.reconnects.values()),
        "reconnect_reasons": dict(stats.reconnects),
        "clock_offset_seconds": _finite(stats.clock_offset, 6),
        "bursts": stats.bursts,
        "burst_events": stats.burst_events,
    }


def stream_ages(stats: StreamStats, mono: float) -> dict[str, Any]:
    """A stream's hints and ages at ``mono`` (``time.monotonic()``), which follow its counts."""
    return {
        "hints": stream_hints(stats, mono),
        "last_event_age_seconds": _finite(stats.event_age(mono), 3),
        "last_byte_age_seconds": None
        if stats.last_byte is None
        else _finite(max(0.0, mono - stats.last_byte), 3),
    }


def stream_clock(stats: StreamStats) -> dict[str, Any]:
    """A stream's clock and mean lag, which follow its ages; ``lag`` comes last."""
    lag = stats.delivery_lag
    return {
        "clock": stats.clock.to_json(),
        "mean_lag_seconds": _finite(lag.sum / lag.count, 6) if lag.count else None,
    }


def lag_point(end: float, lag: float) -> dict[str, float | None]:
    """One time slot of a stream's ``lag`` list: its end (or now) and its worst lag."""
    return {"t": _finite(end, 3), "lag": _finite(lag, 6)}


def _lag_slots(stats: StreamStats, now: float) -> list[tuple[float, float]]:
    """(end, worst lag) of the slots the stream's ``lag`` list shows at ``now`` (Unix seconds)."""
    return [(end, lag) for end, lag in stats.lag_window.worst(now) if math.isfinite(lag)]


def _stream_doc(stats: StreamStats, now: float, mono: float) -> dict[str, Any]:
    return {
        **stream_counts(stats),
        **stream_ages(stats, mono),
        **stream_clock(stats),
        "lag": [lag_point(end, lag) for end, lag in _lag_slots(stats, now)],
    }


def document_head(
    version: str, location: str, shard: Shard | None, now: float, evaluation: Evaluation | None
) -> dict[str, Any]:
    """The document's first members, up to ``overall``."""
    shard = Shard() if shard is None else shard
    return {
        "version": version,
        "location": location,
        "shard": {"index": shard.index, "total": shard.total},
        "generated_at": _finite(now, 3),
        "evaluated_at": _finite(evaluation.at, 3) if evaluation is not None else None,
    }


def evaluation_parts(
    evaluation: Evaluation | None,
) -> tuple[ComponentState, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """What the document takes from the evaluation: overall, components, recommendations and
    SLOs (UNKNOWN and empty lists before the first evaluation)."""
    if evaluation is None:
        return ComponentState.UNKNOWN, [], [], []
    return (
        overall(evaluation.components, evaluation.recommendations),
        [_component_doc(c) for c in evaluation.components],
        _recommendations(evaluation),
        [_slo_doc(s) for s in evaluation.signals.slos.values()],
    )


def status_document(
    *,
    store: ResultStore,
    evaluation: Evaluation | None,
    location: str,
    version: str,
    now: float,
    config: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    maintenance: Maintenance | None = None,
    history: History | None = None,
    shard: Shard | None = None,
    mono: float | None = None,
) -> dict[str, Any]:
    """THE JSON of ``GET /api/v1/status`` (shape in the module docstring), from scratch.

    ``shard``: which shard of the location the daemon is (None: the only one, 0 of 1).
    ``now`` is the Unix time the document is for, ``mono`` the same instant on
    ``time.monotonic()`` (the streams' ages; default: when called). The daemon serves the same
    document through ``probed.statuscache``, which keeps parts of it between requests.

    Without an evaluation yet, components, recommendations and SLOs are empty
    and ``overall`` is UNKNOWN; probes and streams come from the store.
    ``state`` is ``StateHealth.document()``; None leaves it out.
    """
    mono = time.monotonic() if mono is None else mono
    overall_state, components, recommendations, slos = evaluation_parts(evaluation)
    doc: dict[str, Any] = {
        **document_head(version, location, shard, now, evaluation),
        "overall": overall_state.value,
        "components": components,
        "recommendations": recommendations,
        "slos": slos,
        "probes": [_probe_doc(s) for s in store],
        "streams": [_stream_doc(s, now, mono) for s in store.streams.values()],
        "config": dict(config or {}),
        "history": history_list(history),
    }
    if state is not None:
        doc["state"] = dict(state)
    annotate(doc, maintenance, now)
    return doc


def recommendations_document(
    evaluation: Evaluation | None, *, now: float | None = None
) -> dict[str, Any]:
    """The JSON of ``GET /api/v1/recommendations``.

    ``generated_at`` is ``now`` if given, else the evaluation's time (None
    before the first evaluation).
    """
    at = now if now is not None else (evaluation.at if evaluation is not None else None)
    return {"generated_at": _finite(at, 3), "recommendations": _recommendations(evaluation)}
