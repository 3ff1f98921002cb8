"""Benchmark: probed against Debian's prometheus-blackbox-exporter on loopback HTTP probes.

Run from the repository root::

    python bench/http_probes.py                 # 60 s windows at 50 probes/s
    python bench/http_probes.py --quick         # 10 s windows, 100 probes for lateness
    python bench/http_probes.py --rounds 3      # alternate the two probers 3 times

See bench/README.md for how each figure is measured and how to read it.

Both probers probe the same target, a small aiohttp server in its own process
on 127.0.0.1 whose ``GET /delay`` answers 200 after sleeping 50 ms. They run
one after the other (this is a 2-core machine), each with an uncounted warm-up
and then a measured window. For each the bench prints CPU seconds per 1,000
probes (utime+stime of the prober's process from ``/proc/PID/stat``) and the
latency inflation (the prober's own measured duration minus the true 50 ms)
at p50 and p99, then the ratios. It also prints probed's scheduler start
lateness p99 with 500 probes configured, its idle RSS and its start-to-ready
time. Every figure is printed with its target and MET / NOT MET.

Only loopback addresses are used. Every loop is bounded in count and time,
and every process started here is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from _common import (
    CLK_TCK,
    LOOPBACK,
    BenchError,
    Processes,
    cancel_on_sigterm,
    cpu_seconds,
    free_port,
    http_probes_config,
    percentile,
    positive,
    rss_kib,
    run_bench,
    say,
    serve_app,
    tail,
    verdict,
    wait_http_ok,
)
from aiohttp import web

SELF = Path(__file__).resolve()
REPO = SELF.parent.parent
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
DELAY = 0.050
"""The target's known answer delay (seconds): the 'true' latency of every probe."""
BLACKBOX_MODULE = "http_2xx"

# Targets: the CPU and p99 ratios of issue 15 (performance); lateness, RSS and start-up of
# the first plan (``startup.py`` prints issue 15's 50 MB and 0.4 s).
TARGET_CPU_RATIO = 0.6
TARGET_P99_RATIO = 1.0
TARGET_LATENESS_MS = 5.0
TARGET_RSS_MB = 60.0
TARGET_READY_S = 1.0

NOT_MEASURED = float("nan")
BUSY_WARN_CORES = 0.2
"""Warn when other processes used more than this many cores during a measured window."""


