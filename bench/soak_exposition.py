"""The soak's reading of the daemon's ``/metrics``: the samples it uses and histogram math.

Part of ``bench/soak.py`` (imported as ``soak_exposition``; ``bench/`` is the
script directory). The Prometheus text exposition is parsed by
``prometheus_client``'s own parser; only the samples of the families the report
uses are kept.
"""

from __future__ import annotations

import math
from collections import Counter

from _common import NAN
from prometheus_client.parser import text_string_to_metric_families

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
    "probed_gc_pause_seconds",
    "process_",
)
"""Prefixes of the sample names kept."""

Metrics = dict[str, list[tuple[dict[str, str], float]]]
"""Sample name (``probed_probe_runs_total``, ``..._bucket``) -> (labels, value) of each sample."""


def parse_metrics(text: str) -> Metrics:
    """The samples of the wanted families from Prometheus text exposition."""
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(WANTED):
                out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def total(metrics: Metrics, name: str) -> float:
    return sum(v for _, v in metrics.get(name, []))


def by_label(metrics: Metrics, name: str, label: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for labels, value in metrics.get(name, []):
        out[labels.get(label, "")] += int(value)
    return out


def buckets(metrics: Metrics, name: str, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of a histogram's series with ``labels`` (none: unlabelled)."""
    pairs = []
    for lb, value in metrics.get(f"{name}_bucket", []):
        rest = {k: v for k, v in lb.items() if k != "le"}
        if "le" in lb and rest == labels:
            pairs.append((float(lb["le"]), value))
    return sorted(pairs)


def largest_bucket(cumulative: list[tuple[float, float]]) -> float:
    """The upper bound of the highest bucket anything fell in (NaN: nothing did)."""
    largest, below = NAN, 0.0
    for le, cum in cumulative:
        if cum > below:
            largest = le
        below = cum
    return largest


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
