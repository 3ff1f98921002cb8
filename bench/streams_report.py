"""The stream benchmark's scenarios, targets and printed report.

Part of ``bench/streams.py`` (imported as ``streams_report``; ``bench/`` is the
script directory). Each figure is printed beside its target with MET / NOT MET.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _common import NAN, fmt, num, say, verdict
from streams_servers import REFLECT_DELAY

# Targets (acceptance criteria).
TARGET_A_P99_MS = 1.0
TARGET_B_P99_MS = 10.0
TARGET_B_CPU_RATIO = 1.3
TARGET_C_RSS_MB = 400.0
TARGET_REFLECT_P99_MS = 2.0


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    streams: int
    rate: float
    warmup: float
    window: float
    connect_within: float

    @property
    def title(self) -> str:
        return (
            f"({self.key}) {self.streams:,} stream{'s' if self.streams > 1 else ''} x "
            f"{self.rate:g} events/s: warm-up {self.warmup:g} s, window {self.window:g} s"
        )


def scenarios(quick: bool) -> dict[str, Scenario]:
    if quick:
        return {
            "a": Scenario("a", 1, 100.0, 2.0, 5.0, 30.0),
            "b": Scenario("b", 1000, 2.0, 3.0, 5.0, 60.0),
            "c": Scenario("c", 500, 0.2, 5.0, 10.0, 60.0),
        }
    return {
        "a": Scenario("a", 1, 100.0, 5.0, 20.0, 30.0),
        "b": Scenario("b", 1000, 2.0, 5.0, 20.0, 60.0),
        "c": Scenario("c", 5000, 0.2, 5.0, 30.0, 120.0),
    }


@dataclass(slots=True)
class Report:
    targets: list[tuple[str, str, str]] = field(default_factory=list)
    """(what, measured, verdict)."""
    errors: list[str] = field(default_factory=list)

    def target(self, what: str, measured: str, result: str) -> None:
        self.targets.append((what, measured, result))
        say(f"  TARGET {what}: {measured} — {result}")


def server_line(result: dict[str, Any], sc: Scenario) -> tuple[str, bool]:
    """The server's own figures for one client run, and whether it kept up."""
    server = result.get("server", {})
    wall = num(server.get("wall_s"))
    sends = num(server.get("sends"))
    wanted = sc.streams * sc.rate
    rate = sends / wall if wall > 0 else NAN
    late99 = num(server.get("late_p99_ms"))
    kept_up = rate >= 0.97 * wanted and late99 <= 10.0 and num(server.get("resyncs")) == 0
    logs = server.get("logs") or {}
    line = (
        f"{fmt(sends, 0)} sent = {fmt(rate, 1)}/s of {wanted:g}/s, send lateness p50/p99/max "
        f"{fmt(server.get('late_p50_ms'))}/{fmt(late99)}/{fmt(server.get('late_max_ms'))} ms, "
        f"CPU {fmt(num(server.get('cpu_s')) / wall * 100 if wall > 0 else NAN, 0)}% of a core"
        f"{', ' + fmt(server.get('resyncs'), 0) + ' resyncs' if server.get('resyncs') else ''}"
        f" — {'kept up' if kept_up else 'DID NOT KEEP UP: the figures of this run are suspect'}"
        + (f"; aiohttp logged {logs}" if logs else "")
    )
    return line, kept_up


def gc_cell(gen: str) -> Callable[[dict[str, Any]], str]:
    """A table cell: collections of generation ``gen`` in the window and the longest pause."""

    def cell(r: dict[str, Any]) -> str:
        return f"{r['gc'][gen]['n']:,}/{fmt(r['gc'][gen]['max_ms'], 1)}"

    return cell


