"""Sliding-window tallies in bounded memory: the signal windows behind recommendations.

The recommendation signals (a probe's failure ratio and p95 duration, a
stream's lag p95) are taken over a recent window, 300 s by default. Keeping
every sample for that long makes memory grow with the event rate and makes
each evaluation sort them all. Instead the window is a ring of ``SLOTS``
equal time slots, and a running total over the live slots is kept up to date
as samples arrive and slots expire:

* a slot holds the quantile-bucket keys of its samples, two bytes each in a
  ``bytearray`` (which the garbage collector does not track, unlike an ``array``:
  700 windows of 30 slots are 21,000 objects every full collection would walk), until
  it has ``_DENSE_AFTER`` of them; then it switches to a count per distinct key (a dict
  of ints, untracked too).
  Memory per window is therefore bounded by the slot count and the number of
  distinct keys (at most ``QuantileSketch.MAX_KEYS``) whatever the rate, and a
  quiet stream (one event a second) costs a few KiB rather than a sample each;
* a query sorts the occupied keys of the total, not the samples;
* the window's edge moves in steps of one slot (10 s for 300 s): a query at
  ``now`` covers between ``span - span/SLOTS`` and ``span`` seconds.

Quantiles come from a logarithmic bucketing: every value is counted in the
bucket ``ceil(log_gamma(value / FLOOR))`` and read back as the bucket's
midpoint, so a reported quantile is within ``ALPHA`` (1 %) of a value that
was observed at that rank. Values at or below ``FLOOR`` (1 µs) read as 0.

Times are wall-clock (Unix seconds: external timestamps are compared). The
window is driven by the newest sample or query; a sample more than one window
older than the newest is taken as a clock step backwards and restarts the
window instead of being dropped for a window's length.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable

__all__ = ["SLOTS", "LagWindow", "QuantileSketch", "RunWindow"]

#: Time slots per window.
SLOTS = 30
#: Samples a slot keeps as a key array before switching to counts per key.
_DENSE_AFTER = 1024
_NONE = -(2**62)


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
        return _key(value)

    @classmethod
    def value_of(cls, key: int) -> float:
        """What bucket ``key`` reads back as: its midpoint, 0 for bucket 0."""
        if key <= 0:
            return 0.0
        return cls.FLOOR * 2 * cls.GAMMA**key / (cls.GAMMA + 1)

    def add(self, value: float, n: int = 1) -> None:
        """Count ``n`` observations of ``value``."""
        self.add_key(self.key(value), n)

    def add_key(self, key: int, n: int = 1) -> None:
        """Count ``n`` observations in bucket ``key``."""
        self.buckets[key] = self.buckets.get(key, 0) + n
        self.count += n

    def remove_key(self, key: int, n: int = 1) -> None:
        """Take back ``n`` observations counted in bucket ``key``."""
        left = self.buckets.get(key, 0) - n
        if left > 0:
            self.buckets[key] = left
        else:
            self.buckets.pop(key, None)
        self.count = max(0, self.count - n)

    def clear(self) -> None:
        """Forget every observation."""
        self.buckets.clear()
        self.count = 0

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


def _key(
    value: float,
    floor: float = QuantileSketch.FLOOR,
    most: int = QuantileSketch.MAX_KEYS,
    log_gamma: float = QuantileSketch._LOG_GAMMA,
    log: Callable[[float], float] = math.log,
    ceil: Callable[[float], int] = math.ceil,
) -> int:
    """``QuantileSketch.key`` with its constants bound (every run and timed event)."""
    if not value > floor:  # also NaN
        return 0
    if value == math.inf:
        return most
    key = ceil(log(value / floor) / log_gamma)
    return most if key > most else 1 if key < 1 else key


_KEY_BYTES = tuple(array("H", (key,)).tobytes() for key in range(QuantileSketch.MAX_KEYS + 1))
"""Each bucket key as a slot stores it (``array("H")`` reads a slot's keys back)."""


class _Ring:
    """The slot ring: which slot index each ring position holds, and the sample keys."""

    __slots__ = ("_index", "_keys", "_newest", "settled", "sketch", "span", "width")

    def __init__(self, span: float) -> None:
        self.span = span
        self.width = span / SLOTS if span > 0 else 1.0
        self._index = array("q", [_NONE]) * SLOTS
        self._keys: list[bytearray | dict[int, int] | None] = [None] * SLOTS
        """Per slot: its samples' keys (two native-order bytes each), or counts per key
        once dense."""
        self._newest = _NONE
        self.sketch = QuantileSketch()
        """Every live sample's key (call ``expire`` first for a given ``now``)."""
        self.settled = 0
        """Bumped when a sample lands in a slot before the newest, and when everything is
        dropped. While it stays the same, the slots before the newest change only by
        leaving: the newest one's ``SLOTS`` before it and older are gone."""

    # -- the ring ---------------------------------------------------------------------

    def _clear_slot(self, pos: int) -> None:
        """Subtract the slot at ring position ``pos`` from the totals and empty it."""
        keys = self._keys[pos]
        if keys is not None:
            sketch = self.sketch
            if isinstance(keys, dict):
                for key, n in keys.items():
                    sketch.remove_key(key, n)
            else:
                for key in array("H", keys):
                    sketch.remove_key(key)
            self._keys[pos] = None
        self._index[pos] = _NONE

    def clear(self) -> None:
        """Forget everything."""
        for pos in range(SLOTS):
            self._clear_slot(pos)
        self.sketch.clear()
        self._newest = _NONE
        self.settled += 1

    def _advance(self, index: int) -> None:
        """Make ``index`` the newest slot, expiring every slot ``SLOTS`` or more older."""
        newest = self._newest
        if newest == _NONE or index - newest >= SLOTS:
            self.clear()
        else:
            for k in range(newest + 1, index + 1):
                if self._index[k % SLOTS] != _NONE:
                    self._clear_slot(k % SLOTS)
        self._newest = index

    def _position(self, at: float) -> int | None:
        """The ring position a sample at ``at`` goes to (None: too old or not finite)."""
        if not math.isfinite(at):
            return None
        index = math.floor(at / self.width)
        newest = self._newest
        if newest == _NONE or index > newest:
            self._advance(index)
        elif index <= newest - SLOTS:
            if index > newest - 2 * SLOTS:
                return None  # older than the window: not counted
            self.clear()  # the clock stepped back: start over
            self._newest = index
        elif index < newest:
            self.settled += 1  # a sample in a slot before the newest
        pos = index % SLOTS
        if self._index[pos] != index:
            self._index[pos] = index
        return pos

    def _add_key(self, pos: int, key: int) -> None:
        keys = self._keys[pos]
        if keys is None:
            self._keys[pos] = bytearray(_KEY_BYTES[key])
        elif isinstance(keys, dict):
            keys[key] = keys.get(key, 0) + 1
        else:
            keys += _KEY_BYTES[key]
            if len(keys) > 2 * _DENSE_AFTER:
                counts: dict[int, int] = {}
                for k in array("H", keys):
                    counts[k] = counts.get(k, 0) + 1
                self._keys[pos] = counts
        sketch = self.sketch  # QuantileSketch.add_key, inline
        buckets = sketch.buckets
        buckets[key] = buckets.get(key, 0) + 1
        sketch.count += 1

    def expire(self, now: float) -> None:
        """Drop the slots that started ``span`` or more before ``now``'s slot."""
        if math.isfinite(now):
            index = math.floor(now / self.width)
            if self._newest != _NONE and index > self._newest:
                self._advance(index)

    @property
    def newest(self) -> int | None:
        """The index of the newest slot (its start over ``width``), None before any."""
        return None if self._newest == _NONE else self._newest

    def _live(self) -> list[tuple[int, int]]:
        """(slot index, ring position) of the occupied slots, oldest first."""
        return sorted((index, pos) for pos, index in enumerate(self._index) if index != _NONE)

    def __len__(self) -> int:
        """Occupied slots."""
        return sum(1 for index in self._index if index != _NONE)


class LagWindow(_Ring):
    """A stream's timed events over the signal window: count, quantiles, worst lag per slot."""

    __slots__ = ("_worst",)

    def __init__(self, span: float) -> None:
        super().__init__(span)
        self._worst = array("d", [0.0]) * SLOTS

    def _clear_slot(self, pos: int) -> None:
        super()._clear_slot(pos)
        self._worst[pos] = 0.0

    def observe(self, lag: float, at: float) -> None:
        """Count one event of delivery ``lag`` (seconds, non-negative) received at ``at``."""
        pos = self._position(at)
        if pos is None:
            return
        self._add_key(pos, _key(lag))
        if lag > self._worst[pos]:
            self._worst[pos] = lag

    def slot(self, index: int) -> tuple[float, float] | None:
        """(end, worst lag) of slot ``index`` (``newest`` and before), None if it holds no
        event: its entry in ``worst``, its end not capped at ``now``."""
        pos = index % SLOTS
        if self._index[pos] != index or self._keys[pos] is None:
            return None
        return (index + 1) * self.width, self._worst[pos]

    def count(self, now: float) -> int:
        """Events within the window ending at ``now``."""
        self.expire(now)
        return self.sketch.count

    def quantile(self, q: float, now: float) -> float | None:
        """The ``q`` quantile of the lags within the window ending at ``now``."""
        self.expire(now)
        return self.sketch.quantile(q)

    def worst(self, now: float) -> list[tuple[float, float]]:
        """(slot end, worst lag) of every slot with events within the window ending at ``now``."""
        self.expire(now)
        return [
            (min((index + 1) * self.width, now), self._worst[pos])
            for index, pos in self._live()
            if self._keys[pos] is not None
        ]


class RunWindow(_Ring):
    """A probe's runs over the signal window: counts, failure reasons, 429s, duration p95.

    ``runs``, ``failures``, ``rate_limited``, ``reasons`` and ``sketch`` (the
    durations) are totals over the live slots: read them through ``at(now)``.
    """

    __slots__ = ("_failures", "_limited", "_reasons", "failures", "rate_limited", "reasons")

    def __init__(self, span: float) -> None:
        super().__init__(span)
        self._failures = array("l", [0]) * SLOTS
        self._limited = array("l", [0]) * SLOTS
        self._reasons: list[dict[str, int] | None] = [None] * SLOTS
        self.failures = 0
        self.rate_limited = 0
        self.reasons: dict[str, int] = {}

    @property
    def runs(self) -> int:
        """Runs within the window (as of the last ``at``)."""
        return self.sketch.count

    @property
    def durations(self) -> QuantileSketch:
        """The run durations within the window (as of the last ``at``)."""
        return self.sketch

    def _clear_slot(self, pos: int) -> None:
        super()._clear_slot(pos)
        self.failures -= self._failures[pos]
        self.rate_limited -= self._limited[pos]
        self._failures[pos] = self._limited[pos] = 0
        slot_reasons = self._reasons[pos]
        if slot_reasons is not None:
            reasons = self.reasons
            for reason, n in slot_reasons.items():
                left = reasons.get(reason, 0) - n
                if left > 0:
                    reasons[reason] = left
                else:
                    reasons.pop(reason, None)
            self._reasons[pos] = None

    def clear(self) -> None:
        super().clear()
        self.failures = self.rate_limited = 0
        self.reasons.clear()

    def add(
        self, started_at: float, duration: float, reason: str | None, *, failed: bool, limited: bool
    ) -> None:
        """Count one run."""
        pos = self._position(started_at)
        if pos is None:
            return
        self._add_key(pos, _key(duration))
        if failed:
            self._failures[pos] += 1
            self.failures += 1
            if reason is not None:
                slot = self._reasons[pos]
                if slot is None:
                    slot = self._reasons[pos] = {}
                slot[reason] = slot.get(reason, 0) + 1
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if limited:
            self._limited[pos] += 1
            self.rate_limited += 1

    def at(self, now: float) -> RunWindow:
        """This window, its slots expired up to ``now`` (read its totals)."""
        self.expire(now)
        return self
