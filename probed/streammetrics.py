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
        "Estimated target clock minus ours, from Date headers or the time endpoint.",
    )
    uncertainty = gauge(
        "probed_stream_clock_offset_uncertainty_seconds",
        "Half-width of the interval the clock offset is known to lie in.",
    )
    applied = gauge(
        "probed_stream_clock_offset_applied_seconds",
        "Clock offset taken off every enqueue stamp before its lag (clock = correct).",
    )
    skewed = gauge(
        "probed_stream_clock_skewed",
        "1 while the offset exceeds clock_tolerance and lags are not corrected for it: the "
        "stream's lag is not judged.",
    )
    retry = gauge(
        "probed_stream_retry_seconds",
        "The reconnection time the server last asked for with retry:, before capping.",
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
            "Events stamped later than our receive time by more than the clock offset's "
            "uncertainty, after any correction; excluded from the lag histogram.",
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
        "retry_capped": counter(
            "probed_stream_retry_capped",
            "Reconnect waits for which the server's retry: was capped at retry_max.",
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
    clock_counts = {
        "uncorrected": counter(
            "probed_events_lag_uncorrected",
            "Timed events not put in the lag histogram: clock = correct and no offset estimate.",
        ),
        "within_uncertainty": counter(
            "probed_events_lag_within_uncertainty",
            "Events whose corrected lag was below 0 within the offset's uncertainty: recorded 0.",
        ),
    }
    for st in streams:
        name = [st.name]
        clock = st.clock
        if clock.uncertainty is not None:
            uncertainty.add_metric(name, clock.uncertainty)
        applied.add_metric(name, clock.applied)
        skewed.add_metric(name, 1 if clock.skewed else 0)
        for attr, family in clock_counts.items():
            family.add_metric(name, getattr(clock, attr))
        connected.add_metric(name, st.connected)
        subscribers.add_metric(name, st.subscribers)
        if st.first_event_seconds is not None:
            first_event.add_metric(name, st.first_event_seconds)
        if st.last_byte is not None:
            byte_age.add_metric(name, max(0.0, now - st.last_byte))
        event_age.add_metric(name, st.event_age(now))
        if st.clock_offset is not None:
            offset.add_metric(name, st.clock_offset)
        if st.server_retry is not None:
            retry.add_metric(name, st.server_retry)
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
    yield from (connected, subscribers, first_event, byte_age, event_age, offset, retry, reconnects)
    yield from (uncertainty, applied, skewed)
    yield from counters.values()
    yield from clock_counts.values()
    yield from (lag, connect, spread)
