"""The signal windows: bounded memory, quantiles within 1 %, slot expiry, clock steps."""

from __future__ import annotations

import math
import random
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probed.config import load_config
from probed.evaluate import Evaluator
from probed.results import ProbeResult, ProbeRun, Reason
from probed.store import ResultStore
from probed.window import SLOTS, LagWindow, QuantileSketch, RunWindow

NOW = 1_795_000_000.0  # a multiple of the 10 s slot width of a 300 s window
SPAN = 300.0
WIDTH = SPAN / SLOTS


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# -- the quantile sketch -------------------------------------------------------------------


@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_sketch_quantile_is_within_alpha_of_the_exact_nearest_rank(
    values: list[float], q: float
) -> None:
    sketch = QuantileSketch()
    for v in values:
        sketch.add(v)
    exact = nearest_rank(values, q)
    got = sketch.quantile(q)
    assert got is not None
    if exact <= QuantileSketch.FLOOR:
        assert 0.0 == got
    else:
        assert abs(got - exact) <= QuantileSketch.ALPHA * exact * (
            1 + 1e-6
        )  # float rounding at an edge


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (-1.0, 0),
        (0.0, 0),
        (1e-6, 0),
        (math.nan, 0),
        (1.0000001e-6, 1),
        (math.inf, QuantileSketch.MAX_KEYS),
        (1e30, QuantileSketch.MAX_KEYS),
    ],
)
def test_sketch_keys_of_edge_values(value: float, key: int) -> None:
    assert key == QuantileSketch.key(value)


def test_sketch_add_and_remove_round_trip() -> None:
    a = QuantileSketch()
    assert a.quantile(0.95) is None
    for v in (0.1, 0.2, 0.3):
        a.add(v)
    before = dict(a.buckets)
    for v in (5.0, 5.0, 0.2):
        a.add(v)
    assert 6 == a.count
    assert pytest.approx(5.0, rel=0.01) == a.quantile(1.0)
    for v in (5.0, 5.0, 0.2):
        a.remove_key(QuantileSketch.key(v))
    assert (3, before) == (a.count, a.buckets)
    a.clear()
    assert (0, {}, None) == (a.count, a.buckets, a.quantile(0.5))


def test_sketch_keys_are_bounded_whatever_the_values() -> None:
    sketch = QuantileSketch()
    rng = random.Random(7)
    for _ in range(50_000):
        sketch.add(rng.uniform(0, 1e12))
    assert len(sketch.buckets) <= QuantileSketch.MAX_KEYS + 1


# -- the lag window ------------------------------------------------------------------------


def test_lag_window_counts_only_the_window_ending_now() -> None:
    w = LagWindow(SPAN)
    w.observe(9.0, NOW - 400)  # older than the window once NOW arrives
    w.observe(0.5, NOW - 100)
    w.observe(1.5, NOW - 99)
    w.observe(0.25, NOW - 10)
    assert 3 == w.count(NOW)
    assert pytest.approx(1.5, rel=0.01) == w.quantile(0.95, NOW)
    assert pytest.approx(0.5, rel=0.01) == w.quantile(0.5, NOW)
    # the edge moves one slot at a time: the slot from NOW - 100 leaves when it starts SPAN ago
    assert 3 == w.count(NOW - 100 + SPAN - 0.1)
    assert 1 == w.count(NOW - 100 + SPAN)
    assert 0 == w.count(NOW + SPAN)
    assert w.quantile(0.95, NOW + SPAN) is None


def test_lag_window_worst_lag_per_slot_in_time_order() -> None:
    w = LagWindow(SPAN)
    w.observe(0.5, NOW - 100)
    w.observe(1.5, NOW - 99)
    w.observe(0.25, NOW - 10)
    w.observe(0.75, NOW - 1)  # the current slot, with NOW - 10: its end is clamped to now
    assert [(NOW - 100 + WIDTH, 1.5), (NOW - 0.5, 0.75)] == w.worst(NOW - 0.5)


def test_lag_window_takes_late_samples_within_the_window_and_drops_older_ones() -> None:
    w = LagWindow(SPAN)
    w.observe(1.0, NOW)
    w.observe(2.0, NOW - 200)  # out of order but within the window: inserted
    w.observe(3.0, NOW - 250)
    w.observe(4.0, NOW - 400)  # older than the window: not counted
    assert 3 == w.count(NOW)
    assert [NOW - 250 + WIDTH, NOW - 200 + WIDTH, NOW] == [end for end, _ in w.worst(NOW)]


def test_lag_window_restarts_when_the_clock_steps_back() -> None:
    w = LagWindow(SPAN)
    for i in range(10):
        w.observe(7.0, NOW + i)
    w.observe(0.1, NOW - 3600)  # wall clock stepped back an hour
    assert 1 == w.count(NOW - 3600)
    assert pytest.approx(0.1, rel=0.01) == w.quantile(0.95, NOW - 3600)


def test_lag_window_memory_is_bounded_by_slots_not_by_rate() -> None:
    w = LagWindow(SPAN)
    rng = random.Random(3)
    for i in range(200_000):  # 200 events/s for 1000 s
        w.observe(rng.uniform(0.01, 2.0), NOW + i / 200)
    assert len(w) <= SLOTS
    assert len(w.sketch.buckets) <= QuantileSketch.MAX_KEYS + 1
    end = NOW + 1000
    assert 300 * 200 - WIDTH * 200 <= w.count(end) <= 300 * 200


