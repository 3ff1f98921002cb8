"""Events the SLOs leave out, counted so that Prometheus rules can leave them out too.

probed does not count a run (or timed stream event) towards its SLOs when it
falls in a maintenance window, or when the run judged probed itself rather
than the target (``prober_overloaded``). The raw metrics the generated SLO
rules read (``probed_probe_runs_total``, the duration and lag histograms)
still count every run, as operators expect of them, so probed also exposes

    probed_slo_excluded_events_total{slo, outcome="good"|"bad", why}

with ``why`` = ``maintenance``, ``prober_overloaded`` or ``clock_skew`` (a timed event of
a stream whose lags are not corrected for a clock skew, ``probed.skew``); ``probed rules``
subtracts it from both the bad and the total events of each SLO. A run is
good or bad exactly as the SLO evaluator counts it (``SloConfig.run_is_good``,
``lag_is_good``): availability by success, latency by ``duration <= threshold``
(the ``le`` bucket), delivery lag by ``lag <= threshold``.

Every (slo, outcome, why) series exists from the start at 0, so ``rate()``
sees it begin with the raw series. Pure bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from probed.config import SloConfig
from probed.exposition import Family, Writer

__all__ = ["EXCLUDED", "WHY", "Exclusions", "Why"]

Why = Literal["maintenance", "prober_overloaded", "clock_skew"]
WHY: tuple[Why, ...] = ("maintenance", "prober_overloaded", "clock_skew")

EXCLUDED = Family.counter(
    "probed_slo_excluded_events",
    "Runs and stream events left out of an SLO (maintenance window or an "
    "overloaded prober), by whether the SLO would have counted them good or bad.",
    "slo",
    "outcome",
    "why",
)

_Key = tuple[str, str, str]
"""(slo, outcome, why)."""


class Exclusions:
    """Per SLO, outcome and why, how many events probed left out of the SLO."""

    def __init__(self, slos: Sequence[SloConfig] = ()) -> None:
        self._counts: dict[_Key, int] = {}
        self._by_probe: dict[str, list[SloConfig]] = {}
        self._by_stream: dict[str, list[SloConfig]] = {}
        self.configure(slos)

    def configure(self, slos: Sequence[SloConfig]) -> None:
        """Follow a reload: counts of SLOs that remain are kept, the others dropped."""
        self._by_probe, self._by_stream = {}, {}
        counts: dict[_Key, int] = {}
        for slo in slos:
            if slo.stream is not None:
                self._by_stream.setdefault(slo.stream, []).append(slo)
            for probe in dict.fromkeys(slo.probes):
                self._by_probe.setdefault(probe, []).append(slo)
            for outcome in ("good", "bad"):
                for why in WHY:
                    key = (slo.name, outcome, why)
                    counts[key] = self._counts.get(key, 0)
        self._counts = counts

    def run(self, probe: str, success: bool, duration: float, why: Why) -> None:
        """Count one left-out run of ``probe`` in each availability and latency SLO of it."""
        for slo in self._by_probe.get(probe, ()):
            self._add(slo.name, slo.run_is_good(success, duration), why)

    def lag(self, stream: str, lag: float, why: Why) -> None:
        """Count one left-out timed event of ``stream`` in each delivery_lag SLO of it."""
        if not lag >= 0:  # the SLOs and the histogram ignore it too
            return
        for slo in self._by_stream.get(stream, ()):
            self._add(slo.name, slo.lag_is_good(lag), why)

    def _add(self, slo: str, good: bool, why: Why) -> None:
        key = (slo, "good" if good else "bad", why)
        self._counts[key] = self._counts.get(key, 0) + 1

    def count(self, slo: str, outcome: str, why: Why) -> int:
        """The count of one series (0 for one that does not exist)."""
        return self._counts.get((slo, outcome, why), 0)

    def copy(self) -> Exclusions:
        """A copy whose counts a scrape in another thread may read."""
        other = Exclusions()
        other._counts = dict(self._counts)
        return other

    def write(self, w: Writer) -> None:
        """``probed_slo_excluded_events_total``, one sample per (slo, outcome, why)."""
        counts = sorted(self._counts.items())
        w.samples(EXCLUDED, [key for key, _ in counts], [float(value) for _, value in counts])
