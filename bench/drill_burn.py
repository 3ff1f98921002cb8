"""Fault drill: a 100 s login slowdown on the live demo, fast_burn, Alertmanager, the banner.

    python bench/drill_burn.py                 # the full drill, about 10 minutes
    python bench/drill_burn.py --quick         # shorter warm-up, fault and dwells, about 7 minutes
    python bench/drill_burn.py --warmup 90 --fault-seconds 100 --latency 0.4   # the defaults

Not a test (CI does not run it): it rehearses issue 10's acceptance on real processes.

What runs, all on 127.0.0.1, each child in its own session and stopped on exit:

* the demo target: ``drill_burn.py --serve-demo`` (``probed.demo.DemoTarget`` on port 0;
  it prints the port). Its login password comes from ``PROBED_DEMO_PASSWORD`` in the
  environment, never the command line; the daemon reads the same variable.
* a real Alertmanager (``prometheus-alertmanager``, as the ``alertmanager`` test fixture:
  a ``null`` receiver, ``group_wait: 0s``, gossip off) on a free port, its data in the
  scratch directory.
* ``python -m probed run --config FILE`` with a generated config: the demo's login probe
  every 10 s with ``latency_threshold = "250ms"``; two SLOs on it, availability and latency
  (``threshold = "250ms"``), both 99.9 % over 30 d; ``[recommend] evaluate_every = "5s"``,
  ``enter_for = "30s"``, ``exit_for = "60s"`` (printed at start); ``[alerting]`` pushing to
  the Alertmanager every 5 s; the state directory in a temporary directory.

What it does: warm up (``--warmup``, 90 s), then ``PUT /-/admin/faults`` on the demo with
``{"latency": 0.4, "paths": ["/api/auth/*"]}`` (the login call only, not ``/api/me``) for
``--fault-seconds`` (100 s), then ``{"latency": 0}``. It keeps watching until every
recommendation has cleared and Alertmanager shows no probed alert, or until the deadline:
fault end + the SLO short window (5 m) + ``exit_for`` + one evaluation + ``--margin`` (30 s).

Every ``--every`` (5) seconds it records, from one ``GET /api/v1/status`` (one snapshot):
the overall state (the banner), the recommendations that are not resolved (scenario, state,
severity), the 5m and 1h burn rates of each SLO; and from ``GET /api/v2/alerts`` on
Alertmanager the alerts named ``ProbedDegradedMode`` (a resolved alert leaves that list,
which shows only alerts not yet resolved). The daemon's ``recommendation_transition`` log
lines (JSON on its stdout) give the exact transition times.

It prints the timeline (seconds since the fault started: fault on/off, recommendation
transitions, overall-state changes, Alertmanager changes, burn rates when a window crosses
``fast_burn_rate``), then PASS/FAIL for:

(a) every recommendation that entered (pending or active) cleared within 5 m + ``exit_for``
    + one evaluation after the fault ended. The clear time is the daemon's own transition
    log line; the sampled time (up to ``--every`` later) is printed next to it.
(b) Alertmanager shows no active probed alert at the end.
(c) the overall state was never OK in a snapshot that had a Sev-1 or Sev-2 ACTIVE.
(d) fast_burn entered according to the rule: if it became active, some SLO had both its
    1h and 5m burn rates above ``fast_burn_rate`` in the last sample before; if some SLO had
    both above it in consecutive samples for longer than ``enter_for`` + two evaluations
    + one sample, fast_burn became active.

Exit codes: 0 every check held, 1 a check failed (printed), 2 cannot start (no
Alertmanager binary, a child that does not come up), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    LOOPBACK,
    BenchError,
    Processes,
    cancel_on_sigterm,
    free_port,
    positive,
    quiet_structlog,
    run_bench,
    say,
    start_printing_port,
    tail,
    wait_for_stop,
    wait_http_ok,
)

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
ALERT_NAME = "ProbedDegradedMode"
SHORT_WINDOW = 300.0  # the SLO burn rate's short window (5m)
FAST_BURN_RATE = 2.0  # [recommend] fast_burn_rate, the default
ACTIVE_SEVERITIES = ("Sev-1", "Sev-2")
PASSWORD_ENV = "PROBED_DEMO_PASSWORD"

AM_CONFIG = """\
route:
  receiver: "null"
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


