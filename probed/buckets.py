"""Histogram bucket bounds: probe durations, scheduler lag, reflect lag, stream lag.

The ground floor: imports nothing of probed above it (durations only, to word an error).

Probe durations: SLO thresholds (200 ms, 250 ms, 1.5 s, 3 s, 5 s) are boundaries.
Reflect lag: up to 120 s, inject request included, so never sub-millisecond.

Stream lag (``probed_delivery_lag_seconds``, fan-out spread):
The default runs from 0.25 ms to 2 min in 21 bounds (22 series per stream with
``+Inf``): 1-2.5-5 steps from 0.25 ms to 1 s, so on a sub-millisecond bus a 1 ms
overhead or a 3 ms regression moves events into another bucket, and a quantile read
between two bounds is off by at most a factor 2.5; above 1 s every bound the old
default had (1.5 s, 2 s, 3 s, 5 s, 10 s, 15 s, 30 s, 1 min, 2 min), so every SLO
threshold a config could name before still is a boundary. A stream's ``lag_buckets``
replaces the default: strictly increasing positive finite durations, at most
:data:`MAX_LAG_BUCKETS` (each bucket is one series per stream).
"""

from __future__ import annotations

import itertools
import math

from probed.durations import format_duration

__all__ = [
    "DELIVERY_LAG_BUCKETS",
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "MAX_LAG_BUCKETS",
    "REFLECT_LAG_BUCKETS",
    "check_lag_buckets",
]

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 1.5, 2.5, 3.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Probe duration buckets (seconds)."""

LAG_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
"""Scheduler start lateness buckets (seconds)."""

REFLECT_LAG_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0,
    120.0,
)  # fmt: skip
"""Reflect canary lag buckets (seconds)."""

DELIVERY_LAG_BUCKETS: tuple[float, ...] = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0,
)  # fmt: skip
"""The default upper bounds (seconds) of a stream's lag histograms."""

MAX_LAG_BUCKETS = 40
"""The most bounds a stream's ``lag_buckets`` may list."""


def check_lag_buckets(bounds: tuple[float, ...]) -> tuple[float, ...]:
    """``bounds`` if usable as histogram bounds; else ``ValueError`` saying why, in one line."""
    if not bounds:
        raise ValueError("lag_buckets must list at least one bucket")
    if len(bounds) > MAX_LAG_BUCKETS:
        raise ValueError(
            f"lag_buckets has {len(bounds)} buckets, at most {MAX_LAG_BUCKETS} are allowed "
            "(each bucket is a series per stream)"
        )
    if not all(math.isfinite(b) for b in bounds):
        raise ValueError("lag_buckets must be finite")
    for before, after in itertools.pairwise(bounds):
        if after <= before:
            raise ValueError(
                "lag_buckets must be strictly increasing: "
                f"{format_duration(after)} follows {format_duration(before)}"
            )
    return bounds
