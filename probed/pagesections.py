"""The status page's sections: the markup inside ``main#app`` for a status document.

``page_app`` renders, from the JSON of ``GET /api/v1/status`` (``probed.status``), the
header (overall state, location, time, version, state directory, config, maintenance and
clock lines), the component cards, the recommendations with their actions and evidence,
the SLOs, the probes and streams tables with inline SVG sparklines, and the history. The
page (``probed.statuspage``) puts it in ``main#app`` and swaps in a fresh one every 10 s.
Free text is HTML-escaped; a runbook URL becomes a link only if it is http(s). Figures
are rounded and carry their unit (``probed.pageunits``).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from probed.clockpage import page_clock_cell, page_skews
from probed.configstatus import page_config_line
from probed.historypage import page_history
from probed.maintenancepage import page_maintenance, probe_mark
from probed.pageunits import duration, evidence_value, fixed, percent, rate, trim
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

__all__ = ["page_app"]


def _e(value: object) -> str:
    """``value`` as HTML text or attribute value (quotes escaped too)."""
    return html.escape(text(value), quote=True)


def _window(value: object) -> str:
    seconds = number(value)
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{math.trunc(seconds / size)}{unit}"
    return f"{trim(fixed(seconds, 3))}s"


_LINK = re.compile(r"^https?://", re.I)
_SPARK_W, _SPARK_H, _SPARK_PAD = 1600, 280, 20


def _round(value: float) -> int:
    """Round half up (Python's ``round`` goes to even)."""
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


def _page_header(doc: Mapping[str, Any], refresh: int) -> str:
    state = text(doc.get("overall")) or "UNKNOWN"
    generated = iso(doc.get("generated_at"))
    return (
        f'<header class="top" data-state="{_e(state)}">'
        f'<h1><span id="overall" data-state="{_e(state)}">{_e(state)}</span> '
        f'<span class="where">probed &middot; <span id="location">{_e(doc.get("location"))}'
        f"</span>{_shard(doc)}</span></h1>"
        f'<p class="meta">generated <time id="generated-at" datetime="{generated}">{generated}'
        f'</time> &middot; version <span id="version">{_e(doc.get("version"))}</span> &middot; '
        f'<span id="refresh">auto-refresh every {refresh} s</span></p>'
        f"{_page_state(doc)}{page_config_line(doc, iso)}{page_maintenance(doc, iso)}"
        f"{page_skews(doc)}</header>"
    )


def _shard(doc: Mapping[str, Any]) -> str:
    """`` · shard 1/3`` after the location when the daemon is one of several shards."""
    shard = shard_text(doc)
    return f' &middot; <span id="shard">{_e(shard)}</span>' if shard else ""


def _page_state(doc: Mapping[str, Any]) -> str:
    state = doc.get("state")
    if not isinstance(state, Mapping):
        return ""
    healthy = state.get("healthy") is not False
    if healthy:
        line = f"state saved in {_e(state.get('state_dir'))}"
    else:
        line = f"state NOT saved since {iso(state.get('since'))} ({_e(state.get('reason'))})"
        if state.get("in_memory") is True:
            line += ", kept in memory only"
    return f'<p class="state" id="state" data-healthy="{"true" if healthy else "false"}">{line}</p>'


def _page_component(c: Mapping[str, Any]) -> str:
    name = text(c.get("name"))
    state = text(c.get("state")) or "UNKNOWN"
    probes = strs(c.get("probes"))
    failing = strs(c.get("failing"))
    n = len(probes)
    count = "no probes" if n == 0 else "1 probe" if n == 1 else f"{n} probes"
    healthy = iso(c.get("last_healthy")) if is_num(c.get("last_healthy")) else "unknown"
    # without members it is not monitored at all, unlike one whose members have no data yet
    since = f'<p class="healthy">last healthy <span class="ts">{healthy}</span></p>' if n else ""
    fail = f'<p class="failing">failing: {_e(", ".join(failing))}</p>' if failing else ""
    if degraded := strs(c.get("degraded_by")):
        fail += f'<p class="degraded">degraded: {_e(", ".join(degraded))}</p>'
    return (
        f'<div class="component" data-name="{_e(name)}" data-state="{_e(state)}" '
        f'data-monitored="{"true" if n else "false"}"><h3>{_e(name)}</h3>'
        f'<p class="state">{_e(state) if n else "not monitored"}</p>'
        f'<p class="detail" title="{_e(", ".join(probes))}">{count}</p>{since}{fail}</div>'
    )


def _page_components(doc: Mapping[str, Any]) -> str:
    components = items(doc.get("components"))
    if components:
        body = '<div class="cards">' + "".join(map(_page_component, components)) + "</div>"
    else:
        body = '<p class="empty">No evaluation yet: components appear after the first one.</p>'
    return f'<section id="components"><h2>Components</h2>{body}</section>'


def _page_recommendation(r: Mapping[str, Any]) -> str:
    severity = text(r.get("severity"))
    state = text(r.get("state"))
    parts = [
        f'<article class="recommendation" data-scenario="{_e(r.get("scenario"))}" '
        f'data-severity="{_e(severity)}" data-state="{_e(state)}"><h3><span class="sev">'
        f'{_e(severity)}</span> {_e(r.get("title"))} <span class="rstate">{_e(state)}</span> '
        f'<span class="routing">{_e(r.get("routing"))}</span></h3>'
        f'<p class="since">since {iso(r.get("since"))}</p>'
        f'<p class="summary">{_e(r.get("summary"))}</p>'
    ]
    actions = strs(r.get("actions"))
    if actions:
        parts.append(
            '<ol class="actions">' + "".join(f"<li>{_e(a)}</li>" for a in actions) + "</ol>"
        )
    if r.get("rollback"):
        parts.append(f'<p class="rollback"><strong>Rollback:</strong> {_e(r.get("rollback"))}</p>')
    evidence = items(r.get("evidence"))
    if evidence:
        parts.append(
            '<div class="scroll"><table class="evidence"><thead><tr><th>Signal</th><th>Value</th>'
            "<th>Threshold</th><th>Since</th><th>Detail</th></tr></thead><tbody>"
        )
        parts += [
            f"<tr><td>{_e(ev.get('signal'))}</td>"
            f'<td class="num">{evidence_value(ev.get("signal"), ev.get("value"))}</td>'
            f'<td class="num">{evidence_value(ev.get("signal"), ev.get("threshold"))}</td>'
            f"<td>{iso(ev.get('since'))}</td>"
            f"<td>{_e(ev.get('detail'))}</td></tr>"
            for ev in evidence
        ]
        parts.append("</tbody></table></div>")
    url = text(r.get("runbook_url"))
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
    recs = items(doc.get("recommendations"))
    body = (
        "".join(map(_page_recommendation, recs))
        if recs
        else '<p class="empty">No active recommendations.</p>'
    )
    return f'<section id="recommendations"><h2>Recommendations</h2>{body}</section>'


def _page_slos(doc: Mapping[str, Any]) -> str:
    slos = items(doc.get("slos"))
    if not slos:
        return '<section id="slos"><h2>SLOs</h2><p class="empty">No SLOs configured.</p></section>'
    rows = []
    for s in slos:
        burn = mapping(s.get("burn_rate"))
        budget = number(s.get("budget_remaining"))
        bad = " bad" if budget is not None and budget < 0 else ""
        rows.append(
            f'<tr class="slo" data-slo="{_e(s.get("name"))}"><td>{_e(s.get("name"))}</td>'
            f'<td>{_e(s.get("sli"))}</td><td class="num">{percent(s.get("objective"))}</td>'
            f'<td class="num">{_window(s.get("window"))}</td>'
            f'<td class="num">{_e(ratio_cell(s, "1h", percent))}</td>'
            f'<td class="num">{_e(ratio_cell(s, "30d", percent))}</td>'
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
    name = text(p.get("probe"))
    last = p.get("last")
    if isinstance(last, Mapping):
        ok = "true" if last.get("success") is True else "false"
        result = "ok" if ok == "true" else "FAIL"
        reason = text(last.get("reason")) or "-"
        code = integer(last.get("status_code"))
        took = duration(last.get("duration_seconds"))
        when = age(now, last.get("started_at"))
        title = f"run {text(last.get('run_id'))} trace {text(last.get('trace_id'))}"
    else:
        ok, result, reason, code, took, when, title = "none", "never run", "-", "-", "-", "-", ""
    points = [
        (d, r.get("ok") is True, text(r.get("reason")))
        for r in items(p.get("recent"))
        if (d := number(r.get("d"))) is not None
    ]
    return (
        f'<tr class="probe" data-probe="{_e(name)}" data-ok="{ok}"><td class="name">{_e(name)}'
        f"{probe_mark(p, iso)}</td><td>{_e(p.get('kind'))}</td><td>{_e(p.get('target'))}</td>"
        f'<td class="result">{result}</td><td>{_e(reason)}</td><td class="num">{code}</td>'
        f'<td class="num">{took}</td><td class="when" title="{_e(title)}">{when}</td>'
        f'<td class="num">{integer(p.get("runs"))}</td><td class="num">{integer(p.get("failures"))}'
        f'</td><td class="chart">{_spark(points, "latency")}</td></tr>'
    )


def _table_section(section: str, title: str, header: str, rows: list[str]) -> str:
    """A section holding one scrolling table, or a line saying there is nothing to show."""
    if not rows:
        return (
            f'<section id="{section}"><h2>{title}</h2>'
            f'<p class="empty">No {section} configured.</p></section>'
        )
    return (
        f'<section id="{section}"><h2>{title}</h2>'
        f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div></section>"
    )


def _page_probes(doc: Mapping[str, Any]) -> str:
    now = doc.get("generated_at")
    header = (
        "<th>Probe</th><th>Kind</th><th>Target</th><th>Last</th><th>Reason</th>"
        '<th class="num">HTTP</th><th class="num">Took</th><th>When</th>'
        '<th class="num">Runs</th><th class="num">Failures</th><th>Latency</th>'
    )
    rows = [_page_probe(p, now) for p in items(doc.get("probes"))]
    return _table_section("probes", "Probes", header, rows)


def _page_stream(s: Mapping[str, Any]) -> str:
    name = text(s.get("stream"))
    connected, subscribers = number(s.get("connected")), number(s.get("subscribers"))
    up = connected is not None and subscribers is not None and 0 < subscribers <= connected
    points = [
        (lag, True, "") for x in items(s.get("lag")) if (lag := number(x.get("lag"))) is not None
    ]
    hints = "".join(f'<div class="hint">{_e(h)}</div>' for h in strs(s.get("hints")))
    counts = "".join(
        f'<td class="num">{integer(s.get(key))}</td>'
        for key in ("received", "lost", "duplicated", "out_of_order", "late", "negative_lag")
    )
    return (
        f'<tr class="stream" data-stream="{_e(name)}" data-connected="{"true" if up else "false"}">'
        f'<td class="name">{_e(name)}{hints}</td><td>{_e(s.get("target"))}</td>'
        f'<td class="num">{integer(connected)}/{integer(subscribers)}</td>{counts}'
        f'<td class="num">{integer(s.get("reconnects"))}</td>'
        f"{page_clock_cell(s)}"
        f'<td class="num">{duration(s.get("mean_lag_seconds"))}</td>'
        f'<td class="chart">{_spark(points, "worst delivery lag per slot")}</td></tr>'
    )


def _page_streams(doc: Mapping[str, Any]) -> str:
    header = (
        '<th>Stream</th><th>Target</th><th class="num">Connected</th>'
        '<th class="num">Received</th><th class="num">Lost</th>'
        '<th class="num">Duplicated</th><th class="num">Out of order</th>'
        '<th class="num">Late</th><th class="num">Negative lag</th>'
        '<th class="num">Reconnects</th><th class="num">Clock offset</th>'
        '<th class="num">Mean lag</th><th>Lag</th>'
    )
    rows = [_page_stream(s) for s in items(doc.get("streams"))]
    return _table_section("streams", "Streams", header, rows)


def page_app(doc: Mapping[str, Any], refresh: int) -> str:
    """The inside of ``main#app`` for ``doc``; its header says it refreshes every ``refresh`` s."""
    return "".join(
        (
            _page_header(doc, refresh),
            _page_components(doc),
            _page_recommendations(doc),
            _page_slos(doc),
            _page_probes(doc),
            _page_streams(doc),
            page_history(doc, iso),
        )
    )
