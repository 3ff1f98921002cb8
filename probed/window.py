"""Sliding-window tallies in bounded memory: the signal windows behind recommendations.

The recommendation signals (a probe's failure ratio and p95 duration, a
stream's lag p95) are taken over a recent window, 300 s by default. Keeping
every sample for that long makes memory grow with the event rate (500 streams
at 1 event/s each are 150,000 samples) and makes each evaluation sort them
all. Instead the window is cut into ``SLOTS`` equal time slots, each holding
a tally, and a running total over the live slots is kept up to date as slots
are added and expire, so

* memory is bounded by the slot count and the number of distinct quantile
  buckets (at most ``QuantileSketch.MAX_KEYS``), whatever the rate;
* a query costs one sort of the occupied buckets, not of the samples;
* the window's edge moves in steps of one slot (5 s for 300 s): a query at
  ``now`` covers between ``span - span/SLOTS`` and ``span`` seconds.

Quantiles come from a logarithmic bucketing: every value is counted in the
bucket ``ceil(log_gamma(value / FLOOR))`` and read back as the bucket's
midpoint, so a reported quantile is within ``ALPHA`` (1 %) of a value that
was observed at that rank. Values at or below ``FLOOR`` (1 µs) read as 0.

Times are wall-clock (Unix seconds: external timestamps are compared); a
sample more than one window older than the newest is taken as a clock step
backwards and restarts the window instead of being dropped for a window's
length.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, Protocol, Self, TypeVar

__all__ = ["SLOTS", "LagWindow", "QuantileSketch", "RunWindow"]

#: Time slots per window.
SLOTS = 60


class QuantileSketch:
    """Counts per logarithmic bucket; quantiles within ``ALPHA`` relative error."""

    ALPHA = 0.01
    GAMMA = (1 + ALPHA) / (1 - ALPHA)
    FLOOR = 1e-6
    #: Largest bucket key: values above FLOOR * GAMMA**MAX_KEYS (about 1e7 s) share it.
    MAX_KEYS = 1500

    __slots__ = ("buckets", "count")

    _LOG_GAMMA = math.log(GAMMA)

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    @classmethod
    def key(cls, value: float) -> int:
        """The bucket of a non-negative ``value`` (0 for values at or below ``FLOOR``)."""
        if not value > cls.FLOOR:  # also NaN
            return 0
        if value == math.inf:
            return cls.MAX_KEYS
        return min(cls.MAX_KEYS, max(1, math.ceil(math.log(value / cls.FLOOR) / cls._LOG_GAMMA)))

    @classmethod
    def value_of(cls, key: int) -> float:
        """What bucket ``key`` reads back as: its midpoint, 0 for bucket 0."""
        if key <= 0:
            return 0.0
        return cls.FLOOR * 2 * cls.GAMMA**key / (cls.GAMMA + 1)

    def add(self, value: float, n: int = 1) -> None:
        """Count ``n`` observations of ``value``."""
        key = self.key(value)
        self.buckets[key] = self.buckets.get(key, 0) + n
        self.count += n

    def merge(self, other: QuantileSketch) -> None:
        """Add every count of ``other``."""
        buckets = self.buckets
        for key, n in other.buckets.items():
            buckets[key] = buckets.get(key, 0) + n
        self.count += other.count

    def subtract(self, other: QuantileSketch) -> None:
        """Remove every count of ``other`` (which was merged in before)."""
        buckets = self.buckets
        for key, n in other.buckets.items():
            left = buckets.get(key, 0) - n
            if left > 0:
                buckets[key] = left
            else:
                buckets.pop(key, None)
        self.count = max(0, self.count - other.count)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) by the nearest-rank method; None if empty."""
        if self.count <= 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return self.value_of(key)
        return self.value_of(max(self.buckets))


class _Tally(Protocol):
    def merge(self, other: Self) -> None: ...

    def subtract(self, other: Self) -> None: ...


_T = TypeVar("_T", bound=_Tally)


