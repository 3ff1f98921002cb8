"""Values read from the network, converted only within bounds.

A target controls every byte probed reads from it, so a conversion that is
harmless for sane input must not raise, recurse without limit or allocate
without limit for hostile input:

* JSON nesting deeper than :data:`MAX_JSON_DEPTH` is refused before parsing
  (CPython's decoder would otherwise raise ``RecursionError``, or exhaust the C
  stack with a raised recursion limit);
* a sequence number is an ``int`` or a string of at most
  :data:`MAX_SEQUENCE_DIGITS` ASCII digits (``str.isdigit`` accepts ``"²"``,
  which ``int()`` refuses, and ``int()`` refuses more than 4,300 digits).

JSON is parsed by orjson (about ten times faster than ``json``: a stream watcher parses
every event) with ``json``'s results: what orjson refuses (``NaN``, a lone surrogate,
another encoding than UTF-8) or would read differently (an integer beyond 64 bits, which
it makes a float) goes to ``json``.

Nothing here imports the rest of probed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import orjson

__all__ = ["MAX_JSON_DEPTH", "MAX_SEQUENCE_DIGITS", "JsonTooDeep", "json_loads", "sequence_number"]

MAX_JSON_DEPTH = 256
"""Deepest nesting of arrays and objects accepted in JSON from a target."""

MAX_SEQUENCE_DIGITS = 18
"""Longest decimal sequence number accepted (anything below 10**18 fits in 63 bits)."""
_SEQUENCE_BOUND = 10**MAX_SEQUENCE_DIGITS

_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")
"""An integer beyond 64 bits has at least 19 digits (orjson would read it as a float)."""


class JsonTooDeep(ValueError):
    """JSON nested deeper than the bound: refused without parsing."""


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings ignored)."""
    brackets = _BRACKETS.findall(_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def json_loads(
    text: str | bytes,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads`` that raises :class:`JsonTooDeep` (a ``ValueError``) past ``max_depth``.

    The depth is only measured when there are more opening brackets than
    ``max_depth`` at all, so ordinary documents cost one ``count`` per bracket kind (none
    when they are too short to hold that many).
    """
    if len(text) <= max_depth:  # too short to open more brackets than that
        pass
    elif isinstance(text, bytes | bytearray):
        opens = text.count(b"[") + text.count(b"{")
        if opens > max_depth:
            text = text.decode("utf-8")  # a UnicodeDecodeError is a ValueError too
            if json_depth(text) > max_depth:
                raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    elif text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    if isinstance(text, str):
        plain = len(text) < 19 or _LONG_DIGITS.search(text) is None
    else:
        plain = len(text) < 19 or _LONG_DIGITS_BYTES.search(text) is None
    if plain:
        try:
            return orjson.loads(text)
        except (orjson.JSONDecodeError, UnicodeEncodeError):
            pass  # json decides, and raises its own error for what is not JSON
    return json.loads(text, parse_constant=parse_constant)


def sequence_number(value: object) -> int | None:
    """``value`` as a sequence number, or None if it is not one within bounds."""
    if value.__class__ is int:  # the common case, as below
        return value if -_SEQUENCE_BOUND < value < _SEQUENCE_BOUND else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < _SEQUENCE_BOUND else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) if len(value) <= MAX_SEQUENCE_DIGITS else None
    return None
