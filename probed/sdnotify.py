"""sd_notify(3) spoken directly (no libsystemd), and the watchdog gate.

The protocol is one ``AF_UNIX`` datagram per message to ``$NOTIFY_SOCKET``:
newline-separated ``KEY=VALUE`` fields. A leading ``@`` in the address means
the abstract namespace (the ``@`` becomes a NUL byte). Without
``$NOTIFY_SOCKET`` every call is a no-op, so the daemon calls the
``Notifier`` unconditionally. Sending never blocks (non-blocking socket) and
never raises: a failure is logged once per error kind and the message is
dropped — systemd is a supervisor, not a dependency.

What the daemon sends (``Type=notify`` on systemd 252, which has no
``notify-reload``; ``ExecReload=`` sends SIGHUP):

- ``READY=1`` + ``STATUS=`` once the config is loaded, the listener bound and
  the tasks started — never waiting for a target (an outage must not fail
  startup);
- ``STATUS=`` whenever the one-line ``summary()`` changes;
- ``RELOADING=1`` + ``MONOTONIC_USEC=`` when a reload starts, ``READY=1`` +
  ``STATUS=`` when it ends, *whether or not it succeeded* (systemd stays in
  "reloading" until it sees ``READY=1``);
- ``STOPPING=1`` when shutdown starts;
- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` (only if ``$WATCHDOG_PID`` is
  unset or ours), and only while the ``WatchdogGate`` says the daemon itself
  makes progress: the components that beat (scheduler, event loop …) did so
  recently and the event loop is not lagging. The gate never looks at the
  targets: a target outage is what probed exists to report, not a reason for
  systemd to restart it. A wedged daemon stops pinging and systemd restarts it
  after ``WatchdogSec=``.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from probed.signals import Evaluation, RecommendationState

__all__ = ["Notifier", "WatchdogGate", "scheduler_max_age", "summary", "watchdog_loop"]

_log = structlog.get_logger("probed.sdnotify")

#: Longest STATUS= text sent (characters); systemd reads at most 4 KiB per datagram.
MAX_STATUS = 512


def _clean_status(text: str) -> str:
    """One line (newlines would start a new field), bounded."""
    line = " ".join(text.split())
    if len(line) > MAX_STATUS:
        line = line[: MAX_STATUS - 1] + "…"
    return line


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to the service manager; a no-op without a socket.

    Build it with ``Notifier.from_env()``. ``Notifier(None)`` is the explicit
    no-op (for in-process tests and ``probed demo``).
    """

    def __init__(self, notify_socket: str | None, *, watchdog_usec: int | None = None) -> None:
        """``notify_socket`` as in ``$NOTIFY_SOCKET`` (``/path`` or ``@abstract``)."""
        self._display = notify_socket
        self._address: str | None = None
        self._sock: socket.socket | None = None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._logged: set[str] = set()
        self._last_status: str | None = None
        self.sent = 0
        """Datagrams sent."""
        self.failed = 0
        """Datagrams that could not be sent (dropped)."""
        if not notify_socket:
            return
        if notify_socket.startswith("@"):
            self._address = "\0" + notify_socket[1:]
        elif notify_socket.startswith("/"):
            self._address = notify_socket
        else:
            self._log_once(
                "address",
                "sd_notify_unsupported_address",
                notify_socket=notify_socket,
                error_message="NOTIFY_SOCKET must be an absolute path or @abstract",
            )
            return
        try:
            sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            )
        except OSError as exc:
            self._address = None
            self._log_once("socket", "sd_notify_failed", notify_socket=notify_socket, exc=exc)
            return
        sock.setblocking(False)
        self._sock = sock

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, pid: int | None = None
    ) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from ``environ``.

        The watchdog is enabled only if ``WATCHDOG_USEC`` is a positive integer
        and ``WATCHDOG_PID`` is unset or equal to ``pid`` (default: this
        process), as ``sd_watchdog_enabled(3)`` does.
        """
        pid = os.getpid() if pid is None else pid
        usec: int | None = None
        raw_usec = environ.get("WATCHDOG_USEC")
        if raw_usec:
            raw_pid = environ.get("WATCHDOG_PID")
            try:
                usec = int(raw_usec)
                if raw_pid and int(raw_pid) != pid:
                    _log.info("sd_watchdog_not_ours", watchdog_pid=raw_pid, pid=pid)
                    usec = None
            except ValueError:
                _log.warning(
                    "sd_watchdog_invalid_env", watchdog_usec=raw_usec, watchdog_pid=raw_pid
                )
                usec = None
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """True if messages go somewhere."""
        return self._sock is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the period), None if the watchdog is off."""
        if self._sock is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` fields; True if it was sent."""
        if self._sock is None or self._address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            self._sock.sendto(data, self._address)
        except OSError as exc:
            self.failed += 1
            key = type(exc).__name__ if exc.errno is None else str(exc.errno)
            self._log_once(key, "sd_notify_failed", notify_socket=self._display, exc=exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """``READY=1`` and ``STATUS=``: startup is complete."""
        self._last_status = _clean_status(status)
        return self.notify("READY=1", f"STATUS={self._last_status}")

    def status(self, text: str) -> bool:
        """``STATUS=``, sent only when the text changed since the last one."""
        line = _clean_status(text)
        if line == self._last_status:
            return self.enabled
        self._last_status = line
        return self.notify(f"STATUS={line}")

    def reloading(self) -> bool:
        """``RELOADING=1`` and ``MONOTONIC_USEC=`` (``CLOCK_MONOTONIC`` now, in µs)."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}")

    def reloaded(self, status: str) -> bool:
        """``READY=1`` and ``STATUS=`` after a reload (also after a failed one)."""
        return self.ready(status)

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the daemon is alive and making progress."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket; later calls are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _log_once(self, key: str, event: str, exc: OSError | None = None, **fields: object) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        if exc is not None:
            fields["error_message"] = str(exc)
            if exc.errno is not None:
                fields["errno"] = exc.errno
        _log.warning(event, **fields)


@dataclass(slots=True)
class _Component:
    max_age: float
    max_lag: float | None
    last_beat: float
    lag: float | None = None


class WatchdogGate:
    """Decides whether the daemon may tell systemd it is alive (pure; no I/O).

    Components are registered with how stale their heartbeat may get
    (``max_age`` seconds) and optionally how large a reported lag may be
    (``max_lag``). Registration counts as a first beat (a grace period).
    ``beat()`` for a name that is not registered is ignored, so a component is
    only gated while it is expected to beat.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._components: dict[str, _Component] = {}

    @property
    def components(self) -> tuple[str, ...]:
        """Registered component names, sorted."""
        return tuple(sorted(self._components))

    def register(
        self,
        name: str,
        *,
        max_age: float,
        max_lag: float | None = None,
        now: float | None = None,
    ) -> None:
        """Expect ``name`` to beat at least every ``max_age`` seconds.

        Registering again (e.g. after a reload) changes the limits and keeps
        the last beat, so repeated reloads cannot hide a wedged component.
        """
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age}")
        current = self._components.get(name)
        if current is None:
            at = self._clock() if now is None else now
            self._components[name] = _Component(max_age=max_age, max_lag=max_lag, last_beat=at)
        else:
            current.max_age = max_age
            current.max_lag = max_lag

    def unregister(self, name: str) -> None:
        """Stop gating on ``name`` (unknown names are ignored)."""
        self._components.pop(name, None)

    def beat(self, name: str, *, lag: float | None = None, now: float | None = None) -> None:
        """``name`` made progress (``lag``: its latest measured lag in seconds)."""
        component = self._components.get(name)
        if component is None:
            return
        component.last_beat = self._clock() if now is None else now
        if lag is not None:
            component.lag = lag

    def healthy(self, now: float | None = None) -> tuple[bool, str]:
        """``(True, "ok")``, or ``(False, reason)`` naming every failing component."""
        at = self._clock() if now is None else now
        problems: list[str] = []
        for name in sorted(self._components):
            c = self._components[name]
            age = max(0.0, at - c.last_beat)
            if age > c.max_age:
                problems.append(f"{name}: no heartbeat for {age:.1f}s (limit {c.max_age:g}s)")
            elif c.max_lag is not None and c.lag is not None and c.lag > c.max_lag:
                problems.append(f"{name}: lag {c.lag:.2f}s (limit {c.max_lag:g}s)")
        if problems:
            return False, "; ".join(problems)
        return True, "ok"


class _Timed(Protocol):
    @property
    def interval(self) -> float: ...

    @property
    def timeout(self) -> float: ...


def scheduler_max_age(probes: Iterable[_Timed], *, slack: float = 10.0) -> float | None:
    """How long the scheduler may go without a finished run before it counts as wedged.

    A heartbeat comes from every finished run. The fastest probe finishes a
    run at least every ``interval + timeout``; waiting for a concurrency slot
    adds at most the longest ``timeout`` (a busy slot frees within its run's
    timeout). One skipped tick is tolerated (factor 2) and ``slack`` seconds
    are added. None when no probe is interval-run (do not gate the scheduler).
    """
    specs = list(probes)
    if not specs:
        return None
    fastest = min(s.interval + s.timeout for s in specs)
    return 2 * fastest + max(s.timeout for s in specs) + slack


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit}" if len(names) > limit else "")


def summary(
    *,
    listen: str,
    probes: int,
    streams: int = 0,
    evaluation: Evaluation | None = None,
    reload_ok: bool = True,
) -> str:
    """The one-line ``STATUS=`` text (what ``systemctl status probed`` shows).

    ``listening on 127.0.0.1:10115; 9 probes (2 failing: login, import);
    1 stream (all connected); active: sse_degraded (Sev-2)``. Before the first
    evaluation only the counts are shown. Pure.
    """
    parts = [f"listening on {listen}"]
    if evaluation is None:
        parts.append(_plural(probes, "probe"))
        if streams:
            parts.append(_plural(streams, "stream"))
    else:
        signals = evaluation.signals
        failing = sorted(n for n, p in signals.probes.items() if p.last_success is False)
        state = f"{len(failing)} failing: {_names(failing)}" if failing else "none failing"
        parts.append(f"{_plural(probes, 'probe')} ({state})")
        if streams:
            down = sorted(n for n, s in signals.streams.items() if not s.connected)
            state = f"{len(down)} down: {_names(down)}" if down else "all connected"
            parts.append(f"{_plural(streams, 'stream')} ({state})")
        active = [
            f"{r.scenario} ({r.severity.value})"
            for r in evaluation.recommendations
            if r.state is RecommendationState.ACTIVE
        ]
        if active:
            parts.append(f"active: {_names(active)}")
    if not reload_ok:
        parts.append("last reload FAILED, running the previous config")
    return "; ".join(parts)


async def watchdog_loop(
    notifier: Notifier,
    gate: WatchdogGate,
    *,
    interval: float | None = None,
    recheck: float = 1.0,
) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` while ``gate`` is healthy; runs until cancelled.

    ``interval`` defaults to ``notifier.watchdog_interval()``; without a
    watchdog this returns at once. While the gate is unhealthy no ping is sent
    (systemd restarts the service after ``WatchdogSec=``); health is rechecked
    every ``recheck`` seconds so pinging resumes promptly, and
    ``watchdog_withheld`` is logged with the reason at most once per interval.
    """
    period = notifier.watchdog_interval() if interval is None else interval
    if period is None or period <= 0:
        return
    recheck = min(recheck, period)
    withheld_since: float | None = None
    last_logged = -math.inf
    while True:
        ok, reason = gate.healthy()
        now = time.monotonic()
        if ok:
            notifier.watchdog()
            if withheld_since is not None:
                _log.info("watchdog_resumed", withheld_seconds=round(now - withheld_since, 3))
                withheld_since = None
                last_logged = -math.inf
            await asyncio.sleep(period)
            continue
        if withheld_since is None:
            withheld_since = now
        if now - last_logged >= period:
            last_logged = now
            _log.warning(
                "watchdog_withheld",
                reason=reason,
                withheld_seconds=round(now - withheld_since, 3),
            )
        await asyncio.sleep(recheck)
