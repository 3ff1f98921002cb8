"""The status document kept between requests (``probed.statuscache``) is the one built from
scratch (``probed.status.status_document``), byte for byte, whatever changed in between."""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from probed.history import Entry, History
from probed.maintenance import Maintenance, MaintenanceWindow
from probed.results import ProbeResult, ProbeRun, Reason
from probed.shard import Shard
from probed.signals import (
    ComponentState,
    ComponentStatus,
    Evaluation,
    Evidence,
    Recommendation,
    RecommendationState,
    Severity,
    Signals,
    SloStatus,
)
from probed.status import status_document
from probed.statuscache import StatusCache
from probed.store import ResultStore, StreamStats
from probed.window import SLOTS, LagWindow

T0 = 1_770_508_800.0
WINDOW = 300.0

Recorder = Callable[[StreamStats, "World"], object]

#: Every recording method of ``StreamStats``, with random arguments.
RECORDINGS: dict[str, Recorder] = {
    "went_down": lambda st, w: st.went_down(w.mono),
    "connecting": lambda st, w: st.connecting(
        w.rng.randrange(st.subscribers), f"c{w.rng.randrange(10**6)}"
    ),
    "connection_opened": lambda st, w: st.connection_opened(
        w.rng.random(), primary=w.rng.random() < 0.5
    ),
    "connection_closed": lambda st, w: st.connection_closed(w.mono, primary=w.rng.random() < 0.5),
    "connection_ended": lambda st, w: st.connection_ended(w.rng.choice(["eof", "timeout", "5xx"])),
    "bytes_read": lambda st, w: st.bytes_read(w.mono - w.rng.random() * 100),
    "first_event": lambda st, w: st.first_event(w.rng.random()),
    "event_received": lambda st, w: st.event_received(
        w.mono - w.rng.random() * 100, w.now - w.rng.random()
    ),
    "untimed_event": lambda st, w: st.untimed_event(),
    "clock_reading": lambda st, w: st.clock_reading(
        w.rng.choice(["date", "time_path"]), *sorted(w.rng.uniform(-40, 40) for _ in range(2))
    ),
    "timed_event": lambda st, w: st.timed_event(
        w.rng.uniform(-2, 5), w.lag_time(), w.rng.choice([0.5, 5.0])
    ),
    "observe_lag": lambda st, w: st.observe_lag(
        w.rng.choice([0.0, 1e-7, w.rng.random(), w.rng.random() * 100, float("inf")]),
        w.lag_time(),
        late=w.rng.random() < 0.2,
    ),
    "unsequenced_event": lambda st, w: st.unsequenced_event(),
    "sequence_observed": lambda st, w: st.sequence_observed(
        w.rng.choice(["new", "duplicate", "out_of_order", "late", "reset"]), w.rng.randrange(3)
    ),
    "gaps_expired": lambda st, w: st.gaps_expired(w.rng.randrange(5)),
    "burst": lambda st, w: st.burst(w.rng.randrange(2, 50), w.rng.random() * 3, w.mono),
    "fanout_observed": lambda st, w: st.fanout_observed(w.rng.random()),
    "server_asked_retry": lambda st, w: st.server_asked_retry(w.rng.random() * 10),
    "retry_was_capped": lambda st, w: st.retry_was_capped(),
}

#: ``StreamStats``' methods that record nothing.
READERS = {"event_age", "silent_for", "snapshot"}


def _recording_methods() -> set[str]:
    return {
        name
        for name, member in vars(StreamStats).items()
        if not name.startswith("_") and inspect.isfunction(member) and name not in READERS
    }


def test_the_driver_records_through_every_recording_method() -> None:
    """A new recording method must join ``RECORDINGS``, so the comparison below covers it."""
    assert _recording_methods() == set(RECORDINGS)


def test_every_recording_method_bumps_the_version() -> None:
    """What the cache keys a stream's counts on changes with each recording."""
    world = World(random.Random(0), streams=1)
    stats = next(iter(world.store.streams.values()))
    for name, record in RECORDINGS.items():
        before = stats.version
        record(stats, world)
        assert stats.version > before, name


