"""Soak test: the real probed daemon under ~100 probes/s and 500 SSE streams, faults toggling.

Run from the repository root::

    python bench/soak.py                     # 480 s warm-up, then a 600 s window (about 19 min)
    python bench/soak.py --quick             # smoke run: 20 s warm-up, 60 s window
    python bench/soak.py --duration 3600 --log-dir /tmp/soak   # an hour; keep logs and config
    python bench/soak.py --busy 0.8          # beside a process keeping 0.8 of a CPU busy

See bench/README.md for what is measured and how to read it.

What runs
---------
``--targets`` (2) demo targets, each ``soak.py --serve-target`` in its own process:
``probed.demo.DemoTarget`` on 127.0.0.1, port 0, plus an in-process publisher that
enqueues ``--events-rate`` events/s in total (``DemoTarget.publish``, as ``POST
/api/v1/outbox`` does) round-robin over event types ``soak.g<N>``, with a
per-type sequence ``payload.gseq``; and a small control listener (its own port,
so it answers while the target refuses connections) reporting open streams,
events published and the target's own log counts.

The daemon is the real thing, ``python -m probed run --config FILE``, with a
generated config: ``--rate`` (100) probe runs per second in total, mostly
``http`` GETs of the four health endpoints (with ``json_checks``), some
``login`` (with the ``/api/me`` follow-up) and ``fixture`` (indicators) probes
every 2 s, plus one ``reflect`` and one ``import`` probe per target every 10 s;
``--streams`` (500) ``kind = "sse"`` streams: per target one unfiltered control
stream (``sequence_field = "seq"``, which the reflect and import probes use) and
streams filtered to one event type each (``?types=soak.g<N>``,
``sequence_field = "payload.gseq"``), so each filtered stream receives about one
event per second besides the target's heartbeat comment every second. Log
level info, JSON lines, stdout and stderr to files.

Faults toggle every ``--fault-period`` (30 s) through ``PUT /-/admin/faults``:
target k is faulted on ticks where ``(tick + k)`` is even and healthy on the
others, cycling through latency, 503s, 429s, stream delay, periodic
disconnects, stalled streams, dropped/duplicated/reordered events and refused
connections (``refuse_for``).

What is measured
----------------
Warm-up (``--warmup``, faults toggling) starts when the daemon is ready. It
lasts until the daemon's bounded state has filled once: the signal windows
cover ``[recommend] window`` (300 s, plus 60 s to settle), and every fault has
hit every target once (a target is faulted every other period, so a cycle is
8 faults x 2 x 30 s = 480 s, the default). RSS growth measured after it is what
would keep growing for months.
Then faults are cleared, every stream is waited for (bounded) and the start
readings are taken: ``VmRSS`` from ``/proc/PID/status``, open fds (the least
of five counts of ``/proc/PID/fd`` over 2 s, so a probe's connection in flight
does not count) and a ``/metrics`` scrape. Faults resume for the ``--duration``
window (600 s), RSS and fds are sampled every 10 s, then faults are cleared
again, streams are waited for and the end readings and scrape are taken. From
the two scrapes: ``probed_scheduler_lag_seconds`` (p99 interpolated in the
buckets of the window's difference, and the share ≤ 5 ms), probe runs per
second, failure reasons, skipped ticks, stream reconnects by reason and event
accounting; ``probed_event_loop_lag_seconds`` at both scrapes. "Unhandled
exceptions" are log lines at level error/critical, lines carrying an exception
or a traceback, events named ``*_failed``/``*_crashed``/``*internal_error*``,
runs failed with reason ``internal_error``, non-JSON stdout lines and anything
on stderr, over the whole run including the shutdown. Finally the daemon gets
SIGTERM: its exit code and shutdown time are reported.

Only loopback addresses are used. Every loop is bounded in count and time;
every process started here gets SIGTERM if the bench dies, raises its
open-file soft limit to the hard limit, and is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from _common import (
    LOOPBACK,
    BenchError,
    Processes,
    cancel_on_sigterm,
    cpu_seconds,
    die_with_parent_raise_nofile,
    free_port,
    nofile_limit,
    positive,
    raise_nofile,
    run_bench,
    say,
    tail,
    wait_http_ok,
)
from soak_config import FAST_INTERVAL, SIGNAL_WINDOW, SLOW_INTERVAL, make_plan, write_config
from soak_faults import FAULTS, FaultDriver, healthy_faults
from soak_logs import scan_logs
from soak_report import Run, report
from soak_runqueue import RunQueueSampler
from soak_sampler import Snapshot, mib, quiet_reading, sample, scrape
from soak_targets import PASSWORD_ENV, REPO, SOAK, TargetProc, serve_target, start_target

SETTLE = 3.0
"""Seconds to wait after every stream is back before a start or end reading."""

BUSY_PERIOD = 0.02
"""``--busy``: the busy process spins this long times the share, then sleeps the rest."""


def serve_busy(share: float, lifetime: float) -> int:
    """Keep ``share`` of one CPU busy, a burst every ``BUSY_PERIOD``, for ``lifetime`` s."""
    end = time.monotonic() + lifetime
    while (now := time.monotonic()) < end:
        until = now + share * BUSY_PERIOD
        while time.monotonic() < until:
            pass
        time.sleep((1.0 - share) * BUSY_PERIOD)
    return 0


# --------------------------------------------------------------------------------------
# the run


class Soak:
    def __init__(self, args: argparse.Namespace, procs: Processes, scratch: Path) -> None:
        self.args = args
        self.procs = procs
        self.scratch = scratch
        self.plan = make_plan(args)
        self.healthy = healthy_faults()
        self.run = Run(self.plan)
        self.targets: list[TargetProc] = []
        self.daemon: asyncio.subprocess.Process | None = None
        self.port = 0
        self.control = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=30.0),
        )
        self.driver_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.daemon is not None
        return self.daemon.pid

    async def connected(self) -> int:
        """Streams open on the targets right now (the daemon's connections)."""
        stats = await asyncio.gather(*(t.stats(self.control) for t in self.targets))
        return sum(int(s.get("subscribers", 0)) for s in stats)

    async def wait_connected(self, within: float) -> tuple[int, float]:
        """Wait until every planned stream is open on the targets; (count, seconds)."""
        started = time.monotonic()
        count = 0
        for _ in range(math.ceil(within / 0.5) + 1):
            if self.daemon is not None and self.daemon.returncode is not None:
                raise BenchError(f"the daemon exited with code {self.daemon.returncode}")
            count = await self.connected()
            if count >= self.plan.streams or time.monotonic() - started >= within:
                break
            await asyncio.sleep(0.5)
        return count, time.monotonic() - started

    async def start(self) -> None:
        args, plan = self.args, self.plan
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROBED_")}
        env[PASSWORD_ENV] = secrets.token_urlsafe(18)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        lifetime = args.warmup + args.duration + 900.0
        if args.busy > 0:
            busy = [sys.executable, str(SOAK), "--serve-busy"]
            busy += ["--busy", f"{args.busy:g}", "--lifetime", f"{lifetime:.0f}"]
            await self.procs.spawn(busy, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
        for k in range(plan.targets):
            self.targets.append(
                await start_target(
                    self.procs,
                    self.scratch,
                    env,
                    index=k,
                    streams=plan.streams_per_target[k],
                    groups=plan.groups_per_target[k],
                    events_rate=plan.events_rate / plan.targets,
                    lifetime=lifetime,
                )
            )
        self.port = free_port()
        config = self.scratch / "soak.toml"
        state_dir = self.scratch / "state"
        state_dir.mkdir(exist_ok=True)
        write_config(config, plan, self.targets, self.port, state_dir)
        argv = [sys.executable, "-m", "probed", "run", "--config", str(config)]
        spawned = time.monotonic()
        with (
            (self.scratch / "daemon.log").open("wb") as out,
            (self.scratch / "daemon.stderr").open("wb") as err,
        ):
            self.daemon = await self.procs.spawn(argv, stdout=out, stderr=err, env=env, cwd=REPO)
        url = f"http://{LOOPBACK}:{self.port}/-/ready"
        try:
            await wait_http_ok(self.control, url, self.daemon, 30.0, poll=0.05)
        except BenchError:
            if self.daemon.returncode is not None:
                raise BenchError(
                    f"the daemon exited with code {self.daemon.returncode}\n"
                    f"{tail(self.scratch / 'daemon.stderr')}\n{tail(self.scratch / 'daemon.log')}"
                ) from None
            raise BenchError(
                f"the daemon was not ready within 30 s\n{tail(self.scratch / 'daemon.log')}"
            ) from None
        self.run.ready_at = time.monotonic()
        self.run.ready_s = self.run.ready_at - spawned
        self.run.nofile = nofile_limit(self.pid)
        count, seconds = await self.wait_connected(90.0)
        self.run.connect_s = seconds
        say(
            f"  daemon pid {self.pid} ready after {self.run.ready_s:.2f} s (open-file limit "
            f"{self.run.nofile}); {count}/{plan.streams} streams open after {seconds:.1f} s more"
        )

    def resume_faults(self, driver: FaultDriver, seconds: float) -> None:
        self.driver_task = asyncio.create_task(driver.run(seconds), name="faults")

    async def pause_faults(self, driver: FaultDriver) -> tuple[int, float]:
        """Stop toggling, clear every fault, wait for the streams; (streams open, seconds)."""
        if self.driver_task is not None:
            self.driver_task.cancel()
            await asyncio.gather(self.driver_task, return_exceptions=True)
            self.driver_task = None
        started = time.monotonic()
        await driver.clear()
        count, _ = await self.wait_connected(60.0)
        await asyncio.sleep(SETTLE)
        seconds = time.monotonic() - started
        self.run.quiesce_s.append(seconds)
        return count, seconds

    async def execute(self) -> Run:
        args, run = self.args, self.run
        await self.start()
        driver = FaultDriver(self.control, self.targets, args.fault_period, self.healthy)
        run.driver = driver
        started = time.monotonic()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(
            sample(
                self.pid,
                run.samples,
                started,
                stop_sampling,
                args.warmup + args.duration + 600.0,
                driver.summary,
            ),
            name="sampler",
        )
        try:
            say(f"warm-up {args.warmup:g} s, faults every {args.fault_period:g} s ...")
            self.resume_faults(driver, args.warmup + args.duration + 600.0)
            await asyncio.sleep(args.warmup)
            count, seconds = await self.pause_faults(driver)
            run.connected_start = count
            # a first scrape raises the allocator's high-water mark (MBs of small strings);
            # the end reading includes that, so the start reading must too
            await self.scrape(driver)
            run.start = await quiet_reading(self.pid)
            run.runqueue = RunQueueSampler(self.pid)
            run.runqueue.start()
            run.snap0 = await self.scrape(driver)
            cpu0 = {t.name: cpu_seconds(t.proc.pid) for t in self.targets}
            bench0 = time.process_time()
            say(
                f"window starts: faults cleared, {count}/{self.plan.streams} streams open after "
                f"{seconds:.1f} s; RSS {mib(run.start.rss_kib):.1f} MiB, fds {run.start.fds}; "
                f"/metrics {run.snap0.size / 1e6:.2f} MB in {run.snap0.seconds * 1000:.0f} ms"
            )
            say(f"window {args.duration:g} s, faults every {args.fault_period:g} s ...")
            self.resume_faults(driver, args.duration + 600.0)
            await asyncio.sleep(args.duration)
            count, seconds = await self.pause_faults(driver)
            run.connected_end_target = count
            run.end = await quiet_reading(self.pid)
            run.snap1 = await self.scrape(driver)
            window = run.snap1.at - run.snap0.at
            run.target_cpu = {
                t.name: (cpu_seconds(t.proc.pid) - cpu0[t.name]) / window for t in self.targets
            }
            run.bench_cpu_s = time.process_time() - bench0
            for t in self.targets:
                run.target_stats[t.name] = await t.stats(self.control)
            say(
                f"window ends: faults cleared, {count}/{self.plan.streams} streams open after "
                f"{seconds:.1f} s; RSS {mib(run.end.rss_kib):.1f} MiB, fds {run.end.fds}"
            )
        finally:
            if run.runqueue is not None:
                run.runqueue.stop()
            stop_sampling.set()
            await asyncio.gather(sampler, return_exceptions=True)
            if self.driver_task is not None:
                self.driver_task.cancel()
                await asyncio.gather(self.driver_task, return_exceptions=True)
        await self.shutdown()
        assert run.snap0 is not None
        assert run.snap1 is not None
        # when each fault began, on the daemon log's clock (UTC): for --log-dir readers
        (self.scratch / "faults.txt").write_text(
            "".join(
                f"{datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat()}  {state}\n"
                for wall, state in driver.timeline[1:]
            )
        )
        run.log = scan_logs(
            self.scratch / "daemon.log",
            self.scratch / "daemon.stderr",
            (run.snap0.wall, run.snap1.wall),
            driver.phase_at,
        )
        run.state_bytes = sum(
            p.stat().st_size for p in (self.scratch / "state").rglob("*") if p.is_file()
        )
        return run

    async def scrape(self, driver: FaultDriver) -> Snapshot:
        """Scrape /metrics; runs logged until 1 s after it are labelled as during a scrape."""
        driver.mark("/metrics scrape")
        try:
            return await scrape(self.control, self.port)
        finally:
            await asyncio.sleep(1.0)
            driver.mark(None)

    async def shutdown(self) -> None:
        """SIGTERM the daemon; its exit code and how long it took (SIGKILL after 60 s)."""
        assert self.daemon is not None
        say("SIGTERM to the daemon ...")
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.daemon.terminate()
        try:
            await asyncio.wait_for(self.daemon.wait(), 60.0)
        except TimeoutError:
            self.run.killed = True
            with contextlib.suppress(ProcessLookupError):
                self.daemon.kill()
            await asyncio.wait_for(self.daemon.wait(), 5.0)
        self.run.shutdown_s = time.monotonic() - sent
        self.run.exit_code = await self.procs.stop(self.daemon)

    async def close(self) -> None:
        await self.control.close()


# --------------------------------------------------------------------------------------
# main


def scratch_dir(log_dir: str | None) -> tuple[Path, tempfile.TemporaryDirectory[str] | None]:
    """``log_dir`` (created), or a temporary directory removed at the end."""
    if log_dir:
        path = Path(log_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path, None
    temp = tempfile.TemporaryDirectory(prefix="probed-soak-")
    return Path(temp.name), temp


async def bench(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    soft, hard = raise_nofile()
    procs = Processes(preexec=die_with_parent_raise_nofile)
    scratch, cleanup = scratch_dir(args.log_dir)
    soak = Soak(args, procs, scratch)
    plan = soak.plan
    say("probed soak (bench/soak.py)" + (" --quick" if args.quick else ""))
    say(
        f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}; "
        f"open-file limit {soft}/{hard}"
    )
    say(
        f"  plan: {plan.http} http + {plan.logins} login + {plan.fixtures} fixture probes every "
        f"{FAST_INTERVAL:g} s, {plan.targets} reflect + {plan.targets} import every "
        f"{SLOW_INTERVAL:g} s = {plan.rate:.1f} runs/s; {plan.streams} streams "
        f"({', '.join(str(n) for n in plan.streams_per_target)} per target, event types "
        f"{', '.join(str(g) for g in plan.groups_per_target)}); "
        f"{plan.events_rate:g} events/s published"
    )
    say(f"  logs and config in {scratch}" + ("" if args.log_dir else " (deleted at the end)"))
    if args.busy > 0:
        say(
            f"  a busier machine: a process keeps {args.busy:g} of a CPU busy "
            f"({args.busy * BUSY_PERIOD * 1000:g} ms of every {BUSY_PERIOD * 1000:g})"
        )
    measured = False
    try:
        try:
            run = await soak.execute()
        except BenchError as exc:
            soak.run.errors.append(
                f"{exc}\n  daemon stderr (tail):\n{tail(scratch / 'daemon.stderr')}"
                f"\n  daemon log (tail):\n{tail(scratch / 'daemon.log', 5)}"
            )
            run = soak.run
        measured = report(args, run)
    finally:
        await soak.close()
        await procs.stop_all()
        if cleanup is not None:
            cleanup.cleanup()
    return 0 if measured else 1


def default_warmup(fault_period: float) -> float:
    """Seconds until the daemon's bounded state has filled: the signal windows (plus 60 s)
    and every fault once on every target (each target is faulted every other period)."""
    return max(SIGNAL_WINDOW + 60.0, len(FAULTS) * 2 * fault_period)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Soak the probed daemon: ~100 probes/s and 500 SSE streams on loopback demo "
        "targets with faults toggling; RSS, fds, unhandled exceptions and scheduler lag."
    )
    parser.add_argument("--duration", type=positive, default=600.0, help="measured window, s (600)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="warm-up before the window, s (default: the longer of the 300 s signal windows "
        "plus 60 s and one full fault cycle on every target, 480 s at the default period)",
    )
    parser.add_argument("--rate", type=positive, default=100.0, help="probe runs per second (100)")
    parser.add_argument("--streams", type=int, default=500, help="SSE streams (500)")
    parser.add_argument(
        "--targets", type=int, default=2, help="demo target processes sharing the load (2)"
    )
    parser.add_argument(
        "--events-rate",
        type=float,
        default=50.0,
        help="events published per second over all targets (50); each filtered stream gets "
        "about 1 event/s",
    )
    parser.add_argument(
        "--fault-period", type=positive, default=30.0, help="seconds between fault toggles (30)"
    )
    parser.add_argument(
        "--log-dir",
        help="keep the daemon's config, logs and state in this directory, and faults.txt:"
        " when each fault began (UTC)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20 s warm-up, 60 s window, faults every 10 s",
    )
    parser.add_argument(
        "--busy",
        type=float,
        default=0.0,
        help="a busier machine: a process that keeps this share of one CPU busy, in bursts "
        f"of {BUSY_PERIOD * 1000:g} ms times the share (0: none)",
    )
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve-busy", action="store_true", help=hidden)
    parser.add_argument("--serve-target", action="store_true", help=hidden)
    parser.add_argument("--index", type=int, default=0, help=hidden)
    parser.add_argument("--target-events-rate", type=float, default=0.0, help=hidden)
    parser.add_argument("--groups", type=int, default=1, help=hidden)
    parser.add_argument("--lifetime", type=positive, default=3600.0, help=hidden)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_target:
        return serve_target(args.index, args.target_events_rate, max(1, args.groups), args.lifetime)
    if args.serve_busy:
        return serve_busy(args.busy, args.lifetime)
    if not 0.0 <= args.busy < 1.0:
        print("--busy must be in [0, 1)", file=sys.stderr)
        return 2
    if args.quick:
        args.duration = min(args.duration, 60.0)
        args.warmup = min(args.warmup if args.warmup is not None else 20.0, 20.0)
        args.fault_period = min(args.fault_period, 10.0)
    if args.warmup is None:
        args.warmup = default_warmup(args.fault_period)
    if not 1 <= args.targets <= 16 or args.streams < 2 * args.targets or args.warmup < 0:
        print("need 1-16 --targets, --streams >= 2 per target, --warmup >= 0", file=sys.stderr)
        return 2
    if args.events_rate < 0:
        print("--events-rate must be >= 0", file=sys.stderr)
        return 2
    return run_bench(bench(args), lambda code: code, failed="soak failed")


if __name__ == "__main__":
    sys.exit(main())
