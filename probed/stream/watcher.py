"""Long-lived SSE stream watchers: connect, decode, account, reconnect.

A ``StreamWatcher`` holds ``subscribers`` connections to one stream. Each
connection runs in a loop: connect (checking status and
``Content-Type: text/event-stream``), read with an idle timeout (no byte at all,
not even a heartbeat comment, for ``idle_timeout`` → ``stalled``) and an event
timeout (no event for ``event_timeout``, however many comments and pings came →
``no_events``: a connection that only pings delivers nothing), decode with the
bounded WHATWG decoder, and account every event. When the connection ends for
any reason it waits as :mod:`probed.stream.reconnect` says (exponential backoff
with jitter for failed attempts, which include every connection shorter than
``min_connection_lifetime``; never sooner than ``min_reconnect_delay``) and
reconnects, sending ``Last-Event-ID`` so the server can resume.

Streams are read on probed's own HTTP/1.1 client (``WireClient.open_stream``,
``probed.http.wirestream``), not on a client library's reader: the events of a read are
accounted in the connection's own callback, and the subscriber's task wakes only for what
that cannot do (accounting left for a later loop turn, the connection's end, a deadline).
An open connection is a handful of objects, which every full garbage collection walks.

A connection's end is one of a fixed set of reasons (``probed.stream.ending``). No
exception of a watcher ever reaches the daemon's TaskGroup.

Every watcher of a daemon accounts its events within one share of each event loop turn
(``EVENTS_PER_TURN``, ``probed.steps.TurnWindow``): data handed to hundreds of streams at
once (a server that caught up, one event sent to every stream) is accounted over several
turns, each event still stamped with the time its chunk was read, instead of holding back
every probe and timer due meanwhile. Likewise they start at most ``CONNECTS_PER_TURN``
connection attempts, and end as many connections, per turn together, so that hundreds of
streams ending or reconnecting at once do not all take their connections' steps together.

A server's ``retry:`` is honoured up to ``retry_max``; a longer one is capped,
logged once per value and counted.

Tasks are created in the daemon's TaskGroup by
:class:`probed.stream.manager.StreamManager`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, NoReturn

import aiohttp
import structlog
from yarl import URL

from probed import clock
from probed.config import SseStream, TargetConfig
from probed.errors import ProbeFailure, drop_tracebacks
from probed.http.redirects import RedirectPolicy
from probed.http.session import PhaseTimer, new_traceparent
from probed.http.tls import ssl_for
from probed.http.wire import WireClient, WireConnectError
from probed.http.wirestream import StreamExchange, media_type
from probed.jsonpath import getter
from probed.netvalues import sequence_number
from probed.results import Reason
from probed.sinks import LagSink
from probed.steps import TurnCount, TurnShare, TurnWindow
from probed.store import StreamStats
from probed.stream.accounting import SequenceTracker, Verdict, epoch_of, parse_timestamp
from probed.stream.clockcheck import clock_checks, read_date
from probed.stream.decoder import Comment, DecodeError, Event, SSEDecoder
from probed.stream.ending import RECONNECT_REASONS, Ended, StopAsked, ended_by
from probed.stream.hub import Hub, ReceivedEvent
from probed.stream.reconnect import ReconnectPolicy
from probed.stream.subscriber import Item, Subscriber

__all__ = ["CONNECTS_PER_TURN", "EVENTS_PER_TURN", "RECONNECT_REASONS", "StreamWatcher"]

_log = structlog.get_logger("probed.stream")

EVENTS_PER_TURN = 0.004
"""Seconds of each event loop turn the watchers' reads may take together, from the first
accounting of the turn (the other connections' reads and decoding between accountings
count too, ``probed.steps.TurnWindow``); the rest is accounted in later turns."""
CONNECTS_PER_TURN = 8
"""Connection attempts the watchers may start, and connections they may end, in one event
loop turn, together (one share for both): hundreds of streams reconnecting at once (a
target back from an outage, a stall that ended every connection at the same moment,
start-up) start over several turns, so the connections' steps (socket, request, response
head) do not all land in the same turns; hundreds cut at once (a target's restart, a proxy)
are ended (unwound, counted, logged, their next attempt scheduled) over several turns too."""
_FANOUT_TRACKED = 10_000
_BURST_MIN_EVENTS = 3
"""Fewer timed events in one read are never a burst (two can be a legitimate pair)."""
_INTERNAL_ERROR_LOG_EVERY = 60.0
"""Seconds between tracebacks logged for one stream's internal errors."""

_conn_counter = itertools.count(1)
_CONN_PREFIX = os.urandom(3).hex()
_INF = math.inf


class StreamWatcher:
    """Watches one SSE stream with ``spec.subscribers`` connections."""

    def __init__(
        self,
        spec: SseStream,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        hub: Hub,
        stats: StreamStats,
        *,
        rng: random.Random | None = None,
        lag_sinks: Sequence[LagSink] = (),
        share: TurnShare | None = None,
        connects: TurnCount | None = None,
        wire: WireClient | None = None,
    ) -> None:
        self.spec = spec
        self.target = target
        self.session = session
        """For the clock checks (``time_path``); the streams read on ``wire``."""
        self._wire = WireClient() if wire is None else wire
        self.hub = hub
        self.stats = stats
        self._rng = rng or random.Random()
        self._lag_sinks = tuple(lag_sinks)
        self._share = TurnWindow(EVENTS_PER_TURN) if share is None else share
        self._connects = TurnCount(CONNECTS_PER_TURN) if connects is None else connects
        self._url = target.base_url.rstrip("/") + spec.path
        self._subs = [
            Subscriber(
                i,
                SSEDecoder(max_line_bytes=spec.max_line_size, max_event_bytes=spec.max_event_size),
                SequenceTracker(spec.reorder_window, spec.loss_timeout),
            )
            for i in range(spec.subscribers)
        ]
        self._fanout: dict[int, list[float]] = {}
        """First receive time and count of each sequence number across subscribers."""
        self._redirects = RedirectPolicy.of(target, spec)
        lag_field = None if spec.clock == "ignore" else spec.lag_field
        # the fields read from every event's JSON data, each path split once
        self._stamp_of = None if lag_field is None else getter(lag_field)
        self._seq_of = None if spec.sequence_field is None else getter(spec.sequence_field)
        epoch = spec.sequence_epoch_field
        self._epoch_of = None if epoch is None else getter(epoch)
        self._needs_json = any(path is not None for path in (lag_field, spec.sequence_field, epoch))
        self._clock_checked = asyncio.Event()
        """Set after the first time_path check, ok or not (``correct`` connections wait)."""
        self._primary_up = False
        self._clock_task: asyncio.Task[None] | None = None
        self._internal_logged_at = -_INTERNAL_ERROR_LOG_EVERY
        self._policy = ReconnectPolicy(spec, stats, self._rng)
        self._origin = str(URL(self._url).origin())

    # -- lifecycle --------------------------------------------------------------------

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Start one task per subscriber (and the clock check) in ``tg``."""
        self.hub.register_stream(self.spec.name, self.is_connected)
        self.stats.went_down(time.monotonic())
        for sub in self._subs:
            sub.task = tg.create_task(
                self._run_subscriber(sub), name=f"stream:{self.spec.name}:{sub.index}"
            )
        if self.spec.time_path is not None and self.spec.clock != "ignore":
            self._clock_task = tg.create_task(
                clock_checks(self.session, self.spec, self.target, self._redirects, self.stats,
                             self._clock_checked, self.log_internal_error),
                name=f"clock:{self.spec.name}",
            )  # fmt: skip
        else:
            self._clock_checked.set()

    def stop(self) -> list[asyncio.Task[Any]]:
        """Cancel every task of this watcher; returns them so the caller can await them."""
        self.hub.unregister_stream(self.spec.name)
        tasks: list[asyncio.Task[Any]] = [s.task for s in self._subs if s.task is not None]
        if self._clock_task is not None:
            tasks.append(self._clock_task)
        for task in tasks:
            task.cancel()
        return tasks

    def is_connected(self) -> bool:
        """Whether the primary connection (the one feeding the hub) is up."""
        return self._primary_up

    # -- connection loop ----------------------------------------------------------------

    async def _run_subscriber(self, sub: Subscriber) -> None:
        failures = 0  # failed attempts in a row (see probed.stream.reconnect)
        while True:
            ended = await self._attempt(sub)
            healthy = ended.healthy and ended.lived >= self.spec.min_connection_lifetime
            failures = 0 if healthy else failures + 1
            delay = self._policy.delay(
                failures=failures,
                retry_ms=sub.decoder.retry,
                stop_asked=isinstance(ended, StopAsked),
            )
            self._end(sub, ended, delay)
            del ended  # not kept, with its context, through the next connection
            await asyncio.sleep(delay)

    def _headers(self, sub: Subscriber) -> dict[str, str]:
        headers = self.target.resolved_headers()
        headers.update(self.spec.resolved_headers())
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        headers["traceparent"] = new_traceparent()[0]
        if sub.decoder.last_event_id:
            headers["Last-Event-ID"] = sub.decoder.last_event_id
        return headers

    async def _attempt(self, sub: Subscriber) -> Ended:
        """One connection and how it ended; a failure of probed's own code is ``internal_error``."""
        try:
            await self._connect_and_consume(sub)
        except Ended as ended:
            drop_tracebacks(ended)
            return ended
        except Exception as exc:  # a bug must cost this stream a reconnect, not the daemon
            self.log_internal_error(exc)
            drop_tracebacks(exc)
            return Ended(Reason.INTERNAL_ERROR.value, False, type(exc).__name__)

    def log_internal_error(self, exc: Exception) -> None:
        """Log ``exc`` with its traceback, at most once a minute for this stream."""
        now = time.monotonic()
        if now - self._internal_logged_at < _INTERNAL_ERROR_LOG_EVERY:
            return
        self._internal_logged_at = now
        _log.error("stream_internal_error", stream=self.spec.name, exc_info=exc)

    async def _connect_and_consume(self, sub: Subscriber) -> NoReturn:
        spec, stats = self.spec, self.stats
        if not self._connects.open():
            await self._connects.next_turn()
        self._connects.use(1.0)
        conn_id = f"{_CONN_PREFIX}-{next(_conn_counter):x}"
        stats.connecting(sub.index, conn_id)
        sub.decoder.reset_connection()
        sub.tracker.new_connection()
        sub.pending = None
        if spec.clock == "correct" and not self._clock_checked.is_set():
            # lags before the first estimate could not be corrected: wait for it (bounded)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(spec.connect_timeout):
                    await self._clock_checked.wait()
        started = time.monotonic()
        sent_wall = clock.wall()
        reply = await self._open(sub)
        try:
            if reply.status == 204:
                raise StopAsked("no_content", False)
            if reply.status != 200:
                raise Ended("status", False, f"status {reply.status}")
            if (content_type := media_type(reply.headers)) != "text/event-stream":
                raise Ended("content_type", False, f"content type {content_type!r}")
            read_date(spec, reply.headers, sent_wall, stats)
            connected_at = time.monotonic()
            stats.connection_opened(connected_at - started, primary=sub.index == 0)
            if sub.index == 0:
                self._primary_up = True
            _log.info(
                "stream_connected",
                stream=spec.name,
                subscriber=sub.index,
                connection_id=conn_id,
                connect_ms=round((connected_at - started) * 1000, 3),
            )
            try:
                await self._consume(sub, reply, started)
            except Ended as ended:
                ended.lived = time.monotonic() - connected_at
                raise
            finally:
                stats.connection_closed(time.monotonic(), primary=sub.index == 0)
                if sub.index == 0:
                    self._primary_up = False
        finally:
            reply.close()
            reply.on_done = None
            sub.reply = sub.wake = sub.backlog = None

    async def _open(self, sub: Subscriber) -> StreamExchange:
        """The stream's response, up to its head; a failure as ``Ended``."""
        spec = self.spec
        try:
            tls = ssl_for(self.target)
        except ProbeFailure as exc:  # an unreadable ca_file
            raise Ended(Reason.TLS.value, False, exc.detail) from None
        # the client fills the timer: it tells a connection that never completed from one
        # that did but whose response headers did not come
        timer = PhaseTimer()
        try:
            async with asyncio.timeout(spec.connect_timeout):
                return await self._wire.open_stream(
                    self._url, self._redirects, headers=self._headers(sub), ssl_context=tls,
                    timer=timer,
                )  # fmt: skip
        except TimeoutError:
            within = f"within connect_timeout {spec.connect_timeout:g}s"
            if timer.awaiting_headers:
                detail = f"connected to {self._origin}, no response headers {within}"
                raise Ended("header_timeout", False, detail) from None
            detail = f"no connection to {self._origin} {within}"
            raise Ended("connect_timeout", False, detail) from None
        except (aiohttp.ClientError, WireConnectError) as exc:
            raise ended_by(exc, False) from None

    async def _consume(self, sub: Subscriber, reply: StreamExchange, started: float) -> NoReturn:
        """Read until the connection ends; always raises ``Ended``.

        Chunks are accounted as they are read, in the connection's own callback
        (``_received``); this task only wakes for what that cannot do: accounting that
        waits for a later loop turn (``_drain``), the end, and the deadlines. Both
        deadlines are armed from the last byte (event) and only re-armed when one passes:
        moving a timer on every chunk would cost a timer per chunk."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        idle = spec.idle_timeout
        quiet = math.inf if spec.event_timeout is None else spec.event_timeout
        sub.reply, sub.started, sub.got_anything = reply, started, False
        sub.awaiting_first = True
        sub.last_byte = sub.last_event = time.monotonic()
        reply.on_done = sub.wake_up
        try:
            reply.start(functools.partial(self._received, sub))
            while True:
                if sub.backlog is not None:
                    await self._drain(sub, reply)
                    continue
                now = time.monotonic()
                stalled, silent = now - sub.last_byte >= idle, now - sub.last_event >= quiet
                if reply.done.done() or stalled or silent:
                    if not self._connects.open():
                        # connections ending together (a target's restart, a stall of all
                        # of them) end over several turns, as they start
                        await self._connects.next_turn()
                    self._connects.use(1.0)
                    if reply.done.done():
                        reply.done.result()  # what the connection or the accounting raised
                        raise Ended("eof", sub.got_anything)
                    now = time.monotonic()  # a byte or an event may have come meanwhile
                    if now - sub.last_byte >= idle:
                        raise Ended("stalled", sub.got_anything, f"nothing for {idle:g}s")
                    if now - sub.last_event >= quiet:
                        # pings keep the connection but deliver nothing: not a healthy one
                        raise Ended("no_events", False, f"no event for {quiet:g}s")
                    continue
                wait = min(sub.last_byte + idle, sub.last_event + quiet) - now
                wake = sub.wake = loop.create_future()
                timer = loop.call_later(max(wait, 0.001), sub.wake_up)
                try:
                    await wake
                finally:
                    timer.cancel()
                    sub.wake = None
        except aiohttp.ClientError as exc:
            raise ended_by(exc, sub.got_anything) from None

    def _received(self, sub: Subscriber, chunk: bytes) -> None:
        """A chunk read on ``sub``'s connection: account it now if this loop turn's share
        allows and nothing waits before it, else keep it for ``_drain`` and stop reading."""
        now = sub.last_byte = time.monotonic()
        self.stats.bytes_read(now)
        if sub.backlog is not None:
            sub.backlog.append((chunk, now))
            return
        if not self._share.open():
            self._hold(sub, (chunk, now))
            return
        self._feed(sub, chunk, now)
        if sub.pending is not None:
            self._hold(sub, None)

    def _hold(self, sub: Subscriber, chunk: tuple[bytes, float] | None) -> None:
        sub.backlog = deque() if chunk is None else deque((chunk,))
        if sub.reply is not None:
            sub.reply.pause()
        if sub.wake is not None and not sub.wake.done():
            self._share.queue(sub.wake)  # the task wakes in the turn it may account it

    async def _drain(self, sub: Subscriber, reply: StreamExchange) -> None:
        """Account what waits (the rest of a chunk, then the chunks kept) a share of a turn at
        a time, then read again; the first slice at once (woken in its turn, or by a deadline)."""
        share, backlog, waits = self._share, sub.backlog, False
        assert backlog is not None
        while True:
            if (rest := sub.pending) is not None:
                if waits and not share.open():
                    await share.next_turn()
                self._deliver(sub, *rest)
            elif backlog:
                chunk, at = backlog.popleft()
                if waits and not share.open():
                    await share.next_turn()
                self._feed(sub, chunk, at)
            else:
                break
            waits = True
        sub.backlog = None
        reply.resume()

    def _feed(self, sub: Subscriber, chunk: bytes, now: float) -> None:
        """Decode one chunk of ``sub``'s connection, read at ``now``, and account its events
        as far as this loop turn's share allows (the rest waits in ``sub.pending`` for
        ``_deliver``)."""
        oversize: DecodeError | None = None
        try:
            items = sub.decoder.feed(chunk)
        except DecodeError as exc:
            # events completed before the limit moved last_event_id: deliver them, or a
            # resuming server would never send them again
            # kept past the except block: without its traceback, which holds this frame
            items, oversize = exc.items, exc.with_traceback(None)
        if not items:
            if oversize is not None:
                raise Ended("oversize", sub.got_anything, str(oversize))
            return
        sub.got_anything = True
        if now - sub.rate_since >= 1.0:
            sub.rate_since, sub.rate_count = now, 0
        sub.rate_count += len(items)
        self._deliver(sub, items, 0, now, clock.wall_at(now), sub.started, oversize, 0, _INF, -_INF)

    def _deliver(
        self,
        sub: Subscriber,
        items: list[Item],
        i: int,
        now: float,
        wall: float,
        started: float,
        oversize: DecodeError | None,
        timed: int,
        first: float,
        last: float,
    ) -> None:
        """Account a chunk's ``items`` from ``i`` on, read at ``now`` (``wall``), until they
        are done or the turn's share is used up: then what is needed to go on (with the
        timed events' count and earliest and latest stamps so far) waits in
        ``sub.pending``."""
        share, stats = self._share, self.stats
        began = time.perf_counter()
        budget = share.left()
        end = len(items)
        spent = 0.0
        while i < end:
            item = items[i]
            i += 1
            if isinstance(item, Comment):
                continue
            if sub.awaiting_first:
                sub.awaiting_first = False
                stats.first_event(now - started)
            sub.last_event = now
            stamp = self._on_event(sub, item, now, wall)
            if stamp is not None:  # a finite time
                timed += 1
                if stamp < first:
                    first = stamp
                if stamp > last:
                    last = stamp
            spent = time.perf_counter() - began
            if spent >= budget:
                break
        share.use(spent)  # as measured after the last event (comments after it are cheap)
        if i < end:
            sub.pending = (items, i, now, wall, started, oversize, timed, first, last)
            return
        sub.pending = None
        if timed >= _BURST_MIN_EVENTS and last - first >= self.spec.burst_spread:
            # produced over a while, received at once: something held them back
            stats.burst(timed, last - first, now)
        if oversize is not None:
            raise Ended("oversize", True, str(oversize))
        if sub.rate_count > self.spec.max_event_rate:
            # a flood would starve every other probe of the loop: cut it and back off as
            # after a failed connection (never healthy, so the backoff keeps growing)
            raise Ended("flood", False, f"over {self.spec.max_event_rate} events/s")

    def _end(self, sub: Subscriber, ended: Ended, delay: float) -> None:
        """Count and log a connection's end and the wait before the next one."""
        self.stats.connection_ended(ended.reason)
        _log.warning(
            "stream_disconnected",
            stream=self.spec.name,
            subscriber=sub.index,
            connection_id=self.stats.connection_ids[sub.index],
            reason=ended.reason,
            error_message=ended.detail,
            connected_ms=round(ended.lived * 1000, 3),
            reconnect_in_ms=round(delay * 1000, 3),
        )

    # -- accounting ---------------------------------------------------------------------

    def _on_event(self, sub: Subscriber, event: Event, now: float, wall: float) -> float | None:
        """Account one event; its enqueue stamp (Unix seconds), if it has one."""
        spec, stats = self.spec, self.stats
        enqueued: float | None = None
        stats.event_received(now, wall)
        received = ReceivedEvent(spec.name, event, now, wall)
        if sub.index == 0:
            self.hub.publish(received)
        if spec.event_types and event.event not in spec.event_types:
            return None
        data = received.json() if self._needs_json else None
        if (stamp_of := self._stamp_of) is not None:
            enqueued = parse_timestamp(stamp_of(data), spec.lag_format)
            if enqueued is None:
                stats.untimed_event()
            else:  # None: no offset estimate yet (counted by the clock)
                lag = received.lag = stats.timed_event(wall - enqueued, wall, spec.late_after)
                received.offset = stats.clock.applied
                if lag is not None and lag >= 0:
                    for sink in self._lag_sinks:
                        sink.lag_measured(spec.name, lag, wall)
        if (seq_of := self._seq_of) is not None:
            seq = sequence_number(seq_of(data))
        else:
            seq = sequence_number(event.id) if spec.sequence_from_id else None
        if seq is None:
            stats.unsequenced_event()
            return enqueued
        tracker = sub.tracker
        lost_before = tracker.lost
        epoch = None if self._epoch_of is None else epoch_of(self._epoch_of(data))
        verdict = received.verdict = tracker.observe(seq, now, epoch)
        received.seq = seq
        stats.sequence_observed(verdict._value_, tracker.lost - lost_before)
        if verdict is Verdict.NEW and spec.subscribers > 1:
            self._fanout_observe(seq, now)
        return enqueued

    def _fanout_observe(self, seq: int, now: float) -> None:
        seen = self._fanout
        entry = seen.get(seq)
        if entry is None:
            seen[seq] = [now, 1.0]
            if len(seen) > _FANOUT_TRACKED:
                del seen[next(iter(seen))]
            return
        entry[1] += 1
        if entry[1] >= self.spec.subscribers:
            self.stats.fanout_observed(now - entry[0])
            del seen[seq]

    def expire_gaps(self) -> None:
        """Declare old gaps lost even when no new events arrive (called periodically)."""
        now = time.monotonic()
        for sub in self._subs:
            self.stats.gaps_expired(sub.tracker.expire(now))
