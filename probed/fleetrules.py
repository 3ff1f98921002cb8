"""The rules a central Prometheus evaluates over every location of a fleet (pure).

With a ``[fleet]`` section (``probed.fleetconfig``), every location's probed is a plain
exporter whose series carry the location label (``location_label``); one Prometheus
holds them all (remote write from an agent per location, or federation) and evaluates:

- ``probed:location_probes:count``, ``probed:location_probes_failing:count`` and
  ``probed:location_probes_failing:ratio`` per location, from ``probe_success`` (the
  latest run of each probe), leaving out probes under maintenance;
- ``probed:location_isolated``: a location failing more than ``isolated_share`` of its
  probes while the other locations together fail less than that share. One location
  alone is never isolated, nor is any location while the others fail too;
- ``ProberIsolated`` (Sev-3, a ticket for whoever runs that prober, never a page) once a
  location stays isolated for ``isolated_for``;
- ``ProberDown`` (Sev-3, a gap): an expected location with no ``probed_build_info`` at
  all, or a probed scrape target of the fleet's ``job`` that is down. No data is never
  counted as success, and never as an outage of the product either;
- ``FleetQuorumAtRisk`` (Sev-2): fewer locations report than the quorum, so an outage
  of the product could no longer page;
- the quorum alerts (Sev-2, page): ``ProbeFailingQuorum`` when a probe's latest run
  fails from at least ``min_failing_locations`` locations that are not isolated, and
  ``StreamDisconnectedQuorum`` for streams, both for ``quorum_for`` and naming the
  failing locations;
- ``FleetDegradedModeRecommended``: a scenario that at least the quorum of locations
  recommends (``probed_recommendation_active``), at the severity the quorum reaches.

The SLO ratios become the fleet's: per location, the rates of bad and of all events
over ``rate_window`` are recorded (``slo:sli_bad:rate<W>``, ``slo:sli_total:rate<W>``)
while the location has not been isolated within ``rate_window``; the window ratios sum
those recordings over every location with ``sum_over_time``. A location that is down
records nothing, so its runs leave both the numerator and the denominator; an isolated
location's runs are left out from when it is isolated until ``rate_window`` after it
ends (its rates still hold the failures of the isolated stretch until then), not for
the whole window.

The per-location alerts of the ``probed`` group stay as one location's view: a failing
probe, a disconnected stream and slow reflects are Sev-3 tickets and silent while their
location is isolated, and the per-location ``DegradedModeRecommended`` gives way to the
fleet's.
"""

from __future__ import annotations

from typing import Any

from probed.config import Config, SloConfig
from probed.durations import format_duration
from probed.fleetconfig import FleetConfig
from probed.playbooks import merge
from probed.rules import (
    ERROR_RATIO_WINDOWS,
    RUNBOOK_ANCHORS,
    by_scenario,
    error_ratio_parts,
    runbook_url,
    severity_labels,
)
from probed.signals import Severity

__all__ = ["FLEET_ALERTS", "fleet_group", "fleet_slo_records", "localise"]

FLEET_ALERTS = (
    "ProberIsolated",
    "ProberDown",
    "FleetQuorumAtRisk",
    "ProbeFailingQuorum",
    "StreamDisconnectedQuorum",
    "FleetDegradedModeRecommended",
)
"""The alerts ``[fleet]`` adds (the runbook has a section for each)."""

_ISOLATED = "probed:location_isolated"
_PER_LOCATION_ALERTS = ("StreamDisconnected", "ReflectLatencyP95High", "ProbeFailing")
"""``probed`` alerts that become one location's ticket in a fleet."""


def _num(value: float) -> str:
    return f"{value:.12g}"


def _not_isolated(fleet: FleetConfig) -> str:
    return f"unless on({fleet.location_label}) {_ISOLATED}"


