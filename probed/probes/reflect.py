"""``kind = "reflect"``: inject a tagged canary event, time its arrival on a live stream.

One run:

1. Make a fresh random ``nonce``, the next ``seq`` of this probe and ``sent_at``
   (RFC 3339 UTC, milliseconds) and fill them into ``body_template`` by plain
   text replacement of ``{nonce}``, ``{seq}`` and ``{sent_at}`` (not
   ``str.format``: the template is JSON and full of braces).
2. Start listening *before* injecting, so even an instant delivery is seen:

   ``transport = "sse"``
       wait on the ``Hub`` for an event of ``stream`` whose data contains the
       nonce. The stream's long-lived watcher must be connected; if it is not
       (or no watcher of that name runs), the run fails ``stream_down`` without
       injecting anything.
   ``transport = "websocket"``
       open a WebSocket to ``ws_path`` for this run (``ws_connect_seconds``) and
       read every message in a task of its own, noting the receive time of each
       one whose text contains the nonce.

3. ``t0 = time.monotonic()`` just before the inject request (``method`` ``path``
   with ``Content-Type: content_type``; ``inject_seconds``; status checked
   against ``expect_status``), then wait until ``t0 + lost_after`` at most for
   the first copy. Lag is ``receive time - t0`` on our own monotonic clock, so
   server clock skew cannot enter (it includes the inject request itself, as a
   user's "I clicked → I saw it" does).

Outcome, first match wins:

``stream_down``
    (before injecting) the watcher is down; or nothing arrived and by
    ``lost_after`` the watcher was down / the WebSocket had been closed by the
    server, so the event may have been sent while nobody listened.
``lost``
    nothing arrived within ``lost_after``.
``late``
    the first copy arrived after ``deadline`` (lag recorded).
``duplicated``
    the first copy was on time but more than one copy had arrived when the run
    ended (lag recorded).
success
    exactly one copy, within ``deadline``.

The duplicate window. After an on-time arrival the run keeps listening for
``DUPLICATE_WINDOW`` (0.25 s), cut short at ``t0 + lost_after``, and then counts
the copies. Duplicates from a double publish or a subscriber registered twice
follow the first copy within milliseconds along the same path, so a short window
catches them while adding at most a quarter second to a healthy run (the run's
duration, not its lag: ``delivery_lag_seconds`` is unaffected; mind it only when
setting ``latency_threshold`` on a reflect probe). Listening until ``lost_after``
would catch late redeliveries too but make every run last ``lost_after``; those
are the stream watcher's job, which accounts duplicates by sequence on every
event for as long as it runs. A late run does not wait further: it has failed
already, and its ``arrivals`` observation still shows any copy seen by then.

``seq`` is a per-probe counter kept in this module (``_SEQUENCES``, keyed by probe
name): it starts at 1 when the process starts, survives reloads that keep the
probe's name, and is taken even by runs that fail, so a gap in the ``seq`` values
a stream carries does not by itself mean loss.

Observations: ``transport``, ``inject_seconds``, ``arrivals`` (copies seen),
``delivery_lag_seconds`` and ``duplicate_watch_seconds`` (the time spent in the
duplicate window, 0 when none was needed; both only when a copy arrived),
``ws_connect_seconds`` (WebSocket). The run's ``probe_run`` log line repeats the
two as ``delivery_lag_ms`` and ``duplicate_watch_ms``: its ``latency_ms`` is the
whole run, duplicate window included. The nonce appears at most in a result's ``detail``, never in a
reason, label or observation. The run's overall ``timeout`` is enforced by
``run_probe`` (the config requires it to exceed ``lost_after``).

Reasons this kind reports itself: ``stream_down``, ``lost``, ``late``,
``duplicated``, and for the inject request ``status``, ``rate_limited``,
``oversize``, ``redirected_to_other_origin``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import aiohttp
from yarl import URL

from probed.config import ReflectProbe
from probed.errors import ProbeFailure
from probed.eventloop import wait_set
from probed.http.session import PhaseTimer
from probed.http.tls import ssl_for
from probed.probes.base import ProbeContext
from probed.probes.exchange import Response, check_status, send
from probed.results import ProbeResult, Reason

__all__ = ["DUPLICATE_WINDOW", "next_seq", "probe_reflect", "render_body"]

DUPLICATE_WINDOW: Final = 0.25
"""Seconds to keep listening for copies after an on-time arrival (see the module doc)."""

_WS_CLOSE_TIMEOUT: Final = 1.0
"""Seconds to wait for the server's answer to our WebSocket close frame."""

