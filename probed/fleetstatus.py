"""The fleet's status from Prometheus' answers (pure): ``probed status --prometheus``.

``fleet_queries`` names the instant queries the fleet view reads from the Prometheus that
holds every location's series (with the ``[fleet]`` location label) and evaluates the
fleet's rules (``probed.fleetrules``); ``fleet_document`` turns their answers, the JSON
bodies of ``GET /api/v1/query`` evaluated at one instant, into the fleet status document
that ``-f json`` prints and the renderers take (``probed.fleettext``, ``probed.fleetpage``).
Nothing here does I/O: ``probed.fleetclient`` asks.

Each location has one state:

- ``no data``: nothing reports from it (no ``probed_build_info``, ``probe_success`` or
  stream series). No data is never success, and never an outage of the product either;
- ``isolated``: ``probed:location_isolated`` holds: its prober's network, not the product;
- ``failing``: a probe fails there (``probe_success`` 0, not under maintenance) or a
  stream is not fully connected;
- ``partial``: nothing fails, but one of its probed scrape targets is down (``up`` 0 for
  the fleet's ``job``), so part of its probes have no data;
- ``OK`` otherwise.

The locations that *count* report and are not isolated, as in the fleet's rules. A
probe or stream reaches the quorum when it fails from at least ``quorum`` counted
locations (``ProbeFailingQuorum``'s condition, without its ``for``); a recommendation
when at least the quorum of counted locations recommend the scenario, at the worst
severity the quorum shares (``FleetDegradedModeRecommended``'s). A component's state at
a location is that location's own ``probed_component_status`` (the worst known one of
its instances), else judged from its members there; its fleet state is the worst state
the quorum of counted locations share: DOWN when the quorum sees it DOWN, DEGRADED when
it sees DEGRADED or worse, else OK; UNKNOWN when fewer than the quorum judge it. The
headline is the worst fleet component state (UNKNOWN when none is judged), never better
than a recommendation with quorum allows: DOWN under Sev-1, at least DEGRADED under
Sev-2 or Sev-3.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from probed.config import Config
from probed.fleetconfig import FleetConfig
from probed.fleetrules import FLEET_ALERTS
from probed.playbooks import merge
from probed.records import record
from probed.rules import ERROR_RATIO_WINDOWS
from probed.signals import ComponentState, Severity

__all__ = [
    "NO_DATA",
    "PRODUCT_ALERTS",
    "QUERY_NAMES",
    "PrometheusAnswerError",
    "fleet_document",
    "fleet_queries",
]

NO_DATA = "no data"
"""The state of a location, or of a member or component at one, that reports nothing."""

QUERY_NAMES = (
    "reporting",
    "up",
    "success",
    "last_success",
    "maintenance",
    "connected",
    "subscribers",
    "components",
    "isolated",
    "records",
    "recommendations",
    "alerts",
    "slos",
)
"""The instant queries of ``fleet_queries``, by name."""

PRODUCT_ALERTS = (
    "ProbeFailingQuorum",
    "StreamDisconnectedQuorum",
    "FleetDegradedModeRecommended",
    "SloErrorBudgetBurn",
)
"""Firing alerts about the product (the others are about the probers)."""

_SLO_RECORD = "slo:sli_error:ratio_rate"
_STATE_ORDER = (ComponentState.DOWN, ComponentState.DEGRADED, ComponentState.OK)
_SEVERITY_FLOOR = {
    Severity.SEV1: ComponentState.DOWN,
    Severity.SEV2: ComponentState.DEGRADED,
    Severity.SEV3: ComponentState.DEGRADED,
}
_ALERT_LABELS_SHOWN_ELSEWHERE = {"__name__", "alertname", "alertstate", "severity", "routing"}
_LOCATED = tuple(n for n in QUERY_NAMES if n not in ("records", "alerts", "slos"))
"""The queries whose every series carries the location label."""


class PrometheusAnswerError(ValueError):
    """An answer that is not an instant vector (the message names the query and why)."""


def _fleet(config: Config) -> FleetConfig:
    if config.fleet is None:
        raise ValueError(f"{config.source} has no [fleet] section")
    return config.fleet


def fleet_queries(config: Config) -> dict[str, str]:
    """Name → PromQL of every instant query the fleet view reads (``QUERY_NAMES``)."""
    fleet = _fleet(config)
    loc = fleet.location_label
    alerts = "|".join((*FLEET_ALERTS, "SloErrorBudgetBurn"))
    queries = {
        "reporting": f"count by ({loc}) (probed_build_info)",
        "up": f'up{{job="{fleet.job}"}}',
        "success": "probe_success",
        "last_success": "probed_probe_last_success_timestamp_seconds",
        "maintenance": "probed_maintenance_active == 1",
        "connected": "probed_stream_connected",
        "subscribers": "probed_stream_subscribers",
        "components": "probed_component_status == 1",
        "isolated": "probed:location_isolated",
        "records": "count(probed:location_probes:count)",
        "recommendations": "probed_recommendation_active == 1",
        "alerts": f'ALERTS{{alertstate="firing",alertname=~"{alerts}"}}',
        "slos": f'{{__name__=~"{_SLO_RECORD}.+"}}',
    }
    assert tuple(queries) == QUERY_NAMES
    return queries


# ---------------------------------------------------------------------------
# reading the answers


@record
class _Sample:
    labels: Mapping[str, str]
    value: float


def _samples(name: str, body: object) -> list[_Sample]:
    """The samples of an instant query's answer; NaN samples are left out (no data)."""

    def refuse(why: str) -> PrometheusAnswerError:
        return PrometheusAnswerError(f"{name}: {why}")

    if body is None:
        raise refuse("no answer")
    if not isinstance(body, Mapping):
        raise refuse("not a Prometheus API answer")
    if body.get("status") != "success":
        raise refuse(f"{body.get('errorType') or 'error'}: {body.get('error') or '-'}")
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise refuse("not a Prometheus API answer")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        result = [{"metric": {}, "value": result}]
    elif kind != "vector" or not isinstance(result, list):
        raise refuse(f"a {kind}, not an instant vector")
    out = []
    for item in result:
        metric = item.get("metric") if isinstance(item, Mapping) else None
        pair = item.get("value") if isinstance(item, Mapping) else None
        if not isinstance(metric, Mapping) or not isinstance(pair, list) or len(pair) != 2:
            raise refuse("a sample without a value")
        try:
            value = float(pair[1])
        except (TypeError, ValueError):
            raise refuse(f"the value {pair[1]!r} is not a number") from None
        if not math.isnan(value):
            out.append(_Sample({str(k): str(v) for k, v in metric.items()}, value))
    return out


