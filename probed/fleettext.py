"""The fleet status document as text: ``probed status --prometheus``'s table, markdown
and incident formats.

They take the document of ``probed.fleetstatus`` and say the same as the daemon's own
formats (``probed.statustext``), per location: the markdown "## 1) Status now" block and
the incident acknowledgement gain a ``Locations:`` line naming each location's state
(``Locations: a isolated, b OK, c no data``). Like those, they drop control characters,
and the markdown and incident text scrub addresses and identifiers from free text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probed.fleetstatus import NO_DATA, PRODUCT_ALERTS
from probed.pageunits import fixed, trim
from probed.statusfields import is_num, iso, items, mapping, number, strs, text
from probed.statustext import SERVICE_ORDER, columns, plain, scrub, service_of

__all__ = [
    "locations_line",
    "render_fleet_incident",
    "render_fleet_markdown",
    "render_fleet_table",
]

#: The error-ratio windows the table shows (``-f json`` has every one).
_TABLE_WINDOWS = ("5m", "1h", "6h", "3d")


def _pct(value: object) -> str:
    result = number(value)
    return "-" if result is None else trim(fixed(result * 100, 3)) + "%"


def _burn(value: object) -> str:
    result = number(value)
    return "-" if result is None else trim(fixed(result, 3)) + "x"


def locations_line(doc: Mapping[str, Any]) -> str:
    """``Locations: a isolated, b OK, c no data``: each location and its state."""
    states = [
        f"{plain(loc.get('location'))} {plain(loc.get('state'))}"
        for loc in items(doc.get("locations"))
    ]
    return "Locations: " + (", ".join(states) or "none expected")


def _isolated(doc: Mapping[str, Any]) -> set[str]:
    return {
        text(loc.get("location"))
        for loc in items(doc.get("locations"))
        if loc.get("state") == "isolated"
    }


def _where(names: list[str], isolated: set[str]) -> str:
    """``a (isolated), b``."""
    return ", ".join(plain(n) + (" (isolated)" if n in isolated else "") for n in names) or "-"


def _labels(alert: Mapping[str, Any]) -> str:
    return " ".join(f"{plain(k)}={plain(v)}" for k, v in mapping(alert.get("labels")).items())


def _instances(loc: Mapping[str, Any]) -> str:
    total, down = number(loc.get("instances")) or 0, number(loc.get("instances_down")) or 0
    if not total:
        return "none scraped"
    return f"{int(down)} of {int(total)} down" if down else f"{int(total)} up"


def _component_state(component: Mapping[str, Any]) -> str:
    if component.get("monitored") is False:
        return "not monitored"
    return plain(component.get("state"))


def render_fleet_table(doc: Mapping[str, Any]) -> str:
    """A terminal view: locations, components by location, failing members,
    recommendations, alerts firing, the fleet's SLOs and notes."""
    locations = items(doc.get("locations"))
    names = [text(loc.get("location")) for loc in locations]
    isolated = _isolated(doc)
    expected = strs(doc.get("expected"))
    out = [
        f"probed fleet from {plain(doc.get('source'))}: {plain(doc.get('overall'))} "
        f"({iso(doc.get('generated_at'))})",
        f"{locations_line(doc)} (quorum {_int(doc.get('quorum'))} of {len(expected)})",
        "",
    ]
    rows = [
        [
            plain(loc.get("location")) + ("" if loc.get("expected") is not False else " (extra)"),
            plain(loc.get("state")),
            ", ".join(plain(n) for n in strs(loc.get("failing"))) or "-",
            ", ".join(plain(n) for n in strs(loc.get("no_data"))) or "-",
            _instances(loc),
        ]
        for loc in locations
    ]
    out += columns(["LOCATION", "STATE", "FAILING", "NO DATA", "INSTANCES"], rows)
    rows = []
    for c in items(doc.get("components")):
        if c.get("monitored") is False:
            rows.append([plain(c.get("name")), "not monitored", *("-" for _ in names)])
            continue
        cells = mapping(c.get("locations"))
        row = [plain(c.get("name")), _component_state(c)]
        for name in names:
            state = plain(mapping(cells.get(name)).get("state")) or NO_DATA
            row.append(state + (" (isolated)" if name in isolated else ""))
        rows.append(row)
    out += ["", *columns(["COMPONENT", "FLEET", *(plain(n) for n in names)], rows)]
    failing = [m for m in items(doc.get("members")) if strs(m.get("failing_at"))]
    out += ["", "FAILING"]
    if not failing:
        out.append("  nothing fails anywhere")
    for m in failing:
        verdict = "quorum reached" if m.get("quorum") is True else "no quorum"
        out.append(
            f"  {plain(m.get('name'))}: failing at {_where(strs(m.get('failing_at')), isolated)}; "
            f"{verdict} ({_int(m.get('counted'))} of {_int(doc.get('quorum'))})"
        )
    out += ["", "RECOMMENDATIONS"]
    recs = items(doc.get("recommendations"))
    if not recs:
        out.append("  none at any location")
    for rec in recs:
        held = list(mapping(rec.get("locations")))
        verdict = "quorum" if rec.get("quorum") is True else "no quorum"
        out.append(
            f"  [{plain(rec.get('severity'))}] {plain(rec.get('title'))} "
            f"({plain(rec.get('scenario'))}): {_where(held, isolated)}; {verdict}"
        )
    out += ["", "ALERTS FIRING"]
    alerts = items(doc.get("alerts"))
    if not alerts:
        out.append("  none")
    out += [
        f"  [{plain(a.get('severity'))}] {plain(a.get('alertname'))} {_labels(a)}".rstrip()
        for a in alerts
    ]
    slos = items(doc.get("slos"))
    if slos:
        rows = [
            [
                plain(s.get("name")),
                _pct(s.get("objective")),
                *(_pct(mapping(s.get("error_ratio")).get(w)) for w in _TABLE_WINDOWS),
                _burn(mapping(s.get("burn_rate")).get("1h")),
            ]
            for s in slos
        ]
        header = ["SLO", "OBJECTIVE", *(f"ERROR {w.upper()}" for w in _TABLE_WINDOWS), "BURN 1H"]
        out += ["", *columns(header, rows)]
    if notes := strs(doc.get("notes")):
        out += ["", *(f"Note: {plain(n)}" for n in notes)]
    return "\n".join(out)


