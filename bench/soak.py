"""Soak test: the real probed daemon under ~100 probes/s and 500 SSE streams, faults toggling.

Run from the repository root::

    python bench/soak.py                     # 480 s warm-up, then a 600 s window (about 19 min)
    python bench/soak.py --quick             # smoke run: 20 s warm-up, 60 s window
    python bench/soak.py --duration 3600 --log-dir /tmp/soak   # an hour; keep logs and config

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
import bisect
import contextlib
import json
import logging
import math
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    LOOPBACK,
    NAN,
    BenchError,
    CountingHandler,
    Processes,
    cancel_on_sigterm,
    cpu_seconds,
    die_with_parent_raise_nofile,
    fd_count,
    free_port,
    percentile,
    positive,
    quiet_structlog,
    raise_nofile,
    rss_kib,
    run_bench,
    say,
    tail,
    wait_for_stop,
    wait_http_ok,
)
from aiohttp import web

SELF = Path(__file__).resolve()
REPO = SELF.parent.parent
DEMO_CONFIG = REPO / "probed" / "demo" / "probes.toml"
FIXTURE = REPO / "probed" / "demo" / "fixtures" / "indicators.json"
USERNAME = "probe@demo.example"
PASSWORD_ENV = "SOAK_DEMO_PASSWORD"

FAST_INTERVAL = 2.0
"""Seconds between runs of each http, login and fixture probe."""
SLOW_INTERVAL = 10.0
"""Seconds between runs of each reflect and import probe (one of each per target)."""
SAMPLE_EVERY = 10.0
"""Seconds between RSS / fd samples."""
PROGRESS_EVERY = 60.0
"""Seconds between progress lines."""
FD_READS = 5
"""fd counts taken (0.5 s apart) for a start or end reading; the least is used."""
SETTLE = 3.0
"""Seconds to wait after every stream is back before a start or end reading."""
SIGNAL_WINDOW = 300.0
"""The daemon's default ``[recommend] window``: per-run and per-event windows fill this long."""

# Targets (the acceptance criteria) and the soak's own validity checks.
TARGET_RSS_GROWTH_PCT = 5.0
TARGET_FD_SLACK = 10
"""'fds flat': the end count may exceed the start count by at most this many."""
TARGET_EXCEPTIONS = 0
LAG_REFERENCE_MS = 5.0
"""Reference only: bench/http_probes.py's scheduler lateness target."""
MIN_RATE_SHARE = 0.97
"""The soak counts only if at least this share of the planned runs per second ran."""


# --------------------------------------------------------------------------------------
# small helpers


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute; NaN with < 3 points."""
    if len(points) < 3:
        return NAN
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx <= 0:
        return NAN
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx * 60.0


def nofile_limit(pid: int) -> str:
    """The 'Max open files' soft/hard of process ``pid`` from ``/proc/PID/limits``."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    return "?"


def mib(kib: float) -> float:
    return kib / 1024.0


def expected_fixture_sha() -> str:
    """The indicators fixture's expected hash, from the shipped demo config."""
    data = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    for probe in data.get("probes", []):
        if isinstance(probe, dict) and probe.get("kind") == "fixture":
            value = probe.get("expected_sha256")
            if isinstance(value, str):
                return value
    raise BenchError(f"no fixture probe with expected_sha256 in {DEMO_CONFIG}")


# --------------------------------------------------------------------------------------
# the demo target (its own process: ``soak.py --serve-target``)


def serve_target(index: int, events_rate: float, groups: int, lifetime: float) -> int:
    """Run a DemoTarget, its publisher and a control listener; print both ports."""
    from probed.demo import DemoTarget

    raise_nofile()
    logs: Counter[str] = Counter()
    quiet_structlog(logs)
    root = logging.getLogger()
    root.addHandler(CountingHandler(logs, with_level=True))
    root.setLevel(logging.WARNING)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(16)
    stats: dict[str, int] = {"published": 0, "publish_errors": 0, "publisher_resyncs": 0}

    async def publish_loop(target: DemoTarget) -> None:
        """``events_rate`` events/s round-robin over ``groups`` types, each with its sequence."""
        loop = asyncio.get_running_loop()
        gseq = [0] * groups
        started = loop.time()
        sent = 0
        ticks = math.ceil(lifetime / 0.05) + 1
        for _ in range(ticks):  # bounded: the process lives at most ``lifetime``
            await asyncio.sleep(0.05)
            due = math.floor((loop.time() - started) * events_rate)
            if due - sent > events_rate * 5:  # the loop was stalled: do not burst
                stats["publisher_resyncs"] += 1
                sent = due - 1
            while sent < due:
                group = sent % groups
                sent += 1
                gseq[group] += 1
                try:
                    target.publish(f"soak.g{group}", {"gseq": gseq[group], "target": index})
                except (RuntimeError, ValueError):
                    gseq[group] -= 1
                    stats["publish_errors"] += 1
                else:
                    stats["published"] += 1

    async def main() -> None:
        target = DemoTarget(host=LOOPBACK, port=0, password=password, seed=index)
        await target.start()
        publisher: asyncio.Task[None] | None = None
        control = web.Application()

        async def stats_handler(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    **stats,
                    "subscribers": target.stream_subscribers(),
                    "refusing": target.refusing,
                    "logs": dict(logs),
                }
            )

        control.router.add_get("/stats", stats_handler)
        runner = web.AppRunner(control, access_log=None, handle_signals=False)
        try:
            await runner.setup()
            site = web.TCPSite(runner, LOOPBACK, 0)
            await site.start()
            control_port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
            print(f"{target.port} {control_port}", flush=True)
            if events_rate > 0:
                publisher = asyncio.create_task(publish_loop(target), name="soak-publisher")
            await wait_for_stop(lifetime)
        finally:
            if publisher is not None:
                publisher.cancel()
                await asyncio.gather(publisher, return_exceptions=True)
            await runner.cleanup()
            await target.stop()

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# the demo targets, seen from the orchestrating bench


