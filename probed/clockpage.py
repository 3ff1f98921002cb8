"""A stream's clock on the status page: its row's clock cell and a header line if skewed.

Each stream of the status document has a ``clock`` object
(``probed.skew.StreamClock.to_json``): mode, source, offset,
uncertainty, applied offset, tolerance, ``skewed`` and a one-line ``note``.
The streams table's "Clock offset" cell shows the offset, its
``data-clock-skewed`` attribute and a "skewed" mark say whether it is skewed,
and its title is the note. A skewed stream also gets a ``p.clock-skew`` line in
the page header, since its lag is not judged. ``CLOCK_JS`` is the same markup
in the page script (a browser test compares both renderings).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from probed.pageunits import offset

__all__ = ["CLOCK_JS", "page_clock_cell", "page_skews"]


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clock(stream: Mapping[str, Any]) -> Mapping[str, Any]:
    clock = stream.get("clock")
    return clock if isinstance(clock, Mapping) else {}


def page_clock_cell(stream: Mapping[str, Any]) -> str:
    """The "Clock offset" cell of a stream's row."""
    clock = _clock(stream)
    skewed = clock.get("skewed") is True
    mark = ' <span class="skew">skewed</span>' if skewed else ""
    return (
        f'<td class="num clock" data-clock-skewed="{"true" if skewed else "false"}" '
        f'title="{_e(clock.get("note"))}">{offset(stream.get("clock_offset_seconds"))}{mark}</td>'
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


CLOCK_JS = r"""
  const clockCell = (s) => {
    const clock = map(s.clock);
    const skewed = clock.skewed === true;
    const mark = skewed ? ' <span class="skew">skewed</span>' : "";
    return `<td class="num clock" data-clock-skewed="${skewed ? "true" : "false"}" ` +
      `title="${e(clock.note)}">${offset(s.clock_offset_seconds)}${mark}</td>`;
  };

  const skewPara = (doc) => items(doc.streams)
    .filter((s) => map(s.clock).skewed === true)
    .map((s) => `<p class="clock-skew" data-stream="${e(s.stream)}">stream ` +
      `${e(s.stream)}: target clock ${e(map(s.clock).note)}</p>`).join("");
"""
"""The page script's ``clockCell`` and ``skewPara``: :func:`page_clock_cell` and
:func:`page_skews` in JavaScript (it uses the script's ``e``, ``offset``, ``map`` and
``items``)."""
