"""Figures on the status page: rounded, and always with their unit.

The page prints no raw float (``0.41234``, ``12.000001``): every measured number goes
through one of these (``probed.pagesections``; ``probed status`` rounds its own way).

:func:`duration` (latency, lag, clock offset)
    The largest unit of µs, ms, s, min, h and d the value reaches, one decimal below 10
    of it, none from 10 on, a trailing ``.0`` dropped: ``0.4 µs``, ``4.3 ms``,
    ``412 ms``, ``1.3 s``, ``12 s``, ``2 min``, ``1.5 h``, ``3 d``. A value that rounds
    up to the next unit is shown in it (0.9996 s is ``1 s``, 59.97 s is ``1 min``); 0 is
    ``0 s``. :func:`offset` is the same with a ``+`` on a positive value.
:func:`percent` (SLO objectives, ratios, budgets)
    ``ratio * 100`` to two decimals, trailing zeros dropped: ``99.95 %``, ``-12.5 %``,
    ``100 %``. A value that is not 100 % but rounds to it gets up to four decimals,
    so a 99.999 % objective does not read as 100 %.
:func:`amount` and :func:`rate` (counts and burn rates)
    Two decimals below 10, one below 100, none from 100 on, trailing zeros dropped;
    a rate ends in ``x``: ``0.18x``, ``1.75x``, ``14.4x``, ``250``.
:func:`evidence_value`
    A recommendation's evidence value or threshold, in the unit its signal's last word
    names: ``..._for``, ``..._seconds`` and ``...p95`` are durations, ``..._ratio``,
    ``..._share`` and ``unreachable`` (a share of runs) percentages, ``burn_rate_...``
    rates, anything else an amount.

Rounding is half away from zero on the exact binary value (:func:`fixed`, as
JavaScript's ``toFixed``); a minus sign is dropped when nothing but zeros is left.
Anything that is not a finite number is ``-``.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "amount",
    "duration",
    "evidence_value",
    "fixed",
    "offset",
    "percent",
    "rate",
    "trim",
]

#: (unit, seconds, how many make the next unit); the last has no next.
_TIME_UNITS: tuple[tuple[str, float, int], ...] = (
    ("\u00b5s", 1e-6, 1000),
    ("ms", 1e-3, 1000),
    ("s", 1.0, 60),
    ("min", 60.0, 60),
    ("h", 3600.0, 24),
    ("d", 86400.0, 0),
)
_ZERO = re.compile(r"[0.]*")


def _number(value: object) -> float | None:
    """A finite JSON number as float (booleans are not numbers), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fixed(value: float, digits: int) -> str:
    """``value.toFixed(digits)`` as JavaScript writes it (0 for -0): the float's exact value
    (a ratio of integers) scaled by ``10**digits``, rounded half away from zero; ``-`` for
    what is not finite (a finite figure scaled past the largest float)."""
    if not math.isfinite(value):
        return "-"
    numerator, denominator = abs(value).as_integer_ratio()
    whole, rest = divmod(numerator * 10**digits, denominator)
    whole += 2 * rest >= denominator
    text = str(whole).rjust(digits + 1, "0")
    if digits:
        text = f"{text[:-digits]}.{text[-digits:]}"
    return f"-{text}" if value < 0 else text


def trim(text: str) -> str:
    """Trailing zeros after a decimal point dropped, and the point if nothing follows."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _sign(value: float, text: str, *, plus: bool = False) -> str:
    """The sign to put before ``text``, the rounded magnitude of ``value``."""
    if _ZERO.fullmatch(text):
        return ""
    return "-" if value < 0 else "+" if plus and value > 0 else ""


def _short(size: float) -> str:
    return trim(fixed(size, 1)) if size < 10 else fixed(size, 0)


def duration(value: object, *, plus: bool = False) -> str:
    """Seconds as ``412 ms``, ``1.3 s``, ``2 min`` (rules in the module docstring)."""
    seconds = _number(value)
    if seconds is None:
        return "-"
    size = abs(seconds)
    if size == 0:
        return "0 s"
    i = 0
    while i + 1 < len(_TIME_UNITS) and size >= _TIME_UNITS[i + 1][1]:
        i += 1
    text = _short(size / _TIME_UNITS[i][1])
    if _TIME_UNITS[i][2] and float(text) >= _TIME_UNITS[i][2]:
        i += 1
        text = _short(size / _TIME_UNITS[i][1])
    return f"{_sign(seconds, text, plus=plus)}{text} {_TIME_UNITS[i][0]}"


def offset(value: object) -> str:
    """A signed duration: ``+250 ms``, ``-30 s``."""
    return duration(value, plus=True)


def percent(value: object) -> str:
    """A ratio as ``99.95 %`` (rules in the module docstring)."""
    ratio = _number(value)
    if ratio is None:
        return "-"
    share = ratio * 100
    text = ""
    for digits in (2, 3, 4):
        text = trim(fixed(abs(share), digits))
        if text != "100" or abs(share) == 100:
            break
    return f"{_sign(share, text)}{text} %"


def amount(value: object) -> str:
    """A plain number: ``0.41``, ``14.4``, ``250``."""
    number = _number(value)
    if number is None:
        return "-"
    size = abs(number)
    text = trim(fixed(size, 2 if size < 10 else 1 if size < 100 else 0))
    return f"{_sign(number, text)}{text}"


def rate(value: object) -> str:
    """A burn rate: ``1.75x``."""
    text = amount(value)
    return text if text == "-" else f"{text}x"


def evidence_value(signal: object, value: object) -> str:
    """An evidence value or threshold in the unit its ``signal`` names."""
    last = ("" if signal is None else str(signal)).split(" ")[-1]
    if last.endswith(("_for", "_seconds", "p95")):
        return duration(value)
    if last.endswith(("_ratio", "_share")) or last == "unreachable":
        return percent(value)
    if last.startswith("burn_rate"):
        return rate(value)
    return amount(value)
