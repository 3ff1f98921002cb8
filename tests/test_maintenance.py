"""Maintenance windows: the pure registry and the ``[[maintenance]]`` config tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_persist import make_config, make_run, stored

from probed.config import load_config
from probed.errors import ConfigError
from probed.evaluate import Evaluator
from probed.maintenance import Maintenance, MaintenanceWindow
from probed.maintenanceapi import window_from_request
from probed.maintenanceconfig import MaintenanceConfig
from probed.persist import Persister, StateStore
from probed.slofeed import persisted_parts
from probed.status import status_document
from probed.statuspage import render_page
from probed.store import ResultStore

T0 = 1_800_000_000.0


def _window(**kw: object) -> MaintenanceWindow:
    fields: dict[str, object] = {
        "start": T0,
        "end": T0 + 600,
        "targets": frozenset(),
        "probes": frozenset(),
        "reason": "db upgrade",
    }
    fields.update(kw)
    return MaintenanceWindow(**fields)  # type: ignore[arg-type]


def test_a_target_window_covers_its_probes_only_while_open() -> None:
    """A window naming a target covers that target's probes from start up to (not at) end."""
    window = _window(targets=frozenset({"app"}))
    registry = Maintenance([window])
    assert window is registry.covers("health", "app", T0)
    assert window is registry.covers("health", "app", T0 + 599)
    assert None is registry.covers("health", "app", T0 + 600)
    assert None is registry.covers("health", "app", T0 - 1)
    assert None is registry.covers("health", "other", T0 + 1)


def test_a_probe_window_covers_that_probe_on_any_target() -> None:
    """A window naming a probe covers it whatever its target, and no other probe."""
    registry = Maintenance([_window(probes=frozenset({"login"}))])
    assert registry.covers("login", "app", T0 + 1) is not None
    assert None is registry.covers("health", "app", T0 + 1)


def test_the_covering_window_that_ends_last_wins() -> None:
    """Of two overlapping windows the one ending last is reported (it says 'until when')."""
    short = _window(probes=frozenset({"login"}))
    long = _window(targets=frozenset({"app"}), end=T0 + 3600)
    registry = Maintenance([short, long])
    assert long is registry.covers("login", "app", T0 + 1)


def test_active_and_upcoming_windows() -> None:
    """``active`` lists the open windows, ``upcoming`` those not started, ended ones neither."""
    past = _window(start=T0 - 100, end=T0 - 10)
    now = _window(end=T0 + 60)
    later = _window(start=T0 + 100, end=T0 + 200)
    registry = Maintenance([later, now, past])
    assert [now] == registry.active(T0 + 1)
    assert [later] == registry.upcoming(T0 + 1)


def test_ad_hoc_windows_survive_a_config_change_and_expire() -> None:
    """Replacing the configured windows keeps ad hoc ones; ended ad hoc windows are pruned."""
    registry = Maintenance([_window(probes=frozenset({"a"}))])
    adhoc = _window(probes=frozenset({"b"}), end=T0 + 30)
    registry.add(adhoc, now=T0)
    registry.configure([])
    assert None is registry.covers("a", "app", T0 + 1)
    assert adhoc is registry.covers("b", "app", T0 + 1)
    registry.add(_window(probes=frozenset({"c"})), now=T0 + 31)
    assert [] == [w for w in registry.ad_hoc if w is adhoc]


def test_a_window_as_json() -> None:
    """The status document form of a window carries Unix times, its names and its reason."""
    doc = _window(targets=frozenset({"app"}), probes=frozenset({"x"})).to_json()
    assert {
        "start": T0,
        "end": T0 + 600,
        "targets": ["app"],
        "probes": ["x"],
        "reason": "db upgrade",
    } == doc


CONFIG = """
[targets.app]
base_url = "http://127.0.0.1:1"

[[probes]]
name = "health"
kind = "http"
target = "app"
path = "/health"

[[components]]
name = "api"
probes = ["health"]
"""


def _load(tmp_path: Path, tables: str) -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(CONFIG + tables)
    return path


