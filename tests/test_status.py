"""The status module: components, the status document and its renderers (pure, no network)."""

from __future__ import annotations

import ast
import base64
import copy
import hashlib
import html
import json
import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kinds import ALL_KINDS_TOML

from probed import components, pagesections, status, statusfields, statuspage, statustext
from probed.components import compute_components, overall
from probed.config import ComponentConfig, default_components, load_config
from probed.configtypes import DEFAULT_COMPONENTS
from probed.pageunits import amount, duration, evidence_value, fixed, offset, percent, rate
from probed.results import ProbeResult, ProbeRun, Reason
from probed.signals import (
    ComponentState,
    ComponentStatus,
    Evaluation,
    Evidence,
    ProbeSignal,
    Recommendation,
    RecommendationState,
    Severity,
    Signals,
    SloStatus,
    StreamSignal,
)
from probed.status import recommendations_document, status_document
from probed.statuspage import render_fragment, render_page
from probed.statustext import render_incident, render_markdown, render_table
from probed.store import ResultStore

NOW = 1_770_508_800.0  # 2026-02-08T00:00:00Z

# ---------------------------------------------------------------------------
# default components


def test_default_components_map_probe_kinds_to_the_seed_components(tmp_path: Path) -> None:
    """GET/HEAD http -> API Read; other http, login, fixture -> API Write; sse and reflect ->
    SSE Stream; import -> Background Jobs; Console/Admin stays empty."""
    (tmp_path / "input.json").write_text("{}")
    path = tmp_path / "probes.toml"
    path.write_text(ALL_KINDS_TOML)
    config = load_config(path, environ={"STATUS_TEST_PASSWORD": "pw"})

    components = default_components(config)

    assert [
        ComponentConfig(name="API Read", probes=["health", "head_check"]),
        ComponentConfig(name="API Write", probes=["create_deal", "login", "indicators"]),
        ComponentConfig(name="SSE Stream", probes=["events", "reflect"]),
        ComponentConfig(name="Background Jobs", probes=["import_trades"]),
        ComponentConfig(name="Console/Admin", probes=[]),
    ] == components
    assert list(DEFAULT_COMPONENTS) == [c.name for c in components]


# ---------------------------------------------------------------------------
# component states


def probe(
    name: str,
    *,
    last: bool | None = True,
    runs: int = 10,
    failures: int = 0,
    last_success_at: float | None = NOW - 5,
    last_reason: str | None = None,
) -> ProbeSignal:
    """A probe signal with the fields that matter for components."""
    return ProbeSignal(
        name=name,
        kind="http",
        target="demo",
        runs=runs,
        failures=failures,
        reasons={},
        rate_limited=0,
        p95_seconds=None,
        last_success=last,
        last_success_at=last_success_at,
        last_reason=last_reason,
    )


def stream(name: str, *, connected: bool = True, down_for: float = 0.0) -> StreamSignal:
    """A stream signal, connected or down for ``down_for`` seconds."""
    return StreamSignal(
        name=name,
        target="demo",
        connected=connected,
        disconnected_for=down_for,
        events=10,
        lag_p95=0.1,
        lost=0,
    )


COMPONENT_CASES: list[tuple[str, list[str], list[ProbeSignal | StreamSignal], ComponentStatus]] = [
    (
        "no_probes",
        [],
        [],
        ComponentStatus("C", ComponentState.UNKNOWN, (), (), None),
    ),
    (
        "probes_not_in_signals",
        ["a"],
        [],
        ComponentStatus("C", ComponentState.UNKNOWN, ("a",), (), None),
    ),
    (
        "never_ran",
        ["a"],
        [probe("a", last=None, runs=0, last_success_at=None)],
        ComponentStatus("C", ComponentState.UNKNOWN, ("a",), (), None),
    ),
    (
        "all_ok",
        ["a", "b"],
        [probe("a", last_success_at=NOW - 3), probe("b", last_success_at=NOW - 7)],
        ComponentStatus("C", ComponentState.OK, ("a", "b"), (), NOW - 7),
    ),
    (
        "one_failing",
        ["a", "b"],
        [probe("a"), probe("b", last=False, failures=2, last_success_at=NOW - 60)],
        ComponentStatus("C", ComponentState.DEGRADED, ("a", "b"), ("b",), NOW - 60),
    ),
    (
        "all_failing",
        ["a", "b"],
        [
            probe("a", last=False, failures=10, last_success_at=NOW - 600),
            probe("b", last=False, failures=10, last_success_at=NOW - 900),
        ],
        ComponentStatus("C", ComponentState.DOWN, ("a", "b"), ("a", "b"), NOW - 900),
    ),
    (
        "ok_now_but_failed_in_window",
        ["a"],
        [probe("a", failures=1)],
        ComponentStatus("C", ComponentState.DEGRADED, ("a",), (), NOW - 5, degraded_by=("a",)),
    ),
    (
        "slow_but_successful_is_degraded_not_down",
        ["login"],
        [probe("login", last=False, failures=1, last_reason="slow", last_success_at=NOW - 15)],
        ComponentStatus(
            "C", ComponentState.DEGRADED, ("login",), (), NOW - 15, degraded_by=("login",)
        ),
    ),
    (
        "failing_and_never_healthy",
        ["a"],
        [probe("a", last=False, failures=3, last_success_at=None)],
        ComponentStatus("C", ComponentState.DOWN, ("a",), ("a",), None),
    ),
    (
        "member_without_data_is_left_out",
        ["a", "b"],
        [probe("a", last=False, failures=1), probe("b", last=None, runs=0, last_success_at=None)],
        ComponentStatus("C", ComponentState.DOWN, ("a", "b"), ("a",), NOW - 5),
    ),
    (
        "stream_connected",
        ["events"],
        [stream("events")],
        ComponentStatus("C", ComponentState.OK, ("events",), (), NOW),
    ),
    (
        "stream_down",
        ["events"],
        [stream("events", connected=False, down_for=30.0)],
        ComponentStatus("C", ComponentState.DOWN, ("events",), ("events",), NOW - 30),
    ),
    (
        "stream_down_reflect_ok",
        ["events", "reflect"],
        [stream("events", connected=False, down_for=30.0), probe("reflect")],
        ComponentStatus("C", ComponentState.DEGRADED, ("events", "reflect"), ("events",), NOW - 30),
    ),
]


