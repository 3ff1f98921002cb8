"""The stream families of ``/metrics``: ``probed_stream_*``, ``probed_events_*``, delivery lag.

Written from the store's ``StreamStats`` on every scrape (``probed.metrics`` calls
``write_stream_families``); labels are the stream name and fixed sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from probed.exposition import Family, Writer
from probed.store import StreamStats

__all__ = ["write_stream_families"]


def _gauge(name: str, help: str) -> Family:
    return Family.gauge(name, help, "stream")


def _counter(name: str, help: str) -> Family:
    return Family.counter(name, help, "stream")


def _histogram(name: str, help: str) -> Family:
    return Family.histogram(name, help, "stream")


CONNECTED = _gauge(
    "probed_stream_connected", "Subscriber connections of the stream currently open."
)
SUBSCRIBERS = _gauge("probed_stream_subscribers", "Subscriber connections configured.")
FIRST_EVENT = _gauge(
    "probed_stream_first_event_seconds",
    "Time from connecting to the first event on the latest connection.",
)
BYTE_AGE = _gauge(
    "probed_stream_last_byte_age_seconds",
    "Seconds since the last bytes (events, comments or pings) on any subscriber.",
)
EVENT_AGE = _gauge(
    "probed_stream_last_event_age_seconds",
    "Seconds since the last event on any subscriber, or since watching began (staleness).",
)
OFFSET = _gauge(
    "probed_stream_clock_offset_seconds",
    "Estimated target clock minus ours, from Date headers or the time endpoint.",
)
UNCERTAINTY = _gauge(
    "probed_stream_clock_offset_uncertainty_seconds",
    "Half-width of the interval the clock offset is known to lie in.",
)
APPLIED = _gauge(
    "probed_stream_clock_offset_applied_seconds",
    "Clock offset taken off every enqueue stamp before its lag (clock = correct).",
)
SKEWED = _gauge(
    "probed_stream_clock_skewed",
    "1 while the offset exceeds clock_tolerance and lags are not corrected for it: the "
    "stream's lag is not judged.",
)
RETRY = _gauge(
    "probed_stream_retry_seconds",
    "The reconnection time the server last asked for with retry:, before capping.",
)
RECONNECTS = Family.counter(
    "probed_stream_reconnects",
    "Stream connections that ended, by reason (fixed set; see README).",
    "stream",
    "reason",
)
COUNTERS = (
    ("received", _counter("probed_events_received", "Events received (all subscribers).")),
    (
        "lost",
        _counter(
            "probed_events_lost",
            "Sequence numbers never received within the loss timeout or window (gaps).",
        ),
    ),
    ("duplicated", _counter("probed_events_duplicated", "Events received more than once.")),
    (
        "out_of_order",
        _counter(
            "probed_events_out_of_order", "Events that arrived after a later sequence number."
        ),
    ),
    (
        "late",
        _counter(
            "probed_events_late",
            "Events whose lag exceeded late_after, or that arrived after being counted lost.",
        ),
    ),
    (
        "untimed",
        _counter(
            "probed_events_untimed", "Events without a readable enqueue timestamp (not timed)."
        ),
    ),
    (
        "unsequenced",
        _counter(
            "probed_events_unsequenced",
            "Events without a numeric sequence (e.g. non-numeric ids); not gap-checked.",
        ),
    ),
    (
        "negative_lag",
        _counter(
            "probed_events_negative_lag",
            "Events stamped later than our receive time by more than the clock offset's "
            "uncertainty, after any correction; excluded from the lag histogram.",
        ),
    ),
    (
        "sequence_resets",
        _counter("probed_stream_sequence_resets", "Times the producer's sequence restarted."),
    ),
    (
        "bursts",
        _counter(
            "probed_stream_bursts",
            "Reads that delivered at least 3 timed events whose enqueue stamps span "
            "burst_spread or more: events held back and released together (a buffering proxy).",
        ),
    ),
    (
        "burst_events",
        _counter("probed_stream_burst_events", "Timed events that arrived in a burst."),
    ),
    (
        "retry_capped",
        _counter(
            "probed_stream_retry_capped",
            "Reconnect waits for which the server's retry: was capped at retry_max.",
        ),
    ),
)
"""(``StreamStats`` attribute, family) of the per-stream event counters."""
CLOCK_COUNTERS = (
    (
        "uncorrected",
        _counter(
            "probed_events_lag_uncorrected",
            "Timed events not put in the lag histogram: clock = correct and no offset estimate.",
        ),
    ),
    (
        "within_uncertainty",
        _counter(
            "probed_events_lag_within_uncertainty",
            "Events whose corrected lag was below 0 within the offset's uncertainty: recorded 0.",
        ),
    ),
)
"""(``StreamClock`` attribute, family)."""
LAG = _histogram(
    "probed_delivery_lag_seconds",
    "Event delivery lag: our wall clock at receipt minus the event's enqueue stamp.",
)
CONNECT = _histogram(
    "probed_stream_connect_duration_seconds",
    "Time to open a stream connection (request to headers).",
)
SPREAD = _histogram(
    "probed_stream_fanout_spread_seconds",
    "Per event, first-to-last receive time across the stream's subscribers.",
)


def write_stream_families(w: Writer, streams: Sequence[StreamStats], now: float) -> None:
    """The ``probed_stream_*``, ``probed_events_*`` and delivery-lag families of
    ``streams`` (``now``: the monotonic time the ages are taken at)."""
    keys = [(st.name,) for st in streams]
    clocks = [st.clock for st in streams]
    w.samples(CONNECTED, keys, [st.connected for st in streams])
    w.samples(SUBSCRIBERS, keys, [st.subscribers for st in streams])
    w.present(FIRST_EVENT, [((st.name,), st.first_event_seconds) for st in streams])
    w.present(
        BYTE_AGE,
        [((st.name,), max(0.0, now - st.last_byte)) for st in streams if st.last_byte is not None],
    )
    w.samples(EVENT_AGE, keys, [st.event_age(now) for st in streams])
    w.present(OFFSET, [((st.name,), st.clock_offset) for st in streams])
    w.present(RETRY, [((st.name,), st.server_retry) for st in streams])
    reconnects = [
        ((st.name, reason), count)
        for st in streams
        for reason, count in sorted(st.reconnects.items())
    ]
    w.samples(RECONNECTS, [key for key, _ in reconnects], [count for _, count in reconnects])
    w.present(
        UNCERTAINTY, [(key, clock.uncertainty) for key, clock in zip(keys, clocks, strict=True)]
    )
    w.samples(APPLIED, keys, [clock.applied for clock in clocks])
    w.samples(SKEWED, keys, [1 if clock.skewed else 0 for clock in clocks])
    for attr, family in COUNTERS:
        w.samples(family, keys, list(map(attrgetter(attr), streams)))
    for attr, family in CLOCK_COUNTERS:
        w.samples(family, keys, list(map(attrgetter(attr), clocks)))
    w.histograms(LAG, keys, [st.delivery_lag for st in streams])
    w.histograms(CONNECT, keys, [st.connect_duration for st in streams])
    fanned = [st for st in streams if st.subscribers > 1]
    w.histograms(SPREAD, [(st.name,) for st in fanned], [st.fanout_spread for st in fanned])
