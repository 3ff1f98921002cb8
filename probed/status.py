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
from probed.store import ProbeState, ResultStore, StreamStats
from probed.streamhints import stream_hints

__all__ = ["recommendations_document", "status_document"]


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


def _probe_doc(state: ProbeState) -> dict[str, Any]:
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
        "recent": [
            {
                "t": _finite(r.started_at, 3),
                "d": _finite(r.duration, 6),
                "ok": r.success,
                "reason": r.reason,
            }
            for r in state.recent
        ],
    }


def _lag_series(stats: StreamStats, now: float) -> list[dict[str, float | None]]:
    """The stream's lag over its signal window: the worst lag of each time slot."""
    return [
        {"t": _finite(end, 3), "lag": _finite(lag, 6)}
        for end, lag in stats.lag_window.worst(now)
        if math.isfinite(lag)
    ]


def _stream_doc(stats: StreamStats, now: float) -> dict[str, Any]:
    lag = stats.delivery_lag
    mono = time.monotonic()
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
        "hints": stream_hints(stats, mono),
        "last_event_age_seconds": _finite(stats.event_age(mono), 3),
        "last_byte_age_seconds": None
        if stats.last_byte is None
        else _finite(max(0.0, mono - stats.last_byte), 3),
        "clock": stats.clock.to_json(),
        "mean_lag_seconds": _finite(lag.sum / lag.count, 6) if lag.count else None,
        "lag": _lag_series(stats, now),
    }


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
) -> dict[str, Any]:
    """THE JSON of ``GET /api/v1/status`` (shape in the module docstring).

    ``shard``: which shard of the location the daemon is (None: the only one, 0 of 1).

    Without an evaluation yet, components, recommendations and SLOs are empty
    and ``overall`` is UNKNOWN; probes and streams come from the store.
    ``state`` is ``StateHealth.document()``; None leaves it out.
    """
    shard = Shard() if shard is None else shard
    if evaluation is None:
        components: list[dict[str, Any]] = []
        slos: list[dict[str, Any]] = []
        overall_state = ComponentState.UNKNOWN
    else:
        components = [_component_doc(c) for c in evaluation.components]
        slos = [_slo_doc(s) for s in evaluation.signals.slos.values()]
        overall_state = overall(evaluation.components, evaluation.recommendations)
    doc: dict[str, Any] = {
        "version": version,
        "location": location,
        "shard": {"index": shard.index, "total": shard.total},
        "generated_at": _finite(now, 3),
        "evaluated_at": _finite(evaluation.at, 3) if evaluation is not None else None,
        "overall": overall_state.value,
        "components": components,
        "recommendations": _recommendations(evaluation),
        "slos": slos,
        "probes": [_probe_doc(s) for s in store],
        "streams": [_stream_doc(s, now) for s in store.streams.values()],
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
