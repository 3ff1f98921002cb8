"""The fleet status document from canned Prometheus answers, and its table, markdown,
incident and page renderings (``probed status --prometheus``)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from probed.config import Config, load_config
from probed.fleetpage import render_fleet_page
from probed.fleetstatus import (
    QUERY_NAMES,
    PrometheusAnswerError,
    fleet_document,
    fleet_queries,
)
from probed.fleettext import (
    locations_line,
    render_fleet_incident,
    render_fleet_markdown,
    render_fleet_table,
)

#: 2026-02-08T10:02:00Z
AT = 1770544920.0
SOURCE = "http://prometheus.test:9090"

FLEET_TOML = """
[daemon]
location = "a"

[targets.app]
base_url = "http://127.0.0.1:9"

[[probes]]
name = "health"
kind = "http"
target = "app"
path = "/health"

[[probes]]
name = "readiness"
kind = "http"
target = "app"
path = "/health/readiness"

[[probes]]
name = "events"
kind = "sse"
target = "app"
path = "/api/v1/events/stream"

[[slos]]
name = "api_availability"
sli = "availability"
probes = ["health", "readiness"]
objective = 0.995

[fleet]
locations = ["a", "b", "c"]
min_failing_locations = 2
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET_TOML)
    return load_config(path, secrets=False)


def vector(*samples: tuple[dict[str, str], float]) -> dict[str, Any]:
    """The body of ``GET /api/v1/query`` answering ``samples``."""
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [AT, repr(value)]} for labels, value in samples],
        },
    }


def component_status(*cells: tuple[str, str, str]) -> dict[str, Any]:
    """``probed_component_status == 1`` for (component, location, state) cells."""
    return vector(*(({"component": c, "location": loc, "state": s}, 1.0) for c, loc, s in cells))


def answers(**given: dict[str, Any]) -> dict[str, Any]:
    """An answer for every query: empty unless given."""
    assert set(given) <= set(QUERY_NAMES), set(given) - set(QUERY_NAMES)
    return {name: given.get(name, vector()) for name in QUERY_NAMES}


def isolated_a() -> dict[str, Any]:
    """Location a fails everything alone (isolated), b is fine, c reports nothing."""
    return answers(
        reporting=vector(({"location": "a"}, 1), ({"location": "b"}, 1)),
        up=vector(
            ({"job": "probed", "instance": "pa:10115", "location": "a"}, 1),
            ({"job": "probed", "instance": "pb:10115", "location": "b"}, 1),
        ),
        success=vector(
            ({"probe": "health", "location": "a"}, 0),
            ({"probe": "readiness", "location": "a"}, 0),
            ({"probe": "health", "location": "b"}, 1),
            ({"probe": "readiness", "location": "b"}, 1),
        ),
        last_success=vector(
            ({"probe": "health", "location": "a"}, AT - 600),
            ({"probe": "readiness", "location": "a"}, AT - 600),
            ({"probe": "health", "location": "b"}, AT - 5),
            ({"probe": "readiness", "location": "b"}, AT - 5),
        ),
        connected=vector(
            ({"stream": "events", "location": "a"}, 1), ({"stream": "events", "location": "b"}, 1)
        ),
        subscribers=vector(
            ({"stream": "events", "location": "a"}, 1), ({"stream": "events", "location": "b"}, 1)
        ),
        components=component_status(
            ("API Read", "a", "DOWN"),
            ("API Read", "b", "OK"),
            ("SSE Stream", "a", "OK"),
            ("SSE Stream", "b", "OK"),
        ),
        isolated=vector(({"location": "a"}, 1.0)),
        records=vector(({}, 2)),
        recommendations=vector(
            ({"scenario": "target_down", "severity": "Sev-2", "location": "a"}, 1),
            ({"scenario": "sse_degraded", "severity": "Sev-3", "location": "b"}, 1),
        ),
        alerts=vector(
            (
                {
                    "__name__": "ALERTS",
                    "alertname": "ProberIsolated",
                    "alertstate": "firing",
                    "severity": "Sev-3",
                    "routing": "ticket",
                    "location": "a",
                },
                1,
            ),
            (
                {
                    "alertname": "ProberDown",
                    "alertstate": "firing",
                    "severity": "Sev-3",
                    "routing": "ticket",
                    "location": "c",
                },
                1,
            ),
        ),
        slos=vector(
            ({"__name__": "slo:sli_error:ratio_rate5m", "slo": "api_availability"}, 0.0),
            ({"__name__": "slo:sli_error:ratio_rate1h", "slo": "api_availability"}, 0.001),
        ),
    )


