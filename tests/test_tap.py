"""``GET /api/v1/streams/NAME/tap`` and ``probed tap``: each received event with its lag, live,
from a daemon watching a loopback SSE server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from conftest import free_port
from livedaemon import live_daemon
from polling import until
from test_watcher import open_stream, sse_server

from probed import tap
from probed.cli import main
from probed.daemon import Daemon
from probed.store import StreamStats
from probed.stream.decoder import Event, SSEDecoder

USER = "ops"
PASSWORD = "s3cret-tap"
LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  seq=(\d+)  id=(\S+)  type=(\S+)  "
    r"lag=(-?\d+\.\d{3})ms(  offset=[+-]\d+\.\dms)?(  verdict=\S+)?$"
)


class Producer:
    """An SSE endpoint whose events the test sends: ``send`` goes to every open connection."""

    def __init__(self, skew: float = 0.0) -> None:
        self.queues: list[asyncio.Queue[bytes]] = []
        self.skew = skew
        """How far the producer's clock (its stamps and Date header) is ahead of ours."""

    async def handler(self, request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request, Date=formatdate(time.time() + self.skew, usegmt=True))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.append(queue)
        with contextlib.suppress(ConnectionError):
            while True:
                await resp.write(await queue.get())
        return resp

    def send(self, seq: int, lag: float = 0.02, event_type: str = "order.created") -> None:
        """One event ``seq`` stamped ``lag`` seconds ago (epoch seconds, sub-ms precise)."""
        data = json.dumps({"seq": seq, "enqueued_at": time.time() - lag + self.skew})
        frame = f"id: {seq}\nevent: {event_type}\ndata: {data}\n\n".encode()
        for queue in self.queues:
            queue.put_nowait(frame)


def write_config(tmp_path: Path, url: str, daemon_extra: str = "") -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n{daemon_extra}\n'
        f'[targets.app]\nbase_url = "{url}"\n\n'
        '[[probes]]\nname = "events"\nkind = "sse"\ntarget = "app"\npath = "/sse"\n'
        'sequence_field = "seq"\n'
    )
    return path


@asynccontextmanager
async def watched(
    tmp_path: Path, daemon_extra: str = "", skew: float = 0.0
) -> AsyncIterator[tuple[Producer, Daemon, str]]:
    """A live daemon whose stream 'events' is connected to a ``Producer`` (``skew`` ahead)."""
    producer = Producer(skew)
    async with sse_server(producer.handler) as url:
        path = write_config(tmp_path, url, daemon_extra)
        async with live_daemon(path) as (daemon, _, base):

            def connected() -> bool:
                return bool(producer.queues) and daemon.hub.is_connected("events") is True

            await until(connected, 5)
            yield producer, daemon, base


async def tap_events(
    resp: aiohttp.ClientResponse,
    want: int,
    kinds: tuple[str, ...] = ("tap",),
    within: float = 10,
) -> list[tuple[str, Any]]:
    """Read ``resp`` until ``want`` events of ``kinds``; every (type, data) read on the way."""
    decoder = SSEDecoder()
    got: list[tuple[str, Any]] = []
    async with asyncio.timeout(within):
        while sum(kind in kinds for kind, _ in got) < want:
            chunk = await resp.content.readany()
            assert chunk, f"the tap ended after {got}"
            for item in decoder.feed(chunk):
                if isinstance(item, Event):
                    got.append((item.event, json.loads(item.data)))
    return got


async def open_tap(
    http: aiohttp.ClientSession, base: str, stream: str = "events", **kw: Any
) -> aiohttp.ClientResponse:
    """GET the tap and wait for its hello (so the subscription is in place)."""
    resp = await http.get(f"{base}/api/v1/streams/{stream}/tap", **kw)
    if resp.status == 200:
        assert [("hello", {"stream": stream, "queue": tap.QUEUE_EVENTS})] == await tap_events(
            resp, 1, ("hello",)
        )
    return resp


# -- the endpoint -----------------------------------------------------------------------------


