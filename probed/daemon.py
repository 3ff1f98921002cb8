"""The daemon: the only owner of the TaskGroup, the signals, reload and shutdown.

Signal handlers only set events; the main coroutine reacts to them:

- SIGTERM / SIGINT: stop scheduling, let in-flight runs finish within the
  grace period, cancel the rest, close the server, exit 0.
- SIGHUP (and ``POST /-/reload``): read and validate the config file; a bad
  file keeps the running config and sets ``probed_config_last_reload_successful``
  to 0; a good one is applied by name diff (unchanged probes keep their state).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import abc as aiohttp_abc
from aiohttp import web

from probed import clock, startsignals
from probed.alerting import AlertPusher
from probed.config import (
    Config,
    DaemonConfig,
    load_config,
)
from probed.errors import ConfigError
from probed.evaluate import Evaluator
from probed.eventloop import loop_name
from probed.executor import ProbeExecutor
from probed.gcpolicy import GcPolicy
from probed.logging import EventLine
from probed.metrics import DaemonInfo, build_registry
from probed.persist import Persister, StateStore
from probed.results import ProbeRun
from probed.scheduler import Scheduler, monitor_loop_lag
from probed.sdnotify import Notifier, WatchdogGate, scheduler_max_age, summary, watchdog_loop
from probed.server import ServerState, create_app
from probed.serverguard import ConnectionGuard, GuardedSite, max_connections
from probed.slofeed import SloFeed, persisted_parts
from probed.statehealth import StateDirLocked, StateHealth, StateLock
from probed.store import ResultStore
from probed.stream.hub import Hub
from probed.stream.manager import StreamManager
from probed.tap import Taps
from probed.webauth import BcryptPool
from probed.webserve import LiveWebConfig

__all__ = ["Daemon", "RunLog", "log_run"]

_log = structlog.get_logger("probed")

#: GIL switch interval while the daemon runs (seconds; CPython's default is 0.005).
SWITCH_INTERVAL = 0.0005

#: ``[daemon]`` keys a reload cannot change: the running value stays, and the change is
#: logged as ``config_daemon_change_needs_restart``. Every other key applies on reload.
RESTART_KEYS = ("listen", "state_dir", "location", "results_ring_size", "shard", "event_loop")

LogConfigurer = Callable[[DaemonConfig], None]
"""Applies a config's log settings (the CLI's, so its ``--log-*`` flags keep precedence)."""


class RunLog:
    """The run sink writing each run's log line, and the scheduler's heartbeat for the watchdog."""

    def __init__(self, gate: WatchdogGate) -> None:
        self._gate = gate

    def run_finished(self, run: ProbeRun, scheduler_lag: float) -> None:
        """Beat the scheduler's heartbeat and log ``run``."""
        self._gate.beat("scheduler")
        log_run(run, scheduler_lag)


_run_log = EventLine("probed")
_REFLECT_PARTS = (("delivery_lag_seconds", "delivery_lag_ms"),
                  ("duplicate_watch_seconds", "duplicate_watch_ms"))  # fmt: skip
"""A reflect run's parts of ``latency_ms``: (observation, log field)."""


def log_run(run: ProbeRun, scheduler_lag: float | None = None) -> None:
    """Write the one log line of a finished run (failures at warning level)."""
    result = run.result
    fields: dict[str, object] = {
        "probe": run.probe,
        "kind": run.kind,
        "target": run.target,
        "run_id": run.run_id,
        "trace_id": run.trace_id,
        "status": "success" if result.success else "failure",
        "latency_ms": round(run.duration * 1000, 3),
    }
    if result.status_code is not None:
        fields["http_status"] = result.status_code
    if observations := result.observations:
        for name, field in _REFLECT_PARTS:
            if isinstance(value := observations.get(name), float):
                fields[field] = round(value * 1000, 3)
    if scheduler_lag is not None:
        fields["scheduler_lag_ms"] = round(scheduler_lag * 1000, 3)
    if result.success:
        _run_log.write("info", "probe_run", fields)
    else:
        assert result.reason is not None
        fields["reason"] = result.reason.value
        fields["error_code"] = result.error_code or result.reason.value
        fields["error_message"] = result.detail
        _run_log.write("warning", "probe_run", fields)


