"""Where a key is in the TOML text of a config (tomllib reports no positions).

``Locator.line(table, index, key)`` finds the line of ``key`` in ``[table]`` (or element
``index`` of ``[[table]]``). A key inside inline tables or arrays
(``json_checks.1.bogus``) is followed into them, so the line is the key's own, not that
of the table holding it.
"""

from __future__ import annotations

import re

__all__ = ["Locator"]


class Locator:
    """Find the line of a key in the TOML text (tomllib reports no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*\"?([A-Za-z0-9_.-]+)\"?\s*=")

    def __init__(self, text: str) -> None:
        # blocks: (table path, array index or None, first line, last line)
        self.blocks: list[tuple[str, int | None, int, int]] = []
        self.lines = text.splitlines()
        counters: dict[str, int] = {}
        current: tuple[str, int | None, int] = ("", None, 1)
        for number, line in enumerate(self.lines, start=1):
            match = self._HEADER.match(line)
            if not match:
                continue
            self.blocks.append((*current, number - 1))
            table = match.group(2).replace('"', "").replace("'", "").replace(" ", "")
            if match.group(1) == "[[":
                counters[table] = counters.get(table, -1) + 1
                current = (table, counters[table], number)
            else:
                parent = table.split(".")[0]
                index = counters.get(parent) if parent in counters else None
                current = (table, index, number)
        self.blocks.append((*current, len(self.lines)))

    def line(self, table: str, index: int | None, key: str | None) -> int | None:
        """Line of ``key`` in ``table`` (element ``index`` of an array of tables)."""
        header: int | None = None
        for path, idx, first, last in self.blocks:
            if idx != index or not (path == table or path.startswith(table + ".")):
                continue
            if path == table and header is None:
                header = first
            sub = path[len(table) + 1 :] if path != table else ""
            for number in range(first, last + 1):
                if number < 1 or number > len(self.lines):
                    continue
                match = self._KEY.match(self.lines[number - 1])
                if not match or key is None:
                    continue
                full = f"{sub}.{match.group(1)}" if sub else match.group(1)
                if full == key or full.split(".")[0] == key:  # the key, or a dotted key in it
                    return number
                if key.startswith(f"{full}."):  # inside the value: inline tables, arrays
                    return inner_line(self.lines, number, key[len(full) + 1 :].split("."))
        return header


def _skip(text: str, pos: int) -> int:
    """The offset of the next value character: past blanks, newlines and comments."""
    while pos < len(text):
        if text[pos] in " \t\r\n":
            pos += 1
        elif text[pos] == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end + 1
        else:
            break
    return pos


def _end_of_string(text: str, pos: int) -> int:
    """The offset just past the string starting at ``pos`` (basic, literal, multi-line)."""
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        end = text.find(quote * 3, pos + 3)
        while quote == '"' and end > 0 and _escaped(text, end):
            end = text.find(quote * 3, end + 1)
        return len(text) if end < 0 else end + 3
    cursor = pos + 1
    while cursor < len(text) and text[cursor] not in (quote, "\n"):
        cursor += 2 if quote == '"' and text[cursor] == "\\" else 1
    return cursor + 1


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos - 1 - backslashes >= 0 and text[pos - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _end_of_value(text: str, pos: int) -> int:
    """The offset just past the value starting at ``pos`` (scalars end at , ] } or a newline)."""
    if pos >= len(text):
        return pos
    if text[pos] in "\"'":
        return _end_of_string(text, pos)
    if text[pos] in "[{":
        closing = "]" if text[pos] == "[" else "}"
        cursor = _skip(text, pos + 1)
        while cursor < len(text) and text[cursor] != closing:
            if text[cursor] == ",":
                cursor = _skip(text, cursor + 1)
                continue
            if text[pos] == "{":
                eq = text.find("=", cursor)
                cursor = _skip(text, (len(text) - 1 if eq < 0 else eq) + 1)
            cursor = _skip(text, _end_of_value(text, cursor))
        return cursor + 1
    cursor = pos
    while cursor < len(text) and text[cursor] not in ",]}\n#":
        cursor += 1
    return cursor


_BARE_KEY = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")


def _find(text: str, pos: int, parts: list[str]) -> int | None:
    """The offset of ``parts`` (indexes and keys) inside the value starting at ``pos``."""
    pos = _skip(text, pos)
    if not parts:
        return pos
    head, rest = parts[0], parts[1:]
    if pos >= len(text):
        return None
    if text[pos] == "[" and head.isdigit():
        cursor, index = _skip(text, pos + 1), 0
        while cursor < len(text) and text[cursor] != "]":
            if index == int(head):
                return _find(text, cursor, rest)
            cursor = _skip(text, _end_of_value(text, cursor))
            if cursor < len(text) and text[cursor] == ",":
                cursor = _skip(text, cursor + 1)
            index += 1
        return None
    if text[pos] == "{":
        cursor = _skip(text, pos + 1)
        while cursor < len(text) and text[cursor] != "}":
            match = _BARE_KEY.match(text, cursor)
            if match is None:
                return None
            if match.group(1).strip("\"'") == head:
                return cursor if not rest else _find(text, match.end(), rest)
            cursor = _skip(text, _end_of_value(text, _skip(text, match.end())))
            if cursor < len(text) and text[cursor] == ",":
                cursor = _skip(text, cursor + 1)
        return None
    return None


def inner_line(lines: list[str], number: int, parts: list[str]) -> int:
    """The line of ``parts`` inside the value of the key on line ``number`` (else ``number``)."""
    text = "\n".join(lines[number - 1 :])
    eq = text.find("=")
    if eq < 0 or not parts:
        return number
    try:
        found = _find(text, eq + 1, parts)
    except (IndexError, ValueError):  # text that is not TOML: keep the key's own line
        return number
    return number if found is None else number + text.count("\n", 0, found)