class World:
    """A store, what the document reads besides it, and random changes to all of it."""

    rng: random.Random
    now: float
    mono: float

    def __init__(self, rng: random.Random, *, probes: int = 0, streams: int = 0) -> None:
        self.rng = rng
        self.now = T0
        self.mono = 50_000.0
        self.store = ResultStore(ring_size=40, signal_window=WINDOW)
        self.evaluation: Evaluation | None = None
        self.history: History | None = History()
        self.maintenance: Maintenance | None = None
        self.config: dict[str, Any] = {"hash": "abc"}
        self.state: dict[str, Any] | None = None
        self.shard: Shard | None = None
        self.serial = 0
        for _ in range(probes):
            self.add_probe()
        for _ in range(streams):
            self.add_stream()

    # -- members --------------------------------------------------------------------------

    def name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def add_probe(self) -> None:
        name = self.name("probe")
        self.store.register(name, self.rng.choice(["http", "login"]), self.target())
        for k in range(self.rng.randrange(60)):
            self.run(name, self.now - 3000 + 50 * k)

    def add_stream(self) -> None:
        stats = self.store.register_stream(
            self.name("stream"), self.target(), self.rng.randrange(1, 4), event_timeout=30.0
        )
        for _ in range(self.rng.randrange(80)):
            self.record(stats)

    def target(self) -> str:
        return self.rng.choice(["app", "db", "edge"])

    def run(self, name: str, at: float) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.6:
            phases = {"connect": rng.random() / 100, "processing": rng.random()}
            result = ProbeResult.ok(status_code=200, phases=phases)
        elif kind < 0.7:
            result = ProbeResult.ok(status_code=200, delivery_lag_seconds=rng.random())
        elif kind < 0.8:
            result = ProbeResult.fail(Reason.RATE_LIMITED, status_code=429, retry_after=3)
        else:
            reason = rng.choice([Reason.TIMEOUT, Reason.STATUS, Reason.SLOW])
            result = ProbeResult.fail(reason, status_code=rng.choice([None, 500, 503]))
        duration = rng.choice([rng.random(), 0.0, 12.5])
        self.store.record(ProbeRun(name, "http", "app", f"r{at}", "t" * 32, at, duration, result))

    def record(self, stats: StreamStats) -> None:
        name = self.rng.choice(list(RECORDINGS))
        RECORDINGS[name](stats, self)

    def lag_time(self) -> float:
        """When a timed event arrives: now, mostly; sometimes in an older slot, or long
        before (not counted, or a clock step that restarts the window), or a bit ahead."""
        rng = self.rng
        return rng.choice(
            [
                self.now,
                self.now - rng.random() * 5,
                self.now - rng.random() * WINDOW,
                self.now - WINDOW - rng.random() * WINDOW,
                self.now - 3 * WINDOW,
                self.now + rng.random() * 20,
            ]
        )

    # -- what happens between two requests ------------------------------------------------

    def step(self) -> None:
        rng = self.rng
        self.now += rng.choice(
            [
                0.0,
                rng.random(),
                rng.random() * 15,
                10.0 - self.now % 10.0,  # onto a slot boundary
                rng.random() * 40,
                -rng.random() * 3,  # the wall clock stepped back
                WINDOW + rng.random() * 50,
            ]
        )
        self.mono += rng.random() * 20
        probes = list(self.store)
        for state in probes:
            if rng.random() < 0.3:
                for _ in range(rng.randrange(1, 4)):
                    self.run(state.name, self.now - rng.random() * 10)
            if rng.random() < 0.05:
                self.store.skipped(state.name, "overlap")
        for stats in list(self.store.streams.values()):
            for _ in range(rng.choice([0, 0, 1, 3, 20])):
                self.record(stats)
            if rng.random() < 0.1:  # the evaluation reads the window at its own time
                stats.lag_window.count(self.now - rng.random() * 5)
        self.reshape(probes)
        self.surroundings()

    def reshape(self, probes: list[Any]) -> None:
        """Probes and streams come, go and change (a reload)."""
        rng = self.rng
        if rng.random() < 0.1:
            self.add_probe()
        if rng.random() < 0.1 and probes:
            self.store.forget(rng.choice(probes).name)
        if rng.random() < 0.1 and probes:
            state = rng.choice(probes)  # a new kind: a new state under the same name
            self.store.register(state.name, "fixture" if state.kind != "fixture" else "http", "app")
        if rng.random() < 0.1:
            self.add_stream()
        if rng.random() < 0.1 and self.store.streams:
            self.store.forget_stream(rng.choice(list(self.store.streams)))
        if rng.random() < 0.05 and self.store.streams:
            name = rng.choice(list(self.store.streams))
            self.store.register_stream(name, self.target(), 2)  # fresh stats, same name

    def surroundings(self) -> None:
        """The evaluation, history, maintenance windows, config and state."""
        rng = self.rng
        if rng.random() < 0.4:
            self.evaluation = None if rng.random() < 0.1 else self.evaluate()
        if rng.random() < 0.2 and self.history is not None:
            self.history.add(Entry(self.now, "component", "API", "OK", "DOWN", "x"))
        if rng.random() < 0.05:
            self.history = rng.choice([None, History()])
        if rng.random() < 0.15:
            self.maintenance = rng.choice([None, Maintenance(), self.windows()])
        if rng.random() < 0.1:
            self.config = {"hash": f"h{rng.randrange(9)}", "path": "/etc/probed.toml"}
        if rng.random() < 0.1:
            self.state = rng.choice([None, {"healthy": rng.random() < 0.5, "since": self.now}])
        if rng.random() < 0.05:
            self.shard = rng.choice([None, Shard(1, 3)])

    def evaluate(self) -> Evaluation:
        rng = self.rng
        names = [st.name for st in self.store] + list(self.store.streams)
        members = tuple(rng.sample(names, min(len(names), 5)))
        component = ComponentStatus(
            "API", rng.choice(list(ComponentState)), members, members[:1], self.now - 5
        )
        evidence = Evidence("stream s lag_p95", rng.random(), 5.0, self.now - 60, "p95")
        rec = Recommendation(
            "sse_degraded", "SSE degraded", rng.choice(list(Severity)),
            rng.choice(list(RecommendationState)), self.now - 30, (evidence,), ("step",),
            "undo", "https://runbooks/x", "summary",
        )  # fmt: skip
        slo = SloStatus(
            "api", "availability", 0.99, 86400.0, {"1h": rng.random(), "1d": None},
            {"1h": float("inf")}, 0.5, {"1h": 10},
        )  # fmt: skip
        signals = Signals(now=self.now, window=WINDOW, slos={"api": slo})
        return Evaluation(self.now - rng.random(), signals, (component,), (rec,))

    def windows(self) -> Maintenance:
        rng = self.rng
        names = [st.name for st in self.store]
        windows = [
            MaintenanceWindow(
                self.now - rng.random() * 100,
                self.now + rng.uniform(-20, 100),
                frozenset(rng.sample(["app", "db", "edge"], rng.randrange(2))),
                frozenset(rng.sample(names, min(len(names), rng.randrange(3)))),
                "work",
            )
            for _ in range(rng.randrange(1, 4))
        ]
        return Maintenance(windows)

    # -- the document ---------------------------------------------------------------------

    def arguments(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "evaluation": self.evaluation,
            "location": "eu-1",
            "version": "9.9",
            "now": self.now,
            "mono": self.mono,
            "config": self.config,
            "state": self.state,
            "maintenance": self.maintenance,
            "history": self.history,
            "shard": self.shard,
        }


