"""Stream watcher on loopback SSE servers: reconnect, resume, stalls, faults, lag, fan-out."""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import trustme
from aiohttp import web
from conftest import free_port
from cycles import cyclic_garbage
from polling import until

from probed.config import SseStream, TargetConfig
from probed.http.session import create_sessions
from probed.http.wirestream import StreamExchange
from probed.steps import TurnCount, TurnShare
from probed.store import ResultStore, StreamStats
from probed.stream.decoder import SSEDecoder
from probed.stream.hub import Hub
from probed.stream.manager import StreamManager
from probed.stream.reconnect import ReconnectPolicy, max_connects
from probed.stream.watcher import EVENTS_PER_TURN, StreamWatcher

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def sse_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve ``handler`` at /sse on 127.0.0.1 (port 0), over TLS with ``tls``; yield the URL."""
    app = web.Application()
    app.router.add_get("/sse", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def open_stream(request: web.Request, **headers: str) -> web.StreamResponse:
    """Start an SSE response."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
    await resp.prepare(request)
    return resp


def event(seq: int, lag: float = 0.0, ident: str | None = None, skew: float = 0.0) -> bytes:
    """One SSE event with JSON data carrying seq and an epoch-ms enqueue stamp."""
    stamp = int((time.time() - lag + skew) * 1000)
    head = f"id: {seq if ident is None else ident}\n"
    return f'{head}data: {{"seq": {seq}, "enqueued_at": {stamp}}}\n\n'.encode()


def stream_spec(**fields: Any) -> SseStream:
    """An SSE stream spec for target 't' with fast timeouts for tests."""
    base: dict[str, Any] = {
        "name": "events", "target": "t", "path": "/sse", "idle_timeout": "2s",
        "reconnect_initial": "50ms", "reconnect_max": "200ms", "sequence_field": "seq",
        "lag_field": "enqueued_at", "connect_timeout": "2s", "min_reconnect_delay": "20ms",
    }  # fmt: skip
    base.update(fields)
    return SseStream(**base)


@asynccontextmanager
async def watching(
    base_url: str, spec: SseStream, **target_fields: Any
) -> AsyncIterator[tuple[StreamStats, Hub]]:
    """Run a StreamWatcher for ``spec`` against ``base_url`` until the block ends."""
    target = TargetConfig(base_url=base_url, **target_fields)
    target._finish_headers()
    store = ResultStore()
    hub = Hub()
    fresh, pooled = create_sessions()  # the daemon's streams use its pooled session
    try:
        manager = StreamManager(store, hub, pooled)
        async with asyncio.TaskGroup() as tg:
            manager.start(tg, [spec], {"t": target})
            try:
                yield store.streams[spec.name], hub
            finally:
                await manager.stop()
    finally:
        await fresh.close()
        await pooled.close()


async def test_resume_with_last_event_id_has_no_false_loss() -> None:
    """After a disconnect the watcher sends Last-Event-ID and a resuming server causes no loss."""
    seen_ids: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        seen_ids.append(last)
        start = int(last) + 1 if last else 1
        resp = await open_stream(request)
        for seq in range(start, start + 5):
            await resp.write(event(seq))
        return resp  # closes: the watcher must reconnect and resume

    async with sse_server(handler) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 20)
    assert [None, "5", "10", "15"] == seen_ids[:4]
    assert (0, 0, 0) == (stats.lost, stats.duplicated, stats.out_of_order)
    assert stats.reconnects["eof"] >= 3


