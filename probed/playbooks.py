"""Playbooks: what a recommendation tells the operator to do, as configuration.

Each scenario has a built-in, product-neutral playbook (``BUILTIN``, read from
the package data file ``probed/playbooks.toml`` and checked like configuration).
A ``[[playbooks]]`` table in ``probes.toml`` replaces parts of it for one
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
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from yarl import URL

from probed.model import Model, ValidationError, field_validator
from probed.records import record
from probed.signals import Severity

__all__ = [
    "BUILTIN",
    "PLACEHOLDERS",
    "SCENARIO_IDS",
    "Playbook",
    "PlaybookConfig",
    "duplicate_problems",
    "load_builtin",
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


@record
class Playbook:
    """A scenario's playbook as used: built-in text with the configured parts laid over it."""

    title: str
    actions: tuple[str, ...]
    rollback: str
    runbook_url: str | None = None
    """None: ``[recommend] runbook_base_url`` with ``#scenario``."""
    severity: Severity | None = None
    """Set: replaces the severity the scenario's rule computes."""


SCENARIO_IDS: Final[tuple[str, ...]] = (
    "target_down",
    "health_failing",
    "sse_degraded",
    "backlog",
    "rate_limited",
    "login_degraded",
    "ai_errors",
    "fast_burn",
)
"""Every scenario id, in order (the order ``probed.recommend`` runs its rules in)."""


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


class PlaybookConfig(Model):
    """A ``[[playbooks]]`` table: one scenario's text, runbook link and severity."""

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


def load_builtin(data: Mapping[str, Any]) -> dict[str, Playbook]:
    """The built-in playbooks from ``data``, the parsed ``probed/playbooks.toml``.

    One ``[[playbooks]]`` table per scenario, in ``SCENARIO_IDS`` order, each valid as a
    ``PlaybookConfig`` with its title and rollback and without runbook_url or severity;
    ValueError otherwise.
    """
    tables = data.get("playbooks")
    if set(data) != {"playbooks"} or not isinstance(tables, list):
        raise ValueError("expected [[playbooks]] tables and nothing else")
    builtin: dict[str, Playbook] = {}
    order: list[str] = []
    for index, table in enumerate(tables):
        where = f"playbooks[{index}]"
        try:
            pb = PlaybookConfig.model_validate(table)
        except ValidationError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if pb.title is None or pb.rollback is None:
            raise ValueError(
                f"{where} ({pb.scenario}): a built-in playbook needs a title and a rollback"
            )
        if pb.runbook_url is not None or pb.severity is not None:
            raise ValueError(
                f"{where} ({pb.scenario}): a built-in playbook sets no runbook_url or severity"
            )
        order.append(pb.scenario)
        builtin[pb.scenario] = Playbook(pb.title, tuple(pb.actions), pb.rollback)
    if tuple(order) != SCENARIO_IDS:
        raise ValueError(
            f"expected one playbook per scenario, in this order: {_scenario_list()}; "
            f"got {', '.join(order) or 'none'}"
        )
    return builtin


BUILTIN: Final[Mapping[str, Playbook]] = load_builtin(
    tomllib.loads((Path(__file__).parent / "playbooks.toml").read_text(encoding="utf-8"))
)
"""Every scenario's built-in, product-neutral playbook, from ``probed/playbooks.toml``."""