@pytest.mark.parametrize("seed", range(4))
def test_the_kept_document_is_the_one_built_from_scratch(seed: int) -> None:
    """On a large store under random changes (runs, events of every kind, slots filling and
    leaving, the clock stepping back, members coming and going, evaluations, history,
    maintenance), every request's text is ``json.dumps`` of the document built from scratch
    at the same instant, and its document equals it."""
    world = World(random.Random(seed), probes=60, streams=100)
    cache = StatusCache()
    for request in range(40):
        if request:
            world.step()
        if world.rng.random() < 0.5:  # either may read the windows first at this instant
            expected = status_document(**world.arguments())
            kept = cache.build(**world.arguments())
        else:
            kept = cache.build(**world.arguments())
            expected = status_document(**world.arguments())
        assert json.dumps(expected) == kept.text(), f"request {request}"
        assert expected == kept.document(), f"request {request}"
        if world.rng.random() < 0.2:  # asked again at the same instant
            assert json.dumps(expected) == cache.build(**world.arguments()).text()


def test_an_unchanged_store_is_served_from_the_kept_parts() -> None:
    """Between two requests without runs or events, no probe part is rebuilt."""
    world = World(random.Random(7), probes=20, streams=10)
    cache = StatusCache()
    cache.build(**world.arguments())
    kept = dict(cache._probes)
    world.now += 3.0
    world.mono += 3.0
    text = cache.build(**world.arguments()).text()
    assert all(kept[name] is part for name, part in cache._probes.items())
    assert json.dumps(status_document(**world.arguments())) == text


