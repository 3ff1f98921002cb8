"""What probed's own HTTP server counts: open connections and what it turned away.

Written by the connection guard (``probed.serverguard``) and the auth checks
(``probed.webauth``), read by the metrics collector; plain data, no I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["REJECT_REASONS", "ServerStats"]

REJECT_REASONS = ("over_capacity", "evicted", "header_timeout", "accept_error")
"""Why the HTTP server closed or refused a connection (see probed.serverguard)."""


@dataclass(slots=True)
class ServerStats:
    """The daemon's own HTTP server: open connections and what it turned away."""

    connections: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    """Connections closed or refused, by reason (``REJECT_REASONS``)."""
    auth_overloaded: int = 0
    """Requests answered 429 because the bcrypt queue was full."""

    def copy(self) -> ServerStats:
        """A copy safe to read off the event loop."""
        return ServerStats(self.connections, Counter(self.rejected), self.auth_overloaded)