def report_scenario(sc: Scenario, results: dict[str, dict[str, Any]], report: Report) -> None:
    say()
    say(sc.title)
    cols = ("probed", "raw")
    have = [c for c in cols if c in results]
    if not have:
        say("  (no result)")
        return

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        cells = "".join(f"{cell(results[c]) if c in results else 'n/a':>26}" for c in cols)
        say(f"  {label:<34}{cells}")

    say(f"  {'':<34}{'probed':>26}{'raw aiohttp loop':>26}")
    row(
        "connected: start / min / stayed",
        lambda r: f"{r['connected_start']:,}/{r['min_connected']:,}/{r['stayed']:,}",
    )
    row("all connected after (s)", lambda r: fmt(r["connect_s"], 1))
    row(
        "events in window / expected",
        lambda r: f"{r['events']:,}/{num(r['expected_events']):,.0f}",
    )
    row(
        "overhead p50 / p99 / max (ms)",
        lambda r: (
            f"{fmt(r['overhead_ms']['p50'], 3)}/{fmt(r['overhead_ms']['p99'], 3)}/"
            f"{fmt(r['overhead_ms']['max'], 2)}"
        ),
    )
    row(
        "overhead min (ms) / negative",
        lambda r: f"{fmt(r['overhead_ms']['min'], 3)}/{r['overhead_ms']['negative']}",
    )
    if any("cpu_us_per_event_rounds" in r for r in results.values()):
        row("CPU per event (µs), median", lambda r: fmt(r["cpu_us_per_event"], 1))
        row(
            "  each round",
            lambda r: "/".join(fmt(v, 1) for v in r.get("cpu_us_per_event_rounds", [])),
        )
    else:
        row("CPU per event (µs)", lambda r: fmt(r["cpu_us_per_event"], 1))
    row("CPU in window (% of a core)", lambda r: fmt(r["cpu_s"] / r["window_s"] * 100, 1))
    row("RSS per stream (KiB)", lambda r: fmt(r["rss_per_stream_kib"], 1))
    row(
        "RSS before / warm / end (MB)",
        lambda r: (
            f"{r['rss_before_kib'] / 1024:.0f}/{r['rss_warm_kib'] / 1024:.0f}/"
            f"{r['rss_end_kib'] / 1024:.0f}"
        ),
    )
    row("RSS peak (VmHWM, MB)", lambda r: f"{r['rss_hwm_kib'] / 1024:.0f}")
    row("GC-tracked objects after window", lambda r: f"{r['gc_tracked_objects']:,}")
    for gen in ("0", "1", "2"):
        row(f"GC gen{gen} in window: n / max ms", gc_cell(gen))
    kept: dict[str, bool] = {}
    for c in have:
        line, kept[c] = server_line(results[c], sc)
        say(f"  server during the {c} run: {line}")
    if "probed" in results:
        checks = results["probed"]["checks"]
        totals = checks.get("totals", {})
        say(
            "  probed accounting: "
            + ", ".join(f"{k} {v:,}" for k, v in totals.items())
            + f"; reconnects {checks.get('reconnects') or 0}"
        )
        if checks.get("logs"):
            say(f"  probed log events: {checks['logs']}")
        bad = {k: totals.get(k, 0) for k in ("lost", "duplicated", "negative_lag")}
        if any(bad.values()):
            say(f"  WARNING: the watchers counted {bad} (expected all 0)")
    if "raw" in results and results["raw"]["checks"].get("errors"):
        say(f"  raw loop connection ends: {results['raw']['checks']['errors']}")
    for c in have:
        if results[c]["overhead_ms"]["negative"]:
            say(f"  WARNING ({c}): negative overheads: a clock problem, the figures are suspect")
    if not all(kept.values()):
        say("  NOTE: the server process did not keep up in at least one run (see above)")

    probed = results.get("probed")
    raw = results.get("raw")
    p99 = num(probed["overhead_ms"]["p99"]) if probed else NAN
    if sc.key == "a":
        report.target(
            f"(a) probed overhead p99 ≤ {TARGET_A_P99_MS:g} ms",
            f"{fmt(p99, 3)} ms",
            verdict(p99, TARGET_A_P99_MS),
        )
    elif sc.key == "b":
        report.target(
            f"(b) probed overhead p99 ≤ {TARGET_B_P99_MS:g} ms",
            f"{fmt(p99, 3)} ms",
            verdict(p99, TARGET_B_P99_MS),
        )
        cpu = num(probed["cpu_us_per_event"]) if probed else NAN
        raw_cpu = num(raw["cpu_us_per_event"]) if raw else NAN
        ratio = cpu / raw_cpu if raw_cpu > 0 else NAN
        report.target(
            f"(b) probed CPU per event ≤ {TARGET_B_CPU_RATIO:g}x the raw loop's",
            f"{fmt(cpu, 1)} µs vs {fmt(raw_cpu, 1)} µs = {fmt(ratio, 2)}x",
            verdict(ratio, TARGET_B_CPU_RATIO),
        )
    elif sc.key == "c":
        if probed:
            n = probed["streams"]
            stayed = probed["stayed"]
            ok = stayed == n and probed["min_connected"] == n
            report.target(
                f"(c) all {n:,} probed streams stay connected for {sc.window:g} s",
                f"{stayed:,} stayed, lowest sample {probed['min_connected']:,}",
                "MET" if ok else "NOT MET",
            )
            rss_mb = max(probed["rss_warm_kib"], probed["rss_end_kib"]) / 1024
            report.target(
                f"(c) probed RSS with {n:,} streams ≤ {TARGET_C_RSS_MB:g} MB",
                f"{rss_mb:.0f} MB (peak {probed['rss_hwm_kib'] / 1024:.0f} MB)",
                verdict(rss_mb, TARGET_C_RSS_MB),
            )
        else:
            report.target("(c) all streams stay connected", "n/a", "NOT MEASURED")
            report.target(f"(c) RSS ≤ {TARGET_C_RSS_MB:g} MB", "n/a", "NOT MEASURED")


