"""A thread for work the event loop hands off and need not have done at once: the state writes.

The loop runs probes and counts stream events; a late loop is a late probe and a longer
delivery lag in what probed reports. A state write every 5 s takes a few milliseconds of
CPU (one a minute, with the SLO buckets, tens of them), almost all in SQLite with the GIL
released: on a small host it wants a core just when the loop does. In the soak
(bench/README.md, "Issue 15: session 13") the loop's thread then waited in the kernel's run
queue about as long as the writer ran. :class:`BackgroundThread` is one worker thread
that on Linux runs ``WRITER_NICE`` steps nicer than the daemon (Linux keeps a nice value
per thread; ``setpriority`` on the thread's id changes only that thread), so that where
the two want one core the scheduler runs the loop first. The writer still gets its share
when the loop is busy (a nicer thread is weighted less, never starved), and the GIL it
holds between SQLite calls is held for microseconds. Elsewhere the thread runs at the
daemon's priority (a nice value there is the whole process's).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog

__all__ = ["WRITER_NICE", "BackgroundThread"]

_T = TypeVar("_T")

_log = structlog.get_logger("probed.background")

WRITER_NICE = 10
"""How many steps nicer than the daemon the writer thread runs (Linux; at most 19 in all).
At 10 the scheduler weighs it about a tenth of the loop's thread."""


class BackgroundThread:
    """One worker thread, nicer than the daemon by ``nice``; its calls run one at a time in
    the order given. Started at the first call; ``close`` waits for the calls queued."""

    def __init__(self, name: str, nice: int = WRITER_NICE) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_nicer, initargs=(name, nice)
        )

    async def run(self, fn: Callable[..., _T], /, *args: object, **kwargs: object) -> _T:
        """``fn(*args, **kwargs)`` in the thread, with the caller's context variables (as
        ``asyncio.to_thread``)."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Let the calls queued finish and stop the thread."""
        self._executor.shutdown(wait=True)


def _nicer(name: str, nice: int) -> None:
    """Lower the calling thread's (``name``) CPU priority by ``nice`` (Linux only).

    Raising one's own nice value is allowed to anyone (past 19 the kernel keeps 19), but a
    seccomp filter may refuse the call: the thread then runs at the daemon's priority, and
    says so once. Never raises (an initializer that raises would break the executor)."""
    if sys.platform != "linux" or nice <= 0:
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as exc:
        _log.warning("thread_priority_unchanged", thread=name, nice=nice, error_message=str(exc))