@pytest.mark.parametrize(
    ("members", "sigs", "expected"),
    [case[1:] for case in COMPONENT_CASES],
    ids=[case[0] for case in COMPONENT_CASES],
)
def test_compute_components(
    members: list[str], sigs: list[ProbeSignal | StreamSignal], expected: ComponentStatus
) -> None:
    """Each component is UNKNOWN, OK, DEGRADED or DOWN by the documented rules."""
    signals = Signals(
        now=NOW,
        window=300.0,
        probes={s.name: s for s in sigs if isinstance(s, ProbeSignal)},
        streams={s.name: s for s in sigs if isinstance(s, StreamSignal)},
    )
    assert (expected,) == compute_components([ComponentConfig(name="C", probes=members)], signals)


S = ComponentState
OVERALL_CASES = [
    ([], S.UNKNOWN),
    ([S.UNKNOWN, S.UNKNOWN], S.UNKNOWN),
    ([S.OK, S.UNKNOWN], S.OK),
    ([S.OK, S.DEGRADED, S.UNKNOWN], S.DEGRADED),
    ([S.DEGRADED, S.DOWN, S.OK], S.DOWN),
    ([S.OK, S.OK], S.OK),
]


@pytest.mark.parametrize(("states", "expected"), OVERALL_CASES)
def test_overall(states: list[ComponentState], expected: ComponentState) -> None:
    """The worst known state wins; UNKNOWN counts only when nothing is known."""
    comps = [ComponentStatus(f"c{i}", s, (), (), None) for i, s in enumerate(states)]
    assert expected == overall(comps)


@pytest.mark.parametrize(
    ("severity", "state", "expected"),
    [
        (Severity.SEV1, RecommendationState.ACTIVE, S.DOWN),
        (Severity.SEV2, RecommendationState.ACTIVE, S.DEGRADED),
        (Severity.SEV3, RecommendationState.ACTIVE, S.DEGRADED),
        (Severity.SEV4, RecommendationState.ACTIVE, S.OK),
        (Severity.SEV1, RecommendationState.PENDING, S.OK),
        (Severity.SEV1, RecommendationState.INCONCLUSIVE, S.OK),
    ],
)
def test_overall_is_never_better_than_an_active_recommendation(
    severity: Severity, state: RecommendationState, expected: ComponentState
) -> None:
    """An active Sev-1 makes the headline DOWN, Sev-2/3 DEGRADED, even with every card OK."""
    comps = [ComponentStatus("c", S.OK, (), (), None)]
    rec = recommendation("fast_burn", severity, state, NOW - 60)
    assert expected == overall(comps, [rec])


# ---------------------------------------------------------------------------
# the status document


def populated_store() -> ResultStore:
    """A store with an http probe (two runs), a never-run probe and a stream."""
    store = ResultStore(ring_size=5)
    store.register("health", "http", "demo")
    store.register("login", "login", "demo")
    store.record(
        ProbeRun(
            "health", "http", "demo", "run-1", "a" * 32, NOW - 20, 0.0125,
            ProbeResult.fail(Reason.STATUS, status_code=503),
        )
    )  # fmt: skip
    store.record(
        ProbeRun(
            "health", "http", "demo", "run-2", "b" * 32, NOW - 10, 0.01,
            ProbeResult.ok(status_code=200, phases={"connect": 0.001}),
        )
    )  # fmt: skip
    stats = store.register_stream("events", "demo", 2)
    stats.connected = 2
    stats.received = 40
    stats.late = 1
    stats.reconnects["eof"] += 3
    stats.clock.observe("time_path", -0.2505, -0.2495)  # -0.25 s +- 0.5 ms, corrected
    stats.observe_lag(0.5, NOW - 100)
    stats.observe_lag(1.5, NOW - 99)
    stats.observe_lag(0.25, NOW - 10)
    return store


def evidence() -> Evidence:
    """Lag evidence of the SSE recommendation."""
    return Evidence("stream events lag_p95", 7.25, 5.0, NOW - 400, "p95 over 5m")


def recommendation(
    scenario: str,
    severity: Severity,
    state: RecommendationState,
    since: float,
) -> Recommendation:
    """A recommendation with two actions and one piece of evidence."""
    return Recommendation(
        scenario=scenario,
        title=f"{scenario} title",
        severity=severity,
        state=state,
        since=since,
        evidence=(evidence(),),
        actions=("Switch clients to polling at 15-30 s.", "Restart SSE workers."),
        rollback="Restore SSE once P95 delay < 5 s.",
        runbook_url="https://runbooks.example/sse",
        summary=f"{scenario} summary",
    )


def evaluation() -> Evaluation:
    """An evaluation with components, SLOs and recommendations in mixed order."""
    slo = SloStatus(
        name="api_read",
        sli="availability",
        objective=0.995,
        window=30 * 86400.0,
        ratio={"1h": 0.99, "30d": None},
        burn_rate={"1h": 2.0, "30d": float("inf")},
        budget_remaining=0.5,
        events={"1h": 360, "30d": 0},
    )
    signals = Signals(now=NOW, window=300.0, slos={"api_read": slo})
    return Evaluation(
        at=NOW - 1,
        signals=signals,
        components=(
            ComponentStatus("API Read", S.OK, ("health",), (), NOW - 10),
            ComponentStatus("SSE Stream", S.DEGRADED, ("events",), ("events",), NOW - 400),
        ),
        recommendations=(
            recommendation("backlog", Severity.SEV3, RecommendationState.ACTIVE, NOW - 50),
            recommendation("pending_one", Severity.SEV1, RecommendationState.PENDING, NOW - 5),
            recommendation("sse_degraded", Severity.SEV2, RecommendationState.ACTIVE, NOW - 300),
        ),
    )