@dataclass(slots=True)
class TargetProc:
    """One demo target process: its ports and its share of the streams."""

    index: int
    proc: asyncio.subprocess.Process
    port: int
    control_port: int
    streams: int
    groups: int
    events_rate: float

    @property
    def name(self) -> str:
        return f"t{self.index}"

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"http://{LOOPBACK}:{self.control_port}/stats") as resp:
            data: object = await resp.json()
        if not isinstance(data, dict):
            raise BenchError(f"target {self.name}: unexpected /stats answer {data!r:.200}")
        return data


async def start_target(
    procs: Processes,
    scratch: Path,
    env: dict[str, str],
    *,
    index: int,
    streams: int,
    groups: int,
    events_rate: float,
    lifetime: float,
) -> TargetProc:
    argv = [
        sys.executable,
        str(SELF),
        "--serve-target",
        "--index",
        str(index),
        "--target-events-rate",
        f"{events_rate:.6g}",
        "--groups",
        str(groups),
        "--lifetime",
        f"{lifetime:.0f}",
    ]
    err_path = scratch / f"target{index}.stderr"
    with err_path.open("wb") as err:
        proc = await procs.spawn(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        port, control_port = (int(p) for p in line.split())
    except (TimeoutError, ValueError) as exc:
        raise BenchError(
            f"target {index} did not print its ports: {exc!r}\n{tail(err_path)}"
        ) from None
    return TargetProc(index, proc, port, control_port, streams, groups, events_rate)


# --------------------------------------------------------------------------------------
# the plan and the daemon's config


@dataclass(frozen=True, slots=True)
class Plan:
    """What the daemon is given: probes per kind, streams per target, events per second."""

    targets: int
    streams_per_target: tuple[int, ...]
    groups_per_target: tuple[int, ...]
    events_rate: float
    http: int
    logins: int
    fixtures: int

    @property
    def streams(self) -> int:
        return sum(self.streams_per_target)

    @property
    def fast_probes(self) -> int:
        return self.http + self.logins + self.fixtures

    @property
    def slow_probes(self) -> int:
        return 2 * self.targets

    @property
    def probes(self) -> int:
        return self.fast_probes + self.slow_probes

    @property
    def rate(self) -> float:
        """Planned probe runs per second."""
        return self.fast_probes / FAST_INTERVAL + self.slow_probes / SLOW_INTERVAL


def make_plan(args: argparse.Namespace) -> Plan:
    n_targets = args.targets
    if args.streams < 2 * n_targets:
        raise BenchError("--streams must be at least 2 per target (one control stream each)")
    base, extra = divmod(args.streams, n_targets)
    streams = tuple(base + (1 if k < extra else 0) for k in range(n_targets))
    per_target_rate = args.events_rate / n_targets
    # each filtered stream gets about one event per second: one event type per event/s
    groups = tuple(max(1, min(n - 1, round(per_target_rate))) for n in streams)
    fast = round((args.rate - 2 * n_targets / SLOW_INTERVAL) * FAST_INTERVAL)
    if fast < 3:
        raise BenchError(f"--rate {args.rate:g} is too low for {n_targets} targets")
    logins = max(1, round(fast * 0.05))
    fixtures = max(1, round(fast * 0.03))
    return Plan(
        targets=n_targets,
        streams_per_target=streams,
        groups_per_target=groups,
        events_rate=args.events_rate,
        http=fast - logins - fixtures,
        logins=logins,
        fixtures=fixtures,
    )


HEALTH_CHECKS = (
    ("/health", '[{ path = "status", equals = "healthy" }]'),
    ("/health/readiness", '[{ path = "status", equals = "ready" }]'),
    ("/health/liveness", '[{ path = "status", equals = "alive" }]'),
    ("/health/migrations", '[{ path = "status", equals = "up_to_date" }]'),
)


def q(text: str) -> str:
    """A TOML basic string."""
    return json.dumps(text)


def write_config(
    path: Path, plan: Plan, targets: Sequence[TargetProc], listen_port: int, state_dir: Path
) -> None:
    """The daemon's config: the planned probes and streams over ``targets``."""
    fast = f'interval = "{FAST_INTERVAL:g}s"\ntimeout = "1500ms"'
    parts = [
        "[daemon]",
        f'listen = "{LOOPBACK}:{listen_port}"',
        'location = "soak"',
        'env = "soak"',
        f"state_dir = {q(str(state_dir))}",
        'log_level = "info"',
        'log_format = "json"',
        "max_concurrency = 512",
        "",
    ]
    for t in targets:
        parts += [f"[targets.{t.name}]", f"base_url = {q(t.base_url)}", ""]
    http_names: list[str] = []
    login_names: list[str] = []
    for i in range(plan.http):
        t = targets[i % len(targets)]
        endpoint, checks = HEALTH_CHECKS[(i // len(targets)) % len(HEALTH_CHECKS)]
        name = f"http_{i:03d}"
        http_names.append(name)
        parts += [
            "[[probes]]",
            f"name = {q(name)}",
            'kind = "http"',
            f"target = {q(t.name)}",
            f"path = {q(endpoint)}",
            fast,
            f"json_checks = {checks}",
            "",
        ]
    for i in range(plan.logins):
        t = targets[i % len(targets)]
        name = f"login_{i:02d}"
        login_names.append(name)
        parts += [
            "[[probes]]",
            f"name = {q(name)}",
            'kind = "login"',
            f"target = {q(t.name)}",
            fast,
            f"username = {q(USERNAME)}",
            f'password = {{ env = "{PASSWORD_ENV}" }}',
            'token_path = "token"',
            'follow_up = { path = "/api/me", json_checks = [{ path = "id", exists = true }] }',
            "",
        ]
    sha = expected_fixture_sha()
    for i in range(plan.fixtures):
        t = targets[i % len(targets)]
        parts += [
            "[[probes]]",
            f'name = "fixture_{i:02d}"',
            'kind = "fixture"',
            f"target = {q(t.name)}",
            'path = "/v1/indicators"',
            fast,
            f"input_file = {q(str(FIXTURE))}",
            f"expected_sha256 = {q(sha)}",
            "",
        ]
    stream_common = [
        'idle_timeout = "10s"',
        'connect_timeout = "5s"',
        'reconnect_max = "10s"',
        'lag_field = "enqueued_at"',
    ]
    number = 0
    for t in targets:
        ctl = f"ctl_{t.name}"
        parts += [
            "[[probes]]",
            f"name = {q(ctl)}",
            'kind = "sse"',
            f"target = {q(t.name)}",
            'path = "/api/v1/events/stream"',
            *stream_common,
            'sequence_field = "seq"',
            "",
        ]
        for j in range(t.streams - 1):
            parts += [
                "[[probes]]",
                f'name = "s{number:04d}"',
                'kind = "sse"',
                f"target = {q(t.name)}",
                f'path = "/api/v1/events/stream?types=soak.g{j % t.groups}"',
                *stream_common,
                'sequence_field = "payload.gseq"',
                "",
            ]
            number += 1
        parts += [
            "[[probes]]",
            f'name = "reflect_{t.name}"',
            'kind = "reflect"',
            f"target = {q(t.name)}",
            f"stream = {q(ctl)}",
            f'interval = "{SLOW_INTERVAL:g}s"',
            'deadline = "3s"',
            'lost_after = "6s"',
            'timeout = "8s"',
            "",
            "[[probes]]",
            f'name = "import_{t.name}"',
            'kind = "import"',
            f"target = {q(t.name)}",
            f'interval = "{SLOW_INTERVAL:g}s"',
            'json_body = { broker = "mock", trades = 50 }',
            'progress_source = "stream"',
            f"stream = {q(ctl)}",
            'deadline = "8s"',
            'stall_after = "5s"',
            'timeout = "9s"',
            "",
        ]
    parts += [
        "[[slos]]",
        'name = "api_availability"',
        'sli = "availability"',
        f"probes = [{', '.join(map(q, http_names))}]",
        "objective = 0.995",
        "",
        "[[slos]]",
        'name = "login_latency"',
        'sli = "latency"',
        f"probes = [{', '.join(map(q, login_names))}]",
        'threshold = "250ms"',
        "objective = 0.95",
        "",
        "[[slos]]",
        'name = "events_delivery"',
        'sli = "delivery_lag"',
        f'stream = "ctl_{targets[0].name}"',
        'threshold = "5s"',
        "objective = 0.95",
        "",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")


# --------------------------------------------------------------------------------------
# faults


FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("latency 0.5s", {"latency": 0.5}),
    ("503 x 30%", {"error_ratio": 0.3}),
    ("429 x 30%", {"rate_limit_ratio": 0.3, "retry_after": 1}),
    ("stream_delay 2s", {"stream_delay": 2.0}),
    ("disconnect_every 10s", {"disconnect_every": 10.0}),
    ("stall", {"stall": True}),
    ("drop/dup/reorder 10%", {"drop_ratio": 0.1, "duplicate_ratio": 0.1, "reorder_ratio": 0.1}),
    ("refuse_for 5s", {"refuse_for": 5.0}),
)
PUT_RETRY_FOR = 12.0
"""Seconds a fault change is retried (a target refusing connections re-opens after 5 s)."""


def healthy_faults() -> dict[str, Any]:
    """The ``PUT /-/admin/faults`` body that clears every fault ``FAULTS`` sets.

    Every key they set back to its default in ``probed.demo.Faults``, in its
    order; ``refuse_for`` is cleared through ``refuse_connections``, and
    ``paths`` goes back to all paths.
    """
    from probed.demo import Faults

    keys = {key for _, fault in FAULTS for key in fault} - {"refuse_for"}
    keys |= {"refuse_connections", "paths"}
    return {key: value for key, value in Faults().to_dict().items() if key in keys}


class FaultDriver:
    """Toggles faults on the targets every ``period`` seconds through the admin endpoint.

    ``healthy`` is the body that clears them (``healthy_faults()``).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        targets: Sequence[TargetProc],
        period: float,
        healthy: dict[str, Any],
    ) -> None:
        self._session = session
        self._targets = targets
        self.period = period
        self.healthy = healthy
        self.tick = 0
        self.current = ["healthy"] * len(targets)
        self.last_fault = ["-"] * len(targets)
        self.applied: Counter[str] = Counter()
        self.failures: list[str] = []
        self.timeline: list[tuple[float, str]] = [(0.0, "no fault")]
        """(wall time, the faults on from then on) after every change that took effect."""

    def state(self) -> str:
        """The faults on right now, e.g. ``t1 stall`` (``no fault`` when all are healthy)."""
        on = [f"t{k} {label}" for k, label in enumerate(self.current) if label != "healthy"]
        return ", ".join(on) or "no fault"

    def mark(self, what: str | None) -> None:
        """Label the time from now on with ``what`` beside the faults (None: faults only)."""
        state = self.state()
        self.timeline.append((time.time(), f"{state}, {what}" if what else state))

    def phase_at(self, wall: float) -> str:
        """The faults that were on at ``wall`` (Unix time)."""
        index = bisect.bisect_right(self.timeline, (wall, "\uffff")) - 1
        return self.timeline[max(0, index)][1]

    async def put(self, target: TargetProc, label: str, body: dict[str, Any]) -> bool:
        """PUT ``body`` to the target's faults; retried for ``PUT_RETRY_FOR`` seconds."""
        url = f"{target.base_url}/-/admin/faults"
        deadline = time.monotonic() + PUT_RETRY_FOR
        last = ""
        for _ in range(100):  # bounded; the deadline ends it first
            try:
                async with self._session.put(url, json=body) as resp:
                    text = await resp.text()
                    if resp.status == 200:
                        self.current[target.index] = label
                        if label != "healthy":
                            self.applied[label] += 1
                            self.last_fault[target.index] = label
                        self.timeline.append((time.time(), self.state()))
                        return True
                    last = f"status {resp.status}: {text[:200]}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = repr(exc)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        self.failures.append(f"{target.name} {label}: {last}")
        return False

    async def step(self) -> None:
        """Apply tick ``self.tick``: target k faulted when ``tick + k`` is even."""
        jobs = []
        for t in self._targets:
            if (self.tick + t.index) % 2 == 0:
                label, fault = FAULTS[(self.tick // 2 + t.index) % len(FAULTS)]
                body = {**self.healthy, **fault}
                if "refuse_for" in body:  # it sets refuse_connections itself
                    del body["refuse_connections"]
                jobs.append(self.put(t, label, body))
            else:
                jobs.append(self.put(t, "healthy", self.healthy))
        await asyncio.gather(*jobs)
        self.tick += 1

    async def run(self, seconds: float) -> None:
        """Toggle for ``seconds`` (cancelled earlier by the bench when it pauses faults)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in range(math.ceil(seconds / self.period) + 1):
            if loop.time() - started >= seconds:
                return
            await self.step()
            await asyncio.sleep(max(0.0, started + (n + 1) * self.period - loop.time()))

    async def clear(self) -> None:
        """Every target healthy again."""
        await asyncio.gather(*(self.put(t, "healthy", self.healthy) for t in self._targets))


# --------------------------------------------------------------------------------------
# metrics


_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
WANTED = (
    "probed_scheduler_lag_seconds",
    "probed_event_loop_lag_seconds",
    "probed_probe_runs_total",
    "probed_probe_failures_total",
    "probed_probe_skipped_total",
    "probed_probes_in_flight",
    "probed_stream_connected",
    "probed_stream_subscribers",
    "probed_stream_reconnects_total",
    "probed_events_",
    "process_",
)

Metrics = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Metrics:
    """The samples of the wanted families from Prometheus text exposition."""
    out: Metrics = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or not line.startswith(WANTED):
            continue
        match = _SAMPLE_LINE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        out.setdefault(name, []).append((dict(_LABEL.findall(labels or "")), number))
    return out


def total(metrics: Metrics, name: str) -> float:
    return sum(v for _, v in metrics.get(name, []))


def by_label(metrics: Metrics, name: str, label: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for labels, value in metrics.get(name, []):
        out[labels.get(label, "")] += int(value)
    return out


def buckets(metrics: Metrics, name: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of a histogram without labels, ascending."""
    pairs = [(float(lb["le"]), v) for lb, v in metrics.get(f"{name}_bucket", []) if "le" in lb]
    return sorted(pairs)


def bucket_diff(
    end: list[tuple[float, float]], start: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    before = dict(start)
    return [(le, count - before.get(le, 0.0)) for le, count in end]


def histogram_quantile(q_: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket."""
    if not cumulative or cumulative[-1][1] <= 0:
        return NAN
    count = cumulative[-1][1]
    rank = q_ * count
    lower_bound, lower_count = 0.0, 0.0
    for le, cum in cumulative:
        if cum >= rank:
            if math.isinf(le):
                return lower_bound  # the highest finite bound, as Prometheus does
            if cum == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (cum - lower_count)
        lower_bound, lower_count = le, cum
    return NAN


def fraction_le(bound: float, cumulative: list[tuple[float, float]]) -> float:
    if not cumulative or cumulative[-1][1] <= 0:
        return NAN
    for le, cum in cumulative:
        if math.isclose(le, bound):
            return cum / cumulative[-1][1]
    return NAN


@dataclass(slots=True)
class Snapshot:
    """One /metrics scrape."""

    at: float
    """time.monotonic() when the scrape returned."""
    wall: float
    seconds: float
    size: int
    metrics: Metrics


async def scrape(session: aiohttp.ClientSession, port: int) -> Snapshot:
    started = time.monotonic()
    async with session.get(f"http://{LOOPBACK}:{port}/metrics") as resp:
        text = await resp.text()
        if resp.status != 200:
            raise BenchError(f"/metrics answered {resp.status}")
    done = time.monotonic()
    return Snapshot(done, time.time(), done - started, len(text), parse_metrics(text))


# --------------------------------------------------------------------------------------
# the daemon's logs


EXCEPTION_EVENT = re.compile(r"(_failed$|_crashed$|internal_error|exception)")


@dataclass(slots=True)
class LogScan:
    lines: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    noisy: Counter[str] = field(default_factory=Counter)
    """level:event of every warning-or-worse line."""
    exceptions: int = 0
    exception_events: Counter[str] = field(default_factory=Counter)
    first: list[str] = field(default_factory=list)
    window_lag_ms: list[float] = field(default_factory=list)
    lag_by_phase: dict[str, list[float]] = field(default_factory=dict)
    """The window's scheduler lags (ms) by the faults on when the run was logged."""
    stderr_lines: int = 0
    stderr_first: list[str] = field(default_factory=list)

    def exception(self, line: str, key: str) -> None:
        self.exceptions += 1
        self.exception_events[key] += 1
        if len(self.first) < 5:
            self.first.append(line[:400])


def _wall(ts: object) -> float:
    if not isinstance(ts, str):
        return NAN
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return NAN


def scan_logs(
    stdout: Path, stderr: Path, window: tuple[float, float], phase_at: Callable[[float], str]
) -> LogScan:
    """Count the unhandled exceptions (see the module docstring) and the window's lags."""
    scan = LogScan()
    with stdout.open(encoding="utf-8", errors="replace") as lines:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line:
                continue
            scan.lines += 1
            try:
                event: object = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                scan.exception(line, "non-JSON stdout line")
                continue
            level = str(event.get("level", "?"))
            name = str(event.get("event", "?"))
            scan.levels[level] += 1
            if level not in ("info", "debug"):
                scan.noisy[f"{level}:{name}"] += 1
            if (
                level in ("error", "critical", "exception", "fatal")
                or "exception" in event
                or "exc_info" in event
                or "Traceback" in line
                or EXCEPTION_EVENT.search(name)
                or event.get("reason") == "internal_error"
            ):
                scan.exception(line, f"{level}:{name}")
            if name == "probe_run":
                lag = event.get("scheduler_lag_ms")
                wall = _wall(event.get("ts"))
                if isinstance(lag, int | float) and window[0] <= wall <= window[1]:
                    scan.window_lag_ms.append(float(lag))
                    scan.lag_by_phase.setdefault(phase_at(wall), []).append(float(lag))
    with contextlib.suppress(OSError):
        text = stderr.read_text(encoding="utf-8", errors="replace")
        err_lines = [line for line in text.splitlines() if line.strip()]
        scan.stderr_lines = len(err_lines)
        scan.stderr_first = [line[:400] for line in err_lines[:8]]
        tracebacks = text.count("Traceback (most recent call last)")
        for _ in range(tracebacks or (1 if err_lines else 0)):
            scan.exceptions += 1
            scan.exception_events["stderr"] += 1
        if err_lines and len(scan.first) < 5:
            scan.first.append("stderr: " + err_lines[0][:400])
    return scan


# --------------------------------------------------------------------------------------
# the run


@dataclass(slots=True)
class Reading:
    """RSS, fds and CPU of the daemon at one moment."""

    at: float
    rss_kib: int
    fds: int
    cpu_s: float


@dataclass(slots=True)
class Run:
    """Everything measured; filled in as the soak goes."""

    plan: Plan
    samples: list[Reading] = field(default_factory=list)
    start: Reading | None = None
    end: Reading | None = None
    snap0: Snapshot | None = None
    snap1: Snapshot | None = None
    ready_s: float = NAN
    ready_at: float = NAN
    connect_s: float = NAN
    connected_start: int = 0
    connected_end_target: int = 0
    quiesce_s: list[float] = field(default_factory=list)
    target_cpu: dict[str, float] = field(default_factory=dict)
    target_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    bench_cpu_s: float = NAN
    exit_code: int | None = None
    shutdown_s: float = NAN
    killed: bool = False
    log: LogScan | None = None
    driver: FaultDriver | None = None
    errors: list[str] = field(default_factory=list)
    nofile: str = "?"
    state_bytes: int = 0


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

    def reading(self) -> Reading:
        return Reading(
            time.monotonic(), rss_kib(self.pid), fd_count(self.pid), cpu_seconds(self.pid)
        )

    async def quiet_reading(self) -> Reading:
        """A reading whose fd count is the least of ``FD_READS`` counts 0.5 s apart."""
        fds = []
        for i in range(FD_READS):
            if i:
                await asyncio.sleep(0.5)
            fds.append(fd_count(self.pid))
        reading = self.reading()
        reading.fds = min(fds)
        return reading

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

    async def sample(self, started: float, stop: asyncio.Event, driver: FaultDriver) -> None:
        """Sample RSS and fds every ``SAMPLE_EVERY`` s; a progress line every minute."""
        next_progress = PROGRESS_EVERY
        limit = math.ceil((self.args.warmup + self.args.duration + 600.0) / SAMPLE_EVERY)
        for _ in range(limit):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
            if stop.is_set():
                return
            try:
                reading = self.reading()
            except (OSError, BenchError):
                return  # the daemon is gone; the main flow reports it
            self.run.samples.append(reading)
            elapsed = reading.at - started
            if elapsed >= next_progress:
                next_progress += PROGRESS_EVERY
                faults = ", ".join(
                    f"{t.name} {driver.current[t.index]} (last: {driver.last_fault[t.index]})"
                    for t in self.targets
                )
                say(
                    f"  [{elapsed:5.0f} s] RSS {mib(reading.rss_kib):6.1f} MiB, fds "
                    f"{reading.fds:4d}, CPU {reading.cpu_s:7.1f} s; faults: {faults}"
                )

    async def execute(self) -> Run:
        args, run = self.args, self.run
        await self.start()
        driver = FaultDriver(self.control, self.targets, args.fault_period, self.healthy)
        run.driver = driver
        started = time.monotonic()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(self.sample(started, stop_sampling, driver), name="sampler")
        try:
            say(f"warm-up {args.warmup:g} s, faults every {args.fault_period:g} s ...")
            self.resume_faults(driver, args.warmup + args.duration + 600.0)
            await asyncio.sleep(args.warmup)
            count, seconds = await self.pause_faults(driver)
            run.connected_start = count
            # a first scrape raises the allocator's high-water mark (MBs of small strings);
            # the end reading includes that, so the start reading must too
            await self.scrape(driver)
            run.start = await self.quiet_reading()
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
            run.end = await self.quiet_reading()
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
            stop_sampling.set()
            await asyncio.gather(sampler, return_exceptions=True)
            if self.driver_task is not None:
                self.driver_task.cancel()
                await asyncio.gather(self.driver_task, return_exceptions=True)
        await self.shutdown()
        assert run.snap0 is not None
        assert run.snap1 is not None
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
# the report


def verdict(ok: bool | None) -> str:
    return "NOT MEASURED" if ok is None else ("MET" if ok else "NOT MET")


def check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("OK" if ok else "NOT OK")


def counter_line(counts: Counter[str], limit: int = 12) -> str:
    items = [(k, v) for k, v in counts.most_common() if v]
    text = ", ".join(f"{k} {v:,}" for k, v in items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more)"
    return text or "none"


def diff_counter(end: Counter[str], start: Counter[str]) -> Counter[str]:
    return Counter({k: end[k] - start.get(k, 0) for k in end if end[k] - start.get(k, 0)})


def report(args: argparse.Namespace, run: Run) -> bool:
    """Print the results; return whether every target was measured."""
    plan = run.plan
    s0, s1 = run.snap0, run.snap1
    start, end = run.start, run.end
    say()
    say("=" * 78)
    say(
        f"SOAK RESULTS  ({plan.probes} probes = {plan.rate:.1f} runs/s planned, "
        f"{plan.streams} SSE streams over {plan.targets} demo target(s), "
        f"{plan.events_rate:g} events/s published; warm-up {args.warmup:g} s, "
        f"window {args.duration:g} s, faults every {args.fault_period:g} s)"
    )
    say("=" * 78)
    if start is None or end is None or s0 is None or s1 is None:
        say("the window was not measured")
        for error in run.errors:
            say(f"ERROR: {error}")
        return False
    window = s1.at - s0.at
    in_window = [r for r in run.samples if start.at <= r.at <= end.at]
    rss_series = [start, *in_window, end]
    rss_max = max(r.rss_kib for r in rss_series)
    fds_max = max(r.fds for r in rss_series)
    fds_min = min(r.fds for r in rss_series)
    growth = (end.rss_kib - start.rss_kib) / start.rss_kib * 100.0
    half = start.at + (end.at - start.at) / 2
    slope_all = slope_per_minute([(r.at, mib(r.rss_kib)) for r in rss_series])
    slope_late = slope_per_minute([(r.at, mib(r.rss_kib)) for r in rss_series if r.at >= half])
    daemon_cores = (end.cpu_s - start.cpu_s) / (end.at - start.at)
    filled = next(
        (r for r in in_window if r.at >= run.ready_at + SIGNAL_WINDOW + SAMPLE_EVERY), None
    )

    say(f"measured window (between the two scrapes): {window:.1f} s")
    say(
        f"daemon RSS (MiB): start {mib(start.rss_kib):.1f}, end {mib(end.rss_kib):.1f}, "
        f"max {mib(rss_max):.1f}; growth {growth:+.2f} %; trend {fmt(slope_all, 3)} MiB/min "
        f"(second half {fmt(slope_late, 3)} MiB/min)"
    )
    if filled is not None and filled.at > start.at + SAMPLE_EVERY:  # a warm-up shorter than it
        say(
            f"  after the daemon's {SIGNAL_WINDOW:g} s signal windows filled "
            f"({filled.at - run.ready_at:.0f} s after ready): {mib(filled.rss_kib):.1f} -> "
            f"{mib(end.rss_kib):.1f} MiB = "
            f"{(end.rss_kib - filled.rss_kib) / filled.rss_kib * 100:+.2f} % over "
            f"{end.at - filled.at:.0f} s (not judged)"
        )
    say(
        f"daemon open fds: start {start.fds}, end {end.fds}, max {fds_max} (min {fds_min}) "
        f"[{len(in_window)} samples every {SAMPLE_EVERY:g} s; start/end: least of "
        f"{FD_READS} counts]"
    )
    minute = [r for r in run.samples if start.at <= r.at <= end.at]
    series = [
        f"{mib(r.rss_kib):.0f}/{r.fds}"
        for i, r in enumerate(minute)
        if i % max(1, round(PROGRESS_EVERY / SAMPLE_EVERY)) == 0
    ]
    say(f"  RSS MiB / fds every {PROGRESS_EVERY:g} s of the window: {' '.join(series)}")
    say(
        f"  /metrics at start / end: process_resident_memory_bytes "
        f"{total(s0.metrics, 'process_resident_memory_bytes') / 2**20:.1f} / "
        f"{total(s1.metrics, 'process_resident_memory_bytes') / 2**20:.1f} MiB, process_open_fds "
        f"{total(s0.metrics, 'process_open_fds'):.0f} / {total(s1.metrics, 'process_open_fds'):.0f}"
    )
    say(
        f"daemon CPU in window: {daemon_cores:.2f} cores; targets: "
        + ", ".join(f"{k} {v:.2f}" for k, v in run.target_cpu.items())
        + f" cores; the bench itself {run.bench_cpu_s / window:.3f} cores"
    )
    say(
        f"/metrics scrape: {s1.size / 1e6:.2f} MB in {s1.seconds * 1000:.0f} ms (end); "
        f"state dir {run.state_bytes / 1e6:.1f} MB"
    )

    # scheduler and runs
    lag = bucket_diff(
        buckets(s1.metrics, "probed_scheduler_lag_seconds"),
        buckets(s0.metrics, "probed_scheduler_lag_seconds"),
    )
    lag_p99_ms = histogram_quantile(0.99, lag) * 1000
    lag_p50_ms = histogram_quantile(0.50, lag) * 1000
    share_5ms = fraction_le(0.005, lag)
    lag_all = buckets(s1.metrics, "probed_scheduler_lag_seconds")
    runs = total(s1.metrics, "probed_probe_runs_total") - total(
        s0.metrics, "probed_probe_runs_total"
    )
    rate = runs / window
    results = diff_counter(
        by_label(s1.metrics, "probed_probe_runs_total", "result"),
        by_label(s0.metrics, "probed_probe_runs_total", "result"),
    )
    failures = diff_counter(
        by_label(s1.metrics, "probed_probe_failures_total", "reason"),
        by_label(s0.metrics, "probed_probe_failures_total", "reason"),
    )
    skipped = diff_counter(
        by_label(s1.metrics, "probed_probe_skipped_total", "reason"),
        by_label(s0.metrics, "probed_probe_skipped_total", "reason"),
    )
    say()
    say(
        f"probe runs in window: {runs:,.0f} = {rate:.2f}/s (planned {plan.rate:.2f}/s); "
        f"{counter_line(results)}"
    )
    say(f"  failure reasons: {counter_line(failures)}")
    say(f"  skipped ticks: {counter_line(skipped)}")
    log = run.log
    exact = percentile(log.window_lag_ms, 0.99) if log else NAN
    say(
        f"scheduler lag in window (histogram): p50 {fmt(lag_p50_ms, 2)} ms, p99 "
        f"{fmt(lag_p99_ms, 2)} ms (interpolated), ≤ 5 ms: {fmt(share_5ms * 100, 2)} % of "
        f"{lag[-1][1] if lag else 0:,.0f} runs; whole run p99 "
        f"{fmt(histogram_quantile(0.99, lag_all) * 1000, 2)} ms"
    )
    if log:
        say(
            f"  from the probe_run log lines in the window: p99 {fmt(exact, 2)} ms, max "
            f"{fmt(max(log.window_lag_ms) if log.window_lag_ms else NAN, 1)} ms "
            f"({len(log.window_lag_ms):,} lines)"
        )
        say("  by the faults on when the run was logged (runs, p99 ms, max ms):")
        phases = sorted(
            log.lag_by_phase.items(), key=lambda kv: percentile(kv[1], 0.99), reverse=True
        )
        for phase, lags in phases:
            say(
                f"    {phase:<40} {len(lags):>7,} {fmt(percentile(lags, 0.99), 2):>8} "
                f"{fmt(max(lags), 1):>8}"
            )
    say(
        f"probed_event_loop_lag_seconds (latest sample) at start / end: "
        f"{total(s0.metrics, 'probed_event_loop_lag_seconds') * 1000:.1f} / "
        f"{total(s1.metrics, 'probed_event_loop_lag_seconds') * 1000:.1f} ms"
    )

    # streams
    connected = total(s1.metrics, "probed_stream_connected")
    configured = total(s1.metrics, "probed_stream_subscribers")
    reconnects = diff_counter(
        by_label(s1.metrics, "probed_stream_reconnects_total", "reason"),
        by_label(s0.metrics, "probed_stream_reconnects_total", "reason"),
    )
    events = {
        key: total(s1.metrics, f"probed_events_{key}_total")
        - total(s0.metrics, f"probed_events_{key}_total")
        for key in ("received", "lost", "duplicated", "out_of_order", "late", "negative_lag")
    }
    say()
    say(
        f"streams connected at the end: {connected:.0f}/{configured:.0f} (daemon), "
        f"{run.connected_end_target}/{plan.streams} (targets); at the start "
        f"{run.connected_start}/{plan.streams}; all open "
        f"{fmt(run.connect_s, 1)} s after ready; after each fault pause: "
        + ", ".join(f"{s:.1f} s" for s in run.quiesce_s)
    )
    say(f"  reconnects in window by reason: {counter_line(reconnects)}")
    say(
        "  events in window: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in events.items())
        + f" ({events['received'] / window:,.0f}/s)"
    )
    for name, stats in run.target_stats.items():
        logs = Counter({str(k): int(v) for k, v in (stats.get("logs") or {}).items()})
        say(
            f"  target {name}: published {stats.get('published', 0):,} "
            f"({stats.get('publish_errors', 0)} refused, "
            f"{stats.get('publisher_resyncs', 0)} publisher resyncs); own logs: "
            f"{counter_line(logs, 6)}"
        )
    driver = run.driver
    if driver is not None:
        say(f"faults applied (whole run): {counter_line(driver.applied, 10)}")
        for failure in driver.failures[:5]:
            say(f"  fault change failed: {failure}")

    # logs
    say()
    if log:
        say(
            f"daemon log: {log.lines:,} lines; levels {counter_line(log.levels)}; "
            f"warning+ events: {counter_line(log.noisy, 8)}"
        )
        say(
            f"unhandled exceptions: {log.exceptions}"
            + (f" ({counter_line(log.exception_events)})" if log.exceptions else "")
        )
        for line in log.first:
            say(f"  | {line}")
        if log.stderr_lines:
            say(f"daemon stderr: {log.stderr_lines} lines")
            for line in log.stderr_first:
                say(f"  | {line}")
    say(
        f"shutdown: SIGTERM -> exit code {run.exit_code} after {fmt(run.shutdown_s, 2)} s"
        + (" (did not exit within 60 s: SIGKILLed)" if run.killed else "")
    )

    # verdicts
    exceptions = log.exceptions if log else None
    targets = [
        (
            f"RSS growth after warm-up ≤ {TARGET_RSS_GROWTH_PCT:g} %",
            f"{growth:+.2f} %",
            verdict(growth <= TARGET_RSS_GROWTH_PCT),
        ),
        (
            f"open fds flat (end - start ≤ {TARGET_FD_SLACK})",
            f"{end.fds - start.fds:+d} ({start.fds} -> {end.fds})",
            verdict(end.fds - start.fds <= TARGET_FD_SLACK),
        ),
        (
            "unhandled exceptions = 0",
            "n/a" if exceptions is None else str(exceptions),
            verdict(None if exceptions is None else exceptions <= TARGET_EXCEPTIONS),
        ),
    ]
    checks = [
        (
            f"probe runs/s ≥ {MIN_RATE_SHARE:.0%} of planned",
            f"{rate:.2f}/s of {plan.rate:.2f}/s",
            check(rate >= MIN_RATE_SHARE * plan.rate),
        ),
        (
            f"streams connected at the end (out of {plan.streams})",
            f"{connected:.0f}",
            check(connected >= plan.streams),
        ),
        (
            "daemon exits 0 on SIGTERM",
            f"{run.exit_code} in {fmt(run.shutdown_s, 2)} s",
            check(run.exit_code == 0 and not run.killed),
        ),
    ]
    say()
    width = max(len(t[0]) for t in targets + checks)
    say("TARGETS")
    for what, value, result in targets:
        say(f"  {what:<{width}}  {value:>24}  {result}")
    say(f"  {sum(1 for t in targets if t[2] == 'MET')} of {len(targets)} targets met")
    say("LOAD CHECKS (the soak counts only if these hold)")
    for what, value, result in checks:
        say(f"  {what:<{width}}  {value:>24}  {result}")
    say(
        f"  scheduler lag p99 {fmt(lag_p99_ms, 2)} ms (reference: bench/http_probes.py "
        f"lateness target ≤ {LAG_REFERENCE_MS:g} ms; {fmt(share_5ms * 100, 2)} % of runs ≤ 5 ms)"
    )
    for error in run.errors:
        say(f"ERROR: {error}")
    return not run.errors


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
        "--log-dir", help="keep the daemon's config, logs and state in this directory"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20 s warm-up, 60 s window, faults every 10 s",
    )
    hidden = argparse.SUPPRESS
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