def _worst_state(states: Iterable[str]) -> str:
    """The worst known state of ``states`` (UNKNOWN when none is known)."""
    known = set(states)
    return next((s.value for s in _STATE_ORDER if s.value in known), ComponentState.UNKNOWN.value)


def _quorum_state(states: Iterable[str], quorum: int) -> str:
    """The worst state at least ``quorum`` of ``states`` share; UNKNOWN with fewer known."""
    order = [x.value for x in _STATE_ORDER]
    known = sorted((s for s in states if s in order), key=order.index)
    return known[quorum - 1] if len(known) >= quorum else ComponentState.UNKNOWN.value


class _View:
    """The answers, indexed by location (the fleet's location label)."""

    def __init__(self, config: Config, answers: Mapping[str, object]) -> None:
        self.config = config
        self.fleet = fleet = _fleet(config)
        self.loc = fleet.location_label
        self.got = {name: _samples(name, answers.get(name)) for name in QUERY_NAMES}
        self.unlabelled = sum(self.loc not in s.labels for name in _LOCATED for s in self.got[name])
        streams = {s.name for s in config.streams}
        self.members = [(s.name, "stream" if s.name in streams else "probe") for s in config.probes]
        self.results = self._results()
        self.last_success: dict[tuple[str, str], float] = {}
        for where, s in self.each("last_success"):
            key = (s.labels.get("probe", ""), where)
            self.last_success[key] = max(s.value, self.last_success.get(key, s.value))
        reporting = self.at("reporting") | self.at("success") | self.at("connected")
        self.reporting = reporting
        self.isolated = {
            where: sample.value for where, sample in self.each("isolated") if sample.value
        }
        self.locations = [*fleet.locations, *sorted(reporting - set(fleet.locations))]
        self.counted = [x for x in self.locations if x in reporting and x not in self.isolated]

    def each(self, name: str) -> Iterable[tuple[str, _Sample]]:
        """(location, sample) of every sample of ``name`` that has a location."""
        for sample in self.got[name]:
            if (where := sample.labels.get(self.loc)) is not None:
                yield where, sample

    def at(self, name: str) -> set[str]:
        return {where for where, _ in self.each(name)}

    def _results(self) -> dict[tuple[str, str], str]:
        """(member, location) → ok, failing or maintenance, for the members with data."""
        success: dict[tuple[str, str], float] = {}
        for where, s in self.each("success"):
            key = (s.labels.get("probe", ""), where)
            success[key] = min(s.value, success.get(key, 1.0))
        stream_up: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for index, name in enumerate(("connected", "subscribers")):
            for where, s in self.each(name):
                stream_up[(s.labels.get("stream", ""), where)][index] += s.value
        maintained = {(s.labels.get("probe", ""), where) for where, s in self.each("maintenance")}
        results: dict[tuple[str, str], str] = {}
        for key, value in success.items():
            results[key] = "ok" if value >= 1 else "failing"
        for key, (connected, subscribers) in stream_up.items():
            results[key] = "ok" if connected >= subscribers else "failing"
        for key in maintained & set(results):
            results[key] = "maintenance"
        return results

    def result(self, member: str, where: str) -> str:
        return self.results.get((member, where), NO_DATA)