_SEQUENCES: dict[str, int] = {}
"""The last ``seq`` each reflect probe (by name) injected in this process."""


def next_seq(probe: str) -> int:
    """The next value of ``probe``'s sequence (1, 2, 3, …; per process)."""
    seq = _SEQUENCES.get(probe, 0) + 1
    _SEQUENCES[probe] = seq
    return seq


def _rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_body(template: str, *, nonce: str, seq: int, sent_at: str) -> str:
    """``template`` with ``{nonce}``, ``{seq}`` and ``{sent_at}`` replaced (plain text)."""
    return (
        template.replace("{nonce}", nonce).replace("{seq}", str(seq)).replace("{sent_at}", sent_at)
    )


class _Copies:
    """Receive times of the WebSocket messages carrying the nonce, and whether the socket ended."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.closed: str | None = None
        """Why the server side ended the socket, once it did."""
        self._changed = asyncio.Event()

    def add(self, received: float) -> None:
        self.times.append(received)
        self._changed.set()

    def close(self, why: str) -> None:
        self.closed = why
        self._changed.set()

    async def wait_first(self, seconds: float) -> float | None:
        """The first copy's receive time, waiting up to ``seconds`` (less if the socket ends)."""
        if seconds > 0:
            deadline = time.monotonic() + seconds
            while not self.times and self.closed is None:
                self._changed.clear()
                if not await wait_set(self._changed, deadline):
                    break
        return self.times[0] if self.times else None


async def _read_ws(ws: aiohttp.ClientWebSocketResponse, nonce: str, copies: _Copies) -> None:
    """Note the receive time of every message containing ``nonce`` until the socket ends."""
    needle = nonce.encode()
    try:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                if nonce in msg.data:
                    copies.add(time.monotonic())
            elif msg.type is aiohttp.WSMsgType.BINARY:
                if needle in msg.data:
                    copies.add(time.monotonic())
            elif msg.type is aiohttp.WSMsgType.ERROR:
                copies.close(f"websocket error: {msg.data!r}")
                return
        copies.close(f"websocket closed by the server (code {ws.close_code})")
    except aiohttp.ClientError as exc:  # the reader must never die with an unretrieved error
        copies.close(f"websocket failed: {type(exc).__name__}")


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end, without swallowing our own cancellation."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: _read_ws catches what it expects


def _ws_url(ctx: ProbeContext, path: str) -> URL:
    url = URL(ctx.url(path))
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme)
    return url.with_scheme(scheme) if scheme else url


async def _inject(ctx: ProbeContext, spec: ReflectProbe, body: str) -> tuple[float, Response]:
    """Send the inject request; return ``t0`` (monotonic, just before sending) and the response."""
    timer = PhaseTimer()
    t0 = time.monotonic()
    resp = await send(
        ctx,
        spec,
        method=spec.method,
        path=spec.path,
        headers=ctx.headers(spec, {"Content-Type": spec.content_type}),
        data=body.encode(),
        timer=timer,
    )
    ctx.observe(inject_seconds=time.monotonic() - t0)
    check_status(resp, spec.expect_status)
    return t0, resp


