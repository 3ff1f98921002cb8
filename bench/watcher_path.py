"""Benchmark: a stream watcher's own CPU per event, beside the raw loop's parse of the same bytes.

Run from the repository root::

    python bench/watcher_path.py                  # 1,000 streams, 20 events each, 5 rounds
    python bench/watcher_path.py --streams 1      # one stream: everything stays in the cache
    python bench/watcher_path.py --framed         # each event a chunk of an HTTP body
    python bench/watcher_path.py --profile /tmp/watcher.prof

No network and no event loop work: what ``streams.py`` (b) measures end to end is the
read loop plus this. Each event is one chunk, as ``streams.py``'s server writes it:
``id: n`` and ``data: {"seq": n, "enqueued_at": t}`` with ``t`` half a second ago.

``probed``
    ``--streams`` real ``StreamWatcher``s (``lag_field = "enqueued_at"``,
    ``sequence_field = "seq"``, one subscriber, a clock estimate from one ``Date``
    reading as a connection gives it) and their ``StreamStats``; every chunk goes to the
    watcher's ``_feed`` (decode, the hub, lag, sequence accounting), the streams taken
    in turn. The hub has one subscriber per stream that reads the event's parsed JSON,
    as ``streams.py``'s recorder does; ``--no-tap`` leaves the hub without subscribers,
    as a daemon with nobody tapping runs.
``--framed``
    each chunk comes framed as a chunk of a chunked HTTP body (size line, data, CRLF) and
    goes through the connection's own reader (``StreamExchange``, with no socket behind
    it) to the watcher's callback, as a read does in the daemon; the raw loop's parse
    below still gets the bare chunks (aiohttp's C parser unframes them in ``streams.py``).
``raw``
    ``streams.py``'s raw loop parse of the same chunks: split on ``\\n\\n``, keep the
    ``data:`` lines, ``json.loads`` each, ``time.time()`` per chunk.

CPU per event = ``time.process_time()`` over a round / events; the median and spread of
``--rounds`` rounds are printed (the first round is a warm-up, not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import inspect
import json
import math
import statistics
import sys
import time
from collections.abc import Callable

from streams_raw import SseData

from probed import clock
from probed.config import SseStream, TargetConfig
from probed.http.wirestream import StreamExchange
from probed.skew import reading_bounds
from probed.steps import TurnShare
from probed.store import ResultStore
from probed.stream.hub import Hub, ReceivedEvent
from probed.stream.watcher import StreamWatcher

D = 0.5
"""Seconds before the chunk is made that each event is stamped."""


_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class _NoSocket(asyncio.Transport):
    """A transport with nothing behind it: ``--framed`` hands each read to the protocol."""

    def write(self, data: object) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def rounds_of(streams: int, events: int, rounds: int) -> list[list[list[bytes]]]:
    """``rounds`` x ``events`` x ``streams`` chunks; sequence numbers go on across rounds."""
    stamp = clock.wall() - D
    return [
        [
            [
                f'id: {n}\ndata: {{"seq": {n}, "enqueued_at": {stamp + n * 1e-6}}}\n\n'.encode()
                for _ in range(streams)
            ]
            for n in range(1 + r * events, 1 + (r + 1) * events)
        ]
        for r in range(rounds)
    ]


def measure(chunks: list[list[list[bytes]]], feed: Callable[[int, bytes], None]) -> list[float]:
    """CPU µs per event of each round after the first."""
    per_event = []
    for index, rows in enumerate(chunks):
        count = sum(len(row) for row in rows)
        cpu = time.process_time()
        for row in rows:
            for stream, chunk in enumerate(row):
                feed(stream, chunk)
        if index:
            per_event.append((time.process_time() - cpu) / count * 1e6)
    return per_event


def probed(
    chunks: list[list[list[bytes]]], streams: int, tap: bool, framed: bool = False
) -> list[float]:
    store, hub = ResultStore(), Hub()
    target = TargetConfig(base_url="http://127.0.0.1:1")
    share = TurnShare(math.inf)
    watchers = []
    for i in range(streams):
        spec = SseStream.model_validate(
            {
                "name": f"s{i:05d}",
                "target": "bench",
                "path": "/sse",
                "lag_field": "enqueued_at",
                "sequence_field": "seq",
                "max_event_rate": 1_000_000,
            }
        )
        stats = store.register_stream(spec.name, spec.target, spec.subscribers)
        now = clock.wall()  # as a response's Date header gives it
        stats.clock_reading("date", *reading_bounds(float(int(now)), now, now, whole_seconds=True))
        # one share of each loop turn for every watcher, as the daemon's manager gives them;
        # unbounded, as the bench feeds one event per call and never yields
        watcher = StreamWatcher(spec, target, None, hub, stats, share=share)  # type: ignore[arg-type]
        if tap:
            hub.subscribe(spec.name, _read_json)
        watchers.append((watcher, watcher._subs[0]))
    feeds = [(w._feed, sub) for w, sub in watchers]
    parameters = len(inspect.signature(StreamWatcher._feed).parameters)
    if framed:  # each chunk framed as a chunked body, read by the connection's own parser
        readers = []
        for watcher, sub in watchers:
            sub.started, sub.got_anything, sub.last_event = 0.0, True, time.monotonic()
            reply = StreamExchange(asyncio.get_running_loop(), b"GET /sse HTTP/1.1\r\n\r\n")
            reply.connection_made(_NoSocket())
            reply.data_received(_HEAD)
            reply.start(functools.partial(watcher._received, sub))
            readers.append(reply.data_received)
        chunks = [[[b"%x\r\n%s\r\n" % (len(c), c) for c in row] for row in rows] for rows in chunks]

        def feed(stream: int, chunk: bytes) -> None:
            readers[stream](chunk)

    elif parameters == 4:  # the connection's start and whether it got anything kept on sub
        for _, sub in watchers:
            sub.started, sub.got_anything = 0.0, True

        def feed(stream: int, chunk: bytes) -> None:
            watcher_feed, sub = feeds[stream]
            watcher_feed(sub, chunk, time.monotonic())

    elif parameters == 5:  # before it took the time

        def feed(stream: int, chunk: bytes) -> None:
            watcher_feed, sub = feeds[stream]
            time.monotonic()  # the read loop's
            watcher_feed(sub, chunk, 0.0, True)  # type: ignore[call-arg]

    else:

        def feed(stream: int, chunk: bytes) -> None:
            watcher_feed, sub = feeds[stream]
            watcher_feed(sub, chunk, 0.0, True, time.monotonic())  # type: ignore[call-arg]

    per_event = measure(chunks, feed)
    lost = sum(s.lost + s.duplicated + s.out_of_order + s.untimed for s in store.streams.values())
    timed = sum(s.delivery_lag.count for s in store.streams.values())
    if lost or timed != sum(len(row) for rows in chunks for row in rows):
        raise SystemExit(f"the watchers' accounting is off: {lost} bad, {timed} timed")
    return per_event


async def _on_a_loop(
    run: Callable[[list[list[list[bytes]]], int, bool, bool], list[float]],
    chunks: list[list[list[bytes]]],
    streams: int,
    tap: bool,
    framed: bool = False,
) -> list[float]:
    """``run`` inside a running event loop, as the watchers' accounting runs in the daemon."""
    return run(chunks, streams, tap, framed)


