"""The last state transitions: recommendations, components and config reloads.

A bounded ring (``SIZE`` entries, oldest dropped first) of
``{at, kind, name, old, new, detail}``:

``recommendation``
    One per ``Transition`` the engine returns: ``name`` the scenario, ``old`` and
    ``new`` its states (``old`` None when it appears), ``detail`` the severity.
``component``
    One per component whose state differs from the previous evaluation's
    (``detail``: the failing or degrading members). The first states seen are
    only remembered; the states are kept across restarts with the entries.
``reload``
    One per config reload: ``new`` is ``ok`` (``detail``: added, changed and
    removed counts) or ``failed`` (``detail``: the first problem).

Pure: the caller passes the times (the evaluation's ``at``, ``probed.clock.wall()``).
The daemon's ``Evaluator`` owns one; ``probed.persist`` saves ``snapshot()`` and
restores it; ``/api/v1/status`` lists ``latest(API_LIMIT)``.
"""

from __future__ import annotations

import math
import reprlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from probed.recommend import Transition
from probed.records import record
from probed.signals import ComponentStatus

__all__ = ["API_LIMIT", "KINDS", "SIZE", "SNAPSHOT_VERSION", "Entry", "History"]

SIZE = 200
"""Entries the ring keeps."""
API_LIMIT = 50
"""Entries ``/api/v1/status`` lists."""
KINDS = ("recommendation", "component", "reload")
SNAPSHOT_VERSION = 1
_MAX_DETAIL = 500
"""Longer details (a reload problem quoting a file) are cut."""


@record
class Entry:
    """One transition."""

    at: float
    kind: str
    name: str
    old: str | None
    new: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The entry as the API lists it."""
        return {
            "at": self.at,
            "kind": self.kind,
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "detail": self.detail,
        }


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class History:
    """The ring of transitions and the component states the next comparison needs."""

    def __init__(self, size: int = SIZE) -> None:
        self._entries: deque[Entry] = deque(maxlen=size)
        self._components: dict[str, str] = {}
        self.revision = 0
        """Counts changes (entries or remembered states), so a writer can skip unchanged ones."""

    def add(self, entry: Entry) -> None:
        """Append one entry (the oldest goes when the ring is full)."""
        self._entries.append(entry)
        self.revision += 1

    def recommendations(self, at: float, transitions: Iterable[Transition]) -> None:
        """One entry per engine transition, in the engine's order."""
        for t in transitions:
            old = None if t.old is None else t.old.value
            detail = t.recommendation.severity.value
            self.add(Entry(at, "recommendation", t.scenario, old, t.new.value, detail))

    def components(self, at: float, components: Sequence[ComponentStatus]) -> None:
        """One entry per component whose state changed since the previous call."""
        states = {c.name: c.state.value for c in components}
        for c in components:
            old = self._components.get(c.name)
            if old is None or old == c.state.value:
                continue
            parts = []
            if c.failing:
                parts.append(f"failing: {', '.join(c.failing)}")
            if c.degraded_by:
                parts.append(f"degraded by: {', '.join(c.degraded_by)}")
            self.add(Entry(at, "component", c.name, old, c.state.value, _cut("; ".join(parts))))
        if states != self._components:
            self._components = states
            self.revision += 1

    def reload_ok(self, at: float, *, added: int, changed: int, removed: int) -> None:
        """A reload that applied."""
        detail = f"added {added}, changed {changed}, removed {removed}"
        self.add(Entry(at, "reload", "config", None, "ok", detail))

    def reload_failed(self, at: float, problems: Sequence[str]) -> None:
        """A reload that kept the running config: its first problem."""
        detail = problems[0] if problems else ""
        if len(problems) > 1:
            detail = f"{detail} (and {len(problems) - 1} more)"
        self.add(Entry(at, "reload", "config", None, "failed", _cut(detail)))

    def latest(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` entries (all by default) as JSON, newest first."""
        count = len(self._entries) if limit is None else max(0, limit)
        out: list[dict[str, Any]] = []
        for entry in reversed(self._entries):
            if len(out) >= count:
                break
            out.append(entry.to_json())
        return out

    def snapshot(self) -> dict[str, Any]:
        """The ring and the remembered component states as JSON-compatible data."""
        return {
            "version": SNAPSHOT_VERSION,
            "entries": [e.to_json() for e in self._entries],
            "components": dict(self._components),
        }

    def restore(self, data: Mapping[str, Any]) -> list[str]:
        """Load a ``snapshot``; return the problems found (never raises).

        Valid entries replace the ring, invalid ones are dropped and reported; if
        ``data`` is not a snapshot at all, nothing changes.
        """
        where = "history"
        if not isinstance(data, Mapping):
            return [f"{where}: expected a mapping, got {reprlib.repr(data)}; ignored"]
        version = data.get("version")
        if type(version) is not int or version != SNAPSHOT_VERSION:
            return [f"{where}: unsupported version {reprlib.repr(version)}; ignored"]
        raw = data.get("entries")
        if not isinstance(raw, list):
            return [f"{where}: 'entries' must be a list, got {reprlib.repr(raw)}; ignored"]
        problems: list[str] = []
        entries: list[Entry] = []
        for item in raw:
            entry = _entry(item)
            if entry is None:
                problems.append(f"{where}: bad entry {reprlib.repr(item)}; dropped")
            else:
                entries.append(entry)
        self._entries.clear()
        self._entries.extend(entries)
        states = data.get("components", {})
        if isinstance(states, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in states.items()
        ):
            self._components = dict(states)
        else:
            problems.append(f"{where}: bad component states {reprlib.repr(states)}; ignored")
        self.revision += 1
        return problems


def _entry(item: object) -> Entry | None:
    """The entry ``item`` describes, or None if it is not one."""
    if not isinstance(item, Mapping):
        return None
    at, kind, name = item.get("at"), item.get("kind"), item.get("name")
    old, new, detail = item.get("old"), item.get("new"), item.get("detail")
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        return None
    if kind not in KINDS or not isinstance(name, str) or not isinstance(new, str):
        return None
    if not (old is None or isinstance(old, str)) or not isinstance(detail, str):
        return None
    return Entry(float(at), kind, name, old, new, detail)
