"""How long a stream subscriber waits before its next connection.

After each connection ends, :meth:`ReconnectPolicy.delay` picks the wait:

- A connection that received something (an event or a heartbeat comment) and
  lived at least ``min_connection_lifetime`` from its response headers to its
  end was *healthy*: the backoff starts over, and the next connection follows
  after the server's ``retry:`` (capped at ``retry_max``), or
  ``reconnect_initial`` when it sent none, jittered up to 1.5 times that.
- Any other end is a *failed attempt*: a connect or HTTP failure, nothing
  received, and any connection shorter than ``min_connection_lifetime``
  whatever it received and whatever its ``retry:`` says. The n-th failed attempt
  in a row waits for backoff step ``reconnect_initial * 2**(n-1)`` (at most
  ``reconnect_max``), jittered to between half and all of it, and never less
  than the server's ``retry:``.
- HTTP 204 (the server asked clients to stop) waits ``reconnect_max``.

Every wait is then at least ``min_reconnect_delay`` (a shorter one is drawn again
between it and 1.5 times it, so that the streams of a target that ended together do not
come back together) and at most the larger of ``reconnect_max`` and ``retry_max``.

The bound. A subscriber opens its next connection only after the previous one
ended and the wait passed, so its connections start at least
``min_reconnect_delay`` apart: at most ``60 / min_reconnect_delay + 1`` in any
minute (61 with the default 1 s), ``subscribers`` times that per stream, whatever
the server does (:func:`max_connects`). A server that ends every connection early
meets the growing backoff well below that bound: with the defaults at most 9
connections in the first minute, then one every 15 to 30 s; one that mixes in
connections living past ``min_connection_lifetime`` (each starting the backoff
over) stays under 30 a minute.

Why these defaults. 1 s: a server's ``retry: 0`` (or a tiny backoff step) must not
mean a connection per event-loop turn, and a second of blind time per reconnect
costs a prober little. 5 s: a server that answers, sends one event and closes does
so within milliseconds to a few hundred, so it cannot pass for healthy; a working
stream lives minutes to hours, so it passes within its first seconds.

A ``retry:`` above ``retry_max`` is capped; each capped value is logged once
(``stream_retry_capped``, for up to 64 distinct values per stream) and every
capped wait counts in ``StreamStats.retry_capped``; ``StreamStats.server_retry``
keeps the last ``retry:`` the server asked for, before capping.
"""

from __future__ import annotations

import random

import structlog

from probed.config import SseStream
from probed.store import StreamStats

__all__ = ["ReconnectPolicy", "max_connects"]

_log = structlog.get_logger("probed.stream")

_CAPPED_LOGGED_MAX = 64
"""Distinct capped ``retry:`` values logged per stream; later ones are only counted."""
_RETRY_MS_MAX = 10**12
"""A ``retry:`` is reported as at most this many milliseconds (it may have 400 digits)."""
_JITTER = 1.5
"""A healthy end's wait, and one the floor raises, is drawn up to this many times it."""
_STEPS_MAX = 40
"""Backoff doublings computed at most (``reconnect_max`` caps the step long before)."""


def max_connects(spec: SseStream, seconds: float) -> int:
    """The most connections ``spec``'s subscribers can open in any ``seconds`` (by construction)."""
    return spec.subscribers * (int(seconds / spec.min_reconnect_delay) + 1)


class ReconnectPolicy:
    """The wait before one stream's next connection (shared by its subscribers)."""

    def __init__(self, spec: SseStream, stats: StreamStats, rng: random.Random) -> None:
        self.spec = spec
        self.stats = stats
        self._rng = rng
        self._capped_logged: set[int] = set()

    def delay(self, *, failures: int, retry_ms: int | None, stop_asked: bool = False) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (0: a healthy end)."""
        spec = self.spec
        retry = self.server_retry(retry_ms)
        if stop_asked:
            wait = spec.reconnect_max
        elif failures <= 0:
            base = retry if retry is not None else spec.reconnect_initial
            wait = self._rng.uniform(base, base * _JITTER)
        else:
            step = spec.reconnect_initial * 2 ** min(failures - 1, _STEPS_MAX)
            step = min(spec.reconnect_max, step)
            wait = self._rng.uniform(step / 2, step)
            if retry is not None:
                wait = max(wait, retry)
        floor = spec.min_reconnect_delay
        if wait < floor:
            # jittered as any wait is: streams ended together (a restart, a proxy's idle
            # timeout) would all come back exactly the floor later, in one burst
            wait = self._rng.uniform(floor, floor * _JITTER)
        return min(wait, max(spec.reconnect_max, spec.retry_max, floor))

    def server_retry(self, retry_ms: int | None) -> float | None:
        """The server's ``retry:`` in seconds, capped at ``retry_max`` (None if none sent)."""
        if retry_ms is None:
            return None
        reported = min(retry_ms, _RETRY_MS_MAX)
        self.stats.server_asked_retry(reported / 1000.0)
        cap = self.spec.retry_max
        if retry_ms / 1000.0 <= cap:
            return retry_ms / 1000.0
        self.stats.retry_was_capped()
        if reported not in self._capped_logged and len(self._capped_logged) < _CAPPED_LOGGED_MAX:
            self._capped_logged.add(reported)
            _log.warning(
                "stream_retry_capped",
                stream=self.spec.name,
                retry_ms=reported,
                retry_max_seconds=cap,
            )
        return cap
