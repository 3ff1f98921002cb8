"""The TLS client contexts of probes and streams: one per trust setting, made once.

Every request gets one of probed's own contexts (never aiohttp's ``ssl=True/False``
defaults) so that the TLS handshake is timed apart from connect; a target's
``ca_file`` gets its own context, reloaded when the file changes.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from probed.config import TargetConfig
from probed.errors import ProbeFailure
from probed.http.session import timed_ssl_context
from probed.results import Reason

__all__ = ["prepare_tls", "ssl_for"]

# Every request gets one of probed's own contexts (never aiohttp's ``ssl=True/False``
# defaults) so that the TLS handshake is timed apart from connect; the contexts are
# made once per process and reused, which also keeps pooled connections keyed alike.

_ca_contexts: dict[str, tuple[int, ssl.SSLContext]] = {}


def _probe_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context`` offering HTTP/1.1 by ALPN (as aiohttp's own do) and timing handshakes."""
    context.set_alpn_protocols(("http/1.1",))
    return timed_ssl_context(context)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _shared_verifying_context() -> ssl.SSLContext:
    """aiohttp's own verifying context, made at its import, or a new one if it has none.

    Its settings are ours (system CAs, ALPN http/1.1); sharing it saves loading the
    system CAs a second time (time and resident memory). Installing the handshake
    timing on it changes nothing else for aiohttp's other users.
    """
    from aiohttp import connector

    context = getattr(connector, "_SSL_CONTEXT_VERIFIED", None)
    if not isinstance(context, ssl.SSLContext) or context.verify_mode != ssl.CERT_REQUIRED:
        context = ssl.create_default_context()
    return _probe_context(context)


# Made at import (loading the system CAs takes a while), not inside the first run.
_VERIFYING = _shared_verifying_context()
_NOT_VERIFYING = _probe_context(_unverified_context())


def prepare_tls(targets: Iterable[TargetConfig]) -> None:
    """Load the ``ca_file`` contexts of ``targets`` now (configure time), not inside a run."""
    for target in targets:
        if target.ca_file is not None and not target.insecure_skip_verify:
            with contextlib.suppress(ProbeFailure):  # reported by the first run instead
                _ca_context(target.ca_file)


def _ca_context(path: Path) -> ssl.SSLContext:
    """A verifying context trusting ``path``; loaded once, again only if the file changes."""
    key = os.fspath(path)
    try:
        mtime = os.stat(key).st_mtime_ns
        cached = _ca_contexts.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        context = _probe_context(ssl.create_default_context(cafile=key))
    except OSError as exc:
        raise ProbeFailure(Reason.TLS, f"cannot load ca_file {key}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise ProbeFailure(Reason.TLS, f"cannot load ca_file {key}: {exc.reason}") from None
    _ca_contexts[key] = (mtime, context)
    return context


def ssl_for(target: TargetConfig, default: ssl.SSLContext | bool = True) -> ssl.SSLContext:
    """The ``ssl=`` argument for a request to ``target``: always a handshake-timing context.

    ``insecure_skip_verify`` → a shared context without verification; ``ca_file`` → a
    context trusting that file (cached); otherwise ``default``: ``True`` → the shared
    verifying context, ``False`` → the non-verifying one, an ``SSLContext`` → itself
    (its handshakes timed unless it has its own ``sslobject_class``).
    """
    if target.insecure_skip_verify:
        return _NOT_VERIFYING
    if target.ca_file is not None:
        return _ca_context(target.ca_file)
    if isinstance(default, ssl.SSLContext):
        return timed_ssl_context(default)
    return _VERIFYING if default else _NOT_VERIFYING


# --- the request ----------------------------------------------------------------------
