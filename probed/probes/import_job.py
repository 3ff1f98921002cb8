"""``kind = "import"``: start a job, follow its progress to ``done_at`` or the deadline.

One run:

1. ``t0 = time.monotonic()`` just before the start request (``method`` ``path``
   with ``json_body``; ``start_seconds``; status checked against
   ``expect_status``). The job id is read at ``job_id_path`` of the JSON answer
   (a string or a number; anything else, or nothing, is ``json_mismatch``).
2. Follow the job's progress, a number read at a dotted path:

   ``progress_source = "poll"``
       ``GET status_path`` (``{job_id}`` replaced, URL-quoted) right after the
       start, then at a fixed rate of one every ``poll_interval``; the answer
       must be 200 with JSON, progress at ``progress_path``. ``polls`` counts the
       status requests sent. Times are those of the poll answers, so they are
       only as precise as ``poll_interval``.
   ``progress_source = "stream"``
       events of ``stream`` received through the ``Hub``. The subscription
       starts *before* the start request (a fast job may report before its id is
       known), so every event of type ``event_type`` is kept until the id is
       known (at most ``EVENT_BUFFER``, the oldest dropped first), then only the
       job's own. An event's type is its SSE ``event`` field, or the ``type`` key
       of its JSON data for streams that send everything as ``message``; it is
       the job's when the value at ``event_job_id_path`` equals the id (compared
       as text), and its progress is at ``event_progress_path``. The watcher must
       be connected before starting the job (else ``stream_down``, nothing
       started). ``progress_events`` counts the job's events.

Outcome, as soon as it is known:

success
    a progress value reached ``done_at``.
``regressed``
    a progress value was lower than the one before it.
``stalled``
    progress did not advance (rise above the previous value, or above 0 for the
    first one) for ``stall_after``, counted from ``t0`` and from each advance.
``deadline``
    not done within ``deadline`` of ``t0`` (wins over ``stalled`` when both are
    due at once).
``stream_down``
    (stream) stalled or past the deadline while the watcher was disconnected:
    progress may have been sent while nobody listened.

Observations (kept on failure too): ``start_seconds``; ``first_progress_seconds``
from ``t0`` to our receipt of the first progress value above 0;
``completion_seconds`` from ``t0`` to our receipt of the first value at or above
``done_at`` (both include the start request, as a user's wait does);
``progress``, the last value seen; ``polls`` or ``progress_events``. The job id
appears at most in a result's ``detail``, never in a label or observation.

Reasons this kind reports itself: ``stream_down``, ``regressed``, ``stalled``,
``deadline``, and for the start and status requests ``status``,
``rate_limited``, ``oversize``, ``invalid_json``, ``json_mismatch``,
``redirected_to_other_origin``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote

from probed.config import ImportProbe
from probed.errors import ProbeFailure
from probed.http.session import PhaseTimer
from probed.probes.base import ProbeContext
from probed.probes.exchange import Response, check_status, lookup, parse_json, send
from probed.results import ProbeResult, Reason
from probed.stream.hub import ReceivedEvent

__all__ = ["EVENT_BUFFER", "probe_import"]

EVENT_BUFFER: Final = 1024
"""Progress events kept while the job id is not known yet (the oldest are dropped)."""

_STATUS_OK: Final = (200,)

JobId = str | int | float


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _same_id(value: Any, job_id: JobId) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    return value == job_id or str(value) == str(job_id)


def _job_id(resp: Response, spec: ImportProbe) -> JobId:
    body = parse_json(resp)
    try:
        value = lookup(body, spec.job_id_path)
    except LookupError:
        raise resp.failure(
            Reason.JSON_MISMATCH, f"no job id at {spec.job_id_path!r} in the start answer"
        ) from None
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise resp.failure(
            Reason.JSON_MISMATCH,
            f"job id at {spec.job_id_path!r} is not a non-empty string or number",
        )
    return value


@dataclasses.dataclass(slots=True)
class _Tracker:
    """Progress so far, judged value by value.

    Its failures carry the start response's status code and phases (``start``).
    """

    ctx: ProbeContext
    spec: ImportProbe
    start: Response
    t0: float
    job_id: JobId
    last: float | None = None
    last_advance: float = 0.0

    def __post_init__(self) -> None:
        self.last_advance = self.t0

    @property
    def stall_at(self) -> float:
        return self.last_advance + self.spec.stall_after

    @property
    def deadline_at(self) -> float:
        return self.t0 + self.spec.deadline

    def see(self, value: float, at: float) -> bool:
        """Account ``value`` received at ``at``; True when done; ``REGRESSED`` if it went back."""
        last = self.last
        self.last = value
        self.ctx.observe(progress=value)
        if last is not None and value < last:
            raise self.start.failure(
                Reason.REGRESSED,
                f"job {self.job_id}: progress went back from {last:g} to {value:g}",
            )
        if value > (last if last is not None else 0.0):
            self.last_advance = at
            if "first_progress_seconds" not in self.ctx.observations:
                self.ctx.observe(first_progress_seconds=at - self.t0)
        if value >= self.spec.done_at:
            self.ctx.observe(completion_seconds=at - self.t0)
            return True
        return False

    def expired(self, now: float, down: str | None) -> ProbeFailure:
        """The failure when the deadline or the stall limit passed at ``now``.

        ``down`` says why the progress source could not be relied on meanwhile (the
        stream watcher is disconnected): then it is ``STREAM_DOWN``.
        """
        shown = "none yet" if self.last is None else f"{self.last:g}"
        if now >= self.deadline_at:
            reason = Reason.DEADLINE
            detail = (
                f"job {self.job_id} not done within deadline {self.spec.deadline:g}s "
                f"(progress {shown})"
            )
        else:
            reason = Reason.STALLED
            detail = (
                f"job {self.job_id}: progress did not advance for {self.spec.stall_after:g}s "
                f"(progress {shown})"
            )
        if down is not None:
            reason, detail = Reason.STREAM_DOWN, f"{detail}; {down}"
        return self.start.failure(reason, detail)


async def _follow(
    tracker: _Tracker,
    next_value: Callable[[], Awaitable[tuple[float, float]]],
    down: Callable[[], str | None],
) -> None:
    """Feed values to ``tracker`` until done; past the deadline or stall limit, raise.

    ``down()`` says why the progress source cannot be relied on now, or None.
    """
    while True:
        limit = min(tracker.stall_at, tracker.deadline_at)
        try:
            async with asyncio.timeout_at(limit) as scope:
                at, value = await next_value()
        except TimeoutError:
            if not scope.expired():
                raise
            # the wait ended at ``limit``: uvloop's timers (whole milliseconds) may fire a
            # fraction before time.monotonic() gets there, which must not turn a deadline
            # into a stall
            raise tracker.expired(max(time.monotonic(), limit), down()) from None
        if tracker.see(value, at):
            return


class _Poller:
    """Status requests at a fixed rate; each answer's progress with its receive time."""

    def __init__(self, ctx: ProbeContext, spec: ImportProbe, job_id: JobId) -> None:
        self.ctx = ctx
        self.spec = spec
        self.path = spec.status_path.replace("{job_id}", quote(str(job_id), safe=""))
        self.next_at = time.monotonic()
        self.polls = 0
        ctx.observe(polls=0)

    async def __call__(self) -> tuple[float, float]:
        spec = self.spec
        delay = self.next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next_at = max(self.next_at + spec.poll_interval, time.monotonic())
        self.polls += 1
        self.ctx.observe(polls=self.polls)
        resp = await send(
            self.ctx,
            spec,
            method="GET",
            path=self.path,
            headers=self.ctx.headers(spec),
            timer=PhaseTimer(),
            label="status poll",
        )
        at = time.monotonic()
        check_status(resp, _STATUS_OK)
        body = parse_json(resp)
        try:
            raw = lookup(body, spec.progress_path)
        except LookupError:
            raise resp.failure(
                Reason.JSON_MISMATCH, f"no progress at {spec.progress_path!r}"
            ) from None
        value = _number(raw)
        if value is None:
            raise resp.failure(
                Reason.JSON_MISMATCH,
                f"progress at {spec.progress_path!r} is not a number: {raw!r:.40}",
            )
        return at, value


