"""Playbooks: what a recommendation tells the operator to do, as configuration.

Each scenario has a built-in, product-neutral playbook (``BUILTIN``). A
``[[playbooks]]`` table in ``probes.toml`` replaces parts of it for one
scenario::

    [[playbooks]]
    scenario = "login_degraded"
    title = "Sign-in slow"                      # optional
    actions = ["Roll back the last auth deploy.", "..."]
    rollback = "Undo once login p95 is below {login_p95} for {exit_for}."   # optional
    runbook_url = "https://wiki.example/runbooks/login"                   # optional
    severity = "Sev-1"                          # optional: replaces the rule's severity

Actions and rollback may name thresholds of the ``[recommend]`` section in
braces (``PLACEHOLDERS``); they are filled in when a recommendation is built.
This module imports nothing of probed's but the signals, so ``probed.config``
can use its model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from yarl import URL

from probed.signals import Severity

__all__ = [
    "BUILTIN",
    "PLACEHOLDERS",
    "SCENARIO_IDS",
    "Playbook",
    "PlaybookConfig",
    "duplicate_problems",
    "merge",
    "render",
]

PLACEHOLDERS: Final = (
    "exit_for",
    "probe_failure_ratio_exit",
    "stream_lag_p95",
    "backlog_queue_exit",
    "backlog_stuck_exit",
    "rate_limited_share_exit",
    "login_failure_ratio_exit",
    "login_p95",
    "ai_error_ratio_exit",
    "fast_burn_rate",
)
"""Names usable as ``{name}`` in actions and rollback (``*_exit``: the level that resolves)."""

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True, slots=True)
class Playbook:
    """A scenario's playbook as used: built-in text with the configured parts laid over it."""

    title: str
    actions: tuple[str, ...]
    rollback: str
    runbook_url: str | None = None
    """None: ``[recommend] runbook_base_url`` with ``#scenario``."""
    severity: Severity | None = None
    """Set: replaces the severity the scenario's rule computes."""


BUILTIN: Final[Mapping[str, Playbook]] = {
    "target_down": Playbook(
        "Target unreachable",
        (
            "Check that the product is running and reachable from this probing host: its "
            "processes, DNS, the load balancer, firewall and TLS certificate.",
            "Treat every other symptom of this target as a consequence (they are listed in the "
            "evidence as suppressed); restore reachability first.",
            "If only this probing location fails, compare with the other locations before "
            "acting: the network path of the prober may be at fault.",
        ),
        "Stand down once every probe of the target connects again, sustained for "
        "{exit_for}; then follow any recommendation that remains.",
    ),
    "health_failing": Playbook(
        "A health or API check is failing",
        (
            "Open the failing probe's last results (status code, reason, trace id) in the "
            "evidence and the product's logs for that trace id.",
            "Check the dependencies the endpoint reports (database, cache, queue) and recent "
            "deploys or configuration changes.",
            "Roll back the last change if the failure started with it.",
        ),
        "Resolve once the probe's failure ratio stays below {probe_failure_ratio_exit} for "
        "{exit_for}.",
    ),
    "sse_degraded": Playbook(
        "Live updates (SSE) down or delayed",
        (
            "Tell clients to fall back to polling the product's API instead of waiting for "
            "stream events, if they can.",
            "Reduce the event volume: publish only the events clients cannot do without "
            "until delivery recovers.",
            "Check the processes that produce and serve the stream (reconnect counts, "
            "timeouts, resource use); restart the ones that are stuck.",
        ),
        "Return to live updates once every stream is connected and its lag p95 is below "
        "{stream_lag_p95}, sustained for {exit_for}.",
    ),
    "backlog": Playbook(
        "Import backlog growing",
        (
            "Reduce the inflow: pause or defer non-critical jobs so the queue carries only "
            "what must be processed now.",
            "Add capacity or batch temporarily: scale the workers, stagger jobs, increase "
            "backoff; check the queue's storage and any upstream rate limits.",
            "Tell users that imports take longer than usual until the queue drains.",
        ),
        "Resume deferred work once the queue depth is below {backlog_queue_exit} and fewer "
        "than {backlog_stuck_exit} of import jobs miss their deadline or stall, sustained for "
        "{exit_for}.",
    ),
    "rate_limited": Playbook(
        "Rate limits too aggressive (429s)",
        (
            "Check whether a rate-limit change or a traffic surge caused the 429s.",
            "Relax the limits temporarily, at least for trusted clients.",
            "Make sure clients honour Retry-After (wait the advertised time instead of "
            "retrying at once); each 429 probe result records the Retry-After it carried.",
        ),
        "Restore the usual limits once the 429 share stays below {rate_limited_share_exit} "
        "(half the trigger) for {exit_for}.",
    ),
    "login_degraded": Playbook(
        "Login failing or slow",
        (
            "Roll back the last change to the login path if the degradation started with it.",
            "Check the authentication service and what it depends on (identity provider, "
            "user store, signing keys) in the failing probe's results and the logs.",
            "Check for a rate-limit misconfiguration: a sudden rise of 429s on login.",
        ),
        "Consider login recovered once its failure ratio is below {login_failure_ratio_exit} "
        "and its p95 below {login_p95}, sustained for {exit_for}; then undo temporary "
        "measures.",
    ),
    "ai_errors": Playbook(
        "AI service error rate high",
        (
            "Fall back to the product's degraded mode without the AI service, if it has one.",
            "Check the AI service's health, recent deploys and its dependencies; restart "
            "instances that are stuck.",
            "Reduce the request volume sent to the AI service.",
        ),
        "Leave the degraded mode once the fixture probes' error ratio stays below "
        "{ai_error_ratio_exit} for {exit_for}.",
    ),
    "fast_burn": Playbook(
        "Error budget burning fast",
        (
            "Freeze risky deploys and configuration changes.",
            "Identify the user journey behind the burning SLO (named in the evidence) and "
            "follow that journey's playbook.",
            "Consider rolling back the last change.",
        ),
        "Lift the freeze once no SLO burns above {fast_burn_rate} over both 1h and 5m (the 5m "
        "window shows the burn has stopped), sustained for {exit_for}.",
    ),
}