async def test_server_without_resume_shows_true_loss() -> None:
    """A server that skips events across a reconnect produces counted gaps (lost)."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        resp = await open_stream(request)
        base = (calls - 1) * 10  # 1..5, then 11..15: 6..10 never sent
        for seq in range(base + 1, base + 6):
            await resp.write(event(seq))
        if calls >= 2:
            await asyncio.sleep(5)
        return resp

    spec = stream_spec(loss_timeout="100ms")
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.lost >= 5)
    assert 5 == stats.lost


async def test_restarted_producer_counts_one_reset_and_no_duplicates() -> None:
    """A producer restart (sequence back to 1) counts one reset and zero duplicates."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        resp = await open_stream(request)
        for seq in range(1, 374 if calls == 1 else 51):  # restarted: Last-Event-ID ignored
            await resp.write(event(seq))
        if calls >= 2:
            await asyncio.sleep(5)
        return resp

    async with sse_server(handler) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 373 + 50)
    assert (1, 0, 0, 0) == (stats.sequence_resets, stats.duplicated, stats.lost, stats.out_of_order)


async def test_changed_epoch_is_a_reset_without_a_reconnect() -> None:
    """With sequence_epoch_field, a changed epoch restarts the sequence on the same connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for epoch, seq in [("a", n) for n in range(1, 41)] + [("b", n) for n in range(1, 11)]:
            await resp.write(f'data: {{"seq": {seq}, "run": {{"id": "{epoch}"}}}}\n\n'.encode())
        await asyncio.sleep(5)
        return resp

    spec = stream_spec(sequence_epoch_field="run.id", lag_field=None)
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.received >= 50)
    assert (1, 0, 0) == (stats.sequence_resets, stats.duplicated, stats.reconnects.total())


async def test_stall_is_detected_and_reconnected() -> None:
    """No event and no heartbeat for idle_timeout ends the connection with reason stalled."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await resp.write(event(1))
        await asyncio.sleep(10)
        return resp

    async with (
        sse_server(handler) as url,
        watching(url, stream_spec(idle_timeout="300ms")) as (
            stats,
            _,
        ),
    ):
        await until(lambda: stats.reconnects["stalled"] >= 1)


async def test_heartbeat_comments_keep_the_stream_alive() -> None:
    """Heartbeat comments count as activity, so a quiet stream is not stalled."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for _ in range(20):
            await resp.write(b": heartbeat\n\n")
            await asyncio.sleep(0.05)
        await asyncio.sleep(10)
        return resp

    async with (
        sse_server(handler) as url,
        watching(url, stream_spec(idle_timeout="300ms")) as (
            stats,
            _,
        ),
    ):
        await asyncio.sleep(0.8)
        assert 0 == stats.reconnects["stalled"]
        assert stats.last_byte is not None
        assert 1 == stats.connected


async def test_wrong_content_type() -> None:
    """A 200 that is not text/event-stream is refused with reason content_type."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"events": []})

    async with sse_server(handler) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.reconnects["content_type"] >= 2)
        assert 0 == stats.connected
        assert 0 == stats.received


async def test_non_200_status_and_204() -> None:
    """A 503 reconnects with reason status; a 204 is recorded as no_content."""
    statuses = iter([503, 503, 204])

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=next(statuses, 204))

    async with sse_server(handler) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.reconnects["no_content"] >= 1)
    assert 2 == stats.reconnects["status"]


async def test_oversize_event() -> None:
    """A line over max_line_size ends the connection with reason oversize, memory bounded."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await resp.write(b"data: " + b"x" * (3 << 20) + b"\n\n")
        await asyncio.sleep(5)
        return resp

    spec = stream_spec(max_line_size=1 << 20, max_event_size=2 << 20)
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.reconnects["oversize"] >= 1)
        assert 0 == stats.received


async def test_non_numeric_ids_do_not_make_false_gaps() -> None:
    """Composite ids like 1795418838:0 are not sequence numbers: no gaps, counted unsequenced."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for n in range(6):
            await resp.write(f"id: 1795418838:{n}\ndata: {{}}\n\n".encode())
        await asyncio.sleep(5)
        return resp

    spec = stream_spec(sequence_field=None, sequence_from_id=True, loss_timeout="50ms")
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.received >= 6)
        await asyncio.sleep(0.2)
    assert (0, 0, 6, 6) == (stats.lost, stats.duplicated, stats.unsequenced, stats.untimed)