# --------------------------------------------------------------------------------------
# small helpers


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used so far, over all cores (from ``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class OtherLoad:
    """CPU used during a window by processes other than the prober, the target and the bench."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = [*pids, os.getpid()]
        self._start = self._ours_and_all()

    def _ours_and_all(self) -> tuple[float, float, float]:
        ours = 0.0
        for pid in self._pids:
            with contextlib.suppress(OSError):
                ours += cpu_seconds(pid)
        return time.monotonic(), ours, machine_busy_seconds()

    def cores(self) -> float:
        """Average cores the other processes kept busy since this object was made."""
        t0, ours0, all0 = self._start
        t1, ours1, all1 = self._ours_and_all()
        return max(0.0, (all1 - all0) - (ours1 - ours0)) / (t1 - t0) if t1 > t0 else 0.0


def fmt(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or ``n/a``."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------
# the target (runs in its own process: ``http_probes.py --serve-target``)


def _sleep_until(deadline: float) -> None:
    """Block until ``perf_counter()`` reaches ``deadline``."""
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def serve_target(max_lifetime: float) -> int:
    """Serve ``GET /delay`` (200 after 50 ms) on 127.0.0.1:0; print the port; stop on SIGTERM.

    ``GET /stats`` returns how late each 50 ms sleep really ended, in ms (the
    target's own share of any measured inflation; one value per request served);
    ``?reset=1`` starts a new window.
    """

    async def main() -> None:
        overshoot: list[float] = []

        loop = asyncio.get_running_loop()

        async def delay(request: web.Request) -> web.Response:
            start = time.perf_counter()
            # asyncio's timers wake up to ~1 ms late (epoll's timeout is in whole ms):
            # sleep most of the delay on the loop, the last 5 ms in a thread with
            # time.sleep, which wakes within tens of microseconds.
            await asyncio.sleep(DELAY - 0.005)
            await loop.run_in_executor(None, _sleep_until, start + DELAY)
            overshoot.append(time.perf_counter() - start - DELAY)
            return web.Response(text="ok\n")

        async def stats(request: web.Request) -> web.Response:
            data = {"overshoot_ms": [round(v * 1000, 4) for v in overshoot]}
            if request.query.get("reset"):
                overshoot.clear()
            return web.json_response(data)

        app = web.Application()
        app.router.add_get("/delay", delay)
        app.router.add_get("/stats", stats)
        await serve_app(app, max_lifetime, backlog=1024)

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# the target, seen from the bench


class Target:
    """The loopback target process."""

    def __init__(self, procs: Processes, scratch: Path) -> None:
        self._procs = procs
        self._scratch = scratch
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self, max_lifetime: float) -> None:
        argv = [
            sys.executable,
            str(SELF),
            "--serve-target",
            "--target-lifetime",
            f"{max_lifetime:.0f}",
        ]
        with (self._scratch / "target.stderr").open("wb") as err:
            self.proc = await self._procs.spawn(argv, stdout=subprocess.PIPE, stderr=err)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30.0)
            self.port = int(line)
        except (TimeoutError, ValueError) as exc:
            raise BenchError(
                f"target did not print its port: {exc!r}\n{tail(self._scratch / 'target.stderr')}"
            ) from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def delay_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/delay"

    async def overshoot_ms(self, session: aiohttp.ClientSession, *, reset: bool) -> list[float]:
        """How late each sleep ended (ms), one value per request since the last reset."""
        url = f"http://{LOOPBACK}:{self.port}/stats" + ("?reset=1" if reset else "")
        async with session.get(url) as resp:
            raw: object = await resp.json()
        values = raw.get("overshoot_ms") if isinstance(raw, dict) else None
        if not isinstance(values, list):
            raise BenchError(f"unexpected answer from the target's /stats: {raw!r:.200}")
        return [float(v) for v in values if isinstance(v, int | float)]


# --------------------------------------------------------------------------------------
# results


@dataclass(slots=True)
class Window:
    """One measured window of one prober."""

    seconds: float
    cpu: float
    probes: int
    failures: int
    inflation_ms: list[float]
    lag_ms: list[float]
    target_overshoot_ms: list[float]
    rss_mb: float
    other_cores: float

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.probes * 1000 if self.probes else NOT_MEASURED


@dataclass(frozen=True, slots=True)
class Measured:
    """What the bench read around one window, whichever the prober."""

    t0: float
    """time.monotonic() at the window's start."""
    t1: float
    """time.monotonic() at the window's end."""
    cpu: float
    other_cores: float
    target_overshoot_ms: list[float]
    rss_mb: float

    def window(
        self, *, probes: int, failures: int, inflation_ms: list[float], lag_ms: list[float]
    ) -> Window:
        """The window, with the probes the prober finished between ``t0`` and ``t1``."""
        return Window(
            seconds=self.t1 - self.t0,
            cpu=self.cpu,
            probes=probes,
            failures=failures,
            inflation_ms=inflation_ms,
            lag_ms=lag_ms,
            target_overshoot_ms=self.target_overshoot_ms,
            rss_mb=self.rss_mb,
            other_cores=self.other_cores,
        )


async def measure_window(
    target: Target, session: aiohttp.ClientSession, pid: int, duration: float
) -> Measured:
    """Measure the prober ``pid`` for ``duration`` s, the target's stats reset at the start."""
    await target.overshoot_ms(session, reset=True)
    other = OtherLoad([pid, target.pid])
    t0, cpu0 = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(duration)
    t1, cpu1 = time.monotonic(), cpu_seconds(pid)
    other_cores = other.cores()
    overshoot = await target.overshoot_ms(session, reset=True)
    return Measured(t0, t1, cpu1 - cpu0, other_cores, overshoot, rss_kib(pid) * 1024 / 1e6)


@dataclass(slots=True)
class ProberResult:
    """One prober's measured windows (one per round), added up."""

    name: str
    windows: list[Window] = field(default_factory=list)
    window: float = NOT_MEASURED
    cpu: float = NOT_MEASURED
    probes: int = 0
    failures: int = 0
    inflation_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    target_overshoot_ms: list[float] = field(default_factory=list)
    rss_mb: float = NOT_MEASURED
    notes: list[str] = field(default_factory=list)

    @property
    def other_cores(self) -> float:
        """The most other processes used in any window (cores)."""
        return max((w.other_cores for w in self.windows), default=NOT_MEASURED)

    def add(self, w: Window) -> None:
        first = not self.windows
        self.windows.append(w)
        self.window = w.seconds if first else self.window + w.seconds
        self.cpu = w.cpu if first else self.cpu + w.cpu
        self.probes += w.probes
        self.failures += w.failures
        self.inflation_ms += w.inflation_ms
        self.lag_ms += w.lag_ms
        self.target_overshoot_ms += w.target_overshoot_ms
        self.rss_mb = w.rss_mb

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.probes * 1000 if self.probes else NOT_MEASURED

    @property
    def rate(self) -> float:
        return self.probes / self.window if self.window > 0 else NOT_MEASURED

    @property
    def p50(self) -> float:
        return percentile(self.inflation_ms, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.inflation_ms, 0.99)


@dataclass(slots=True)
class Results:
    blackbox: ProberResult = field(default_factory=lambda: ProberResult("blackbox_exporter"))
    probed: ProberResult = field(default_factory=lambda: ProberResult("probed"))
    lateness: ProberResult = field(default_factory=lambda: ProberResult("probed (lateness)"))
    lateness_probes: int = 0
    idle_rss_mb: float = NOT_MEASURED
    idle_runs: int = 0
    ready_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# blackbox_exporter


BLACKBOX_CONFIG = f"""\
modules:
  {BLACKBOX_MODULE}:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
"""


@dataclass(slots=True)
class BlackboxSample:
    done: float
    """time.monotonic() when the /probe answer was read."""
    duration: float | None
    """probe_duration_seconds as the exporter measured it."""
    success: bool


def parse_probe_metrics(text: str) -> tuple[float | None, bool]:
    """``probe_duration_seconds`` and ``probe_success`` from a /probe answer."""
    duration: float | None = None
    success = False
    for line in text.splitlines():
        if line.startswith("probe_duration_seconds "):
            duration = float(line.split()[1])
        elif line.startswith("probe_success "):
            success = float(line.split()[1]) == 1.0
    return duration, success


async def drive_blackbox(
    session: aiohttp.ClientSession,
    probe_url: str,
    target_url: str,
    rate: float,
    stop: asyncio.Event,
    max_seconds: float,
    samples: list[BlackboxSample],
    concurrency: int = 256,
) -> int:
    """Request ``/probe`` at a fixed ``rate`` until ``stop``; return ticks dropped as busy."""
    params = {"module": BLACKBOX_MODULE, "target": target_url}
    sem = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    dropped = 0

    async def one() -> None:
        async with sem:
            try:
                async with session.get(probe_url, params=params) as resp:
                    text = await resp.text()
                    duration, success = parse_probe_metrics(text)
                    success = success and resp.status == 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                duration, success = None, False
            samples.append(BlackboxSample(time.monotonic(), duration, success))

    start = time.monotonic()
    for tick in range(math.ceil(rate * max_seconds)):
        if stop.is_set():
            break
        delay = start + tick / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if sem.locked():
            dropped += 1
            continue
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=15.0)
    return dropped


async def run_blackbox(
    procs: Processes,
    target: Target,
    scratch: Path,
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    result: ProberResult,
) -> None:
    config = scratch / "blackbox.yml"
    config.write_text(BLACKBOX_CONFIG, encoding="utf-8")
    port = free_port()
    stderr_path = scratch / "blackbox.stderr"
    argv = [BLACKBOX, f"--config.file={config}", f"--web.listen-address={LOOPBACK}:{port}"]
    with stderr_path.open("wb") as err:
        proc = await procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        try:
            await wait_http_ok(session, f"http://{LOOPBACK}:{port}/-/healthy", proc, 30.0)
        except BenchError as exc:
            raise BenchError(
                f"blackbox_exporter did not start: {exc}\n{tail(stderr_path)}"
            ) from None
        samples: list[BlackboxSample] = []
        stop = asyncio.Event()
        limits = aiohttp.ClientTimeout(total=15.0)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=limits) as driver_session:
            driver = asyncio.create_task(
                drive_blackbox(
                    driver_session,
                    f"http://{LOOPBACK}:{port}/probe",
                    target.delay_url,
                    args.rate,
                    stop,
                    args.warmup + args.duration + 30.0,
                    samples,
                )
            )
            try:
                await asyncio.sleep(args.warmup)
                measured = await measure_window(target, session, proc.pid, args.duration)
            finally:
                stop.set()
                dropped = await driver
        window = [s for s in samples if measured.t0 <= s.done <= measured.t1]
        result.add(
            measured.window(
                probes=len(window),
                failures=sum(1 for s in window if not s.success),
                inflation_ms=[
                    (s.duration - DELAY) * 1000
                    for s in window
                    if s.success and s.duration is not None
                ],
                lag_ms=[],
            )
        )
        if dropped:
            result.notes.append(f"driver dropped {dropped} ticks (all 256 slots busy)")
    finally:
        code = await procs.stop(proc)
    if code not in (0, -signal.SIGTERM):
        result.notes.append(f"exited with code {code}")


