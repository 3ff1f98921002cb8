"""The status document kept between requests: ``GET /api/v1/status`` without rebuilding it.

Building the document from scratch (``probed.status.status_document``) and encoding it
costs over 100 ms of CPU for 200 probes and 500 streams (``bench/status_doc.py``), nearly
all of it in the probes' ``recent`` runs and the streams' ``lag`` slots, which hardly
change between two requests. ``StatusCache.build`` gives the same document, its JSON text
byte for byte, keeping the text of each part and rebuilding only what changed:

* a probe's object, while its ``ProbeState.version`` stays the same (the store bumps it
  with every run and a restore). When it changed, the runs still in its ``recent`` ring
  (by their numbers, ``probed.runring``) keep their text: only new runs are encoded;
* a stream's counts and clock, while its ``StreamStats.version`` stays the same (every
  recording method bumps it); the slots of its ``lag`` list before the newest, while its
  lag window's ``settled`` stays the same: when the newest slot moves on, the slots that
  left the window are cut off the front and the ones that settled are encoded;
* components, recommendations, SLOs and ``overall`` per evaluation (``DaemonInfo.evaluation``
  is replaced, never changed), the history per ``History.revision``.

What depends on the time of the request is computed at each one, as the from-scratch
build does: ``generated_at``, each stream's hints and ages and its newest slot (whose end
is ``now`` while it fills), the maintenance list and each member's ``maintenance_until``;
so are ``config`` and ``state``, which are small. A probe or stream that left the store
leaves the cache at the next request.

``build`` reads the store, so it runs on the event loop, as the from-scratch build did;
the API answers its ``text()`` there. The page parses it back with ``document()`` in a
worker thread, one probe or stream at a time: one ``json.loads`` (or ``json.dumps``) of
the whole document would hold the GIL, and stall the loop, for its whole length.
``tests/test_statuscache.py`` compares the two ways on a large store under random changes.
"""

from __future__ import annotations

import bisect
import json
import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probed.history import History
from probed.historypage import history_list
from probed.maintenance import Maintenance
from probed.maintenancepage import window_list
from probed.records import record
from probed.shard import Shard
from probed.signals import Evaluation
from probed.status import (
    document_head,
    evaluation_parts,
    lag_point,
    probe_head,
    recent_entry,
    stream_ages,
    stream_clock,
    stream_counts,
)
from probed.store import ProbeState, ResultStore, StreamStats
from probed.window import SLOTS, LagWindow

__all__ = ["StatusCache", "StatusText"]

_dumps = json.dumps


def _members(obj: Mapping[str, Any]) -> str:
    """The members of ``obj``'s JSON text, without its braces."""
    return _dumps(obj)[1:-1]


_BETWEEN = '}, {"'
"""Where one object ends and the next begins in the JSON text of a list of objects."""


@record
class _Items:
    """The texts of a JSON list's items, joined by ``", "``; item ``i`` begins at
    ``starts[i]``. One string and an array instead of a string per item (each with its
    own 50-byte header), and the items kept from a list are one slice of it."""

    text: str = ""
    starts: array[int] = field(default_factory=lambda: array("L"))

    @classmethod
    def of(cls, items: Sequence[Mapping[str, Any]]) -> _Items:
        """``items``, JSON objects with members, encoded in one call (a restored ring is
        thousands of runs, encoded by the first request).

        Every boundary between two of them reads ``}, {"``; so may a string ending in
        ``}, {``, or a nested list of objects. If there are more such places than
        boundaries, each item is encoded on its own instead.
        """
        text = _dumps(items)[1:-1]
        starts = array("L", [0] if items else [])
        find = text.find
        at = find(_BETWEEN)
        while at >= 0 and len(starts) <= len(items):
            starts.append(at + 3)
            at = find(_BETWEEN, at + 4)
        if len(starts) == len(items):
            return cls(text, starts)
        texts = [_dumps(item) for item in items]
        starts, end = array("L"), -2
        for item in texts:
            starts.append(end + 2)
            end += 2 + len(item)
        return cls(", ".join(texts), starts)

    def then(self, first: int, items: Sequence[Mapping[str, Any]]) -> _Items:
        """These items from ``first`` on, followed by ``items``."""
        new = _Items.of(items)
        if first >= len(self.starts):
            return new
        base = self.starts[first]
        starts = array("L", [start - base for start in self.starts[first:]])
        if not items:
            return _Items(self.text[base:], starts)
        offset = len(self.text) - base + 2
        starts.extend([start + offset for start in new.starts])
        return _Items(f"{self.text[base:]}, {new.text}", starts)


@record
class _ProbePart:
    """A probe's object as JSON text, as of ``version`` of ``state``."""

    state: ProbeState
    version: int
    head: str
    """The object up to its ``recent`` runs: ``{"probe": …, "recent": [``."""
    first: int
    """The ring's number (``RunRing.first``) of the first run of ``recent``."""
    end: int
    """The number after its last run (``RunRing.appended``)."""
    recent: _Items