async def test_numeric_ids_as_sequence() -> None:
    """With sequence_from_id, numeric ids are gap-checked."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for seq in (1, 2, 4, 4, 3):
            await resp.write(f"id: {seq}\ndata: x\n\n".encode())
        await asyncio.sleep(5)
        return resp

    spec = stream_spec(sequence_field=None, sequence_from_id=True, lag_field=None)
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.received >= 5)
    assert (0, 1, 1) == (stats.lost, stats.duplicated, stats.out_of_order)


async def test_delivery_lag_is_measured() -> None:
    """Lag is our receive time minus the event's enqueue stamp."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for seq in range(1, 11):
            await resp.write(event(seq, lag=0.4))
        await asyncio.sleep(5)
        return resp

    async with sse_server(handler) as url, watching(url, stream_spec()) as (stats, _):
        await until(lambda: stats.received >= 10)
    hist = dict(stats.delivery_lag.cumulative())
    assert 0 == hist["0.25"]
    assert 10 == hist["0.5"]
    assert 0.4 == round(stats.delivery_lag.sum / 10, 1)


async def test_clock_offset_and_negative_lag() -> None:
    """Trusted, a server clock 30 s ahead shows as a ~30 s skew and counted negative lags."""

    async def handler(request: web.Request) -> web.StreamResponse:
        date = formatdate(time.time() + 30, usegmt=True)
        resp = await open_stream(request, Date=date)
        for seq in range(1, 6):
            await resp.write(event(seq, skew=30))
        await asyncio.sleep(5)
        return resp

    spec = stream_spec(clock="trust")
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.received >= 5)
    assert stats.clock_offset is not None
    assert abs(stats.clock_offset - 30) <= 1.0
    assert 5 == stats.negative_lag
    assert 0 == stats.delivery_lag.count
    assert stats.clock.skewed


async def test_fanout_subscribers() -> None:
    """subscribers = N holds N connections and measures the per-event spread across them."""
    queues: list[asyncio.Queue[bytes]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(queue)
        while True:
            await resp.write(await queue.get())

    spec = stream_spec(subscribers=3)
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.connected == 3 and len(queues) == 3)
        assert 3 == len(set(stats.connection_ids))
        for seq in range(1, 6):
            for i, queue in enumerate(queues):
                await asyncio.sleep(0.02 * i)  # subscriber i gets each event ~20 ms later
                queue.put_nowait(event(seq))
        await until(lambda: stats.received >= 15)
    assert 5 == stats.fanout_spread.count
    assert 0.03 < stats.fanout_spread.sum / 5 < 0.5


async def test_retry_field_delays_reconnect() -> None:
    """The server's retry: field sets the minimum reconnect delay."""
    connects: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        connects.append(time.monotonic())
        resp = await open_stream(request)
        await resp.write(b"retry: 400\n\n")
        return resp

    async with sse_server(handler) as url, watching(url, stream_spec()) as _:
        await until(lambda: len(connects) >= 3)
    gaps = [b - a for a, b in itertools.pairwise(connects)]
    assert all(g >= 0.39 for g in gaps), gaps