def test_lag_window_dense_slots_expire_exactly() -> None:
    """A slot past _DENSE_AFTER samples keeps counts per key; expiry still subtracts them all."""
    w = LagWindow(SPAN)
    for i in range(1000):  # 1000 events in one slot, then 10 in the next
        w.observe(0.1 + (i % 7) / 100, NOW + i / 1000)
    for i in range(10):
        w.observe(3.0, NOW + WIDTH + i / 10)
    assert 1010 == w.count(NOW + WIDTH)
    assert pytest.approx(0.13, rel=0.01) == w.quantile(0.5, NOW + WIDTH)
    assert (10, {QuantileSketch.key(3.0): 10}) == (w.count(NOW + SPAN), w.sketch.buckets)


def test_quiet_windows_cost_less_than_keeping_samples() -> None:
    """500 streams at 1 event/s for a full window: a few KiB each (samples cost ~14 KiB)."""
    tracemalloc.start()
    try:
        windows = [LagWindow(SPAN) for _ in range(500)]
        for i in range(300):
            for w in windows:
                w.observe(0.05 + (i % 13) / 50, NOW + i)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used / 500 < 8 * 1024


def test_lag_window_ignores_non_finite_times() -> None:
    w = LagWindow(SPAN)
    w.observe(1.0, math.nan)
    w.observe(1.0, math.inf)
    assert 0 == w.count(NOW)


# -- the run window ------------------------------------------------------------------------


def test_run_window_tallies_and_expires_reasons() -> None:
    w = RunWindow(SPAN)
    w.add(NOW - 200, 0.1, None, failed=False, limited=False)
    w.add(NOW - 100, 0.2, "status", failed=True, limited=True)
    w.add(NOW - 50, 3.0, "timeout", failed=True, limited=False)
    w.add(NOW - 40, 0.3, "timeout", failed=True, limited=False)
    t = w.at(NOW)
    assert (4, 3, 1, {"status": 1, "timeout": 2}) == (
        t.runs,
        t.failures,
        t.rate_limited,
        t.reasons,
    )
    assert pytest.approx(3.0, rel=0.01) == t.durations.quantile(0.95)
    t = w.at(NOW + 210)  # the first two have left
    assert (2, 2, 0, {"timeout": 2}) == (t.runs, t.failures, t.rate_limited, t.reasons)
    t = w.at(NOW + SPAN)
    assert (0, 0, 0, {}, None) == (
        t.runs,
        t.failures,
        t.rate_limited,
        t.reasons,
        t.durations.quantile(0.95),
    )


def test_a_slot_opened_by_a_query_expires_the_samples_it_gets() -> None:
    """A query moves the window into a slot no sample opened yet; the samples that slot then
    takes leave the totals when it expires."""
    w = RunWindow(SPAN)
    w.add(NOW, 0.1, None, failed=False, limited=False)
    assert 1 == w.at(NOW + WIDTH).runs  # the newest slot is now an empty one
    w.add(NOW + WIDTH, 0.2, "rate_limited", failed=True, limited=True)
    w.add(NOW + WIDTH + 1, 0.2, "rate_limited", failed=True, limited=True)
    assert (3, 2, 2) == (w.at(NOW + WIDTH).runs, w.failures, w.rate_limited)
    w.add(NOW + 10 * WIDTH, 0.3, None, failed=False, limited=False)
    t = w.at(NOW + WIDTH + SPAN)  # slot by slot from the newest: both earlier ones expire
    assert (1, 0, 0, {}) == (t.runs, t.failures, t.rate_limited, t.reasons)
    lags = LagWindow(SPAN)
    lags.observe(0.5, NOW)
    assert 1 == lags.count(NOW + WIDTH)
    lags.observe(9.0, NOW + WIDTH)
    lags.observe(0.5, NOW + 10 * WIDTH)
    assert (1, [(NOW + 11 * WIDTH, 0.5)]) == (
        lags.count(NOW + WIDTH + SPAN),
        lags.worst(NOW + WIDTH + SPAN),
    )


# -- the evaluator reads them ---------------------------------------------------------------


def test_evaluator_signals_come_from_the_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBED_DEMO_PASSWORD", "demo-password")
    config = load_config("probed/demo/probes.toml")
    store = ResultStore(signal_window=config.recommend.window)
    store.register("login", "login", "app")

    def run(at: float, result: ProbeResult, duration: float) -> None:
        store.record(ProbeRun("login", "login", "app", "r", "t" * 32, at, duration, result))

    run(NOW - 900, ProbeResult.fail(Reason.TIMEOUT, "slow"), 10.0)  # outside the window
    run(NOW - 60, ProbeResult.ok(status_code=200), 0.2)
    run(NOW - 30, ProbeResult.fail(Reason.RATE_LIMITED, "429", status_code=429), 0.05)
    stream = store.register_stream("events", "app", 1)
    stream.observe_lag(6.0, NOW - 900)
    stream.observe_lag(5.5, NOW - 20)

    signals = Evaluator(config, store).signals(NOW)
    login = signals.probes["login"]
    assert (2, 1, {"rate_limited": 1}, 1) == (
        login.runs,
        login.failures,
        login.reasons,
        login.rate_limited,
    )
    assert pytest.approx(0.2, rel=0.01) == login.p95_seconds
    events = signals.streams["events"]
    assert 1 == events.events
    assert pytest.approx(5.5, rel=0.01) == events.lag_p95
