"""The status document as text: ``probed status``'s table, markdown and incident formats.

``render_table`` (the terminal view), ``render_markdown`` (the HEARTBEAT "## 1) Status
now" block) and ``render_incident`` (the "Initial Ack" template) take the JSON document
of ``GET /api/v1/status`` (``probed.status``), so the CLI renders what it fetched. They
drop control characters; markdown and incident text also replace IP addresses, URLs,
e-mail addresses and long hexadecimal identifiers in free text. Those text helpers
(``plain``, ``scrub``, ``columns``, ``service_of``) serve the fleet's renderers too
(``probed.fleettext``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from probed.configstatus import config_line
from probed.configtypes import API_READ, API_WRITE, BACKGROUND_JOBS, CONSOLE_ADMIN, SSE_STREAM
from probed.historypage import table_history
from probed.pageunits import fixed, trim
from probed.statusfields import (
    age,
    integer,
    is_num,
    iso,
    items,
    mapping,
    number,
    ratio_cell,
    shard_text,
    strs,
    text,
)

__all__ = [
    "SERVICE_ORDER",
    "columns",
    "plain",
    "render_incident",
    "render_markdown",
    "render_table",
    "scrub",
    "service_of",
]

# Number formatting for the text renderers (the page's figures are probed.pageunits).


def _num(value: object) -> str:
    result = number(value)
    return "-" if result is None else trim(fixed(result, 3))


def _pct(value: object) -> str:
    result = number(value)
    return "-" if result is None else trim(fixed(result * 100, 3)) + "%"


def _dur(value: object) -> str:
    seconds = number(value)
    if seconds is None:
        return "-"
    return f"{fixed(seconds * 1000, 1)} ms" if seconds < 1 else f"{fixed(seconds, 2)} s"


def _burn(value: object) -> str:
    return f"{_num(value)}x" if is_num(value) else "-"


def _active(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Active recommendations, Sev-1 first, then the oldest."""
    recs = [r for r in items(doc.get("recommendations")) if r.get("state") == "active"]
    return sorted(
        recs,
        key=lambda r: (
            text(r.get("severity")),
            number(r.get("since")) or math.inf,
        ),
    )


# ---------------------------------------------------------------------------
# the renderers

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


def plain(value: object) -> str:
    """Text for a terminal: control characters (escape sequences) replaced by ``?``."""
    return _CONTROL.sub("?", text(value))