# --------------------------------------------------------------------------------------
# probed


def probed_config(
    scratch: Path,
    name: str,
    listen_port: int,
    target_port: int,
    probes: int,
    interval_ms: int,
) -> Path:
    """Write a probed config with ``probes`` http probes on /delay; return its path."""
    return http_probes_config(
        scratch,
        name,
        listen_port=listen_port,
        target_port=target_port,
        probes=probes,
        interval_ms=interval_ms,
        path="/delay",
        timeout_ms=min(900, interval_ms * 9 // 10),
    )


@dataclass(slots=True)
class ProbeLine:
    received: float
    """time.monotonic() when the bench read the line."""
    latency_ms: float
    lag_ms: float | None
    success: bool


class Probed:
    """One running ``python -m probed run --config FILE`` and the probe_run lines it logs."""

    def __init__(self, procs: Processes, scratch: Path, config: Path, port: int) -> None:
        self._procs = procs
        self._config = config
        self.port = port
        self.stderr_path = scratch / f"{config.stem}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[ProbeLine] = []
        self.other_events: Counter[str] = Counter()
        self.bad_lines = 0
        self.spawned_at = 0.0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        argv = [sys.executable, "-m", "probed", "run", "--config", str(self._config)]
        with self.stderr_path.open("wb") as err:
            self.spawned_at = time.perf_counter()
            self.proc = await self._procs.spawn(
                argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            received = time.monotonic()
            try:
                event: object = json.loads(raw)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(event, dict):
                self.bad_lines += 1
                continue
            if event.get("event") != "probe_run":
                self.other_events[f"{event.get('level')}:{event.get('event')}"] += 1
                continue
            latency = event.get("latency_ms")
            lag = event.get("scheduler_lag_ms")
            if not isinstance(latency, int | float):
                self.bad_lines += 1
                continue
            self.lines.append(
                ProbeLine(
                    received,
                    float(latency),
                    float(lag) if isinstance(lag, int | float) else None,
                    event.get("status") == "success",
                )
            )

    async def wait_ready(self, session: aiohttp.ClientSession, within: float = 30.0) -> float:
        """Seconds from spawning the process to the first 200 from ``/-/ready``."""
        assert self.proc is not None
        try:
            ready_at = await wait_http_ok(
                session, f"http://{LOOPBACK}:{self.port}/-/ready", self.proc, within
            )
        except BenchError as exc:
            raise BenchError(f"probed did not get ready: {exc}\n{tail(self.stderr_path)}") from None
        return ready_at - self.spawned_at

    async def stop(self) -> int:
        assert self.proc is not None
        code = await self._procs.stop(self.proc)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5.0)
        return code

    def window(self, t0: float, t1: float) -> list[ProbeLine]:
        return [line for line in self.lines if t0 <= line.received <= t1]


def check_exit(probed: Probed, code: int, notes: list[str]) -> None:
    if code != 0:
        notes.append(f"exit code {code} on SIGTERM (expected 0)")
    noisy = {k: v for k, v in probed.other_events.items() if not k.startswith("info:")}
    if noisy:
        notes.append(f"other log events: {dict(noisy)}")
    if probed.bad_lines:
        notes.append(f"{probed.bad_lines} stdout lines were not probe_run JSON")


async def run_probed_window(
    procs: Processes,
    target: Target,
    scratch: Path,
    session: aiohttp.ClientSession,
    *,
    name: str,
    probes: int,
    interval_ms: int,
    warmup: float,
    duration: float,
    result: ProberResult,
) -> None:
    """Run probed with ``probes`` probes; measure a ``duration`` window after ``warmup``."""
    port = free_port()
    config = probed_config(scratch, name, port, target.port, probes, interval_ms)
    probed = Probed(procs, scratch, config, port)
    await probed.start()
    assert probed.proc is not None
    code: int | None = None
    try:
        await probed.wait_ready(session)
        await asyncio.sleep(warmup)
        measured = await measure_window(target, session, probed.proc.pid, duration)
        # let the last lines of the window arrive through the pipe
        await asyncio.sleep(0.05)
    finally:
        code = await probed.stop()
    lines = probed.window(measured.t0, measured.t1)
    result.add(
        measured.window(
            probes=len(lines),
            failures=sum(1 for line in lines if not line.success),
            inflation_ms=[line.latency_ms - DELAY * 1000 for line in lines if line.success],
            lag_ms=[line.lag_ms for line in lines if line.lag_ms is not None],
        )
    )
    check_exit(probed, code, result.notes)


async def run_startup(
    procs: Processes,
    target: Target,
    scratch: Path,
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    results: Results,
) -> None:
    """Idle RSS (5 probes at 15 s, after ~5 s) and start-to-ready (median of 5 starts)."""
    port = free_port()
    config = probed_config(scratch, "idle", port, target.port, 5, 15_000)
    for attempt in range(args.starts):
        probed = Probed(procs, scratch, config, port)
        await probed.start()
        assert probed.proc is not None
        try:
            results.ready_s.append(await probed.wait_ready(session))
            if attempt == 0:
                await asyncio.sleep(args.idle_wait)
                results.idle_rss_mb = rss_kib(probed.proc.pid) * 1024 / 1e6
                results.idle_runs = len(probed.lines)
        finally:
            code = await probed.stop()
        if code != 0:
            results.errors.append(f"startup run {attempt}: probed exited with code {code}")
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------------------
# the report


def report(args: argparse.Namespace, results: Results, parts: set[str]) -> None:
    bb, pd = results.blackbox, results.probed
    say("")
    say("=" * 78)
    rounds = f"; {args.rounds} rounds, windows added up" if args.rounds > 1 else ""
    say(
        f"RESULTS  (target answers after {DELAY * 1000:.0f} ms; {args.rate:g} probes/s; "
        f"warm-up {args.warmup:g} s; window {args.duration:g} s{rounds}; "
        "one prober at a time)"
    )
    say("=" * 78)
    if {"probed", "blackbox"} & parts:
        rows: list[tuple[str, Callable[[ProberResult], str]]] = [
            ("measured window (s)", lambda r: fmt(r.window, 1)),
            ("probes in window", lambda r: str(r.probes) if r.probes else "n/a"),
            ("achieved rate (probes/s)", lambda r: fmt(r.rate, 1)),
            ("failed probes", lambda r: str(r.failures) if r.probes else "n/a"),
            ("CPU seconds in window", lambda r: fmt(r.cpu, 2)),
            ("CPU seconds per 1,000 probes", lambda r: fmt(r.cpu_per_1000, 3)),
            ("latency inflation p50 (ms)", lambda r: fmt(r.p50, 2)),
            ("latency inflation p99 (ms)", lambda r: fmt(r.p99, 2)),
            (
                "  of which target's own sleep p50/p99 (ms)",
                lambda r: (
                    f"{fmt(percentile(r.target_overshoot_ms, 0.5))}/"
                    f"{fmt(percentile(r.target_overshoot_ms, 0.99))}"
                    if r.target_overshoot_ms
                    else "n/a"
                ),
            ),
            (
                "requests the target served in window",
                lambda r: str(len(r.target_overshoot_ms)) if r.windows else "n/a",
            ),
            ("RSS at end of window (MB)", lambda r: fmt(r.rss_mb, 1)),
            ("other processes' CPU in window (cores)", lambda r: fmt(r.other_cores, 2)),
        ]
        if args.rounds > 1:
            rows.insert(
                6,
                (
                    "  each round",
                    lambda r: "/".join(fmt(w.cpu_per_1000, 2) for w in r.windows) or "n/a",
                ),
            )
        say(f"{'':44}{'probed':>16}{'blackbox_exporter':>18}")
        for label, get in rows:
            say(f"{label:44}{get(pd):>16}{get(bb):>18}")
        for r in (pd, bb):
            for note in r.notes:
                say(f"  note ({r.name}): {note}")
        if pd.lag_ms:
            say(
                f"  (probed scheduler lateness in this run: p50 {fmt(percentile(pd.lag_ms, 0.5))}"
                f" ms, p99 {fmt(percentile(pd.lag_ms, 0.99))} ms)"
            )
    if "lateness" in parts:
        lt = results.lateness
        say("")
        say(
            f"scheduler run: {results.lateness_probes} probes configured, {lt.probes} runs in a "
            f"{fmt(lt.window, 1)} s window ({fmt(lt.rate, 1)} probes/s), {lt.failures} failed, "
            f"{fmt(lt.cpu_per_1000, 3)} CPU s per 1,000 probes; "
            f"lateness p50 {fmt(percentile(lt.lag_ms, 0.5))} ms, max "
            f"{fmt(max(lt.lag_ms) if lt.lag_ms else NOT_MEASURED)} ms; other processes "
            f"{fmt(lt.other_cores)} cores"
        )
        for note in lt.notes:
            say(f"  note: {note}")
    if "startup" in parts:
        say("")
        say(
            "start-to-ready, each start (s): "
            + (", ".join(f"{v:.3f}" for v in results.ready_s) or "n/a")
        )
        say(f"idle RSS taken after {args.idle_wait:g} s, {results.idle_runs} probe runs by then")

    cpu_ratio = bb_ratio = NOT_MEASURED
    if not math.isnan(pd.cpu_per_1000) and not math.isnan(bb.cpu_per_1000) and bb.cpu_per_1000:
        cpu_ratio = pd.cpu_per_1000 / bb.cpu_per_1000
    p99_met = "NOT MEASURED"
    if not math.isnan(pd.p99) and not math.isnan(bb.p99):
        p99_met = "MET" if pd.p99 <= bb.p99 else "NOT MET"
        if bb.p99 > 0:
            bb_ratio = pd.p99 / bb.p99
    lateness_p99 = percentile(results.lateness.lag_ms, 0.99)
    ready = statistics.median(results.ready_s) if results.ready_s else NOT_MEASURED

    say("")
    say(f"{'TARGETS':52}{'value':>10}  {'target':<12}verdict")
    targets = [
        (
            "CPU per probe, probed / blackbox_exporter",
            fmt(cpu_ratio, 3),
            f"<= {TARGET_CPU_RATIO:g}x",
            verdict(cpu_ratio, TARGET_CPU_RATIO),
        ),
        (
            "p99 inflation, probed / blackbox_exporter",
            fmt(bb_ratio, 3),
            f"<= {TARGET_P99_RATIO:g}x",
            p99_met,
        ),
        (
            f"scheduler start lateness p99, {args.lateness_probes} probes (ms)",
            fmt(lateness_p99, 2),
            f"<= {TARGET_LATENESS_MS:g} ms",
            verdict(lateness_p99, TARGET_LATENESS_MS),
        ),
        (
            "idle RSS, 5 probes (MB)",
            fmt(results.idle_rss_mb, 1),
            f"<= {TARGET_RSS_MB:g} MB",
            verdict(results.idle_rss_mb, TARGET_RSS_MB),
        ),
        (
            f"start-to-ready, median of {len(results.ready_s) or args.starts} starts (s)",
            fmt(ready, 3),
            f"<= {TARGET_READY_S:g} s",
            verdict(ready, TARGET_READY_S),
        ),
    ]
    for label, value, target, met in targets:
        say(f"{label:52}{value:>10}  {target:<12}{met}")
    met_count = sum(1 for t in targets if t[3] == "MET")
    say(f"{met_count} of {len(targets)} targets met")
    busy = [
        f"{r.name} {r.other_cores:.2f}"
        for r in (pd, bb, results.lateness)
        if r.windows and r.other_cores > BUSY_WARN_CORES
    ]
    if busy:
        say(
            f"WARNING: other processes kept the machine busy during measured windows "
            f"(cores: {', '.join(busy)}); CPU and latency figures are skewed, rerun when "
            "the machine is idle"
        )
    for error in results.errors:
        say(f"ERROR: {error}")


# --------------------------------------------------------------------------------------
# main


PARTS = ("blackbox", "probed", "lateness", "startup")


def blackbox_version() -> str:
    out = subprocess.run(
        [BLACKBOX, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown version"


async def bench(args: argparse.Namespace) -> Results:
    cancel_on_sigterm()
    parts = set(args.only or PARTS)
    results = Results()
    procs = Processes(grace=15.0)
    scratch_dir = tempfile.TemporaryDirectory(prefix="probed-bench-")
    scratch = Path(scratch_dir.name)
    try:
        if "blackbox" in parts and not os.access(BLACKBOX, os.X_OK):
            raise BenchError(f"{BLACKBOX} not found: apt-get install prometheus-blackbox-exporter")
        bb_version = blackbox_version() if "blackbox" in parts else "not run"
        say("probed HTTP probe benchmark (bench/http_probes.py)")
        say(
            f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
        )
        say(f"  probed: {sys.executable} -m probed run (from {REPO})")
        say(f"  blackbox_exporter: {bb_version}")
        lateness_probes = args.lateness_probes
        lateness_interval_ms = round(lateness_probes / args.rate * 1000)
        n_main = max(1, round(args.rate))
        main_interval_ms = round(n_main / args.rate * 1000)
        total = (args.warmup + args.duration + 10) * 2 * args.rounds + lateness_interval_ms / 1000
        total += args.lateness_window + args.idle_wait + 30 * args.starts + 120
        target = Target(procs, scratch)
        await target.start(max_lifetime=total)
        say(f"  target: {target.delay_url} (own process, pid {target.proc and target.proc.pid})")
        control = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10.0),
        )
        async with control:
            for round_no in range(1, args.rounds + 1):
                of = f" (round {round_no} of {args.rounds})" if args.rounds > 1 else ""
                if "blackbox" in parts:
                    say(
                        f"[blackbox] {args.rate:g} probes/s: warm-up {args.warmup:g} s, "
                        f"window {args.duration:g} s{of} ..."
                    )
                    try:
                        await run_blackbox(procs, target, scratch, control, args, results.blackbox)
                    except BenchError as exc:
                        results.errors.append(f"blackbox_exporter: {exc}")
                if "probed" in parts:
                    say(
                        f"[probed] {n_main} probes every {main_interval_ms} ms: warm-up "
                        f"{args.warmup:g} s, window {args.duration:g} s{of} ..."
                    )
                    try:
                        await run_probed_window(
                            procs,
                            target,
                            scratch,
                            control,
                            name="main",
                            probes=n_main,
                            interval_ms=main_interval_ms,
                            warmup=max(args.warmup, main_interval_ms / 1000),
                            duration=args.duration,
                            result=results.probed,
                        )
                    except BenchError as exc:
                        results.errors.append(f"probed: {exc}")
            if "lateness" in parts:
                results.lateness_probes = lateness_probes
                say(
                    f"[lateness] {lateness_probes} probes every {lateness_interval_ms} ms: "
                    f"skip the first interval, window {args.lateness_window:g} s ..."
                )
                try:
                    await run_probed_window(
                        procs,
                        target,
                        scratch,
                        control,
                        name="lateness",
                        probes=lateness_probes,
                        interval_ms=lateness_interval_ms,
                        warmup=lateness_interval_ms / 1000 + 1.0,
                        duration=args.lateness_window,
                        result=results.lateness,
                    )
                except BenchError as exc:
                    results.errors.append(f"probed (lateness): {exc}")
            if "startup" in parts:
                say(f"[startup] 5 probes every 15 s: {args.starts} starts ...")
                try:
                    await run_startup(procs, target, scratch, control, args, results)
                except BenchError as exc:
                    results.errors.append(f"probed (startup): {exc}")
        report(args, results, parts)
    finally:
        await procs.stop_all()
        scratch_dir.cleanup()
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark probed against prometheus-blackbox-exporter on loopback."
    )
    parser.add_argument(
        "--duration", type=positive, default=60.0, help="measured window per prober, s (60)"
    )
    parser.add_argument("--rate", type=positive, default=50.0, help="probes per second (50)")
    parser.add_argument("--warmup", type=float, default=5.0, help="uncounted warm-up, s (5)")
    parser.add_argument(
        "--lateness-probes", type=int, default=500, help="probes configured for lateness (500)"
    )
    parser.add_argument(
        "--lateness-window", type=positive, default=30.0, help="lateness window, s (30)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate blackbox_exporter and probed windows this many times and add them "
        "up (1; use 3 to average out a noisy machine)",
    )
    parser.add_argument("--starts", type=int, default=5, help="starts for start-to-ready (5)")
    parser.add_argument(
        "--idle-wait", type=float, default=5.0, help="seconds before idle RSS is read (5)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 10 s windows, 100 probes for lateness, 3 s warm-up",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this part (repeatable; default all)",
    )
    parser.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target-lifetime", type=float, default=3600.0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_target:
        return serve_target(args.target_lifetime)
    if args.quick:
        args.duration = min(args.duration, 10.0)
        args.warmup = min(args.warmup, 3.0)
        args.lateness_probes = min(args.lateness_probes, 100)
        args.lateness_window = min(args.lateness_window, 10.0)
        args.starts = min(args.starts, 3)
    if min(args.starts, args.lateness_probes, args.rounds) < 1:
        print("--starts, --lateness-probes and --rounds must be at least 1", file=sys.stderr)
        return 2
    return run_bench(bench(args), lambda results: 1 if results.errors else 0)


if __name__ == "__main__":
    sys.exit(main())
