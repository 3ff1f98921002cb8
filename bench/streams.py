"""Benchmark: probed's SSE stream watcher beside a minimal aiohttp read loop, and reflect lag.

Run from the repository root::

    python bench/streams.py                  # full run, about 4 minutes
    python bench/streams.py --quick          # smoke run: short windows, (c) with 500 streams
    python bench/streams.py --only b         # one part: a, b, c or reflect (repeatable)
    python bench/streams.py --only b --rounds 5   # 5 alternating windows each, medians
    python bench/streams.py --only b --rounds 5 --together   # each round's two at once
    python bench/streams.py --only b --profile /tmp/prof   # + cProfile of each window

What it measures
----------------
An SSE server runs in its own process (``streams.py --serve``, aiohttp on
127.0.0.1, port 0). ``GET /sse?rate=R`` sends ``R`` events per second on each
connection, each ``id: n`` with JSON data ``{"seq": n, "enqueued_at": t}``
where ``t = time.time() - D`` taken just before the write, with ``D = 0.5 s``.
So a client that receives the event at wall time ``w`` measures a lag of
``w - t = D + overhead``; ``overhead = w - t - D`` is what the measurement
itself adds (loopback, the client's event loop, its parsing). A negative
overhead would show a clock problem, not a small lag. Connections get spread
send phases (golden-ratio offsets) so 1,000 streams do not send at once, a
``: heartbeat`` comment every 10 s, and ``Last-Event-ID`` resumes the sequence.
The server measures its own send lateness (actual - scheduled send time), its
send rate and its CPU, so a server that cannot keep up is reported, not hidden.

Each scenario runs twice, one client after the other, each in a fresh client
process (``streams.py --client raw|probed``) against a fresh server process
(with ``--together``, both at the same time, each against its own server: the
machine's speed can move by 15 % within a minute, and then moves for both):

``raw``
    a minimal aiohttp loop per stream: ``async for chunk in
    resp.content.iter_any()``, split events on ``b"\\n\\n"``, ``json.loads`` the
    data line, overhead from ``time.time()`` taken when the chunk arrived.
``probed``
    the real thing: ``StreamManager`` starting one ``StreamWatcher`` per stream
    (``SseStream`` with ``subscribers = 1``, ``lag_field = "enqueued_at"``,
    ``sequence_field = "seq"``, idle timeout 60 s) on the daemon's own stream
    session (``create_sessions(limit=0)``: no connection cap); the bench
    subscribes to the ``Hub`` for every stream and computes the overhead from
    ``ReceivedEvent.received_wall`` (the wall time the watcher itself uses for
    lag). ``StreamStats`` are checked: lost, duplicated, out-of-order, late,
    negative lag, reconnects, connected.

Fresh processes keep the figures apart: RSS per stream is ``(VmRSS after all
streams connected and the warm-up) - (VmRSS before anything was built)`` over
the streams, and one client's freed memory cannot hide the other's. CPU per
event is the client process's CPU time (``time.process_time()``) over the
measured window divided by the events received in it; nothing is subtracted.
The window starts after every stream connected and a warm-up. Garbage
collections in the window (count and longest pause per generation, from
``gc.callbacks``) are printed too: they are where a stalled event loop's
lag usually comes from.

Scenarios: (a) 1 stream x 100 events/s, (b) 1,000 streams x 2 events/s,
(c) 5,000 streams x 0.2 events/s held for 30 s, counting the streams that stayed
connected throughout (connected at the start, same connection at the end, no
reconnect) and the lowest connected count sampled every second.

Reflect: the demo target (``probed.demo.DemoTarget``) runs in its own process
with fault ``stream_delay = 0.2 s``; a client process runs one
``StreamWatcher`` on its ``/api/v1/events/stream`` and the reflect probe
(``probe_reflect`` through ``run_probe``, default settings) 100 times at
10 runs/s; overhead = ``delivery_lag_seconds`` - the delay the target reports
at ``GET /-/admin/faults``. Beside it a raw aiohttp client (``--client
reflect-raw``: POST the outbox, raw SSE read loop, same clock) is measured the
same way, and both again with a pooled inject connection (``fresh_connection =
false``); only the default (``fresh_connection = false`` for reflect: the
inject reuses its connection) is judged. The inject request's phases show where its time
goes.

Every figure is printed beside its target with MET / NOT MET; nothing is
hard-coded. Only loopback addresses are used; every loop is bounded in count
and time; every process started here is stopped on exit, Ctrl-C or error
(and gets SIGTERM if the bench dies). The file-descriptor limit is raised to
the hard limit in every process; a hard limit too low for a scenario is
reported and the scenario skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    BenchError,
    Processes,
    cancel_on_sigterm,
    flags,
    num,
    positive,
    positive_int,
    progress,
    raise_nofile,
    run_bench,
    run_child_result,
    say,
)
from streams_client import FD_MARGIN, client_main
from streams_report import (
    Report,
    Scenario,
    report_reflect,
    report_scenario,
    report_summary,
    scenarios,
)
from streams_servers import REFLECT_DELAY, D, serve_demo, serve_sse

SELF = Path(__file__).resolve()


# --------------------------------------------------------------------------------------
# processes (the orchestrating bench)


async def start_server(
    procs: Processes, argv: Sequence[str]
) -> tuple[asyncio.subprocess.Process, int]:
    """Start a server process that prints its port first; return it and the port."""
    proc = await procs.spawn([sys.executable, str(SELF), *argv])
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        return proc, int(line)
    except (TimeoutError, ValueError) as exc:
        await procs.stop(proc)
        raise BenchError(f"server {' '.join(argv)} did not print its port: {exc!r}") from None


async def run_client(procs: Processes, argv: Sequence[str], within: float) -> dict[str, Any]:
    """Run a client process (``streams.py`` with ``argv``) to its end; return its result."""
    return await run_child_result(procs, [sys.executable, str(SELF), *argv], within)


PARTS = ("a", "b", "c", "reflect")


async def client_window(
    procs: Processes, args: argparse.Namespace, sc: Scenario, client: str, lifetime: float
) -> dict[str, Any] | str:
    """One window of ``client`` (raw or probed) in scenario ``sc``, against a fresh server
    process of its own: its result, or what went wrong."""
    try:
        server, port = await start_server(procs, flags(serve=True, lifetime=lifetime))
        try:
            argv = flags(
                client=client,
                scenario=sc.key,
                port=port,
                streams=sc.streams,
                rate=sc.rate,
                warmup=sc.warmup,
                window=sc.window,
                connect_within=sc.connect_within,
                **({"profile": args.profile} if args.profile else {}),
            )
            return await run_client(procs, argv, lifetime + 60.0)
        finally:
            await procs.stop(server)
    except BenchError as exc:
        return f"({sc.key}) {client}: {exc}"


async def bench(args: argparse.Namespace) -> Report:
    cancel_on_sigterm()
    parts = [p for p in PARTS if p in (args.only or PARTS)]
    report = Report()
    procs = Processes()
    soft, hard = raise_nofile()
    all_scenarios = scenarios(args.quick)
    say("probed SSE stream benchmark (bench/streams.py)" + (" --quick" if args.quick else ""))
    say(
        f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
    )
    say(
        f"  open-file limit: soft {soft}, hard {hard} (each client and server process "
        "raises its own soft limit to the hard limit)"
    )
    say(
        f"  known lag D = {D:g} s: overhead = receive wall time - enqueued_at - D; "
        "server and each client in their own processes, loopback only"
    )
    try:
        for key in parts:
            if key == "reflect":
                continue
            sc = all_scenarios[key]
            need = sc.streams + FD_MARGIN
            if hard < need:
                msg = (
                    f"({key}) skipped: the hard open-file limit {hard} is below the {need} a "
                    f"process needs for {sc.streams} streams; raise it (ulimit -Hn) and rerun"
                )
                say(msg)
                report.errors.append(msg)
                continue
            results: dict[str, dict[str, Any]] = {}
            clients = ("raw", "probed")
            per_event: dict[str, list[float]] = {client: [] for client in clients}
            lifetime = sc.connect_within + sc.warmup + sc.window + 120.0
            for round_no in range(args.rounds):
                progress(f"{sc.title} (round {round_no + 1} of {args.rounds}) ...")
                if args.together:
                    outcomes = await asyncio.gather(
                        *(client_window(procs, args, sc, c, lifetime) for c in clients)
                    )
                else:  # one after the other: a window's coroutine made when it runs
                    outcomes = [await client_window(procs, args, sc, c, lifetime) for c in clients]
                for client, outcome in zip(clients, outcomes, strict=True):
                    if isinstance(outcome, str):
                        progress(f"  {outcome}")
                        report.errors.append(outcome)
                    else:
                        results[client] = outcome
                        per_event[client].append(num(outcome["cpu_us_per_event"]))
            for client, values in per_event.items():
                if client in results and len(values) > 1:  # the table's other rows: the last round
                    results[client]["cpu_us_per_event"] = statistics.median(values)
                    results[client]["cpu_us_per_event_rounds"] = values
            report_scenario(sc, results, report)
        if "reflect" in parts:
            progress(f"(reflect) {args.reflect_runs} runs at {args.reflect_rate:g}/s ...")
            lifetime = 120.0 + 4 * args.reflect_runs / args.reflect_rate
            demo, port = await start_server(
                procs, flags(serve_demo=True, stream_delay=REFLECT_DELAY, lifetime=lifetime)
            )
            reflect_results: dict[str, dict[str, Any]] = {}
            try:
                for fresh, client in itertools.product(("yes", "no"), ("reflect", "reflect-raw")):
                    argv = flags(
                        client=client,
                        port=port,
                        runs=args.reflect_runs,
                        rate=args.reflect_rate,
                        fresh_connection=fresh,
                    )
                    try:
                        reflect_results[f"{client}/{fresh}"] = await run_client(
                            procs, argv, lifetime
                        )
                    except BenchError as exc:
                        report.errors.append(f"({client}, fresh_connection={fresh}): {exc}")
            finally:
                await procs.stop(demo)
            report_reflect(reflect_results, report)
        report_summary(report)
    finally:
        await procs.stop_all()
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark probed's SSE stream watcher and reflect probe on loopback."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: short windows, (c) with 500 streams",
    )
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="write a cProfile of each client's measured window to DIR/<part>-<client>.prof "
        "(the figures of a profiled run are inflated: use it to find where time goes)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="windows of each scenario per client, alternating raw and probed; CPU per "
        "event is then the median of each client's rounds, the other rows the last round's (1)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run each round's raw and probed windows at the same time (each client with "
        "its own server), so that the machine's speed, which can move by 15 %% within a "
        "minute, is the same for both",
    )
    parser.add_argument("--reflect-runs", type=int, default=100, help="reflect runs (100)")
    parser.add_argument(
        "--reflect-rate", type=positive, default=10.0, help="reflect runs started per second (10)"
    )
    # internal: the server and client processes
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve", action="store_true", help=hidden)
    parser.add_argument("--serve-demo", action="store_true", help=hidden)
    parser.add_argument("--stream-delay", type=float, default=REFLECT_DELAY, help=hidden)
    parser.add_argument("--lifetime", type=positive, default=600.0, help=hidden)
    parser.add_argument(
        "--client", choices=("raw", "probed", "reflect", "reflect-raw"), help=hidden
    )
    parser.add_argument("--scenario", default="?", help=hidden)
    parser.add_argument("--port", type=int, default=0, help=hidden)
    parser.add_argument("--streams", type=int, default=1, help=hidden)
    parser.add_argument("--rate", type=positive, default=1.0, help=hidden)
    parser.add_argument("--warmup", type=float, default=5.0, help=hidden)
    parser.add_argument("--window", type=positive, default=20.0, help=hidden)
    parser.add_argument("--connect-within", type=positive, default=60.0, help=hidden)
    parser.add_argument("--runs", type=int, default=100, help=hidden)
    parser.add_argument("--warmup-runs", type=int, default=5, help=hidden)
    parser.add_argument("--fresh-connection", choices=("yes", "no"), default="yes", help=hidden)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        return serve_sse(args.lifetime)
    if args.serve_demo:
        return serve_demo(args.stream_delay, args.lifetime)
    if args.client:
        return client_main(args)
    if args.reflect_runs < 1 or args.reflect_runs > 10_000:
        print("--reflect-runs must be in [1, 10000]", file=sys.stderr)
        return 2
    if args.quick:
        args.reflect_runs = min(args.reflect_runs, 30)
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
        args.profile = str(profile_dir)
    return run_bench(bench(args), lambda report: 1 if report.errors else 0)


if __name__ == "__main__":
    sys.exit(main())