async def test_tap_sends_each_event_with_its_lag_sequence_and_verdict(tmp_path: Path) -> None:
    async with (
        watched(tmp_path) as (producer, _, base),
        aiohttp.ClientSession() as http,
    ):
        resp = await open_tap(http, base)
        assert "text/event-stream" == resp.content_type
        for seq in (1, 2, 3, 3, 4):
            producer.send(seq, lag=0.02)
        got = await tap_events(resp, 5)
        resp.close()
    records = [data for kind, data in got]
    assert {"tap"} == {kind for kind, _ in got}
    assert [1, 2, 3, 3, 4] == [r["seq"] for r in records]
    assert ["1", "2", "3", "3", "4"] == [r["id"] for r in records]
    assert {"order.created"} == {r["type"] for r in records}
    assert {"events"} == {r["stream"] for r in records}
    assert ["new", "new", "new", "duplicate", "new"] == [r["verdict"] for r in records]
    for r in records:
        assert 20.0 <= r["lag_ms"] < 1000.0, r
        assert abs(r["at"] - time.time()) < 30
        assert r["offset_ms"] is None  # synced clocks: the estimate cannot tell an offset from 0


async def test_tap_shows_the_clock_offset_taken_off_each_stamp(tmp_path: Path) -> None:
    """A producer 30 s ahead: each lag is corrected by the offset the Date header shows."""
    async with (
        watched(tmp_path, skew=30.0) as (producer, _, base),
        aiohttp.ClientSession() as http,
    ):
        resp = await open_tap(http, base)
        for seq in (1, 2, 3):
            producer.send(seq, lag=0.02)
        records = [data for _, data in await tap_events(resp, 3)]
        resp.close()
    for r in records:
        assert 29_000 < r["offset_ms"] < 31_000, r
        # the Date header's estimate is good to about half a second
        assert 0 <= r["lag_ms"] < 1000, r


async def test_unknown_stream_is_404_with_a_json_error(tmp_path: Path) -> None:
    async with (
        watched(tmp_path) as (_, _, base),
        aiohttp.ClientSession() as http,
        http.get(f"{base}/api/v1/streams/nope/tap") as resp,
    ):
        assert 404 == resp.status
        assert {
            "status": "error",
            "error": "unknown stream 'nope' (streams: events)",
        } == await resp.json()