async def _judge(
    ctx: ProbeContext,
    spec: ReflectProbe,
    t0: float,
    resp: Response,
    nonce: str,
    wait_first: Callable[[float], Awaitable[float | None]],
    count: Callable[[], int],
    gone: Callable[[], str | None],
) -> ProbeResult:
    """Wait for the first copy until ``t0 + lost_after``; succeed or raise what went wrong.

    ``gone()`` says why nobody was listening (stream down, socket closed), or None.
    """
    lost_at = t0 + spec.lost_after
    first = await wait_first(lost_at - time.monotonic())
    if first is None:
        ctx.observe(arrivals=count())
        why = gone()
        if why is not None:
            raise resp.failure(Reason.STREAM_DOWN, f"event {nonce} not received: {why}")
        raise resp.failure(
            Reason.LOST, f"event {nonce} not received within lost_after {spec.lost_after:g}s"
        )
    lag = first - t0
    ctx.observe(delivery_lag_seconds=lag, duplicate_watch_seconds=0.0)
    if lag > spec.deadline:
        ctx.observe(arrivals=count())
        raise resp.failure(Reason.LATE, f"arrived after {lag:.3f}s, deadline {spec.deadline:g}s")
    window = min(DUPLICATE_WINDOW, lost_at - time.monotonic())
    if window > 0 and count() < 2:
        watch_started = time.monotonic()
        await asyncio.sleep(window)
        ctx.observe(duplicate_watch_seconds=time.monotonic() - watch_started)
    copies = count()
    ctx.observe(arrivals=copies)
    if copies > 1:
        raise resp.failure(Reason.DUPLICATED, f"event {nonce} arrived {copies} times")
    return ProbeResult.ok(status_code=resp.status, phases=resp.phases)


async def _via_hub(ctx: ProbeContext, spec: ReflectProbe, nonce: str, body: str) -> ProbeResult:
    ctx.observe(transport="sse")
    stream = spec.stream
    assert stream is not None  # the config requires it for transport "sse"
    hub = ctx.hub

    def down() -> str | None:
        connected = None if hub is None else hub.is_connected(stream)
        if connected is None:
            return f"no stream watcher {stream!r} is running"
        return None if connected else f"stream watcher {stream!r} is not connected"

    if hub is None:
        raise ProbeFailure(Reason.STREAM_DOWN, "no stream hub available to this probe")
    why = down()
    if why is not None:
        raise ProbeFailure(Reason.STREAM_DOWN, why)
    with hub.expect(stream, nonce) as waiter:
        t0, resp = await _inject(ctx, spec, body)
        return await _judge(
            ctx, spec, t0, resp, nonce, waiter.wait, lambda: waiter.arrival.count, down
        )


async def _via_websocket(
    ctx: ProbeContext, spec: ReflectProbe, nonce: str, body: str
) -> ProbeResult:
    ctx.observe(transport="websocket")
    assert spec.ws_path is not None  # the config requires it for transport "websocket"
    started = time.monotonic()
    try:
        connecting = ctx.session_for(spec).ws_connect(
            _ws_url(ctx, spec.ws_path),
            headers=ctx.headers(spec),
            ssl=ssl_for(ctx.target, ctx.ssl_context),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_WS_CLOSE_TIMEOUT),
            autoping=True,
            heartbeat=None,
            max_msg_size=spec.max_body_size,
        )
        async with connecting as ws:
            ctx.observe(ws_connect_seconds=time.monotonic() - started)
            copies = _Copies()
            reader = asyncio.create_task(_read_ws(ws, nonce, copies), name="probed-reflect-ws")
            try:
                t0, resp = await _inject(ctx, spec, body)
                return await _judge(
                    ctx,
                    spec,
                    t0,
                    resp,
                    nonce,
                    copies.wait_first,
                    lambda: len(copies.times),
                    lambda: copies.closed,
                )
            finally:
                await _stop(reader)
    except aiohttp.WSServerHandshakeError as exc:
        raise ProbeFailure(
            Reason.STREAM_DOWN,
            f"websocket handshake to {spec.ws_path} failed: status {exc.status} {exc.message}",
            status_code=exc.status or None,
            error_code=f"ws_http_{exc.status}",
        ) from None


async def probe_reflect(ctx: ProbeContext, spec: ReflectProbe) -> ProbeResult:
    """Inject a canary event with a fresh nonce and time its arrival on the stream or socket."""
    nonce = secrets.token_hex(12)
    body = render_body(
        spec.body_template, nonce=nonce, seq=next_seq(spec.name), sent_at=_rfc3339_now()
    )
    if spec.transport == "websocket":
        return await _via_websocket(ctx, spec, nonce, body)
    return await _via_hub(ctx, spec, nonce, body)
