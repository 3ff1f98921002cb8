"""Benchmark: the longest event-loop lag while a target cuts all of its streams at once.

Run from the repository root::

    python bench/stream_storm.py                  # 250 streams, 3 rounds, uvloop
    python bench/stream_storm.py --streams 500 --loop asyncio
    python bench/stream_storm.py --backlog 30     # a backlog to every stream, no cut
    python bench/stream_storm.py --deadlines      # idle deadlines coming together

A server in its own process (``--serve``: asyncio on 127.0.0.1, port 0) answers every
``GET`` with an SSE head and one event and keeps the connection; on ``SIGUSR1`` it closes
every connection it holds at once, as a target's restart or a proxy does. The client runs a
real ``StreamManager`` with ``--streams`` watchers on that target (one subscriber each,
``min_reconnect_delay = 1s``) and a ticker task that sleeps 1 ms and records how late each
tick woke. Each round: all connected, then one second quiet, then the cut; the figures are
the ticker's longest lags in the half second after the cut (the ends) and in the three
seconds after that (the reconnects), and the streams connected at the end of the round.

With ``--backlog N`` the server, on ``SIGUSR2``, writes ``N`` events to every stream at
once instead (what a target does when a stall ends and it sends what it held), and a
round reports the longest lags in the second after, and how long the watchers took to
account every event.
With ``--deadlines`` the streams have a 2 s ``idle_timeout`` and the server sends a heartbeat
comment to every stream at once every 0.7 s: each stream's idle deadline comes, with all the
others', 2 s after a heartbeat (0.1 s before another) and finds it alive. A round measures
over 6 s of that the longest lag of the ticks within 50 ms after a heartbeat (the first
stream's last read) and of the others (the deadlines' turns among them), and the process's
CPU time in those 6 s; then the server stops the heartbeats after one event to every stream
at once (``SIGUSR2``), so that every stream passes its deadline together and ends as
stalled, and the round measures the longest lags over the 1.5 s around that (from 1.8 s
after the event).
The daemon's JSON log lines are written to ``/dev/null``, as a daemon writes them to a pipe.

Only loopback is used; the server is killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
_EVENT = b'id: 1\ndata: {"seq": 1}\n\n'
_COMMENT = b": heartbeat\n\n"


async def serve() -> None:
    """The server: hold every stream; close them all at once on SIGUSR1."""
    held: list[asyncio.StreamWriter] = []
    seqs: dict[asyncio.StreamWriter, int] = {}
    period = float(os.environ.get("STORM_HEARTBEAT", "0"))
    beating = [period > 0]

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(_HEAD + b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT))
        held.append(writer)
        seqs[writer] = 1
        beating[0] = period > 0  # the streams are back (after a stall): heartbeats again
        with contextlib.suppress(ConnectionError):
            await reader.read()
        if writer in held:  # the client ended it (a stall)
            held.remove(writer)

    def cut() -> None:
        writers = list(held)
        held.clear()
        for writer in writers:
            writer.close()

    async def beat() -> None:
        while period:
            await asyncio.sleep(period)
            for writer in held if beating[0] else ():
                writer.write(b"%x\r\n%s\r\n" % (len(_COMMENT), _COMMENT))

    def flush() -> None:
        beating[0] = False  # silent from now: every stream passes its idle deadline together
        count = int(os.environ.get("STORM_BACKLOG", "30"))
        for writer in held:
            first = seqs[writer] + 1
            seqs[writer] = first + count - 1
            events = b"".join(
                b'id: %d\ndata: {"seq": %d}\n\n' % (n, n) for n in range(first, first + count)
            )
            writer.write(b"%x\r\n%s\r\n" % (len(events), events))

    server = await asyncio.start_server(stream, "127.0.0.1", 0, backlog=4096)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, cut)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, flush)
    print(server.sockets[0].getsockname()[1], flush=True)
    beats = asyncio.create_task(beat())
    await asyncio.Event().wait()
    beats.cancel()


async def client(args: argparse.Namespace, port: int) -> None:
    from probed.config import SseStream, TargetConfig
    from probed.http.session import create_sessions
    from probed.store import ResultStore
    from probed.stream.hub import Hub
    from probed.stream.manager import StreamManager

    target = TargetConfig(base_url=f"http://127.0.0.1:{port}")
    target._finish_headers()
    specs = [
        SseStream(
            name=f"s{i}", target="t", path="/sse", sequence_field="seq",
            idle_timeout="2s" if args.deadlines else "60s", reconnect_initial="1s",
            reconnect_max="2s",
            min_reconnect_delay="1s",
        )
        for i in range(args.streams)
    ]  # fmt: skip
    store = ResultStore()
    fresh, pooled = create_sessions()
    manager = StreamManager(store, Hub(), pooled)
    lags: list[float] = []

    ticks: list[tuple[float, float]] = []
    """(time.monotonic() when a tick woke, its lag) in --deadlines rounds."""
    reads: set[float] = set()
    """The first stream's last reads seen by the ticker (the heartbeats' times)."""

    async def ticker() -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            lag = time.perf_counter() - began - 0.001
            lags.append(lag)
            if args.deadlines:
                ticks.append((time.monotonic(), lag))
                if (read := store.streams[specs[0].name].last_byte) is not None:
                    reads.add(read)

    def connected() -> int:
        return sum(store.streams[s.name].connected for s in specs)

    def received() -> int:
        return sum(store.streams[s.name].received for s in specs)

    print(f"{args.streams} streams on {args.loop}; {args.rounds} rounds")
    if args.deadlines:
        print(
            "  round  kept alive: longest lag at a heartbeat / between them (ms), CPU (s)"
            "   stalled: longest / 2nd / 3rd"
        )
    elif args.backlog:
        print(f"  round  {args.backlog} events each: longest / 2nd / 3rd lag (ms)   accounted in")
    else:
        print("  round  ends: longest / 2nd / 3rd lag (ms)   reconnects: longest (ms)   connected")
    async with asyncio.TaskGroup() as tg:
        manager.start(tg, specs, {"t": target})
        tick = tg.create_task(ticker())
        for round_ in range(1, args.rounds + 1):
            if args.deadlines:
                await deadlines_round(args, round_, connected, lags, ticks, reads)
                continue
            if args.backlog:
                await backlog_round(args, round_, connected, received, lags)
                continue
            await all_connected(args, connected)
            await asyncio.sleep(1.0)
            lags.clear()
            os.kill(args.server_pid, signal.SIGUSR1)
            await asyncio.sleep(0.5)
            ends = sorted(lags, reverse=True)[:3]
            lags.clear()
            await asyncio.sleep(3.0)
            again = max(lags)
            print(
                f"  {round_:5d}  {ends[0] * 1e3:16.1f} / {ends[1] * 1e3:.1f} / "
                f"{ends[2] * 1e3:.1f}  {again * 1e3:24.1f}  {connected():10d}"
            )
        tick.cancel()
        await manager.stop()
    await fresh.close()
    await pooled.close()


async def all_connected(args: argparse.Namespace, connected: Callable[[], int]) -> None:
    """Return once every stream is connected, or after 30 s."""
    for _ in range(600):
        if connected() == args.streams:
            break
        await asyncio.sleep(0.05)


async def backlog_round(
    args: argparse.Namespace,
    round_: int,
    connected: Callable[[], int],
    received: Callable[[], int],
    lags: list[float],
) -> None:
    """One round of ``--backlog``: every stream handed ``args.backlog`` events at once."""
    await all_connected(args, connected)
    await asyncio.sleep(1.0)
    want = received() + args.backlog * args.streams
    lags.clear()
    began = time.perf_counter()
    os.kill(args.server_pid, signal.SIGUSR2)
    took = math.nan
    while time.perf_counter() - began < 1.0 or math.isnan(took):
        if math.isnan(took) and received() >= want:
            took = time.perf_counter() - began
        await asyncio.sleep(0.002)
    worst = sorted(lags, reverse=True)[:3]
    print(
        f"  {round_:5d}  {worst[0] * 1e3:30.1f} / {worst[1] * 1e3:.1f} / {worst[2] * 1e3:.1f}"
        f"  {took * 1e3:10.0f} ms"
    )


async def deadlines_round(
    args: argparse.Namespace,
    round_: int,
    connected: Callable[[], int],
    lags: list[float],
    ticks: list[tuple[float, float]],
    reads: set[float],
) -> None:
    """One round of ``--deadlines``: deadlines that find their streams alive, then ones that
    pass together (the server silent after one event to every stream)."""
    await all_connected(args, connected)
    ticks.clear()
    reads.clear()
    cpu = time.process_time()
    await asyncio.sleep(6.0)
    cpu = time.process_time() - cpu
    beats = sorted(reads)
    at_beat = between = 0.0
    for woke, lag in ticks:
        # a tick that woke within 50 ms after a heartbeat's first read: the heartbeat's turns
        index = bisect.bisect_right(beats, woke) - 1
        if index >= 0 and woke - beats[index] <= 0.05:
            at_beat = max(at_beat, lag)
        else:
            between = max(between, lag)
    os.kill(args.server_pid, signal.SIGUSR2)
    await asyncio.sleep(1.8)
    lags.clear()
    await asyncio.sleep(1.5)
    stalled = sorted(lags, reverse=True)[:3]
    print(
        f"  {round_:5d}  {at_beat * 1e3:37.1f} / {between * 1e3:.1f}  {cpu:8.3f}"
        f"  {stalled[0] * 1e3:26.1f} / {stalled[1] * 1e3:.1f} / {stalled[2] * 1e3:.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=250, help="streams (250)")
    parser.add_argument("--rounds", type=int, default=3, help="cuts (3)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--backlog", type=int, default=0, help="events written to every stream at once (0: cut)"
    )
    parser.add_argument(
        "--deadlines", action="store_true", help="idle deadlines alive, then stalled, together"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve())
        return 0
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    from probed.logging import configure_logging

    with open(os.devnull, "w") as devnull:
        configure_logging(stream=devnull)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdout=subprocess.PIPE,
            start_new_session=True,
            env={
                **os.environ,
                "STORM_BACKLOG": str(args.backlog or 1),
                "STORM_HEARTBEAT": "0.7" if args.deadlines else "0",
            },
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            args.server_pid = server.pid
            asyncio.run(client(args, port))
        finally:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
