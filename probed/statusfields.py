"""Reading a (fetched) status document defensively, and the formats its renderers share.

The text renderers (``probed.statustext``) and the page (``probed.statuspage``) take the
JSON of ``GET /api/v1/status`` as ``probed status`` fetched it, possibly from another
version of the daemon: a field may be missing, null or of another type. These readers
never raise on such a document; what they cannot read becomes empty, ``None`` or ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "age",
    "integer",
    "is_num",
    "iso",
    "items",
    "mapping",
    "number",
    "ratio_cell",
    "shard_text",
    "strs",
    "text",
]


def items(value: object) -> list[Mapping[str, Any]]:
    """The objects of a JSON list (anything else is skipped; not a list: [])."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def strs(value: object) -> list[str]:
    """A JSON list as text, one string per item ([] if not a list)."""
    if not isinstance(value, list):
        return []
    return [text(item) for item in value]


def text(value: object) -> str:
    """``value`` as text; null is empty."""
    return "" if value is None else str(value)


def shard_text(doc: Mapping[str, Any]) -> str:
    """``"shard 1/3"`` when the document's daemon is one of several shards, else empty."""
    shard = mapping(doc.get("shard"))
    index, total = shard.get("index"), shard.get("total")
    if type(index) is not int or type(total) is not int or total <= 1:
        return ""
    return f"shard {index}/{total}"


def mapping(value: object) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, Mapping) else {}


def number(value: object) -> float | None:
    """A finite JSON number as float (booleans are not numbers), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def is_num(value: object) -> bool:
    """Whether ``value`` is a finite JSON number."""
    return number(value) is not None


def integer(value: object) -> str:
    """A count, truncated to an integer; ``-`` if not a number."""
    result = number(value)
    return "-" if result is None else str(math.trunc(result))


def iso(value: object) -> str:
    """A Unix time as ISO 8601 UTC with a ``Z``, whole seconds (floored); ``-`` if none."""
    seconds = number(value)
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(math.floor(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(now: object, then: object) -> str:
    """How long before ``now`` ``then`` was: ``12 s ago``, ``3 min ago``, ``2 h ago``."""
    end, start = number(now), number(then)
    if end is None or start is None:
        return "-"
    seconds = max(0.0, end - start)
    if seconds < 120:
        return f"{math.floor(seconds)} s ago"
    if seconds < 7200:
        return f"{math.floor(seconds / 60)} min ago"
    return f"{math.floor(seconds / 3600)} h ago"


def ratio_cell(slo: Mapping[str, Any], label: str, pct: Callable[[object], str]) -> str:
    """An SLO window's ratio through ``pct``; "insufficient data (12m of 30d)" while its data
    covers too little, ``-`` without data."""
    ratio = number(mapping(slo.get("ratio")).get(label))
    if ratio is not None:
        return pct(ratio)
    covered = number(mapping(slo.get("coverage")).get(label))
    if not number(mapping(slo.get("events")).get(label)) or covered is None:
        return "-"
    return f"insufficient data ({_span(covered)} of {label})"


def _span(seconds: float) -> str:
    """Whole days, hours or minutes (floored), for a coverage."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{math.trunc(seconds / size)}{unit}"
    return f"{math.trunc(seconds)}s"
