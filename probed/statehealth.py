"""Whether the state directory can be written, and the lock that keeps a second daemon out.

``StateHealth``
    The small status object persistence writes and the server, the status
    document and the metrics read (it imports neither): healthy while the last
    write to the state directory succeeded; unhealthy, with a ``reason`` from
    ``REASONS``, while writes fail or the daemon runs on an in-memory store.
    Every failure is counted by reason (``probed_state_write_failures_total``).
    It logs one line when writes start failing (``state_save_failed``, or the
    caller's event) and one when they succeed again (``state_recovered``); while
    they keep failing it repeats the line only when the reason changes or
    ``REMIND_EVERY`` passed, never once per write.

``StateLock``
    An exclusive, non-blocking ``flock`` on ``<state_dir>/probed.lock``, held for
    the life of the process, with the holder's PID written in the file. A second
    daemon on the same directory gets ``StateDirLocked`` naming the directory and
    that PID. The kernel drops the lock when the process dies, SIGKILL included,
    so a stale file never blocks a restart.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import math
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from probed.errors import ProbedError

__all__ = [
    "LOCK_FILE",
    "REASONS",
    "REMIND_EVERY",
    "StateDirLocked",
    "StateHealth",
    "StateLock",
    "failure_reason",
]

_log = structlog.get_logger("probed.persist")

LOCK_FILE = "probed.lock"
"""The lock file's name inside ``[daemon] state_dir``."""
REASONS = ("read_only", "no_space", "locked", "other")
"""Why writes to the state directory fail: the ``reason`` label's fixed set."""
REMIND_EVERY = 600.0
"""While writes keep failing for the same reason, the failure line repeats this often."""

_ERRNO_REASONS = {
    errno.EROFS: "read_only",
    errno.EACCES: "read_only",
    errno.EPERM: "read_only",
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "no_space",
    errno.EFBIG: "no_space",
    errno.EAGAIN: "locked",
    errno.EWOULDBLOCK: "locked",
}


class StateDirLocked(ProbedError):
    """Another process holds the state directory's lock (``pid`` if it wrote one)."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"state directory {state_dir} is locked by {holder}")
        self.state_dir = state_dir
        self.pid = pid


def failure_reason(exc: BaseException) -> str:
    """The ``REASONS`` entry for an error raised while writing the state directory."""
    if isinstance(exc, StateDirLocked):
        return "locked"
    if isinstance(exc, sqlite3.Error):
        name = str(getattr(exc, "sqlite_errorname", "") or "")
        if name.startswith("SQLITE_READONLY"):
            return "read_only"
        if name == "SQLITE_FULL":
            return "no_space"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return "locked"
        return "other"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_REASONS.get(exc.errno, "other")
    return "other"


@dataclass(slots=True)
class StateHealth:
    """Whether the state directory takes writes (see the module docs)."""

    state_dir: str = ""
    healthy: bool = True
    in_memory: bool = False
    """The daemon runs on an in-memory store because the file could not be opened."""
    reason: str | None = None
    since: float | None = None
    """Unix time writes started failing."""
    failures: Counter[str] = field(default_factory=Counter)
    """Failed writes (and failed attempts to open the file) by reason, ever."""
    _logged: tuple[str, float] | None = None
    """(reason, monotonic time) of the last failure line."""

    def failed(
        self,
        exc: BaseException,
        *,
        in_memory: bool,
        event: str = "state_save_failed",
        log: bool = True,
        now: float | None = None,
        **fields: Any,
    ) -> None:
        """Count a failed write; log ``event`` unless the same reason was logged lately."""
        reason = failure_reason(exc)
        self.failures[reason] += 1
        if self.healthy:
            self.since = time.time() if now is None else now
        self.healthy, self.in_memory, self.reason = False, in_memory, reason
        mono = time.monotonic()
        last = self._logged
        if last is not None and last[0] == reason and mono - last[1] < REMIND_EVERY:
            return
        self._logged = (reason, mono)
        if log:
            _log.error(
                event,
                state_dir=self.state_dir,
                reason=reason,
                error_message=str(exc),
                error_type=type(exc).__name__,
                in_memory=in_memory,
                consequence="retrying with backoff; not ready until a write succeeds",
                **fields,
            )

    def succeeded(self) -> None:
        """A write to the state file succeeded: healthy again (one line if it was not)."""
        if self.healthy:
            return
        since = self.since
        _log.info(
            "state_recovered",
            state_dir=self.state_dir,
            reason=self.reason,
            failed_for_seconds=None if since is None else round(time.time() - since, 3),
        )
        self.healthy, self.in_memory, self.reason, self.since = True, False, None, None
        self._logged = None

    def problem(self) -> str | None:
        """Why the daemon is not ready because of its state directory, or None."""
        if self.healthy:
            return None
        return f"state directory {self.state_dir} cannot be written ({self.reason})"

    def document(self) -> dict[str, Any]:
        """The ``state`` object of the status document."""
        since = self.since
        return {
            "healthy": self.healthy,
            "state_dir": self.state_dir,
            "in_memory": self.in_memory,
            "reason": self.reason,
            "since": since if since is None or math.isfinite(since) else None,
            "write_failures": sum(self.failures.values()),
        }

    def copy(self) -> StateHealth:
        """A copy safe to read off the event loop."""
        view = copy.copy(self)
        view.failures = Counter(self.failures)
        return view


class StateLock:
    """The exclusive lock on a state directory (see the module docs)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (no-op if held); ``StateDirLocked`` if another process has it,
        ``OSError`` if the directory or the file cannot be used."""
        if self._fd is not None:
            return
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            try:  # a read-only directory with the file from an earlier run still locks
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise exc from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirLocked(self.state_dir, pid) from None
        except OSError:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # read-only: the lock holds without the PID
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock; the file stays)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