def _not_isolated_within(fleet: FleetConfig, window: str) -> str:
    """Less a location isolated at any time in the last ``window``: a rate over it still
    holds the runs of the isolated stretch, which would come back in as it ends."""
    return f"unless on({fleet.location_label}) max_over_time({_ISOLATED}[{window}])"


def _maintained(metric: str, fleet: FleetConfig, key: str = "probe") -> str:
    """``metric`` less the series of probes under maintenance at the same location."""
    loc = fleet.location_label
    active = "probed_maintenance_active == 1"
    if key != "probe":
        active = f'label_replace({active}, "{key}", "$1", "probe", "(.*)")'
    return f"{metric} unless on({loc}, {key}) {active}"


def _locations_of(selector: str, fleet: FleetConfig) -> str:
    """A Go template listing the locations of the series ``selector`` returns (sorted)."""
    loc = fleet.location_label
    return (
        f"{{{{ range $i, $s := {selector} | query | sortByLabel {loc!r} }}}}"
        f"{{{{ if $i }}}}, {{{{ end }}}}{{{{ $s.Labels.{loc} }}}}{{{{ end }}}}"
    ).replace("'", '"')


def _location_records(fleet: FleetConfig) -> list[dict[str, Any]]:
    loc = fleet.location_label
    share = _num(fleet.isolated_share)
    counted = _maintained("probe_success", fleet)
    failing = "probed:location_probes_failing:count"
    total = "probed:location_probes:count"
    return [
        {"record": total, "expr": f"count by ({loc}) ({counted})\n"},
        {"record": failing, "expr": f"sum by ({loc}) (1 - {counted})\n"},
        {"record": "probed:location_probes_failing:ratio", "expr": f"{failing} / {total}\n"},
        {
            "record": _ISOLATED,
            "expr": (
                f"probed:location_probes_failing:ratio > {share}\n"
                f"and on({loc})\n"
                f"(\n  (scalar(sum({failing})) - {failing})\n  /\n"
                f"  (scalar(sum({total})) - {total})\n  < {share}\n)\n"
            ),
        },
    ]


def _prober_alerts(config: Config, fleet: FleetConfig) -> list[dict[str, Any]]:
    loc = fleet.location_label
    absent = " or ".join(
        f'absent(probed_build_info{{{loc}="{location}"}})' for location in fleet.locations
    )
    down = f'max by ({loc}) (up{{job="{fleet.job}"}} == 0)'
    listed = ", ".join(fleet.locations)
    return [
        {
            "alert": "ProberIsolated",
            "expr": f"{_ISOLATED}\n",
            "for": format_duration(fleet.isolated_for),
            "labels": severity_labels(Severity.SEV3),
            "annotations": {
                "summary": f"Prober location {{{{ $labels.{loc} }}}} is isolated",
                "description": (
                    f"{{{{ $value | humanizePercentage }}}} of the probes run from location "
                    f"{{{{ $labels.{loc} }}}} fail while the other locations succeed: the "
                    "prober's network or host, not the product. Its runs are left out of the "
                    "fleet's SLOs and quorums while this holds."
                ),
                "runbook_url": runbook_url(config, RUNBOOK_ANCHORS["ProberIsolated"]),
            },
        },
        {
            "alert": "ProberDown",
            "expr": f"{absent}\nor\n{down}\n",
            "for": format_duration(fleet.down_for),
            "labels": severity_labels(Severity.SEV3),
            "annotations": {
                "summary": f"No data from prober location {{{{ $labels.{loc} }}}}",
                "description": (
                    f"Location {{{{ $labels.{loc} }}}} (one of {listed}) reports nothing, or "
                    "one of its probed instances is down: a gap in the fleet's view, not an "
                    "outage of the product. Its probes count neither as failures nor as "
                    "successes until it reports again."
                ),
                "runbook_url": runbook_url(config, RUNBOOK_ANCHORS["ProberDown"]),
            },
        },
        {
            "alert": "FleetQuorumAtRisk",
            "expr": (
                f"(count(count by ({loc}) (probed_build_info)) or vector(0)) < {fleet.quorum}\n"
            ),
            "for": format_duration(fleet.down_for),
            "labels": severity_labels(Severity.SEV2),
            "annotations": {
                "summary": "Too few prober locations report to see an outage",
                "description": (
                    f"Only {{{{ $value }}}} of the {len(fleet.locations)} locations ({listed}) "
                    f"report; a quorum alert needs {fleet.quorum}, so an outage of the "
                    "product would not page."
                ),
                "runbook_url": runbook_url(config, RUNBOOK_ANCHORS["FleetQuorumAtRisk"]),
            },
        },
    ]


