"""The probe families of ``/metrics``: blackbox_exporter's ``probe_*`` and ``probed_probe_*``.

Written from the store's ``ProbeState`` on every scrape (``probed.metrics`` calls
``write_probe_families``). A stream watcher counts as a probe in ``probe_success`` and
``probed_probe_info`` (kind ``sse``); its own families are ``probed.streammetrics``'.
Labels are bounded: probe names come from the config, reasons and phases from fixed sets.
"""

from __future__ import annotations

from collections.abc import Sequence

from probed.config import MODEL_OF_KIND
from probed.exposition import Family, Writer
from probed.peermetrics import write_peer_families
from probed.store import ProbeState, StreamStats

__all__ = ["PHASES", "write_probe_families"]

PHASES = ("resolve", "connect", "tls", "processing", "transfer")

SUCCESS = Family.gauge(
    "probe_success", "Whether the last run of the probe succeeded (1) or not (0).", "probe"
)
DURATION = Family.gauge("probe_duration_seconds", "Duration of the last run of the probe.", "probe")
STATUS = Family.gauge(
    "probe_http_status_code",
    "HTTP status code of the last run's final response (0 if none).",
    "probe",
)
PHASE_DURATION = Family.gauge(
    "probe_http_duration_seconds", "Duration of each HTTP phase in the last run.", "probe", "phase"
)
INFO = Family.gauge(
    "probed_probe_info",
    "Static facts about a configured probe; always 1.",
    "probe",
    "kind",
    "target",
)
LAST_RUN = Family.gauge(
    "probed_probe_last_run_timestamp_seconds",
    "Unix time the last run of the probe started.",
    "probe",
)
LAST_SUCCESS = Family.gauge(
    "probed_probe_last_success_timestamp_seconds",
    "Unix time the last successful run of the probe started.",
    "probe",
)
RUNS = Family.counter(
    "probed_probe_runs", "Probe runs by result (success or failure).", "probe", "result"
)
FAILURES = Family.counter(
    "probed_probe_failures",
    "Failed probe runs by reason (see the README for the fixed set).",
    "probe",
    "reason",
)
SKIPPED = Family.counter(
    "probed_probe_skipped",
    "Scheduled ticks that did not start a run (overlap: previous run still in flight; "
    "missed: the scheduler fell more than an interval behind).",
    "probe",
    "reason",
)
RATE_LIMITED = Family.counter(
    "probed_probe_rate_limited", "Runs answered 429 Too Many Requests.", "probe"
)
RETRY_AFTER = Family.gauge(
    "probed_probe_retry_after_seconds",
    "Retry-After of the last 429 answer (absent if it had none).",
    "probe",
)
DURATIONS = Family.histogram(
    "probed_probe_duration_seconds", "Distribution of probe run durations.", "probe"
)
REFLECT_LAG = Family.histogram(
    "probed_reflect_lag_seconds",
    "Reflect probes: time from just before the inject request to the canary's arrival, "
    "on our monotonic clock.",
    "probe",
)

_RESULTS = ("success", "failure")
_SKIPS = ("overlap", "missed")


def _reports_status(kind: str) -> bool:
    return bool(getattr(MODEL_OF_KIND.get(kind), "REPORTS_HTTP_STATUS", False))


def write_probe_families(
    w: Writer, states: Sequence[ProbeState], streams: Sequence[StreamStats], now: float
) -> None:
    """The probe families of ``states``, with ``streams`` in success and info (``now``:
    the monotonic time a stream's silence is judged at)."""
    ran = [(st, st.last) for st in states if st.last is not None]
    ran_keys = [(st.name,) for st, _ in ran]
    w.samples(
        SUCCESS,
        ran_keys + [(stream.name,) for stream in streams],
        [1 if last.success else 0 for _, last in ran]
        # a stream watcher is "succeeding" while all its connections are up and events
        # keep coming (pings alone deliver nothing)
        + [
            1 if stream.connected >= stream.subscribers and not stream.silent_for(now) else 0
            for stream in streams
        ],
    )
    w.samples(DURATION, ran_keys, [last.duration for _, last in ran])
    http = [(st.name, last.result) for st, last in ran if _reports_status(st.kind)]
    w.samples(STATUS, [(name,) for name, _ in http], [r.status_code or 0 for _, r in http])
    phases = [
        ((name, phase), result.phases[phase])
        for name, result in http
        for phase in PHASES
        if phase in result.phases
    ]
    w.samples(PHASE_DURATION, [key for key, _ in phases], [value for _, value in phases])
    w.samples(
        INFO,
        [(st.name, st.kind, st.target) for st in states]
        + [(stream.name, "sse", stream.target) for stream in streams],
        [1] * (len(states) + len(streams)),
    )
    w.samples(LAST_RUN, ran_keys, [last.started_at for _, last in ran])
    w.present(LAST_SUCCESS, [((st.name,), st.last_success_at) for st in states])
    write_peer_families(w, states)
    w.samples(
        RUNS,
        [(st.name, result) for st in states for result in _RESULTS],
        [st.runs[result] for st in states for result in _RESULTS],
    )
    failures = [
        ((st.name, reason), count) for st in states for reason, count in sorted(st.failures.items())
    ]
    w.samples(FAILURES, [key for key, _ in failures], [count for _, count in failures])
    w.samples(
        SKIPPED,
        [(st.name, reason) for st in states for reason in _SKIPS],
        [st.skipped[reason] for st in states for reason in _SKIPS],
    )
    keys = [(st.name,) for st in states]
    w.samples(RATE_LIMITED, keys, [st.rate_limited for st in states])
    w.present(RETRY_AFTER, [((st.name,), st.last_retry_after) for st in states])
    w.histograms(DURATIONS, keys, [st.durations for st in states])
    reflect = [(st.name, st.delivery_lag) for st in states if st.delivery_lag is not None]
    w.histograms(REFLECT_LAG, [(name,) for name, _ in reflect], [hist for _, hist in reflect])
