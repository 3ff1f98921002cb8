"""How long the daemon's event-loop thread waited for a CPU: the soak's reading of schedstat.

Part of ``bench/soak.py`` (imported as ``soak_runqueue``; ``bench/`` is the script
directory). A probe run that starts late was late because the loop was busy (the
daemon's own stall) or because the loop's thread was runnable and no CPU ran it: the
bench's targets, the bench itself and the daemon's other threads share the machine's
cores. Linux counts the second per thread: ``/proc/PID/task/TID/schedstat`` holds the
nanoseconds the thread ran on a CPU and the nanoseconds it waited on a run queue while
runnable. (A thread waiting for the GIL sleeps on a lock: that wait counts as neither, so
a stall caused by the daemon's other threads stays the daemon's.)

A thread of the bench reads the daemon's main thread's file every ``EVERY`` seconds with
the wall time (the clock of the daemon's log lines); :func:`spent_within` interpolates
both counters at the ends of a late run's delay.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from array import array

EVERY = 0.002
"""Seconds between readings (a read costs a few microseconds of the bench's CPU)."""
LIMIT = 2_000_000
"""Readings kept at most (about 70 min at ``EVERY``); later ones are dropped."""


class RunQueueSampler:
    """Readings of one thread's (wall s, on-CPU ns, run-queue wait ns), in a thread."""

    def __init__(self, pid: int, tid: int | None = None, every: float = EVERY) -> None:
        self.path = f"/proc/{pid}/task/{tid or pid}/schedstat"
        self.every = every
        self.wall = array("d")
        self.cpu_ns = array("q")
        self.wait_ns = array("q")
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="schedstat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror}"
            return
        try:
            while not self._stop.wait(self.every) and len(self.wall) < LIMIT:
                try:
                    fields = os.pread(fd, 128, 0).split()
                except OSError:  # the daemon exited
                    break
                self.wall.append(time.time())
                self.cpu_ns.append(int(fields[0]))
                self.wait_ns.append(int(fields[1]))
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _at(self, values: array[int], wall: float) -> float | None:
        """``values`` interpolated at ``wall`` (None outside the readings)."""
        i = bisect.bisect_left(self.wall, wall)
        if i == 0 or i >= len(self.wall):
            return None
        w0, w1 = self.wall[i - 1], self.wall[i]
        v0, v1 = values[i - 1], values[i]
        share = (wall - w0) / (w1 - w0) if w1 > w0 else 1.0
        return v0 + (v1 - v0) * share

    def spent_within(self, start: float, end: float) -> tuple[float, float] | None:
        """(seconds on a CPU, seconds waiting for one) of the thread in wall ``[start, end]``."""
        points = [
            self._at(values, at) for values in (self.cpu_ns, self.wait_ns) for at in (start, end)
        ]
        if None in points:
            return None
        cpu0, cpu1, wait0, wait1 = (p or 0.0 for p in points)
        return (cpu1 - cpu0) / 1e9, (wait1 - wait0) / 1e9
