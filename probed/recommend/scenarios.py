"""Every scenario with the rule that assesses it, and the values of the playbook placeholders.

``SCENARIO_LIST`` is the order the engine runs the rules in, the order of
``probed.playbooks.SCENARIO_IDS``. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from probed.config import RecommendConfig
from probed.durations import format_duration
from probed.playbooks import SCENARIO_IDS
from probed.recommend.assess_symptoms import (
    BACKLOG_STUCK_RATIO,
    assess_ai,
    assess_backlog,
    assess_fast_burn,
    assess_login,
    assess_rate_limited,
    assess_sse,
    assess_sse_steps,
)
from probed.recommend.assess_targets import assess_health_failing, assess_target_down
from probed.recommend.facts import Assessment, num, pct, rate, secs
from probed.signals import Signals
from probed.steps import Steps

__all__ = ["BY_ID", "SCENARIOS", "SCENARIO_LIST", "Scenario", "placeholders"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario id and the rule that assesses it."""

    id: str
    assess: Callable[[Signals, RecommendConfig], Assessment]
    steps: Callable[[Signals, RecommendConfig], Steps[Assessment]] | None = None
    """The same rule in steps, where one look at every stream would hold the loop."""

    def look(self, signals: Signals, cfg: RecommendConfig) -> Steps[Assessment]:
        """What the rule makes of ``signals``, handing the loop back where it has steps."""
        if self.steps is None:
            return self.assess(signals, cfg)
        return (yield from self.steps(signals, cfg))


SCENARIO_LIST: Final = (
    Scenario("target_down", assess_target_down),
    Scenario("health_failing", assess_health_failing),
    Scenario("sse_degraded", assess_sse, assess_sse_steps),
    Scenario("backlog", assess_backlog),
    Scenario("rate_limited", assess_rate_limited),
    Scenario("login_degraded", assess_login),
    Scenario("ai_errors", assess_ai),
    Scenario("fast_burn", assess_fast_burn),
)

BY_ID: Final[Mapping[str, Scenario]] = {s.id: s for s in SCENARIO_LIST}

SCENARIOS: Final[tuple[str, ...]] = SCENARIO_IDS
"""The scenario ids (``probed.playbooks`` order, ``SCENARIO_LIST`` runs them in the same one);
the bounded ``scenario`` label set."""


def placeholders(cfg: RecommendConfig) -> dict[str, str]:
    """The values of ``probed.playbooks.PLACEHOLDERS`` under ``cfg``."""
    return {
        "exit_for": format_duration(cfg.exit_for),
        "probe_failure_ratio_exit": pct(cfg.probe_failure_ratio / 2),
        "stream_lag_p95": secs(cfg.stream_lag_p95),
        "backlog_queue_exit": num(cfg.backlog_queue_max / 2),
        "backlog_stuck_exit": pct(BACKLOG_STUCK_RATIO / 2),
        "rate_limited_share_exit": pct(cfg.rate_limited_share / 2),
        "login_failure_ratio_exit": pct(cfg.login_failure_ratio / 2),
        "login_p95": secs(cfg.login_p95),
        "ai_error_ratio_exit": pct(cfg.ai_error_ratio / 2),
        "fast_burn_rate": rate(cfg.fast_burn_rate),
    }