@dataclass(slots=True)
class _StreamPart:
    """A stream's object as JSON text, in the pieces around what changes with time."""

    stats: StreamStats
    version: int = -1
    counts: str = ""
    """``{"stream": …, "burst_events": N`` as of ``version``: the object up to ``hints``."""
    clock: str = ""
    """``"clock": {…}, "mean_lag_seconds": x`` as of ``version``."""
    settled: int = -1
    """The lag window's ``settled`` when ``slots`` were taken."""
    newest: int | None = None
    """The lag window's ``newest`` slot then: ``slots`` are the slots before it."""
    slots: _Items = field(default_factory=_Items)
    """The ``lag`` list but its newest slot."""
    indexes: array[int] = field(default_factory=lambda: array("q"))
    """The window's index of each of ``slots``."""
    slots_until: float = math.inf
    """``slots`` hold for a request at or after this time, the newest slot's start: then
    none of them is still filling (a filling slot's end is the request's ``now``)."""


@record
class _EvaluationPart:
    """What the document takes from one evaluation, as JSON text."""

    evaluation: Evaluation | None
    overall: str
    """``overall``'s value as JSON text."""
    lists: str
    """``"components": […], "recommendations": […], "slos": […]``."""


def _evaluation_part(evaluation: Evaluation | None) -> _EvaluationPart:
    overall_state, components, recommendations, slos = evaluation_parts(evaluation)
    lists = _members({"components": components, "recommendations": recommendations, "slos": slos})
    return _EvaluationPart(evaluation, _dumps(overall_state.value), lists)


def _probe_part(state: ProbeState, old: _ProbePart | None) -> _ProbePart:
    if old is None or old.state is not state:
        old = _ProbePart(state, -1, "", 0, 0, _Items())
    ring = state.recent
    first = ring.first
    if old.first <= first <= old.end:
        # The ring only drops runs at its start and appends at its end (a restore too):
        # the runs numbered from ``first`` to ``old.end`` keep their text.
        start, new = first - old.first, ring.since(old.end)
    else:
        start, new = old.end - old.first, ring.since(first)  # keep none
    recent = old.recent.then(start, [recent_entry(run) for run in new])
    head = "{" + _members(probe_head(state)) + ', "recent": ['
    return _ProbePart(state, state.version, head, first, ring.appended, recent)


def _point(slot: tuple[float, float] | None, now: float) -> dict[str, float | None] | None:
    """A slot's entry in the ``lag`` list at ``now`` (None: not listed)."""
    if slot is None or not math.isfinite(slot[1]):
        return None
    end, lag = slot
    return lag_point(min(end, now), lag)


def _settle(part: _StreamPart, window: LagWindow, now: float) -> None:
    """Bring ``part.slots`` to the window's slots before its newest, at ``now``."""
    settled, newest = window.settled, window.newest
    same = settled == part.settled and now >= part.slots_until
    if same and newest == part.newest:
        return  # only the newest slot can have changed
    if newest is None:
        part.settled, part.newest, part.slots, part.indexes = settled, None, _Items(), array("q")
        part.slots_until = -math.inf
        return
    oldest = newest - SLOTS + 1
    first, begin = len(part.indexes), oldest  # keep none
    if same and part.newest is not None and newest > part.newest:
        # The window moved on: slots before ``oldest`` left it, the old newest slot and
        # any after it settled; nothing else changed (``settled`` would have).
        first = bisect.bisect_right(part.indexes, oldest - 1)
        begin = max(part.newest, oldest)
    indexes = part.indexes[first:]
    points: list[dict[str, float | None]] = []
    for index in range(begin, newest):
        point = _point(window.slot(index), now)
        if point is not None:
            points.append(point)
            indexes.append(index)
    part.slots = part.slots.then(first, points)
    part.settled, part.newest, part.indexes = settled, newest, indexes
    begun = newest * window.width  # every slot before the newest ends by then
    part.slots_until = begun if now >= begun else math.inf


def _lag_text(part: _StreamPart, now: float) -> str:
    """The stream's ``lag`` list at ``now``: the settled slots kept, the newest one fresh."""
    window = part.stats.lag_window
    window.expire(now)  # what the from-scratch build's read does first
    _settle(part, window, now)
    slots = part.slots.text
    newest = window.newest
    point = None if newest is None else _point(window.slot(newest), now)
    if point is None:
        return f"[{slots}]"
    return f"[{slots}, {_dumps(point)}]" if slots else f"[{_dumps(point)}]"


def _stream_text(part: _StreamPart, now: float, mono: float) -> str:
    """The stream's object at ``now`` (``mono``), refreshing ``part``."""
    stats = part.stats
    if part.version != stats.version:
        part.counts = "{" + _members(stream_counts(stats))
        part.clock = _members(stream_clock(stats))
        part.version = stats.version
    ages = _members(stream_ages(stats, mono))
    return f'{part.counts}, {ages}, {part.clock}, "lag": {_lag_text(part, now)}}}'