def _quorum_alerts(config: Config, fleet: FleetConfig) -> list[dict[str, Any]]:
    loc = fleet.location_label
    quorum = fleet.quorum
    of = f"{quorum} of {len(fleet.locations)}"
    failing = _maintained("probe_success == 0", fleet)
    disconnected = _maintained(
        "probed_stream_connected < probed_stream_subscribers", fleet, key="stream"
    )
    failing_at = _locations_of("printf 'probe_success{probe=%q} == 0' $labels.probe", fleet)
    down_at = _locations_of(
        "printf 'probed_stream_connected{stream=%q} < probed_stream_subscribers' $labels.stream",
        fleet,
    )
    return [
        {
            "alert": "ProbeFailingQuorum",
            "expr": (
                f"count by (probe) (\n  count by (probe, {loc}) ({failing})\n"
                f"  {_not_isolated(fleet)}\n) >= {quorum}\n"
            ),
            "for": format_duration(fleet.quorum_for),
            "labels": severity_labels(Severity.SEV2),
            "annotations": {
                "summary": (
                    "Probe {{ $labels.probe }} fails from {{ $value }} locations "
                    f"(quorum {of})"
                ),
                "description": (
                    "The latest run of probe {{ $labels.probe }} fails from "
                    f"{{{{ $value }}}} locations ({failing_at}), at least the quorum of {of}: "
                    "the product, not one prober's network."
                ),
                "runbook_url": runbook_url(config, RUNBOOK_ANCHORS["ProbeFailing"]),
            },
        },
        {
            "alert": "StreamDisconnectedQuorum",
            "expr": (
                f"count by (stream) (\n  count by (stream, {loc}) ({disconnected})\n"
                f"  {_not_isolated(fleet)}\n) >= {quorum}\n"
            ),
            "for": format_duration(fleet.quorum_for),
            "labels": severity_labels(Severity.SEV2),
            "annotations": {
                "summary": (
                    "Stream {{ $labels.stream }} is disconnected from {{ $value }} locations "
                    f"(quorum {of})"
                ),
                "description": (
                    "Subscriber connections of stream {{ $labels.stream }} are down from "
                    f"{{{{ $value }}}} locations ({down_at}), at least the quorum of {of}: "
                    "live events are not reaching clients."
                ),
                "runbook_url": runbook_url(config, RUNBOOK_ANCHORS["StreamDisconnected"]),
            },
        },
    ]


