"""The demo target's import jobs::

    POST /api/v1/imports          start an import job -> 202, ``import.progress`` events
    GET  /api/v1/imports/{id}     the job's state

A job advances in steps on loop timers over ``import_duration`` seconds and
publishes an ``import.progress`` event per step; ``import_stall_at`` stops it at
a percentage, ``import_regress`` makes its progress go back once. The job store
is bounded: a full one forgets a finished job first.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import web

from probed.demo.events import EventBus, OutboxFull
from probed.demo.faults import Faults
from probed.demo.jsonio import bad_request, json_response, read_json_body

__all__ = ["Imports"]

_MAX_IMPORT_BODY: Final = 64 * 1024
_MAX_JOBS: Final = 1_000
_MAX_TRADES: Final = 100_000
_DEFAULT_TRADES: Final = 50
_IMPORT_STEPS: Final = 10
_REGRESS_POINTS: Final = 20
_BROKERS: Final = ("mock",)

_log = structlog.get_logger("probed.demo")


@dataclass(slots=True)
class _Job:
    """One import job; ``step`` of ``steps`` done."""

    id: str
    total: int
    steps: int
    step: int = 0
    progress: int = 0
    processed: int = 0
    done: bool = False
    stalled: bool = False
    regressed: bool = False
    handle: asyncio.TimerHandle | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``GET /api/v1/imports/{id}`` shape."""
        return {
            "id": self.id,
            "state": "done" if self.done else "running",
            "progress": self.progress,
            "processed": self.processed,
            "total": self.total,
        }


class Imports:
    """Import jobs that advance on timers and publish ``import.progress`` events."""

    def __init__(self, bus: EventBus, faults: Callable[[], Faults]) -> None:
        self._bus = bus
        self._faults = faults
        self._jobs: dict[str, _Job] = {}  # insertion order == age
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._jobs)

    def create(self, total: int) -> _Job:
        """Start a job over ``total`` trades (a full store forgets an old job first)."""
        loop = asyncio.get_running_loop()
        while len(self._jobs) >= _MAX_JOBS:
            self._evict()
        job = _Job(id=f"imp_{next(self._ids)}", total=total, steps=min(_IMPORT_STEPS, total))
        self._jobs[job.id] = job
        job.handle = loop.call_later(self._step_time(job), self._advance, job)
        return job

    def get(self, job_id: str) -> _Job | None:
        """The job, or ``None`` if unknown or evicted."""
        return self._jobs.get(job_id)

    def routes(self) -> list[web.RouteDef]:
        """``POST /api/v1/imports`` and ``GET /api/v1/imports/{job_id}``."""
        return [
            web.post("/api/v1/imports", self._post_import),
            web.get("/api/v1/imports/{job_id}", self._get_import),
        ]

    def shutdown(self) -> None:
        """Stop advancing every job (they stay as they are)."""
        for job in self._jobs.values():
            if job.handle is not None:
                job.handle.cancel()
                job.handle = None

    async def _post_import(self, request: web.Request) -> web.Response:
        try:
            body = await read_json_body(request, _MAX_IMPORT_BODY)
        except ValueError as exc:
            return bad_request(str(exc))
        broker = body.get("broker", "mock")
        if broker not in _BROKERS:
            return bad_request(f"'broker' must be one of: {', '.join(_BROKERS)}")
        trades = body.get("trades", _DEFAULT_TRADES)
        if (
            not isinstance(trades, int)
            or isinstance(trades, bool)
            or not 1 <= trades <= _MAX_TRADES
        ):
            return bad_request(f"'trades' must be a whole number in [1, {_MAX_TRADES}]")
        job = self.create(trades)
        status_url = f"/api/v1/imports/{job.id}"
        return json_response(
            {"id": job.id, "status_url": status_url}, status=202, headers={"Location": status_url}
        )

    async def _get_import(self, request: web.Request) -> web.Response:
        job = self.get(request.match_info["job_id"])
        if job is None:
            return json_response({"error": "not_found"}, status=404)
        return json_response(job.to_dict())

    def _evict(self) -> None:
        jobs = list(self._jobs.values())
        victim = next((j for j in jobs if j.done), None) or next(
            (j for j in jobs if j.stalled), jobs[0]
        )
        if victim.handle is not None:
            victim.handle.cancel()
        del self._jobs[victim.id]

    def _step_time(self, job: _Job) -> float:
        return self._faults().import_duration / job.steps

    def _advance(self, job: _Job) -> None:
        job.handle = None
        faults = self._faults()
        if (
            faults.import_regress
            and not job.regressed
            and job.steps >= 2
            and job.step == job.steps // 2
        ):
            job.regressed = True
            job.progress = max(0, job.progress - _REGRESS_POINTS)
            job.processed = job.total * job.progress // 100
        else:
            step = job.step + 1
            processed = job.total * step // job.steps
            progress = processed * 100 // job.total
            stall_at = faults.import_stall_at
            if stall_at and progress >= stall_at:
                job.stalled = True
                if stall_at <= job.progress:
                    return
                progress, processed = stall_at, job.total * stall_at // 100
            job.step = step
            job.progress, job.processed = progress, processed
            job.done = not job.stalled and step == job.steps
        payload = {
            "job_id": job.id,
            "progress": job.progress,
            "processed": job.processed,
            "total": job.total,
        }
        try:
            self._bus.enqueue("import.progress", payload)
        except OutboxFull:
            _log.warning("demo_outbox_full", job_id=job.id)
        if not (job.done or job.stalled):
            loop = asyncio.get_running_loop()
            job.handle = loop.call_later(self._step_time(job), self._advance, job)
