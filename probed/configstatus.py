"""The running config in the status: which file runs, and why the file on disk does not.

:func:`config_document` is the ``config`` object of ``GET /api/v1/status``::

    {last_reload_successful, last_reload_error, last_reload_at, path, hash, loaded_at}

and, after a failed reload, also ``failed_at``, ``file_hash`` (the hash of the file
that failed; null when it could not be read), ``problems`` (the first
``MAX_PROBLEMS``) and ``more_problems`` (how many were left out). ``hash`` and
``file_hash`` are ``configfile.config_digest`` of the file's bytes.

:func:`config_line` is the one line the status page and ``probed status`` show::

    config a1b2c3d4e5f6 from /etc/probed/probes.toml, loaded 2026-02-08T10:02:00Z
    config reload failed at 2026-02-08T10:40:12Z: <first problem> (and 2 more problems);
    running config a1b2c3d4e5f6 from 2026-02-08T10:02:00Z, file on disk d4e5f6a7b8c9

(the second is one line).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probed.metrics import DaemonInfo

__all__ = ["MAX_PROBLEMS", "config_document", "config_line", "page_config_line"]

MAX_PROBLEMS = 3
"""Problems of a failed reload listed in the status document (the log has them all)."""


def config_document(info: DaemonInfo) -> dict[str, Any]:
    """The ``config`` object of the status document, from what the daemon recorded."""
    doc: dict[str, Any] = {
        "last_reload_successful": info.config_reload_successful,
        "last_reload_error": info.config_reload_error,
        "last_reload_at": info.config_reload_timestamp,
        "path": info.config_path,
        "hash": info.config_hash,
        "loaded_at": info.config_loaded_at,
    }
    if not info.config_reload_successful:
        problems = info.config_problems
        doc["failed_at"] = info.config_reload_failed_at
        doc["file_hash"] = info.config_file_hash
        doc["problems"] = problems[:MAX_PROBLEMS]
        doc["more_problems"] = max(0, len(problems) - MAX_PROBLEMS)
    return doc


def _text(value: object) -> str:
    return "" if value is None else str(value)


def config_line(config: object, iso: Callable[[object], str]) -> tuple[bool, str] | None:
    """``(ok, line)`` for a status document's ``config``; None when it names no running config
    file (a daemon before ``hash`` existed, or a config not loaded from a file) and no reload
    failed. ``iso`` formats a Unix time (the renderers' own, so every time reads alike).
    """
    if not isinstance(config, Mapping) or "hash" not in config:
        return None
    running, failed = _text(config.get("hash")), config.get("last_reload_successful") is False
    if not (running or failed):
        return None
    running = running or "-"
    if not failed:
        path, loaded = _text(config.get("path")), iso(config.get("loaded_at"))
        return True, f"config {running} from {path}, loaded {loaded}"
    listed = config.get("problems")
    problems = [_text(p) for p in listed] if isinstance(listed, list) else []
    rest = config.get("more_problems")
    rest = rest if isinstance(rest, int | float) and not isinstance(rest, bool) else 0
    more = max(0, len(problems) - 1) + (math.trunc(rest) if math.isfinite(rest) and rest > 0 else 0)
    tail = f" (and {more} more problem{'' if more == 1 else 's'})" if more else ""
    first = problems[0] if problems else "-"
    on_disk = _text(config.get("file_hash")) or "unreadable"
    return False, (
        f"config reload failed at {iso(config.get('failed_at'))}: {first}{tail}; "
        f"running config {running} from {iso(config.get('loaded_at'))}, file on disk {on_disk}"
    )


def page_config_line(doc: Mapping[str, Any], iso: Callable[[object], str]) -> str:
    """The page's ``p#config[data-ok]`` for ``doc`` (empty when it names no running config)."""
    line = config_line(doc.get("config"), iso)
    if line is None:
        return ""
    ok, text = line
    escaped = html.escape(text, quote=True)
    return f'<p class="config" id="config" data-ok="{"true" if ok else "false"}">{escaped}</p>'
