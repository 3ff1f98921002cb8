"""The garbage collector while the ``probed`` command loads: young collections only.

Loading the daemon (asyncio, aiohttp, probed's modules) makes tens of thousands of
objects, nearly all of which live as long as the process. At the interpreter's
thresholds (700, 10, 10) that start-up runs about 130 young collections, a dozen of the
middle generation and two full ones, each older collection scanning the same long-lived
survivors again (bench/README.md has the figures). The garbage start-up makes dies young
(the temporary structures of imports and class creation), so young collections alone
keep memory where it was.

The ``probed`` command calls :func:`begin` first thing; the daemon's GC policy ends it at
ready (``probed.gcpolicy``, which then sets its own thresholds and freezes what start-up
built), and any other command :func:`end`\\ s it at once. Once the daemon's modules are
loaded, :func:`loaded` freezes what they made without a full collection, so the one at
ready scans only what start-up built after them.

The ground floor: no other probed module.
"""

from __future__ import annotations

import gc

__all__ = ["START_THRESHOLDS", "begin", "end", "loaded"]

START_THRESHOLDS = (700, 1000, 1000)
"""``gc.set_threshold`` while loading: the young generation's as usual; the middle one
collects after 1,000 young collections, more than a start-up runs, so in effect never."""

_before: tuple[int, int, int] | None = None


def begin() -> None:
    """Collect only the young generation until :func:`end`."""
    global _before
    if _before is None:
        _before = gc.get_threshold()
    gc.set_threshold(*START_THRESHOLDS)


def end() -> None:
    """Restore the thresholds in force before :func:`begin` (nothing if it was not called)."""
    global _before
    if _before is not None:
        gc.set_threshold(*_before)
        _before = None


def loaded() -> None:
    """The daemon's modules are loaded: freeze what they made, without a full collection.

    Nearly all of it lives as long as the process. A full collection first would scan all
    of it (tens of thousands of objects, the longest step between the imports and ready)
    to free the few hundred objects the imports leave as garbage (classes that attrs
    replaced by slotted copies, and the like); those stay frozen instead, once per process
    (bench/README.md has both figures).
    """
    gc.freeze()
