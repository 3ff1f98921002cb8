"""Dotted paths into parsed JSON (``data.items.0.id``), shared by probes and watchers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["getter", "lookup"]


def lookup(obj: Any, path: str) -> Any:
    """The value at dotted ``path`` (``a.b.0.c``: integer parts index lists).

    Raise ``LookupError`` if any part is absent.
    """
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj[part]  # KeyError is a LookupError
        elif isinstance(obj, list) and part.isascii() and part.isdigit():
            obj = obj[int(part)]  # IndexError is a LookupError
        else:
            raise LookupError(path)
    return obj


def getter(path: str) -> Callable[[Any], Any]:
    """``lookup`` of ``path`` made once: the value at ``path`` in the data it is given, or
    None where ``lookup`` raises (for a stream watcher's fields, read on every event)."""
    parts = tuple(path.split("."))
    if any(part.isascii() and part.isdigit() for part in parts):  # may index a list

        def indexing(obj: Any) -> Any:
            try:
                return lookup(obj, path)
            except LookupError:
                return None

        return indexing
    if len(parts) == 1:
        (key,) = parts

        def one_key(obj: Any) -> Any:
            return obj.get(key) if isinstance(obj, dict) else None

        return one_key

    def keys(obj: Any) -> Any:
        for part in parts:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(part)
        return obj

    return keys
