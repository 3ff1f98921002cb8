"""The demo target's streaming product: SSE, WebSocket, outbox, import jobs and stream faults.

The SSE stream is read with plain aiohttp and a minimal block splitter below
(probed's own decoder is tested on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import pytest

import probed.demo.events as demo_events
import probed.demo.imports as demo_imports
from probed.demo import DemoTarget, Faults

PASSWORD = "correct-horse-battery-staple"
STREAM = "/api/v1/events/stream"
WS = "/api/v1/events/ws"
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass(frozen=True)
class Block:
    """One SSE block: the raw lines up to a blank line, and its fields."""

    raw: bytes
    fields: dict[str, str]

    @property
    def is_comment(self) -> bool:
        """Whether every line is a comment (a heartbeat)."""
        return all(line.startswith(b":") for line in self.raw.split(b"\n"))

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` field parsed as JSON."""
        parsed: dict[str, Any] = json.loads(self.fields["data"])
        return parsed


class SSEReader:
    """Splits a response body into SSE blocks on LF LF (the demo only writes LF)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._buffer = bytearray()
        self._scanned = 0

    async def block(self, within: float = 1.0) -> Block | None:
        """The next block within ``within`` seconds, or ``None`` at the end of the stream."""
        async with asyncio.timeout(within):
            while (end := self._buffer.find(b"\n\n", self._scanned)) < 0:
                self._scanned = max(0, len(self._buffer) - 1)
                chunk = await self._response.content.readany()
                if not chunk:
                    return None
                self._buffer += chunk
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        self._scanned = 0
        fields: dict[str, str] = {}
        for line in raw.decode().split("\n"):
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        return Block(raw, fields)

    async def event(self, within: float = 1.0) -> Block:
        """The next non-comment block (heartbeats skipped); fails at the end of the stream."""
        async with asyncio.timeout(within):
            while True:
                block = await self.block(within)
                assert block is not None, "stream ended"
                if not block.is_comment:
                    return block

    async def events(self, count: int, within: float = 1.0) -> list[Block]:
        """The next ``count`` events, each within ``within`` seconds."""
        return [await self.event(within) for _ in range(count)]


@pytest.fixture
async def target() -> AsyncIterator[DemoTarget]:
    """A healthy demo target on loopback with seeded draws."""
    async with DemoTarget(password=PASSWORD, seed=1) as demo:
        yield demo


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session with a short overall timeout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    target: DemoTarget,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> AsyncIterator[tuple[aiohttp.ClientResponse, SSEReader]]:
    """Open the SSE stream; the target has registered it once this yields."""
    async with session.get(target.base_url + STREAM + query, headers=headers) as resp:
        assert 200 == resp.status
        yield resp, SSEReader(resp)


async def post_outbox(
    session: aiohttp.ClientSession, target: DemoTarget, body: object
) -> dict[str, Any]:
    """POST to the outbox, expect 202, return the answer."""
    async with session.post(f"{target.base_url}/api/v1/outbox", json=body) as resp:
        assert 202 == resp.status
        answer: dict[str, Any] = await resp.json()
        return answer


def seqs(blocks: list[Block]) -> list[int]:
    """The ``seq`` of each event."""
    return [block.data["seq"] for block in blocks]


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 stamp."""
    return datetime.fromisoformat(stamp).timestamp()


# --- SSE basics --------------------------------------------------------------------------


