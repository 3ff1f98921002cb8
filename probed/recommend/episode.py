"""One scenario's state in the engine (``Episode``) and the record of its changes (``Transition``).

Pure data: the engine (``probed.recommend.engine``) moves episodes from state to
state, the snapshot codec (``probed.recommend.snapshot``) saves and loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probed.records import record
from probed.signals import Evidence, Recommendation, RecommendationState, Severity

__all__ = ["Episode", "Transition"]


@record
class Transition:
    """One state change of one scenario, for logs and alerting.

    ``old`` is None when the scenario appears (as PENDING). ``new`` is RESOLVED
    when it ends, whatever it was (from PENDING it never fired). ``old == new``
    marks a severity change of an issued recommendation. ``recommendation.state``
    is always ``new``.
    """

    scenario: str
    old: RecommendationState | None
    new: RecommendationState
    recommendation: Recommendation


@dataclass(slots=True)
class Episode:
    """One scenario from its first PENDING evaluation until it resolves."""

    state: RecommendationState
    entered_at: float
    """Start of the current continuous stretch of the enter condition (PENDING)."""
    since: float
    severity: Severity
    summary: str
    evidence: tuple[Evidence, ...] = ()
    activated: bool = False
    """Has been ACTIVE in this episode (issued)."""
    exit_since: float | None = None
    demote_since: float | None = None
    demote_to: Severity | None = None
    first_seen: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    """Why it is INCONCLUSIVE (or would be): ``canary_failing`` or ``clock_skew``."""