def _recommendation_alerts(config: Config, fleet: FleetConfig) -> list[dict[str, Any]]:
    """One rule per Sev level: the level at least the quorum of locations reaches."""
    loc = fleet.location_label
    playbooks = merge(config.playbooks)
    levels = list(Severity)

    def reaching(index: int) -> str:
        worst = "|".join(sev.value for sev in levels[: index + 1])
        active = f'probed_recommendation_active{{severity=~"{worst}"}} == 1'
        return (
            f"count by (scenario) (\n  count by (scenario, {loc}) ({active})\n"
            f"  {_not_isolated(fleet)}\n) >= {fleet.quorum}"
        )

    rules = []
    for index, severity in enumerate(levels):
        expr = reaching(index) + "\n"
        if index:
            expr += f"unless on(scenario)\n{reaching(index - 1)}\n"
        title = by_scenario({s: pb.title for s, pb in playbooks.items()}, "")
        rules.append(
            {
                "alert": "FleetDegradedModeRecommended",
                "expr": expr,
                "labels": severity_labels(severity),
                "annotations": {
                    "summary": (
                        "Degraded mode recommended by {{ $value }} locations: "
                        f"{{{{ $labels.scenario }}}} ({title})"
                    ),
                    "description": (
                        f"{{{{ $value }}}} of the {len(fleet.locations)} locations recommend "
                        "the {{ $labels.scenario }} degraded-mode playbook at "
                        f"{severity.value} or worse (quorum {fleet.quorum}); their status "
                        "pages and /api/v1/recommendations show the evidence and the steps."
                    ),
                    "runbook_url": by_scenario(
                        {s: pb.runbook_url for s, pb in playbooks.items() if pb.runbook_url},
                        runbook_url(config, "{{ $labels.scenario }}"),
                    ),
                },
            }
        )
    return rules


def fleet_group(config: Config, fleet: FleetConfig) -> dict[str, Any]:
    """The ``probed-fleet`` group: location records, prober health, quorum alerts."""
    return {
        "name": "probed-fleet",
        "rules": [
            *_location_records(fleet),
            *_prober_alerts(config, fleet),
            *_quorum_alerts(config, fleet),
            *_recommendation_alerts(config, fleet),
        ],
    }


def _per_location(events: str, excluded: str, fleet: FleetConfig) -> str:
    """``events`` less ``excluded`` per location (a location without exclusions: 0)."""
    loc = fleet.location_label
    counted = f"sum by ({loc}) ({events})"
    return f"{counted}\n- (sum by ({loc}) ({excluded}) or 0 * {counted})"


def fleet_slo_records(slo: SloConfig, fleet: FleetConfig) -> list[dict[str, Any]]:
    """The recording rules of ``slo``'s error ratios over the fleet (module docstring)."""
    window = format_duration(fleet.rate_window)
    parts = error_ratio_parts(slo, window)
    total = _per_location(parts.total, parts.excluded_total, fleet)
    if parts.bad is not None:
        bad = _per_location(parts.bad, parts.excluded_bad, fleet)
    else:
        assert parts.good is not None
        good = _per_location(parts.good, parts.excluded_good, fleet)
        bad = f"(\n{total}\n)\n-\n(\n{good}\n)"
    bad_series, total_series = f"slo:sli_bad:rate{window}", f"slo:sli_total:rate{window}"
    records: list[dict[str, Any]] = [
        {
            "record": series,
            "expr": f"(\n{events}\n)\n{_not_isolated_within(fleet, window)}\n",
            "labels": {"slo": slo.name},
        }
        for series, events in ((bad_series, bad), (total_series, total))
    ]
    for ratio_window in ERROR_RATIO_WINDOWS:
        sel = f'{{slo="{slo.name}"}}[{ratio_window}]'
        records.append(
            {
                "record": f"slo:sli_error:ratio_rate{ratio_window}",
                "expr": (
                    f"sum(sum_over_time({bad_series}{sel}))\n/\n"
                    f"(sum(sum_over_time({total_series}{sel})) > 1e-9)\n"
                ),
                "labels": {"slo": slo.name},
            }
        )
    return records


def localise(group: dict[str, Any], fleet: FleetConfig) -> dict[str, Any]:
    """The ``probed`` group as one location's view in a fleet (module docstring)."""
    rules = []
    for rule in group["rules"]:
        name = rule.get("alert")
        if name == "DegradedModeRecommended":
            continue  # the fleet's FleetDegradedModeRecommended takes its place
        if name in _PER_LOCATION_ALERTS:
            rule = {
                **rule,
                "expr": rule["expr"] + _not_isolated(fleet) + "\n",
                "labels": {**rule["labels"], **severity_labels(Severity.SEV3)},
            }
        rules.append(rule)
    return {**group, "rules": rules}
