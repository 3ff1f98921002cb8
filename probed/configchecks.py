"""Config rules that need no model: credential names, header values, environment overrides.

Each check returns a problem (a message without file and line) or nothing; the
caller in :mod:`probed.config` adds where it was found.
"""

from __future__ import annotations

__all__ = ["credential_name_problem"]


def credential_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain systemd credential name, or ``None`` if it is one.

    A name is joined to ``$CREDENTIALS_DIRECTORY``: with a ``/`` (``../x``) or as
    ``.``/``..`` it would read outside it, and a NUL cannot be passed to the OS.
    """
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        return f"credential name {name!r} is not a plain name (no '/' or NUL, not '.' or '..')"
    return None