def test_status_document_shape_with_a_populated_store() -> None:
    """Probes, streams, components, recommendations and SLOs appear in the documented shape."""
    doc = status_document(
        store=populated_store(), evaluation=evaluation(), location="eu-1", version="9.9", now=NOW
    )

    json.dumps(doc, allow_nan=False)  # valid JSON for browsers: no Infinity/NaN
    assert {
        "version", "location", "shard", "generated_at", "evaluated_at", "overall",
        "components", "recommendations", "slos", "probes", "streams", "config", "maintenance",
        "history",
    } == set(doc)  # fmt: skip
    assert {"index": 0, "total": 1} == doc["shard"]
    assert ("9.9", "eu-1", NOW, NOW - 1, "DEGRADED") == (
        doc["version"], doc["location"], doc["generated_at"], doc["evaluated_at"], doc["overall"]
    )  # fmt: skip
    assert [
        {"name": "API Read", "state": "OK", "probes": ["health"], "failing": [],
         "degraded_by": [], "last_healthy": NOW - 10},
        {"name": "SSE Stream", "state": "DEGRADED", "probes": ["events"], "failing": ["events"],
         "degraded_by": [], "last_healthy": NOW - 400},
    ] == doc["components"]  # fmt: skip
    assert ["sse_degraded", "backlog", "pending_one"] == [
        r["scenario"] for r in doc["recommendations"]
    ]
    assert {
        "scenario": "sse_degraded",
        "title": "sse_degraded title",
        "severity": "Sev-2",
        "routing": "page",
        "state": "active",
        "since": NOW - 300,
        "summary": "sse_degraded summary",
        "actions": ["Switch clients to polling at 15-30 s.", "Restart SSE workers."],
        "rollback": "Restore SSE once P95 delay < 5 s.",
        "runbook_url": "https://runbooks.example/sse",
        "inconclusive_reason": None,
        "evidence": [
            {"signal": "stream events lag_p95", "value": 7.25, "threshold": 5.0,
             "since": NOW - 400, "detail": "p95 over 5m"},
        ],
    } == doc["recommendations"][0]  # fmt: skip
    assert [
        {"name": "api_read", "sli": "availability", "objective": 0.995, "window": 2592000.0,
         "ratio": {"1h": 0.99, "30d": None}, "burn_rate": {"1h": 2.0, "30d": None},
         "budget_remaining": 0.5, "budget_allowed": None, "events": {"1h": 360, "30d": 0},
         "coverage": {}},
    ] == doc["slos"]  # fmt: skip
    assert [
        {
            "probe": "health", "kind": "http", "target": "demo", "runs": 2, "failures": 1,
            "reasons": {"status": 1}, "last_success_at": NOW - 10,
            "last": {
                "success": True, "reason": None, "status_code": 200, "duration_seconds": 0.01,
                "started_at": NOW - 10, "run_id": "run-2", "trace_id": "b" * 32,
                "phases": {"connect": 0.001},
            },
            "recent": [
                {"t": NOW - 20, "d": 0.0125, "ok": False, "reason": "status"},
                {"t": NOW - 10, "d": 0.01, "ok": True, "reason": None},
            ],
        },
        {
            "probe": "login", "kind": "login", "target": "demo", "runs": 0, "failures": 0,
            "reasons": {}, "last_success_at": None, "last": None, "recent": [],
        },
    ] == doc["probes"]  # fmt: skip
    [events] = doc["streams"]
    lag = events.pop("lag")
    assert 0.0 <= events.pop("last_event_age_seconds") < 5.0  # watching began just now
    assert {
        "stream": "events", "target": "demo", "connected": 2, "subscribers": 2,
        "connection_ids": ["", ""], "received": 40,
        "lost": 0, "duplicated": 0, "out_of_order": 0, "late": 1, "negative_lag": 0,
        "reconnects": 3, "reconnect_reasons": {"eof": 3}, "clock_offset_seconds": -0.25,
        "mean_lag_seconds": 0.75, "last_byte_age_seconds": None,
        "bursts": 0, "burst_events": 0, "hints": [],
        "clock": {
            "mode": "correct", "source": "time_path", "offset_seconds": -0.25,
            "uncertainty_seconds": 0.0005, "applied_seconds": -0.25, "samples": 1,
            "tolerance_seconds": 1.0, "skewed": False, "lag_error_seconds": 0.0005,
            "uncorrected": 0, "within_uncertainty": 0,
            "note": "-0.250 s \u00b1 0.5 ms (time_path), corrected",
        },
    } == events  # fmt: skip
    assert [1.5, 0.25] == [point["lag"] for point in lag]  # worst per slot, in time order
    assert all(NOW - 300 < point["t"] <= NOW for point in lag)


def test_status_document_without_evaluation() -> None:
    """Before the first evaluation: overall UNKNOWN, no components, recommendations or SLOs."""
    doc = status_document(
        store=populated_store(), evaluation=None, location="eu-1", version="9.9", now=NOW
    )
    assert ("UNKNOWN", [], [], [], None) == (
        doc["overall"], doc["components"], doc["recommendations"], doc["slos"],
        doc["evaluated_at"],
    )  # fmt: skip
    assert ["health", "login"] == [p["probe"] for p in doc["probes"]]


def test_recommendations_document() -> None:
    """GET /api/v1/recommendations: the same recommendation objects and a timestamp."""
    doc = recommendations_document(evaluation())
    assert NOW - 1 == doc["generated_at"]
    assert ["sse_degraded", "backlog", "pending_one"] == [
        r["scenario"] for r in doc["recommendations"]
    ]
    assert {"generated_at": 5.0, "recommendations": []} == recommendations_document(None, now=5.0)


# ---------------------------------------------------------------------------
# renderers over a fixed document