async def test_tap_needs_credentials_when_auth_is_configured(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_path = tmp_path / "web.yml"
    web_path.write_text(f"basic_auth_users:\n  {USER}: {hashed}\n")
    extra = f'web_config_file = "{web_path}"\n'
    async with watched(tmp_path, extra) as (producer, _, base), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v1/streams/events/tap") as resp:
            assert 401 == resp.status
        wrong = {"Authorization": aiohttp.encode_basic_auth(USER, "nope")}
        async with http.get(f"{base}/api/v1/streams/events/tap", headers=wrong) as resp:
            assert 401 == resp.status
        right = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        resp = await open_tap(http, base, headers=right)
        producer.send(1)
        assert [1] == [data["seq"] for _, data in await tap_events(resp, 1)]
        resp.close()


async def slow_client(base: str, stream: str = "events") -> socket.socket:
    """A tap client that sends its request and then reads nothing (4 KiB receive buffer)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    request = f"GET /api/v1/streams/{stream}/tap HTTP/1.0\r\nHost: {host}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    return sock


async def read_rest(sock: socket.socket, until_seq: int) -> tuple[list[int], int]:
    """Read a raw HTTP/1.0 tap response until the event ``until_seq``: (seqs, dropped total)."""
    loop = asyncio.get_running_loop()
    head = b""
    decoder = SSEDecoder()
    seqs: list[int] = []
    dropped = 0
    async with asyncio.timeout(30):
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 65536)
            assert chunk, "the daemon closed the slow tap"
            head += chunk
        status, _, body = head.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.0 200 OK"), status
        while until_seq not in seqs:
            for item in decoder.feed(body):
                if not isinstance(item, Event):
                    continue
                data = json.loads(item.data)
                if item.event == "tap":
                    seqs.append(data["seq"])
                elif item.event == "dropped":
                    assert data["dropped_total"] == dropped + data["dropped"]
                    dropped = data["dropped_total"]
            if until_seq not in seqs:
                body = await loop.sock_recv(sock, 65536)
                assert body, "the daemon closed the slow tap"
    return seqs, dropped


def received(stats: StreamStats, at_least: int) -> bool:
    """Whether the watcher received ``at_least`` events."""
    return stats.received >= at_least


async def test_a_slow_tap_client_is_dropped_for_and_slows_nothing(tmp_path: Path) -> None:
    """A client that reads nothing fills its queue: the watcher and another tap client get every
    event meanwhile; once it reads, it learns how many it missed, and none is missing unsaid."""
    async with watched(tmp_path) as (producer, daemon, base), aiohttp.ClientSession() as http:
        stats = daemon.store.streams["events"]
        taps = daemon.server_state.taps
        assert taps is not None
        sock = await slow_client(base)
        fast = await open_tap(http, base)
        await until(lambda: 2 == len(taps.clients), 5)
        port = sock.getsockname()[1]
        [slow] = [
            c
            for c in taps.clients
            if c.transport and c.transport.get_extra_info("peername")[1] == port
        ]
        # a slow link: the daemon's side of it buffers little too (as a remote client's would)
        assert slow.transport is not None
        slow.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        sent = 0
        while not slow.dropped_total and sent < 20_000:  # until its queue overflows (bounded)
            for _ in range(100):
                sent += 1
                producer.send(sent, lag=0.0)
            await until(functools.partial(received, stats, sent), 10)
        assert slow.writing  # blocked in a write to a client that reads nothing
        for _ in range(500):  # and events keep flowing past it
            sent += 1
            producer.send(sent, lag=0.0)
        got = await tap_events(fast, sent, within=60)
        assert list(range(1, sent + 1)) == [data["seq"] for kind, data in got if kind == "tap"]
        assert [] == [data for kind, data in got if kind == "dropped"]
        assert (sent, 0, 0) == (stats.received, stats.lost, stats.duplicated)
        assert slow.dropped_total >= 500
        with sock:
            reader = asyncio.create_task(read_rest(sock, sent + 1))
            await until(lambda: 0 == slow.queued, 30)  # reading again: the queue empties
            producer.send(sent + 1)
            seqs, dropped = await reader
        assert dropped == slow.dropped_total
        assert sent + 1 == len(seqs) + dropped
        assert seqs == sorted(seqs)
        fast.close()


async def test_tap_clients_are_capped_and_a_closed_one_frees_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tap, "MAX_TAP_CLIENTS", 2)
    async with watched(tmp_path) as (_, daemon, base), aiohttp.ClientSession() as http:
        taps = daemon.server_state.taps
        assert taps is not None
        first = await open_tap(http, base)
        second = await open_tap(http, base)
        async with http.get(f"{base}/api/v1/streams/events/tap") as resp:
            assert 429 == resp.status
            assert {
                "status": "error",
                "error": "too many tap clients (2 open, at most 2)",
            } == await resp.json()
        first.close()  # the daemon notices the closed connection without any event to send
        await until(lambda: 1 == len(taps.clients), 5)
        third = await open_tap(http, base)
        second.close()
        third.close()


async def test_taps_end_when_the_stream_is_removed_and_when_the_daemon_stops(
    tmp_path: Path,
) -> None:
    """A reload without the stream ends its taps; stopping ends every tap at once, also one
    whose client reads nothing."""
    async with watched(tmp_path) as (_, daemon, base), aiohttp.ClientSession() as http:
        taps = daemon.server_state.taps
        assert taps is not None
        path = daemon.config_path
        resp = await open_tap(http, base)
        path.write_text(path.read_text().replace('name = "events"', 'name = "other"'))
        ok, message = await daemon.reload()
        assert ok, message
        assert [("end", {"reason": "stream removed"})] == await tap_events(resp, 1, ("end",))
        other = await open_tap(http, base, "other")
        sock = await slow_client(base, "other")
        await until(lambda: 2 == len(taps.clients), 5)
        started = time.monotonic()
        daemon.request_stop()
        assert [("end", {"reason": "daemon stopping"})] == await tap_events(other, 1, ("end",))
        sock.close()
        other.close()
    assert time.monotonic() - started < 5


# -- probed tap -------------------------------------------------------------------------------


async def run_cli(*argv: str) -> int:
    """``probed ARGV`` in a worker thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


def tap_lines(out: str) -> list[str]:
    """The lines of ``probed tap`` output (the in-process daemon logs to stdout too)."""
    return [line for line in out.splitlines() if re.match(r"\d{4}-\d\d-\d\dT|\{\"stream\"", line)]


async def feed(producer: Producer, first: int = 1) -> None:
    """Send an event every 20 ms until cancelled."""
    seq = first
    while True:
        producer.send(seq, lag=0.005)
        seq += 1
        await asyncio.sleep(0.02)


async def test_cli_prints_a_line_per_event_and_stops_after_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with watched(tmp_path) as (producer, _, base):
        feeder = asyncio.create_task(feed(producer))
        try:
            assert 0 == await run_cli("tap", "events", "--url", base, "--count", "3")
            text = tap_lines(capsys.readouterr().out)
            assert 0 == await run_cli("tap", "events", "--url", base, "--count", "3", "--json")
            records = [json.loads(line) for line in tap_lines(capsys.readouterr().out)]
        finally:
            feeder.cancel()
    assert 3 == len(text)
    matches = [LINE.match(line) for line in text]
    assert all(matches), text
    seqs = [int(m.group(1)) for m in matches if m]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert all(m.group(2) == m.group(1) and m.group(3) == "order.created" for m in matches if m)
    assert all(5.0 <= float(m.group(4)) < 1000 for m in matches if m)
    assert 3 == len(records)
    assert {"stream", "at", "seq", "id", "type", "lag_ms", "offset_ms", "verdict"} == set(
        records[0]
    )


async def test_cli_refused_and_unreachable_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert 1 == await run_cli("tap", "events", "--url", url)
    err = capsys.readouterr().err
    assert err.startswith(f"probed tap: cannot reach {url}/api/v1/streams/events/tap: ")
    assert 1 == len(err.splitlines())
    async with watched(tmp_path) as (_, _, base):
        assert 1 == await run_cli("tap", "nope", "--url", base)
    err = capsys.readouterr().err
    assert [
        f"probed tap: {base}/api/v1/streams/nope/tap: HTTP 404: unknown stream 'nope' "
        "(streams: events)"
    ] == err.splitlines()


async def test_cli_with_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_path = tmp_path / "web.yml"
    web_path.write_text(f"basic_auth_users:\n  {USER}: {hashed}\n")
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    extra = f'web_config_file = "{web_path}"\n'
    async with watched(tmp_path, extra) as (producer, _, base):
        assert 1 == await run_cli("tap", "events", "--url", base, "--count", "1")
        assert "HTTP 401" in capsys.readouterr().err
        feeder = asyncio.create_task(feed(producer))
        try:
            auth = ("--user", USER, "--password-file", str(tmp_path / "pw"))
            assert 0 == await run_cli("tap", "events", "--url", base, "--count", "1", *auth)
        finally:
            feeder.cancel()
    assert 1 == len(tap_lines(capsys.readouterr().out))


async def test_ctrl_c_ends_the_cli_with_0_and_no_traceback(tmp_path: Path) -> None:
    async with watched(tmp_path) as (producer, _, base):
        feeder = asyncio.create_task(feed(producer))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "probed", "tap", "events", "--url", base,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert LINE.match(first.decode()), first
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
        finally:
            feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert 0 == proc.returncode
    assert b"Traceback" not in err, err.decode()
    assert all(LINE.match(line) for line in out.decode().splitlines())