def _int(value: object) -> str:
    """A whole number, or ``-``."""
    result = number(value)
    return "-" if result is None else str(int(result))


def _alert_note(alert: Mapping[str, Any]) -> str:
    labels = mapping(alert.get("labels"))
    where = ", ".join(f"{scrub(k)} {scrub(v)}" for k, v in labels.items())
    return f"- {plain(alert.get('severity'))} {scrub(alert.get('alertname'))}" + (
        f": {where}" if where else ""
    )


def render_fleet_markdown(doc: Mapping[str, Any]) -> str:
    """The "## 1) Status now" block for the fleet, with its ``Locations:`` line.

    Summary: each component's fleet state; Notes: the alerts firing, the recommendations
    with the quorum of locations, and what limits the view (too few locations counting).
    """
    lines = [
        "## 1) Status now",
        f"Status: {plain(doc.get('overall') or 'UNKNOWN')}",
        f"Timestamp (UTC): {iso(doc.get('generated_at'))}",
        scrub(locations_line(doc)),
        "Summary:",
    ]
    components = items(doc.get("components"))
    lines += [f"- {scrub(c.get('name'))}: {_component_state(c)}" for c in components]
    if not components:
        lines.append("- No components configured")
    lines += ["", "Notes:"]
    lines += [_alert_note(a) for a in items(doc.get("alerts"))]
    quorum = [r for r in items(doc.get("recommendations")) if r.get("quorum") is True]
    for rec in quorum:
        held = ", ".join(scrub(x) for x in mapping(rec.get("locations")))
        lines.append(
            f"- {plain(rec.get('severity'))} {scrub(rec.get('title'))}: recommended from {held}"
        )
    if not quorum:
        lines.append("- No degraded-mode recommendation has the quorum of locations.")
    lines += [f"- {scrub(n)}" for n in strs(doc.get("notes"))]
    return "\n".join(lines)