def outage() -> dict[str, Any]:
    """The product fails health from a and b; c sees it fine; both recommend health_failing."""
    locs = ("a", "b", "c")
    return answers(
        reporting=vector(*(({"location": loc}, 1) for loc in locs)),
        up=vector(
            *(({"job": "probed", "instance": f"p{loc}", "location": loc}, 1) for loc in locs)
        ),
        success=vector(
            *(({"probe": "health", "location": loc}, 0 if loc != "c" else 1) for loc in locs),
            *(({"probe": "readiness", "location": loc}, 1) for loc in locs),
        ),
        last_success=vector(
            ({"probe": "health", "location": "a"}, AT - 300),
            ({"probe": "health", "location": "b"}, AT - 240),
            ({"probe": "health", "location": "c"}, AT - 5),
        ),
        connected=vector(*(({"stream": "events", "location": loc}, 1) for loc in locs)),
        subscribers=vector(*(({"stream": "events", "location": loc}, 1) for loc in locs)),
        components=component_status(
            ("API Read", "a", "DEGRADED"),
            ("API Read", "b", "DEGRADED"),
            ("API Read", "c", "OK"),
            *(("SSE Stream", loc, "OK") for loc in locs),
        ),
        records=vector(({}, 3)),
        recommendations=vector(
            ({"scenario": "health_failing", "severity": "Sev-1", "location": "a"}, 1),
            ({"scenario": "health_failing", "severity": "Sev-2", "location": "b"}, 1),
        ),
        alerts=vector(
            (
                {
                    "alertname": "ProbeFailingQuorum",
                    "alertstate": "firing",
                    "severity": "Sev-2",
                    "routing": "page",
                    "probe": "health",
                },
                2,
            ),
            (
                {
                    "alertname": "FleetDegradedModeRecommended",
                    "alertstate": "firing",
                    "severity": "Sev-2",
                    "routing": "page",
                    "scenario": "health_failing",
                },
                2,
            ),
        ),
        slos=vector(
            ({"__name__": "slo:sli_error:ratio_rate5m", "slo": "api_availability"}, 1 / 3),
            ({"__name__": "slo:sli_error:ratio_rate1h", "slo": "api_availability"}, 0.05),
        ),
    )


