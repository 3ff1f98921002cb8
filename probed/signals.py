"""The shared vocabulary of SLOs, recommendations, status and alerting (pure data).

``Signals`` is a snapshot of what the daemon measured over a recent window,
built from the result store by ``probed.evaluate``; the pure modules
``probed.slo`` and ``probed.recommend`` turn it into ``SloStatus`` and
``Recommendation`` objects, which the server, the CLI and the alerting tasks
render. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import field
from types import MappingProxyType
from typing import Final

from probed.records import record

__all__ = [
    "EVIDENCE_SHOWN",
    "ROUTING",
    "ROUTING_LABEL",
    "ComponentState",
    "ComponentStatus",
    "Evaluation",
    "Evidence",
    "ProbeSignal",
    "Recommendation",
    "RecommendationState",
    "Routing",
    "Severity",
    "Signals",
    "SloStatus",
    "StreamSignal",
]


class Severity(enum.StrEnum):
    """Incident severity after the seeds' matrix (Sev-1 critical … Sev-4 low)."""

    SEV1 = "Sev-1"
    SEV2 = "Sev-2"
    SEV3 = "Sev-3"
    SEV4 = "Sev-4"

    @property
    def routing(self) -> Routing:
        """Who is told about an alert of this severity (``ROUTING``)."""
        return ROUTING[self]


class Routing(enum.StrEnum):
    """The ``routing`` label of every alert: how Alertmanager should notify."""

    PAGE = "page"
    """Wake the on-call now."""
    TICKET = "ticket"
    """Queue it for working hours."""


ROUTING_LABEL: Final = "routing"
"""The label that carries ``Routing`` on pushed alerts and generated rules alike."""

ROUTING: Final[Mapping[Severity, Routing]] = MappingProxyType(
    {
        Severity.SEV1: Routing.PAGE,
        Severity.SEV2: Routing.PAGE,
        Severity.SEV3: Routing.TICKET,
        Severity.SEV4: Routing.TICKET,
    }
)
"""The one mapping of Sev levels to routing: Sev-1 and Sev-2 page, Sev-3 and Sev-4 ticket.

The severity matrix pages for Sev-1 (hard down) and Sev-2 (fast SLO burn, p99
over target); Sev-3 and Sev-4 wait for working hours. Every alert probed
produces (the Alertmanager push, the webhooks, the generated Prometheus rules
and the status page) carries ``severity`` = the Sev level and ``routing`` =
this mapping of it.
"""


@record
class ProbeSignal:
    """One interval-run probe over the signal window."""

    name: str
    kind: str
    target: str
    runs: int
    failures: int
    reasons: Mapping[str, int]
    """Failure counts by reason within the window."""
    rate_limited: int
    """Runs answered 429 within the window."""
    p95_seconds: float | None
    """95th percentile run duration within the window (None without runs)."""
    last_success: bool | None
    last_success_at: float | None
    """Unix time of the last successful run (ever), for "last healthy"."""
    last_reason: str | None = None
    """Why the last run failed (None if it succeeded or there is none)."""

    @property
    def failure_ratio(self) -> float:
        """Failed runs / runs (0 without runs)."""
        return self.failures / self.runs if self.runs else 0.0


@record
class StreamSignal:
    """One stream watcher over the signal window."""

    name: str
    target: str
    connected: bool
    """All subscribers connected right now."""
    disconnected_for: float
    """Seconds the primary connection has been down (0 when connected)."""
    events: int
    """Events received within the window."""
    lag_p95: float | None
    """95th percentile delivery lag within the window (None without timed events)."""
    lost: int
    """Events counted lost within the window."""
    silent_for: float = 0.0
    """Seconds without any event once that reached the stream's ``event_timeout`` (0 before):
    connected or not, the stream delivers nothing (comments and pings do not count)."""
    clock_skew: float | None = None
    """The target's clock offset when it exceeds ``clock_tolerance`` and the lags are not
    corrected for it (``probed.skew``): the lag p95 is then not judged."""


