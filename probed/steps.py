"""Work in steps: long synchronous work that lets the event loop take a turn between steps.

A piece of work that would hold the loop for milliseconds (the evaluation of 500 streams)
is written as a generator that ``yield``s at its checkpoints and returns its result. Run
it with ``at_once`` where nothing else waits (tests, a command), or with ``in_slices`` on
the loop: between checkpoints, once ``slice_seconds`` of monotonic time have gone since the
last turn, it awaits ``asyncio.sleep(0)`` so that timers and I/O run before it goes on.

A generator must leave shared state consistent at every ``yield``: what the loop runs
meanwhile (a reload, a stream going away) may change what it reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeAlias, TypeVar

__all__ = ["Steps", "at_once", "in_slices"]

_T = TypeVar("_T")

Steps: TypeAlias = Generator[None, None, _T]
"""Work that yields at its checkpoints and returns a ``T``."""


def at_once(steps: Steps[_T]) -> _T:
    """Run ``steps`` to the end without handing the loop back; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: _T = done.value
            return result


async def in_slices(steps: Steps[_T], slice_seconds: float) -> _T:
    """Run ``steps``, letting the loop turn once each slice of ``slice_seconds`` is used up."""
    since = time.perf_counter()
    try:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: _T = done.value
                return result
            if time.perf_counter() - since >= slice_seconds:
                await asyncio.sleep(0)
                since = time.perf_counter()
    finally:
        steps.close()