def by_name(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


# ---------------------------------------------------------------------------
# the queries


def test_queries_use_the_location_label_and_job_of_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(
        FLEET_TOML.replace("min_failing_locations = 2\n", 'location_label = "site"\njob = "px"\n')
    )
    queries = fleet_queries(load_config(path, secrets=False))
    assert set(QUERY_NAMES) == set(queries)
    assert "count by (site) (probed_build_info)" == queries["reporting"]
    assert 'up{job="px"}' == queries["up"]
    assert "probed:location_isolated" == queries["isolated"]
    assert queries["alerts"].startswith('ALERTS{alertstate="firing",alertname=~"')
    for name in ("ProberIsolated", "ProberDown", "ProbeFailingQuorum", "SloErrorBudgetBurn"):
        assert name in queries["alerts"]


def test_queries_need_a_fleet_section(tmp_path: Path) -> None:
    path = tmp_path / "single.toml"
    path.write_text(FLEET_TOML.split("[fleet]")[0])
    with pytest.raises(ValueError, match=r"\[fleet\]"):
        fleet_queries(load_config(path, secrets=False))


# ---------------------------------------------------------------------------
# the document


def test_an_isolated_location_a_healthy_one_and_one_without_data(config: Config) -> None:
    doc = fleet_document(config, isolated_a(), at=AT, source=SOURCE)
    assert (SOURCE, AT, 2) == (doc["source"], doc["generated_at"], doc["quorum"])
    locations = by_name(doc["locations"], "location")
    assert ["a", "b", "c"] == [loc["location"] for loc in doc["locations"]]
    assert ("isolated", ["health", "readiness"]) == (
        locations["a"]["state"],
        locations["a"]["failing"],
    )
    assert ("OK", []) == (locations["b"]["state"], locations["b"]["failing"])
    # no data is neither success nor a failure of the product
    assert ("no data", [], 0) == (
        locations["c"]["state"],
        locations["c"]["failing"],
        locations["c"]["instances"],
    )
    components = by_name(doc["components"], "name")
    api_read = components["API Read"]
    assert {"a": "DOWN", "b": "OK", "c": "no data"} == {
        loc: cell["state"] for loc, cell in api_read["locations"].items()
    }
    # only b counts (a is isolated, c silent): fewer than the quorum judge the fleet
    assert "UNKNOWN" == api_read["state"]
    assert "UNKNOWN" == doc["overall"]
    members = by_name(doc["members"], "name")
    assert (["a"], 0, False) == (
        members["health"]["failing_at"],
        members["health"]["counted"],
        members["health"]["quorum"],
    )
    assert {"a": "failing", "b": "ok", "c": "no data"} == members["health"]["locations"]
    assert "stream" == members["events"]["kind"]
    recs = by_name(doc["recommendations"], "scenario")
    assert ({"a": "Sev-2"}, 0, False) == (
        recs["target_down"]["locations"],
        recs["target_down"]["counted"],
        recs["target_down"]["quorum"],
    )
    assert (1, False) == (recs["sse_degraded"]["counted"], recs["sse_degraded"]["quorum"])
    assert [
        ("ProberDown", "Sev-3", {"location": "c"}),
        ("ProberIsolated", "Sev-3", {"location": "a"}),
    ] == [(a["alertname"], a["severity"], a["labels"]) for a in doc["alerts"]]
    (slo,) = doc["slos"]
    assert ("api_availability", 0.995) == (slo["name"], slo["objective"])
    assert 0.001 == pytest.approx(slo["error_ratio"]["1h"])
    assert None is slo["error_ratio"]["3d"]
    assert 0.2 == pytest.approx(slo["burn_rate"]["1h"])
    assert "Only 1 location counts (reports and is not isolated); the quorum is 2." in doc["notes"]
    json.dumps(doc)  # the JSON format prints it as is


def test_an_outage_seen_from_the_quorum(config: Config) -> None:
    doc = fleet_document(config, outage(), at=AT, source=SOURCE)
    assert ["failing", "failing", "OK"] == [loc["state"] for loc in doc["locations"]]
    components = by_name(doc["components"], "name")
    assert "DEGRADED" == components["API Read"]["state"]
    assert "OK" == components["SSE Stream"]["state"]
    members = by_name(doc["members"], "name")
    assert (["a", "b"], 2, True) == (
        members["health"]["failing_at"],
        members["health"]["counted"],
        members["health"]["quorum"],
    )
    assert False is members["readiness"]["quorum"]
    (rec,) = doc["recommendations"]
    # a recommends at Sev-1, b at Sev-2: the quorum of two shares Sev-2
    assert ("health_failing", True, 2, "Sev-2") == (
        rec["scenario"],
        rec["quorum"],
        rec["counted"],
        rec["severity"],
    )
    assert "A health or API check is failing" == rec["title"]
    # never better than the quorum's recommendation allows
    assert "DEGRADED" == doc["overall"]
    assert [] == doc["notes"]


def test_an_isolated_location_leaves_the_quorum(config: Config) -> None:
    """A failing location that is isolated does not count towards a probe's quorum."""
    given = outage()
    given["isolated"] = vector(({"location": "a"}, 1.0))
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    members = by_name(doc["members"], "name")
    assert (["a", "b"], 1, False) == (
        members["health"]["failing_at"],
        members["health"]["counted"],
        members["health"]["quorum"],
    )
    assert "isolated" == doc["locations"][0]["state"]
    # b DEGRADED and c OK count: the quorum of two shares OK
    assert "OK" == by_name(doc["components"], "name")["API Read"]["state"]


def test_the_worst_state_the_quorum_shares(config: Config) -> None:
    given = outage()
    given["components"] = component_status(
        ("API Read", "a", "DOWN"), ("API Read", "b", "DOWN"), ("API Read", "c", "DEGRADED")
    )
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    assert "DOWN" == by_name(doc["components"], "name")["API Read"]["state"]
    given["components"] = component_status(
        ("API Read", "a", "DOWN"), ("API Read", "b", "DEGRADED"), ("API Read", "c", "OK")
    )
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    assert "DEGRADED" == by_name(doc["components"], "name")["API Read"]["state"]


def test_a_location_without_component_status_is_judged_from_its_members(config: Config) -> None:
    given = outage()
    given["components"] = vector()
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    api_read = by_name(doc["components"], "name")["API Read"]
    assert {"a": "DEGRADED", "b": "DEGRADED", "c": "OK"} == {
        loc: cell["state"] for loc, cell in api_read["locations"].items()
    }
    assert ["health"] == api_read["locations"]["a"]["failing"]


def test_maintenance_is_not_failing(config: Config) -> None:
    given = isolated_a()
    given["isolated"] = vector()
    given["maintenance"] = vector(
        ({"probe": "health", "location": "a"}, 1), ({"probe": "readiness", "location": "a"}, 1)
    )
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    a = doc["locations"][0]
    assert ("OK", [], ["health", "readiness"]) == (a["state"], a["failing"], a["maintenance"])
    assert "maintenance" == by_name(doc["members"], "name")["health"]["locations"]["a"]


def test_a_down_instance_and_a_missing_member_are_gaps(config: Config) -> None:
    """One of b's two instances is down (a shard): b is partial, its probes there no data."""
    given = isolated_a()
    given["isolated"] = vector()
    given["success"] = vector(
        ({"probe": "health", "location": "a"}, 1),
        ({"probe": "readiness", "location": "a"}, 1),
        ({"probe": "health", "location": "b"}, 1),
    )
    given["up"] = vector(
        ({"job": "probed", "instance": "pa", "location": "a"}, 1),
        ({"job": "probed", "instance": "pb1", "location": "b"}, 1),
        ({"job": "probed", "instance": "pb2", "location": "b"}, 0),
        ({"job": "probed", "instance": "pc", "location": "c"}, 0),
    )
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    locations = by_name(doc["locations"], "location")
    assert ("partial", 2, 1, ["readiness"]) == (
        locations["b"]["state"],
        locations["b"]["instances"],
        locations["b"]["instances_down"],
        locations["b"]["no_data"],
    )
    assert ("no data", 1, 1) == (
        locations["c"]["state"],
        locations["c"]["instances"],
        locations["c"]["instances_down"],
    )
    assert "no data" == by_name(doc["members"], "name")["readiness"]["locations"]["b"]


def test_a_stream_not_fully_connected_fails(config: Config) -> None:
    given = outage()
    given["connected"] = vector(
        ({"stream": "events", "location": "a"}, 0),
        ({"stream": "events", "location": "b"}, 2),
        ({"stream": "events", "location": "c"}, 2),
    )
    given["subscribers"] = vector(*(({"stream": "events", "location": x}, 2) for x in "abc"))
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    assert ["a"] == by_name(doc["members"], "name")["events"]["failing_at"]


def test_unexpected_locations_and_unlabelled_series_are_named(config: Config) -> None:
    given = outage()
    given["reporting"] = vector(*(({"location": loc}, 1) for loc in ("a", "b", "c", "d")), ({}, 1))
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    assert ["a", "b", "c", "d"] == [loc["location"] for loc in doc["locations"]]
    assert False is doc["locations"][3]["expected"]
    assert any("not in [fleet] locations: d" in note for note in doc["notes"]), doc["notes"]
    assert any("no 'location' label" in note for note in doc["notes"]), doc["notes"]


def test_missing_fleet_records_are_named(config: Config) -> None:
    given = outage()
    given["records"] = vector()
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    assert any("probed rules" in note for note in doc["notes"]), doc["notes"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
         "reporting: bad_data: parse error at char 3"),
        ([], "reporting: not a Prometheus API answer"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}},
         "reporting: a matrix, not an instant vector"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
         "reporting: a sample without a value"),
        (None, "reporting: no answer"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_a_vector_is_refused(
    config: Config, body: object, message: str
) -> None:
    given: dict[str, Any] = outage()
    given["reporting"] = body
    with pytest.raises(PrometheusAnswerError) as caught:
        fleet_document(config, given, at=AT, source=SOURCE)
    assert message == str(caught.value)


def test_not_a_number_is_no_data(config: Config) -> None:
    given = outage()
    given["slos"] = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {
                    "metric": {"__name__": "slo:sli_error:ratio_rate1h", "slo": "api_availability"},
                    "value": [AT, "NaN"],
                }
            ],
        },
    }
    doc = fleet_document(config, given, at=AT, source=SOURCE)
    assert None is doc["slos"][0]["error_ratio"]["1h"]