# --------------------------------------------------------------------------------------
# the demo target (its own process: ``drill_burn.py --serve-demo``)


def serve_demo(lifetime: float) -> int:
    """Run ``probed.demo.DemoTarget`` on 127.0.0.1:0 with the password from the env."""
    from probed.demo import DemoTarget

    quiet_structlog(Counter())

    async def main() -> None:
        async with DemoTarget(host=LOOPBACK, port=0, password=os.environ[PASSWORD_ENV]) as target:
            print(target.port, flush=True)
            await wait_for_stop(lifetime)

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------------------
# config


@dataclass(frozen=True, slots=True)
class Plan:
    warmup: float
    fault_seconds: float
    latency: float
    enter_for: float
    exit_for: float
    evaluate_every: float
    every: float
    margin: float

    @property
    def clear_bound(self) -> float:
        """After the fault ends: the short window + exit_for + one evaluation."""
        return SHORT_WINDOW + self.exit_for + self.evaluate_every


def write_config(path: Path, plan: Plan, demo_port: int, am_url: str, port: int) -> None:
    path.write_text(
        f"""\
[daemon]
listen = "{LOOPBACK}:{port}"
location = "drill"
state_dir = "{path.parent / "state"}"
log_level = "info"
log_format = "json"

[targets.demo]
base_url = "http://{LOOPBACK}:{demo_port}"

[[probes]]
name = "login"
kind = "login"
target = "demo"
interval = "10s"
timeout = "2s"
latency_threshold = "250ms"
username = "probe@demo.example"
password = {{ env = "{PASSWORD_ENV}" }}
token_path = "token"
follow_up = {{ path = "/api/me", json_checks = [{{ path = "id", exists = true }}] }}

[[slos]]
name = "login_availability"
sli = "availability"
probes = ["login"]
objective = 0.999
window = "30d"

[[slos]]
name = "login_latency"
sli = "latency"
probes = ["login"]
threshold = "250ms"
objective = 0.999
window = "30d"

[recommend]
evaluate_every = "{plan.evaluate_every:g}s"
enter_for = "{plan.enter_for:g}s"
exit_for = "{plan.exit_for:g}s"

[alerting]
alertmanager_urls = ["{am_url}"]
resend_interval = "5s"
timeout = "2s"
""",
        encoding="utf-8",
    )


# --------------------------------------------------------------------------------------
# samples


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the fault started (monotonic)
    overall: str
    recs: dict[str, tuple[str, str]]  # scenario -> (state, severity), unresolved only
    burns: dict[str, tuple[float | None, float | None]]  # slo -> (5m, 1h)
    alerts: dict[str, str]  # "scenario severity" -> Alertmanager state (active/suppressed)
    errors: list[str] = field(default_factory=list)


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=4)) as resp:
        resp.raise_for_status()
        return await resp.json()


async def take_sample(http: aiohttp.ClientSession, base: str, am: str, t0: float) -> Sample:
    sample = Sample(time.monotonic() - t0, "?", {}, {}, {})
    try:
        doc = await get_json(http, f"{base}/api/v1/status")
        sample.overall = str(doc.get("overall"))
        for rec in doc.get("recommendations", []):
            if rec.get("state") != "resolved":
                sample.recs[str(rec["scenario"])] = (str(rec["state"]), str(rec["severity"]))
        for slo in doc.get("slos", []):
            burn = slo.get("burn_rate") or {}
            sample.burns[str(slo["name"])] = (_num(burn.get("5m")), _num(burn.get("1h")))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
        sample.errors.append(f"status: {exc!r}")
    try:
        for alert in await get_json(http, f"{am}/api/v2/alerts"):
            labels = alert.get("labels", {})
            if labels.get("alertname") == ALERT_NAME:
                key = f"{labels.get('scenario')} {labels.get('severity')}"
                sample.alerts[key] = str(alert.get("status", {}).get("state"))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        sample.errors.append(f"alertmanager: {exc!r}")
    return sample