def test_parts_of_members_that_left_are_dropped() -> None:
    """A forgotten probe or stream leaves the cache at the next request."""
    world = World(random.Random(3), probes=3, streams=3)
    cache = StatusCache()
    cache.build(**world.arguments())
    probe, stream = next(iter(world.store)).name, next(iter(world.store.streams))
    world.store.forget(probe)
    world.store.forget_stream(stream)
    cache.build(**world.arguments())
    assert probe not in cache._probes
    assert stream not in cache._streams


def test_the_lag_window_says_what_changed_before_its_newest_slot() -> None:
    """``settled`` stays while samples land in the newest slot or old slots leave; it moves
    when one lands in an older slot or everything is dropped. ``slot`` reads what
    ``worst`` lists."""
    window = LagWindow(300.0)
    window.observe(1.0, T0)
    window.observe(2.0, T0 + 15)
    settled, newest = window.settled, window.newest
    window.observe(3.0, T0 + 16)  # the newest slot
    assert (settled, newest) == (window.settled, window.newest)
    window.observe(0.5, T0 + 1)  # an older slot
    assert window.settled > settled
    settled = window.settled
    window.expire(T0 + 300 + 5)  # the first slot leaves
    assert settled == window.settled
    assert window.newest is not None
    listed = [window.slot(i) for i in range(window.newest - SLOTS + 1, window.newest + 1)]
    assert [s for s in listed if s is not None] == window.worst(T0 + 305)
    window.observe(1.0, T0 - 1000)  # a clock step back: starts over
    assert window.settled > settled


@pytest.mark.parametrize(
    "items",
    [
        [],
        [{"t": 1.5, "reason": None}],
        [{"t": 1.0, "reason": "a}, {"}, {"t": 2.0, "reason": '}, {"t": 3'}, {"t": 3.0}],
        [{"t": 1.0, "nested": [{"a": 1}, {"b": 2}]}, {"t": 2.0, "nested": []}],
    ],
)
def test_kept_list_items_are_found_whatever_their_strings_hold(
    items: list[dict[str, Any]],
) -> None:
    """A list encoded in one call is cut at its items' boundaries, also when a string or a
    nested list reads like one; items kept from it and new ones make the list's text."""
    from probed.statuscache import _Items

    kept = _Items.of(items)
    assert json.dumps(items)[1:-1] == kept.text
    bounds = [*kept.starts, len(kept.text) + 2]
    assert [json.dumps(i) for i in items] == [
        kept.text[bounds[n] : bounds[n + 1] - 2] for n in range(len(items))
    ]
    for first in range(len(items) + 1):
        more = [{"t": 9.0, "reason": "}, {"}]
        assert json.dumps([*items[first:], *more])[1:-1] == kept.then(first, more).text
        assert json.dumps(items[first:])[1:-1] == kept.then(first, []).text
