"""The transition history in the status document, on the status page and in ``probed status``.

The document (``probed.status.status_document``) gets a ``history`` list: the
newest ``probed.history.API_LIMIT`` entries, newest first, each ``{at, kind,
name, old, new, detail}`` (``at`` in Unix seconds, ``old`` null when a
recommendation appears or for a reload).

The page ends with a "History" section: one ``tr.history[data-kind]`` per entry
(time, kind, name, old → new, detail). ``probed status`` prints the newest
``TABLE_LIMIT``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from probed.history import API_LIMIT, History

__all__ = ["TABLE_LIMIT", "history_list", "page_history", "table_history"]

TABLE_LIMIT = 10
"""Entries ``probed status`` prints."""
_ARROW = "\u2192"


def history_list(history: History | None) -> list[dict[str, Any]]:
    """The document's ``history``: the newest entries, newest first ([] without a history)."""
    return [] if history is None else history.latest(API_LIMIT)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _e(value: object) -> str:
    return html.escape(_text(value), quote=True)


def _entries(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = doc.get("history")
    return [h for h in entries if isinstance(h, Mapping)] if isinstance(entries, list) else []


def _change(h: Mapping[str, Any]) -> str:
    return f"{_text(h.get('old')) or '-'} {_ARROW} {_text(h.get('new')) or '-'}"


def page_history(doc: Mapping[str, Any], iso: Callable[[object], str]) -> str:
    """The page's ``section#history`` for ``doc``."""
    entries = _entries(doc)
    if not entries:
        return (
            '<section id="history"><h2>History</h2>'
            '<p class="empty">No transitions yet.</p></section>'
        )
    rows = "".join(
        f'<tr class="history" data-kind="{_e(h.get("kind"))}"><td>{iso(h.get("at"))}</td>'
        f"<td>{_e(h.get('kind'))}</td><td>{_e(h.get('name'))}</td><td>{_e(_change(h))}</td>"
        f"<td>{_e(h.get('detail'))}</td></tr>"
        for h in entries
    )
    return (
        '<section id="history"><h2>History</h2>'
        '<div class="scroll"><table><thead><tr><th>Time</th><th>Kind</th>'
        "<th>Name</th><th>Change</th><th>Detail</th></tr></thead><tbody>"
        f"{rows}</tbody></table></div></section>"
    )


def table_history(
    doc: Mapping[str, Any],
    iso: Callable[[object], str],
    plain: Callable[[object], str],
    columns: Callable[[Sequence[str], Sequence[Sequence[str]]], list[str]],
) -> list[str]:
    """``probed status``'s lines for the newest ``TABLE_LIMIT`` entries."""
    rows = [
        [
            iso(h.get("at")),
            plain(h.get("kind")),
            plain(h.get("name")),
            plain(_change(h)),
            plain(h.get("detail")) or "-",
        ]
        for h in _entries(doc)[:TABLE_LIMIT]
    ]
    if not rows:
        return ["", "HISTORY", "  none"]
    return ["", *columns(["HISTORY", "KIND", "NAME", "CHANGE", "DETAIL"], rows)]
