"""Starting, diffing and stopping stream watchers.

The manager creates every watcher's tasks in the daemon's TaskGroup and applies
a reloaded config by name, so an unchanged stream keeps its connections. It
also runs the periodic gap expiry of all watchers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp

from probed.config import SseStream, TargetConfig
from probed.http.wire import WireClient
from probed.sinks import LagSink
from probed.skew import StreamClock
from probed.steps import TurnCount, TurnShare, TurnWindow
from probed.store import ResultStore
from probed.stream.hub import Hub
from probed.stream.watcher import CONNECTS_PER_TURN, EVENTS_PER_TURN, StreamWatcher

__all__ = ["StreamManager"]


class StreamManager:
    """Starts, diffs and stops stream watchers; tasks live in the daemon's TaskGroup."""

    def __init__(
        self,
        store: ResultStore,
        hub: Hub,
        session: aiohttp.ClientSession,
        lag_sinks: Sequence[LagSink] = (),
        *,
        share: TurnShare | None = None,
        connects: TurnCount | None = None,
        wire: WireClient | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self._session = session
        self._lag_sinks = tuple(lag_sinks)
        self._share = TurnWindow(EVENTS_PER_TURN) if share is None else share
        """The share of each loop turn every watcher's event accounting draws on."""
        self._connects = TurnCount(CONNECTS_PER_TURN) if connects is None else connects
        """Connection attempts every watcher may start, and connections they may end, in one
        loop turn, together."""
        self._wire = WireClient() if wire is None else wire
        """The client every watcher reads its streams with (the session: clock checks)."""
        self._watchers: dict[str, StreamWatcher] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._expiry: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> dict[str, StreamWatcher]:
        """The running watchers by stream name."""
        return dict(self._watchers)

    def start(
        self, tg: asyncio.TaskGroup, specs: Iterable[SseStream], targets: dict[str, TargetConfig]
    ) -> None:
        """Start a watcher per spec and the periodic gap expiry."""
        self._tg = tg
        for spec in specs:
            self._add(spec, targets[spec.target])
        self._expiry = tg.create_task(self._expire_loop(), name="stream-gap-expiry")

    def apply(
        self, specs: Iterable[SseStream], targets: dict[str, TargetConfig]
    ) -> tuple[list[str], list[str], list[str]]:
        """Diff by name: unchanged watchers keep their connections."""
        wanted = {s.name: s for s in specs}
        added, changed, removed = [], [], []
        for name in list(self._watchers):
            if name not in wanted:
                self._remove(name)
                removed.append(name)
        for name, spec in wanted.items():
            current = self._watchers.get(name)
            target = targets[spec.target]
            if current is None:
                self._add(spec, target)
                added.append(name)
            elif current.spec != spec or current.target != target:
                self._remove(name)
                self._add(spec, target)
                changed.append(name)
        return added, changed, removed

    def _add(self, spec: SseStream, target: TargetConfig) -> None:
        assert self._tg is not None
        stats = self._store.register_stream(
            spec.name,
            spec.target,
            spec.subscribers,
            spec.lag_buckets,
            event_timeout=spec.event_timeout,
            clock=StreamClock(spec.clock, spec.clock_tolerance),
        )
        watcher = StreamWatcher(
            spec,
            target,
            self._session,
            self._hub,
            stats,
            lag_sinks=self._lag_sinks,
            share=self._share,
            connects=self._connects,
            wire=self._wire,
        )
        self._watchers[spec.name] = watcher
        watcher.start(self._tg)

    def _remove(self, name: str) -> None:
        watcher = self._watchers.pop(name, None)
        if watcher is not None:
            watcher.stop()
            self._store.forget_stream(name)

    async def stop(self) -> None:
        """Cancel every watcher and wait for their tasks."""
        tasks: list[asyncio.Task[Any]] = []
        for watcher in self._watchers.values():
            tasks.extend(watcher.stop())
        if self._expiry is not None:
            self._expiry.cancel()
            tasks.append(self._expiry)
        if tasks:
            await asyncio.wait(tasks)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for watcher in list(self._watchers.values()):
                try:
                    watcher.expire_gaps()
                except Exception as exc:  # a bug must not end the daemon's TaskGroup
                    watcher.log_internal_error(exc)