def fixed_doc() -> dict[str, Any]:
    """A document as the daemon serves it: one degraded component, one active recommendation."""
    return {
        "version": "0.1.0",
        "location": "eu-1",
        "generated_at": NOW + 0.75,
        "evaluated_at": NOW,
        "overall": "DEGRADED",
        "components": [
            {"name": "API Read", "state": "OK", "probes": ["health"], "failing": [],
             "last_healthy": NOW - 5},
            {"name": "API Write", "state": "OK", "probes": ["login"], "failing": [],
             "last_healthy": NOW - 5},
            {"name": "SSE Stream", "state": "DEGRADED", "probes": ["events", "reflect"],
             "failing": ["reflect"], "last_healthy": NOW - 1800},
            {"name": "Background Jobs", "state": "DOWN", "probes": ["import_trades"],
             "failing": ["import_trades"], "last_healthy": NOW - 600},
            {"name": "Console/Admin", "state": "UNKNOWN", "probes": [], "failing": [],
             "last_healthy": None},
        ],
        "recommendations": [
            {
                "scenario": "sse_degraded",
                "title": "SSE delayed: switch clients to polling",
                "severity": "Sev-2",
                "routing": "page",
                "state": "active",
                "since": NOW - 240,
                "summary": "Stream lag p95 7.2 s > 5 s for 4m on 10.0.0.7:8080 (user a@b.example)",
                "actions": [
                    "Switch clients to polling mode at a 15-30s interval.",
                    "Reduce event fan-out.",
                    "Verify SSE workers and restart if needed.",
                ],
                "rollback": "Restore SSE and revert polling once P95 delay < 5s.",
                "runbook_url": "https://runbooks.example/probed#sse",
                "evidence": [
                    {"signal": "stream events lag_p95", "value": 7.2, "threshold": 5.0,
                     "since": NOW - 300, "detail": ""},
                ],
            },
            {
                "scenario": "backlog",
                "title": "Approvals backlog",
                "severity": "Sev-1",
                "routing": "page",
                "state": "pending",
                "since": NOW - 10,
                "summary": "queue grows",
                "actions": ["Disable auto-approve."],
                "rollback": "Re-enable.",
                "runbook_url": "",
                "evidence": [],
            },
        ],
        "slos": [
            {"name": "api_read", "sli": "availability", "objective": 0.995, "window": 2592000.0,
             "ratio": {"1h": 0.99912, "30d": 0.9996}, "burn_rate": {"1h": 0.176},
             "budget_remaining": -0.125, "events": {"1h": 360}},
        ],
        "probes": [
            {"probe": "health", "kind": "http", "target": "demo", "runs": 12, "failures": 1,
             "last": {"success": True, "reason": None, "status_code": 200,
                      "duration_seconds": 0.0123, "started_at": NOW - 3, "run_id": "r-2",
                      "trace_id": "c" * 32},
             "recent": [{"t": NOW - 13, "d": 0.02, "ok": False, "reason": "timeout"},
                        {"t": NOW - 3, "d": 0.0123, "ok": True, "reason": None}]},
            {"probe": "import_trades", "kind": "import", "target": "demo", "runs": 3,
             "failures": 3,
             "last": {"success": False, "reason": "deadline", "status_code": 202,
                      "duration_seconds": 8.5, "started_at": NOW - 200, "run_id": "r-3",
                      "trace_id": "d" * 32},
             "recent": []},
        ],
        "streams": [
            {"stream": "events", "target": "demo", "connected": 1, "subscribers": 1,
             "received": 100, "lost": 2, "duplicated": 0, "out_of_order": 0, "late": 4,
             "negative_lag": 0, "reconnects": 1, "clock_offset_seconds": 0.002,
             "mean_lag_seconds": 2.5, "lag": [{"t": NOW - 60, "lag": 7.0}]},
        ],
    }  # fmt: skip


def test_markdown_is_the_status_now_block() -> None:
    """The HEARTBEAT block: status, timestamp, one line per component, active recommendations
    as notes with IP and e-mail addresses scrubbed."""
    assert (
        "## 1) Status now\n"
        "Status: DEGRADED\n"
        "Timestamp (UTC): 2026-02-08T00:00:00Z\n"
        "Summary:\n"
        "- API Read: OK\n"
        "- API Write: OK\n"
        "- SSE Stream: DEGRADED\n"
        "- Background Jobs: DOWN\n"
        "- Console/Admin: UNKNOWN\n"
        "\n"
        "Notes:\n"
        "- Sev-2 SSE delayed: switch clients to polling since 2026-02-07T23:56:00Z: "
        "Stream lag p95 7.2 s > 5 s for 4m on [ip] (user [email])"
    ) == render_markdown(fixed_doc())


def test_markdown_without_evaluation_or_recommendations() -> None:
    """Before any evaluation the block says so instead of listing components."""
    doc = {**fixed_doc(), "overall": "UNKNOWN", "components": [], "recommendations": []}
    assert (
        "## 1) Status now\n"
        "Status: UNKNOWN\n"
        "Timestamp (UTC): 2026-02-08T00:00:00Z\n"
        "Summary:\n"
        "- No components evaluated yet\n"
        "\n"
        "Notes:\n"
        "- No active degraded-mode recommendations."
    ) == render_markdown(doc)


SCRUB_CASES = [
    ("from 192.168.1.20 and 10.0.0.1:443", "from [ip] and [ip]"),
    ("peer fe80::1 and 2001:db8:0:0:0:0:0:1 down", "peer [ip] and [ip] down"),
    ("see https://grafana.internal/d/abc?x=1 now", "see [url] now"),
    ("user jane.doe+x@example.com", "user [email]"),
    ("job 3f2b8c1e-1d2a-4e4b-9f6a-0c1d2e3f4a5b", "job [id]"),
    ("trace 4bf92f3577b34da6a3ce929d0e0e4736", "trace [id]"),
    ("at 12:00:03 for 5m, p95 7.2 s", "at 12:00:03 for 5m, p95 7.2 s"),
    ("bell\x07 and \x1b[31mred", "bell? and ?[31mred"),
]


@pytest.mark.parametrize(("summary", "expected"), SCRUB_CASES)
def test_markdown_notes_carry_no_addresses_or_identifiers(summary: str, expected: str) -> None:
    """Free text in notes loses IPs, URLs, e-mails, ids and control characters; times stay."""
    doc = fixed_doc()
    doc["recommendations"][0]["summary"] = summary
    notes = render_markdown(doc).splitlines()[-1]
    assert notes.endswith(f"since 2026-02-07T23:56:00Z: {expected}")


def test_incident_fills_the_initial_ack_template() -> None:
    """Sev from the top active recommendation, services from the affected components, the
    signal from its evidence, last healthy from the earliest affected component."""
    assert (
        "Incident INC-20260208-001 \u2014 Ack\n"
        "Sev: Sev-2 | Services: api, worker\n"
        "Impact: SSE Stream (DEGRADED), Background Jobs (DOWN) affected \u2014 "
        "signal stream events lag_p95 7.2 (threshold 5)\n"
        "Last healthy: 2026-02-07T23:30:00Z\n"
        "Next update: T+30m\n"
        "IC: {name}  Scribe: {name}"
    ) == render_incident(fixed_doc())


def test_incident_without_active_recommendation() -> None:
    """No active recommendation: Sev-4 says so and names the pending one; the failing probes
    are the signal."""
    doc = fixed_doc()
    doc["recommendations"] = [r for r in doc["recommendations"] if r["state"] != "active"]
    doc["components"] = [
        {**c, "state": "OK", "failing": []} if c["name"] == "SSE Stream" else c
        for c in doc["components"]
    ]
    assert (
        "Incident INC-7 \u2014 Ack\n"
        "Sev: Sev-4 (no active recommendation; Sev-1 pending) | Services: worker\n"
        "Impact: Background Jobs (DOWN) affected \u2014 "
        "signal probe success (failing: import_trades)\n"
        "Last healthy: 2026-02-07T23:50:00Z\n"
        "Next update: T+30m\n"
        "IC: {name}  Scribe: {name}"
    ) == render_incident(doc, incident_id="INC-7")


