"""The garbage collector's policy and what it costs: freezing, thresholds, pauses.

A full (generation 2) collection scans every tracked object the interpreter holds: in a
daemon with hundreds of streams that took 100-130 ms, all of it a stalled event loop
(bench/README.md). Most of those objects live as long as the daemon (modules, the
config, sessions, watchers, the store's fixed rings), so the daemon moves them out of the
collector's sight with ``gc.freeze()`` once they exist: at ready, after the warm-up (the
evaluation one ``evaluate_every`` after ready: streams connected, probes run, the
evaluation's structures built) and after each reload (:class:`GcPolicy`). Each of these
freezes follows a full collection, so no garbage is frozen; an object frozen and dropped
later is still freed by its reference count (only a frozen reference cycle is never
collected: the few freezes are bounded, never one per run). The modules themselves are
frozen before, as soon as they are loaded, without a full collection
(``probed.startgc.loaded``): the few hundred objects their imports left as garbage stay,
so that the collection at ready scans only what start-up built after them.

:data:`PAUSES` times every collection from ``gc.callbacks`` and is exported as
``probed_gc_pause_seconds{generation}`` (:func:`write_gc_pauses`), so the cost stays
visible in production. :data:`THRESHOLDS` were chosen from the soak (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

from probed import startgc
from probed.exposition import Family, Writer
from probed.steps import TURN_SECONDS
from probed.store import Histogram

__all__ = [
    "GC_PAUSE",
    "PAUSES",
    "PAUSE_BUCKETS",
    "THRESHOLDS",
    "GcPauses",
    "GcPolicy",
    "write_gc_pauses",
]

PAUSE_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
"""Upper bounds of a collection's pause (seconds): young ones take tens of microseconds,
a full one of a large heap a tenth of a second; 20 ms is the longest stall we allow."""

THRESHOLDS: tuple[int, int, int] | None = (700, 2, 500)
"""``gc.set_threshold`` while the daemon runs (None: the interpreter's, 700/10/10).

The middle generation is collected after 2 young collections, not 10: it then holds what
survived at most two of them, so a burst of short-lived objects (250 streams reconnecting:
coroutines, exchanges, transports, timers) is walked in several short pauses instead of
one of 15-20 ms (the soak's median generation-1 pause about halved, bench/README.md). A
full collection waits for 500 middle ones (1,500 young ones, against 1,100 at 700/10/100):
in the soak about one every 10 minutes instead of one a minute at the interpreter's
thresholds."""

GENERATIONS = ("0", "1", "2")


class GcPauses:
    """How long each collection stopped the interpreter, per generation (a gc callback)."""

    def __init__(self) -> None:
        self.histograms = [Histogram(PAUSE_BUCKETS) for _ in GENERATIONS]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # collections never nest and run with the GIL held: one start time is enough
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.histograms[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        """Time every collection from now on (once per process, however often called)."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)


PAUSES = GcPauses()
"""The process's pause histograms (``gc.callbacks`` is process-wide too)."""


GC_PAUSE = Family.histogram(
    "probed_gc_pause_seconds",
    "Time the garbage collector stopped the interpreter (and the event loop), per "
    "collection, by generation (2: a full collection).",
    "generation",
)


def write_gc_pauses(w: Writer) -> None:
    """``probed_gc_pause_seconds{generation}`` from :data:`PAUSES` (safe in any thread:
    each histogram is copied, a collection in between lands in the next scrape)."""
    w.histograms(GC_PAUSE, [(g,) for g in GENERATIONS], [h.copy() for h in PAUSES.histograms])


class GcPolicy:
    """When the daemon freezes what it holds: at ready, after the warm-up, after a reload."""

    def __init__(self) -> None:
        self._evaluations = 0

    def start(self) -> None:
        """At ready: time collections, set the thresholds, freeze what start-up built."""
        PAUSES.install()
        startgc.end()
        if THRESHOLDS is not None:
            gc.set_threshold(*THRESHOLDS)
        settle()

    def evaluated(self) -> None:
        """After each evaluation: the second one ends the warm-up."""
        self._evaluations += 1
        if self._evaluations == 2:
            settle()

    @contextlib.asynccontextmanager
    async def held_back(self) -> AsyncIterator[None]:
        """Hold the collector back while the body runs, then collect in a turn of its own.

        An evaluation of hundreds of streams allocates thousands of objects in slices over
        many loop turns (``probed.steps``): the collections they trigger ran inside its
        slices, a 3-4 ms middle collection on top of a 2-3 ms slice (bench/README.md).
        Held back, they wait for the body's end, and the young and middle generations are
        collected once, with nothing else in that step, after the loop has had
        ``TURN_SECONDS`` to itself: a probe run due then takes up to two turns to start, and
        after one turn the collection could come between them, as slices did. Other tasks
        allocate meanwhile too: their garbage waits the body's few tenths of a second.
        """
        if not gc.isenabled():
            yield  # someone else holds it back: theirs to end
            return
        gc.disable()
        try:
            yield
            await asyncio.sleep(TURN_SECONDS)  # what came due meanwhile starts first
        finally:
            gc.enable()
        gc.collect(1)

    def reloaded(self) -> None:
        """After a reload applied: the new config's objects join the frozen ones."""
        settle()


def settle() -> None:
    """Collect everything collectable, then freeze the survivors."""
    gc.collect()
    gc.freeze()
