"""The fleet status document as one static HTML page: ``probed status --prometheus -f html``.

A snapshot, not a live page: written to a file (by cron, CI or a sidecar), it shows what
the table says, in the status page's style (``probed.pagestyle``) and without any script;
its Content-Security-Policy allows only that inline style sheet, so it loads nothing.

Stable hooks: ``#overall[data-state]``, ``p#locations``,
``tr.location[data-location][data-state]``, ``.component[data-name][data-state]`` (the
fleet's state; ``td[data-location][data-state]`` per location in the components table),
``tr.member[data-member][data-quorum]``, ``.recommendation[data-scenario][data-severity]
[data-quorum]``, ``tr.alert[data-alertname]`` and ``tr.slo[data-slo]``.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from typing import Any

from probed.fleetstatus import NO_DATA
from probed.fleettext import locations_line
from probed.pagestyle import PAGE_CSS
from probed.pageunits import fixed, trim
from probed.statusfields import iso, items, mapping, number, strs, text

__all__ = ["render_fleet_page"]

_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(PAGE_CSS.encode("utf-8")).digest()).decode("ascii")
    + "'; img-src data:; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return html.escape(text(value), quote=True)


def _pct(value: object) -> str:
    result = number(value)
    return "-" if result is None else trim(fixed(result * 100, 3)) + "%"


def _table(section: str, title: str, header: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<section id="{section}"><h2>{title}</h2><p class="empty">{empty}</p></section>'
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return (
        f'<section id="{section}"><h2>{title}</h2><div class="scroll"><table><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _locations(doc: Mapping[str, Any]) -> str:
    rows = [
        f'<tr class="location" data-location="{_e(loc.get("location"))}" '
        f'data-state="{_e(loc.get("state"))}"><td class="name">{_e(loc.get("location"))}</td>'
        f"<td>{_e(loc.get('state'))}</td>"
        f"<td>{_e(', '.join(strs(loc.get('failing'))) or '-')}</td>"
        f"<td>{_e(', '.join(strs(loc.get('no_data'))) or '-')}</td>"
        f'<td class="num">{_e(loc.get("instances_down"))}/{_e(loc.get("instances"))}</td></tr>'
        for loc in items(doc.get("locations"))
    ]
    header = ["Location", "State", "Failing", "No data", "Instances down"]
    return _table("locations", "Locations", header, rows, "No location expected.")


def _components(doc: Mapping[str, Any]) -> str:
    names = [text(loc.get("location")) for loc in items(doc.get("locations"))]
    cards, rows = [], []
    for c in items(doc.get("components")):
        state = text(c.get("state")) or "UNKNOWN"
        monitored = c.get("monitored") is not False
        cards.append(
            f'<div class="component" data-name="{_e(c.get("name"))}" data-state="{_e(state)}" '
            f'data-monitored="{"true" if monitored else "false"}"><h3>{_e(c.get("name"))}</h3>'
            f'<p class="state">{_e(state) if monitored else "not monitored"}</p></div>'
        )
        if not monitored:
            continue
        cells = mapping(c.get("locations"))
        tds = "".join(
            f'<td data-location="{_e(n)}" data-state="{_e(s)}">{_e(s)}</td>'
            for n in names
            for s in [text(mapping(cells.get(n)).get("state")) or NO_DATA]
        )
        rows.append(f'<tr><td class="name">{_e(c.get("name"))}</td>{tds}</tr>')
    table = _table("by-location", "Components by location", ["Component", *names], rows, "")
    return (
        f'<section id="components"><h2>Components</h2><div class="cards">{"".join(cards)}'
        f"</div></section>{table if rows else ''}"
    )


def _members(doc: Mapping[str, Any]) -> str:
    rows = [
        f'<tr class="member" data-member="{_e(m.get("name"))}" '
        f'data-quorum="{"true" if m.get("quorum") is True else "false"}">'
        f'<td class="name">{_e(m.get("name"))}</td><td>{_e(m.get("kind"))}</td>'
        f'<td class="failing">{_e(", ".join(strs(m.get("failing_at"))))}</td>'
        f'<td class="num">{_e(m.get("counted"))}</td>'
        f"<td>{'yes' if m.get('quorum') is True else 'no'}</td></tr>"
        for m in items(doc.get("members"))
        if strs(m.get("failing_at"))
    ]
    header = ["Probe", "Kind", "Failing at", "Counted", "Quorum"]
    return _table("members", "Failing", header, rows, "Nothing fails anywhere.")


def _recommendations(doc: Mapping[str, Any]) -> str:
    parts = [
        f'<article class="recommendation" data-scenario="{_e(r.get("scenario"))}" '
        f'data-severity="{_e(r.get("severity"))}" '
        f'data-quorum="{"true" if r.get("quorum") is True else "false"}">'
        f'<h3><span class="sev">{_e(r.get("severity"))}</span> {_e(r.get("title"))} '
        f'<span class="rstate">{"quorum" if r.get("quorum") is True else "no quorum"}</span>'
        f"</h3><p>from {_e(', '.join(mapping(r.get('locations'))))}</p></article>"
        for r in items(doc.get("recommendations"))
    ]
    body = "".join(parts) or '<p class="empty">None at any location.</p>'
    return f'<section id="recommendations"><h2>Recommendations</h2>{body}</section>'


def _alerts(doc: Mapping[str, Any]) -> str:
    rows = [
        f'<tr class="alert" data-alertname="{_e(a.get("alertname"))}">'
        f'<td>{_e(a.get("severity"))}</td><td class="name">{_e(a.get("alertname"))}</td>'
        f"<td>{_e(' '.join(f'{k}={v}' for k, v in mapping(a.get('labels')).items()))}</td></tr>"
        for a in items(doc.get("alerts"))
    ]
    return _table("alerts", "Alerts firing", ["Severity", "Alert", "Labels"], rows, "None.")


def _slos(doc: Mapping[str, Any]) -> str:
    windows = ("5m", "1h", "6h", "3d")
    rows = [
        f'<tr class="slo" data-slo="{_e(s.get("name"))}"><td class="name">{_e(s.get("name"))}'
        f'</td><td class="num">{_pct(s.get("objective"))}</td>'
        + "".join(
            f'<td class="num">{_pct(mapping(s.get("error_ratio")).get(w))}</td>' for w in windows
        )
        + "</tr>"
        for s in items(doc.get("slos"))
    ]
    header = ["SLO", "Objective", *(f"Errors {w}" for w in windows)]
    return _table("slos", "Fleet SLOs", header, rows, "No SLO configured.")


def render_fleet_page(doc: Mapping[str, Any]) -> str:
    """The fleet's status as one self-contained HTML document (module docstring)."""
    state = text(doc.get("overall")) or "UNKNOWN"
    generated = iso(doc.get("generated_at"))
    notes = "".join(f'<p class="meta note">{_e(n)}</p>' for n in strs(doc.get("notes")))
    header = (
        f'<header class="top" data-state="{_e(state)}"><h1><span id="overall" '
        f'data-state="{_e(state)}">{_e(state)}</span> <span class="where">probed fleet</span>'
        f'</h1><p class="meta">from {_e(doc.get("source"))} at <time datetime="{generated}">'
        f"{generated}</time> &middot; quorum {_e(doc.get('quorum'))} of "
        f"{len(strs(doc.get('expected')))}</p>"
        f'<p id="locations">{_e(locations_line(doc))}</p>{notes}</header>'
    )
    body = "".join(
        (
            header,
            _components(doc),
            _locations(doc),
            _members(doc),
            _recommendations(doc),
            _alerts(doc),
            _slos(doc),
        )
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(state)} - probed fleet</title>\n"
        f"<style>{PAGE_CSS}</style>\n</head><body>\n"
        f'<main id="app">{body}</main>\n</body></html>\n'
    )