def test_incident_when_all_is_well() -> None:
    """Nothing affected and nothing active: no services, no signal, healthy now."""
    doc = {**fixed_doc(), "overall": "OK", "recommendations": [], "components": []}
    assert (
        "Incident INC-20260208-001 \u2014 Ack\n"
        "Sev: Sev-4 (no active recommendation) | Services: none identified\n"
        "Impact: no component affected \u2014 signal none (no active recommendation)\n"
        "Last healthy: 2026-02-08T00:00:00Z\n"
        "Next update: T+30m\n"
        "IC: {name}  Scribe: {name}"
    ) == render_incident(doc)


def test_table_lists_components_recommendation_actions_and_probes() -> None:
    """The terminal table carries every component, the ordered actions, rollback and probes."""
    text = render_table(fixed_doc())
    lines = text.splitlines()
    assert "probed 0.1.0 at eu-1: DEGRADED (2026-02-08T00:00:00Z)" == lines[0]
    assert "      1. Switch clients to polling mode at a 15-30s interval." in lines
    assert "      2. Reduce event fan-out." in lines
    assert "      3. Verify SSE workers and restart if needed." in lines
    assert "      Rollback: Restore SSE and revert polling once P95 delay < 5s." in lines
    assert "      Runbook: https://runbooks.example/probed#sse" in lines
    for name in ("API Read", "Background Jobs", "Console/Admin", "health", "import_trades"):
        assert any(line.startswith(name) for line in lines), name
    assert any(
        re.match(r"import_trades\s+import\s+demo\s+FAIL\s+deadline\s+202\s", x) for x in lines
    )
    assert any(
        re.match(r"api_read\s+availability\s+99\.5%\s+99\.912%\s+99\.96%\s", x) for x in lines
    )


def running_config(**failure: Any) -> dict[str, Any]:
    """The status document's ``config`` of a daemon running a1b2c3d4e5f6, plus ``failure``."""
    return {
        "last_reload_successful": not failure, "last_reload_error": None,
        "last_reload_at": NOW - 600, "path": "/etc/probed/probes.toml",
        "hash": "a1b2c3d4e5f6", "loaded_at": NOW - 600, **failure,
    }  # fmt: skip


def test_table_and_markdown_show_the_running_config() -> None:
    """The table's second line names the running config; markdown adds nothing while it is
    the file on disk."""
    doc = {**fixed_doc(), "config": running_config()}
    assert (
        "config a1b2c3d4e5f6 from /etc/probed/probes.toml, loaded 2026-02-07T23:50:00Z"
    ) == render_table(doc).splitlines()[1]
    assert render_markdown(fixed_doc()) == render_markdown(doc)


def test_no_config_line_without_a_config_file() -> None:
    """A document without a running config file (an older daemon, a config built in code)
    renders no config line."""
    for config in ({}, {**running_config(), "hash": None, "path": None, "loaded_at": None}):
        doc = {**fixed_doc(), "config": config}
        assert [] == [x for x in render_table(doc).splitlines() if x.startswith("config ")]
        app = render_page(doc).split('<main id="app"', 1)[1].split("</main>", 1)[0]
        assert 'id="config"' not in app


def test_table_and_markdown_warn_of_a_failed_reload() -> None:
    """After a failed reload the table's second line and a markdown note carry the warning,
    the first problem and the count of the others; terminal escapes are neutralised."""
    failure = {
        "failed_at": NOW - 60,
        "file_hash": "d4e5f6a7b8c9",
        "more_problems": 1,
        "problems": ["/etc/probed/probes.toml:8: unknown target 'x'\x1b[2J", "b", "c"],
    }
    doc = {**fixed_doc(), "config": running_config(**failure)}
    warning = (
        "config reload failed at 2026-02-07T23:59:00Z: /etc/probed/probes.toml:8: unknown "
        "target 'x'?[2J (and 3 more problems); running config a1b2c3d4e5f6 from "
        "2026-02-07T23:50:00Z, file on disk d4e5f6a7b8c9"
    )  # fmt: skip
    assert warning == render_table(doc).splitlines()[1]
    assert f"- {warning}" == render_markdown(doc).splitlines()[-1]


def test_table_neutralises_terminal_escapes() -> None:
    """Names from a fetched document cannot send escape sequences to the terminal."""
    doc = fixed_doc()
    doc["probes"][0]["probe"] = "evil\x1b]0;pwned\x07"
    assert "\x1b" not in render_table(doc)


# ---------------------------------------------------------------------------
# the page

HOSTILE = "<script>alert(1)</script>"


def hostile_doc() -> dict[str, Any]:
    """The fixed document with markup in every free-text field."""
    doc = copy.deepcopy(fixed_doc())
    doc["location"] = HOSTILE
    doc["components"][0]["name"] = HOSTILE
    doc["probes"][0]["probe"] = HOSTILE
    doc["probes"][0]["last"]["trace_id"] = '"><img src=x onerror=alert(1)>'
    doc["recommendations"][0]["title"] = HOSTILE
    doc["recommendations"][0]["actions"].append("<img src=x onerror=alert(1)>")
    doc["recommendations"][1]["runbook_url"] = "javascript:alert(1)"
    doc["streams"][0]["stream"] = HOSTILE
    return doc


def test_page_escapes_hostile_names() -> None:
    """Markup in names is text: the page has exactly its own script and no injected element."""
    page = render_page(hostile_doc())
    assert 1 == page.count("<script")
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-probe="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert 'href="javascript:' not in page
    assert '<p class="runbook">Runbook: javascript:alert(1)</p>' in page


def test_recommendations_carry_the_routing_of_their_severity() -> None:
    """A recommendation's routing is that of its Sev level, as on alerts, and the page shows it."""
    recs = tuple(
        recommendation(f"s_{sev.name.lower()}", sev, RecommendationState.ACTIVE, NOW - 60)
        for sev in Severity
    )
    signals = Signals(now=NOW, window=300.0)
    evaluated = Evaluation(at=NOW, signals=signals, components=(), recommendations=recs)
    doc = status_document(
        store=ResultStore(), evaluation=evaluated, location="eu-1", version="9.9", now=NOW
    )
    assert [("Sev-1", "page"), ("Sev-2", "page"), ("Sev-3", "ticket"), ("Sev-4", "ticket")] == [
        (r["severity"], r["routing"]) for r in doc["recommendations"]
    ]
    page = render_page(doc)
    assert ["page", "page", "ticket", "ticket"] == re.findall(
        r'<span class="routing">(\w+)</span>', page
    )


