"""Dotted paths into parsed JSON (``data.items.0.id``), shared by probes and watchers."""

from __future__ import annotations

from typing import Any

__all__ = ["lookup"]


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
