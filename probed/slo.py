"""SLO evaluation: objectives, rolling windows, error budgets and burn rates (pure).

Follows the Google SRE workbook, chapter 5 ("Alerting on SLOs"): every SLO is
evaluated over the multi-window set ``SLO_WINDOWS`` (5m … 30d) plus its own
budget window, giving per window a good/total ratio, a burn rate and an event
count, and over the budget window the share of the error budget left::

    ratio            = good / total
    burn_rate        = (1 - ratio) / (1 - objective)      # 1.0 spends the budget exactly
    allowed          = (1 - objective) * expected          # bad events the whole window may hold
    budget_remaining = 1 - bad / allowed                   # budget window; < 0 once overspent

``expected`` is the number of events the whole budget window will hold: for
probe SLIs the runs the schedule makes (``window * runs per second`` of the
SLO's probes, given to the evaluator as ``rates``), for a stream the events seen
so far scaled to the whole window. So a young daemon's budget is the share of
the *whole* window's budget spent so far (one 100 s outage of a 10 s probe at
99.9 % over 30 d spends 10 / 259.2 = 3.9 %), never a ratio of a handful of runs;
and time probed was not running is no data, neither good nor bad.

A window's ratio and burn rate are only given once the data covers at least
``MIN_COVERAGE`` of it (``coverage``: from the oldest event kept to now);
before that they are None, "insufficient data", not a percentage of minutes
standing in for days.

Good events are, per SLI:

- ``availability``: a successful run of one of the SLO's probes;
- ``latency``: a run of one of the SLO's probes with ``duration <= threshold``,
  counted over *all* runs, failed ones included, because that is what the
  Prometheus rules read from the ``probed_probe_duration_seconds`` bucket
  ``le=threshold``;
- ``delivery_lag``: an event on the SLO's stream with ``lag <= threshold``; a
  negative lag (clock skew, counted elsewhere) is no measurement and is ignored.

Nothing here does I/O or reads a clock: every time is Unix seconds passed in
(``at`` for an observation, ``now`` for an evaluation).

Buckets
    Observations are counted in buckets of ``bucket_seconds`` (``B``, at most
    the shortest window) aligned to wall-clock multiples: bucket ``i`` covers
    ``[i*B, (i+1)*B)``, so a saved state lines up with the clock after a
    restart. Each SLO keeps only the buckets its longest window can need,
    ``span = ceil(longest / B)`` (43,200 for 30 days of 60 s buckets), in a ring
    of two ``array("I")`` (good, total) indexed by ``i % span``: 345 KB per
    30-day SLO, fixed, whatever the traffic. Buckets leaving the longest window
    are zeroed as the newest bucket advances.

Windows at bucket granularity
    A window of ``W`` seconds evaluated at ``now`` sums the buckets whose start
    lies in ``(now - W, now]``, the current partial bucket included. It never
    counts an event older than ``W``, but the oldest up to one bucket of the
    nominal window has already fallen out: the effective span is between
    ``W - B`` and ``W`` seconds. At 60 s buckets that is under 0.1 % of a 1 h
    window and 20 % of the 5 m one.

Late and early observations
    An ``at`` in the past lands in its own bucket while that bucket is still
    within the SLO's longest window; older ones are dropped. "Now" for an
    observation is the ``now`` of the latest ``evaluate()`` or ``restore()``;
    an ``at`` more than one bucket after it is clamped into now's bucket, so a
    clock stepped forward cannot push every bucket out of the window. The
    caller must therefore evaluate at least once per bucket (the daemon does
    every 10 s), or later observations pile into the last evaluated bucket.
    Before the first ``evaluate()``/``restore()`` nothing is clamped. A
    non-finite ``at`` is dropped.

Cost
    Each window keeps running sums of good and total over the bucket range it
    covered last time, updated on every observation inside it, on every
    pruned bucket, and when ``evaluate()`` moves the range (by the buckets
    entering and leaving it, summed over array slices). At a steady cadence an
    evaluation costs a few slot reads per window, independent of its length;
    the first evaluation, or one after a long pause, sums whole windows from
    the arrays (bench/README.md has the figures).

Reload and persistence
    ``apply()`` keeps the buckets of an SLO whose name and measurement
    (``sli``, ``probes``, ``stream``, ``threshold``) are unchanged: the buckets
    count events, which do not depend on ``objective``, ``window`` or the
    description, so changing the objective re-evaluates the history against
    the new one, as the Prometheus rules would. ``snapshot()`` and ``restore()``
    carry the buckets and that measurement definition as JSON-ready data::

        {"version": 1, "bucket_seconds": 60.0,
         "slos": {"login_ok": {"definition": {"sli": "availability", "probes": ["login"],
                                              "stream": null, "threshold": null},
                               "first": 29999000, "good": [12, 11, …], "total": [12, 12, …]}}}

    ``good[k]``/``total[k]`` belong to bucket ``first + k``. A snapshot takes the loop
    milliseconds, its JSON encoding (in a thread) and a restore longer
    (bench/README.md has the figures).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from probed.config import SLO_WINDOWS, SloConfig
from probed.durations import format_duration
from probed.signals import SloStatus

__all__ = ["MIN_COVERAGE", "SloEvaluator"]

MIN_COVERAGE = 0.1
"""Share of a window the data must cover before its ratio and burn rate are given."""

_SNAPSHOT_VERSION = 1
_SHORTEST_WINDOW = min(SLO_WINDOWS.values())
_COUNT_TYPE = "I"
_COUNT_SIZE = array(_COUNT_TYPE).itemsize
_COUNT_MAX = 2 ** (8 * _COUNT_SIZE) - 1


def _allowance(objective: float) -> float:
    """The allowed bad share ``1 - objective``, taken in decimal: ``1 - 0.999`` is
    0.0010000000000000009 in binary floating point, the complement of what the operator
    wrote is 0.001, so 5 bad runs in 1,000 burn exactly 5.0, not 4.999999999999996 (the
    shortest repr's digits over its power of ten: one correctly rounded division)."""
    mantissa, _, exponent = repr(objective).partition("e")
    whole, _, fraction = mantissa.partition(".")
    places = len(fraction) - int(exponent or 0)
    scale, written = 10 ** max(places, 0), int(whole + fraction) * 10 ** max(-places, 0)
    return float((scale - written) / scale)  # int / int: rounded once


def _window_labels(slo: SloConfig) -> list[tuple[str, float]]:
    """``SLO_WINDOWS`` plus the SLO's budget window, ordered by length, no label twice."""
    windows = dict(SLO_WINDOWS)
    windows.setdefault(format_duration(slo.window), slo.window)
    return sorted(windows.items(), key=lambda item: (item[1], item[0]))


def _definition(slo: SloConfig) -> dict[str, Any]:
    """What decides which events an SLO counts, as JSON-ready data (buckets depend on it)."""
    return {
        "sli": slo.sli,
        "probes": sorted(set(slo.probes)),
        "stream": slo.stream,
        "threshold": slo.threshold,
    }


def _is_int(value: object) -> TypeGuard[int]:
    """An integer that is not a bool (JSON ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _empty_run(raw: bytes, size: int, at_end: bool = False) -> int:
    """Zero items of ``size`` bytes at the start (``at_end``: end) of ``raw``, with no Python
    step per item: the zero bytes cover them and less than one item of the next one."""
    return (len(raw) - len(raw.rstrip(b"\0") if at_end else raw.lstrip(b"\0"))) // size


def _zeros(count: int) -> array[int]:
    return array(_COUNT_TYPE, bytes(count * _COUNT_SIZE))


class _Window:
    """Running sums of good and total over the bucket indices ``lo..hi`` (inclusive)."""

    __slots__ = ("good", "hi", "lo", "seconds", "total", "valid")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.valid = False
        self.lo = 0
        self.hi = -1
        self.good = 0
        self.total = 0


class _Series:
    """The buckets of one SLO, a ring indexed by ``bucket index % span``, and its windows.

    The live indices are ``head - span + 1 .. head``, one slot each; a live
    index nothing was recorded in reads zeros, because advancing ``head``
    zeroes the slots of the indices that fall out of the longest window.
    """

    __slots__ = (
        "allowance",
        "budget_label",
        "definition",
        "good",
        "head",
        "labels",
        "oldest",
        "rate",
        "slo",
        "span",
        "total",
        "windows",
    )

    def __init__(self, slo: SloConfig, bucket_seconds: float) -> None:
        if slo.sli != "availability" and slo.threshold is None:
            raise ValueError(f"slo {slo.name!r}: a {slo.sli} SLO needs a threshold")
        self.slo = slo
        self.definition = _definition(slo)
        labels = _window_labels(slo)
        self.span = max(1, math.ceil(max(seconds for _, seconds in labels) / bucket_seconds))
        """Buckets kept: the indices ``head - span + 1 .. head``."""
        self.good = _zeros(self.span)
        self.total = _zeros(self.span)
        self.head: int | None = None
        """Newest bucket index seen (by an observation or an evaluation)."""
        by_seconds = {seconds: _Window(seconds) for _, seconds in labels}
        self.windows = list(by_seconds.values())
        self.labels = [(label, by_seconds[seconds]) for label, seconds in labels]
        self.budget_label = format_duration(slo.window)
        self.allowance = _allowance(slo.objective)
        self.oldest: int | None = None
        """Index of the oldest bucket holding an event (where coverage starts)."""
        self.rate: float | None = None
        """Events per second the schedule makes (None: a stream, extrapolate instead)."""

    def add(self, index: int, good: bool) -> None:
        """Count one event in bucket ``index`` (dropped if older than the longest window)."""
        if self.head is None or index > self.head:
            self.advance(index)
        elif index <= self.head - self.span:
            return
        slot = index % self.span
        if self.total[slot] >= _COUNT_MAX:
            return  # 4 billion events in one bucket: saturate rather than overflow
        self.good[slot] += good
        self.total[slot] += 1
        if self.oldest is None or index < self.oldest:
            self.oldest = index
        for window in self.windows:
            if window.valid and window.lo <= index <= window.hi:
                window.good += good
                window.total += 1

    def sums(self, lo: int, hi: int) -> tuple[int, int]:
        """Good and total over the live buckets with indices ``lo..hi``."""
        head, span = self.head, self.span
        if head is None:
            return 0, 0
        lo, hi = max(lo, head - span + 1), min(hi, head)
        if lo > hi:
            return 0, 0
        if lo == hi:
            slot = lo % span
            return self.good[slot], self.total[slot]
        first, stop = lo % span, hi % span + 1
        if first < stop:
            return sum(self.good[first:stop]), sum(self.total[first:stop])
        return (
            sum(self.good[first:]) + sum(self.good[:stop]),
            sum(self.total[first:]) + sum(self.total[:stop]),
        )

    def _clear(self, lo: int, hi: int) -> None:
        """Zero the slots of the indices ``lo..hi`` (at most ``span`` of them)."""
        count, first = hi - lo + 1, lo % self.span
        if count == 1:
            self.good[first] = self.total[first] = 0
            return
        for start, stop in ((first, min(first + count, self.span)), (0, first + count - self.span)):
            if start < stop:
                self.good[start:stop] = _zeros(stop - start)
                self.total[start:stop] = _zeros(stop - start)

    def advance(self, head: int) -> None:
        """Move the newest bucket to ``head``; zero and uncount what leaves the longest window."""
        old = self.head
        if old is not None and head <= old:
            return
        if old is not None:
            lo, hi = old - self.span + 1, min(head - self.span, old)
            if lo <= hi:
                for window in self.windows:
                    first, last = max(lo, window.lo), min(hi, window.hi)
                    if window.valid and first <= last:
                        good, total = self.sums(first, last)
                        window.good -= good
                        window.total -= total
                self._clear(lo, hi)
                if self.oldest is not None and self.oldest <= hi:
                    self.oldest = self._oldest_from(hi + 1, head)
        self.head = head

    def _oldest_from(self, lo: int, hi: int) -> int | None:
        """The first index in ``lo..hi`` whose bucket holds an event (usually ``lo``)."""
        count, first = max(0, min(hi - lo + 1, self.span)), lo % self.span  # past span: again
        if count and self.total[first]:
            return lo  # no copy of the ring in the usual case
        totals = self.total[first : first + count]
        totals += self.total[: count - len(totals)]
        empty = _empty_run(totals.tobytes(), totals.itemsize)
        return lo + empty if empty < count else None

    def move(self, window: _Window, lo: int, hi: int) -> None:
        """Make ``window`` cover ``lo..hi``: shift its edges when the ranges overlap."""
        overlap = lo <= hi and window.lo <= window.hi and lo <= window.hi and window.lo <= hi
        if window.valid and overlap:
            good, total = window.good, window.total
            if lo != window.lo:
                sign = -1 if lo > window.lo else 1
                g, t = self.sums(min(lo, window.lo), max(lo, window.lo) - 1)
                good, total = good + sign * g, total + sign * t
            if hi != window.hi:
                sign = 1 if hi > window.hi else -1
                g, t = self.sums(min(hi, window.hi) + 1, max(hi, window.hi))
                good, total = good + sign * g, total + sign * t
        else:
            good, total = self.sums(lo, hi)
        window.valid, window.lo, window.hi, window.good, window.total = True, lo, hi, good, total

    def ordered(self) -> tuple[int, list[int], list[int]]:
        """(first index, goods, totals) of the live buckets, empty ends trimmed."""
        if self.head is None:
            return 0, [], []
        cut = (self.head + 1) % self.span
        totals = self.total[cut:] + self.total[:cut]
        raw, size = totals.tobytes(), totals.itemsize
        start = _empty_run(raw, size)
        stop = max(start, len(totals) - _empty_run(raw, size, at_end=True))
        goods = self.good[cut:] + self.good[:cut]
        first = self.head - self.span + 1 + start
        return first, goods[start:stop].tolist(), totals[start:stop].tolist()

    def load(self, first: int, goods: Sequence[int], totals: Sequence[int], head: int) -> None:
        """Replace the buckets by ``goods``/``totals`` from index ``first``; prune to ``head``."""
        self.good, self.total = _zeros(self.span), _zeros(self.span)
        for window in self.windows:
            window.valid = False
        top = max(head, first + len(totals) - 1) if totals else head
        self.head = top
        lo = max(first, top - self.span + 1)
        for index in range(lo, first + len(totals)):
            slot = index % self.span
            self.good[slot], self.total[slot] = goods[index - first], totals[index - first]
        self.oldest = self._oldest_from(lo, first + len(totals) - 1)

    def status(self, now: float, bucket_seconds: float) -> SloStatus:
        """Evaluate every window at ``now``."""
        hi = math.floor(now / bucket_seconds)
        for window in self.windows:
            self.move(window, math.floor((now - window.seconds) / bucket_seconds) + 1, hi)
        allowance = self.allowance
        ratio: dict[str, float | None] = {}
        burn: dict[str, float | None] = {}
        events: dict[str, int] = {}
        coverage: dict[str, float] = {}
        since = None if self.oldest is None else self.oldest * bucket_seconds
        budget_remaining = allowed = None
        for label, window in self.labels:
            good, total = window.good, window.total
            covered = 0.0 if since is None else min(window.seconds, max(0.0, now - since))
            events[label], coverage[label] = total, covered
            if total and covered >= MIN_COVERAGE * window.seconds:
                ratio[label] = good / total
                burn[label] = (total - good) / (allowance * total)
            else:
                ratio[label] = burn[label] = None
            if label == self.budget_label and total:
                allowed = allowance * self.expected(total, covered, window.seconds)
                budget_remaining = 1 - (total - good) / allowed
        return SloStatus(
            name=self.slo.name,
            sli=self.slo.sli,
            objective=self.slo.objective,
            window=self.slo.window,
            ratio=ratio,
            burn_rate=burn,
            budget_remaining=budget_remaining,
            events=events,
            coverage=coverage,
            budget_allowed=allowed,
        )

    def expected(self, total: int, covered: float, seconds: float) -> float:
        """Events the whole window of ``seconds`` will hold: by schedule, else extrapolated."""
        if self.rate is not None:
            return max(self.rate * seconds, float(total))
        return total * seconds / covered if covered > 0 else float(total)


class SloEvaluator:
    """Counts probe runs and stream lags into per-SLO buckets and evaluates them.

    Not thread-safe; meant to be driven from the event loop (record on every
    run or event, ``evaluate()`` every few seconds). See the module docstring
    for the window, clamping and reload semantics."""

    def __init__(
        self,
        slos: Sequence[SloConfig],
        *,
        bucket_seconds: float = 60.0,
        rates: Mapping[str, float] | None = None,
    ) -> None:
        if not (math.isfinite(bucket_seconds) and 0 < bucket_seconds <= _SHORTEST_WINDOW):
            raise ValueError(
                f"bucket_seconds must be > 0 and at most the shortest window "
                f"({format_duration(_SHORTEST_WINDOW)}), got {bucket_seconds!r}"
            )
        self._bucket = float(bucket_seconds)
        self._series: dict[str, _Series] = {}
        self._by_probe: dict[str, list[_Series]] = {}
        self._by_stream: dict[str, list[_Series]] = {}
        self._now: float | None = None
        self.apply(slos, rates)

    # -- observations --------------------------------------------------------

    def record_run(self, probe: str, success: bool, duration: float, at: float) -> None:
        """Count one run of ``probe`` in every availability and latency SLO listing it."""
        series = self._by_probe.get(probe)
        if not series:
            return
        index = self._index_of(at)
        if index is None:
            return
        for one in series:
            one.add(index, one.slo.run_is_good(success, duration))

    def record_lag(self, stream: str, lag: float, at: float) -> None:
        """Count one event of ``stream`` in its delivery_lag SLOs (a negative lag is ignored)."""
        series = self._by_stream.get(stream)
        if not series or not lag >= 0:  # negative or NaN: not a measurement
            return
        index = self._index_of(at)
        if index is None:
            return
        for one in series:
            one.add(index, one.slo.lag_is_good(lag))

    def _index_of(self, at: float) -> int | None:
        """The bucket of ``at``, clamped into now's bucket if more than one bucket ahead."""
        if not math.isfinite(at):
            return None
        if self._now is not None and at > self._now + self._bucket:
            at = self._now
        return math.floor(at / self._bucket)

    # -- evaluation ----------------------------------------------------------

    def evaluate(self, now: float) -> dict[str, SloStatus]:
        """Every configured SLO evaluated at ``now``, keyed by name, in config order."""
        self._set_now(now)
        head = math.floor(now / self._bucket)
        result: dict[str, SloStatus] = {}
        for name, series in self._series.items():
            series.advance(head)
            result[name] = series.status(now, self._bucket)
        return result

    def _set_now(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite Unix time, got {now!r}")
        self._now = now

    # -- reload --------------------------------------------------------------

    def apply(self, slos: Sequence[SloConfig], rates: Mapping[str, float] | None = None) -> None:
        """Take a new SLO list: unchanged SLOs keep their buckets, changed and new start empty.

        ``rates`` are the runs per second of each scheduled probe (from its interval): a
        probe SLI's budget is the share of the runs its window will hold by schedule.
        """
        names = [slo.name for slo in slos]
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"duplicate SLO name(s): {', '.join(duplicates)}")
        series: dict[str, _Series] = {}
        for slo in slos:
            fresh = _Series(slo, self._bucket)
            old = self._series.get(slo.name)
            if old is not None and old.definition == fresh.definition and old.head is not None:
                first, goods, totals = old.ordered()
                fresh.load(first, goods, totals, old.head)
            if slo.sli != "delivery_lag" and rates is not None:
                known = [rates[p] for p in set(slo.probes) if p in rates]
                fresh.rate = sum(known) if len(known) == len(set(slo.probes)) else None
            series[slo.name] = fresh
        self._series = series
        self._by_probe = _route(
            (probe, s) for s in series.values() for probe in sorted(set(s.slo.probes))
        )
        self._by_stream = _route(
            (s.slo.stream, s)
            for s in series.values()
            if s.slo.sli == "delivery_lag" and s.slo.stream is not None
        )
        self.lag_thresholds = {  # per stream, the sorted thresholds of its lag SLOs
            stream: sorted({float(s.slo.threshold or 0.0) for s in group})
            for stream, group in self._by_stream.items()
        }

    # -- persistence ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The buckets of every SLO, with what they measure, as JSON-ready data.

        Per SLO, ``good`` and ``total`` list consecutive buckets starting at
        bucket index ``first`` (Unix time ``first * bucket_seconds``).
        """
        slos: dict[str, Any] = {}
        for name, series in self._series.items():
            (first, goods, totals), definition = series.ordered(), dict(series.definition)
            slos[name] = {"definition": definition, "first": first, "good": goods, "total": totals}
        return {"version": _SNAPSHOT_VERSION, "bucket_seconds": self._bucket, "slos": slos}

    def restore(self, data: Mapping[str, Any], now: float) -> list[str]:
        """Load a snapshot taken earlier; return the problems found (never raises on bad data).

        Each configured SLO present in ``data`` with the same measurement
        definition has its buckets replaced by the saved ones (call this before
        recording). Buckets older than the SLO's longest window at ``now`` are
        dropped silently; buckets more than one bucket after ``now`` (a clock
        that stepped back) are dropped and reported, since counting past events
        as current would fake a fast burn. SLOs no longer configured, changed
        definitions and malformed parts are reported and skipped.
        """
        self._set_now(now)
        if not isinstance(data, Mapping):
            return [f"SLO state: expected an object, got {type(data).__name__}; ignored"]
        version = data.get("version")
        if version != _SNAPSHOT_VERSION:
            return [f"SLO state: unsupported version {version!r} (expected 1); ignored"]
        bucket_seconds = data.get("bucket_seconds")
        if (
            not isinstance(bucket_seconds, int | float)
            or isinstance(bucket_seconds, bool)
            or bucket_seconds != self._bucket
        ):
            return [
                f"SLO state: bucket_seconds {bucket_seconds!r} differs from {self._bucket:g}; "
                "ignored"
            ]
        slos = data.get("slos")
        if not isinstance(slos, Mapping):
            return [f"SLO state: 'slos' must be an object, got {type(slos).__name__}; ignored"]
        head = math.floor(now / self._bucket)
        problems: list[str] = []
        for name, entry in slos.items():
            problems.extend(self._restore_one(name, entry, head))
        return problems

    def _restore_one(self, name: object, entry: object, head: int) -> list[str]:
        series = self._series.get(name) if isinstance(name, str) else None
        if series is None:
            return [f"SLO state: slo {name!r} is not configured; its state is ignored"]
        if not isinstance(entry, Mapping):
            return [f"SLO state: slo {name!r}: expected an object; ignored"]
        if entry.get("definition") != series.definition:
            return [
                f"SLO state: slo {name!r}: what it measures (sli, probes, stream, threshold) "
                "changed since the state was saved; its state is ignored"
            ]
        first, raw_goods, raw_totals = entry.get("first"), entry.get("good"), entry.get("total")
        if not (
            _is_int(first)
            and isinstance(raw_goods, list)
            and isinstance(raw_totals, list)
            and len(raw_goods) == len(raw_totals)
        ):
            return [
                f"SLO state: slo {name!r}: expected an integer 'first' and lists 'good' and "
                "'total' of equal length; ignored"
            ]
        goods: list[int] = []
        totals: list[int] = []
        malformed = 0
        for good, total in zip(raw_goods, raw_totals, strict=True):
            if _is_int(good) and _is_int(total) and 0 <= good <= total <= _COUNT_MAX:
                goods.append(good)
                totals.append(total)
            else:
                malformed += 1
                goods.append(0)
                totals.append(0)
        keep = max(0, min(len(totals), head + 2 - first))  # up to now's bucket + 1
        future = sum(1 for total in totals[keep:] if total)
        series.load(first, goods[:keep], totals[:keep], head)
        problems = []
        if malformed:
            problems.append(
                f"SLO state: slo {name!r}: skipped {malformed} malformed bucket(s) "
                "(expected integers with 0 <= good <= total)"
            )
        if future:
            problems.append(
                f"SLO state: slo {name!r}: dropped {future} bucket(s) from the future "
                "(did the clock step back?)"
            )
        return problems


def _route(pairs: Iterable[tuple[str, _Series]]) -> dict[str, list[_Series]]:
    routes: dict[str, list[_Series]] = {}
    for key, series in pairs:
        routes.setdefault(key, []).append(series)
    return routes