def test_page_has_stable_hooks() -> None:
    """Tests and scripts find state in stable ids and data attributes."""
    page = render_page(fixed_doc())
    assert '<span id="overall" data-state="DEGRADED">DEGRADED</span>' in page
    assert '<main id="app" data-rendered="server">' in page
    cards = [("API Read", "OK", "true"), ("Background Jobs", "DOWN", "true"),
             ("Console/Admin", "UNKNOWN", "false")]  # fmt: skip
    for name, state, monitored in cards:
        assert (
            f'<div class="component" data-name="{name}" data-state="{state}" '
            f'data-monitored="{monitored}">'
        ) in page
    assert (
        '<article class="recommendation" data-scenario="sse_degraded" data-severity="Sev-2" '
        'data-state="active">'
    ) in page
    assert '<tr class="probe" data-probe="health" data-ok="true">' in page
    assert '<tr class="probe" data-probe="import_trades" data-ok="false">' in page
    assert '<tr class="stream" data-stream="events" data-connected="true">' in page
    assert '<tr class="slo" data-slo="api_read">' in page
    assert '<td class="num bad">-12.5 %</td>' in page
    assert "<title>DEGRADED - probed status - eu-1</title>" in page


def test_page_loads_nothing_from_the_network() -> None:
    """No http(s) reference except runbook links; CSP allows only same-origin fetches."""
    page = render_page(fixed_doc())
    without_runbooks = re.sub(r'<p class="runbook">.*?</p>', "", page)
    assert "http://" not in without_runbooks
    assert "https://" not in without_runbooks
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!data:|#)[^"'\s>]*//""", without_runbooks)
    assert not re.search(r"@import|url\(", page)
    assert "connect-src &#x27;self&#x27;" in page


def test_page_csp_hashes_match_the_inline_style_and_script() -> None:
    """The CSP names the sha256 of the inline style and script, so both (and only they) run."""
    page = render_page(fixed_doc())
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = csp.group(1).replace("&#x27;", "'")
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        match = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        assert match is not None
        digest = base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy


def test_page_without_evaluation() -> None:
    """With no evaluation the page still shows probes and says components are pending."""
    doc = {**fixed_doc(), "overall": "UNKNOWN", "components": [], "recommendations": [],
           "slos": []}  # fmt: skip
    page = render_page(doc)
    app = re.search(r'<main id="app" data-rendered="server">(.*)</main>', page, re.S)
    assert app is not None
    assert '<span id="overall" data-state="UNKNOWN">UNKNOWN</span>' in app.group(1)
    assert 'class="component"' not in app.group(1)
    assert "No evaluation yet" in page
    assert "No active recommendations." in page
    assert '<tr class="probe" data-probe="health" data-ok="true">' in page


def test_page_sparkline_marks_failed_runs() -> None:
    """The latency sparkline has one point per recent run and a marker on each failed one."""
    page = render_page(fixed_doc())
    row = re.search(r'<tr class="probe" data-probe="health".*?</tr>', page)
    assert row is not None
    # 0.02 s is the peak (top, y=20); 0.0123 s sits at 280 - 20 - 0.0123 / 0.02 * 240 = 112.4
    assert '<polyline points="20,20 1580,112"></polyline>' in row.group(0)
    marker = '<circle class="fail" cx="20" cy="20" r="28"><title>timeout</title></circle>'
    assert marker in row.group(0)


def test_fragment_is_the_pages_title_and_app() -> None:
    """The refresh fragment is the page's own title and inside of ``main#app``, byte for byte,
    with no script and markup in free text escaped."""
    for doc in (fixed_doc(), hostile_doc()):
        page = render_page(doc)
        title = re.search(r"<title>.*?</title>", page)
        app = re.search(r'<main id="app" data-rendered="server">(.*)</main>', page, re.S)
        assert title is not None
        assert app is not None
        assert title.group(0) + app.group(1) == render_fragment(doc)
        assert "<script" not in render_fragment(doc)


def test_page_script_renders_no_markup() -> None:
    """The page's one script fetches the server's fragment; it writes no markup of its own,
    so there is a single renderer, in Python."""
    page = render_page(fixed_doc())
    [script] = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert 'fetch("status/fragment"' in script
    assert [] == re.findall(r"<[a-z]", script)
    assert len(script.splitlines()) < 50


STATUS_MODULES = (components, status, statusfields, statustext, pagesections, statuspage)


def test_all_is_honest() -> None:
    """Each status module's ``__all__`` names exactly the public functions and constants it
    defines."""
    for module in STATUS_MODULES:
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        defined: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
        public = {name for name in defined if not name.startswith("_")}
        assert (module.__name__, sorted(public)) == (module.__name__, sorted(module.__all__))


def test_a_window_without_enough_coverage_says_so() -> None:
    """A ratio withheld for too little data reads "insufficient data (12m of 30d)", not 0 %."""
    doc = {
        "overall": "OK",
        "slos": [
            {"name": "login_ok", "sli": "availability", "objective": 0.999, "window": 2592000.0,
             "ratio": {"1h": 0.9, "30d": None}, "burn_rate": {"1h": 100.0, "30d": None},
             "budget_remaining": 0.96, "events": {"1h": 72, "30d": 72},
             "coverage": {"1h": 720.0, "30d": 720.0}},
        ],
    }  # fmt: skip

    text = render_table(doc)

    assert "insufficient data (12m of 30d)" in text
    assert "insufficient data (12m of 30d)" in render_page(doc)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (RecommendationState.ACTIVE, ComponentState.DEGRADED),
        (RecommendationState.PENDING, ComponentState.OK),
        (RecommendationState.INCONCLUSIVE, ComponentState.OK),
    ],
)
def test_an_active_recommendation_about_a_member_degrades_its_component(
    state: RecommendationState, expected: ComponentState
) -> None:
    """A connected stream whose lag p95 raised an active Sev-2 is not OK on its card."""
    signals = Signals(now=NOW, window=300.0, probes={}, streams={"events": stream("events")})
    rec = recommendation("sse_degraded", Severity.SEV2, state, NOW - 60)
    components = [ComponentConfig(name="SSE Stream", probes=["events"]), ComponentConfig(
        name="Other", probes=["unrelated"])]  # fmt: skip
    sse, other = compute_components(components, signals, [rec])
    assert expected == sse.state
    assert (("events",) if expected is ComponentState.DEGRADED else ()) == sse.degraded_by
    assert ComponentState.UNKNOWN == other.state


