"""Pure SLO evaluation: ratios, burn rates, budgets, windows, reload and persistence."""

from __future__ import annotations

import json
import math
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probed.slo as slo_module
from probed.config import SLO_WINDOWS, SloConfig
from probed.signals import SloStatus
from probed.slo import SloEvaluator, _allowance

B = 60.0
T0 = 1_800_000_000.0
"""A bucket boundary (a multiple of 60 s)."""
HEAD = int(T0 // B)
"""The bucket index of ``T0`` and ``NOW``."""
NOW = T0 + 30.0
"""Half way through bucket ``T0``: the current partial bucket holds 30 s."""
DAY = 86400.0
WINDOW_LABELS = list(SLO_WINDOWS)


def avail(name: str = "login_ok", objective: float = 0.999, **fields: Any) -> SloConfig:
    """An availability SLO on probe ``login`` unless told otherwise."""
    fields.setdefault("probes", ["login"])
    return SloConfig(name=name, sli="availability", objective=objective, **fields)


def latency(name: str = "login_fast", threshold: str = "250ms", **fields: Any) -> SloConfig:
    """A latency SLO on probe ``login`` unless told otherwise."""
    fields.setdefault("probes", ["login"])
    fields.setdefault("objective", 0.99)
    return SloConfig(name=name, sli="latency", threshold=threshold, **fields)


def lag_slo(name: str = "events_lag", threshold: str = "5s") -> SloConfig:
    """A delivery_lag SLO on stream ``events``."""
    return SloConfig(
        name=name, sli="delivery_lag", objective=0.99, stream="events", threshold=threshold
    )


def runs(ev: SloEvaluator, good: int, bad: int, at: float = NOW, probe: str = "login") -> None:
    """Record ``good`` successful and ``bad`` failed runs of ``probe`` at ``at``."""
    for _ in range(good):
        ev.record_run(probe, True, 0.1, at)
    for _ in range(bad):
        ev.record_run(probe, False, 0.1, at)


def buckets(ev: SloEvaluator, name: str = "login_ok") -> list[list[int]]:
    """The non-empty buckets of SLO ``name`` in a snapshot, as ``[index, good, total]``."""
    entry = ev.snapshot()["slos"][name]
    return [
        [entry["first"] + k, good, total]
        for k, (good, total) in enumerate(zip(entry["good"], entry["total"], strict=True))
        if total
    ]


def expected_sums(ev: SloEvaluator, name: str, now: float) -> dict[str, int]:
    """Total events per window label, summed from scratch over the snapshot's buckets."""
    hi = math.floor(now / B)
    kept = buckets(ev, name)
    sums = {}
    for label, seconds in SLO_WINDOWS.items():
        lo = math.floor((now - seconds) / B) + 1
        sums[label] = sum(t for i, _, t in kept if lo <= i <= hi)
    return sums


@pytest.mark.parametrize(
    ("objective", "good", "bad", "ratio", "burn", "budget"),
    [
        (0.999, 995, 5, 0.995, 5.0, -4.0),
        (0.999, 999, 1, 0.999, 1.0, 0.0),
        (0.999, 1000, 0, 1.0, 0.0, 1.0),
        (0.99, 990, 10, 0.99, 1.0, 0.0),
        (0.995, 0, 10, 0.0, 200.0, -199.0),
        (0.9, 95, 5, 0.95, 0.5, 0.5),
    ],
)
def test_known_series(
    objective: float, good: int, bad: int, ratio: float, burn: float, budget: float
) -> None:
    """Good and bad runs over a covered window give exact ratios, burn rates and budget left.

    The runs lie in the current bucket (30 s of data), so only the 5m window is covered for a
    ratio; the budget is that of a window holding exactly these runs.
    """
    ev = SloEvaluator([avail(objective=objective)], rates={"login": (good + bad) / (30 * DAY)})
    runs(ev, good, bad, at=T0)

    status = ev.evaluate(NOW)["login_ok"]

    assert {label: good + bad for label in WINDOW_LABELS} == status.events
    assert (ratio, burn) == (status.ratio["5m"], status.burn_rate["5m"])
    assert {None} == {status.ratio[label] for label in WINDOW_LABELS if label != "5m"}
    assert budget == pytest.approx(status.budget_remaining)


PER_BUCKET = 6
"""Runs of a 10 s probe in one 60 s bucket."""


def scheduled(
    minutes: int, bad_buckets: dict[int, int] | None = None, gap: range = range(0)
) -> dict[str, Any]:
    """A 10 s probe's buckets over the last ``minutes``, as a state to restore.

    ``bad_buckets`` maps a minute to its bad runs; minutes in ``gap`` hold nothing
    (probed was down).
    """
    bad_buckets = bad_buckets or {}
    good, total = [], []
    for minute in range(minutes):
        n = 0 if minute in gap else PER_BUCKET
        good.append(n - bad_buckets.get(minute, 0))
        total.append(n)
    return _state(first=HEAD - minutes + 1, good=good, total=total)


@pytest.mark.parametrize(
    ("case", "minutes", "bad", "gap", "remaining", "allowed"),
    [
        # 12 minutes of a 10 s probe, one 100 s outage (10 bad runs), 99.9 % over 30 d:
        # the whole window holds 259,200 runs, the budget 259.2 bad ones
        ("young daemon", 12, {3: 6, 4: 4}, range(0), 1 - 10 / 259.2, 259.2),
        ("young, no failure", 12, {}, range(0), 1.0, 259.2),
        ("a full window, 259 bad", 43_200, {m: 1 for m in range(259)}, range(0), 1 - 259 / 259.2,
         259.2),
        ("overspent twice over", 43_200, {m: 6 for m in range(86)} | {86: 2}, range(0),
         1 - 518 / 259.2, 259.2),
        # probed down for 10 of the 30 days: no data, neither good nor bad
        ("probed down 10 days", 43_200, {m: 1 for m in range(100)}, range(10_000, 24_400),
         1 - 100 / 259.2, 259.2),
    ],
)  # fmt: skip
def test_budget_is_a_share_of_the_whole_windows_runs(
    case: str, minutes: int, bad: dict[int, int], gap: range, remaining: float, allowed: float
) -> None:
    """Budget left = 1 - bad / ((1 - objective) x the runs the schedule makes in the window)."""
    ev = SloEvaluator([avail()], rates={"login": 0.1})
    assert [] == ev.restore(scheduled(minutes, bad, gap), NOW)

    status = ev.evaluate(NOW)["login_ok"]

    assert remaining == pytest.approx(status.budget_remaining), case
    assert allowed == pytest.approx(status.budget_allowed), case


def test_a_young_window_has_coverage_but_no_ratio() -> None:
    """After 12 minutes the 30d window reports 12 min of coverage and no ratio, 5m and 1h do."""
    ev = SloEvaluator([avail()], rates={"login": 0.1})
    assert [] == ev.restore(scheduled(12, {3: 6, 4: 4}), NOW)

    status = ev.evaluate(NOW)["login_ok"]

    assert 11 * 60 + 30 == status.coverage["30d"]
    assert (None, None) == (status.ratio["30d"], status.burn_rate["30d"])
    assert 1.0 == status.ratio["5m"]
    assert 62 / 72 == pytest.approx(status.ratio["1h"])


def test_a_streams_budget_extrapolates_what_it_has_seen() -> None:
    """Without a schedule, the window's events are the seen ones scaled to the whole window."""
    ev = SloEvaluator([lag_slo()])
    for second in range(720):  # 12 minutes at 10 events/s, 72 of them late
        for k in range(10):
            ev.record_lag("events", 9.0 if second % 10 == 0 and k == 0 else 0.1, NOW - second)

    status = ev.evaluate(NOW)["events_lag"]

    covered = status.coverage["30d"]
    assert 7_200 * 30 * DAY / covered * 0.01 == pytest.approx(status.budget_allowed)
    assert status.budget_allowed is not None
    assert 1 - 72 / status.budget_allowed == pytest.approx(status.budget_remaining)


def test_no_events_gives_none() -> None:
    """Without events every ratio, burn rate and the budget are None and counts are zero."""
    status = SloEvaluator([avail()]).evaluate(NOW)["login_ok"]

    assert (
        SloStatus(
            name="login_ok",
            sli="availability",
            objective=0.999,
            window=30 * DAY,
            ratio=dict.fromkeys(WINDOW_LABELS),
            burn_rate=dict.fromkeys(WINDOW_LABELS),
            budget_remaining=None,
            events=dict.fromkeys(WINDOW_LABELS, 0),
            coverage=dict.fromkeys(WINDOW_LABELS, 0.0),
        )
        == status
    )


@pytest.mark.parametrize(
    ("window", "labels"),
    [
        ("30d", WINDOW_LABELS),
        ("7d", ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "7d", "30d"]),
        ("28d", ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d", "30d"]),
        ("90d", [*WINDOW_LABELS, "90d"]),
        ("1h", WINDOW_LABELS),
    ],
)
def test_window_labels(window: str, labels: list[str]) -> None:
    """The SLO's budget window joins ``SLO_WINDOWS`` in order of length, never twice."""
    status = SloEvaluator([avail(window=window)]).evaluate(NOW)["login_ok"]

    assert labels == list(status.events)


@pytest.mark.parametrize(
    ("age", "shortest"),
    [
        (0.0, "5m"),
        (30.0, "5m"),  # start of the current bucket
        (269.0, "5m"),  # its bucket started 270 s ago
        (271.0, "30m"),  # its bucket started 330 s ago: out of 5m
        (3569.0, "1h"),
        (3571.0, "2h"),
        (DAY - 31.0, "1d"),
        (DAY - 29.0, "3d"),
        (30 * DAY - 31.0, "30d"),
        (30 * DAY - 29.0, None),  # its bucket started more than 30 days ago
        (40 * DAY, None),
    ],
)
def test_window_includes_by_bucket_start(age: float, shortest: str | None) -> None:
    """An event counts in a window when its bucket starts within (now - window, now]."""
    ev = SloEvaluator([avail()])
    runs(ev, 1, 0, at=NOW - age)
    cut = math.inf if shortest is None else SLO_WINDOWS[shortest]

    status = ev.evaluate(NOW)["login_ok"]

    assert {label: int(SLO_WINDOWS[label] >= cut) for label in WINDOW_LABELS} == status.events


def test_windows_slide_with_now() -> None:
    """An event leaves each window as now moves past the window's length from its bucket."""
    ev = SloEvaluator([avail()])
    runs(ev, 1, 0, at=T0)
    expected = [
        (T0, {"5m": 1, "1h": 1, "30d": 1}),
        (T0 + 299.0, {"5m": 1, "1h": 1, "30d": 1}),
        (T0 + 300.0, {"5m": 0, "1h": 1, "30d": 1}),
        (T0 + 3600.0, {"5m": 0, "1h": 0, "30d": 1}),
        (T0 + 30 * DAY - 1, {"5m": 0, "1h": 0, "30d": 1}),
        (T0 + 30 * DAY, {"5m": 0, "1h": 0, "30d": 0}),
    ]

    for now, events in expected:
        status = ev.evaluate(now)["login_ok"]
        assert events == {label: status.events[label] for label in events}, now


@pytest.mark.parametrize(
    ("success", "duration", "good"),
    [
        (True, 0.25, True),  # exactly the threshold is good (Prometheus le=0.25)
        (True, 0.2500001, False),
        (True, 0.0, True),
        (False, 0.1, True),  # latency counts every run, failed ones included
        (False, 3.0, False),
        (True, math.nan, False),
    ],
)
def test_latency_threshold(success: bool, duration: float, good: bool) -> None:
    """A run is good for a latency SLO when its duration is at most the threshold."""
    ev = SloEvaluator([latency()])
    ev.record_run("login", success, duration, NOW)

    status = ev.evaluate(NOW)["login_fast"]

    assert (1, float(good)) == (status.events["5m"], status.ratio["5m"])


@pytest.mark.parametrize(
    ("lag", "events", "ratio"),
    [
        (0.0, 1, 1.0),
        (5.0, 1, 1.0),  # exactly the threshold is good
        (5.001, 1, 0.0),
        (math.inf, 1, 0.0),
        (-0.5, 0, None),  # clock skew: counted elsewhere, not here
        (math.nan, 0, None),
    ],
)
def test_delivery_lag(lag: float, events: int, ratio: float | None) -> None:
    """An event is good for a delivery_lag SLO when its lag is at most the threshold."""
    ev = SloEvaluator([lag_slo()])
    ev.record_lag("events", lag, NOW)
    ev.record_lag("other_stream", 99.0, NOW)

    status = ev.evaluate(NOW)["events_lag"]

    assert (events, ratio) == (status.events["5m"], status.ratio["5m"])


def test_multi_probe_slo_aggregates() -> None:
    """An SLO over several probes counts all their runs; each SLO listing a probe gets it."""
    ev = SloEvaluator(
        [
            avail("journey", probes=["login", "health", "login"]),
            avail("login_only", probes=["login"]),
            latency("journey_fast", probes=["health", "login"], threshold="1s"),
        ]
    )
    early = NOW - 3000  # 50 minutes of data: the 1h window is covered
    ev.record_run("login", True, 0.5, early)
    ev.record_run("login", True, 2.0, NOW)
    ev.record_run("health", False, 0.1, NOW)
    ev.record_run("health", True, 0.1, NOW)
    ev.record_run("unrelated", False, 9.0, NOW)

    got = ev.evaluate(NOW)

    assert (4, 0.75) == (got["journey"].events["1h"], got["journey"].ratio["1h"])
    assert (2, 1.0) == (got["login_only"].events["1h"], got["login_only"].ratio["1h"])
    assert (4, 0.75) == (got["journey_fast"].events["1h"], got["journey_fast"].ratio["1h"])


def test_sre_workbook_fast_burn() -> None:
    """At 99.9 %, burning 14.4x the budget for one hour spends 2 % of a 30-day budget."""
    per_bucket = 125  # so the burning hour holds a whole number of bad runs: 108 of 7,500
    quiet = [per_bucket] * (43_200 - 60)  # 29 days 23 hours of good runs, then the hour
    ev = SloEvaluator([avail()])
    problems = ev.restore(_state(first=HEAD - 43_199, good=quiet, total=quiet), NOW)
    for n, index in enumerate(range(HEAD - 59, HEAD + 1)):
        bad = 2 if n < 48 else 1  # 48 * 2 + 12 * 1 = 108
        for j in range(per_bucket):
            ev.record_run("login", j >= bad, 0.1, index * B + j * 0.2)

    status = ev.evaluate(NOW)["login_ok"]

    assert [] == problems
    assert (7_500, 5_400_000) == (status.events["1h"], status.events["30d"])
    assert 14.4 == pytest.approx(status.burn_rate["1h"])
    assert 0.98 == pytest.approx(status.budget_remaining)
    assert 0.02 == pytest.approx(status.burn_rate["30d"])


def test_late_observations_land_in_their_bucket() -> None:
    """A late run lands in its own bucket within the longest window and is dropped beyond it."""
    ev = SloEvaluator([avail()])
    runs(ev, 1, 0, at=NOW)
    ev.evaluate(NOW)
    runs(ev, 0, 1, at=NOW - 10 * DAY)
    runs(ev, 0, 1, at=NOW - 31 * DAY)

    status = ev.evaluate(NOW)["login_ok"]

    assert (1, 2) == (status.events["3d"], status.events["30d"])
    assert 2 == len(buckets(ev))


def test_future_observations_are_clamped() -> None:
    """A run more than one bucket after now counts in now's bucket; within one, in its own."""
    ev = SloEvaluator([avail()])
    ev.evaluate(NOW)
    runs(ev, 1, 0, at=NOW + 365 * DAY)  # a stepped clock must not push everything out
    runs(ev, 1, 0, at=NOW + 30.0)  # the next bucket: not yet in any window at NOW

    assert 1 == ev.evaluate(NOW)["login_ok"].events["5m"]
    assert 2 == ev.evaluate(NOW + B)["login_ok"].events["5m"]
    assert [[HEAD, 1, 1], [HEAD + 1, 1, 1]] == buckets(ev)


def test_non_finite_inputs() -> None:
    """A non-finite ``at`` is dropped; a non-finite ``now`` is a caller bug and raises."""
    ev = SloEvaluator([avail(), lag_slo()])
    ev.record_run("login", True, 0.1, math.nan)
    ev.record_lag("events", 1.0, math.inf)

    assert {"login_ok": 0, "events_lag": 0} == {
        name: s.events["30d"] for name, s in ev.evaluate(NOW).items()
    }
    with pytest.raises(ValueError, match="finite"):
        ev.evaluate(math.nan)


def test_memory_is_bounded_by_the_longest_window() -> None:
    """Forty days of one run per bucket, evaluated as they come, keep one window of buckets."""
    ev = SloEvaluator([avail()])
    start = NOW - 40 * DAY
    for n in range(int(40 * DAY / B)):
        at = start + n * B
        ev.record_run("login", True, 0.1, at)
        ev.evaluate(at)

    kept = buckets(ev)

    assert len(kept) <= 30 * DAY / B + 1
    assert 43_200 == ev.evaluate(start + 40 * DAY - B)["login_ok"].events["30d"]


def test_constructor_rejects_bad_arguments() -> None:
    """Bucket sizes outside (0, shortest window] and duplicate SLO names are rejected."""
    for bucket_seconds in (0.0, -1.0, math.nan, 301.0):
        with pytest.raises(ValueError, match="bucket_seconds"):
            SloEvaluator([], bucket_seconds=bucket_seconds)
    with pytest.raises(ValueError, match="duplicate SLO name"):
        SloEvaluator([avail(), avail()])


@pytest.mark.parametrize(
    ("new", "kept"),
    [
        (avail(), True),
        (avail(objective=0.99), True),  # the buckets count events: re-evaluated, not reset
        (avail(window="7d"), True),
        (avail(description="new words", runbook_url="https://x.test"), True),
        (avail(probes=["login", "health"]), False),
        (avail(probes=["health"]), False),
        (latency(name="login_ok"), False),
    ],
)
def test_apply_keeps_unchanged_and_resets_changed(new: SloConfig, kept: bool) -> None:
    """Reload keeps an SLO's buckets when what it measures is unchanged, else starts empty."""
    ev = SloEvaluator([avail()])
    runs(ev, 9, 1)
    ev.evaluate(NOW)

    ev.apply([new])
    status = ev.evaluate(NOW)["login_ok"]

    assert (10 if kept else 0) == status.events["1d"]
    assert new.objective == status.objective


def test_apply_adds_and_removes() -> None:
    """Reload drops removed SLOs, starts new ones empty and routes runs to the new set."""
    ev = SloEvaluator([avail("old_one"), avail("stays")])
    runs(ev, 3, 0)

    ev.apply([avail("stays"), avail("fresh", probes=["health"])])
    runs(ev, 1, 0, probe="health")
    got = ev.evaluate(NOW)

    assert {"stays": 3, "fresh": 1} == {name: s.events["1h"] for name, s in got.items()}


def test_snapshot_restore_round_trip() -> None:
    """A snapshot survives JSON and restores into an evaluator that reports the same."""
    slos = [avail(), latency(), lag_slo()]
    ev = SloEvaluator(slos)
    for n in range(500):
        at = NOW - n * 397.0
        ev.record_run("login", n % 7 != 0, 0.05 * (n % 9), at)
        ev.record_lag("events", 0.5 * (n % 13), at)
    before = ev.evaluate(NOW)

    again = SloEvaluator(slos)
    problems = again.restore(json.loads(json.dumps(ev.snapshot())), NOW)

    assert [] == problems
    assert ev.snapshot() == again.snapshot()
    assert before == again.evaluate(NOW)


@pytest.mark.parametrize(
    ("restore_at", "events_30d"),
    [(NOW, 2), (NOW + 20 * DAY, 1), (NOW + 31 * DAY, 0)],
)
def test_restore_drops_buckets_older_than_the_window(restore_at: float, events_30d: int) -> None:
    """Restoring later keeps only the buckets still inside the longest window."""
    ev = SloEvaluator([avail()])
    runs(ev, 1, 0, at=NOW - 15 * DAY)
    runs(ev, 1, 0, at=NOW)
    data = ev.snapshot()

    again = SloEvaluator([avail()])
    problems = again.restore(data, restore_at)

    assert [] == problems
    assert events_30d == again.evaluate(restore_at)["login_ok"].events["30d"]
    assert events_30d == len(buckets(again))


def _state(**slo_entry: Any) -> dict[str, Any]:
    """A version-1 state whose ``login_ok`` entry is ``slo_entry`` over the valid definition."""
    definition = SloEvaluator([avail()]).snapshot()["slos"]["login_ok"]["definition"]
    return {
        "version": 1,
        "bucket_seconds": B,
        "slos": {"login_ok": {"definition": definition, **slo_entry}},
    }


def _two(good: Any, total: Any) -> dict[str, Any]:
    """A state of a valid bucket (3 good of 4) at HEAD - 1, then ``good``/``total`` at HEAD."""
    return _state(first=HEAD - 1, good=[3, good], total=[4, total])


@pytest.mark.parametrize(
    ("data", "problem", "events"),
    [
        (None, "expected an object, got NoneType", 0),
        ([1, 2], "expected an object, got list", 0),
        ("garbage", "expected an object, got str", 0),
        ({}, "unsupported version None", 0),
        ({"version": "1"}, "unsupported version '1'", 0),
        ({"version": 1, "bucket_seconds": 30.0, "slos": {}}, "bucket_seconds 30.0 differs", 0),
        ({"version": 1, "bucket_seconds": True, "slos": {}}, "bucket_seconds True differs", 0),
        ({"version": 1, "bucket_seconds": B, "slos": []}, "'slos' must be an object", 0),
        ({**_state(), "slos": {"login_ok": 7}}, "slo 'login_ok': expected an object", 0),
        ({**_state(), "slos": {"gone": {}}}, "slo 'gone' is not configured", 0),
        (_state(definition={"sli": "latency"}), "changed since the state was saved", 0),
        (_state(), "expected an integer 'first'", 0),
        (_state(first="1", good=[1], total=[1]), "expected an integer 'first'", 0),
        (_state(first=True, good=[1], total=[1]), "expected an integer 'first'", 0),
        (_state(first=HEAD, good=[1], total=[1, 2]), "of equal length", 0),
        (_state(first=HEAD, good={"a": 1}, total=[1]), "of equal length", 0),
        (_two("x", 1), "skipped 1 malformed bucket", 4),
        (_two(2, 1), "skipped 1 malformed bucket", 4),
        (_two(-1, 1), "skipped 1 malformed bucket", 4),
        (_two(True, 1), "skipped 1 malformed bucket", 4),
        (_two(1.0, 1), "skipped 1 malformed bucket", 4),
        (_two(None, None), "skipped 1 malformed bucket", 4),
        (_two(1, 2**40), "skipped 1 malformed bucket", 4),
        (_state(first=HEAD - 1, good=[3, 0, 0, 1], total=[4, 0, 0, 1]), "from the future", 4),
    ],
)
def test_restore_garbage_reports_and_does_not_raise(data: Any, problem: str, events: int) -> None:
    """Malformed state is reported and skipped; the valid rest loads and evaluation works."""
    ev = SloEvaluator([avail()])

    problems = ev.restore(data, NOW)

    assert [True] == [problem in p for p in problems], problems
    assert events == ev.evaluate(NOW)["login_ok"].events["30d"]


@pytest.mark.parametrize(
    ("before", "after", "kept"),
    [("60d", "30d", 30), ("30d", "60d", 30), ("60d", "90d", 60)],
)
def test_apply_with_a_new_budget_window(before: str, after: str, kept: int) -> None:
    """Changing the budget window keeps what both windows hold and sums stay exact."""
    ev = SloEvaluator([avail(window=before)])
    for n in range(60):
        runs(ev, 1, 0, at=NOW - n * DAY)
    ev.evaluate(NOW)

    ev.apply([avail(window=after)])
    status = ev.evaluate(NOW)["login_ok"]

    assert kept == status.events[after]
    assert expected_sums(ev, "login_ok", NOW) == {
        label: status.events[label] for label in SLO_WINDOWS
    }


_step = st.one_of(
    st.floats(min_value=0.0, max_value=600.0),
    st.floats(min_value=0.0, max_value=35 * DAY),
    st.floats(min_value=-2 * 3600.0, max_value=0.0),  # the clock steps back
)
_op = st.tuples(
    st.sampled_from(["run", "run", "run", "evaluate"]),
    _step,
    st.floats(min_value=-31 * DAY, max_value=2 * B),  # where a run lands relative to now
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=60))
def test_incremental_sums_match_from_scratch(ops: list[tuple[str, float, float, bool]]) -> None:
    """Whatever the order of runs and evaluations, window counts equal a sum over the buckets."""
    ev = SloEvaluator([avail()])
    now = NOW
    for kind, step, offset, success in ops:
        now += step
        if kind == "run":
            ev.record_run("login", success, 0.1, now + offset)
            continue
        status = ev.evaluate(now)["login_ok"]
        assert expected_sums(ev, "login_ok", now) == dict(status.events)


