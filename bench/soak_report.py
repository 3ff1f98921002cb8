"""The soak's figures: everything measured in one run, and the report printed from it.

Part of ``bench/soak.py`` (imported as ``soak_report``; ``bench/`` is the
script directory). The targets are the issue's acceptance criteria; the load
checks tell whether the soak counts.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import NAN, fmt, percentile, say
from soak_config import SIGNAL_WINDOW, Plan
from soak_exposition import (
    bucket_diff,
    buckets,
    by_label,
    fraction_le,
    histogram_quantile,
    largest_bucket,
    total,
)
from soak_faults import FaultDriver
from soak_logs import LATE_MS, LogScan
from soak_runqueue import RunQueueSampler
from soak_sampler import FD_READS, PROGRESS_EVERY, SAMPLE_EVERY, Reading, Snapshot, mib

# Targets (the acceptance criteria) and the soak's own validity checks.
TARGET_RSS_GROWTH_PCT = 5.0
TARGET_FD_SLACK = 10
"""'fds flat': the end count may exceed the start count by at most this many."""
TARGET_EXCEPTIONS = 0
LAG_REFERENCE_MS = 5.0
"""Reference only: bench/http_probes.py's scheduler lateness target."""
MIN_RATE_SHARE = 0.97
"""The soak counts only if at least this share of the planned runs per second ran."""


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
    runqueue: RunQueueSampler | None = None


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


def late_runs(log: LogScan, sampler: RunQueueSampler | None, listed: int = 8) -> None:
    """The window's late runs with what the loop's thread did while each was due: on a CPU
    (the daemon's own work) or runnable and waiting for one (the machine was busy)."""
    if sampler is None or sampler.error:
        say(f"  late runs not explained: {sampler.error if sampler else 'no schedstat readings'}")
        return
    rows = []
    for lag_ms, due in log.late:
        spent = sampler.spent_within(due, due + lag_ms / 1000)
        if spent is not None:
            cpu_s, wait_s = spent
            rows.append((lag_ms, cpu_s * 1000, wait_s * 1000, lag_ms - wait_s * 1000))
    say(
        f"  runs >= {LATE_MS:g} ms late: {len(log.late):,}; the loop thread's schedstat "
        f"read every {sampler.every * 1000:g} ms ({len(sampler.wall):,} readings) covers "
        f"{len(rows):,}"
    )
    if not rows:
        return
    own = max(row[3] for row in rows)
    say(
        f"  longest lag less the loop thread's wait for a CPU in it: {own:.1f} ms; runs whose "
        f"lag less that wait is over 8/12/16/20 ms: "
        + "/".join(str(sum(row[3] > bound for row in rows)) for bound in (8, 12, 16, 20))
    )
    say("  the latest runs (lag ms, loop thread on a CPU ms, waiting for a CPU ms, lag less wait):")
    for lag_ms, cpu_ms, wait_ms, rest_ms in sorted(rows, reverse=True)[:listed]:
        say(f"    {lag_ms:8.1f} {cpu_ms:8.1f} {wait_ms:8.1f} {rest_ms:8.1f}")


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
    m0, m1 = s0.metrics(), s1.metrics()
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
        f"{total(m0, 'process_resident_memory_bytes') / 2**20:.1f} / "
        f"{total(m1, 'process_resident_memory_bytes') / 2**20:.1f} MiB, process_open_fds "
        f"{total(m0, 'process_open_fds'):.0f} / {total(m1, 'process_open_fds'):.0f}"
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
        buckets(m1, "probed_scheduler_lag_seconds"),
        buckets(m0, "probed_scheduler_lag_seconds"),
    )
    lag_p99_ms = histogram_quantile(0.99, lag) * 1000
    lag_p50_ms = histogram_quantile(0.50, lag) * 1000
    share_5ms = fraction_le(0.005, lag)
    lag_all = buckets(m1, "probed_scheduler_lag_seconds")
    runs = total(m1, "probed_probe_runs_total") - total(m0, "probed_probe_runs_total")
    rate = runs / window
    results = diff_counter(
        by_label(m1, "probed_probe_runs_total", "result"),
        by_label(m0, "probed_probe_runs_total", "result"),
    )
    failures = diff_counter(
        by_label(m1, "probed_probe_failures_total", "reason"),
        by_label(m0, "probed_probe_failures_total", "reason"),
    )
    skipped = diff_counter(
        by_label(m1, "probed_probe_skipped_total", "reason"),
        by_label(m0, "probed_probe_skipped_total", "reason"),
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
        late_runs(log, run.runqueue)
        say("  by the faults on when the run was logged (runs, p99 ms, max ms):")
        phases = sorted(
            log.lag_by_phase.items(), key=lambda kv: percentile(kv[1], 0.99), reverse=True
        )
        for phase, lags in phases:
            say(
                f"    {phase:<40} {len(lags):>7,} {fmt(percentile(lags, 0.99), 2):>8} "
                f"{fmt(max(lags), 1):>8}"
            )
    for generation in ("0", "1", "2"):
        pauses = bucket_diff(
            buckets(m1, "probed_gc_pause_seconds", generation=generation),
            buckets(m0, "probed_gc_pause_seconds", generation=generation),
        )
        count = pauses[-1][1] if pauses else 0.0
        seconds = sum(
            v
            for lb, v in m1.get("probed_gc_pause_seconds_sum", [])
            if lb == {"generation": generation}
        ) - sum(
            v
            for lb, v in m0.get("probed_gc_pause_seconds_sum", [])
            if lb == {"generation": generation}
        )
        say(
            f"GC generation {generation} in window: {count:,.0f} collections, "
            f"{seconds * 1000:,.0f} ms in all ({seconds / window * 100:.2f} % of the window), "
            f"p50 {fmt(histogram_quantile(0.5, pauses) * 1000, 2)} ms, "
            f"p99 {fmt(histogram_quantile(0.99, pauses) * 1000, 2)} ms, "
            f"longest ≤ {fmt(largest_bucket(pauses) * 1000, 2)} ms (bucket bound)"
        )
    say(
        f"probed_event_loop_lag_seconds (latest sample) at start / end: "
        f"{total(m0, 'probed_event_loop_lag_seconds') * 1000:.1f} / "
        f"{total(m1, 'probed_event_loop_lag_seconds') * 1000:.1f} ms"
    )

    # streams
    connected = total(m1, "probed_stream_connected")
    configured = total(m1, "probed_stream_subscribers")
    reconnects = diff_counter(
        by_label(m1, "probed_stream_reconnects_total", "reason"),
        by_label(m0, "probed_stream_reconnects_total", "reason"),
    )
    events = {
        key: total(m1, f"probed_events_{key}_total") - total(m0, f"probed_events_{key}_total")
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