def report_reflect(results: dict[str, dict[str, Any]], report: Report) -> None:
    say()
    say(
        f"(reflect) demo target in its own process with stream_delay {REFLECT_DELAY:g} s: "
        "probed's reflect probe via run_probe on one StreamWatcher, beside a raw aiohttp "
        "client (POST the outbox, raw SSE read loop), each 'overhead = lag - configured delay'"
    )

    def trio(summary: dict[str, Any] | None) -> str:
        if not summary:
            return "n/a"
        return "/".join(fmt(summary.get(q), 3) for q in ("p50", "p99", "max"))

    for fresh, label in (
        ("yes", "fresh_connection = true (new connection per inject; for comparison)"),
        ("no", "fresh_connection = false (the reflect default: pooled inject; judged)"),
    ):
        probed = results.get(f"reflect/{fresh}")
        raw = results.get(f"reflect-raw/{fresh}")
        say(f"  inject on {label}:")
        if probed:
            say(
                f"    configured delay {probed['delay']:g} s (GET /-/admin/faults); probed "
                f"{probed['runs']} runs: {probed['outcomes']}; watcher: {probed['stream']}"
            )
        if raw:
            say(f"    raw: {raw['runs']} runs, {raw['lost']} not received")
        say(f"    {'p50/p99/max (ms)':<44}{'probed':>24}{'raw aiohttp':>24}")
        for key, what in (
            ("overhead_ms", "overhead (delivery lag - delay)"),
            ("inject_ms", "  inject request"),
            ("after_inject_ms", "  after the inject answered"),
        ):
            cells = "".join(f"{trio(r.get(key) if r else None):>24}" for r in (probed, raw))
            say(f"    {what:<44}{cells}")
        if probed:
            for phase, values in probed.get("phases_ms", {}).items():
                say(f"    {'    inject phase ' + phase:<44}{trio(values):>24}")
    judged = results.get("reflect/no")
    p99 = num(judged["overhead_ms"]["p99"]) if judged else NAN
    report.target(
        f"reflect overhead p99 ≤ {TARGET_REFLECT_P99_MS:g} ms",
        f"{fmt(p99, 3)} ms",
        verdict(p99, TARGET_REFLECT_P99_MS),
    )


def report_summary(report: Report) -> None:
    """Every target with its verdict, how many were met, and the errors."""
    say()
    say("Summary")
    width = max((len(t[0]) for t in report.targets), default=10)
    for what, measured, result_text in report.targets:
        say(f"  {what:<{width}}  {measured:<38} {result_text}")
    met = sum(1 for t in report.targets if t[2] == "MET")
    say(f"  {met} of {len(report.targets)} targets met")
    for error in report.errors:
        say(f"  ERROR: {error}")