SCENARIO_IDS: Final[tuple[str, ...]] = tuple(BUILTIN)
"""Every scenario id, in order."""


def _scenario_list() -> str:
    return ", ".join(SCENARIO_IDS)


def _unknown_placeholders(text: str) -> list[str]:
    return [m for m in _PLACEHOLDER.findall(text) if m not in PLACEHOLDERS]


def _check_placeholders(text: str) -> str:
    if unknown := _unknown_placeholders(text):
        raise ValueError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} "
            f"(placeholders: {', '.join(PLACEHOLDERS)})"
        )
    return text


class PlaybookConfig(BaseModel):
    """A ``[[playbooks]]`` table: one scenario's text, runbook link and severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str
    title: str | None = None
    actions: list[str]
    rollback: str | None = None
    runbook_url: str | None = None
    severity: Literal["Sev-1", "Sev-2", "Sev-3", "Sev-4"] | None = None
    """Replaces the severity the scenario's rule computes (its escalation too)."""

    @field_validator("scenario")
    @classmethod
    def _check_scenario(cls, value: str) -> str:
        if value not in SCENARIO_IDS:
            close = difflib.get_close_matches(value, SCENARIO_IDS, n=1, cutoff=0.6) or [
                s for s in SCENARIO_IDS if _similar(value, s)
            ]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown scenario {value!r}{hint} (scenarios: {_scenario_list()})")
        return value

    @field_validator("actions")
    @classmethod
    def _check_actions(cls, value: list[str]) -> list[str]:
        if not value or any(not a.strip() for a in value):
            raise ValueError("actions must be a non-empty list of non-empty strings")
        for action in value:
            _check_placeholders(action)
        return value

    @field_validator("rollback")
    @classmethod
    def _check_rollback(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("rollback must not be empty (leave it out for the built-in one)")
        return None if value is None else _check_placeholders(value)

    @field_validator("runbook_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            url = URL(value)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"runbook_url must be an absolute http(s) URL, got {value!r}")
        return value


def _similar(given: str, known: str) -> bool:
    """Close enough to suggest: one contains the other, or they share the first word."""
    given = given.lower().replace("-", "_")
    return given in known or known in given or given.split("_")[0] == known.split("_")[0]


def duplicate_problems(playbooks: Sequence[PlaybookConfig]) -> Iterable[tuple[int, str]]:
    """(index, message) for each playbook repeating an earlier one's scenario."""
    first: dict[str, int] = {}
    for index, pb in enumerate(playbooks):
        if pb.scenario in first:
            yield index, f"duplicate scenario (first used by playbooks[{first[pb.scenario]}])"
        else:
            first[pb.scenario] = index


def merge(playbooks: Iterable[PlaybookConfig]) -> dict[str, Playbook]:
    """Every scenario's playbook: the built-in one with the configured fields laid over it."""
    merged = dict(BUILTIN)
    for pb in playbooks:
        base = merged.get(pb.scenario)
        if base is None:
            continue  # refused by validation; a model built by hand is ignored
        merged[pb.scenario] = Playbook(
            title=base.title if pb.title is None else pb.title,
            actions=tuple(pb.actions) or base.actions,
            rollback=base.rollback if pb.rollback is None else pb.rollback,
            runbook_url=pb.runbook_url,
            severity=None if pb.severity is None else Severity(pb.severity),
        )
    return merged


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each known ``{placeholder}`` replaced; anything else left as written."""

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return _PLACEHOLDER.sub(fill, text)