def _fmt_burn(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def _fmt_recs(recs: dict[str, tuple[str, str]]) -> str:
    if not recs:
        return "none"
    return ", ".join(f"{s} {st} {sev}" for s, (st, sev) in sorted(recs.items()))


def transitions_from_log(path: Path, wall_t0: float) -> list[tuple[float, str, str]]:
    """(t since fault start, scenario, 'old -> new severity') from the daemon's JSON log."""
    out: list[tuple[float, str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if "recommendation_transition" not in line:
            continue
        try:
            entry = json.loads(line)
            wall = datetime.fromisoformat(str(entry["ts"]).replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        old = entry.get("old_state") or "(none)"
        change = f"{old} -> {entry.get('new_state')} {entry.get('severity')}"
        out.append((wall - wall_t0, str(entry.get("scenario")), change))
    return out


# --------------------------------------------------------------------------------------
# the drill


async def set_latency(http: aiohttp.ClientSession, demo: str, latency: float) -> None:
    body = {"latency": latency, "paths": ["/api/auth/*"]}
    async with http.put(f"{demo}/-/admin/faults", json=body) as resp:
        if resp.status != 200:
            raise BenchError(f"PUT /-/admin/faults answered {resp.status}: {await resp.text()}")


async def drill(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        raise BenchError(
            "no prometheus-alertmanager binary (apt-get install prometheus-alertmanager)"
        )
    plan = Plan(
        warmup=args.warmup,
        fault_seconds=args.fault_seconds,
        latency=args.latency,
        enter_for=10.0 if args.quick else 30.0,
        exit_for=20.0 if args.quick else 60.0,
        evaluate_every=5.0,
        every=args.every,
        margin=args.margin,
    )
    say(
        f"drill: login latency +{plan.latency * 1000:.0f} ms for {plan.fault_seconds:g} s after "
        f"{plan.warmup:g} s warm-up; login probe every 10 s, latency_threshold 250ms"
    )
    say(
        f"drill: [recommend] evaluate_every = {plan.evaluate_every:g}s, enter_for = "
        f"{plan.enter_for:g}s, exit_for = {plan.exit_for:g}s, fast_burn_rate = "
        f"{FAST_BURN_RATE:g}; SLOs login_availability, login_latency: 99.9 % over 30d"
    )
    say(
        f"drill: clear bound after the fault ends = 5m + exit_for + one evaluation = "
        f"{plan.clear_bound:g} s; sampling every {plan.every:g} s"
    )
    procs = Processes(grace=10.0)
    # the demo child inherits it (start_printing_port passes no env); the daemon gets ``env``
    os.environ[PASSWORD_ENV] = secrets.token_urlsafe(18)
    # this checkout's probed for every child (not another installed copy)
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="probed-drill-") as scratch_name:
            scratch = Path(scratch_name)
            return await _drill(args, plan, procs, env, binary, scratch)
    finally:
        await procs.stop_all()


async def _drill(
    args: argparse.Namespace,
    plan: Plan,
    procs: Processes,
    env: dict[str, str],
    binary: str,
    scratch: Path,
) -> int:
    lifetime = plan.warmup + plan.fault_seconds + plan.clear_bound + plan.margin + 120
    demo_argv = [sys.executable, str(SCRIPT), "--serve-demo", "--lifetime", str(lifetime)]
    _, demo_port = await start_printing_port(procs, demo_argv, scratch / "demo.stderr")
    demo = f"http://{LOOPBACK}:{demo_port}"

    am_port = free_port()
    am = f"http://{LOOPBACK}:{am_port}"
    (scratch / "alertmanager.yml").write_text(AM_CONFIG, encoding="utf-8")
    with (scratch / "alertmanager.log").open("wb") as log:
        am_proc = await procs.spawn(
            [
                binary,
                f"--config.file={scratch / 'alertmanager.yml'}",
                f"--storage.path={scratch / 'am-data'}",
                f"--web.listen-address={LOOPBACK}:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=log,
        )

    daemon_port = free_port()
    base = f"http://{LOOPBACK}:{daemon_port}"
    config = scratch / "drill.toml"
    (scratch / "state").mkdir()
    write_config(config, plan, demo_port, am, daemon_port)
    argv = [sys.executable, "-m", "probed", "run", "-c", str(config)]
    with (
        (scratch / "daemon.log").open("wb") as out,
        (scratch / "daemon.stderr").open("wb") as err,
    ):
        daemon = await procs.spawn(argv, stdout=out, stderr=err, env=env, cwd=REPO)

    async with aiohttp.ClientSession() as http:
        try:
            await wait_http_ok(http, f"{am}/-/ready", am_proc, 15.0, poll=0.05)
        except BenchError as exc:
            raise BenchError(f"alertmanager: {exc}\n{tail(scratch / 'alertmanager.log')}") from None
        try:
            await wait_http_ok(http, f"{base}/-/ready", daemon, 30.0, poll=0.05)
        except BenchError as exc:
            raise BenchError(
                f"daemon: {exc}\n{tail(scratch / 'daemon.stderr')}\n{tail(scratch / 'daemon.log')}"
            ) from None
        say(f"drill: demo {demo}, alertmanager {am}, daemon {base}, scratch {scratch}")

        samples: list[Sample] = []
        # t0 = the fault's start (planned); the warm-up has negative times
        t0 = time.monotonic() + plan.warmup
        wall_t0 = time.time() + plan.warmup
        fault_on: float | None = None
        fault_off: float | None = None
        deadline: float | None = None
        next_tick = time.monotonic()
        while True:
            now = time.monotonic() - t0
            if fault_on is None and now >= 0:
                await set_latency(http, demo, plan.latency)
                fault_on = time.monotonic() - t0
                wall_t0 = time.time() - fault_on
                say(f"drill: t={fault_on:+.1f} s fault on")
            elif fault_on is not None and fault_off is None and now >= plan.fault_seconds:
                await set_latency(http, demo, 0.0)
                fault_off = time.monotonic() - t0
                deadline = fault_off + plan.clear_bound + plan.margin
                say(f"drill: t={fault_off:+.1f} s fault off; watching until t={deadline:.0f} s")
            if daemon.returncode is not None:
                raise BenchError(
                    f"the daemon exited with code {daemon.returncode}\n"
                    f"{tail(scratch / 'daemon.stderr')}"
                )
            sample = await take_sample(http, base, am, t0)
            samples.append(sample)
            if (
                len(samples) == 1
                or sample.overall != samples[-2].overall
                or sample.recs != (samples[-2].recs)
            ):
                say(
                    f"drill: t={sample.t:+.0f} s overall {sample.overall}, "
                    f"recommendations {_fmt_recs(sample.recs)}"
                )
            if fault_off is not None and deadline is not None:
                settled = sample.t > fault_off + 2 * plan.every
                if settled and not sample.recs and not sample.alerts and not sample.errors:
                    break
                if sample.t >= deadline:
                    break
            next_tick += plan.every
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

        logged = transitions_from_log(scratch / "daemon.log", wall_t0)
    assert fault_on is not None
    assert fault_off is not None
    return report(plan, samples, logged, fault_on, fault_off)


# --------------------------------------------------------------------------------------
# the report


def report(
    plan: Plan,
    samples: list[Sample],
    logged: list[tuple[float, str, str]],
    fault_on: float,
    fault_off: float,
) -> int:
    events: list[tuple[float, str]] = [
        (fault_on, f"fault ON: login latency +{plan.latency * 1000:.0f} ms"),
        (fault_off, "fault OFF"),
    ]
    for t, scenario, change in logged:
        events.append((t, f"recommendation {scenario}: {change} (daemon log)"))
    prev: Sample | None = None
    for s in samples:
        if s.errors:
            events.append((s.t, "sample error: " + "; ".join(s.errors)))
        if prev is None or s.overall != prev.overall:
            events.append((s.t, f"overall {prev.overall if prev else '-'} -> {s.overall}"))
        if prev is None or s.recs != prev.recs:
            events.append((s.t, f"recommendations seen: {_fmt_recs(s.recs)}"))
        if prev is None or s.alerts != prev.alerts:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(s.alerts.items())) or "no probed alert"
            gone = sorted(set(prev.alerts) - set(s.alerts)) if prev else []
            extra = f" (resolved: {', '.join(gone)})" if gone else ""
            events.append((s.t, f"alertmanager: {shown}{extra}"))
        for slo, (short, long) in sorted(s.burns.items()):
            above = _both_above(short, long)
            was = _both_above(*prev.burns.get(slo, (None, None))) if prev else False
            if above != was:
                word = "both above" if above else "no longer both above"
                events.append(
                    (
                        s.t,
                        f"burn {slo}: 5m {_fmt_burn(short)}, 1h {_fmt_burn(long)} "
                        f"({word} {FAST_BURN_RATE:g}x)",
                    )
                )
        prev = s
    say()
    say("timeline (t = seconds since the fault started)")
    for t, text in sorted(events, key=lambda e: e[0]):
        say(f"  {t:+8.1f}  {text}")

    say()
    say("burn rates every 30 s (5m / 1h)")
    last = -1e9
    for s in samples:
        if s.t - last >= 30 or s is samples[-1]:
            burns = "  ".join(
                f"{slo} {_fmt_burn(a)} / {_fmt_burn(b)}" for slo, (a, b) in sorted(s.burns.items())
            )
            say(f"  {s.t:+8.1f}  {s.overall:9} {burns}")
            last = s.t

    say()
    say("checks")
    failed = 0

    # (a) everything that entered cleared in time
    entered = sorted({sc for s in samples for sc in s.recs} | {sc for _, sc, _ in logged})
    bound = plan.clear_bound
    if not entered:
        say("  (a) PASS  nothing entered (no recommendation was ever pending or active)")
    for scenario in entered:
        last_seen = (
            max(s.t for s in samples if scenario in s.recs)
            if any(scenario in s.recs for s in samples)
            else fault_off
        )
        seen_clear = next(
            (s.t for s in samples if s.t > max(last_seen, fault_off) and scenario not in s.recs),
            None,
        )
        still = samples[-1].recs.get(scenario)
        ends = [t for t, sc, ch in logged if sc == scenario and "-> resolved" in ch]
        log_clear = ends[-1] if ends and still is None else None
        if still is not None or seen_clear is None:
            failed += 1
            say(f"  (a) FAIL  {scenario} still {still} at the end (t={samples[-1].t:+.0f} s)")
            continue
        after = max(0.0, (log_clear if log_clear is not None else seen_clear) - fault_off)
        ok = after <= bound
        failed += 0 if ok else 1
        say(
            f"  (a) {'PASS' if ok else 'FAIL'}  {scenario} cleared {after:.1f} s after the fault "
            f"ended (daemon log; first sample without it: {seen_clear - fault_off:.1f} s); "
            f"bound 5m + exit_for + one evaluation = {bound:g} s"
        )

    # (b) Alertmanager at the end
    end = samples[-1]
    if end.alerts or any(e.startswith("alertmanager") for e in end.errors):
        failed += 1
        say(f"  (b) FAIL  Alertmanager at the end: {end.alerts or end.errors}")
    else:
        ever = sorted({k for s in samples for k in s.alerts})
        say(
            f"  (b) PASS  no active probed alert in Alertmanager at t={end.t:+.0f} s "
            f"(alerts seen during the drill: {', '.join(ever) or 'none'})"
        )

    # (c) the banner is never OK under an active Sev-1/Sev-2
    bad = [
        s
        for s in samples
        if s.overall == "OK"
        and any(st == "active" and sev in ACTIVE_SEVERITIES for st, sev in s.recs.values())
    ]
    if bad:
        failed += 1
        say(
            f"  (c) FAIL  overall OK while a Sev-1/Sev-2 was active in {len(bad)} samples, first "
            f"at t={bad[0].t:+.0f} s: {_fmt_recs(bad[0].recs)}"
        )
    else:
        sev = sum(
            1
            for s in samples
            if any(st == "active" and v in ACTIVE_SEVERITIES for st, v in s.recs.values())
        )
        say(
            f"  (c) PASS  overall never OK while a Sev-1/Sev-2 was active "
            f"({sev} of {len(samples)} samples had one active)"
        )

    # (d) fast_burn entered according to the rule
    failed += check_rule(plan, samples)

    say()
    if failed:
        say(f"RESULT: {failed} check(s) FAILED")
        return 1
    say("RESULT: all checks held")
    return 0


def _both_above(short: float | None, long: float | None) -> bool:
    return (
        short is not None
        and long is not None
        and short > FAST_BURN_RATE
        and (long > FAST_BURN_RATE)
    )


def check_rule(plan: Plan, samples: list[Sample]) -> int:
    """(d): fast_burn active only after both windows were above the rate, and surely after."""

    def held(s: Sample) -> bool:
        return any(_both_above(a, b) for a, b in s.burns.values())

    first_active = next(
        (i for i, s in enumerate(samples) if s.recs.get("fast_burn", ("",))[0] == "active"),
        None,
    )
    longest = 0.0
    run_start: float | None = None
    needed = plan.enter_for + 2 * plan.evaluate_every + plan.every
    surely_at: float | None = None
    for s in samples:
        if held(s):
            run_start = s.t if run_start is None else run_start
            longest = max(longest, s.t - run_start)
            if surely_at is None and s.t - run_start > needed:
                surely_at = s.t
        else:
            run_start = None
    if first_active is not None:
        before = samples[max(0, first_active - 1) : first_active + 1]
        ok = any(held(s) for s in before)
        t = samples[first_active].t
        say(
            f"  (d) {'PASS' if ok else 'FAIL'}  fast_burn became active (seen t={t:+.0f} s) "
            f"{'after' if ok else 'WITHOUT'} both windows above {FAST_BURN_RATE:g}x; "
            f"longest stretch both above: {longest:.0f} s"
        )
        return 0 if ok else 1
    if surely_at is not None:
        say(
            f"  (d) FAIL  both windows above {FAST_BURN_RATE:g}x for {longest:.0f} s "
            f"(> enter_for + 2 evaluations + 1 sample = {needed:g} s) but fast_burn never active"
        )
        return 1
    say(
        f"  (d) PASS  fast_burn did not enter; both windows above {FAST_BURN_RATE:g}x for at most "
        f"{longest:.0f} s (enter_for = {plan.enter_for:g} s)"
    )
    return 0


# --------------------------------------------------------------------------------------
# main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fault drill: a login slowdown on the live demo, fast_burn, Alertmanager.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="30 s warm-up, 60 s fault, enter_for 10s, exit_for 20s (about 7 minutes)",
    )
    parser.add_argument("--warmup", type=positive, default=90.0, help="warm-up seconds (90)")
    parser.add_argument(
        "--fault-seconds", type=positive, default=100.0, help="how long the fault lasts (100)"
    )
    parser.add_argument(
        "--latency", type=positive, default=0.4, help="login latency added, seconds (0.4)"
    )
    parser.add_argument("--every", type=positive, default=5.0, help="sample period, s (5)")
    parser.add_argument(
        "--margin", type=positive, default=30.0, help="extra seconds past the clear bound (30)"
    )
    hidden = argparse.SUPPRESS
    parser.add_argument("--serve-demo", action="store_true", help=hidden)
    parser.add_argument("--lifetime", type=positive, default=1200.0, help=hidden)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_demo:
        return serve_demo(args.lifetime)
    if args.quick:
        args.warmup = min(args.warmup, 30.0)
        args.fault_seconds = min(args.fault_seconds, 60.0)
    return run_bench(drill(args), lambda code: code, failed="drill cannot start")


if __name__ == "__main__":
    sys.exit(main())