# ---------------------------------------------------------------------------
# the renderers


def test_locations_line(config: Config) -> None:
    doc = fleet_document(config, isolated_a(), at=AT, source=SOURCE)
    assert "Locations: a isolated, b OK, c no data" == locations_line(doc)


def test_markdown_gains_the_locations_line(config: Config) -> None:
    doc = fleet_document(config, isolated_a(), at=AT, source=SOURCE)
    assert [
        "## 1) Status now",
        "Status: UNKNOWN",
        "Timestamp (UTC): 2026-02-08T10:02:00Z",
        "Locations: a isolated, b OK, c no data",
        "Summary:",
        "- API Read: UNKNOWN",
        "- API Write: not monitored",
        "- SSE Stream: UNKNOWN",
        "- Background Jobs: not monitored",
        "- Console/Admin: not monitored",
        "",
        "Notes:",
        "- Sev-3 ProberDown: location c",
        "- Sev-3 ProberIsolated: location a",
        "- No degraded-mode recommendation has the quorum of locations.",
        "- Only 1 location counts (reports and is not isolated); the quorum is 2.",
    ] == render_fleet_markdown(doc).splitlines()


def test_incident_gains_the_locations_line(config: Config) -> None:
    doc = fleet_document(config, outage(), at=AT, source=SOURCE)
    assert [
        "Incident INC-20260208-001 \u2014 Ack",
        "Sev: Sev-2 | Services: api",
        "Impact: API Read (DEGRADED) affected \u2014 signal ProbeFailingQuorum probe=health "
        "(failing at a, b)",
        "Locations: a failing, b failing, c OK",
        "Last healthy: 2026-02-08T09:57:00Z",
        "Next update: T+30m",
        "IC: {name}  Scribe: {name}",
    ] == render_fleet_incident(doc).splitlines()