class _Slotted(Generic[_T]):
    """A ring of per-slot tallies over ``span`` seconds plus their running total."""

    __slots__ = ("_slots", "span", "total", "width")

    def __init__(self, span: float) -> None:
        self.span = span
        self.width = span / SLOTS if span > 0 else 1.0
        self._slots: deque[tuple[int, _T]] = deque()
        self.total: _T = self._new()
        """The tally of every live slot (call ``expire`` first for a given ``now``)."""

    def _new(self) -> _T:
        raise NotImplementedError

    def _slot(self, at: float) -> _T | None:
        """The tally for a sample at ``at`` (None: too old to count or not finite)."""
        if not math.isfinite(at):
            return None
        index = math.floor(at / self.width)
        slots = self._slots
        if slots:
            newest = slots[-1][0]
            if index == newest:
                return slots[-1][1]
            if index < newest:
                if index <= newest - 2 * SLOTS:  # the clock stepped back: start over
                    self.clear()
                elif index <= newest - SLOTS:  # older than the window: not counted
                    return None
                else:
                    for i in range(len(slots) - 1, -1, -1):
                        found, tally = slots[i]
                        if found == index:
                            return tally
                        if found < index:
                            tally = self._new()
                            slots.insert(i + 1, (index, tally))
                            return tally
                    tally = self._new()
                    slots.appendleft((index, tally))
                    return tally
        tally = self._new()
        slots.append((index, tally))
        self._expire_before(index - SLOTS + 1)
        return tally

    def _expire_before(self, index: int) -> None:
        slots = self._slots
        while slots and slots[0][0] < index:
            self.total.subtract(slots.popleft()[1])

    def expire(self, now: float) -> None:
        """Drop the slots that ended ``span`` or more before ``now``."""
        if math.isfinite(now):
            self._expire_before(math.floor(now / self.width) - SLOTS + 1)

    def clear(self) -> None:
        """Forget everything."""
        self._slots.clear()
        self.total = self._new()

    def slots(self) -> list[tuple[float, _T]]:
        """(slot end time, tally) of the live slots, oldest first."""
        return [((index + 1) * self.width, tally) for index, tally in self._slots]

    def __len__(self) -> int:
        return len(self._slots)


class _LagTally:
    __slots__ = ("max", "sketch")

    def __init__(self) -> None:
        self.sketch = QuantileSketch()
        self.max = 0.0

    def merge(self, other: _LagTally) -> None:
        self.sketch.merge(other.sketch)
        self.max = max(self.max, other.max)

    def subtract(self, other: _LagTally) -> None:
        self.sketch.subtract(other.sketch)  # the total's max is not used


class LagWindow(_Slotted[_LagTally]):
    """A stream's timed events over the signal window: count, quantiles, worst lag per slot."""

    __slots__ = ()

    def _new(self) -> _LagTally:
        return _LagTally()

    def observe(self, lag: float, at: float) -> None:
        """Count one event of delivery ``lag`` (seconds, non-negative) received at ``at``."""
        tally = self._slot(at)
        if tally is None:
            return
        tally.sketch.add(lag)
        if lag > tally.max:
            tally.max = lag
        self.total.sketch.add(lag)

    def count(self, now: float) -> int:
        """Events within the window ending at ``now``."""
        self.expire(now)
        return self.total.sketch.count

    def quantile(self, q: float, now: float) -> float | None:
        """The ``q`` quantile of the lags within the window ending at ``now``."""
        self.expire(now)
        return self.total.sketch.quantile(q)

    def worst(self, now: float) -> list[tuple[float, float]]:
        """(slot end, worst lag) of every slot with events within the window ending at ``now``."""
        self.expire(now)
        return [(min(end, now), tally.max) for end, tally in self.slots() if tally.sketch.count]


class _RunTally:
    __slots__ = ("durations", "failures", "rate_limited", "reasons", "runs")

    def __init__(self) -> None:
        self.runs = 0
        self.failures = 0
        self.rate_limited = 0
        self.reasons: dict[str, int] = {}
        self.durations = QuantileSketch()

    def merge(self, other: _RunTally) -> None:
        self.runs += other.runs
        self.failures += other.failures
        self.rate_limited += other.rate_limited
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n
        self.durations.merge(other.durations)

    def subtract(self, other: _RunTally) -> None:
        self.runs -= other.runs
        self.failures -= other.failures
        self.rate_limited -= other.rate_limited
        for reason, n in other.reasons.items():
            left = self.reasons.get(reason, 0) - n
            if left > 0:
                self.reasons[reason] = left
            else:
                self.reasons.pop(reason, None)
        self.durations.subtract(other.durations)


class RunWindow(_Slotted[_RunTally]):
    """A probe's runs over the signal window: counts, failure reasons, 429s, duration p95."""

    __slots__ = ()

    def _new(self) -> _RunTally:
        return _RunTally()

    def add(
        self, started_at: float, duration: float, reason: str | None, *, failed: bool, limited: bool
    ) -> None:
        """Count one run."""
        tally = self._slot(started_at)
        if tally is None:
            return
        for one in (tally, self.total):
            one.runs += 1
            one.durations.add(duration)
            if failed:
                one.failures += 1
                if reason is not None:
                    one.reasons[reason] = one.reasons.get(reason, 0) + 1
            if limited:
                one.rate_limited += 1

    def at(self, now: float) -> _RunTally:
        """The tally of the window ending at ``now`` (read-only)."""
        self.expire(now)
        return self.total
