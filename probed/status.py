"""Status: the status document, and what renders it (table, markdown, incident, page).

Components and ``overall`` are judged by ``probed.components``.

The status document
    ``status_document`` builds THE JSON of ``GET /api/v1/status`` (the daemon
    serves it, ``probed status`` fetches it, the page re-renders from it)::

        {"version", "location", "generated_at", "evaluated_at", "overall",
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
    Times are Unix seconds; a non-finite number becomes ``null`` (browsers'
    ``JSON.parse`` rejects ``Infinity``). Recommendations are ordered active,
    inconclusive, pending, then by severity (Sev-1 first) and age; their
    ``routing`` (``page`` or ``ticket``) is ``probed.signals.ROUTING`` of it.

Renderers
    ``render_table``, ``render_markdown`` (the HEARTBEAT "## 1) Status now"
    block), ``render_incident`` (the "Initial Ack" template) and
    ``render_page`` (the self-contained HTML status page) take that JSON
    document, so the CLI renders what it fetched. The text renderers drop
    control characters; markdown and incident text also replace IP addresses,
    URLs, e-mail addresses and long hexadecimal identifiers in free text.

    The page has no external assets: inline CSS, inline SVG and one inline
    script, allowed by a Content-Security-Policy that names their hashes and
    permits network access only to the page's own origin. The server renders
    the full page; every 10 s the script fetches ``api/v1/status`` (relative,
    so a path prefix of a reverse proxy works) and re-renders ``main#app``
    with the same markup as the Python renderer (a browser test compares both).
    Its figures are rounded and carry their unit (``probed.pageunits``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from probed.clockpage import CLOCK_JS, page_clock_cell, page_skews
from probed.components import (
    API_READ,
    API_WRITE,
    BACKGROUND_JOBS,
    CONSOLE_ADMIN,
    SSE_STREAM,
    overall,
)
from probed.configstatus import CONFIG_LINE_JS, config_line, page_config_line
from probed.history import History
from probed.historypage import HISTORY_JS, history_list, page_history, table_history
from probed.maintenance import Maintenance
from probed.maintenancepage import MAINTENANCE_JS, annotate, page_maintenance, probe_mark
from probed.pagestyle import PAGE_CSS
from probed.pageunits import UNITS_JS, duration, evidence_value, fixed, percent, rate, trim
from probed.signals import (
    ComponentState,
    ComponentStatus,
    Evaluation,
    Recommendation,
    SloStatus,
)
from probed.store import ProbeState, ResultStore, StreamStats
from probed.streamhints import stream_hints

__all__ = [
    "REFRESH_SECONDS",
    "recommendations_document",
    "render_incident",
    "render_markdown",
    "render_page",
    "render_table",
    "status_document",
]

#: How often the status page re-fetches ``/api/v1/status``.
REFRESH_SECONDS = 10


# ---------------------------------------------------------------------------
# the status document


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
) -> dict[str, Any]:
    """THE JSON of ``GET /api/v1/status`` (shape in the module docstring).

    Without an evaluation yet, components, recommendations and SLOs are empty
    and ``overall`` is UNKNOWN; probes and streams come from the store.
    ``state`` is ``StateHealth.document()``; None leaves it out.
    """
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


# ---------------------------------------------------------------------------
# reading a (fetched) document defensively


def _items(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _strs(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [_text(item) for item in value]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    """A finite JSON number as float (booleans are not numbers), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_num(value: object) -> bool:
    return _number(value) is not None


# Number formatting for the text renderers (the page's figures are probed.pageunits).


def _num(value: object) -> str:
    number = _number(value)
    return "-" if number is None else trim(fixed(number, 3))


def _int(value: object) -> str:
    number = _number(value)
    return "-" if number is None else str(math.trunc(number))


def _pct(value: object) -> str:
    number = _number(value)
    return "-" if number is None else trim(fixed(number * 100, 3)) + "%"


def _iso(value: object) -> str:
    """ISO 8601 UTC with a ``Z``, whole seconds (floored, like the script)."""
    number = _number(value)
    if number is None:
        return "-"
    return datetime.fromtimestamp(math.floor(number), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dur(value: object) -> str:
    seconds = _number(value)
    if seconds is None:
        return "-"
    return f"{fixed(seconds * 1000, 1)} ms" if seconds < 1 else f"{fixed(seconds, 2)} s"


def _age(now: object, then: object) -> str:
    end, start = _number(now), _number(then)
    if end is None or start is None:
        return "-"
    age = max(0.0, end - start)
    if age < 120:
        return f"{math.floor(age)} s ago"
    if age < 7200:
        return f"{math.floor(age / 60)} min ago"
    return f"{math.floor(age / 3600)} h ago"


def _ratio_cell(slo: Mapping[str, Any], label: str, pct: Callable[[object], str] = _pct) -> str:
    """A window's ratio; "insufficient data (12m of 30d)" while its data covers too little."""
    ratio = _number(_map(slo.get("ratio")).get(label))
    if ratio is not None:
        return pct(ratio)
    covered = _number(_map(slo.get("coverage")).get(label))
    if not _number(_map(slo.get("events")).get(label)) or covered is None:
        return "-"
    return f"insufficient data ({_span(covered)} of {label})"


def _span(seconds: float) -> str:
    """Whole days, hours or minutes (floored), for a coverage."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{math.trunc(seconds / size)}{unit}"
    return f"{math.trunc(seconds)}s"


def _window(value: object) -> str:
    seconds = _number(value)
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{math.trunc(seconds / size)}{unit}"
    return f"{_num(seconds)}s"


def _burn(value: object) -> str:
    return f"{_num(value)}x" if _is_num(value) else "-"


def _active(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Active recommendations, Sev-1 first, then the oldest."""
    recs = [r for r in _items(doc.get("recommendations")) if r.get("state") == "active"]
    return sorted(
        recs,
        key=lambda r: (
            _text(r.get("severity")),
            _number(r.get("since")) or math.inf,
        ),
    )


# ---------------------------------------------------------------------------
# text renderers (terminal, markdown, incident)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCRUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "[url]"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "[email]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "[ip]"),
    (
        re.compile(
            r"(?<![\w:])(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}"
            r"|(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?)"
            r"(?![\w:])",
            re.I,
        ),
        "[ip]",
    ),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "[id]"),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "[id]"),
)