async def test_stream_content_type_and_heartbeat(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """The stream is ``text/event-stream``, not cached, and sends ``: heartbeat`` blocks."""
    await target.set_faults(Faults(heartbeat_interval=0.1))
    async with open_stream(session, target) as (resp, sse):
        assert "text/event-stream" == resp.headers["Content-Type"]
        assert "no-cache" == resp.headers["Cache-Control"]
        started = time.monotonic()
        first, second = await sse.block(), await sse.block()
        elapsed = time.monotonic() - started
    assert first is not None
    assert second is not None
    assert (b": heartbeat", b": heartbeat") == (first.raw, second.raw)
    assert 0.15 <= elapsed < 0.6


async def test_outbox_event_arrives_on_stream(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """An outbox post answers its seq and stamp and arrives at once as an SSE event."""
    body = {"type": "reflect.ping", "probe": "reflect", "nonce": "é-1"}
    async with open_stream(session, target) as (_, sse):
        started = time.monotonic()
        answer = await post_outbox(session, target, body)
        block = await sse.event()
        elapsed = time.monotonic() - started
    assert ["enqueued_at", "seq"] == sorted(answer)
    assert RFC3339_MS.match(answer["enqueued_at"])
    assert abs(time.time() - epoch(answer["enqueued_at"])) < 2.0
    expected = {
        "seq": answer["seq"],
        "type": "reflect.ping",
        "enqueued_at": answer["enqueued_at"],
        "payload": body,
    }
    assert {"id": str(answer["seq"]), "event": "reflect.ping"} == {
        key: block.fields[key] for key in ("id", "event")
    }
    assert json.dumps(expected, separators=(",", ":"), ensure_ascii=False) == block.fields["data"]
    assert elapsed < 0.5


async def test_outbox_default_type_and_monotonic_seq(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """A body without ``type`` is an ``outbox.event``; seqs count up across outbox and API."""
    async with open_stream(session, target) as (_, sse):
        first = (await post_outbox(session, target, {"x": 1}))["seq"]
        second = target.publish("api.event", {"y": 2})
        blocks = await sse.events(2)
    assert first + 1 == second
    assert ["outbox.event", "api.event"] == [block.fields["event"] for block in blocks]
    assert [first, second] == seqs(blocks)


async def test_stream_delay_delays_publishing(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """With ``stream_delay`` the post answers at once and the event arrives that much later."""
    await target.set_faults(Faults(stream_delay=0.3))
    async with open_stream(session, target) as (_, sse):
        started = time.monotonic()
        answer = await post_outbox(session, target, {"type": "slow"})
        answered = time.monotonic() - started
        block = await sse.event()
        arrived = time.monotonic() - started
    assert answer["seq"] == block.data["seq"]
    assert answered < 0.2
    assert 0.3 <= arrived < 0.8


async def test_last_event_id_replays_then_continues_live(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """A reconnect with ``Last-Event-ID`` gets the buffered events after it, then live ones."""
    async with open_stream(session, target) as (_, sse):
        sent = [target.publish("t", {"n": n}) for n in range(3)]
        assert sent == seqs(await sse.events(3))
    headers = {"Last-Event-ID": str(sent[0])}
    async with open_stream(session, target, headers=headers) as (_, sse):
        replayed = await sse.events(2)
        live = target.publish("t", {"n": 3})
        assert [*sent[1:], live] == [*seqs(replayed), *seqs(await sse.events(1))]


async def test_replay_buffer_is_bounded(
    target: DemoTarget, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay buffer keeps only the newest events."""
    monkeypatch.setattr(demo_events, "_MAX_REPLAY", 3)
    async with open_stream(session, target) as (_, sse):
        sent = [target.publish("t", {}) for _ in range(5)]
        await sse.events(5)
    async with open_stream(session, target, headers={"Last-Event-ID": "0"}) as (_, sse):
        assert sent[2:] == seqs(await sse.events(3))


async def test_types_filter(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """``?types=a,c`` delivers only events of those types."""
    async with open_stream(session, target, "?types=a,c") as (_, sse):
        for event_type in ["a", "b", "c", "b"]:
            target.publish(event_type, {})
        blocks = await sse.events(2)
    assert ["a", "c"] == [block.fields["event"] for block in blocks]


async def test_composite_ids(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """``id_style=composite`` gives ``<epoch seconds>:<n>`` ids, n counting within the second."""
    await target.set_faults(Faults(id_style="composite"))
    async with open_stream(session, target) as (_, sse):
        for _ in range(3):
            target.publish("t", {})
        blocks = await sse.events(3)
    ids = [re.fullmatch(r"(\d+):(\d+)", block.fields["id"]) for block in blocks]
    parts = [(int(match[1]), int(match[2])) for match in ids if match is not None]
    assert 3 == len(parts)
    for (second, _), block in zip(parts, blocks, strict=True):
        assert int(epoch(block.data["enqueued_at"])) == second
    for (second_a, n_a), (second_b, n_b) in itertools.pairwise(parts):
        assert (n_a + 1 if second_a == second_b else 0) == n_b
    async with open_stream(session, target, headers={"Last-Event-ID": blocks[0].fields["id"]}) as (
        _,
        sse,
    ):
        assert seqs(blocks[1:]) == seqs(await sse.events(2))


# --- WebSocket ---------------------------------------------------------------------------


async def test_ws_receives_events(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """The WebSocket sends each event's JSON object as a text message."""
    async with session.ws_connect(target.base_url + WS) as ws:
        assert 1 == target.stream_subscribers()
        answer = await post_outbox(session, target, {"type": "coach.reflect", "tag": "x"})
        message = await ws.receive_json(timeout=1.0)
    assert {
        "seq": answer["seq"],
        "type": "coach.reflect",
        "enqueued_at": answer["enqueued_at"],
        "payload": {"type": "coach.reflect", "tag": "x"},
    } == message


async def test_subscriber_count_follows_clients(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Open SSE and WebSocket streams are counted, and forgotten once the client leaves."""
    assert 0 == target.stream_subscribers()
    async with open_stream(session, target), session.ws_connect(target.base_url + WS):
        assert 2 == target.stream_subscribers()
    async with asyncio.timeout(1.0):
        while target.stream_subscribers():
            await asyncio.sleep(0.01)


# --- delivery faults ---------------------------------------------------------------------


async def test_drop_ratio_one_leaves_a_gap(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Dropped events never arrive but use up their seq, so the next one shows a gap."""
    await target.set_faults(Faults(drop_ratio=1.0, heartbeat_interval=0.05))
    async with open_stream(session, target) as (_, sse):
        dropped = [target.publish("t", {}) for _ in range(2)]
        for _ in range(4):
            block = await sse.block()
            assert block is not None
            assert block.is_comment
        await target.set_faults(Faults())
        kept = target.publish("t", {})
        assert [kept] == seqs(await sse.events(1))
    assert dropped[-1] + 1 == kept


async def test_duplicate_ratio_one_sends_each_event_twice(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Each event arrives twice with the same id and seq."""
    await target.set_faults(Faults(duplicate_ratio=1.0))
    async with open_stream(session, target) as (_, sse):
        first, second = target.publish("t", {}), target.publish("t", {})
        blocks = await sse.events(4)
    assert [first, first, second, second] == seqs(blocks)
    assert [str(seq) for seq in seqs(blocks)] == [block.fields["id"] for block in blocks]


async def test_reorder_ratio_one_swaps_pairs(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Each held-back event arrives right after the next one."""
    await target.set_faults(Faults(reorder_ratio=1.0))
    async with open_stream(session, target) as (_, sse):
        sent = [target.publish("t", {}) for _ in range(4)]
        blocks = await sse.events(4)
    assert [sent[1], sent[0], sent[3], sent[2]] == seqs(blocks)


async def test_disconnect_every_ends_the_stream(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``disconnect_every`` ends each stream cleanly after that many seconds."""
    await target.set_faults(Faults(disconnect_every=0.3, heartbeat_interval=0.1))
    started = time.monotonic()
    async with open_stream(session, target) as (_, sse):
        while (block := await sse.block()) is not None:
            assert block.is_comment
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0
    async with asyncio.timeout(1.0):
        while target.stream_subscribers():
            await asyncio.sleep(0.01)


async def test_disconnect_every_closes_the_websocket(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``disconnect_every`` closes a WebSocket with 1001 (going away)."""
    await target.set_faults(Faults(disconnect_every=0.2))
    async with session.ws_connect(target.base_url + WS) as ws:
        message = await ws.receive(timeout=1.0)
    assert aiohttp.WSMsgType.CLOSE == message.type
    assert 1001 == message.data


async def test_stall_sends_nothing_then_delivers(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """While stalled a stream sends no byte; the events queued meanwhile arrive after."""
    await target.set_faults(Faults(stall=True, heartbeat_interval=0.05))
    async with open_stream(session, target) as (resp, sse):
        seq = target.publish("t", {})
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await resp.content.readany()
        await target.set_faults(Faults(heartbeat_interval=0.05))
        assert [seq] == seqs(await sse.events(1))


async def test_stall_silences_the_websocket(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """While stalled the WebSocket sends no event."""
    await target.set_faults(Faults(stall=True))
    async with session.ws_connect(target.base_url + WS) as ws:
        seq = target.publish("t", {})
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.3)
        await target.set_faults(Faults())
        assert seq == (await ws.receive_json(timeout=1.0))["seq"]


async def test_wrong_content_type(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """``wrong_content_type`` serves the stream path as a JSON document of recent events."""
    async with open_stream(session, target) as (_, sse):
        seq = target.publish("t", {"n": 1})
        await sse.event()
    await target.set_faults(Faults(wrong_content_type=True))
    async with session.get(target.base_url + STREAM) as resp:
        assert 200 == resp.status
        assert "application/json" == resp.content_type
        body = await resp.json()
    assert [seq] == [event["seq"] for event in body["events"]]


async def test_oversize_event_pads_the_data_line(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``oversize_event`` adds a ``pad`` field of that many bytes: a 10 MB data line."""
    size = 10_000_000
    await target.set_faults(Faults(oversize_event=size))
    async with open_stream(session, target) as (_, sse):
        seq = target.publish("t", {"n": 1})
        block = await sse.event(within=1.5)
    assert size < len(block.fields["data"])
    data = block.data
    assert size == len(data.pop("pad"))
    assert {"seq": seq, "type": "t", "payload": {"n": 1}} == {
        key: value for key, value in data.items() if key != "enqueued_at"
    }


async def test_clock_offset_shifts_date_and_enqueued_at(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``clock_offset`` moves the ``Date`` header and ``enqueued_at``, but not on admin paths."""
    offset = 3600.0
    await target.set_faults(Faults(clock_offset=offset))

    async def date_of(path: str) -> float:
        async with session.get(target.base_url + path) as resp:
            return email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()

    answer = await post_outbox(session, target, {"type": "t"})
    now = time.time()
    assert abs(now + offset - epoch(answer["enqueued_at"])) < 2.0
    assert abs(now + offset - await date_of("/health")) < 2.0
    assert abs(now - await date_of("/-/admin/faults")) < 2.0
    async with open_stream(session, target) as (resp, _):
        stream_date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert abs(now + offset - stream_date) < 2.0


async def test_date_header_always_present(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Without a clock offset every response still carries an IMF-fixdate ``Date``."""
    for path in ["/health", "/nope", "/api/v1/imports/imp_404"]:
        async with session.get(target.base_url + path) as resp:
            date = resp.headers["Date"]
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", date)
        assert abs(time.time() - email.utils.parsedate_to_datetime(date).timestamp()) < 2.0


# --- outbox validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, 2]", "JSON object"),
        (b"{nope", "not valid JSON"),
        (json.dumps({"pad": "x" * 65_536}).encode(), "65536 bytes"),
        (json.dumps({"type": 7}).encode(), "'type'"),
        (json.dumps({"type": "a\nb"}).encode(), "'type'"),
        (json.dumps({"type": ""}).encode(), "'type'"),
        (b'{"x": NaN}', "payload"),
        (b'{"x": "\\ud800"}', "payload"),
    ],
)
async def test_outbox_rejects_bad_bodies(
    target: DemoTarget, session: aiohttp.ClientSession, data: bytes, message: str
) -> None:
    """A body that is not a JSON object under 64 KiB with a usable type answers 400."""
    async with session.post(
        f"{target.base_url}/api/v1/outbox",
        data=data,
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert 400 == resp.status
        body = await resp.json()
    assert ["error"] == list(body)
    assert message in body["error"]


async def test_publish_checks_its_arguments() -> None:
    """``publish`` needs a started target, a printable type and a JSON payload."""
    demo = DemoTarget(password=PASSWORD)
    with pytest.raises(RuntimeError, match="not started"):
        demo.publish("t", {})
    async with demo:
        with pytest.raises(ValueError, match="type"):
            demo.publish("", {})
        with pytest.raises(ValueError, match="payload"):
            demo.publish("t", {"x": object()})
        assert 1 == demo.publish("t", {})


# --- import jobs -------------------------------------------------------------------------


async def _run_import(
    session: aiohttp.ClientSession, target: DemoTarget, count: int, trades: int = 50
) -> tuple[str, list[dict[str, Any]]]:
    """Start an import and collect ``count`` of its ``import.progress`` payloads."""
    async with open_stream(session, target, "?types=import.progress") as (_, sse):
        async with session.post(
            f"{target.base_url}/api/v1/imports", json={"broker": "mock", "trades": trades}
        ) as resp:
            assert 202 == resp.status
            answer = await resp.json()
        job_id: str = answer["id"]
        assert {"id": job_id, "status_url": f"/api/v1/imports/{job_id}"} == answer
        blocks = await sse.events(count)
    payloads = [block.data["payload"] for block in blocks]
    assert {job_id} == {payload["job_id"] for payload in payloads}
    return job_id, payloads


async def _job(session: aiohttp.ClientSession, target: DemoTarget, job_id: str) -> Any:
    async with session.get(f"{target.base_url}/api/v1/imports/{job_id}") as resp:
        assert 200 == resp.status
        return await resp.json()


async def test_import_progresses_to_done(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """An import publishes ten ``import.progress`` steps up to 100 and ends ``done``."""
    await target.set_faults(Faults(import_duration=0.2))
    job_id, payloads = await _run_import(session, target, 10)
    assert list(range(10, 101, 10)) == [payload["progress"] for payload in payloads]
    assert list(range(5, 51, 5)) == [payload["processed"] for payload in payloads]
    assert {50} == {payload["total"] for payload in payloads}
    assert {
        "id": job_id,
        "state": "done",
        "progress": 100,
        "processed": 50,
        "total": 50,
    } == await _job(session, target, job_id)


async def test_import_job_is_running_before_it_ends(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """A fresh job is ``running`` at 0 and the default broker and trade count apply."""
    async with session.post(f"{target.base_url}/api/v1/imports", json={}) as resp:
        assert 202 == resp.status
        job_id = (await resp.json())["id"]
    assert {
        "id": job_id,
        "state": "running",
        "progress": 0,
        "processed": 0,
        "total": 50,
    } == await _job(session, target, job_id)


async def test_import_stall_at_99_never_finishes(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``import_stall_at=99`` stops a job at 99 percent, running forever."""
    await target.set_faults(Faults(import_duration=0.2, import_stall_at=99))
    job_id, payloads = await _run_import(session, target, 10)
    assert [*range(10, 91, 10), 99] == [payload["progress"] for payload in payloads]
    await asyncio.sleep(0.1)
    assert {
        "id": job_id,
        "state": "running",
        "progress": 99,
        "processed": 49,
        "total": 50,
    } == await _job(session, target, job_id)


async def test_import_regress_goes_back_once(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """``import_regress`` moves progress back 20 points once, midway, then it completes."""
    await target.set_faults(Faults(import_duration=0.2, import_regress=True))
    job_id, payloads = await _run_import(session, target, 11)
    progress = [payload["progress"] for payload in payloads]
    assert [10, 20, 30, 40, 50, 30, 60, 70, 80, 90, 100] == progress
    assert [-20] == [b - a for a, b in itertools.pairwise(progress) if b < a]
    assert "done" == (await _job(session, target, job_id))["state"]


async def test_import_small_job_steps_per_trade(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """A job with fewer than ten trades takes one step per trade."""
    await target.set_faults(Faults(import_duration=0.1))
    _, payloads = await _run_import(session, target, 3, trades=3)
    assert [(1, 33), (2, 66), (3, 100)] == [(p["processed"], p["progress"]) for p in payloads]


async def test_import_unknown_id_404(target: DemoTarget, session: aiohttp.ClientSession) -> None:
    """An unknown job id answers 404 JSON."""
    async with session.get(f"{target.base_url}/api/v1/imports/imp_999") as resp:
        assert 404 == resp.status
        assert {"error": "not_found"} == await resp.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"trades": 0}, "'trades'"),
        ({"trades": 100_001}, "'trades'"),
        ({"trades": 2.5}, "'trades'"),
        ({"trades": True}, "'trades'"),
        ({"broker": "binance"}, "'broker'"),
        ([1], "JSON object"),
    ],
)
async def test_import_rejects_bad_bodies(
    target: DemoTarget, session: aiohttp.ClientSession, body: object, message: str
) -> None:
    """A bad import request answers 400 naming what is wrong."""
    async with session.post(f"{target.base_url}/api/v1/imports", json=body) as resp:
        assert 400 == resp.status
        assert message in (await resp.json())["error"]


async def test_finished_jobs_are_evicted_first(
    target: DemoTarget, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full job store forgets its oldest finished job, keeping running ones."""
    monkeypatch.setattr(demo_imports, "_MAX_JOBS", 2)
    await target.set_faults(Faults(import_duration=0.0))
    done_id, _ = await _run_import(session, target, 1, trades=1)
    await target.set_faults(Faults(import_duration=60.0))
    ids = []
    for _ in range(2):
        async with session.post(f"{target.base_url}/api/v1/imports", json={}) as resp:
            ids.append((await resp.json())["id"])
    async with session.get(f"{target.base_url}/api/v1/imports/{done_id}") as resp:
        assert 404 == resp.status
    assert ["running", "running"] == [(await _job(session, target, i))["state"] for i in ids]


# --- shutdown ----------------------------------------------------------------------------


async def test_stop_closes_streams_and_leaves_no_tasks() -> None:
    """``stop`` ends open SSE and WebSocket streams at once and leaves no task behind."""
    demo = DemoTarget(password=PASSWORD, faults=Faults(stream_delay=5.0, import_duration=60.0))
    await demo.start()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client,
        client.get(demo.base_url + STREAM) as resp,
        client.ws_connect(demo.base_url + WS) as ws,
    ):
        demo.publish("t", {})
        async with client.post(f"{demo.base_url}/api/v1/imports", json={}) as answer:
            assert 202 == answer.status
        assert 2 == demo.stream_subscribers()
        started = time.monotonic()
        await demo.stop()
        assert time.monotonic() - started < 1.0
        assert None is await SSEReader(resp).block(within=1.0)
        assert aiohttp.WSMsgType.CLOSE == (await ws.receive(timeout=1.0)).type
    assert 0 == demo.stream_subscribers()
    await asyncio.sleep(0)
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_refusing_connections_ends_streams(
    target: DemoTarget, session: aiohttp.ClientSession
) -> None:
    """Turning on ``refuse_connections`` ends open streams cleanly."""
    async with open_stream(session, target) as (_, sse):
        await target.set_faults(Faults(refuse_connections=True))
        assert None is await sse.block(within=1.0)