def test_a_configured_window_loads_into_the_registry(tmp_path: Path) -> None:
    """``[[maintenance]]`` start/end with an offset become Unix times; components name probes."""
    cfg = load_config(
        _load(
            tmp_path,
            '[[maintenance]]\nstart = "2027-01-15T09:00:00+01:00"\n'
            'end = "2027-01-15T10:00:00+01:00"\ncomponents = ["api"]\nreason = "upgrade"\n',
        ),
        environ={},
    )
    registry = Maintenance.from_config(cfg)
    start = datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    window = registry.covers("health", "app", start)
    assert window is not None
    assert (start, start + 3600, "upgrade") == (window.start, window.end, window.reason)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'start = "2027-01-15T10:00:00Z"\nend = "2027-01-15T09:00:00Z"\nprobes = ["health"]\n',
            "17: maintenance[0] key 'end': end 2027-01-15T09:00:00Z is not after start "
            "2027-01-15T10:00:00Z",
        ),
        (
            'start = "2027-01-15T10:00:00Z"\nend = "2027-01-15T11:00:00Z"\nprobes = ["nope"]\n',
            "18: maintenance[0] key 'probes': unknown probe(s) 'nope'",
        ),
        (
            'start = "2027-01-15T10:00:00Z"\nend = "2027-01-15T11:00:00Z"\ntargets = ["staging"]\n',
            "18: maintenance[0] key 'targets': unknown target(s) 'staging' (targets: app)",
        ),
        (
            'start = "2027-01-15T10:00:00Z"\nend = "2027-01-15T11:00:00Z"\ncomponents = ["web"]\n',
            "18: maintenance[0] key 'components': unknown component(s) 'web'",
        ),
        (
            'start = "2027-01-15T10:00:00Z"\nend = "2027-01-15T11:00:00Z"\n',
            "15: maintenance[0]: a window names no targets, probes or components",
        ),
        (
            'start = "2027-01-15T10:00:00"\nend = "2027-01-15T11:00:00Z"\nprobes = ["health"]\n',
            "16: maintenance[0] key 'start': Input should have timezone info",
        ),
    ],
)
def test_check_refuses_a_bad_window(tmp_path: Path, table: str, message: str) -> None:
    """Each bad window is reported with the file, line, window and key."""
    path = _load(tmp_path, "\n[[maintenance]]\n" + table)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert [f"{path}:{message}"] == info.value.problems


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _maintained_evaluator(start: float, end: float) -> tuple[Evaluator, ResultStore]:
    config = make_config().model_copy(
        update={
            "maintenance": [MaintenanceConfig(start=_at(start), end=_at(end), probes=["login"])]
        }
    )
    store = ResultStore(ring_size=20, signal_window=config.recommend.window)
    return Evaluator(config, store), store


def test_the_slos_count_no_run_under_maintenance() -> None:
    """``record_run`` leaves runs started within a window out of the SLOs, others in."""
    evaluator, _ = _maintained_evaluator(T0 - 100, T0 - 50)
    evaluator.record_run(make_run("login", T0 - 80, success=False))
    evaluator.record_run(make_run("login", T0 - 20, success=False))
    assert 1 == evaluator.slo.evaluate(T0)["login_ok"].events["30d"]


def test_the_replay_after_a_restart_skips_runs_under_maintenance() -> None:
    """Restoring the state file replays only the runs outside maintenance into the SLOs."""
    evaluator, store = _maintained_evaluator(T0 - 100, T0 - 50)
    state = StateStore.memory()
    state.append_results([stored("login", T0 - 80, success=False), stored("login", T0 - 20)])
    Persister(state, persisted_parts(evaluator), store).restore(now=T0)
    assert 1 == evaluator.slo.evaluate(T0)["login_ok"].events["30d"]


def test_signals_leave_out_probes_under_maintenance() -> None:
    """The recommendation rules' snapshot has no probe under an open window."""
    evaluator, store = _maintained_evaluator(T0 - 100, T0 + 100)
    for spec in evaluator.config.scheduled:
        store.register(spec.name, spec.kind, spec.target)
    assert ["canary"] == sorted(evaluator.signals(T0).probes)
    assert ["canary", "login"] == sorted(evaluator.signals(T0 + 100).probes)


def test_the_status_document_lists_windows_and_marks_covered_probes() -> None:
    """Active and upcoming windows are listed; a covered probe or stream has maintenance_until."""
    store = ResultStore(ring_size=5)
    store.register("health", "http", "app")
    store.register("login", "login", "other")
    store.register_stream("events", "app", 1)
    registry = Maintenance(
        [
            _window(start=T0 - 10, end=T0 + 50, targets=frozenset({"app"})),
            _window(start=T0 + 100, end=T0 + 200, probes=frozenset({"login"}), reason="later"),
            _window(start=T0 - 100, end=T0 - 50, probes=frozenset({"login"})),
        ]
    )
    doc = status_document(
        store=store, evaluation=None, location="x", version="1", now=T0, maintenance=registry
    )
    assert [
        {"start": T0 - 10, "end": T0 + 50, "targets": ["app"], "probes": [],
         "reason": "db upgrade", "active": True},
        {"start": T0 + 100, "end": T0 + 200, "targets": [], "probes": ["login"],
         "reason": "later", "active": False},
    ] == doc["maintenance"]  # fmt: skip
    assert {"health": T0 + 50, "login": None} == {
        p["probe"]: p.get("maintenance_until") for p in doc["probes"]
    }
    assert [T0 + 50] == [s.get("maintenance_until") for s in doc["streams"]]