def _read_json(received: ReceivedEvent) -> None:
    received.json()


def raw(chunks: list[list[list[bytes]]], streams: int) -> list[float]:
    parsers = [SseData() for _ in range(streams)]
    kept: list[tuple[float, object]] = []

    def feed(stream: int, chunk: bytes) -> None:
        wall = time.time()
        for data in parsers[stream].feed(chunk):
            kept.append((wall, json.loads(data)))
        if len(kept) > 64:
            kept.clear()

    return measure(chunks, feed)


def line(name: str, per_event: list[float]) -> str:
    return (
        f"{name:<28} {statistics.median(per_event):7.2f} µs per event "
        f"(min-max {min(per_event):.2f}-{max(per_event):.2f}, {len(per_event)} rounds)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=1000, help="streams (1,000)")
    parser.add_argument("--events", type=int, default=20, help="events per stream per round (20)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, the first uncounted (6)")
    parser.add_argument("--no-tap", action="store_true", help="no hub subscriber")
    parser.add_argument(
        "--framed", action="store_true", help="probed reads each event as a chunk of an HTTP body"
    )
    parser.add_argument("--profile", help="write a cProfile of the probed rounds here")
    args = parser.parse_args()
    chunks = rounds_of(args.streams, args.events, max(2, args.rounds))
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    mine = asyncio.run(_on_a_loop(probed, chunks, args.streams, not args.no_tap, args.framed))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    theirs = raw(chunks, args.streams)
    tap = "no subscriber" if args.no_tap else "one subscriber"
    print(f"{args.streams:,} streams, {args.events} events each per round")
    framing = ", chunked framing read" if args.framed else ""
    print(line(f"probed watcher ({tap}{framing})", mine))
    print(line("raw loop's parse", theirs))
    print(f"difference (medians): {statistics.median(mine) - statistics.median(theirs):.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
