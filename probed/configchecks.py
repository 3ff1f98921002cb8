"""Config rules that need no model: credential names, header values, environment overrides.

The first two return problems without file and line, which the caller in
:mod:`probed.config` adds; the environment check has no line to name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol


class _Described(Protocol):
    """A secret reference (``probed.config.SecretRef``): it can say where it comes from."""

    def describe(self) -> str: ...


__all__ = ["credential_name_problem", "env_list_problems", "header_value_problems"]


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

    pydantic-settings reads ``PROBED_PROBES='[...]'`` as the whole list, silently
    replacing the file's; an override is meant for one value. Names match
    without regard to case, as pydantic-settings matches them.
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
