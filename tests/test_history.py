"""The transition history: the pure ring, the evaluator's entries, persistence, the document."""

from __future__ import annotations

import math
from typing import Any

from probed.config import ComponentConfig, Config, HttpProbe, RecommendConfig, TargetConfig
from probed.evaluate import Evaluator
from probed.history import History
from probed.recommend import Transition
from probed.results import ProbeResult, ProbeRun, Reason
from probed.signals import (
    ComponentState,
    ComponentStatus,
    Recommendation,
    RecommendationState,
    Severity,
)
from probed.status import status_document
from probed.statustext import render_table
from probed.store import ResultStore

T0 = 1_770_508_800.0


def component(name: str, state: ComponentState, failing: tuple[str, ...] = ()) -> ComponentStatus:
    """A component status of ``name`` in ``state``."""
    return ComponentStatus(name, state, ("login",), failing, None)


def transition(
    scenario: str, old: RecommendationState | None, new: RecommendationState
) -> Transition:
    """An engine transition of ``scenario`` (Sev-1)."""
    rec = Recommendation(scenario, "Title", Severity.SEV1, new, T0, (), (), "", "", "")
    return Transition(scenario, old, new, rec)


def entry(at: float, kind: str, name: str, old: Any, new: Any, detail: str) -> dict[str, Any]:
    """An entry as the API lists it."""
    return {"at": at, "kind": kind, "name": name, "old": old, "new": new, "detail": detail}


def test_the_ring_keeps_the_newest_and_lists_them_newest_first() -> None:
    """A ring of 3 fed 5 reloads keeps the last 3, newest first, and ``latest`` limits."""
    history = History(size=3)
    for k in range(5):
        history.reload_ok(T0 + k, added=k, changed=0, removed=0)

    assert [T0 + 4, T0 + 3, T0 + 2] == [e["at"] for e in history.latest()]
    assert [T0 + 4] == [e["at"] for e in history.latest(1)]
    newest = entry(T0 + 4, "reload", "config", None, "ok", "added 4, changed 0, removed 0")
    assert newest == history.latest(1)[0]


def test_a_failed_reload_records_its_first_problem() -> None:
    """A failed reload's detail is its first problem and how many more there are."""
    history = History()
    history.reload_failed(T0, ["a.toml: bad", "second", "third"])
    history.reload_failed(T0 + 1, [])

    assert [
        entry(T0 + 1, "reload", "config", None, "failed", ""),
        entry(T0, "reload", "config", None, "failed", "a.toml: bad (and 2 more)"),
    ] == history.latest()


def test_recommendation_transitions_carry_the_severity() -> None:
    """Each engine transition becomes one entry: scenario, old → new state, severity."""
    history = History()
    history.recommendations(
        T0,
        [
            transition("login_failing", None, RecommendationState.PENDING),
            transition("x", RecommendationState.ACTIVE, RecommendationState.RESOLVED),
        ],
    )

    assert [
        entry(T0, "recommendation", "x", "active", "resolved", "Sev-1"),
        entry(T0, "recommendation", "login_failing", None, "pending", "Sev-1"),
    ] == history.latest()


def test_components_are_compared_with_the_previous_evaluation() -> None:
    """The first states are only remembered; later changes are entries, unchanged ones not."""
    history = History()
    history.components(T0, [component("API", ComponentState.OK)])
    history.components(T0 + 1, [component("API", ComponentState.OK)])
    history.components(T0 + 2, [component("API", ComponentState.DOWN, ("login",))])
    history.components(T0 + 3, [component("API", ComponentState.OK)])

    assert [
        entry(T0 + 3, "component", "API", "DOWN", "OK", ""),
        entry(T0 + 2, "component", "API", "OK", "DOWN", "failing: login"),
    ] == history.latest()


def test_the_snapshot_round_trips() -> None:
    """A restored history lists the same entries and remembers the component states."""
    history = History()
    history.components(T0, [component("API", ComponentState.OK)])
    history.reload_ok(T0 + 1, added=1, changed=2, removed=3)
    restored = History()

    assert [] == restored.restore(history.snapshot())
    assert history.latest() == restored.latest()
    restored.components(T0 + 2, [component("API", ComponentState.DOWN)])
    assert "OK" == restored.latest(1)[0]["old"]


