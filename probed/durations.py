"""Durations as the config writes them (``"250ms"``, ``"15s"``, ``"1h30m"``) and as seconds.

The ground floor: imports only ``probed.model``. ``Duration`` is the model type of every
duration key (it refuses a bare number: the unit must be written).
"""

from __future__ import annotations

import re
from typing import Annotated

from probed.model import BeforeValidator

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Parse a human duration (``"250ms"``, ``"15s"``, ``"5m"``, ``"1h30m"``) into seconds."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration string like '250ms', '15s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        raise ValueError(
            f"a bare number is ambiguous: write the unit, e.g. '{value}s' or '{value}ms'"
        )
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit (ms, s, m, h, d), "
            "e.g. '250ms', '15s', '5m', '1h30m'"
        )
    if total <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest human duration that parses back to the same value."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000, 3):g}ms"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]
