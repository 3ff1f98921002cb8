"""Every scenario with the rule that assesses it, and the values of the playbook placeholders.

``SCENARIO_LIST`` is the order the engine runs the rules in, the order of
``probed.playbooks.SCENARIO_IDS``. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
)
from probed.recommend.assess_targets import assess_health_failing, assess_target_down
from probed.recommend.facts import Assessment, num, pct, rate, secs
from probed.records import record
from probed.signals import Signals
from probed.steps import Steps

__all__ = ["BY_ID", "SCENARIOS", "SCENARIO_LIST", "Scenario", "placeholders"]


Rule = Callable[[Signals, RecommendConfig], Steps[Assessment]]
"""A scenario's rule, in steps where one look at every stream would hold the loop."""


@record
class Scenario:
    """A scenario id and the rule that assesses it."""

    id: str
    assess: Rule


def _one_step(assess: Callable[[Signals, RecommendConfig], Assessment]) -> Rule:
    """A rule cheap enough to run whole as one step."""

    def steps(signals: Signals, cfg: RecommendConfig) -> Steps[Assessment]:
        return assess(signals, cfg)
        yield  # a generator that returns at once

    return steps


SCENARIO_LIST: Final = (
    Scenario("target_down", _one_step(assess_target_down)),
    Scenario("health_failing", _one_step(assess_health_failing)),
    Scenario("sse_degraded", assess_sse),
    Scenario("backlog", _one_step(assess_backlog)),
    Scenario("rate_limited", _one_step(assess_rate_limited)),
    Scenario("login_degraded", _one_step(assess_login)),
    Scenario("ai_errors", _one_step(assess_ai)),
    Scenario("fast_burn", _one_step(assess_fast_burn)),
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
