"""A stream target's clock offset, its uncertainty, and how delivery lags are corrected for it.

Delivery lag compares our receive time (:func:`probed.clock.wall`) with the
server's enqueue stamp, so a server clock 30 s behind adds 30 s to every lag
and one 30 s ahead makes every event "negative". Each stream therefore
estimates ``offset`` = the server's clock minus ours, and its ``clock``
setting says what to do with it:

``correct`` (default)
    Every stamp is moved onto our clock before the lag is taken,
    ``receive - (stamp - applied)``, where ``applied`` is the offset when
    the estimate can tell it from zero (``|offset| > uncertainty``) and 0
    otherwise (a synced server's ``Date`` header would else move every
    lag by up to half a second). A lag is then known to within the estimate's
    uncertainty (plus ``|offset|`` when nothing is applied): one below 0 by no
    more than that is recorded as 0 and counted as within the uncertainty, one
    further below 0 is counted as negative. Until a first estimate exists no
    lag is recorded; those events are counted as uncorrected.
``trust``
    The operator says the clocks are synced: lags are recorded raw, a negative
    one is counted as negative. The offset is still estimated, and one beyond
    ``clock_tolerance`` flags the stream as skewed.
``ignore``
    The stamps are not on a clock comparable with ours: no lag is measured and
    the clock is not checked.

The lags of a skewed stream (``|offset| > clock_tolerance`` and not corrected:
``trust``, or ``correct`` with an uncertainty beyond the tolerance) are not
judged: lag-based recommendations are inconclusive (``clock_skew``) and the
SLOs leave them out.

Estimation: every observation bounds the offset to an interval. The server
read its clock at some instant between our sending the request (``sent``)
and receiving the answer (``received``), so a reading ``T`` gives
``[T - received, T - sent]``; a ``Date`` header (and a whole-second ``time``)
is truncated to the second, ``[D, D + 1)``, which widens that by a second.
The estimate is the intersection of the newest run of consistent intervals
(at most ``SAMPLES_KEPT``): its midpoint is the offset and its half-width the
uncertainty. A single ``time_path`` answer gives the NTP midpoint with half
the round trip as uncertainty; a single ``Date`` header gives +-0.5 s plus half
the round trip, and the headers of connections made at different fractions
of a second narrow it. A sample that does not overlap the newer ones (the
server's clock stepped, or drifted over the kept samples) ends the run.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CLOCK_MODES",
    "SAMPLES_KEPT",
    "ClockMode",
    "OffsetEstimator",
    "StreamClock",
    "reading_bounds",
]

ClockMode = Literal["correct", "trust", "ignore"]
CLOCK_MODES: tuple[ClockMode, ...] = ("correct", "trust", "ignore")
Source = Literal["time_path", "date"]

SAMPLES_KEPT = 16
"""Offset intervals kept per stream (connections' Date headers or time_path answers)."""


def reading_bounds(
    server: float, sent: float, received: float, *, whole_seconds: bool
) -> tuple[float, float]:
    """The interval of offsets a server clock reading allows (see the module docstring)."""
    return server - received, server + (1.0 if whole_seconds else 0.0) - sent


class OffsetEstimator:
    """The intersection of the newest consistent offset intervals."""

    def __init__(self, kept: int = SAMPLES_KEPT) -> None:
        self._bounds: deque[tuple[float, float]] = deque(maxlen=kept)

    def add(self, low: float, high: float) -> None:
        """Add one interval the offset lies in (ignored unless finite and ordered)."""
        if math.isfinite(low) and math.isfinite(high) and low <= high:
            self._bounds.append((low, high))

    def estimate(self) -> tuple[float, float, int] | None:
        """(offset, uncertainty, samples used), or None without samples."""
        low, high, used = -math.inf, math.inf, 0
        for a, b in reversed(self._bounds):
            if max(low, a) > min(high, b):
                break
            low, high, used = max(low, a), min(high, b), used + 1
        if not used:
            return None
        return (low + high) / 2, (high - low) / 2, used


@dataclass(slots=True)
class StreamClock:
    """One stream's clock setting, offset estimate and lag correction."""

    mode: ClockMode = "correct"
    tolerance: float = 1.0
    source: Source | None = None
    offset: float | None = None
    """Estimated server clock minus ours (seconds)."""
    uncertainty: float | None = None
    """Half-width of the interval the offset lies in (seconds)."""
    samples: int = 0
    applied: float = 0.0
    """Offset taken off every stamp (0 unless ``correct`` and distinguishable from 0)."""
    uncorrected: int = 0
    """Timed events not recorded: ``correct`` and no estimate yet."""
    within_uncertainty: int = 0
    """Events whose corrected lag was below 0 within the uncertainty: recorded as 0."""
    _estimator: OffsetEstimator = field(default_factory=OffsetEstimator)

    def observe(self, source: Source, low: float, high: float) -> None:
        """Add one offset interval from ``source`` and update the estimate."""
        self.source = source
        self._estimator.add(low, high)
        estimate = self._estimator.estimate()
        if estimate is None:
            return
        self.offset, self.uncertainty, self.samples = estimate
        distinct = abs(self.offset) > self.uncertainty
        self.applied = self.offset if self.mode == "correct" and distinct else 0.0

    @property
    def corrected(self) -> bool:
        """Lags are corrected by an estimate no more uncertain than the tolerance."""
        return (
            self.mode == "correct"
            and self.uncertainty is not None
            and self.uncertainty <= self.tolerance
        )

    @property
    def skewed(self) -> bool:
        """The offset exceeds the tolerance and lags are not corrected for it."""
        if self.mode == "ignore" or self.offset is None:
            return False
        return abs(self.offset) > self.tolerance and not self.corrected

    @property
    def lag_error(self) -> float | None:
        """How far off a corrected lag may be (None before an estimate, 0 under ``trust``)."""
        if self.mode == "trust":
            return 0.0
        if self.offset is None or self.uncertainty is None:
            return None
        return abs(self.offset - self.applied) + self.uncertainty

    def lag(self, raw: float) -> float | None:
        """The lag to account for ``raw`` (receive minus stamp); None if not to be recorded.

        A negative result is beyond the uncertainty: the caller counts it as negative.
        """
        error = self.lag_error
        if error is None:
            self.uncorrected += 1
            return None
        lag = raw + self.applied  # the stamp, moved onto our clock: stamp - applied
        if -error <= lag < 0:
            self.within_uncertainty += 1
            return 0.0
        return lag

    def to_json(self) -> dict[str, Any]:
        """The ``clock`` object of a stream in the status document."""

        def num(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else round(value, 6)

        return {
            "mode": self.mode,
            "source": self.source,
            "offset_seconds": num(self.offset),
            "uncertainty_seconds": num(self.uncertainty),
            "applied_seconds": num(self.applied),
            "samples": self.samples,
            "tolerance_seconds": self.tolerance,
            "skewed": self.skewed,
            "lag_error_seconds": num(self.lag_error),
            "uncorrected": self.uncorrected,
            "within_uncertainty": self.within_uncertainty,
            "note": self.note(),
        }

    def note(self) -> str:
        """One line for the status page's clock cell."""
        if self.mode == "ignore":
            return "ignored: no lag measured"
        if self.offset is None or self.uncertainty is None:
            return "no estimate yet" + (": lags not recorded" if self.mode == "correct" else "")
        unc = self.uncertainty
        spread = f"{unc * 1000:.1f} ms" if unc < 1 else f"{unc:.3f} s"
        text = f"{self.offset:+.3f} s \u00b1 {spread} ({self.source})"
        if self.skewed:
            why = "clock = trust" if self.mode == "trust" else "estimate too uncertain"
            return (
                f"{text}, SKEWED beyond {self.tolerance:g} s, not corrected ({why}): lag not judged"
            )
        if self.applied:
            return f"{text}, corrected"
        return f"{text}, not corrected" + ("" if self.mode == "trust" else " (within uncertainty)")