def test_incident_without_a_quorum_alert(config: Config) -> None:
    doc = fleet_document(config, isolated_a(), at=AT, source=SOURCE)
    lines = render_fleet_incident(doc, incident_id="INC-7").splitlines()
    assert "Incident INC-7 \u2014 Ack" == lines[0]
    assert "Sev: Sev-4 (no quorum alert or recommendation) | Services: none identified" == lines[1]
    assert "Locations: a isolated, b OK, c no data" == lines[3]


def test_table_shows_locations_components_failing_members_and_slos(config: Config) -> None:
    out = render_fleet_table(fleet_document(config, isolated_a(), at=AT, source=SOURCE))
    lines = out.splitlines()
    assert f"probed fleet from {SOURCE}: UNKNOWN (2026-02-08T10:02:00Z)" == lines[0]
    assert "Locations: a isolated, b OK, c no data (quorum 2 of 3)" == lines[1]
    rows = {
        line.split()[0]: line.split() for line in lines if line[:1] in "abc" and line[1:2] == " "
    }
    assert ["a", "isolated"] == rows["a"][:2]
    assert ["c", "no", "data"] == rows["c"][:3]
    assert any(line.split()[:3] == ["API", "Read", "UNKNOWN"] for line in lines), out
    assert any("DOWN (isolated)" in line and line.startswith("API Read") for line in lines), out
    assert any(line.strip().startswith("health") and "a (isolated)" in line for line in lines), out
    assert any("target_down" in line and "no quorum" in line for line in lines), out
    assert any(line.strip().startswith("[Sev-3] ProberDown location=c") for line in lines), out
    assert any(line.startswith("api_availability") and "0.1%" in line for line in lines), out


def test_table_neutralises_terminal_escapes(config: Config) -> None:
    given = isolated_a()
    given["alerts"] = vector(
        ({"alertname": "ProberDown", "severity": "Sev-3", "location": "\x1b[2Jc"}, 1)
    )
    out = render_fleet_table(fleet_document(config, given, at=AT, source=SOURCE))
    assert "\x1b" not in out


def test_page_is_self_contained_with_stable_hooks(config: Config) -> None:
    page = render_fleet_page(fleet_document(config, isolated_a(), at=AT, source=SOURCE))
    assert page.startswith("<!doctype html>")
    assert '<span id="overall" data-state="UNKNOWN">UNKNOWN</span>' in page
    assert '<tr class="location" data-location="a" data-state="isolated">' in page
    assert '<tr class="location" data-location="c" data-state="no data">' in page
    assert 'data-name="API Read" data-state="UNKNOWN"' in page
    # no script, and nothing loaded: the policy allows the inline style sheet only
    assert "<script" not in page
    assert "default-src 'none'; style-src 'sha256-" in html.unescape(page)
    assert [] == re.findall(r'(?:src|href)="(?!data:)[^"]*"', page)


def test_page_escapes_hostile_names(config: Config) -> None:
    given = isolated_a()
    given["alerts"] = vector(
        ({"alertname": "<script>x</script>", "severity": "Sev-3", "location": "c"}, 1)
    )
    page = render_fleet_page(fleet_document(config, given, at=AT, source=SOURCE))
    assert "<script>x" not in page
