"""The event loop the daemon runs on: uvloop, or asyncio's own.

``[daemon] event_loop`` names it (uvloop by default on Linux). The command line builds
the loop with :func:`run` before anything else makes one, so the whole daemon (its
server, its probes, its signal handlers and worker threads' callbacks) runs on it. A
uvloop that cannot be imported (not installed, another platform) is no reason to stay
down: the daemon runs on asyncio's loop and says so in one warning.

uvloop's ``loop.time()`` counts whole milliseconds and its timers may fire up to a
millisecond early, so lags measured against planned times use ``time.monotonic()``
(the scheduler, the loop-lag monitor), which both loops' clocks are built on, and a wait
with a deadline waits again for what is left when its timer fired early (:func:`wait_set`).

The ground floor: no other probed module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

__all__ = ["EVENT_LOOPS", "loop_factory", "loop_name", "run", "wait_set"]

EVENT_LOOPS = ("uvloop", "asyncio")
"""The loops a daemon can run on; :func:`loop_name` gives one of them."""

T = TypeVar("T")

_log = structlog.get_logger("probed")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the loop ``name``: asyncio's when uvloop is wanted but cannot be imported."""
    if name != "uvloop":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError as exc:
        _log.warning(
            "event_loop_unavailable", event_loop=name, using="asyncio", error_message=str(exc)
        )
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """``asyncio.run(main)`` on the loop ``name`` (see :func:`loop_factory`)."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: which of :data:`EVENT_LOOPS` ``loop`` is."""
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


async def wait_set(event: asyncio.Event, deadline: float) -> bool:
    """Wait until ``event`` is set or ``time.monotonic()`` reaches ``deadline``; whether it was
    set. Never returns False before the deadline, on either loop (uvloop's timer for the
    rest may fire up to a millisecond early: then it waits again for what is left)."""
    while not event.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await event.wait()
        except TimeoutError:
            continue
    return True