# ---------------------------------------------------------------------------
# figures on the page: rounded, with units

FIGURES = [
    (duration, 0.00000042, "0.4 \u00b5s"),
    (duration, 0.0042512, "4.3 ms"),
    (duration, 0.41234, "412 ms"),
    (duration, 0.9996, "1 s"),
    (duration, 1.2999999, "1.3 s"),
    (duration, 12.000001, "12 s"),
    (duration, 59.97, "1 min"),
    (duration, 119.99, "2 min"),
    (duration, 5400.0000001, "1.5 h"),
    (duration, 259_200.5, "3 d"),
    (duration, 0, "0 s"),
    (duration, -0.25, "-250 ms"),
    (duration, None, "-"),
    (duration, True, "-"),
    (duration, float("nan"), "-"),
    (offset, 0.41234, "+412 ms"),
    (offset, -30.013, "-30 s"),
    (offset, -1e-12, "0 \u00b5s"),
    (percent, 0.9995, "99.95 %"),
    (percent, 0.99949999, "99.95 %"),
    (percent, 0.41234, "41.23 %"),
    (percent, 0.99999, "99.999 %"),
    (percent, 0.9999999, "100 %"),
    (percent, 1, "100 %"),
    (percent, -0.123456, "-12.35 %"),
    (percent, -0.00001, "0 %"),
    (percent, "0.5", "-"),
    (rate, 1.7512345, "1.75x"),
    (rate, 0.176, "0.18x"),
    (rate, 14.412345, "14.4x"),
    (rate, 1234.5, "1235x"),
    (amount, 250.00001, "250"),
    (amount, 0.41234, "0.41"),
]


@pytest.mark.parametrize(("show", "value", "expected"), FIGURES)
def test_figures_are_rounded_and_carry_their_unit(
    show: Callable[[object], str], value: object, expected: str
) -> None:
    """Durations pick their unit, ratios read as percent, rates end in x; rounding never
    leaves a raw float, and what is not a number is "-"."""
    assert expected == show(value)


@pytest.mark.parametrize(
    ("signal", "value", "expected"),
    [
        ("stream events lag_p95", 7.2000001, "7.2 s"),
        ("probe login p95_seconds", 0.41234, "412 ms"),
        ("stream events disconnected_for", 95.5, "1.6 min"),
        ("probe login failure_ratio", 0.41234, "41.23 %"),
        ("probes rate_limited_share", 0.5, "50 %"),
        ("target demo unreachable", 1.0, "100 %"),
        ("slo api_read burn_rate_1h", 14.412345, "14.4x"),
        ("queue_depth", 250.00001, "250"),
        (None, 0.41234, "0.41"),
    ],
)
def test_evidence_figures_take_the_unit_of_their_signal(
    signal: object, value: float, expected: str
) -> None:
    """An evidence value is shown in the unit its signal's name implies."""
    assert expected == evidence_value(signal, value)


def ugly_doc() -> dict[str, Any]:
    """The fixed document with floats as measurements produce them."""
    doc = copy.deepcopy(fixed_doc())
    health, imports = doc["probes"]
    health["last"]["duration_seconds"] = 0.41234
    health["recent"] = [{"t": NOW - 3, "d": 0.41234, "ok": True, "reason": None},
                        {"t": NOW - 2, "d": 12.000001, "ok": True, "reason": None}]  # fmt: skip
    imports["last"]["duration_seconds"] = 12.000001
    [events] = doc["streams"]
    events["mean_lag_seconds"] = 119.99
    events["lag"] = [{"t": NOW - 60, "lag": 0.0042512}]
    events["clock_offset_seconds"] = -0.41234
    events["clock"] = {"offset_seconds": -0.41234, "uncertainty_seconds": 0.0005123}
    [slo] = doc["slos"]
    slo.update(objective=0.9995, ratio={"1h": 0.41234, "30d": 0.99949999},
               burn_rate={"1h": 1.7512345}, budget_remaining=-0.123456)  # fmt: skip
    doc["recommendations"][0]["evidence"] = [
        {"signal": "stream events lag_p95", "value": 7.2000001, "threshold": 5.0,
         "since": NOW - 300, "detail": ""},
        {"signal": "probe login failure_ratio", "value": 0.41234, "threshold": 0.2,
         "since": NOW - 300, "detail": ""},
        {"signal": "slo api_read burn_rate_1h", "value": 14.412345, "threshold": 14.4,
         "since": NOW - 300, "detail": ""},
        {"signal": "queue_depth", "value": 250.00001, "threshold": 200, "since": NOW - 300,
         "detail": ""},
    ]  # fmt: skip
    return doc


def cells(page: str, row: str) -> list[str]:
    """The text of each cell of the first table row whose opening tag contains ``row``."""
    match = re.search(rf"<tr[^>]*{re.escape(row)}[^>]*>(.*?)</tr>", page)
    assert match is not None, row
    return [
        html.unescape(re.sub(r"<[^>]+>", "", cell))
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))
    ]


def test_page_rounds_every_figure_and_names_its_unit() -> None:
    """Ugly floats in the document come out rounded with their unit: latency, lag, offsets,
    ratios, burn rates, budgets and evidence; no number on the page has more than two
    decimals."""
    page = render_page(ugly_doc())
    app = page.split('<main id="app"', 1)[1].split("</main>", 1)[0]

    assert "412 ms" == cells(page, 'data-probe="health"')[6]
    assert "12 s" == cells(page, 'data-probe="import_trades"')[6]
    assert 'aria-label="latency of the last 2, max 12 s"' in app
    stream = cells(page, 'data-stream="events"')
    assert ["-412 ms", "2 min"] == stream[10:12]
    assert 'aria-label="worst delivery lag per slot of the last 1, max 4.3 ms"' in app
    assert ["api_read", "availability", "99.95 %", "30d", "41.23 %", "99.95 %", "1.75x",
            "-12.35 %"] == cells(page, 'data-slo="api_read"')  # fmt: skip
    evidence = re.findall(r'<table class="evidence">.*?</table>', app)[0]
    assert [
        ["stream events lag_p95", "7.2 s", "5 s"],
        ["probe login failure_ratio", "41.23 %", "20 %"],
        ["slo api_read burn_rate_1h", "14.4x", "14.4x"],
        ["queue_depth", "250", "200"],
    ] == [cells(row, "")[:3] for row in re.findall(r"<tr><td>.*?</tr>", evidence)]
    visible = html.unescape(re.sub(r"<[^>]+>", " ", app))
    labels = " ".join(re.findall(r'aria-label="([^"]*)"', app))
    assert [] == re.findall(r"\d\.\d{3,}", f"{visible} {labels}")