async def test_short_connections_back_off_whatever_retry_says() -> None:
    """retry: 0 and one event per connection: the backoff grows until a connection lives long.

    A connection shorter than min_connection_lifetime is a failed attempt whatever it
    received; one that lived at least that long starts the backoff over.
    """
    connects: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        connects.append(time.monotonic())
        resp = await open_stream(request)
        await resp.write(b"retry: 0\n" + event(len(connects)))
        if len(connects) == 6:
            await asyncio.sleep(0.4)  # the sixth connection lives past the minimum lifetime
        return resp

    spec = stream_spec(
        min_reconnect_delay="20ms",
        reconnect_initial="40ms",
        reconnect_max="640ms",
        min_connection_lifetime="300ms",
    )
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: len(connects) >= 7, within=5.0)
    gaps = [b - a for a, b in itertools.pairwise(connects)]
    # backoff step n is 40ms * 2**(n-1), jittered to between half and all of it
    lows = [0.02, 0.04, 0.08, 0.16, 0.32]
    assert all(gap >= low - 0.005 for gap, low in zip(gaps, lows, strict=False)), gaps
    # after the long-lived sixth connection: the floor (jittered up to 1.5x), not 640ms
    assert gaps[5] - 0.4 < 0.1, gaps
    assert stats.received >= 7


