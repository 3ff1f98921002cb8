"""aiohttp's import at the daemon's start: the system CA store loaded once, not twice.

aiohttp builds its two default client TLS contexts when it is imported
(``aiohttp.connector``): a verifying one (``ssl.create_default_context``) and one that
verifies nothing (``CERT_NONE``, no host name check), into which it loads the system CA
store as well. A context that verifies nothing never reads a trust anchor, and with
OpenSSL 3 each load parses the whole bundle again: 30-45 ms of a 0.4 s start here
(bench/README.md, "Issue 15: session 18"). probed's probes use their own contexts
(``probed.http.tls``), sharing aiohttp's verifying one; nothing uses the other's CAs.

:func:`import_aiohttp` imports aiohttp with that one load skipped: only for a context
that is ``CERT_NONE`` without a host name check, only while aiohttp is imported, and
``ssl.SSLContext`` is restored at once. Every other context loads the store as usual.

The ground floor: no other probed module.
"""

from __future__ import annotations

import ssl
import sys

__all__ = ["import_aiohttp"]


def import_aiohttp() -> None:
    """Import aiohttp (its connector) unless it is imported, with its non-verifying
    context built without the system CA store."""
    if "aiohttp.connector" in sys.modules:
        return
    own = ssl.SSLContext.__dict__.get("set_default_verify_paths")
    load = ssl.SSLContext.set_default_verify_paths

    def set_default_verify_paths(context: ssl.SSLContext) -> None:
        if context.verify_mode == ssl.CERT_NONE and not context.check_hostname:
            return  # verifies nothing: no trust anchor is ever read
        load(context)

    ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign,assignment]
    try:
        import aiohttp.connector  # noqa: F401  (importing it is the point)
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]
