"""Running probes: the executor that picks a kind's function and the target's context, and
``probed once``.

The daemon owns one ``ProbeExecutor`` (its sessions, the own HTTP/1.1 clients, the
per-target contexts, rebuilt on reload); ``run_once`` builds one for a single pass over the
selected probes, with the stream watchers they follow.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import structlog
from aiohttp import abc as aiohttp_abc

from probed.config import Config, ProbeSpec
from probed.http.session import create_sessions
from probed.http.tls import prepare_tls
from probed.http.wire import WireClient
from probed.logging import redactor
from probed.probes import PROBERS
from probed.probes.base import ProbeContext, run_probe
from probed.results import ProbeRun
from probed.store import ResultStore
from probed.stream.hub import Hub
from probed.stream.manager import StreamManager

__all__ = ["ProbeExecutor", "run_once"]

_log = structlog.get_logger("probed")


class ProbeExecutor:
    """Runs a probe once: picks the kind's function and the target's context."""

    def __init__(
        self, resolver: aiohttp_abc.AbstractResolver | None = None, hub: Hub | None = None
    ) -> None:
        self._resolver = resolver
        self.hub = hub
        self._sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession] | None = None
        self._contexts: dict[str, ProbeContext] = {}
        self._config: Config | None = None
        self.wire = WireClient(resolver)
        """The own HTTP/1.1 client, with the sessions' resolver: every target's ``http`` probes
        and the stream watchers use it."""

    def configure(self, config: Config) -> None:
        """Build one context per target from ``config`` (on start and reload)."""
        if self._sessions is None:
            self._sessions = create_sessions(resolver=self._resolver)
        fresh, pooled = self._sessions
        self._config = config
        self._contexts = {
            name: ProbeContext(
                target=target,
                session=fresh,
                pooled_session=pooled,
                log=_log,
                on_secret=redactor.add_runtime_secret,
                hub=self.hub,
                wire=self.wire,
            )
            for name, target in config.targets.items()
        }
        redactor.set_secrets(config.secret_values())
        prepare_tls(config.targets.values())

    async def __call__(self, spec: ProbeSpec) -> ProbeRun:
        return await run_probe(PROBERS[spec.kind], self._contexts[spec.target], spec)

    @property
    def stream_session(self) -> aiohttp.ClientSession:
        """The keep-alive session of the stream watchers' clock checks."""
        assert self._sessions is not None, "configure() first"
        return self._sessions[1]

    async def close(self) -> None:
        """Close the HTTP sessions."""
        if self._sessions is not None:
            for session in self._sessions:
                await session.close()
            self._sessions = None


async def run_once(
    config: Config,
    names: list[str] | None = None,
    resolver: aiohttp_abc.AbstractResolver | None = None,
) -> list[ProbeRun]:
    """Run the selected probes once each, concurrently (``probed once``).

    Stream watchers that the selected reflect/import probes rely on are started
    first and given their ``connect_timeout`` to connect.
    """
    hub = Hub()
    executor = ProbeExecutor(resolver, hub)
    executor.configure(config)
    specs = [s for s in config.scheduled if names is None or s.name in names]
    needed = {stream for s in specs if (stream := s.follows()) is not None}
    streams = [s for s in config.streams if s.name in needed]
    manager = StreamManager(ResultStore(), hub, executor.stream_session, wire=executor.wire)
    try:
        async with asyncio.TaskGroup() as tg:
            manager.start(tg, streams, config.targets)
            if streams:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(s.connect_timeout for s in streams)):
                        # polls a predicate for at most connect_timeout, once per `once`
                        while not all(hub.is_connected(s.name) for s in streams):  # noqa: ASYNC110
                            await asyncio.sleep(0.01)
            runs = list(await asyncio.gather(*(executor(s) for s in specs)))
            await manager.stop()
        return runs
    finally:
        await executor.close()