def test_bad_snapshots_are_reported_not_raised() -> None:
    """Garbage in a snapshot is reported; good entries beside bad ones are kept."""
    good = entry(T0, "reload", "config", None, "ok", "")
    bad_entries: list[Any] = [
        "x",
        {**good, "kind": "other"},
        {**good, "at": math.nan},
        {**good, "at": True},
        {**good, "name": 3},
        {**good, "detail": None},
    ]
    history = History()

    assert 1 == len(history.restore("not a mapping"))  # type: ignore[arg-type]
    assert 1 == len(history.restore({"version": 99}))
    assert 1 == len(history.restore({"version": 1, "entries": "x"}))
    problems = history.restore({"version": 1, "entries": [*bad_entries, good]})
    assert len(bad_entries) == len(problems)
    assert [good] == history.latest()
    assert 1 == len(history.restore({"version": 1, "entries": [], "components": {"A": 1}}))


def test_the_evaluator_records_recommendation_and_component_transitions() -> None:
    """Twenty failing runs of login take its scenario PENDING→ACTIVE→RESOLVED and its
    component OK→DOWN→…→OK, each entry stamped with its evaluation's time."""
    config = Config(
        targets={"app": TargetConfig(base_url="http://127.0.0.1:9")},
        probes=[HttpProbe(name="login", target="app", interval="10s", timeout="5s")],
        components=[ComponentConfig(name="API", probes=["login"])],
        recommend=RecommendConfig(enter_for="1m", exit_for="2m"),
    )
    store = ResultStore(ring_size=20, signal_window=config.recommend.window)
    store.register("login", "http", "app")
    evaluator = Evaluator(config, store)
    for step in range(80):
        at = T0 + 10.0 * step
        ok = not 10 <= step < 30
        result = ProbeResult.ok(status_code=200) if ok else ProbeResult.fail(Reason.STATUS)
        run = ProbeRun("login", "http", "app", "r", "t", at, 0.1, result)
        store.record(run)
        evaluator.record_run(run)
        evaluator.evaluate(at + 1.0)

    entries = list(reversed(evaluator.history.latest()))
    recs = [(e["old"], e["new"]) for e in entries if e["kind"] == "recommendation"]
    states = [(e["old"], e["new"]) for e in entries if e["kind"] == "component"]
    assert [(None, "pending"), ("pending", "active"), ("active", "resolved")] == recs
    assert {"health_failing"} == {e["name"] for e in entries if e["kind"] == "recommendation"}
    assert ("OK", "DOWN") == states[0]
    assert "OK" == states[-1][1]
    assert T0 + 101.0 == entries[0]["at"]
    assert "failing: login" == entries[0]["detail"]


def test_the_status_document_lists_the_newest_fifty() -> None:
    """``/api/v1/status`` lists at most 50 entries of the history, newest first."""
    history = History()
    for k in range(60):
        history.reload_ok(T0 + k, added=0, changed=0, removed=0)
    store = ResultStore(ring_size=5, signal_window=300.0)
    common: dict[str, Any] = {
        "store": store,
        "evaluation": None,
        "location": "here",
        "version": "0",
        "now": T0,
    }

    doc = status_document(**common, history=history)

    assert 50 == len(doc["history"])
    assert [T0 + 59, T0 + 58] == [e["at"] for e in doc["history"][:2]]
    assert [] == status_document(**common)["history"]


def test_probed_status_prints_the_newest_ten() -> None:
    """``render_table`` ends with the newest ten entries, control characters replaced."""
    history = [
        entry(T0 - k, "component", f"c{k}\x1b[31m", "OK", "DOWN", "failing: login")
        for k in range(12)
    ]

    lines = render_table({"history": history}).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HISTORY"))
    assert 11 == len(lines) - start
    assert ["2026-02-08T00:00:00Z", "component", "c0?[31m", "OK", "→", "DOWN"] == (
        lines[start + 1].split()[:6]
    )
    assert "HISTORY\n  none" in render_table({})
