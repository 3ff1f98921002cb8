"""Plain-words hints about how a stream delivers, for the status document and page.

Each hint names what was measured and the usual cause, so an operator reading
the status page knows where to look without reading the metrics first.
"""

from __future__ import annotations

from probed.store import StreamStats

__all__ = ["stream_hints"]


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def stream_hints(stats: StreamStats, now: float) -> list[str]:
    """The hints for ``stats`` at ``now`` (``time.monotonic()``); none for a healthy stream."""
    hints: list[str] = []
    burst = stats.last_burst
    if burst is not None and now - burst[2] <= stats.signal_window:
        events, spread, _ = burst
        hints.append(
            f"events arrive in bursts ({stats.bursts} so far; the latest: {events} events "
            f"produced over {_secs(spread)} arrived in one read): something between the "
            "producer and probed buffers them, usually a reverse proxy; disable buffering "
            "for the stream (X-Accel-Buffering: no, or proxy_buffering off in nginx) and "
            "compression of text/event-stream"
        )
    silent = stats.silent_for(now)
    if silent and stats.last_byte is not None and now - stats.last_byte < silent:
        hints.append(
            f"no event for {_secs(silent)} although the connection is alive (comments or "
            "pings arrive): the producer, or the pub/sub behind the stream server, is not "
            "delivering"
        )
    return hints
