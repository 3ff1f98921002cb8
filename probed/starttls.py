"""aiohttp's import at the daemon's start: the system CA store loaded once, in a thread.

aiohttp builds its two default client TLS contexts when it is imported
(``aiohttp.connector``): a verifying one (``ssl.create_default_context()``) and one that
verifies nothing (``CERT_NONE``, no host name check), into which it loads the system CA
store as well. With OpenSSL 3 each load parses the whole bundle: 28-57 ms of a 0.4 s start
here (bench/README.md, "Issue 15: session 18"). probed's probes use their own contexts
(``probed.http.tls``), sharing aiohttp's verifying one; nothing reads the other's CAs.

* :func:`begin`, called first thing by ``probed run`` and ``probed demo``, builds the
  verifying context in a thread while the command's modules are imported (OpenSSL parses
  the bundle without holding the GIL);
* :func:`import_aiohttp` imports aiohttp handing it that context (waiting for the thread
  if it is not done) and skipping the second load: only for a context that is
  ``CERT_NONE`` without a host name check. ``ssl`` is restored as soon as aiohttp is
  imported; every other context loads the store as usual. Without :func:`begin`, or if
  the thread failed, aiohttp builds its verifying context itself, as it would have.

The ground floor: no other probed module.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import threading

__all__ = ["begin", "import_aiohttp"]

_built: list[ssl.SSLContext] = []
_building: threading.Thread | None = None
_create_default_context = ssl.create_default_context
"""The thread's own reference: :func:`import_aiohttp` replaces ``ssl``'s while aiohttp is
imported, maybe before the thread got to call it."""


def _build() -> None:
    with contextlib.suppress(Exception):  # aiohttp's import then builds it, and reports
        _built.append(_create_default_context())


def begin() -> None:
    """Start building aiohttp's verifying context in a thread (once, before aiohttp)."""
    global _building
    if _building is None and "aiohttp.connector" not in sys.modules:
        _building = threading.Thread(target=_build, name="probed-ca-load", daemon=True)
        _building.start()


def _built_context() -> ssl.SSLContext | None:
    """The context :func:`begin`'s thread built (once), waiting for it; None without one."""
    if _building is None:
        return None
    _building.join()
    return _built.pop() if _built else None


def import_aiohttp() -> None:
    """Import aiohttp (its connector) unless it is imported: its verifying context the one
    :func:`begin` built, its non-verifying one without the system CA store."""
    if "aiohttp.connector" in sys.modules:
        return
    own = ssl.SSLContext.__dict__.get("set_default_verify_paths")
    load = ssl.SSLContext.set_default_verify_paths
    create = ssl.create_default_context

    def set_default_verify_paths(context: ssl.SSLContext) -> None:
        if context.verify_mode == ssl.CERT_NONE and not context.check_hostname:
            return  # verifies nothing: no trust anchor is ever read
        load(context)

    def create_default_context(*args: object, **kwargs: object) -> ssl.SSLContext:
        if not args and not kwargs:  # aiohttp's own call
            context = _built_context()
            if context is not None:
                return context
        return create(*args, **kwargs)  # type: ignore[arg-type]

    ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign,assignment]
    ssl.create_default_context = create_default_context
    try:
        import aiohttp.connector  # noqa: F401  (importing it is the point)
    finally:
        ssl.create_default_context = create
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]
