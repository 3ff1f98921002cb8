"""The status page at ``/``: one self-contained HTML document, and its 10 s refresh.

The page is rendered once, on the server, from the status document (``probed.status``):
``main#app`` holds ``probed.pagesections.page_app``. It has no external assets: inline
CSS (``probed.pagestyle``), inline SVG and one inline script, allowed by a
Content-Security-Policy that names their hashes and permits network access only to the
page's own origin.

The script does not render anything itself. Every ``REFRESH_SECONDS`` it fetches
``status/fragment`` (relative, so a path prefix of a reverse proxy works), which the
server answers with ``render_fragment``: the page's ``<title>`` and the new inside of
``main#app``, rendered by the same Python code as the page. The script sets the title,
swaps the rest into ``main#app`` and marks it ``data-rendered="client"``. When the fetch
fails, the page keeps what it shows and ``#refresh`` says "update failed (…); showing
older data".
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from typing import Any

from probed.pagesections import page_app
from probed.pagestyle import PAGE_CSS
from probed.statusfields import text

__all__ = [
    "FRAGMENT_CSP",
    "FRAGMENT_PATH",
    "REFRESH_SECONDS",
    "render_fragment",
    "render_page",
]

#: How often the status page fetches a fresh fragment.
REFRESH_SECONDS = 10
#: Where the server answers ``render_fragment`` (the script fetches it relative to the page).
FRAGMENT_PATH = "/status/fragment"
#: The policy of the fragment's own response: opened on its own it runs and loads nothing.
FRAGMENT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'"

_SCRIPT = r"""
(() => {
  "use strict";
  const REFRESH_MS = __REFRESH__ * 1000;
  const app = document.getElementById("app");
  const refresh = async () => {
    try {
      const resp = await fetch("__FRAGMENT__", {
        cache: "no-store",
        headers: {Accept: "text/html"},
      });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const fragment = document.createElement("template");
      fragment.innerHTML = await resp.text();
      const title = fragment.content.querySelector("title");
      if (title === null || fragment.content.getElementById("overall") === null) {
        throw new Error("not a status fragment");
      }
      document.title = title.textContent;
      title.remove();
      app.replaceChildren(fragment.content);
      app.setAttribute("data-rendered", "client");
    } catch (err) {
      const note = document.getElementById("refresh");
      if (note) {
        const why = err && err.message ? err.message : String(err);
        note.textContent = `update failed (${why}); showing older data`;
        note.setAttribute("data-error", "true");
      }
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  };
  setTimeout(refresh, REFRESH_MS);
})();
""".replace("__REFRESH__", str(REFRESH_SECONDS)).replace("__FRAGMENT__", FRAGMENT_PATH[1:])


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


#: Only the page's own style and script run; network access only to its own origin.
_CSP = (
    f"default-src 'none'; style-src {_csp_hash(PAGE_CSS)}; script-src {_csp_hash(_SCRIPT)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return html.escape(text(value), quote=True)


def _page_title(doc: Mapping[str, Any]) -> str:
    return f"{text(doc.get('overall')) or 'UNKNOWN'} - probed status - {text(doc.get('location'))}"


def render_page(doc: Mapping[str, Any]) -> str:
    """The status page at ``/``: one self-contained HTML document rendered from ``doc``.

    Stable hooks for tests and scripts: ``#overall[data-state]``,
    ``.component[data-name][data-state][data-monitored]`` (``false``: no members),
    ``.recommendation[data-scenario][data-severity][data-state]`` (``.routing`` inside),
    ``p#state[data-healthy]``, ``p#config[data-ok]``, ``tr.slo[data-slo]``,
    ``tr.probe[data-probe][data-ok]`` (``true``, ``false`` or ``none``),
    ``tr.stream[data-stream][data-connected]``, ``tr.history[data-kind]`` and
    ``main#app[data-rendered]`` (``server``, or ``client`` once a refresh swapped in a
    fragment).
    """
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(_page_title(doc))}</title>\n"
        f"<style>{PAGE_CSS}</style>\n</head><body>\n"
        f'<main id="app" data-rendered="server">{page_app(doc, REFRESH_SECONDS)}</main>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def render_fragment(doc: Mapping[str, Any]) -> str:
    """What ``GET /status/fragment`` answers: the page's ``<title>`` for ``doc``, then the
    inside of its ``main#app``, exactly as ``render_page(doc)`` has them."""
    return f"<title>{_e(_page_title(doc))}</title>{page_app(doc, REFRESH_SECONDS)}"