def _locations(view: _View) -> list[dict[str, Any]]:
    instances: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for where, s in view.each("up"):
        instances[where][0] += 1
        instances[where][1] += s.value < 1
    out = []
    for where in view.locations:
        results = {name: view.result(name, where) for name, _ in view.members}
        failing = [name for name, r in results.items() if r == "failing"]
        total, down = instances.get(where, [0, 0])
        if where not in view.reporting:
            state = NO_DATA
        elif where in view.isolated:
            state = "isolated"
        elif failing:
            state = "failing"
        elif down:
            state = "partial"
        else:
            state = "OK"
        reports = where in view.reporting
        out.append(
            {
                "location": where,
                "expected": where in view.fleet.locations,
                "state": state,
                "failing": failing,
                "maintenance": [name for name, r in results.items() if r == "maintenance"],
                "no_data": [name for name, r in results.items() if r == NO_DATA and reports],
                "members": sum(r != NO_DATA for r in results.values()),
                "instances": total,
                "instances_down": down,
            }
        )
    return out


def _members(view: _View) -> list[dict[str, Any]]:
    out = []
    for name, kind in view.members:
        results = {where: view.result(name, where) for where in view.locations}
        failing_at = [where for where, r in results.items() if r == "failing"]
        last = {
            where: view.last_success[(name, where)]
            for where in view.locations
            if (name, where) in view.last_success
        }
        counted = sum(1 for where in failing_at if where in view.counted)
        out.append(
            {
                "name": name,
                "kind": kind,
                "locations": results,
                "failing_at": failing_at,
                "counted": counted,
                "quorum": counted >= view.fleet.quorum,
                "last_success": last,
            }
        )
    return out


def _component_cell(view: _View, members: list[str], where: str, own: set[str]) -> dict[str, Any]:
    results = [(name, view.result(name, where)) for name in members]
    failing = [name for name, r in results if r == "failing"]
    if where not in view.reporting:
        return {"state": NO_DATA, "failing": []}
    if own:
        return {"state": _worst_state(own), "failing": failing}
    judged = [r for _, r in results if r in ("ok", "failing")]
    if not judged:
        state = ComponentState.UNKNOWN
    elif len(failing) == len(judged):
        state = ComponentState.DOWN
    elif failing:
        state = ComponentState.DEGRADED
    else:
        state = ComponentState.OK
    return {"state": state.value, "failing": failing}


def _components(view: _View) -> list[dict[str, Any]]:
    own: dict[tuple[str, str], set[str]] = defaultdict(set)
    for where, s in view.each("components"):
        own[(s.labels.get("component", ""), where)].add(s.labels.get("state", ""))
    out = []
    for component in view.config.status_components:
        cells = {
            where: _component_cell(view, component.probes, where, own[(component.name, where)])
            for where in view.locations
        }
        counted = [cells[where]["state"] for where in view.counted]
        out.append(
            {
                "name": component.name,
                "probes": list(component.probes),
                "monitored": bool(component.probes),
                "state": _quorum_state(counted, view.fleet.quorum)
                if component.probes
                else ComponentState.UNKNOWN.value,
                "locations": cells,
            }
        )
    return out


def _severity(value: str) -> Severity | None:
    try:
        return Severity(value)
    except ValueError:
        return None