@record
class StatusText:
    """The status document as JSON text: its probes and streams one text each, the rest
    around them. Nothing in it changes: it can be read in any thread."""

    head: str
    """The document up to the probes: ``{"version": …, "probes": [``."""
    probes: list[tuple[str, str, str]]
    """Each probe's object in three pieces (its runs apart: they are long)."""
    middle: str
    """``], "streams": [``."""
    streams: list[str]
    tail: str
    """The document after the streams: ``], "config": …}``."""

    def text(self) -> str:
        """The whole text."""
        out = [self.head]
        for n, probe in enumerate(self.probes):
            if n:
                out.append(", ")
            out += probe
        out += (self.middle, ", ".join(self.streams), self.tail)
        return "".join(out)

    def document(self) -> dict[str, Any]:
        """The document as ``json.loads`` reads the text, one probe or stream at a time: in
        a worker thread, the event loop gets the GIL back between them instead of waiting
        for one long parse of the whole text."""
        doc: dict[str, Any] = json.loads(self.head + self.middle + self.tail)
        doc["probes"] = [json.loads("".join(probe)) for probe in self.probes]
        doc["streams"] = [json.loads(text) for text in self.streams]
        return doc


class StatusCache:
    """The parts of the status document kept between requests (one per server)."""

    def __init__(self) -> None:
        self._probes: dict[str, _ProbePart] = {}
        self._streams: dict[str, _StreamPart] = {}
        self._evaluation = _evaluation_part(None)
        self._history: tuple[History | None, int, str] = (None, 0, "[]")
        """(history, its revision, its list as JSON text)."""

    def build(
        self,
        *,
        store: ResultStore,
        evaluation: Evaluation | None,
        location: str,
        version: str,
        now: float,
        mono: float,
        config: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        maintenance: Maintenance | None = None,
        history: History | None = None,
        shard: Shard | None = None,
    ) -> StatusText:
        """``status_document(…)`` for the same arguments, as text, from the kept parts: its
        ``text()`` is ``json.dumps`` of that document, its ``document()`` equal to it.

        ``now`` is the Unix time of the request, ``mono`` the same instant on
        ``time.monotonic()``. On the event loop: it reads the store.
        """
        if self._evaluation.evaluation is not evaluation:
            self._evaluation = _evaluation_part(evaluation)
        judged = self._evaluation
        windows = window_list(maintenance, now)
        covering = maintenance if any(w["active"] for w in windows) else None
        head = _members(document_head(version, location, shard, now, evaluation))
        tail = ['], "config": ', _dumps(dict(config or {}))]
        tail += [', "history": ', self._history_text(history)]
        if state is not None:
            tail += [', "state": ', _dumps(dict(state))]
        tail += [', "maintenance": ', _dumps(windows), "}"]
        return StatusText(
            head=f'{{{head}, "overall": {judged.overall}, {judged.lists}, "probes": [',
            probes=self._probe_texts(store, now, covering),
            middle='], "streams": [',
            streams=self._stream_texts(store, now, mono, covering),
            tail="".join(tail),
        )

    def _history_text(self, history: History | None) -> str:
        kept, revision, text = self._history
        if history is not kept or (history is not None and history.revision != revision):
            text = _dumps(history_list(history))
            self._history = (history, 0 if history is None else history.revision, text)
        return text

    def _probe_texts(
        self, store: ResultStore, now: float, covering: Maintenance | None
    ) -> list[tuple[str, str, str]]:
        kept = self._probes
        fresh: dict[str, _ProbePart] = {}
        texts = []
        for state in store:
            part = kept.get(state.name)
            if part is None or part.state is not state or part.version != state.version:
                part = _probe_part(state, part)
            fresh[state.name] = part
            end = _until("]}", covering, state.name, state.target, now)
            texts.append((part.head, part.recent.text, end))
        self._probes = fresh
        return texts

    def _stream_texts(
        self, store: ResultStore, now: float, mono: float, covering: Maintenance | None
    ) -> list[str]:
        kept = self._streams
        fresh: dict[str, _StreamPart] = {}
        texts = []
        for name, stats in store.streams.items():
            part = kept.get(name)
            if part is None or part.stats is not stats:
                part = _StreamPart(stats)
            fresh[name] = part
            text = _stream_text(part, now, mono)
            texts.append(_until(text, covering, name, stats.target, now))
        self._streams = fresh
        return texts


def _until(text: str, covering: Maintenance | None, name: str, target: str, now: float) -> str:
    """A member's object ``text``, with its ``maintenance_until`` under an open window."""
    if covering is not None and (window := covering.covers(name, target, now)) is not None:
        return f'{text[:-1]}, "maintenance_until": {_dumps(window.end)}}}'
    return text
