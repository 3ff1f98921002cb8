"""How a stream connection ends: the fixed set of reasons, and the exception that carries one.

Reconnect reasons (the ``reason`` label of ``probed_stream_reconnects_total``)
form a fixed set: ``eof``, ``stalled``, ``no_events``, ``oversize``, ``flood`` (more than
``max_event_rate`` events and comments in a second), ``content_type``,
``status``, ``no_content`` (204: the server asked us to stop; we retry at
``reconnect_max``), ``connect_timeout`` (the connection, TCP and TLS, did not
complete within ``connect_timeout``), ``header_timeout`` (it did, and the request
was sent, but no response headers followed in time: a buffering proxy, a stuck
server) and the connection reasons of
``probed.probes.base.Reason`` (``dns``, ``connect_refused``, ``connect_error``,
``tls``, ``protocol_error``, ``redirected_to_other_origin``: a stream follows
redirects within its origin only), ``error`` for any other client error, or
``internal_error`` when probed itself failed on what the server sent (a bug:
logged with its traceback at most once a minute per stream). No exception of a
watcher ever reaches the daemon's TaskGroup.

The reasons are the ``reason`` label's values; a client failure is mapped onto them by
``ended_by``, by the same classification probes use (``classify_exception``).
"""

from __future__ import annotations

import aiohttp

from probed.http.classify import classify_exception
from probed.http.wire import WireConnectError
from probed.results import Reason

__all__ = ["RECONNECT_REASONS", "Ended", "StopAsked", "ended_by"]

RECONNECT_REASONS = (
    "eof", "stalled", "no_events", "oversize", "flood", "content_type", "status", "no_content",
    "connect_timeout", "header_timeout",
    Reason.DNS.value, Reason.CONNECT_REFUSED.value, Reason.CONNECT_ERROR.value, Reason.TLS.value,
    Reason.PROTOCOL_ERROR.value, Reason.REDIRECTED_TO_OTHER_ORIGIN.value, "error",
    Reason.INTERNAL_ERROR.value,
)  # fmt: skip


class Ended(Exception):
    """A connection ended, for ``reason``; ``healthy`` if it received anything first."""

    def __init__(self, reason: str, healthy: bool, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.healthy = healthy
        self.detail = detail
        self.lived = 0.0
        """Seconds from the response headers to the end (0 if it never got that far)."""


class StopAsked(Ended):
    """HTTP 204: the server asked clients to stop reconnecting."""


def ended_by(exc: aiohttp.ClientError | WireConnectError, healthy: bool) -> Ended:
    """A client failure as the connection's end, by its reason."""
    reason, _, detail = classify_exception(exc)
    label = reason.value if reason.value in RECONNECT_REASONS else "error"
    return Ended(label, healthy, detail)