# ---------------------------------------------------------------------------
# components without probes


def test_a_component_without_probes_is_not_monitored_rather_than_unknown() -> None:
    """A component with no members stays UNKNOWN in the document but its card says "not
    monitored" (muted, no "last healthy"); one whose probes have no data yet shows UNKNOWN."""
    components = [
        ComponentConfig(name="API Read", probes=["health"]),
        ComponentConfig(name="API Write", probes=["login"]),  # registered, never ran
        ComponentConfig(name="Console/Admin", probes=[]),
    ]
    signals = Signals(now=NOW, window=300.0, probes={"health": probe("health")})
    judged = compute_components(components, signals)
    evaluated = Evaluation(at=NOW, signals=signals, components=judged, recommendations=())
    doc = status_document(
        store=populated_store(), evaluation=evaluated, location="eu-1", version="9.9", now=NOW
    )
    assert [("API Read", "OK"), ("API Write", "UNKNOWN"), ("Console/Admin", "UNKNOWN")] == [
        (c["name"], c["state"]) for c in doc["components"]
    ]
    assert "OK" == doc["overall"]

    page = render_page(doc)
    cards = re.findall(
        r'<div class="component" data-name="([^"]*)" data-state="(\w+)" '
        r'data-monitored="(\w+)"><h3>[^<]*</h3><p class="state">([^<]*)</p>(.*?)</div>',
        page,
    )
    assert [
        ("API Read", "OK", "true", "OK"),
        ("API Write", "UNKNOWN", "true", "UNKNOWN"),
        ("Console/Admin", "UNKNOWN", "false", "not monitored"),
    ] == [card[:4] for card in cards]
    assert ["last healthy", "last healthy", ""] == [
        "last healthy" if "last healthy" in card[4] else "" for card in cards
    ]
    assert "- Console/Admin: UNKNOWN" in render_markdown(doc).splitlines()


# ---------------------------------------------------------------------------
# the clock cell: an offset only beyond its uncertainty

SYNCED = {"uncertainty_seconds": 0.0005, "tolerance_seconds": 1.0, "skewed": False}


@pytest.mark.parametrize(
    ("offset_seconds", "clock", "expected"),
    [
        (-0.41234, SYNCED, "-412 ms"),
        (0.0012, SYNCED, "+1.2 ms"),
        (0.0003, SYNCED, "in sync"),
        (-0.0005, SYNCED, "in sync"),  # at its uncertainty: not told from zero
        (0.3, {"uncertainty_seconds": 0.52, "tolerance_seconds": 1.0}, "in sync"),
        (
            0.8,
            {"uncertainty_seconds": 1.5, "tolerance_seconds": 1.0, "skewed": True},
            "- skewed",
        ),
        (0.8, {"uncertainty_seconds": 0.9}, "-"),  # no tolerance: cannot say "in sync"
        (
            -30.013,
            {"uncertainty_seconds": 0.0004, "tolerance_seconds": 1.0, "skewed": True},
            "-30 s skewed",
        ),
        (0.3, {}, "-"),  # no uncertainty (an older daemon's document)
        (None, {"uncertainty_seconds": None}, "-"),  # no estimate yet
    ],
)
def test_clock_cell_shows_an_offset_only_beyond_its_uncertainty(
    offset_seconds: float | None, clock: dict[str, Any], expected: str
) -> None:
    """A stream's clock cell shows the offset when |offset| > uncertainty, "in sync" when it
    is within an uncertainty no wider than the tolerance, "-" otherwise."""
    doc = copy.deepcopy(fixed_doc())
    doc["streams"][0].update(clock_offset_seconds=offset_seconds, clock=clock)
    page = render_page(doc)
    assert expected == cells(page, 'data-stream="events"')[10]


def test_clock_cell_of_a_corrected_stream() -> None:
    """The populated store's stream (-0.25 s +- 0.5 ms, corrected) shows its offset."""
    doc = status_document(
        store=populated_store(), evaluation=evaluation(), location="eu-1", version="9.9", now=NOW
    )
    assert "-250 ms" == cells(render_page(doc), 'data-stream="events"')[10]


def test_a_shard_says_which_it_is_in_the_document_the_table_and_the_page() -> None:
    """``shard`` is always in the document; the table's first line and the page's header
    name it only when the location has more than one shard."""
    from probed.shard import Shard
    from probed.statuspage import render_page

    def doc(shard: Shard) -> dict[str, object]:
        return status_document(
            store=populated_store(), evaluation=evaluation(), location="eu-1", version="9.9",
            now=NOW, shard=shard,
        )  # fmt: skip

    sharded, alone = doc(Shard(1, 3)), doc(Shard())
    assert {"index": 1, "total": 3} == sharded["shard"]
    assert render_table(sharded).splitlines()[0].startswith("probed 9.9 at eu-1, shard 1/3: ")
    assert render_table(alone).splitlines()[0].startswith("probed 9.9 at eu-1: ")
    assert '<span id="shard">shard 1/3</span>' in render_page(sharded)
    assert 'id="shard"' not in render_page(alone)
    for odd in ({"index": "1", "total": 3}, {"index": 0}, "1/3", None):
        assert render_table({**alone, "shard": odd}).startswith("probed 9.9 at eu-1: ")


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(10**6), 10**6).map(lambda k: k / 1000 + 0.0005),
        st.integers(-(10**4), 10**4).map(lambda k: k / 8),
    ),
    st.integers(0, 6),
)
def test_fixed_rounds_the_exact_binary_value_half_away_from_zero(value: float, digits: int) -> None:
    """As decimal's ROUND_HALF_UP on the float's exact value (JavaScript's ``toFixed``)."""
    exact = Decimal(0.0 if value == 0 else value)
    expected = str(exact.quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP, Context(prec=400)))
    assert expected == fixed(value, digits)


def test_fixed_writes_a_dash_for_what_is_not_finite() -> None:
    """A finite ratio scaled to a percentage can overflow; the page shows ``-``, not a 500."""
    assert ["-", "-", "-"] == [fixed(v, 3) for v in (math.inf, -math.inf, math.nan)]
    assert "-" == fixed(1e307 * 100, 3)