class Daemon:
    """Runs probes on schedule and serves their metrics until told to stop."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        resolver: aiohttp_abc.AbstractResolver | None = None,
        shutdown_grace: float = 10.0,
        install_signal_handlers: bool = True,
        notifier: Notifier | None = None,
        configure_logs: LogConfigurer | None = None,
    ) -> None:
        self.config = config = config.for_shard()  # what [daemon] shard owns
        self.config_path = config_path or config.source
        self.store = ResultStore(
            ring_size=config.daemon.results_ring_size, signal_window=config.recommend.window
        )
        self.state_health = StateHealth(state_dir=str(config.daemon.state_dir))
        self.state_lock = StateLock(config.daemon.state_dir)
        self.info = DaemonInfo(
            state=self.state_health,
            location=config.daemon.location,
            shard=config.daemon.shard,
            max_concurrency=config.daemon.max_concurrency,
            config_reload_timestamp=time.time(),
            start_time=time.time(),
            config_path=str(self.config_path),
            config_hash=config.source_hash,
            config_loaded_at=config.loaded_at,
        )
        self.registry = build_registry(self.store, self.info)
        self.evaluator = Evaluator(config, self.store)
        self.info.maintenance = self.evaluator.maintenance
        self.info.exclusions = self.evaluator.exclusions
        self.pusher = AlertPusher(
            config.alerting, location=config.daemon.location, shard=config.daemon.shard
        )
        self.info.alerts_sent = self.pusher.sent
        self.info.alerts_failed = self.pusher.failed
        self.hub = Hub()
        self.executor = ProbeExecutor(resolver, self.hub)
        self.scheduler: Scheduler | None = None
        self.streams: StreamManager | None = None
        self.persister: Persister  # opened in run(): the state dir is touched only when running
        self.web: LiveWebConfig | None = None
        """The web config the server enforces (None: none configured at start)."""
        self.server_state = ServerState(
            self.store,
            self.registry,
            self.reload,
            location=config.daemon.location,
            info=self.info,
            state=self.state_health,
        )
        self.server_state.history = self.evaluator.history
        self.server_state.taps = Taps(self.hub, self.store)
        self.shutdown_grace = shutdown_grace
        self.install_signal_handlers = install_signal_handlers
        self.bound_port: int | None = None
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._started = asyncio.Event()
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.gate = WatchdogGate()
        self._listen = config.daemon.listen
        self._configure_logs = configure_logs
        self.guard: ConnectionGuard | None = None
        """The server's connection limits (set once it listens)."""
        self.gc = GcPolicy()

    def request_stop(self) -> None:
        """Ask the daemon to shut down gracefully (what SIGTERM does)."""
        self._stop.set()

    async def wait_started(self) -> None:
        """Wait until the server listens and probes are scheduled."""
        await self._started.wait()

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file; apply it by diff if valid, keep the old one if not."""
        self.notifier.reloading()
        try:
            return await self._reload()
        finally:  # READY=1 must follow RELOADING=1, also after a failed reload
            self._gate_scheduler()
            self.notifier.reloaded(self._status_line())

    def _gate_scheduler(self) -> None:
        max_age = scheduler_max_age(self.config.scheduled)
        if max_age is None:
            self.gate.unregister("scheduler")
        else:
            self.gate.register("scheduler", max_age=max_age)

    def _status_line(self) -> str:
        return summary(
            listen=self._listen,
            probes=len(self.config.scheduled),
            streams=len(self.config.streams),
            evaluation=self.server_state.evaluation,
            reload_ok=self.info.config_reload_successful,
        )

    def _reload_failed(self, problems: list[str], file_hash: str | None) -> tuple[bool, str]:
        """Keep the running config; say why in the gauge, the log and the status document.

        ``file_hash``: the hash of the file that failed (None if it could not be read).
        """
        self.info.config_reload_successful = False
        self.info.config_reload_error = "\n".join(problems)
        self.info.config_reload_failed_at = time.time()
        self.info.config_file_hash = file_hash
        self.info.config_problems = list(problems)
        self.evaluator.history.reload_failed(clock.wall(), problems)
        _log.error("config_reload_failed", path=str(self.config_path), problems=problems)
        return False, self.info.config_reload_error

    async def _reload(self) -> tuple[bool, str]:
        try:  # off the loop: a large file parses for seconds
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            return self._reload_failed(exc.problems, exc.file_hash)
        except Exception as exc:  # a bug in loading must not end the daemon
            _log.exception("config_reload_internal_error", path=str(self.config_path))
            return self._reload_failed([f"{self.config_path}: cannot load: {exc!r}"], None)
        new = self._keep_restart_keys(new).for_shard()
        if new.recommend.window != self.store.signal_window:
            # the signal windows are fixed-size rings made for the window the daemon
            # started with; resizing them would drop their data and let recommendations
            # resolve for want of it
            _log.warning(
                "config_recommend_window_change_needs_restart",
                window_seconds=self.store.signal_window,
            )
        web = self.web
        tls_context = None
        if web is not None:
            try:  # the one part of applying that can fail: loading new TLS files
                tls_context = web.prepare(new.web)
            except ConfigError as exc:
                return self._reload_failed(exc.problems, new.source_hash)
        elif new.web is not None:
            _log.warning("config_web_config_change_needs_restart", key="web_config_file")
        self.executor.configure(new)
        self._apply_daemon_keys(new.daemon)
        self.evaluator.apply(new)
        self.pusher.apply(new.alerting)
        assert self.scheduler is not None
        assert self.streams is not None
        s_added, s_changed, s_removed = self.streams.apply(new.streams, new.targets)
        added, changed, removed = self.scheduler.apply(new.scheduled)
        added, changed, removed = added + s_added, changed + s_changed, removed + s_removed
        if web is not None:
            for key in web.apply(new.web, tls_context):
                _log.warning("config_web_config_change_needs_restart", key=key)
        self.config = new
        self.info.config_reload_successful = True
        self.info.config_reload_error = None
        self.info.config_reload_timestamp = time.time()
        self.info.config_hash, self.info.config_loaded_at = new.source_hash, new.loaded_at
        self.info.config_reload_failed_at = self.info.config_file_hash = None
        self.info.config_problems = []
        _log.info("config_reloaded", added=added, changed=changed, removed=removed)
        self.evaluator.history.reload_ok(
            clock.wall(), added=len(added), changed=len(changed), removed=len(removed)
        )
        self.gc.reloaded()
        return True, f"added {len(added)}, changed {len(changed)}, removed {len(removed)}"

    def _keep_restart_keys(self, new: Config) -> Config:
        """``new`` with the running value of every changed key in ``RESTART_KEYS``."""
        running = self.config.daemon
        kept = {k: getattr(running, k) for k in RESTART_KEYS}
        for key, value in kept.items():
            if getattr(new.daemon, key) != value:
                _log.warning(
                    "config_daemon_change_needs_restart", key=key, running=str(value),
                    configured=str(getattr(new.daemon, key)),
                )  # fmt: skip
        daemon = new.daemon.model_copy(update=kept)
        return new.model_copy(update={"daemon": daemon})

    def _apply_daemon_keys(self, daemon: DaemonConfig) -> None:
        """Apply the ``[daemon]`` keys that change without a restart."""
        if daemon.max_concurrency != self.config.daemon.max_concurrency:
            assert self.scheduler is not None
            self.scheduler.set_max_concurrency(daemon.max_concurrency)
            self.info.max_concurrency = daemon.max_concurrency
        if self.guard is not None:  # new connections and timers use the new limits
            self.guard.max_connections = max_connections(daemon.http_max_connections)
            self.guard.header_timeout = daemon.http_header_timeout
            self.guard.idle_timeout = daemon.http_idle_timeout
        if self._configure_logs is not None:
            self._configure_logs(daemon)

    async def _listen_failed(self, runner: web.AppRunner | None, **why: object) -> int:
        """Log why the server cannot listen, release what start-up opened; exit code 1."""
        _log.error("listen_failed", listen=self.config.daemon.listen, **why)
        self.persister.close()
        self.state_lock.release()
        if runner is not None:
            await runner.cleanup()
        await self.executor.close()
        return 1

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        loop = asyncio.get_running_loop()
        self.info.event_loop = loop_name(loop)
        # Worker threads do CPU-bound Python now and then (building /metrics for many
        # streams). At the default 5 ms switch interval the loop waits up to 5 ms for the
        # GIL at every wake-up meanwhile and a busy loop falls far behind; a shorter
        # interval keeps its waits short (bench/scrape_stall.py measures both).
        sys.setswitchinterval(SWITCH_INTERVAL)
        if self.install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self._stop.set)
            loop.add_signal_handler(signal.SIGINT, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
            for signum in startsignals.take():  # arrived while probed was loading
                _log.info("signal_queued_during_start_up", signal=signal.Signals(signum).name)
                self._reload_requested.set()
        self.executor.configure(self.config)
        state_dir, ring_size = self.config.daemon.state_dir, self.config.daemon.results_ring_size
        try:
            state = await asyncio.to_thread(
                StateStore.open, state_dir, ring_size=ring_size, lock=self.state_lock
            )
        except StateDirLocked as exc:  # another daemon owns the state: start nothing
            _log.error(
                "state_dir_locked",
                state_dir=str(exc.state_dir),
                holder_pid=exc.pid,
                error_message=str(exc),
            )
            await self.executor.close()
            return 1
        self.persister = Persister(
            state,
            persisted_parts(self.evaluator),
            self.store,
            health=self.state_health,
            lock=self.state_lock,
        )
        # before anything records or evaluates: SLO windows, rings, recommendation states
        await asyncio.to_thread(self.persister.restore, None, self.config.scheduled)
        web_cfg = self.config.web
        daemon_cfg = self.config.daemon
        ssl_context = None
        middlewares = []
        if web_cfg is not None:
            try:
                self.web = LiveWebConfig(web_cfg, BcryptPool(self.info.server))
            except ConfigError as exc:  # the TLS files went bad since the config was checked
                return await self._listen_failed(None, problems=exc.problems)
            middlewares.append(self.web.middleware())
            ssl_context = self.web.ssl_context
        self.guard = guard = ConnectionGuard(
            ssl_context=ssl_context,
            max_connections=max_connections(daemon_cfg.http_max_connections),
            header_timeout=daemon_cfg.http_header_timeout,
            idle_timeout=daemon_cfg.http_idle_timeout,
            stats=self.info.server,
        )
        runner = web.AppRunner(
            create_app(self.server_state, middlewares=[guard.middleware(), *middlewares]),
            handle_signals=False,
            access_log=None,
        )
        await runner.setup()
        host, port = daemon_cfg.host_port()
        if web_cfg is not None and web_cfg.basic_auth_users and ssl_context is None:
            _log.warning("basic_auth_without_tls", web_config=str(web_cfg.source))
        for warning in self.config.warnings:
            _log.warning("config_env_unknown", warning=warning)
        site = GuardedSite(runner, host, port, guard)
        try:
            await site.start()
        except OSError as exc:
            return await self._listen_failed(runner, error_message=str(exc))
        self.bound_port = _bound_port(runner) or port
        self._listen = f"{host}:{self.bound_port}"
        feed = SloFeed(self.evaluator, self.persister)
        self.scheduler = Scheduler(
            store=self.store,
            runner=self.executor,
            max_concurrency=self.config.daemon.max_concurrency,
            sinks=(RunLog(self.gate), feed),
        )
        self.streams = StreamManager(
            self.store,
            self.hub,
            self.executor.stream_session,
            lag_sinks=(feed,),
            wire=self.executor.wire,
        )
        self.gate.register("loop", max_age=10.0, max_lag=5.0)
        self._gate_scheduler()
        alert_session = aiohttp.ClientSession()  # the alert pusher's; closed below
        try:
            async with asyncio.TaskGroup() as tg:
                self.streams.start(tg, self.config.streams, self.config.targets)
                self.scheduler.start(tg, self.config.scheduled)
                lag_task = tg.create_task(
                    monitor_loop_lag(
                        self.store, on_lag=lambda lag: self.gate.beat("loop", lag=lag)
                    ),
                    name="loop-lag",
                )
                eval_task = tg.create_task(self._evaluate_loop(), name="evaluate")
                self.pusher.start(tg, alert_session)
                persist_task = tg.create_task(self.persister.run(), name="persist")
                self.server_state.ready = True
                self._started.set()
                self.notifier.ready(self._status_line())
                watchdog_task = tg.create_task(
                    watchdog_loop(self.notifier, self.gate), name="watchdog"
                )
                self.gc.start()  # long-lived objects (config, sessions...) need no GC scans
                shard, scheduled = self.config.daemon.shard, self.config.scheduled
                (_log.warning if shard.sharded and not self.config.probes else _log.info)(
                    "shard_owns", index=shard.index, total=shard.total, probes=len(scheduled),
                    streams=len(self.config.streams),
                )  # fmt: skip
                _log.info(
                    "daemon_ready",
                    listen=f"{host}:{self.bound_port}",
                    scheme="https" if ssl_context is not None else "http",
                    event_loop=self.info.event_loop,
                    probes=len(self.config.probes),
                    config=str(self.config_path),
                )
                await self._serve_until_stopped()
                self.notifier.stopping()
                self.gate.unregister("scheduler")
                _log.info("daemon_stopping", grace_seconds=self.shutdown_grace)
                self.server_state.ready = False
                cancelled = await self.scheduler.stop(self.shutdown_grace)
                await self.streams.stop()
                lag_task.cancel()
                eval_task.cancel()
                await self.persister.flush_all()
                persist_task.cancel()
                await self.pusher.flush(timeout=min(5.0, self.shutdown_grace))
                self.pusher.stop()
                watchdog_task.cancel()
                if cancelled:
                    _log.warning("runs_cancelled_at_shutdown", count=cancelled)
        finally:
            await alert_session.close()
            self.persister.close()
            self.state_lock.release()
            await runner.cleanup()
            await self.executor.close()
            if self.install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        _log.info("daemon_stopped")
        return 0

    async def _evaluate_loop(self) -> None:
        """Evaluate SLOs and recommendations every ``evaluate_every``; never dies."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.evaluator.poll_queue_depth(self.executor.stream_session)
                async with self.gc.held_back():  # its collections: after it, on their own
                    evaluation, _ = await self.evaluator.evaluate_in_slices()
                    self.info.evaluation = evaluation  # the one holder (the server reads it)
                    self.pusher.update(evaluation.recommendations, evaluation.at)
                    self.notifier.status(self._status_line())
                self.gc.evaluated()
            except Exception:
                _log.exception("evaluation_failed")
            period = self.config.recommend.evaluate_every
            await asyncio.sleep(max(0.0, period - (loop.time() - started)))

    async def _serve_until_stopped(self) -> None:
        while not self._stop.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            reload = asyncio.ensure_future(self._reload_requested.wait())
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (stop, reload):
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
            if self._reload_requested.is_set() and not self._stop.is_set():
                self._reload_requested.clear()
                await self.reload()


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