class _LowestJitter(random.Random):
    """Every jittered wait at its shortest: the most connections the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return a


def test_documented_reconnect_bounds_hold_for_the_defaults() -> None:
    """With the defaults: 61 a minute by construction, 9 in the first minute of early closes,
    then one every 15 s at most, and under 30 a minute when long connections reset the backoff.
    """
    spec = SseStream(name="s", target="t")
    policy = ReconnectPolicy(spec, StreamStats("s", "t", 1), _LowestJitter())

    def busiest_minute(starts: list[float]) -> int:
        return max(sum(1 for t in starts if s <= t < s + 60) for s in starts)

    assert 61 == max_connects(spec, 60)
    starts = [0.0]  # every connection ends at once: each is a failed attempt
    for failures in range(1, 40):
        starts.append(starts[-1] + policy.delay(failures=failures, retry_ms=0))
    assert 9 == sum(1 for t in starts if t < 60)
    assert {15.0} == {b - a for a, b in itertools.pairwise(starts[7:])}  # reconnect_max / 2
    for short in range(
        10
    ):  # one connection living min_connection_lifetime, then `short` early ends
        starts, now = [], 0.0
        while now < 600:
            starts.append(now)
            now += spec.min_connection_lifetime + policy.delay(failures=0, retry_ms=0)
            for failures in range(1, short + 1):
                starts.append(now)
                now += policy.delay(failures=failures, retry_ms=0)
        assert busiest_minute(starts) < 30, short


@pytest.mark.parametrize(
    ("failures", "retry_ms"),
    [(0, None), (0, 0), (0, 200), (1, None), (2, 0)],
    ids=["healthy", "healthy-retry-0", "healthy-retry-200ms", "first-failure", "second-failure"],
)
def test_streams_that_ended_together_do_not_come_back_together(
    failures: int, retry_ms: int | None
) -> None:
    """250 streams of one target cut at once (a restart, a proxy's idle timeout): waits the
    floor raised were all exactly ``min_reconnect_delay``, so every stream came back in the
    same few hundred milliseconds, at the target and on the loop (a soak's longest lag, 60
    ms). The floor is jittered as any wait is: spread over 1 to 1.5 times it."""
    spec = SseStream(name="s", target="t")
    rng = random.Random(7)
    waits = [
        ReconnectPolicy(spec, StreamStats("s", "t", 1), rng).delay(
            failures=failures, retry_ms=retry_ms
        )
        for _ in range(250)
    ]
    floor = spec.min_reconnect_delay
    assert min(waits) >= floor
    assert max(waits) <= 1.5 * floor
    assert max(waits) - min(waits) >= 0.4 * floor
    assert len({round(w, 3) for w in waits}) >= 100


async def test_refused_stream_names_its_target_as_a_url() -> None:
    """A refused stream (and its clock check) logs http://host:port, never the client's objects."""
    port = free_port()
    spec = stream_spec(time_path="/time", clock_check_interval="50ms")
    with structlog.testing.capture_logs() as logs:
        async with watching(f"http://127.0.0.1:{port}", spec) as (stats, _):
            await until(lambda: stats.reconnects["connect_refused"] >= 2)
    expected = {f"cannot connect to http://127.0.0.1:{port}: Connection refused"}
    for event in ("stream_disconnected", "clock_check_failed"):
        assert expected == {e["error_message"] for e in logs if e["event"] == event}, event
    assert not any("object at 0x" in str(e) for e in logs)


async def test_primary_connection_feeds_the_hub() -> None:
    """Events of the primary connection reach hub subscribers; is_connected tracks it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await asyncio.sleep(0.2)
        await resp.write(b'data: {"nonce": "abc123"}\n\n')
        await asyncio.sleep(5)
        return resp

    async with sse_server(handler) as url, watching(url, stream_spec(subscribers=2)) as (_, hub):
        with hub.expect("events", "abc123") as waiter:
            await until(lambda: hub.is_connected("events") is True)
            arrived = await waiter.wait(2.0)
        assert arrived is not None
        assert 1 == waiter.arrival.count  # only the primary publishes
    assert hub.is_connected("events") is None


async def test_unchanged_stream_keeps_its_connection_on_apply() -> None:
    """StreamManager.apply keeps unchanged watchers' connections and restarts changed ones."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        while True:
            await resp.write(b": hb\n\n")
            await asyncio.sleep(0.05)

    async with sse_server(handler) as url:
        target = TargetConfig(base_url=url)
        target._finish_headers()
        store, hub = ResultStore(), Hub()
        a, b = stream_spec(name="a"), stream_spec(name="b")
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
            manager = StreamManager(store, hub, session)
            manager.start(tg, [a, b], {"t": target})
            await until(lambda: store.streams["a"].connected == 1 == store.streams["b"].connected)
            ids_a = list(store.streams["a"].connection_ids)
            changed = stream_spec(name="b", idle_timeout="3s")
            assert ([], ["b"], []) == manager.apply([a, changed], {"t": target})
            await until(lambda: store.streams["b"].connected == 1)
            assert ids_a == store.streams["a"].connection_ids
            assert ([], [], ["a"]) == manager.apply([changed], {"t": target})
            assert "a" not in store.streams
            await manager.stop()


async def test_clock_offset_from_time_endpoint() -> None:
    """With time_path set, the offset comes from the endpoint's {"time": …} answer."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/time":
            return web.json_response({"time": time.time() - 12.5})
        resp = await open_stream(request)
        await asyncio.sleep(5)
        return resp

    app = web.Application()
    app.router.add_get("/sse", handler)
    app.router.add_get("/time", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        spec = stream_spec(time_path="/time", clock_check_interval="100ms")
        async with watching(url, spec) as (stats, _):
            await until(lambda: stats.clock_offset is not None)
        assert stats.clock_offset is not None
        assert -12.5 == round(stats.clock_offset, 1)
    finally:
        await runner.cleanup()


async def test_events_before_an_oversize_line_are_kept() -> None:
    """Events completed in the same chunk before an oversize line are still accounted."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        if request.headers.get("Last-Event-ID"):
            await asyncio.sleep(5)
            return resp
        await resp.write(event(1) + event(2) + b"data: " + b"x" * 4096 + b"\n\n")
        await asyncio.sleep(5)
        return resp

    spec = stream_spec(max_line_size=1024, max_event_size=2048)
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: stats.reconnects["oversize"] >= 1)
    assert 2 == stats.received


