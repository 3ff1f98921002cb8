"""A stream's clock on the status page: its row's clock cell and a header line if skewed.

Each stream of the status document has a ``clock`` object
(``probed.skew.StreamClock.to_json``): mode, source, offset,
uncertainty, applied offset, tolerance, ``skewed`` and a one-line ``note``.
The streams table's "Clock offset" cell shows the offset only where the estimate
tells it from zero, ``|offset| > uncertainty`` ("-30 s", "+412 ms"); within its
uncertainty it says "in sync" if that uncertainty is within ``tolerance`` (the clocks
agree as closely as the stream needs), else "-", as before any estimate. Its
``data-clock-skewed`` attribute and a "skewed" mark say whether it is skewed, and its
title is the note. A skewed stream also gets a ``p.clock-skew`` line in
the page header, since its lag is not judged.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from probed.pageunits import offset

__all__ = ["page_clock_cell", "page_skews"]


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clock(stream: Mapping[str, Any]) -> Mapping[str, Any]:
    clock = stream.get("clock")
    return clock if isinstance(clock, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _offset(stream: Mapping[str, Any]) -> str:
    """The offset if beyond its uncertainty, else "in sync" or "-" (module docstring)."""
    clock = _clock(stream)
    value = _number(stream.get("clock_offset_seconds"))
    spread = _number(clock.get("uncertainty_seconds"))
    if value is None or spread is None:
        return "-"
    if abs(value) > spread:
        return offset(value)
    tolerance = _number(clock.get("tolerance_seconds"))
    return "in sync" if tolerance is not None and spread <= tolerance else "-"


def page_clock_cell(stream: Mapping[str, Any]) -> str:
    """The "Clock offset" cell of a stream's row."""
    clock = _clock(stream)
    skewed = clock.get("skewed") is True
    mark = ' <span class="skew">skewed</span>' if skewed else ""
    return (
        f'<td class="num clock" data-clock-skewed="{"true" if skewed else "false"}" '
        f'title="{_e(clock.get("note"))}">{_offset(stream)}{mark}</td>'
    )


def page_skews(doc: Mapping[str, Any]) -> str:
    """The page header's ``p.clock-skew`` line of each skewed stream."""
    streams = doc.get("streams")
    return "".join(
        f'<p class="clock-skew" data-stream="{_e(s.get("stream"))}">stream '
        f"{_e(s.get('stream'))}: target clock {_e(_clock(s).get('note'))}</p>"
        for s in (streams if isinstance(streams, list) else [])
        if isinstance(s, Mapping) and _clock(s).get("skewed") is True
    )
