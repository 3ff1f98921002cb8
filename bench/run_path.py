"""Benchmark: probed's own CPU per probe run, from the scheduler's tick to the log line.

Run from the repository root::

    python bench/run_path.py                     # 20,000 http runs against a loopback target
    python bench/run_path.py --kind stub         # no network: only probed's own path per run
    python bench/run_path.py --runs 5000 --profile /tmp/run.prof   # + cProfile of the window
    python bench/run_path.py --repeat 5          # 5 windows, median and spread
    python bench/run_path.py --log-lines 20000   # only the probe_run log line, no daemon
    python bench/run_path.py --event-loop asyncio   # asyncio's loop instead of uvloop

What it measures
----------------
The real ``probed.daemon.Daemon`` runs in this process (not a child: the window can be
profiled), with ``--probes`` (200) ``http`` probes of one target at the interval that
gives ``--rate`` (1,000) runs per second, logging JSON lines to ``/dev/null`` as the
daemon logs them to its stdout. The target is a child process (``--serve-target``:
aiohttp on 127.0.0.1, ``GET /health`` answers 200 at once), so its CPU is not counted.

``--kind http`` runs the real ``http`` kind (a fresh TCP connection per run, as by
default); ``--kind stub`` replaces the kind's function with one that returns a 200
result after one ``await asyncio.sleep(0)``, so what is left is probed's own work per
run: the scheduler's tick and task, ``run_probe`` (trace id, timing, the result), the
store, the SLO feed and the ``probe_run`` log line. The loop is uvloop, as the daemon's
default (``--event-loop asyncio`` for asyncio's). A window in which fewer runs went
through the stub than finished fails the bench (the executor did not run it).

After a warm-up (``--warmup`` s, uncounted) each window lasts until ``--runs`` more
runs finished; CPU per run = ``time.process_time()`` over the window / runs. The
figure is CPU time, not wall time, so another process on the machine moves it less
than a latency (still by some percent: caches, frequency). ``--repeat`` windows
print their median and spread.

``--log-lines N`` measures the ``probe_run`` line alone: ``log_run`` of one success and
one failure (with ``error.message``) ``N`` times each, logging configured as the daemon
does (JSON, to ``/dev/null``), CPU per line, median of 5.

Only loopback addresses are used; the target process is stopped on exit, Ctrl-C or
error (and gets SIGTERM if the bench dies); every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from _common import (
    BenchError,
    Processes,
    free_port,
    http_probes_config,
    run_bench,
    say,
    serve_health,
    start_printing_port,
)

from probed import executor as executor_module
from probed.config import ProbeSpec, load_config
from probed.daemon import Daemon, log_run
from probed.eventloop import EVENT_LOOPS, loop_factory
from probed.logging import configure_logging
from probed.probes import PROBERS
from probed.probes.base import ProbeContext
from probed.results import ProbeResult, ProbeRun, Reason

SELF = Path(__file__).resolve()


def write_config(scratch: Path, target_port: int, probes: int, rate: float) -> Path:
    """A config with ``probes`` http probes of ``/health`` giving ``rate`` runs a second."""
    interval_ms = max(1, round(probes / rate * 1000))
    return http_probes_config(
        scratch,
        "run-path",
        listen_port=free_port(),
        target_port=target_port,
        probes=probes,
        interval_ms=interval_ms,
        path="/health",
        timeout_ms=interval_ms * 9 // 10,
    )


_stub_runs = 0


async def _stub(ctx: ProbeContext, spec: ProbeSpec) -> ProbeResult:
    global _stub_runs
    _stub_runs += 1
    await asyncio.sleep(0)
    return ProbeResult.ok(status_code=200, content_length=3)


def runs_done(daemon: Daemon) -> int:
    return sum(sum(state.runs.values()) for state in daemon.store)


async def wait_runs(daemon: Daemon, at_least: int, within: float) -> None:
    deadline = time.monotonic() + within
    while runs_done(daemon) < at_least:
        if time.monotonic() > deadline:
            raise BenchError(f"fewer than {at_least} runs within {within:g} s")
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> list[float]:
    procs = Processes()
    per_run: list[float] = []
    with tempfile.TemporaryDirectory(prefix="run-path-") as tmp:
        scratch = Path(tmp)
        proc, port = await start_printing_port(
            procs, [sys.executable, str(SELF), "--serve-target"], scratch / "target.stderr"
        )
        try:
            config = load_config(write_config(scratch, port, args.probes, args.rate))
            configure_logging(
                level="info", fmt="json", env="bench", location="bench", stream=args.sink
            )
            if args.kind == "stub":
                executor_module.PROBERS = {**PROBERS, "http": _stub}  # type: ignore[attr-defined]
            daemon = Daemon(config, install_signal_handlers=False)
            task = asyncio.create_task(daemon.run())
            await asyncio.wait_for(daemon.wait_started(), 30.0)
            await asyncio.sleep(args.warmup)
            budget = args.runs / args.rate * 3 + 30.0
            for window in range(args.repeat):
                start_runs = runs_done(daemon)
                profiler = cProfile.Profile() if args.profile else None
                cpu0, loop0 = time.process_time(), time.thread_time()
                if profiler is not None:
                    profiler.enable()
                await wait_runs(daemon, start_runs + args.runs, budget)
                if profiler is not None:
                    profiler.disable()
                cpu, on_loop = time.process_time() - cpu0, time.thread_time() - loop0
                runs = runs_done(daemon) - start_runs
                if args.kind == "stub" and _stub_runs < runs:
                    raise BenchError(
                        f"only {_stub_runs:,} of {runs:,} runs went through the stub kind: "
                        "the executor does not run the stub"
                    )
                per_run.append(cpu / runs * 1e6)
                say(f"window {window + 1}: {runs:,} runs, {cpu:.2f} CPU-s, "
                    f"{per_run[-1]:.1f} CPU-µs per run, of which "
                    f"{on_loop / runs * 1e6:.1f} on the event loop's thread")  # fmt: skip
                if profiler is not None:
                    out = Path(args.profile)
                    if args.repeat > 1:
                        out = out.with_suffix(f".{window + 1}{out.suffix}")
                    profiler.dump_stats(out)
                    say(f"  cProfile of the window written to {out}")
            daemon.request_stop()
            code = await asyncio.wait_for(task, 30.0)
            if code != 0:
                raise BenchError(f"the daemon exited with {code}")
        finally:
            await procs.stop(proc)
    return per_run


def log_lines(count: int, sink: TextIO) -> int:
    """CPU µs per ``probe_run`` line, success and failure."""
    configure_logging(level="info", fmt="json", env="bench", location="bench", stream=sink)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    ok = ProbeResult.ok(status_code=200, content_length=3)
    failed = ProbeResult.fail(
        Reason.CONNECT_REFUSED, "connection refused by 127.0.0.1:1", error_code="ECONNREFUSED"
    )
    for name, result in (("success", ok), ("failure", failed)):
        run = ProbeRun("p0001", "http", "bench", "3fa2c1-1a", trace, time.time(), 0.0123, result)
        per_line = []
        for _ in range(5):
            cpu = time.process_time()
            for _ in range(count):
                log_run(run, 0.00042)
            per_line.append((time.process_time() - cpu) / count * 1e6)
        say(f"probe_run line, {name}: median {statistics.median(per_line):.1f} CPU-µs "
            f"(min-max {min(per_line):.1f}-{max(per_line):.1f})")  # fmt: skip
    return 0


def report(per_run: list[float]) -> int:
    if not per_run:
        return 1
    spread = f"{min(per_run):.1f}-{max(per_run):.1f}"
    say(f"CPU-µs per run: median {statistics.median(per_run):.1f} (min-max {spread}, "
        f"{len(per_run)} windows)")  # fmt: skip
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kind", choices=("http", "stub"), default="http")
    parser.add_argument("--runs", type=int, default=20_000, help="runs per window (20,000)")
    parser.add_argument("--probes", type=int, default=200, help="probes (200)")
    parser.add_argument("--rate", type=float, default=1000.0, help="runs per second (1,000)")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted warm-up, s (3)")
    parser.add_argument("--repeat", type=int, default=1, help="windows (1)")
    parser.add_argument("--profile", help="write a cProfile of each window here")
    parser.add_argument("--log-lines", type=int, default=0, help="time N probe_run lines only")
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="the loop the daemon runs on in this process (uvloop, the daemon's default)",
    )
    parser.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse_args()
    if options.serve_target:
        sys.exit(serve_health(3600.0))
    with open(os.devnull, "w", encoding="utf-8") as options.sink:  # the daemon's log lines
        if options.log_lines:
            code = log_lines(options.log_lines, options.sink)
        else:
            code = run_bench(main(options), report, loop_factory=loop_factory(options.event_loop))
    sys.exit(code)