def _plain(value: object) -> str:
    """Text for a terminal: control characters (escape sequences) replaced by ``?``."""
    return _CONTROL.sub("?", _text(value))


def _scrub(value: object) -> str:
    """Free text for shared documents: no URLs, e-mail or IP addresses, long identifiers."""
    text = _plain(value)
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def render_table(doc: Mapping[str, Any]) -> str:
    """A terminal view: components, recommendations with their actions, SLOs, probes, streams."""
    now = doc.get("generated_at")
    out = [
        f"probed {_plain(doc.get('version'))} at {_plain(doc.get('location'))}: "
        f"{_plain(doc.get('overall') or 'UNKNOWN')} ({_iso(now)})"
    ]
    if (config := config_line(doc.get("config"), _iso)) is not None:
        out.append(_plain(config[1]))
    out.append("")
    components = _items(doc.get("components"))
    if components:
        rows = [
            [
                _plain(c.get("name")),
                _plain(c.get("state")),
                _iso(c.get("last_healthy")),
                ", ".join(_plain(n) for n in _strs(c.get("failing"))) or "-",
                ", ".join(_plain(n) for n in _strs(c.get("degraded_by"))) or "-",
            ]
            for c in components
        ]
        out += _columns(["COMPONENT", "STATE", "LAST HEALTHY", "FAILING", "DEGRADED"], rows)
    else:
        out.append("COMPONENTS: no evaluation yet")
    out += ["", "RECOMMENDATIONS"]
    recs = _items(doc.get("recommendations"))
    if not recs:
        out.append("  none")
    for rec in recs:
        out.append(
            f"  [{_plain(rec.get('severity'))}] {_plain(rec.get('title'))} "
            f"({_plain(rec.get('scenario'))}) {_plain(rec.get('state'))} "
            f"since {_iso(rec.get('since'))}"
        )
        if rec.get("summary"):
            out.append(f"      {_plain(rec.get('summary'))}")
        for number, action in enumerate(_strs(rec.get("actions")), start=1):
            out.append(f"      {number}. {_plain(action)}")
        if rec.get("rollback"):
            out.append(f"      Rollback: {_plain(rec.get('rollback'))}")
        for ev in _items(rec.get("evidence")):
            detail = f"; {_plain(ev.get('detail'))}" if ev.get("detail") else ""
            out.append(
                f"      Evidence: {_plain(ev.get('signal'))} = {_num(ev.get('value'))} "
                f"(threshold {_num(ev.get('threshold'))}) since {_iso(ev.get('since'))}{detail}"
            )
        if rec.get("runbook_url"):
            out.append(f"      Runbook: {_plain(rec.get('runbook_url'))}")
    slos = _items(doc.get("slos"))
    if slos:
        rows = [
            [
                _plain(s.get("name")),
                _plain(s.get("sli")),
                _pct(s.get("objective")),
                _ratio_cell(s, "1h"),
                _ratio_cell(s, "30d"),
                _burn(_map(s.get("burn_rate")).get("1h")),
                _pct(s.get("budget_remaining")),
            ]
            for s in slos
        ]
        header = ["SLO", "SLI", "OBJECTIVE", "RATIO 1H", "RATIO 30D", "BURN 1H", "BUDGET LEFT"]
        out += ["", *_columns(header, rows)]
    probes = _items(doc.get("probes"))
    if probes:
        rows = []
        for p in probes:
            last = _map(p.get("last"))
            rows.append(
                [
                    _plain(p.get("probe")),
                    _plain(p.get("kind")),
                    _plain(p.get("target")),
                    ("ok" if last.get("success") is True else "FAIL") if last else "never",
                    _plain(last.get("reason")) or "-",
                    _int(last.get("status_code")),
                    _dur(last.get("duration_seconds")),
                    _age(now, last.get("started_at")),
                    _int(p.get("runs")),
                    _int(p.get("failures")),
                ]
            )
        header = ["PROBE", "KIND", "TARGET", "LAST", "REASON", "HTTP", "TOOK", "WHEN"]
        out += ["", *_columns([*header, "RUNS", "FAILURES"], rows)]
    streams = _items(doc.get("streams"))
    if streams:
        rows = [
            [
                _plain(s.get("stream")),
                _plain(s.get("target")),
                f"{_int(s.get('connected'))}/{_int(s.get('subscribers'))}",
                _int(s.get("received")),
                _int(s.get("lost")),
                _int(s.get("duplicated")),
                _int(s.get("late")),
                _int(s.get("reconnects")),
                _dur(s.get("mean_lag_seconds")),
            ]
            for s in streams
        ]
        header = ["STREAM", "TARGET", "CONNECTED", "RECEIVED", "LOST", "DUPLICATED", "LATE"]
        out += ["", *_columns([*header, "RECONNECTS", "MEAN LAG"], rows)]
        out += [
            f"  {_plain(s.get('stream'))}: {_plain(hint)}"
            for s in streams
            for hint in _strs(s.get("hints"))
        ]
    out += table_history(doc, _iso, _plain, _columns)
    return "\n".join(out)


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The HEARTBEAT "## 1) Status now" block (seed 000), ready to paste.

    Status is OK, DEGRADED or DOWN (UNKNOWN before the first evaluation);
    Notes lists the active recommendations, one line each, scrubbed of IP
    addresses, URLs, e-mail addresses and identifiers.
    """
    lines = [
        "## 1) Status now",
        f"Status: {_plain(doc.get('overall') or 'UNKNOWN')}",
        f"Timestamp (UTC): {_iso(doc.get('generated_at'))}",
        "Summary:",
    ]
    components = _items(doc.get("components"))
    lines += [f"- {_scrub(c.get('name'))}: {_plain(c.get('state'))}" for c in components]
    if not components:
        lines.append("- No components evaluated yet")
    lines += ["", "Notes:"]
    active = _active(doc)
    for rec in active:
        summary = _scrub(rec.get("summary"))
        lines.append(
            f"- {_plain(rec.get('severity'))} {_scrub(rec.get('title'))} since "
            f"{_iso(rec.get('since'))}" + (f": {summary}" if summary else "")
        )
    if not active:
        lines.append("- No active degraded-mode recommendations.")
    config = config_line(doc.get("config"), _iso)
    if config is not None and not config[0]:
        lines.append(f"- {_scrub(config[1])}")
    return "\n".join(lines)


#: Component -> service of the incident template (by name; others by keyword, else api).
_SERVICES = {
    API_READ: "api",
    API_WRITE: "api",
    SSE_STREAM: "api",
    BACKGROUND_JOBS: "worker",
    CONSOLE_ADMIN: "frontend",
}
_SERVICE_ORDER = ("api", "worker", "frontend")


def _service(component: str) -> str:
    if component in _SERVICES:
        return _SERVICES[component]
    lowered = component.lower()
    if any(word in lowered for word in ("job", "worker", "queue", "import")):
        return "worker"
    if any(word in lowered for word in ("console", "admin", "frontend", "ui", "web")):
        return "frontend"
    return "api"


def render_incident(doc: Mapping[str, Any], *, incident_id: str | None = None) -> str:
    """Seed 003's "1) Initial Ack" message, filled from the document.

    - ``Sev``: the highest severity among active recommendations; with none,
      ``Sev-4 (no active recommendation)`` for the incident commander to raise,
      naming the highest pending or inconclusive one if any
      (``Sev-4 (no active recommendation; Sev-2 pending)``).
    - ``Services``: the DEGRADED/DOWN components mapped to api (API Read,
      API Write, SSE Stream), worker (Background Jobs), frontend
      (Console/Admin); other names by keyword, else api.
    - ``Impact``: those components with their state, and the top active
      recommendation's first evidence (else the failing probes) as the signal.
    - ``Last healthy``: the earliest ``last_healthy`` of those components;
      with none affected, the top recommendation's ``since``, else now.
    - ``incident_id`` defaults to ``INC-YYYYMMDD-001`` (the document's UTC date).
    """
    now = doc.get("generated_at")
    if incident_id is None:
        date = _iso(now)[:10].replace("-", "") if _is_num(now) else "YYYYMMDD"
        incident_id = f"INC-{date}-001"
    active = _active(doc)
    top = active[0] if active else None
    if active:
        sev = min(_plain(r.get("severity")) for r in active)
    else:
        waiting = sorted(
            (_plain(r.get("severity")), _plain(r.get("state")))
            for r in _items(doc.get("recommendations"))
            if r.get("state") in ("pending", "inconclusive")
        )
        note = f"; {waiting[0][0]} {waiting[0][1]}" if waiting else ""
        sev = f"Sev-4 (no active recommendation{note})"
    affected = [c for c in _items(doc.get("components")) if c.get("state") in ("DEGRADED", "DOWN")]
    services = sorted({_service(_text(c.get("name"))) for c in affected}, key=_SERVICE_ORDER.index)
    if affected:
        impact = ", ".join(f"{_scrub(c.get('name'))} ({_plain(c.get('state'))})" for c in affected)
    else:
        impact = "no component"
    evidence = _items(top.get("evidence")) if top is not None else []
    failing = [_scrub(n) for c in affected for n in _strs(c.get("failing"))]
    if evidence:
        ev = evidence[0]
        signal = (
            f"{_scrub(ev.get('signal'))} {_num(ev.get('value'))} "
            f"(threshold {_num(ev.get('threshold'))})"
        )
    elif top is not None:
        signal = _scrub(top.get("title"))
    elif failing:
        signal = f"probe success (failing: {', '.join(failing)})"
    else:
        signal = "none (no active recommendation)"
    healthy = [t for c in affected if (t := _number(c.get("last_healthy"))) is not None]
    if healthy:
        last_healthy = _iso(min(healthy))
    elif affected:
        last_healthy = "unknown"
    elif top is not None:
        last_healthy = _iso(top.get("since"))
    else:
        last_healthy = _iso(now)
    return "\n".join(
        [
            f"Incident {_plain(incident_id)} \u2014 Ack",
            f"Sev: {sev} | Services: {', '.join(services) or 'none identified'}",
            f"Impact: {impact} affected \u2014 signal {signal}",
            f"Last healthy: {last_healthy}",
            "Next update: T+30m",
            "IC: {name}  Scribe: {name}",
        ]
    )


# ---------------------------------------------------------------------------
# the HTML page


def _e(value: object) -> str:
    return html.escape(_text(value), quote=True)


_LINK = re.compile(r"^https?://", re.I)
_SPARK_W, _SPARK_H, _SPARK_PAD = 1600, 280, 20


def _round(value: float) -> int:
    """Round half up, exactly as JavaScript's ``Math.round``."""
    floor = math.floor(value)
    return floor + 1 if value - floor >= 0.5 else floor


def _spark(points: Sequence[tuple[float, bool, str]], what: str) -> str:
    """An inline SVG line of ``points`` (value, ok, reason); failed points are marked."""
    if not points:
        return '<span class="muted">-</span>'
    peak = max(value for value, _, _ in points)
    top = peak if peak > 0 else 1.0
    n = len(points)
    coords: list[str] = []
    marks: list[str] = []
    for i, (value, ok, reason) in enumerate(points):
        x = _SPARK_PAD + i * (_SPARK_W - 2 * _SPARK_PAD) / (n - 1) if n > 1 else _SPARK_W / 2
        y = _SPARK_H - _SPARK_PAD - value / top * (_SPARK_H - 2 * _SPARK_PAD)
        cx, cy = _round(x), _round(y)
        coords.append(f"{cx},{cy}")
        if not ok:
            marks.append(
                f'<circle class="fail" cx="{cx}" cy="{cy}" r="28"><title>{_e(reason)}</title>'
                "</circle>"
            )
    label = f"{what} of the last {n}, max {duration(peak)}"
    return (
        f'<svg class="spark" viewBox="0 0 {_SPARK_W} {_SPARK_H}" width="160" height="28" '
        f'role="img" aria-label="{_e(label)}"><polyline points="{" ".join(coords)}"></polyline>'
        f"{''.join(marks)}</svg>"
    )


def _page_header(doc: Mapping[str, Any]) -> str:
    state = _text(doc.get("overall")) or "UNKNOWN"
    generated = _iso(doc.get("generated_at"))
    return (
        f'<header class="top" data-state="{_e(state)}">'
        f'<h1><span id="overall" data-state="{_e(state)}">{_e(state)}</span> '
        f'<span class="where">probed &middot; <span id="location">{_e(doc.get("location"))}'
        "</span></span></h1>"
        f'<p class="meta">generated <time id="generated-at" datetime="{generated}">{generated}'
        f'</time> &middot; version <span id="version">{_e(doc.get("version"))}</span> &middot; '
        f'<span id="refresh">auto-refresh every {REFRESH_SECONDS} s</span></p>'
        f"{_page_state(doc)}{page_config_line(doc, _iso)}{page_maintenance(doc, _iso)}"
        f"{page_skews(doc)}</header>"
    )


def _page_state(doc: Mapping[str, Any]) -> str:
    state = doc.get("state")
    if not isinstance(state, Mapping):
        return ""
    healthy = state.get("healthy") is not False
    if healthy:
        line = f"state saved in {_e(state.get('state_dir'))}"
    else:
        line = f"state NOT saved since {_iso(state.get('since'))} ({_e(state.get('reason'))})"
        if state.get("in_memory") is True:
            line += ", kept in memory only"
    return f'<p class="state" id="state" data-healthy="{"true" if healthy else "false"}">{line}</p>'


def _page_component(c: Mapping[str, Any]) -> str:
    name = _text(c.get("name"))
    state = _text(c.get("state")) or "UNKNOWN"
    probes = _strs(c.get("probes"))
    failing = _strs(c.get("failing"))
    n = len(probes)
    count = "no probes" if n == 0 else "1 probe" if n == 1 else f"{n} probes"
    healthy = _iso(c.get("last_healthy")) if _is_num(c.get("last_healthy")) else "unknown"
    # without members it is not monitored at all, unlike one whose members have no data yet
    since = f'<p class="healthy">last healthy <span class="ts">{healthy}</span></p>' if n else ""
    fail = f'<p class="failing">failing: {_e(", ".join(failing))}</p>' if failing else ""
    if degraded := _strs(c.get("degraded_by")):
        fail += f'<p class="degraded">degraded: {_e(", ".join(degraded))}</p>'
    return (
        f'<div class="component" data-name="{_e(name)}" data-state="{_e(state)}" '
        f'data-monitored="{"true" if n else "false"}"><h3>{_e(name)}</h3>'
        f'<p class="state">{_e(state) if n else "not monitored"}</p>'
        f'<p class="detail" title="{_e(", ".join(probes))}">{count}</p>{since}{fail}</div>'
    )


def _page_components(doc: Mapping[str, Any]) -> str:
    components = _items(doc.get("components"))
    if components:
        body = '<div class="cards">' + "".join(map(_page_component, components)) + "</div>"
    else:
        body = '<p class="empty">No evaluation yet: components appear after the first one.</p>'
    return f'<section id="components"><h2>Components</h2>{body}</section>'


def _page_recommendation(r: Mapping[str, Any]) -> str:
    severity = _text(r.get("severity"))
    state = _text(r.get("state"))
    parts = [
        f'<article class="recommendation" data-scenario="{_e(r.get("scenario"))}" '
        f'data-severity="{_e(severity)}" data-state="{_e(state)}"><h3><span class="sev">'
        f'{_e(severity)}</span> {_e(r.get("title"))} <span class="rstate">{_e(state)}</span> '
        f'<span class="routing">{_e(r.get("routing"))}</span></h3>'
        f'<p class="since">since {_iso(r.get("since"))}</p>'
        f'<p class="summary">{_e(r.get("summary"))}</p>'
    ]
    actions = _strs(r.get("actions"))
    if actions:
        parts.append(
            '<ol class="actions">' + "".join(f"<li>{_e(a)}</li>" for a in actions) + "</ol>"
        )
    if r.get("rollback"):
        parts.append(f'<p class="rollback"><strong>Rollback:</strong> {_e(r.get("rollback"))}</p>')
    evidence = _items(r.get("evidence"))
    if evidence:
        parts.append(
            '<div class="scroll"><table class="evidence"><thead><tr><th>Signal</th><th>Value</th>'
            "<th>Threshold</th><th>Since</th><th>Detail</th></tr></thead><tbody>"
        )
        parts += [
            f"<tr><td>{_e(ev.get('signal'))}</td>"
            f'<td class="num">{evidence_value(ev.get("signal"), ev.get("value"))}</td>'
            f'<td class="num">{evidence_value(ev.get("signal"), ev.get("threshold"))}</td>'
            f"<td>{_iso(ev.get('since'))}</td>"
            f"<td>{_e(ev.get('detail'))}</td></tr>"
            for ev in evidence
        ]
        parts.append("</tbody></table></div>")
    url = _text(r.get("runbook_url"))
    if url and _LINK.match(url):
        parts.append(
            f'<p class="runbook">Runbook: <a href="{_e(url)}" rel="noopener noreferrer">'
            f"{_e(url)}</a></p>"
        )
    elif url:
        parts.append(f'<p class="runbook">Runbook: {_e(url)}</p>')
    parts.append("</article>")
    return "".join(parts)


def _page_recommendations(doc: Mapping[str, Any]) -> str:
    recs = _items(doc.get("recommendations"))
    body = (
        "".join(map(_page_recommendation, recs))
        if recs
        else '<p class="empty">No active recommendations.</p>'
    )
    return f'<section id="recommendations"><h2>Recommendations</h2>{body}</section>'


def _page_slos(doc: Mapping[str, Any]) -> str:
    slos = _items(doc.get("slos"))
    if not slos:
        return '<section id="slos"><h2>SLOs</h2><p class="empty">No SLOs configured.</p></section>'
    rows = []
    for s in slos:
        burn = _map(s.get("burn_rate"))
        budget = _number(s.get("budget_remaining"))
        bad = " bad" if budget is not None and budget < 0 else ""
        rows.append(
            f'<tr class="slo" data-slo="{_e(s.get("name"))}"><td>{_e(s.get("name"))}</td>'
            f'<td>{_e(s.get("sli"))}</td><td class="num">{percent(s.get("objective"))}</td>'
            f'<td class="num">{_window(s.get("window"))}</td>'
            f'<td class="num">{_e(_ratio_cell(s, "1h", percent))}</td>'
            f'<td class="num">{_e(_ratio_cell(s, "30d", percent))}</td>'
            f'<td class="num">{rate(burn.get("1h"))}</td>'
            f'<td class="num{bad}">{percent(budget)}</td></tr>'
        )
    return (
        '<section id="slos"><h2>SLOs</h2>'
        '<div class="scroll"><table><thead><tr><th>SLO</th><th>SLI</th>'
        '<th class="num">Objective</th><th class="num">Window</th><th class="num">Ratio 1h</th>'
        '<th class="num">Ratio 30d</th><th class="num">Burn 1h</th>'
        '<th class="num">Budget left</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div></section>"
    )


def _page_probe(p: Mapping[str, Any], now: object) -> str:
    name = _text(p.get("probe"))
    last = p.get("last")
    if isinstance(last, Mapping):
        ok = "true" if last.get("success") is True else "false"
        result = "ok" if ok == "true" else "FAIL"
        reason = _text(last.get("reason")) or "-"
        code = _int(last.get("status_code"))
        took = duration(last.get("duration_seconds"))
        when = _age(now, last.get("started_at"))
        title = f"run {_text(last.get('run_id'))} trace {_text(last.get('trace_id'))}"
    else:
        ok, result, reason, code, took, when, title = "none", "never run", "-", "-", "-", "-", ""
    points = [
        (d, r.get("ok") is True, _text(r.get("reason")))
        for r in _items(p.get("recent"))
        if (d := _number(r.get("d"))) is not None
    ]
    return (
        f'<tr class="probe" data-probe="{_e(name)}" data-ok="{ok}"><td class="name">{_e(name)}'
        f"{probe_mark(p, _iso)}</td><td>{_e(p.get('kind'))}</td><td>{_e(p.get('target'))}</td>"
        f'<td class="result">{result}</td><td>{_e(reason)}</td><td class="num">{code}</td>'
        f'<td class="num">{took}</td><td class="when" title="{_e(title)}">{when}</td>'
        f'<td class="num">{_int(p.get("runs"))}</td><td class="num">{_int(p.get("failures"))}'
        f'</td><td class="chart">{_spark(points, "latency")}</td></tr>'
    )


def _page_probes(doc: Mapping[str, Any]) -> str:
    probes = _items(doc.get("probes"))
    if not probes:
        return (
            '<section id="probes"><h2>Probes</h2><p class="empty">No probes configured.</p>'
            "</section>"
        )
    now = doc.get("generated_at")
    return (
        '<section id="probes"><h2>Probes</h2>'
        '<div class="scroll"><table><thead><tr><th>Probe</th><th>Kind</th>'
        '<th>Target</th><th>Last</th><th>Reason</th><th class="num">HTTP</th>'
        '<th class="num">Took</th><th>When</th><th class="num">Runs</th>'
        '<th class="num">Failures</th><th>Latency</th></tr></thead><tbody>'
        + "".join(_page_probe(p, now) for p in probes)
        + "</tbody></table></div></section>"
    )


def _page_stream(s: Mapping[str, Any]) -> str:
    name = _text(s.get("stream"))
    connected, subscribers = _number(s.get("connected")), _number(s.get("subscribers"))
    up = connected is not None and subscribers is not None and 0 < subscribers <= connected
    points = [
        (lag, True, "") for x in _items(s.get("lag")) if (lag := _number(x.get("lag"))) is not None
    ]
    hints = "".join(f'<div class="hint">{_e(h)}</div>' for h in _strs(s.get("hints")))
    counts = "".join(
        f'<td class="num">{_int(s.get(key))}</td>'
        for key in ("received", "lost", "duplicated", "out_of_order", "late", "negative_lag")
    )
    return (
        f'<tr class="stream" data-stream="{_e(name)}" data-connected="{"true" if up else "false"}">'
        f'<td class="name">{_e(name)}{hints}</td><td>{_e(s.get("target"))}</td>'
        f'<td class="num">{_int(connected)}/{_int(subscribers)}</td>{counts}'
        f'<td class="num">{_int(s.get("reconnects"))}</td>'
        f"{page_clock_cell(s)}"
        f'<td class="num">{duration(s.get("mean_lag_seconds"))}</td>'
        f'<td class="chart">{_spark(points, "worst delivery lag per slot")}</td></tr>'
    )


def _page_streams(doc: Mapping[str, Any]) -> str:
    streams = _items(doc.get("streams"))
    if not streams:
        return (
            '<section id="streams"><h2>Streams</h2><p class="empty">No streams configured.</p>'
            "</section>"
        )
    return (
        '<section id="streams"><h2>Streams</h2>'
        '<div class="scroll"><table><thead><tr><th>Stream</th><th>Target</th>'
        '<th class="num">Connected</th><th class="num">Received</th><th class="num">Lost</th>'
        '<th class="num">Duplicated</th><th class="num">Out of order</th>'
        '<th class="num">Late</th><th class="num">Negative lag</th>'
        '<th class="num">Reconnects</th><th class="num">Clock offset</th>'
        '<th class="num">Mean lag</th><th>Lag</th></tr></thead><tbody>'
        + "".join(map(_page_stream, streams))
        + "</tbody></table></div></section>"
    )


def _page_app(doc: Mapping[str, Any]) -> str:
    """The inside of ``main#app``: exactly what the script's ``renderApp`` produces."""
    return "".join(
        part(doc)
        for part in (
            _page_header,
            _page_components,
            _page_recommendations,
            _page_slos,
            _page_probes,
            _page_streams,
            lambda d: page_history(d, _iso),
        )
    )


def _page_title(doc: Mapping[str, Any]) -> str:
    return (
        f"{_text(doc.get('overall')) or 'UNKNOWN'} - probed status - {_text(doc.get('location'))}"
    )


# The script mirrors the Python renderer above function by function; keep them
# in step (tests/test_status_page.py compares both renderings in Chromium).
_SCRIPT = r"""
(() => {
  "use strict";
  const REFRESH_MS = __REFRESH__ * 1000;
  const ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"};
  const text = (v) => (v === null || v === undefined ? "" : String(v));
  const e = (v) => text(v).replace(/[&<>"']/g, (c) => ESC[c]);
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const isMap = (v) => Boolean(v) && typeof v === "object" && !Array.isArray(v);
  const items = (v) => (Array.isArray(v) ? v.filter(isMap) : []);
  const strs = (v) => (Array.isArray(v) ? v.map(text) : []);
  const map = (v) => (isMap(v) ? v : {});
__UNITS__
  const num = (v) => (isNum(v) ? trim(fixed(v, 3)) : "-");
  const int = (v) => (isNum(v) ? String(Math.trunc(v)) : "-");
  const iso = (v) => {
    if (!isNum(v)) return "-";
    return new Date(Math.floor(v) * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  };
  const age = (now, then) => {
    if (!(isNum(now) && isNum(then))) return "-";
    const a = Math.max(0, now - then);
    if (a < 120) return Math.floor(a) + " s ago";
    if (a < 7200) return Math.floor(a / 60) + " min ago";
    return Math.floor(a / 3600) + " h ago";
  };
  const span = (v) => {
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (v >= size) return Math.trunc(v / size) + unit;
    }
    return Math.trunc(v) + "s";
  };
  const ratioCell = (s, label) => {
    const ratio = map(s.ratio)[label];
    if (isNum(ratio)) return percent(ratio);
    const covered = map(s.coverage)[label];
    if (!map(s.events)[label] || !isNum(covered)) return "-";
    return `insufficient data (${span(covered)} of ${label})`;
  };
  const windowLabel = (v) => {
    if (!isNum(v)) return "-";
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (v >= size && v % size === 0) return Math.trunc(v / size) + unit;
    }
    return num(v) + "s";
  };
  const LINK = /^https?:\/\//i;
  const W = 1600, H = 280, PAD = 20;

  const spark = (points, what) => {
    if (!points.length) return '<span class="muted">-</span>';
    const peak = Math.max(...points.map((p) => p[0]));
    const top = peak > 0 ? peak : 1.0;
    const n = points.length;
    const coords = [];
    const marks = [];
    points.forEach(([value, ok, reason], i) => {
      const x = n > 1 ? PAD + i * (W - 2 * PAD) / (n - 1) : W / 2;
      const y = H - PAD - value / top * (H - 2 * PAD);
      const cx = Math.round(x), cy = Math.round(y);
      coords.push(cx + "," + cy);
      if (!ok) {
        marks.push(`<circle class="fail" cx="${cx}" cy="${cy}" r="28">` +
          `<title>${e(reason)}</title></circle>`);
      }
    });
    const label = `${what} of the last ${n}, max ${duration(peak)}`;
    return `<svg class="spark" viewBox="0 0 ${W} ${H}" width="160" height="28" ` +
      `role="img" aria-label="${e(label)}"><polyline points="${coords.join(" ")}"></polyline>` +
      `${marks.join("")}</svg>`;
  };

  const header = (doc) => {
    const state = text(doc.overall) || "UNKNOWN";
    const generated = iso(doc.generated_at);
    return `<header class="top" data-state="${e(state)}">` +
      `<h1><span id="overall" data-state="${e(state)}">${e(state)}</span> ` +
      `<span class="where">probed &middot; <span id="location">${e(doc.location)}` +
      "</span></span></h1>" +
      `<p class="meta">generated <time id="generated-at" datetime="${generated}">${generated}` +
      `</time> &middot; version <span id="version">${e(doc.version)}</span> &middot; ` +
      `<span id="refresh">auto-refresh every __REFRESH__ s</span></p>` +
      `${stateLine(doc)}${configPara(doc)}${maintenancePara(doc)}${skewPara(doc)}</header>`;
  };

  const stateLine = (doc) => {
    if (!isMap(doc.state)) return "";
    const state = doc.state;
    const healthy = state.healthy !== false;
    let line = `state saved in ${e(state.state_dir)}`;
    if (!healthy) {
      line = `state NOT saved since ${iso(state.since)} (${e(state.reason)})`;
      if (state.in_memory === true) line += ", kept in memory only";
    }
    return `<p class="state" id="state" data-healthy="${healthy ? "true" : "false"}">` +
      `${line}</p>`;
  };
__CONFIG_LINE__
__MAINTENANCE__
__HISTORY__
__CLOCK__
  const component = (c) => {
    const name = text(c.name);
    const state = text(c.state) || "UNKNOWN";
    const probes = strs(c.probes);
    const failing = strs(c.failing);
    const n = probes.length;
    const count = n === 0 ? "no probes" : n === 1 ? "1 probe" : `${n} probes`;
    const healthy = isNum(c.last_healthy) ? iso(c.last_healthy) : "unknown";
    const since = n ? `<p class="healthy">last healthy <span class="ts">${healthy}</span></p>` : "";
    const degraded = strs(c.degraded_by);
    const fail =
      (failing.length ? `<p class="failing">failing: ${e(failing.join(", "))}</p>` : "") +
      (degraded.length ? `<p class="degraded">degraded: ${e(degraded.join(", "))}</p>` : "");
    return `<div class="component" data-name="${e(name)}" data-state="${e(state)}" ` +
      `data-monitored="${n ? "true" : "false"}"><h3>${e(name)}</h3>` +
      `<p class="state">${n ? e(state) : "not monitored"}</p>` +
      `<p class="detail" title="${e(probes.join(", "))}">${count}</p>${since}${fail}</div>`;
  };

  const components = (doc) => {
    const list = items(doc.components);
    const body = list.length
      ? '<div class="cards">' + list.map(component).join("") + "</div>"
      : '<p class="empty">No evaluation yet: components appear after the first one.</p>';
    return `<section id="components"><h2>Components</h2>${body}</section>`;
  };

  const recommendation = (r) => {
    const severity = text(r.severity);
    const state = text(r.state);
    const parts = [
      `<article class="recommendation" data-scenario="${e(r.scenario)}" ` +
      `data-severity="${e(severity)}" data-state="${e(state)}">` +
      `<h3><span class="sev">${e(severity)}</span> ${e(r.title)} ` +
      `<span class="rstate">${e(state)}</span> <span class="routing">${e(r.routing)}</span></h3>` +
      `<p class="since">since ${iso(r.since)}</p>` +
      `<p class="summary">${e(r.summary)}</p>`,
    ];
    const actions = strs(r.actions);
    if (actions.length) {
      parts.push('<ol class="actions">' + actions.map((a) => `<li>${e(a)}</li>`).join("") +
        "</ol>");
    }
    if (r.rollback) {
      parts.push(`<p class="rollback"><strong>Rollback:</strong> ${e(r.rollback)}</p>`);
    }
    const evidence = items(r.evidence);
    if (evidence.length) {
      parts.push('<div class="scroll"><table class="evidence"><thead><tr><th>Signal</th>' +
        "<th>Value</th><th>Threshold</th><th>Since</th><th>Detail</th></tr></thead><tbody>");
      for (const ev of evidence) {
        parts.push(`<tr><td>${e(ev.signal)}</td>` +
          `<td class="num">${evidenceValue(ev.signal, ev.value)}</td>` +
          `<td class="num">${evidenceValue(ev.signal, ev.threshold)}</td>` +
          `<td>${iso(ev.since)}</td>` +
          `<td>${e(ev.detail)}</td></tr>`);
      }
      parts.push("</tbody></table></div>");
    }
    const url = text(r.runbook_url);
    if (url && LINK.test(url)) {
      parts.push(`<p class="runbook">Runbook: <a href="${e(url)}" rel="noopener noreferrer">` +
        `${e(url)}</a></p>`);
    } else if (url) {
      parts.push(`<p class="runbook">Runbook: ${e(url)}</p>`);
    }
    parts.push("</article>");
    return parts.join("");
  };

  const recommendations = (doc) => {
    const list = items(doc.recommendations);
    const body = list.length
      ? list.map(recommendation).join("")
      : '<p class="empty">No active recommendations.</p>';
    return `<section id="recommendations"><h2>Recommendations</h2>${body}</section>`;
  };

  const slos = (doc) => {
    const list = items(doc.slos);
    if (!list.length) {
      return '<section id="slos"><h2>SLOs</h2><p class="empty">No SLOs configured.</p></section>';
    }
    const rows = list.map((s) => {
      const burnRate = map(s.burn_rate);
      const budget = s.budget_remaining;
      const bad = isNum(budget) && budget < 0 ? " bad" : "";
      return `<tr class="slo" data-slo="${e(s.name)}"><td>${e(s.name)}</td>` +
        `<td>${e(s.sli)}</td><td class="num">${percent(s.objective)}</td>` +
        `<td class="num">${windowLabel(s.window)}</td>` +
        `<td class="num">${e(ratioCell(s, "1h"))}</td>` +
        `<td class="num">${e(ratioCell(s, "30d"))}</td>` +
        `<td class="num">${rate(burnRate["1h"])}</td>` +
        `<td class="num${bad}">${percent(budget)}</td></tr>`;
    });
    return '<section id="slos"><h2>SLOs</h2>' +
      '<div class="scroll"><table><thead><tr><th>SLO</th><th>SLI</th>' +
      '<th class="num">Objective</th><th class="num">Window</th><th class="num">Ratio 1h</th>' +
      '<th class="num">Ratio 30d</th><th class="num">Burn 1h</th>' +
      '<th class="num">Budget left</th></tr></thead><tbody>' + rows.join("") +
      "</tbody></table></div></section>";
  };

  const probe = (p, now) => {
    const name = text(p.probe);
    const last = p.last;
    let ok = "none", result = "never run", reason = "-", code = "-", took = "-";
    let when = "-", title = "";
    if (isMap(last)) {
      ok = last.success === true ? "true" : "false";
      result = ok === "true" ? "ok" : "FAIL";
      reason = text(last.reason) || "-";
      code = int(last.status_code);
      took = duration(last.duration_seconds);
      when = age(now, last.started_at);
      title = `run ${text(last.run_id)} trace ${text(last.trace_id)}`;
    }
    const points = items(p.recent).filter((r) => isNum(r.d))
      .map((r) => [r.d, r.ok === true, text(r.reason)]);
    return `<tr class="probe" data-probe="${e(name)}" data-ok="${ok}"><td class="name">${e(name)}` +
      `${maintenanceMark(p)}</td><td>${e(p.kind)}</td><td>${e(p.target)}</td>` +
      `<td class="result">${result}</td><td>${e(reason)}</td><td class="num">${code}</td>` +
      `<td class="num">${took}</td><td class="when" title="${e(title)}">${when}</td>` +
      `<td class="num">${int(p.runs)}</td><td class="num">${int(p.failures)}` +
      `</td><td class="chart">${spark(points, "latency")}</td></tr>`;
  };

  const probes = (doc) => {
    const list = items(doc.probes);
    if (!list.length) {
      return '<section id="probes"><h2>Probes</h2><p class="empty">No probes configured.</p>' +
        "</section>";
    }
    return '<section id="probes"><h2>Probes</h2>' +
      '<div class="scroll"><table><thead><tr><th>Probe</th><th>Kind</th>' +
      '<th>Target</th><th>Last</th><th>Reason</th><th class="num">HTTP</th>' +
      '<th class="num">Took</th><th>When</th><th class="num">Runs</th>' +
      '<th class="num">Failures</th><th>Latency</th></tr></thead><tbody>' +
      list.map((p) => probe(p, doc.generated_at)).join("") + "</tbody></table></div></section>";
  };

  const stream = (s) => {
    const name = text(s.stream);
    const connected = s.connected, subscribers = s.subscribers;
    const up = isNum(connected) && isNum(subscribers) && 0 < subscribers &&
      subscribers <= connected;
    const points = items(s.lag).filter((x) => isNum(x.lag)).map((x) => [x.lag, true, ""]);
    const hints = strs(s.hints).map((h) => `<div class="hint">${e(h)}</div>`).join("");
    const counts = ["received", "lost", "duplicated", "out_of_order", "late", "negative_lag"]
      .map((key) => `<td class="num">${int(s[key])}</td>`).join("");
    return `<tr class="stream" data-stream="${e(name)}" ` +
      `data-connected="${up ? "true" : "false"}">` +
      `<td class="name">${e(name)}${hints}</td><td>${e(s.target)}</td>` +
      `<td class="num">${int(connected)}/${int(subscribers)}</td>${counts}` +
      `<td class="num">${int(s.reconnects)}</td>` +
      `${clockCell(s)}` +
      `<td class="num">${duration(s.mean_lag_seconds)}</td>` +
      `<td class="chart">${spark(points, "worst delivery lag per slot")}</td></tr>`;
  };

  const streams = (doc) => {
    const list = items(doc.streams);
    if (!list.length) {
      return '<section id="streams"><h2>Streams</h2>' +
        '<p class="empty">No streams configured.</p></section>';
    }
    return '<section id="streams"><h2>Streams</h2>' +
      '<div class="scroll"><table><thead><tr><th>Stream</th>' +
      '<th>Target</th><th class="num">Connected</th><th class="num">Received</th>' +
      '<th class="num">Lost</th><th class="num">Duplicated</th><th class="num">Out of order</th>' +
      '<th class="num">Late</th><th class="num">Negative lag</th>' +
      '<th class="num">Reconnects</th><th class="num">Clock offset</th>' +
      '<th class="num">Mean lag</th><th>Lag</th></tr></thead><tbody>' +
      list.map(stream).join("") + "</tbody></table></div></section>";
  };

  const PARTS = [header, components, recommendations, slos, probes, streams, historySection];
  const renderApp = (doc) => PARTS.map((part) => part(doc)).join("");
  const pageTitle = (doc) =>
    `${text(doc.overall) || "UNKNOWN"} - probed status - ${text(doc.location)}`;

  const refresh = async () => {
    try {
      const resp = await fetch("api/v1/status", {
        cache: "no-store",
        headers: {Accept: "application/json"},
      });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const doc = await resp.json();
      const app = document.getElementById("app");
      app.innerHTML = renderApp(doc);
      app.setAttribute("data-rendered", "client");
      document.title = pageTitle(doc);
    } catch (err) {
      const el = document.getElementById("refresh");
      if (el) {
        const why = err && err.message ? err.message : String(err);
        el.textContent = `update failed (${why}); showing older data`;
        el.setAttribute("data-error", "true");
      }
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  };
  setTimeout(refresh, REFRESH_MS);
})();
""".replace("__REFRESH__", str(REFRESH_SECONDS)).replace("__CONFIG_LINE__", CONFIG_LINE_JS)
_SCRIPT = _SCRIPT.replace("__MAINTENANCE__", MAINTENANCE_JS).replace("__HISTORY__", HISTORY_JS)
_SCRIPT = _SCRIPT.replace("__CLOCK__", CLOCK_JS).replace("__UNITS__", UNITS_JS)


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


#: Only the page's own style and script run; network access only to its own origin.
_CSP = (
    f"default-src 'none'; style-src {_csp_hash(PAGE_CSS)}; script-src {_csp_hash(_SCRIPT)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


def render_page(doc: Mapping[str, Any]) -> str:
    """The status page at ``/``: one self-contained HTML document rendered from ``doc``.

    Stable hooks for tests and scripts: ``#overall[data-state]``,
    ``.component[data-name][data-state][data-monitored]`` (``false``: no members),
    ``.recommendation[data-scenario][data-severity][data-state]`` (``.routing`` inside),
    ``p#state[data-healthy]``, ``p#config[data-ok]``, ``tr.slo[data-slo]``,
    ``tr.probe[data-probe][data-ok]`` (``true``, ``false`` or ``none``),
    ``tr.stream[data-stream][data-connected]``, ``tr.history[data-kind]`` and
    ``main#app[data-rendered]`` (``server``, or ``client`` after a refresh).
    """
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(_page_title(doc))}</title>\n"
        f"<style>{PAGE_CSS}</style>\n</head><body>\n"
        f'<main id="app" data-rendered="server">{_page_app(doc)}</main>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