@pytest.fixture(scope="module")
def tls_server() -> tuple[trustme.CA, ssl.SSLContext]:
    """A private CA and a server context with its certificate for 127.0.0.1."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return ca, context


@pytest.mark.parametrize(
    ("trust", "connects"),
    [("ca_file", True), ("insecure_skip_verify", True), ("system", False), ("missing", False)],
)
async def test_tls_target_settings_apply_to_streams(
    trust: str,
    connects: bool,
    tls_server: tuple[trustme.CA, ssl.SSLContext],
    tmp_path: Path,
) -> None:
    """The watcher honours the target's ca_file and insecure_skip_verify like the probes do."""
    ca, server_context = tls_server
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    options: dict[str, dict[str, Any]] = {
        "ca_file": {"ca_file": tmp_path / "ca.pem"},
        "insecure_skip_verify": {"insecure_skip_verify": True},
        "system": {},
        "missing": {"ca_file": tmp_path / "missing.pem"},
    }
    fields = options[trust]

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        for seq in range(1, 4):
            await resp.write(event(seq))
        await asyncio.sleep(5)
        return resp

    async with (
        sse_server(handler, server_context) as url,
        watching(url, stream_spec(), **fields) as (stats, _),
    ):
        if connects:
            await until(lambda: stats.received >= 3)
        else:
            await until(lambda: stats.reconnects["tls"] >= 1)
    assert (3 if connects else 0) == stats.received
    assert connects != ({"tls"} == set(stats.reconnects))