def test_all_is_sorted_and_honest() -> None:
    """The module's ``__all__`` is sorted and names only what it defines."""
    assert sorted(slo_module.__all__) == slo_module.__all__
    assert all(hasattr(slo_module, name) for name in slo_module.__all__)


def _lines_run(call: Any) -> int:
    """Python lines executed while ``call()`` runs (the interpreter's own work, not time)."""
    count = [0]

    def trace(frame: Any, event: str, arg: Any) -> Any:
        count[0] += event == "line"
        return trace

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return count[0]


def test_a_snapshot_does_not_walk_a_long_slo_s_empty_buckets_in_python() -> None:
    """A 30-day SLO keeps 43,200 one-minute buckets; a daemon that ran minutes has data in
    a few. The snapshot (taken on the event loop, with the runs it covers) finds the live
    ones without a Python step per bucket: a handful of lines whatever the SLO's span, not
    tens of thousands (a 15-25 ms stall every minute in the soak, with a few such SLOs)."""
    ev = SloEvaluator([avail()])
    runs(ev, 3, 1, at=NOW)
    runs(ev, 2, 0, at=NOW - 300)
    series = ev._series["login_ok"]
    assert series.span >= 43_200

    lines = _lines_run(series.ordered)

    assert lines < 100, f"{lines} Python lines to order {series.span} buckets"


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(
        st.one_of(st.just(0), st.integers(1, 3), st.sampled_from([256, 65536, 1 << 24, 2**32 - 1])),
        min_size=1,
        max_size=40,
    ),
    head=st.integers(0, 200),
)
def test_the_ordered_buckets_are_the_live_ones_with_empty_ends_trimmed(
    counts: list[int], head: int
) -> None:
    """``ordered`` gives what a plain walk of the ring from its oldest slot gives, counts
    whose low bytes are zero (256, 2**24...) included."""
    series = slo_module._Series(avail(), B)
    series.span = len(counts)
    series.total = slo_module._zeros(len(counts))
    series.good = slo_module._zeros(len(counts))
    for slot, count in enumerate(counts):
        series.total[slot] = count
        series.good[slot] = count // 2
    series.head = head

    cut = (head + 1) % len(counts)
    totals = counts[cut:] + counts[:cut]
    goods = [c // 2 for c in totals]
    live = [k for k, total in enumerate(totals) if total]
    start, stop = (live[0], live[-1] + 1) if live else (len(totals), len(totals))
    expected = (head - len(counts) + 1 + start, goods[start:stop], totals[start:stop])
    assert expected == series.ordered()


def test_the_oldest_bucket_after_a_long_gap_is_found_without_a_python_step_per_bucket() -> None:
    """When the oldest bucket leaves a 30-day SLO and the next one holding events is 29
    days later (a daemon stopped for weeks, a probe added to the SLO late), the new oldest
    is found on the array's bytes too: a handful of lines, not one per empty bucket."""
    ev = SloEvaluator([avail()])
    runs(ev, 1, 0, at=NOW - 30 * DAY + B)
    runs(ev, 1, 0, at=NOW - DAY)
    series = ev._series["login_ok"]
    assert series.oldest == HEAD - series.span + 1

    lines = _lines_run(lambda: series.advance(HEAD + 1))

    assert series.oldest == HEAD - int(DAY // B)
    assert lines < 100, f"{lines} Python lines to find the oldest of {series.span} buckets"


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(
        st.one_of(st.just(0), st.just(1), st.sampled_from([256, 1 << 24, 2**32 - 1])),
        min_size=1,
        max_size=40,
    ),
    lo=st.integers(0, 120),
    length=st.integers(-2, 90),
)
def test_the_oldest_from_an_index_is_the_first_live_one_of_a_plain_walk(
    counts: list[int], lo: int, length: int
) -> None:
    """``_oldest_from(lo, hi)`` gives what a walk of ``lo..hi`` (wrapping round the ring,
    longer than it included) gives, counts whose low bytes are zero included."""
    series = slo_module._Series(avail(), B)
    series.span = len(counts)
    series.total = slo_module._zeros(len(counts))
    for slot, count in enumerate(counts):
        series.total[slot] = count
    hi = lo + length
    expected = next((i for i in range(lo, hi + 1) if counts[i % len(counts)]), None)
    assert expected == series._oldest_from(lo, hi)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=1e-9, max_value=1.0, exclude_max=True),
        st.integers(1, 10**6 - 1).map(lambda k: k / 10**6),
        st.sampled_from([0.999, 0.9995, 0.99, 0.5, 0.9999999999999999, 1e-05, 9.5e-05]),
    )
)
def test_the_allowance_is_the_decimal_complement_of_the_objective_written(
    objective: float,
) -> None:
    """``1 - objective`` as the operator wrote it (the shortest repr), rounded once."""
    assert float(1 - Decimal(repr(objective))) == _allowance(objective)
