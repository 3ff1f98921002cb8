"""A probe's ring of recent runs, kept as columns rather than one object per run.

The ring feeds the status document's ``recent`` list, persistence and restarts. Kept as
``RecentResult`` objects, 200 probes of 120 runs are 24,000 objects that the garbage
collector tracks and every full collection walks: about 60 % of what a daemon of that
size adds to a collection, and most of its longest loop stall (``bench/README.md``).
``RunRing`` keeps the same runs in arrays of numbers and one list of reasons (strings,
which the collector does not track): a handful of objects whatever the number of runs.
A ``RecentResult`` is built only when one is read.

Every run appended gets the next sequence number (``appended`` counts them), so a reader
that kept something per run (the status document's cache, ``probed.statuscache``) can
tell which of its runs the ring still holds: those numbered ``first`` or later.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

from probed.records import record

__all__ = ["RecentResult", "RunRing"]

_NO_CODE = -1
_MAX_CODE = 2**31 - 1


@record
class RecentResult:
    """One entry of the recent-results ring (what a chart or status line needs)."""

    started_at: float
    duration: float
    success: bool
    reason: str | None
    status_code: int | None


class RunRing:
    """The newest ``size`` runs of a probe, oldest first when read."""

    __slots__ = ("_codes", "_durations", "_ok", "_reasons", "_started", "appended", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a ring holds at least one run, not {size}")
        self.size = size
        self.appended = 0
        """Runs appended ever; the newest held is number ``appended - 1``."""
        self._started = array("d")
        self._durations = array("d")
        self._ok = array("b")
        self._codes = array("i")
        """HTTP status codes; ``_NO_CODE`` for none."""
        self._reasons: list[str | None] = []

    def append(
        self,
        started_at: float,
        duration: float,
        success: bool,
        reason: str | None,
        status_code: int | None,
    ) -> None:
        """Add the newest run, dropping the oldest once ``size`` are held.

        A status code that is not a whole number from 0 to 2**31 - 1 (a damaged state
        file) is kept as none: only equality with 429 is ever asked of it.
        """
        code = (
            status_code if type(status_code) is int and 0 <= status_code <= _MAX_CODE else _NO_CODE
        )
        n = self.appended
        if n < self.size:
            self._started.append(started_at)
            self._durations.append(duration)
            self._ok.append(1 if success else 0)
            self._codes.append(code)
            self._reasons.append(reason)
        else:
            pos = n % self.size
            self._started[pos] = started_at
            self._durations[pos] = duration
            self._ok[pos] = 1 if success else 0
            self._codes[pos] = code
            self._reasons[pos] = reason
        self.appended = n + 1

    def extend(self, entries: Iterable[RecentResult]) -> None:
        """Append each of ``entries`` in order (a restore)."""
        for e in entries:
            self.append(e.started_at, e.duration, e.success, e.reason, e.status_code)

    @property
    def first(self) -> int:
        """The number of the oldest run held (``appended`` when none is)."""
        return self.appended - len(self._started)

    def __len__(self) -> int:
        return len(self._started)

    def __bool__(self) -> bool:
        return bool(self._started)

    def __iter__(self) -> Iterator[RecentResult]:
        return iter(self.since(0))

    def since(self, number: int) -> list[RecentResult]:
        """The runs held numbered ``number`` or later, oldest first."""
        held = len(self._started)
        start = max(number, self.appended - held)
        entries: list[RecentResult] = []
        started, durations, ok, codes, reasons = (
            self._started,
            self._durations,
            self._ok,
            self._codes,
            self._reasons,
        )
        for k in range(start, self.appended):
            pos = k % self.size
            code = codes[pos]
            entries.append(
                RecentResult(
                    started[pos],
                    durations[pos],
                    ok[pos] == 1,
                    reasons[pos],
                    None if code == _NO_CODE else code,
                )
            )
        return entries

    def __repr__(self) -> str:
        return f"RunRing(size={self.size}, held={len(self)}, appended={self.appended})"