class _Feed:
    """The job's progress events from the hub, buffered until consumed.

    Until ``job_id`` is set every event of the configured type is kept (bounded);
    from then on only the job's own. A job event without a progress number fails
    ``JSON_MISMATCH`` with the start response's status code and phases.
    """

    def __init__(self, ctx: ProbeContext, spec: ImportProbe) -> None:
        self.ctx = ctx
        self.spec = spec
        self.job_id: JobId | None = None
        self.start: Response | None = None
        self.events = 0
        self._items: deque[tuple[float, Any]] = deque(maxlen=EVENT_BUFFER)
        self._ready = asyncio.Event()

    def _is_progress(self, received: ReceivedEvent, data: Any) -> bool:
        if received.event.event == self.spec.event_type:
            return True
        return isinstance(data, dict) and data.get("type") == self.spec.event_type

    def _is_ours(self, data: Any) -> bool:
        assert self.job_id is not None
        try:
            return _same_id(lookup(data, self.spec.event_job_id_path), self.job_id)
        except LookupError:
            return False

    def on_event(self, received: ReceivedEvent) -> None:
        """Hub callback (quick, synchronous)."""
        data = received.json()
        if data is None or not self._is_progress(received, data):
            return
        if self.job_id is not None and not self._is_ours(data):
            return
        self._items.append((received.received, data))
        self._ready.set()

    def known(self, job_id: JobId, start: Response) -> None:
        """The job id is known (from ``start``): drop the buffered events of other jobs."""
        self.job_id = job_id
        self.start = start
        self._items = deque(
            (item for item in self._items if self._is_ours(item[1])), maxlen=EVENT_BUFFER
        )
        self.ctx.observe(progress_events=0)

    async def __call__(self) -> tuple[float, float]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        at, data = self._items.popleft()
        self.events += 1
        self.ctx.observe(progress_events=self.events)
        path = self.spec.event_progress_path
        try:
            raw = lookup(data, path)
        except LookupError:
            raw = None
        value = _number(raw)
        if value is None:
            assert self.start is not None  # read only once the job is known
            raise self.start.failure(
                Reason.JSON_MISMATCH, f"progress event without a number at {path!r}"
            )
        return at, value


