"""The soak's faults: which ones, and the driver that toggles them on the demo targets.

Part of ``bench/soak.py`` (imported as ``soak_faults``; ``bench/`` is the
script directory). Faults change through each target's ``PUT /-/admin/faults``.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp
from soak_targets import TargetProc

FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("latency 0.5s", {"latency": 0.5}),
    ("503 x 30%", {"error_ratio": 0.3}),
    ("429 x 30%", {"rate_limit_ratio": 0.3, "retry_after": 1}),
    ("stream_delay 2s", {"stream_delay": 2.0}),
    ("disconnect_every 10s", {"disconnect_every": 10.0}),
    ("stall", {"stall": True}),
    ("drop/dup/reorder 10%", {"drop_ratio": 0.1, "duplicate_ratio": 0.1, "reorder_ratio": 0.1}),
    ("refuse_for 5s", {"refuse_for": 5.0}),
)
PUT_RETRY_FOR = 12.0
"""Seconds a fault change is retried (a target refusing connections re-opens after 5 s)."""


def healthy_faults() -> dict[str, Any]:
    """The ``PUT /-/admin/faults`` body that clears every fault ``FAULTS`` sets.

    Every key they set back to its default in ``probed.demo.Faults``, in its
    order; ``refuse_for`` is cleared through ``refuse_connections``, and
    ``paths`` goes back to all paths.
    """
    from probed.demo import Faults

    keys = {key for _, fault in FAULTS for key in fault} - {"refuse_for"}
    keys |= {"refuse_connections", "paths"}
    return {key: value for key, value in Faults().to_dict().items() if key in keys}


class FaultDriver:
    """Toggles faults on the targets every ``period`` seconds through the admin endpoint.

    ``healthy`` is the body that clears them (``healthy_faults()``).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        targets: Sequence[TargetProc],
        period: float,
        healthy: dict[str, Any],
    ) -> None:
        self._session = session
        self._targets = targets
        self.period = period
        self.healthy = healthy
        self.tick = 0
        self.current = ["healthy"] * len(targets)
        self.last_fault = ["-"] * len(targets)
        self.applied: Counter[str] = Counter()
        self.failures: list[str] = []
        self.timeline: list[tuple[float, str]] = [(0.0, "no fault")]
        """(wall time, the faults on from then on) after every change that took effect."""

    def state(self) -> str:
        """The faults on right now, e.g. ``t1 stall`` (``no fault`` when all are healthy)."""
        on = [f"t{k} {label}" for k, label in enumerate(self.current) if label != "healthy"]
        return ", ".join(on) or "no fault"

    def summary(self) -> str:
        """Each target's fault now and its last one, e.g. ``t0 healthy (last: stall)``."""
        return ", ".join(
            f"{t.name} {self.current[t.index]} (last: {self.last_fault[t.index]})"
            for t in self._targets
        )

    def mark(self, what: str | None) -> None:
        """Label the time from now on with ``what`` beside the faults (None: faults only)."""
        state = self.state()
        self.timeline.append((time.time(), f"{state}, {what}" if what else state))

    def phase_at(self, wall: float) -> str:
        """The faults that were on at ``wall`` (Unix time)."""
        index = bisect.bisect_right(self.timeline, (wall, "\uffff")) - 1
        return self.timeline[max(0, index)][1]

    async def put(self, target: TargetProc, label: str, body: dict[str, Any]) -> bool:
        """PUT ``body`` to the target's faults; retried for ``PUT_RETRY_FOR`` seconds."""
        url = f"{target.base_url}/-/admin/faults"
        deadline = time.monotonic() + PUT_RETRY_FOR
        last = ""
        for _ in range(100):  # bounded; the deadline ends it first
            try:
                async with self._session.put(url, json=body) as resp:
                    text = await resp.text()
                    if resp.status == 200:
                        self.current[target.index] = label
                        if label != "healthy":
                            self.applied[label] += 1
                            self.last_fault[target.index] = label
                        self.timeline.append((time.time(), self.state()))
                        return True
                    last = f"status {resp.status}: {text[:200]}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = repr(exc)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        self.failures.append(f"{target.name} {label}: {last}")
        return False

    async def step(self) -> None:
        """Apply tick ``self.tick``: target k faulted when ``tick + k`` is even."""
        jobs = []
        for t in self._targets:
            if (self.tick + t.index) % 2 == 0:
                label, fault = FAULTS[(self.tick // 2 + t.index) % len(FAULTS)]
                body = {**self.healthy, **fault}
                if "refuse_for" in body:  # it sets refuse_connections itself
                    del body["refuse_connections"]
                jobs.append(self.put(t, label, body))
            else:
                jobs.append(self.put(t, "healthy", self.healthy))
        await asyncio.gather(*jobs)
        self.tick += 1

    async def run(self, seconds: float) -> None:
        """Toggle for ``seconds`` (cancelled earlier by the bench when it pauses faults)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in range(math.ceil(seconds / self.period) + 1):
            if loop.time() - started >= seconds:
                return
            await self.step()
            await asyncio.sleep(max(0.0, started + (n + 1) * self.period - loop.time()))

    async def clear(self) -> None:
        """Every target healthy again."""
        await asyncio.gather(*(self.put(t, "healthy", self.healthy) for t in self._targets))