async def test_stream_redirect_to_another_host_is_refused_without_its_secret() -> None:
    """A stream redirected to another origin ends redirected_to_other_origin; no header follows."""
    seen: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await open_stream(request)

    other = web.Application()
    other.router.add_get("/sse", elsewhere)
    runner = web.AppRunner(other, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.2", 0).start()
    away = f"http://127.0.0.2:{runner.addresses[0][1]}/sse"

    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(away)

    try:
        async with (
            sse_server(handler) as url,
            watching(url, stream_spec(), headers={"X-Api-Key": "k-secret-1"}) as (stats, _),
        ):
            await until(lambda: stats.reconnects["redirected_to_other_origin"] >= 2)
    finally:
        await runner.cleanup()
    assert [] == seen


@pytest.mark.parametrize("cut", ["reset", "stall"])
async def test_a_connection_that_ends_badly_leaves_no_reference_cycle(cut: str) -> None:
    """A connection cut mid-stream (aiohttp stores a ClientPayloadError in the reader,
    and its traceback holds the response and the reader again) or ended by the idle
    timeout must be freed by reference counting. Cyclic garbage is left for a full
    collection: memory until then, and a stall of the loop when it comes."""
    connections = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal connections
        connections += 1
        resp = await open_stream(request)
        for seq in range(3):
            await resp.write(event(connections * 10 + seq))
        if cut == "reset":
            assert request.transport is not None
            request.transport.abort()
        else:
            await asyncio.sleep(5)
        return resp

    spec = stream_spec(
        reconnect_initial="10ms", reconnect_max="20ms", min_reconnect_delay="10ms",
        idle_timeout="0.1s" if cut == "stall" else "2s",
    )  # fmt: skip
    async with sse_server(handler) as url, watching(url, spec) as (stats, _):
        await until(lambda: connections >= 3, 10.0)
        with cyclic_garbage() as left:
            first = connections
            await until(lambda: connections >= first + 10, 20.0)
    assert stats.reconnects["protocol_error" if cut == "reset" else "stalled"] >= 10
    assert [] == left


@asynccontextmanager
async def watching_twenty(
    base_url: str, *, share: TurnShare | None = None, connects: TurnCount | None = None
) -> AsyncIterator[list[StreamStats]]:
    """Twenty streams of ``base_url`` under one ``StreamManager`` (with its ``share`` of each
    turn for events and its ``connects``), started in one turn; yields their stats until the
    block ends."""
    specs = [stream_spec(name=f"s{i}", idle_timeout="30s") for i in range(20)]
    store = ResultStore()
    fresh, pooled = create_sessions()
    target = TargetConfig(base_url=base_url)
    target._finish_headers()
    manager = StreamManager(store, Hub(), pooled, share=share, connects=connects)
    try:
        async with asyncio.TaskGroup() as tg:
            manager.start(tg, specs, {"t": target})
            try:
                yield [store.streams[s.name] for s in specs]
            finally:
                await manager.stop()
    finally:
        await fresh.close()
        await pooled.close()


async def _twenty_handed_a_backlog(
    events: int, each_turn: Callable[[list[StreamStats]], None], *, one_slice: bool = True
) -> list[StreamStats]:
    """Twenty streams, one slice of accounting a turn (or the daemon's share of each turn,
    without ``one_slice``), each handed ``events`` events in one write at once: calls
    ``each_turn(streams)`` every loop turn until all are accounted."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await release.wait()
        await resp.write(b"".join(event(seq) for seq in range(1, events + 1)))
        await asyncio.sleep(30)
        return resp

    share = TurnShare(0.0) if one_slice else None
    async with sse_server(handler) as url, watching_twenty(url, share=share) as streams:
        await until(lambda: all(s.connected for s in streams))
        release.set()
        while sum(s.received for s in streams) < 20 * events:
            await asyncio.sleep(0)
            each_turn(streams)
    return streams


async def test_a_backlog_on_many_streams_is_accounted_a_share_per_loop_turn() -> None:
    """Twenty streams each handed 100 events in one write: the watchers account them a
    share of each loop turn at a time, so a task that ticks every turn sees few events
    accounted between two of its ticks (in one go: a whole backlog or more), and every
    event is accounted in the end, in order."""
    counts = [0]
    streams = await _twenty_handed_a_backlog(
        100, lambda streams: counts.append(sum(s.received for s in streams))
    )
    most = max(b - a for a, b in itertools.pairwise(counts))
    assert most <= 3, f"{most} events accounted in one loop turn"
    assert all((0, 0, 0) == (s.lost, s.duplicated, s.out_of_order) for s in streams)


async def test_a_backlog_on_many_streams_wakes_each_stream_in_its_own_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty streams each handed a backlog in one turn, with one slice a turn: a stream's
    task is woken for its backlog in the turn it may account it, not all twenty in the turn
    the data came (each only to find the share used and wait; with 250 streams that turn
    alone took 15-20 ms, ``bench/stream_storm.py --backlog 30``)."""
    tick, entered = [0], collections.Counter[int]()
    drain = StreamWatcher._drain

    async def counted(self: StreamWatcher, *args: Any) -> None:
        entered[tick[0]] += 1
        await drain(self, *args)

    monkeypatch.setattr(StreamWatcher, "_drain", counted)

    def ticked(streams: list[StreamStats]) -> None:
        tick[0] += 1

    await _twenty_handed_a_backlog(20, ticked)
    assert sum(entered.values()) >= 19
    assert max(entered.values()) <= 2, f"{max(entered.values())} streams woken in one turn"


async def test_one_event_to_many_streams_at_once_is_accounted_a_share_per_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty streams each handed one event in the same turn (a reflect probe's event, which
    its target sends to every stream): what a connection's data costs besides its events'
    accounting (the read, the framing, the decoding) counts against the turn's share too.
    Here each chunk's decoding takes half the daemon's share on the clock, so a task that
    ticks every turn sees at most three streams' events accounted between two ticks, not
    all twenty (the 250 streams of ``bench/stream_storm.py --backlog 1`` were read, decoded
    and accounted in one go, 7-12 ms, with the share counting only the accounting)."""
    ahead, now, feed = [0.0], time.perf_counter, SSEDecoder.feed

    def slow(self: SSEDecoder, chunk: bytes) -> Any:
        ahead[0] += EVENTS_PER_TURN / 2
        return feed(self, chunk)

    monkeypatch.setattr(time, "perf_counter", lambda: now() + ahead[0])
    monkeypatch.setattr(SSEDecoder, "feed", slow)
    counts = [0]
    streams = await _twenty_handed_a_backlog(
        1, lambda streams: counts.append(sum(s.received for s in streams)), one_slice=False
    )
    most = max(b - a for a, b in itertools.pairwise(counts))
    assert most <= 3, f"{most} streams' events accounted in one loop turn"
    assert all((1, 0, 0) == (s.received, s.lost, s.duplicated) for s in streams)


async def test_streams_starting_together_connect_a_few_per_loop_turn() -> None:
    """Twenty streams started in one turn (as at start-up, or after a target came back):
    with one connection start per turn, a task that ticks every turn sees at most one new
    attempt between two of its ticks (together: all twenty), and all connect."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await resp.write(event(1))
        await asyncio.sleep(30)
        return resp

    async with (
        sse_server(handler) as url,
        watching_twenty(url, connects=TurnCount(0)) as streams,
    ):
        counts = [0]
        while counts[-1] < len(streams):
            await asyncio.sleep(0)
            counts.append(sum(1 for s in streams if s.connection_ids[0]))
        await until(lambda: all(s.connected for s in streams))
    most = max(b - a for a, b in itertools.pairwise(counts))
    assert most <= 1, f"{most} connection attempts started in one loop turn"


async def _turns_while_twenty_are_cut(count: Callable[[list[StreamStats]], int]) -> int:
    """Twenty streams, one connection step per turn, closed by their server at once (a
    target's restart, a proxy cutting every stream): the most ``count(streams)`` grew between
    two ticks of a task that ticks every turn, until it reached twenty; every end is then
    counted."""
    cut = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await resp.write(event(1))
        await cut.wait()
        assert request.transport is not None
        request.transport.close()
        return resp

    async with (
        sse_server(handler) as url,
        watching_twenty(url, connects=TurnCount(0)) as streams,
    ):
        await until(lambda: all(s.connected for s in streams))
        cut.set()
        counts = [0]
        while counts[-1] < len(streams):
            await asyncio.sleep(0)
            counts.append(count(streams))
        await until(lambda: sum(sum(s.reconnects.values()) for s in streams) == 20)
    return max(b - a for a, b in itertools.pairwise(counts))


async def test_streams_ending_together_end_a_few_per_loop_turn() -> None:
    """Twenty connections cut at once: with one connection step per turn, at most one end is
    handled between two ticks (together: all twenty), each still counted and logged, and all
    reconnect."""
    most = await _turns_while_twenty_are_cut(
        lambda streams: sum(sum(s.reconnects.values()) for s in streams)
    )
    assert most <= 1, f"{most} connection ends handled in one loop turn"


async def test_streams_cut_together_close_their_sockets_a_few_per_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty connections cut at once: each socket is closed (the transport's
    ``connection_lost``, a system call each) when its end takes its turn, not all in the turn
    their server's FIN came, so at most two are closed between two ticks."""
    closed = [0]
    lost = StreamExchange.connection_lost

    def counting(self: StreamExchange, exc: BaseException | None) -> None:
        closed[0] += 1
        lost(self, exc)

    monkeypatch.setattr(StreamExchange, "connection_lost", counting)
    most = await _turns_while_twenty_are_cut(lambda _: closed[0])
    assert most <= 2, f"{most} stream sockets closed in one loop turn"


async def test_a_tls_stream_cut_by_its_server_ends_without_a_transport_warning(
    tls_server: tuple[trustme.CA, ssl.SSLContext],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over TLS the transport closes a connection its peer ended (it cannot keep it open as
    a plain socket can): the end is counted, reconnected, and nothing is logged about it."""
    ca, server_context = tls_server
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await resp.write(event(1))
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp

    spec = stream_spec(reconnect_initial="10ms", reconnect_max="20ms", min_reconnect_delay="10ms")
    async with (
        sse_server(handler, server_context) as url,
        watching(url, spec, ca_file=tmp_path / "ca.pem") as (stats, _),
    ):
        await until(lambda: sum(stats.reconnects.values()) >= 3)
    assert {"protocol_error"} == set(stats.reconnects), stats.reconnects
    assert [] == [r.getMessage() for r in caplog.records if r.name == "asyncio"]