def _never_down() -> str | None:
    """Polling has no watcher to be down: a status request that fails says so itself."""
    return None


def _stream_down(ctx: ProbeContext, stream: str) -> str | None:
    """Why ``stream``'s watcher cannot be relied on now, or None if it is connected."""
    if ctx.hub is None:
        return "no stream hub available to this probe"
    connected = ctx.hub.is_connected(stream)
    if connected is None:
        return f"no stream watcher {stream!r} is running"
    return None if connected else f"stream watcher {stream!r} is not connected"


async def probe_import(ctx: ProbeContext, spec: ImportProbe) -> ProbeResult:
    """Start an import job and follow its progress until done, stalled, regressed or late."""
    feed: _Feed | None = None
    unsubscribe: Callable[[], None] | None = None
    stream = spec.stream
    if spec.progress_source == "stream":
        assert stream is not None  # the config requires it for progress_source "stream"
        why = _stream_down(ctx, stream)
        if why is not None or ctx.hub is None:
            raise ProbeFailure(Reason.STREAM_DOWN, why or "")
        feed = _Feed(ctx, spec)
        unsubscribe = ctx.hub.subscribe(stream, feed.on_event)
    try:
        timer = PhaseTimer()
        t0 = time.monotonic()
        resp = await send(
            ctx,
            spec,
            method=spec.method,
            path=spec.path,
            headers=ctx.headers(spec),
            json=spec.json_body,
            timer=timer,
        )
        ctx.observe(start_seconds=time.monotonic() - t0)
        check_status(resp, spec.expect_status)
        job_id = _job_id(resp, spec)
        tracker = _Tracker(ctx, spec, resp, t0, job_id)
        next_value: Callable[[], Awaitable[tuple[float, float]]]
        down: Callable[[], str | None]
        if feed is not None:
            assert stream is not None
            feed.known(job_id, resp)
            next_value = feed
            down = functools.partial(_stream_down, ctx, stream)
        else:
            next_value = _Poller(ctx, spec, job_id)
            down = _never_down
        await _follow(tracker, next_value, down)
        return ProbeResult.ok(status_code=resp.status, phases=resp.phases)
    finally:
        if unsubscribe is not None:
            unsubscribe()