def test_the_page_says_maintenance_until() -> None:
    """The server-rendered page names the window in the header and on the covered probe."""
    store = ResultStore(ring_size=5)
    store.register("health", "http", "app")
    registry = Maintenance([_window(targets=frozenset({"app"}), reason="db <upgrade>")])
    doc = status_document(
        store=store, evaluation=None, location="x", version="1", now=T0, maintenance=registry
    )
    page = render_page(doc)
    assert (
        '<p class="maintenance" data-active="true">maintenance until 2027-01-15T08:10:00Z: '
        "db &lt;upgrade&gt; (targets app)</p>"
    ) in page
    assert '<span class="maintenance">maintenance until 2027-01-15T08:10:00Z</span>' in page


KNOWN = {"probes": {"health", "login"}, "targets": {"app"}}


def _request(body: object) -> MaintenanceWindow:
    return window_from_request(body, T0, probes=KNOWN["probes"], targets=KNOWN["targets"])


def test_an_ad_hoc_request_with_a_duration() -> None:
    """A request for probes with a duration opens a window from now for that long."""
    window = _request({"probes": ["login"], "duration": "30m", "reason": "deploy"})
    assert MaintenanceWindow(T0, T0 + 1800, frozenset(), frozenset({"login"}), "deploy") == window


def test_an_ad_hoc_request_with_an_end() -> None:
    """A request for targets with an RFC 3339 end opens a window from now until then."""
    window = _request({"targets": ["app"], "end": "2027-01-15T09:10:00+01:00"})
    assert (T0, T0 + 600, frozenset({"app"})) == (window.start, window.end, window.targets)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body must be a JSON object"),
        ({"probes": ["login"]}, "give exactly one of 'duration' and 'end'"),
        ({"duration": "5m"}, "name at least one of 'targets' and 'probes'"),
        ({"probes": ["nope"], "duration": "5m"}, "unknown probe(s) 'nope'"),
        ({"targets": ["db"], "duration": "5m"}, "unknown target(s) 'db'"),
        ({"probes": ["login"], "duration": "soon"}, "invalid duration 'soon'"),
        ({"probes": ["login"], "end": "2027-01-15T08:00:00Z"}, "'end' must be in the future"),
        ({"probes": ["login"], "end": "2027-01-15T09:00:00"}, "'end' must be RFC 3339"),
        ({"probes": ["login"], "duration": "31d"}, "at most 30d"),
        ({"probes": "login", "duration": "5m"}, "'probes' must be a list of names"),
        ({"probes": ["login"], "duration": "5m", "reason": 3}, "'reason' must be a string"),
        ({"probes": ["login"], "duration": "5m", "who": "me"}, "unknown key(s) 'who'"),
    ],
)
def test_a_bad_ad_hoc_request_is_refused(body: object, message: str) -> None:
    """Each malformed request is refused with a message naming what is wrong."""
    with pytest.raises(ValueError, match=re.escape(message)):
        _request(body)


def test_ad_hoc_windows_round_trip_and_expired_ones_are_dropped() -> None:
    """``restore(snapshot())`` keeps the open and upcoming ad hoc windows, not the ended ones."""
    source = Maintenance()
    ended = MaintenanceWindow(0.0, 50.0, frozenset(), frozenset({"login"}), "old")
    open_ = MaintenanceWindow(90.0, 200.0, frozenset({"app"}), frozenset(), "deploy")
    source.ad_hoc = [ended, open_]
    revision = source.revision
    source.add(MaintenanceWindow(300.0, 400.0, frozenset(), frozenset({"feed"}), "later"), 0.0)
    assert revision + 1 == source.revision
    restored = Maintenance()
    assert [] == restored.restore(source.snapshot(), now=100.0)
    assert ["deploy", "later"] == [w.reason for w in restored.ad_hoc]
    assert open_ == restored.ad_hoc[0]


@pytest.mark.parametrize(
    "data",
    [None, [], {"version": 2}, {"version": 1, "ad_hoc": [{"start": "x"}]}],
)
def test_an_unreadable_maintenance_snapshot_is_a_problem_not_a_crash(data: object) -> None:
    """Bad saved data names what was not restored; no window comes from it."""
    windows = Maintenance()
    problems = windows.restore(data, now=0.0)
    assert 1 == len(problems)
    assert problems[0].startswith("maintenance: ")
    assert [] == windows.ad_hoc
