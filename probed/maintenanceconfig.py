"""``[[maintenance]]`` tables: the model and its checks (the config layer).

The windows in force at run time, ad hoc ones included, are ``probed.maintenance``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from probed.model import AwareDatetime, Field, Model

__all__ = ["MaintenanceConfig", "config_problems", "rfc3339"]


def rfc3339(at: float) -> str:
    """Unix seconds as RFC 3339 UTC (``2027-01-15T08:00:00Z``)."""
    text = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


class MaintenanceConfig(Model):
    """A ``[[maintenance]]`` table: a planned window over targets, probes or components."""

    start: AwareDatetime
    end: AwareDatetime
    targets: list[str] = Field(default_factory=list)
    probes: list[str] = Field(default_factory=list)
    components: list[str] = Field(default_factory=list)
    reason: str = ""


def config_problems(
    tables: Sequence[MaintenanceConfig],
    *,
    probes: Collection[str],
    targets: Collection[str],
    components: Collection[str],
) -> list[tuple[int, str | None, str]]:
    """(index, key, message) of each bad ``[[maintenance]]`` table, given the known names."""
    problems: list[tuple[int, str | None, str]] = []
    for i, table in enumerate(tables):
        if not (table.targets or table.probes or table.components):
            problems.append((i, None, "a window names no targets, probes or components"))
        if table.end <= table.start:
            problems.append(
                (
                    i,
                    "end",
                    f"end {rfc3339(table.end.timestamp())} is not after start "
                    f"{rfc3339(table.start.timestamp())}",
                )
            )
        if missing := [n for n in table.probes if n not in probes]:
            problems.append((i, "probes", f"unknown probe(s) {', '.join(map(repr, missing))}"))
        if missing := [n for n in table.targets if n not in targets]:
            known = ", ".join(sorted(targets)) or "none defined"
            problems.append(
                (
                    i,
                    "targets",
                    f"unknown target(s) {', '.join(map(repr, missing))} (targets: {known})",
                )
            )
        if missing := [n for n in table.components if n not in components]:
            problems.append(
                (i, "components", f"unknown component(s) {', '.join(map(repr, missing))}")
            )
    return problems
