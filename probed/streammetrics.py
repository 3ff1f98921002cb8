"""The stream families of ``/metrics``: ``probed_stream_*``, ``probed_events_*``, delivery lag.

Built from the store's ``StreamStats`` on every scrape (``probed.metrics`` calls
``stream_families``); labels are the stream name and fixed sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from probed.store import StreamStats

__all__ = ["stream_families"]


def stream_families(by_name: Mapping[str, StreamStats], now: float) -> Iterator[Metric]:
    """The ``probed_stream_*``, ``probed_events_*`` and delivery-lag families."""
    streams = list(by_name.values())
    lbl = ["stream"]

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=lbl)

    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=lbl)

    connected = gauge(
        "probed_stream_connected", "Subscriber connections of the stream currently open."
    )
    subscribers = gauge("probed_stream_subscribers", "Subscriber connections configured.")
    first_event = gauge(
        "probed_stream_first_event_seconds",
        "Time from connecting to the first event on the latest connection.",
    )
    byte_age = gauge(
        "probed_stream_last_byte_age_seconds",
        "Seconds since the last bytes (events, comments or pings) on any subscriber.",
    )
    event_age = gauge(
        "probed_stream_last_event_age_seconds",
        "Seconds since the last event on any subscriber, or since watching began (staleness).",
    )
    offset = gauge(
        "probed_stream_clock_offset_seconds",
        "Estimated target clock minus ours, from the Date header or the time endpoint.",
    )
    reconnects = CounterMetricFamily(
        "probed_stream_reconnects",
        "Stream connections that ended, by reason (fixed set; see README).",
        labels=["stream", "reason"],
    )
    counters = {
        "received": counter("probed_events_received", "Events received (all subscribers)."),
        "lost": counter(
            "probed_events_lost",
            "Sequence numbers never received within the loss timeout or window (gaps).",
        ),
        "duplicated": counter("probed_events_duplicated", "Events received more than once."),
        "out_of_order": counter(
            "probed_events_out_of_order", "Events that arrived after a later sequence number."
        ),
        "late": counter(
            "probed_events_late",
            "Events whose lag exceeded late_after, or that arrived after being counted lost.",
        ),
        "untimed": counter(
            "probed_events_untimed", "Events without a readable enqueue timestamp (not timed)."
        ),
        "unsequenced": counter(
            "probed_events_unsequenced",
            "Events without a numeric sequence (e.g. non-numeric ids); not gap-checked.",
        ),
        "negative_lag": counter(
            "probed_events_negative_lag",
            "Events stamped later than our receive time (clock skew); excluded from the lag "
            "histogram.",
        ),
        "sequence_resets": counter(
            "probed_stream_sequence_resets", "Times the producer's sequence restarted."
        ),
        "bursts": counter(
            "probed_stream_bursts",
            "Reads that delivered at least 3 timed events whose enqueue stamps span "
            "burst_spread or more: events held back and released together (a buffering proxy).",
        ),
        "burst_events": counter(
            "probed_stream_burst_events", "Timed events that arrived in a burst."
        ),
    }
    lag = HistogramMetricFamily(
        "probed_delivery_lag_seconds",
        "Event delivery lag: our wall clock at receipt minus the event's enqueue stamp.",
        labels=lbl,
    )
    connect = HistogramMetricFamily(
        "probed_stream_connect_duration_seconds",
        "Time to open a stream connection (request to headers).",
        labels=lbl,
    )
    spread = HistogramMetricFamily(
        "probed_stream_fanout_spread_seconds",
        "Per event, first-to-last receive time across the stream's subscribers.",
        labels=lbl,
    )
    for st in streams:
        name = [st.name]
        connected.add_metric(name, st.connected)
        subscribers.add_metric(name, st.subscribers)
        if st.first_event_seconds is not None:
            first_event.add_metric(name, st.first_event_seconds)
        if st.last_byte is not None:
            byte_age.add_metric(name, max(0.0, now - st.last_byte))
        event_age.add_metric(name, st.event_age(now))
        if st.clock_offset is not None:
            offset.add_metric(name, st.clock_offset)
        for reason, count in sorted(st.reconnects.items()):
            reconnects.add_metric([st.name, reason], count)
        for attr, family in counters.items():
            family.add_metric(name, getattr(st, attr))
        lag.add_metric(name, st.delivery_lag.cumulative(), sum_value=st.delivery_lag.sum)
        connect.add_metric(
            name, st.connect_duration.cumulative(), sum_value=st.connect_duration.sum
        )
        if st.subscribers > 1:
            spread.add_metric(name, st.fanout_spread.cumulative(), sum_value=st.fanout_spread.sum)
    yield from (connected, subscribers, first_event, byte_age, event_age, offset, reconnects)
    yield from counters.values()
    yield from (lag, connect, spread)
