"""Start-to-ready and idle RSS of the real daemon, several starts, medians.

Run from the repository root::

    python bench/startup.py                        # 7 starts, idle RSS 5 s after ready
    python bench/startup.py --starts 11 --idle-wait 10
    python bench/startup.py --event-loop asyncio   # PROBED_DAEMON__EVENT_LOOP for the daemon
    python bench/startup.py --python /tmp/rt/bin/python   # a venv with the runtime deps only

A development environment holds packages a production install has not, and some are
imported when present: structlog imports rich (and pygments) for its console renderer,
about 5.5 MB and 80 ms here. ``python -m venv /tmp/rt && /tmp/rt/bin/pip install .``
makes an interpreter with what ``pip install probed`` brings and nothing else; this
checkout still comes first on its path.

Each start spawns ``python -m probed run --config FILE`` (this checkout first on
``PYTHONPATH``) from byte-compiled modules, as an installed package starts (pip compiles
them; ``PYTHONDONTWRITEBYTECODE`` would make every start compile probed's sources, about
0.3 s of CPU here): the bench gives the daemon a ``PYTHONPYCACHEPREFIX`` of its own and
starts it once, uncounted, to fill it (``--source`` measures compiling instead). The
daemon runs with 5 ``http`` probes every 15 s of a tiny target (``startup.py
--serve-target``, its own process, ``GET /health``) and its own state directory, and
polls ``/-/ready`` every 5 ms. For each start it prints: seconds from spawn to the first
200 (wall), the daemon's CPU seconds (utime + stime) at that moment, which a busy
machine moves less than the wall time, and ``--idle-wait`` seconds later ``VmRSS`` with
its anonymous and file-backed parts (``RssAnon``, ``RssFile``: shared libraries and
code mapped from files), in MB (10^6 bytes); then the median of each. The issue's
targets: start-to-ready ≤ 0.4 s, idle RSS ≤ 50 MB.

It exits 0 when every start was measured, 1 when one was not (the reason is printed),
2 when it cannot start at all, 130 on Ctrl-C. All traffic stays on 127.0.0.1; every
process it starts gets SIGTERM if the bench dies and is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _common import (
    LOOPBACK,
    BenchError,
    Processes,
    cancel_on_sigterm,
    cpu_seconds,
    free_port,
    positive,
    run_bench,
    say,
    serve_health,
    start_printing_port,
    status_kib,
    tail,
    wait_http_ok,
)

SELF = Path(__file__).resolve()
REPO = SELF.parent.parent
PROBES = 5
TARGET_READY_S = 0.4
TARGET_RSS_MB = 50.0


@dataclass(slots=True)
class Start:
    ready_s: float
    cpu_s: float
    rss_mb: float
    anon_mb: float
    file_mb: float


def write_config(scratch: Path, port: int, target_port: int, attempt: int) -> Path:
    state_dir = scratch / f"state-{attempt}"
    state_dir.mkdir(exist_ok=True)
    lines = [
        "[daemon]",
        f'listen = "{LOOPBACK}:{port}"',
        f'state_dir = "{state_dir}"',
        "",
        "[targets.bench]",
        f'base_url = "http://{LOOPBACK}:{target_port}"',
        "",
    ]
    for i in range(PROBES):
        lines += [
            "[[probes]]",
            f'name = "p{i}"',
            'kind = "http"',
            'target = "bench"',
            'path = "/health"',
            'interval = "15s"',
            "",
        ]
    path = scratch / f"startup-{attempt}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


async def one_start(
    procs: Processes, scratch: Path, target_port: int, attempt: int, args: argparse.Namespace
) -> Start:
    port = free_port()
    config = write_config(scratch, port, target_port, attempt)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if args.event_loop:
        env["PROBED_DAEMON__EVENT_LOOP"] = args.event_loop
    if args.source:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    log = scratch / f"startup-{attempt}.log"
    argv = [args.python, "-m", "probed", "run", "--config", str(config)]
    with log.open("wb") as out:
        spawned = time.perf_counter()
        proc = await procs.spawn(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        async with aiohttp.ClientSession() as session:
            try:
                ready_at = await wait_http_ok(
                    session, f"http://{LOOPBACK}:{port}/-/ready", proc, 30.0
                )
            except BenchError as exc:
                raise BenchError(f"start {attempt}: {exc}\n{tail(log)}") from None
            cpu = cpu_seconds(proc.pid)
        ready_s = ready_at - spawned
        await asyncio.sleep(args.idle_wait)
        kib = {key: status_kib(key, proc.pid) for key in ("VmRSS", "RssAnon", "RssFile")}
    finally:
        code = await procs.stop(proc)
    if code != 0:
        raise BenchError(f"start {attempt}: exit code {code} on SIGTERM\n{tail(log)}")
    return Start(
        ready_s,
        cpu,
        kib["VmRSS"] * 1024 / 1e6,
        kib["RssAnon"] * 1024 / 1e6,
        kib["RssFile"] * 1024 / 1e6,
    )


async def main(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    procs = Processes()
    starts: list[Start] = []
    try:
        with tempfile.TemporaryDirectory(prefix="probed-startup-") as tmp:
            scratch = Path(tmp)
            target, target_port = await start_printing_port(
                procs, [sys.executable, str(SELF), "--serve-target"], scratch / "target.stderr"
            )
            loop = args.event_loop or "the config's default"
            code = "compiling the sources" if args.source else "from bytecode"
            say(
                f"startup bench: {args.starts} starts of {PROBES} probes, event loop {loop}, {code}"
            )
            say(f"  interpreter: {args.python}")
            if not args.source:
                await one_start(procs, scratch, target_port, -1, args)  # compiles, uncounted
            say("  start  ready s   CPU s   RSS MB   anon MB   file MB")
            for attempt in range(args.starts):
                start = await one_start(procs, scratch, target_port, attempt, args)
                starts.append(start)
                say(
                    f"  {attempt:5d}  {start.ready_s:7.3f} {start.cpu_s:7.2f}  "
                    f"{start.rss_mb:7.1f}   {start.anon_mb:7.1f}   {start.file_mb:7.1f}"
                )
            await procs.stop(target)
    except BenchError as exc:
        say(f"NOT MEASURED: {exc}")
        return 1
    finally:
        await procs.stop_all()

    def med(values: list[float]) -> float:
        return statistics.median(values)

    ready = med([s.ready_s for s in starts])
    rss = med([s.rss_mb for s in starts])
    say(
        f"  median {ready:7.3f} {med([s.cpu_s for s in starts]):7.2f}  {rss:7.1f}   "
        f"{med([s.anon_mb for s in starts]):7.1f}   {med([s.file_mb for s in starts]):7.1f}"
    )
    say(f"start-to-ready, median of {len(starts)} (s): {ready:.3f} (target <= {TARGET_READY_S})")
    say(f"idle RSS, {PROBES} probes, median (MB): {rss:.1f} (target <= {TARGET_RSS_MB:g})")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start-to-ready and idle RSS of probed with 5 probes, median of starts."
    )
    parser.add_argument("--starts", type=int, default=7, help="daemon starts (7)")
    parser.add_argument(
        "--idle-wait", type=positive, default=5.0, help="seconds after ready before RSS (5)"
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        help="PROBED_DAEMON__EVENT_LOOP for the daemon (default: the config's default)",
    )
    parser.add_argument(
        "--source",
        action="store_true",
        help="no bytecode: every start compiles the sources (PYTHONDONTWRITEBYTECODE=1)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the daemon's interpreter, e.g. a venv with only probed's runtime dependencies "
        "(default: this one)",
    )
    parser.add_argument("--serve-target", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.starts < 1:
        parser.error("--starts must be at least 1")
    return args


def cli() -> int:
    args = parse()
    if args.serve_target:
        return serve_health(3600.0)
    return run_bench(main(args), lambda code: code)


if __name__ == "__main__":
    sys.exit(cli())