def _recommendations(view: _View) -> list[dict[str, Any]]:
    by_scenario: dict[str, dict[str, Severity]] = defaultdict(dict)
    for where, s in view.each("recommendations"):
        severity = _severity(s.labels.get("severity", ""))
        if severity is None:
            continue
        held = by_scenario[s.labels.get("scenario", "")]
        held[where] = min(severity, held.get(where, severity), key=list(Severity).index)
    playbooks = merge(view.config.playbooks)
    quorum = view.fleet.quorum
    out = []
    for scenario, held in by_scenario.items():
        order = list(Severity).index
        counted = sorted((held[x] for x in view.counted if x in held), key=order)
        reached = len(counted) >= quorum
        severity = counted[quorum - 1] if reached else min(held.values(), key=order)
        playbook = playbooks.get(scenario)
        out.append(
            {
                "scenario": scenario,
                "title": playbook.title if playbook is not None else scenario,
                "severity": severity.value,
                "quorum": reached,
                "counted": len(counted),
                "locations": {x: held[x].value for x in view.locations if x in held},
            }
        )
    return sorted(out, key=lambda r: (not r["quorum"], r["severity"], r["scenario"]))


def _alerts(view: _View) -> list[dict[str, Any]]:
    out = [
        {
            "alertname": s.labels.get("alertname", ""),
            "severity": s.labels.get("severity", ""),
            "labels": {
                k: v for k, v in sorted(s.labels.items()) if k not in _ALERT_LABELS_SHOWN_ELSEWHERE
            },
        }
        for s in view.got["alerts"]
    ]
    return sorted(out, key=lambda a: (a["severity"], a["alertname"], sorted(a["labels"].items())))


def _slos(view: _View) -> list[dict[str, Any]]:
    ratios: dict[tuple[str, str], float] = {}
    for s in view.got["slos"]:
        window = s.labels.get("__name__", "").removeprefix(_SLO_RECORD)
        ratios[(s.labels.get("slo", ""), window)] = s.value
    out = []
    for slo in view.config.slos:
        error = {w: ratios.get((slo.name, w)) for w in ERROR_RATIO_WINDOWS}
        budget = 1.0 - slo.objective
        out.append(
            {
                "name": slo.name,
                "sli": slo.sli,
                "objective": slo.objective,
                "error_ratio": error,
                "burn_rate": {
                    w: (None if r is None or budget <= 0 else r / budget) for w, r in error.items()
                },
            }
        )
    return out


def _overall(components: list[dict[str, Any]], recommendations: list[dict[str, Any]]) -> str:
    states = {c["state"] for c in components}
    states |= {
        _SEVERITY_FLOOR[Severity(r["severity"])].value
        for r in recommendations
        if r["quorum"] and Severity(r["severity"]) in _SEVERITY_FLOOR
    }
    return _worst_state(states)


def _notes(view: _View) -> list[str]:
    notes = []
    if unexpected := [x for x in view.locations if x not in view.fleet.locations]:
        notes.append(f"Reporting, not in [fleet] locations: {', '.join(unexpected)}.")
    if view.unlabelled:
        notes.append(
            f"{view.unlabelled} series have no {view.loc!r} label: add it as an external label "
            "of each location's Prometheus agent, or as a target label ([fleet] location_label)."
        )
    if view.reporting and not view.got["records"]:
        notes.append(
            "Prometheus holds no probed:location_* records: load the output of "
            "`probed rules -c CONFIG` there (isolation and the fleet's SLOs need them)."
        )
    counted, quorum = len(view.counted), view.fleet.quorum
    if counted < quorum:
        notes.append(
            f"Only {counted} location{' counts' if counted == 1 else 's count'} (reports and "
            f"{'is' if counted == 1 else 'are'} not isolated); the quorum is {quorum}."
        )
    return notes


def fleet_document(
    config: Config, answers: Mapping[str, object], *, at: float, source: str
) -> dict[str, Any]:
    """The fleet status document from the answers to ``fleet_queries(config)`` at ``at``.

    ``source`` names the Prometheus asked. Raises ``PrometheusAnswerError`` when an answer
    is an error or not an instant vector, ``ValueError`` without ``[fleet]``.
    """
    view = _View(config, answers)
    components = _components(view)
    recommendations = _recommendations(view)
    return {
        "kind": "fleet",
        "source": source,
        "generated_at": at,
        "overall": _overall(components, recommendations),
        "quorum": view.fleet.quorum,
        "expected": list(view.fleet.locations),
        "locations": _locations(view),
        "components": components,
        "members": _members(view),
        "recommendations": recommendations,
        "alerts": _alerts(view),
        "slos": _slos(view),
        "notes": _notes(view),
    }
