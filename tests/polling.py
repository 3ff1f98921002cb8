"""The one way tests wait for a condition: poll it until it holds or time runs out."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

__all__ = ["until"]


async def until(
    predicate: Callable[[], Any],
    within: float = 3.0,
    *,
    every: float = 0.01,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` (sync or async) every ``every`` s; return its first truthy value.

    Fails the test with ``what`` when ``within`` seconds pass first.
    """
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {within:g}s")
        await asyncio.sleep(every)