def _last_healthy(doc: Mapping[str, Any], affected: list[Mapping[str, Any]]) -> str:
    """The earliest last success of a failing member of ``affected`` where it fails."""
    members = {text(c) for comp in affected for c in strs(comp.get("probes"))}
    times = [
        t
        for m in items(doc.get("members"))
        if text(m.get("name")) in members and m.get("quorum") is True
        for where, t in mapping(m.get("last_success")).items()
        if where in strs(m.get("failing_at")) and is_num(t)
    ]
    if times:
        return iso(min(times))
    return "unknown" if affected else iso(doc.get("generated_at"))


def render_fleet_incident(doc: Mapping[str, Any], *, incident_id: str | None = None) -> str:
    """The "1) Initial Ack" message for the fleet, with its ``Locations:`` line.

    ``Sev``: the highest severity among the product's alerts firing (quorum, fleet
    recommendation, SLO burn) and the recommendations with quorum, else ``Sev-4 (no
    quorum alert or recommendation)``; the prober's own alerts (isolated, down) are not the
    product's. ``Services`` and ``Impact``: the components whose fleet state is DEGRADED or
    DOWN; the signal is the most severe such alert (a probe's or stream's quorum first) with
    the locations it fails from.
    ``Last healthy``: the earliest last success of their failing members where they fail.
    """
    now = doc.get("generated_at")
    if incident_id is None:
        date = iso(now)[:10].replace("-", "") if is_num(now) else "YYYYMMDD"
        incident_id = f"INC-{date}-001"
    product = sorted(
        (a for a in items(doc.get("alerts")) if a.get("alertname") in PRODUCT_ALERTS),
        key=lambda a: (text(a.get("severity")), PRODUCT_ALERTS.index(text(a.get("alertname")))),
    )
    quorum = [r for r in items(doc.get("recommendations")) if r.get("quorum") is True]
    severities = [plain(x.get("severity")) for x in (*product, *quorum) if x.get("severity")]
    sev = min(severities) if severities else "Sev-4 (no quorum alert or recommendation)"
    affected = [c for c in items(doc.get("components")) if c.get("state") in ("DEGRADED", "DOWN")]
    services = sorted({service_of(text(c.get("name"))) for c in affected}, key=SERVICE_ORDER.index)
    impact = ", ".join(f"{scrub(c.get('name'))} ({plain(c.get('state'))})" for c in affected)
    members = {text(m.get("name")): m for m in items(doc.get("members"))}
    if product:
        top = product[0]
        signal = f"{scrub(top.get('alertname'))} " + " ".join(
            f"{scrub(k)}={scrub(v)}" for k, v in mapping(top.get("labels")).items()
        )
        named = mapping(top.get("labels")).get("probe") or mapping(top.get("labels")).get("stream")
        if named in members:
            at = ", ".join(scrub(x) for x in strs(members[named].get("failing_at")))
            signal += f" (failing at {at})"
    elif quorum:
        signal = f"{scrub(quorum[0].get('title'))} (recommended by the quorum)"
    elif failing := [m for m in members.values() if m.get("quorum") is True]:
        signal = "probe success (failing at the quorum: " + ", ".join(
            scrub(m.get("name")) for m in failing
        )
        signal += ")"
    else:
        signal = "none (no quorum alert)"
    return "\n".join(
        [
            f"Incident {plain(incident_id)} \u2014 Ack",
            f"Sev: {sev} | Services: {', '.join(services) or 'none identified'}",
            f"Impact: {impact or 'no component'} affected \u2014 signal {signal.strip()}",
            scrub(locations_line(doc)),
            f"Last healthy: {_last_healthy(doc, affected)}",
            "Next update: T+30m",
            "IC: {name}  Scribe: {name}",
        ]
    )
