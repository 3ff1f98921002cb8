"""Config rules that need no model: credential names, header values, environment overrides.

The first two return problems without file and line, which the caller in
:mod:`probed.config` adds; the environment check has no line to name.
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class _Described(Protocol):
    """A secret reference (``probed.config.SecretRef``): it can say where it comes from."""

    def describe(self) -> str: ...


__all__ = [
    "credential_name_problem",
    "env_list_problems",
    "header_value_problems",
    "without_invalid_keys",
]


def credential_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain systemd credential name, or ``None`` if it is one.

    A name is joined to ``$CREDENTIALS_DIRECTORY``: with a ``/`` (``../x``) or as
    ``.``/``..`` it would read outside it, and a NUL cannot be passed to the OS.
    """
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        return f"credential name {name!r} is not a plain name (no '/' or NUL, not '.' or '..')"
    return None


def header_value_problems(
    headers: Mapping[str, str | _Described], resolved: Mapping[str, str]
) -> Iterator[tuple[str, str]]:
    """(key, problem) for each resolved header value with a control character other than tab.

    aiohttp refuses such a value on every request; the message names the
    secret's source, never the value.
    """
    for name, value in resolved.items():
        if any(c != "\t" and unicodedata.category(c) == "Cc" for c in value):
            ref = headers[name]
            source = "" if isinstance(ref, str) else f"(from {ref.describe()}) "
            yield (
                f"headers.{name}",
                f"the header value {source}contains a line break or another control "
                "character; a header value must be one line",
            )


def env_list_problems(
    path: Path, environ: Mapping[str, str], prefix: str, lists: Iterable[str]
) -> list[str]:
    """A problem for each variable that would set a top-level list (or an element of one).

    ``probed.configoverrides`` reads ``PROBED_PROBES='[...]'`` as the whole list, silently
    replacing the file's; an override is meant for one value. Names match
    without regard to case, as the overrides match them.
    """
    problems = []
    for variable in sorted(environ):
        for field in lists:
            name = f"{prefix}{field}".upper()
            if variable.upper() == name or variable.upper().startswith(f"{name}__"):
                problems.append(
                    f"{path}: environment variable {variable}: {field!r} is a list, and lists "
                    "come from the config file; environment variables override single values "
                    "(e.g. PROBED_DAEMON__LISTEN)"
                )
    return problems


def without_invalid_keys(
    raw: Mapping[str, Any], locations: Iterable[Sequence[int | str]], kinds: Iterable[str]
) -> tuple[dict[str, Any], set[str]] | None:
    """``raw`` without the keys schema validation refused, and the entries they were in.

    So that one typo does not hide every other problem: the caller validates the
    rest again and reports its semantic problems too, except those of the entries
    named here (``probes[3]``, ``target 'app'``, ``[daemon]``), whose remaining
    values may be defaults standing in for the refused ones. None when a location
    cannot be removed (a required key is missing, a whole section is wrong).
    """
    repaired = copy.deepcopy(dict(raw))
    entries: set[str] = set()
    tags = set(kinds)
    for loc in locations:
        parts = list(loc)
        if len(parts) >= 3 and parts[0] == "probes" and parts[2] in tags:
            parts.pop(2)  # the tagged union's tag is no key of the table
        if len(parts) < 2:
            return None
        holder: Any = repaired
        for part in parts[:-1]:
            try:
                holder = holder[part]
            except (KeyError, IndexError, TypeError):
                return None
        if not isinstance(holder, dict) or parts[-1] not in holder:
            return None
        del holder[parts[-1]]
        section, key = parts[0], parts[1]
        if isinstance(key, int):
            entries.add(f"{section}[{key}]")
        elif section == "targets":
            entries.add(f"target {key!r}")
        else:
            entries.add(f"[{section}]")
    return repaired, entries