def scrub(value: object) -> str:
    """Free text for shared documents: no URLs, e-mail or IP addresses, long identifiers."""
    scrubbed = plain(value)
    for pattern, replacement in _SCRUBS:
        scrubbed = pattern.sub(replacement, scrubbed)
    return scrubbed


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` under ``header`` in left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def render_table(doc: Mapping[str, Any]) -> str:
    """A terminal view: components, recommendations with their actions, SLOs, probes, streams."""
    now = doc.get("generated_at")
    where = ", ".join(filter(None, (plain(doc.get("location")), shard_text(doc))))
    out = [
        f"probed {plain(doc.get('version'))} at {where}: "
        f"{plain(doc.get('overall') or 'UNKNOWN')} ({iso(now)})"
    ]
    if (config := config_line(doc.get("config"), iso)) is not None:
        out.append(plain(config[1]))
    out.append("")
    components = items(doc.get("components"))
    if components:
        rows = [
            [
                plain(c.get("name")),
                plain(c.get("state")),
                iso(c.get("last_healthy")),
                ", ".join(plain(n) for n in strs(c.get("failing"))) or "-",
                ", ".join(plain(n) for n in strs(c.get("degraded_by"))) or "-",
            ]
            for c in components
        ]
        out += columns(["COMPONENT", "STATE", "LAST HEALTHY", "FAILING", "DEGRADED"], rows)
    else:
        out.append("COMPONENTS: no evaluation yet")
    out += ["", "RECOMMENDATIONS"]
    recs = items(doc.get("recommendations"))
    if not recs:
        out.append("  none")
    for rec in recs:
        out.append(
            f"  [{plain(rec.get('severity'))}] {plain(rec.get('title'))} "
            f"({plain(rec.get('scenario'))}) {plain(rec.get('state'))} "
            f"since {iso(rec.get('since'))}"
        )
        if rec.get("summary"):
            out.append(f"      {plain(rec.get('summary'))}")
        for step, action in enumerate(strs(rec.get("actions")), start=1):
            out.append(f"      {step}. {plain(action)}")
        if rec.get("rollback"):
            out.append(f"      Rollback: {plain(rec.get('rollback'))}")
        for ev in items(rec.get("evidence")):
            detail = f"; {plain(ev.get('detail'))}" if ev.get("detail") else ""
            out.append(
                f"      Evidence: {plain(ev.get('signal'))} = {_num(ev.get('value'))} "
                f"(threshold {_num(ev.get('threshold'))}) since {iso(ev.get('since'))}{detail}"
            )
        if rec.get("runbook_url"):
            out.append(f"      Runbook: {plain(rec.get('runbook_url'))}")
    slos = items(doc.get("slos"))
    if slos:
        rows = [
            [
                plain(s.get("name")),
                plain(s.get("sli")),
                _pct(s.get("objective")),
                ratio_cell(s, "1h", _pct),
                ratio_cell(s, "30d", _pct),
                _burn(mapping(s.get("burn_rate")).get("1h")),
                _pct(s.get("budget_remaining")),
            ]
            for s in slos
        ]
        header = ["SLO", "SLI", "OBJECTIVE", "RATIO 1H", "RATIO 30D", "BURN 1H", "BUDGET LEFT"]
        out += ["", *columns(header, rows)]
    probes = items(doc.get("probes"))
    if probes:
        rows = []
        for p in probes:
            last = mapping(p.get("last"))
            rows.append(
                [
                    plain(p.get("probe")),
                    plain(p.get("kind")),
                    plain(p.get("target")),
                    ("ok" if last.get("success") is True else "FAIL") if last else "never",
                    plain(last.get("reason")) or "-",
                    integer(last.get("status_code")),
                    _dur(last.get("duration_seconds")),
                    age(now, last.get("started_at")),
                    integer(p.get("runs")),
                    integer(p.get("failures")),
                ]
            )
        header = ["PROBE", "KIND", "TARGET", "LAST", "REASON", "HTTP", "TOOK", "WHEN"]
        out += ["", *columns([*header, "RUNS", "FAILURES"], rows)]
    streams = items(doc.get("streams"))
    if streams:
        rows = [
            [
                plain(s.get("stream")),
                plain(s.get("target")),
                f"{integer(s.get('connected'))}/{integer(s.get('subscribers'))}",
                integer(s.get("received")),
                integer(s.get("lost")),
                integer(s.get("duplicated")),
                integer(s.get("late")),
                integer(s.get("reconnects")),
                _dur(s.get("mean_lag_seconds")),
            ]
            for s in streams
        ]
        header = ["STREAM", "TARGET", "CONNECTED", "RECEIVED", "LOST", "DUPLICATED", "LATE"]
        out += ["", *columns([*header, "RECONNECTS", "MEAN LAG"], rows)]
        out += [
            f"  {plain(s.get('stream'))}: {plain(hint)}"
            for s in streams
            for hint in strs(s.get("hints"))
        ]
    out += table_history(doc, iso, plain, columns)
    return "\n".join(out)


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The HEARTBEAT "## 1) Status now" block (seed 000), ready to paste.

    Status is OK, DEGRADED or DOWN (UNKNOWN before the first evaluation);
    Notes lists the active recommendations, one line each, scrubbed of IP
    addresses, URLs, e-mail addresses and identifiers.
    """
    lines = [
        "## 1) Status now",
        f"Status: {plain(doc.get('overall') or 'UNKNOWN')}",
        f"Timestamp (UTC): {iso(doc.get('generated_at'))}",
        "Summary:",
    ]
    components = items(doc.get("components"))
    lines += [f"- {scrub(c.get('name'))}: {plain(c.get('state'))}" for c in components]
    if not components:
        lines.append("- No components evaluated yet")
    lines += ["", "Notes:"]
    active = _active(doc)
    for rec in active:
        summary = scrub(rec.get("summary"))
        lines.append(
            f"- {plain(rec.get('severity'))} {scrub(rec.get('title'))} since "
            f"{iso(rec.get('since'))}" + (f": {summary}" if summary else "")
        )
    if not active:
        lines.append("- No active degraded-mode recommendations.")
    config = config_line(doc.get("config"), iso)
    if config is not None and not config[0]:
        lines.append(f"- {scrub(config[1])}")
    return "\n".join(lines)


#: Component -> service of the incident template (by name; others by keyword, else api).
_SERVICES = {
    API_READ: "api",
    API_WRITE: "api",
    SSE_STREAM: "api",
    BACKGROUND_JOBS: "worker",
    CONSOLE_ADMIN: "frontend",
}
SERVICE_ORDER = ("api", "worker", "frontend")
"""The order of the incident template's services."""


def service_of(component: str) -> str:
    """The incident template's service of ``component`` (api, worker or frontend)."""
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
        date = iso(now)[:10].replace("-", "") if is_num(now) else "YYYYMMDD"
        incident_id = f"INC-{date}-001"
    active = _active(doc)
    top = active[0] if active else None
    if active:
        sev = min(plain(r.get("severity")) for r in active)
    else:
        waiting = sorted(
            (plain(r.get("severity")), plain(r.get("state")))
            for r in items(doc.get("recommendations"))
            if r.get("state") in ("pending", "inconclusive")
        )
        note = f"; {waiting[0][0]} {waiting[0][1]}" if waiting else ""
        sev = f"Sev-4 (no active recommendation{note})"
    affected = [c for c in items(doc.get("components")) if c.get("state") in ("DEGRADED", "DOWN")]
    services = sorted({service_of(text(c.get("name"))) for c in affected}, key=SERVICE_ORDER.index)
    if affected:
        impact = ", ".join(f"{scrub(c.get('name'))} ({plain(c.get('state'))})" for c in affected)
    else:
        impact = "no component"
    evidence = items(top.get("evidence")) if top is not None else []
    failing = [scrub(n) for c in affected for n in strs(c.get("failing"))]
    if evidence:
        ev = evidence[0]
        signal = (
            f"{scrub(ev.get('signal'))} {_num(ev.get('value'))} "
            f"(threshold {_num(ev.get('threshold'))})"
        )
    elif top is not None:
        signal = scrub(top.get("title"))
    elif failing:
        signal = f"probe success (failing: {', '.join(failing)})"
    else:
        signal = "none (no active recommendation)"
    healthy = [t for c in affected if (t := number(c.get("last_healthy"))) is not None]
    if healthy:
        last_healthy = iso(min(healthy))
    elif affected:
        last_healthy = "unknown"
    elif top is not None:
        last_healthy = iso(top.get("since"))
    else:
        last_healthy = iso(now)
    return "\n".join(
        [
            f"Incident {plain(incident_id)} \u2014 Ack",
            f"Sev: {sev} | Services: {', '.join(services) or 'none identified'}",
            f"Impact: {impact} affected \u2014 signal {signal}",
            f"Last healthy: {last_healthy}",
            "Next update: T+30m",
            "IC: {name}  Scribe: {name}",
        ]
    )