@record
class SloStatus:
    """One SLO evaluated now."""

    name: str
    sli: str
    """``availability``, ``latency`` or ``delivery_lag``."""
    objective: float
    window: float
    """Budget window in seconds (e.g. 30 days)."""
    ratio: Mapping[str, float | None]
    """Good/total by window label (``"5m"``, ``"1h"`` …); None without events."""
    burn_rate: Mapping[str, float | None]
    """(1 - ratio) / (1 - objective) by window label."""
    budget_remaining: float | None
    """1 - bad/allowed-bad over the budget window (negative once overspent)."""
    events: Mapping[str, int]
    """Total events by window label."""
    coverage: Mapping[str, float] = field(default_factory=dict)
    """Seconds of each window that hold data (since the oldest event kept); a ratio is only
    given once this is at least ``MIN_COVERAGE`` of the window."""
    budget_allowed: float | None = None
    """Bad events the budget allows over the whole budget window (``1 - objective`` of the
    events expected in it); ``budget_remaining`` is ``1 - bad / budget_allowed``."""


@record
class Signals:
    """Everything the recommendation engine looks at, taken at ``now`` (Unix seconds)."""

    now: float
    window: float
    probes: Mapping[str, ProbeSignal] = field(default_factory=dict)
    streams: Mapping[str, StreamSignal] = field(default_factory=dict)
    slos: Mapping[str, SloStatus] = field(default_factory=dict)
    canary_failing: bool = False
    """A configured known-good canary probe is failing: our own vantage point is suspect."""
    queue_depth: float | None = None
    """Optional backlog gauge read from a configured URL."""


EVIDENCE_SHOWN: Final = 20
"""Pieces of a recommendation's evidence its log line and its alert carry, with how many
there are: all of a scenario over 500 streams made a line longer than log shippers take as
one, an annotation of tens of kB at every resend, and milliseconds of the loop to redact
and render (bench/README.md, "Figures behind decisions in the code"). The status document
has them all."""


@record
class Evidence:
    """One fact behind a recommendation: which signal, its value, the threshold, since when."""

    signal: str
    """e.g. ``stream events lag_p95`` or ``probe login failure_ratio``."""
    value: float
    threshold: float
    since: float
    """Unix time the condition was first seen true in this episode."""
    detail: str = ""


class RecommendationState(enum.StrEnum):
    """Lifecycle of a scenario's recommendation."""

    PENDING = "pending"
    """Condition true, dwell time not yet reached: nothing issued."""
    ACTIVE = "active"
    INCONCLUSIVE = "inconclusive"
    """Condition true but not to be trusted: the canary fails too (the prober itself may be
    at fault), or it rests on lags not corrected for a clock skew."""
    RESOLVED = "resolved"


@record
class Recommendation:
    """A degraded-mode playbook the operator should apply now."""

    scenario: str
    """Stable id, e.g. ``sse_degraded`` (a bounded metric label)."""
    title: str
    severity: Severity
    state: RecommendationState
    since: float
    """Unix time the recommendation became active (or pending/inconclusive)."""
    evidence: tuple[Evidence, ...]
    actions: tuple[str, ...]
    """Ordered steps."""
    rollback: str
    """When to undo the mitigation."""
    runbook_url: str
    summary: str
    inconclusive_reason: str | None = None
    """Why an INCONCLUSIVE one is: ``canary_failing`` or ``clock_skew`` (else None)."""


class ComponentState(enum.StrEnum):
    """State of a status-page component."""

    OK = "OK"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"
    UNKNOWN = "UNKNOWN"


@record
class ComponentStatus:
    """A status-page component (API Read, API Write, SSE Stream …) and why it is in its state."""

    name: str
    state: ComponentState
    probes: tuple[str, ...]
    failing: tuple[str, ...]
    last_healthy: float | None
    degraded_by: tuple[str, ...] = ()
    """Members that answer but not well: slow last run, or failures within the window."""


@record
class Evaluation:
    """The result of one evaluation tick: what the status page, API and alerting show."""

    at: float
    """Unix time of the evaluation."""
    signals: Signals
    components: tuple[ComponentStatus, ...]
    recommendations: tuple[Recommendation, ...]
    """Pending, active and inconclusive recommendations (see ``RecommendationState``)."""
