"""Maintenance windows: planned work that is not an incident.

A window covers probes (by name) and targets (every probe and stream of
them) from ``start`` up to, not including, ``end``. Windows come from
``[[maintenance]]`` tables in the config (``components`` there is a shorthand
for the probes of those components) and ad hoc from ``POST
/api/v1/maintenance`` (``probed silence``). Ad hoc windows are saved with the
daemon's state (``snapshot``/``restore``): a restart and a config reload keep them.

Runs of a covered probe are still recorded and shown, but they are not fed
to the SLOs, the recommendation rules do not see the probe, and the
``probed_maintenance_active{probe}`` gauge lets generated Prometheus rules
leave it out too.

Pure: no I/O, no clock reads; times are Unix seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from probed.exposition import Family, Writer
from probed.maintenanceconfig import MaintenanceConfig
from probed.signals import Signals

if TYPE_CHECKING:
    from probed.config import Config

__all__ = [
    "ACTIVE",
    "Maintenance",
    "MaintenanceWindow",
    "under_maintenance",
    "windows_of",
    "write_active",
]


@dataclasses.dataclass(frozen=True)
class MaintenanceWindow:
    """Planned work on ``targets`` and ``probes`` during [``start``, ``end``)."""

    start: float
    end: float
    targets: frozenset[str]
    probes: frozenset[str]
    reason: str = ""

    def is_open(self, at: float) -> bool:
        """Whether ``at`` falls within the window."""
        return self.start <= at < self.end

    def names(self, probe: str, target: str) -> bool:
        """Whether the window is about ``probe`` (by name or by its ``target``)."""
        return probe in self.probes or target in self.targets

    def to_json(self) -> dict[str, Any]:
        """The status document form."""
        return {
            "start": self.start,
            "end": self.end,
            "targets": sorted(self.targets),
            "probes": sorted(self.probes),
            "reason": self.reason,
        }


def _from_config(
    table: MaintenanceConfig, components: Mapping[str, list[str]]
) -> MaintenanceWindow:
    probes = set(table.probes)
    for name in table.components:
        probes.update(components.get(name, ()))
    return MaintenanceWindow(
        start=table.start.timestamp(),
        end=table.end.timestamp(),
        targets=frozenset(table.targets),
        probes=frozenset(probes),
        reason=table.reason,
    )


class Maintenance:
    """The windows in force: the configured ones and the ad hoc ones."""

    def __init__(self, configured: Iterable[MaintenanceWindow] = ()) -> None:
        self.configured: list[MaintenanceWindow] = list(configured)
        self.ad_hoc: list[MaintenanceWindow] = []
        self.revision = 0
        """Counts changes of the ad hoc windows (the persister saves them when it moves)."""

    @classmethod
    def from_config(cls, config: Config) -> Maintenance:
        """The registry of ``config``'s ``[[maintenance]]`` tables."""
        return cls(windows_of(config))

    def configure(self, windows: Iterable[MaintenanceWindow]) -> None:
        """Replace the configured windows (a reload); ad hoc windows stay."""
        self.configured = list(windows)

    def add(self, window: MaintenanceWindow, now: float) -> None:
        """Add an ad hoc window, dropping the ad hoc windows ended by ``now``."""
        self.ad_hoc = [w for w in self.ad_hoc if w.end > now]
        self.ad_hoc.append(window)
        self.revision += 1

    def snapshot(self) -> dict[str, Any]:
        """The ad hoc windows, for the state file (configured ones come from the config)."""
        return {"version": 1, "ad_hoc": [w.to_json() for w in self.ad_hoc]}

    def restore(self, data: object, now: float) -> list[str]:
        """Take back the ad hoc windows of ``snapshot()`` not ended by ``now``; the problems."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return ["maintenance: unknown snapshot format; ad hoc windows not restored"]
        problems: list[str] = []
        windows: list[MaintenanceWindow] = []
        for item in data.get("ad_hoc", ()):
            try:
                window = MaintenanceWindow(
                    start=float(item["start"]),
                    end=float(item["end"]),
                    targets=frozenset(str(t) for t in item["targets"]),
                    probes=frozenset(str(p) for p in item["probes"]),
                    reason=str(item.get("reason", "")),
                )
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"maintenance: a saved ad hoc window is unreadable ({exc!r})")
                continue
            if window.end > now:
                windows.append(window)
        self.ad_hoc = windows
        return problems

    @property
    def windows(self) -> list[MaintenanceWindow]:
        """Every window, configured first."""
        return [*self.configured, *self.ad_hoc]

    def covers(self, probe: str, target: str, at: float) -> MaintenanceWindow | None:
        """The open window about ``probe`` at ``at`` that ends last, or None."""
        if not self.configured and not self.ad_hoc:  # asked for every run and timed event
            return None
        found = [w for w in self.windows if w.is_open(at) and w.names(probe, target)]
        return max(found, key=lambda w: w.end, default=None)

    def active(self, at: float) -> list[MaintenanceWindow]:
        """The windows open at ``at``, by end."""
        return sorted((w for w in self.windows if w.is_open(at)), key=lambda w: w.end)

    def upcoming(self, at: float) -> list[MaintenanceWindow]:
        """The windows not yet started at ``at``, by start."""
        return sorted((w for w in self.windows if w.start > at), key=lambda w: w.start)


def under_maintenance(signals: Signals, maintenance: Maintenance) -> Signals:
    """``signals`` without the probes and streams under maintenance at ``signals.now``."""
    now = signals.now
    probes = {
        n: p for n, p in signals.probes.items() if maintenance.covers(n, p.target, now) is None
    }
    streams = {
        n: s for n, s in signals.streams.items() if maintenance.covers(n, s.target, now) is None
    }
    if len(probes) == len(signals.probes) and len(streams) == len(signals.streams):
        return signals
    return dataclasses.replace(signals, probes=probes, streams=streams)


ACTIVE = Family.gauge(
    "probed_maintenance_active",
    "Whether the probe is under a maintenance window (1) or not (0).",
    "probe",
)


def write_active(
    w: Writer, maintenance: Maintenance | None, probes: Iterable[tuple[str, str]], now: float
) -> None:
    """``probed_maintenance_active{probe}`` over (name, target) of every configured probe."""
    named = sorted(probes)
    open_windows = [] if maintenance is None else maintenance.active(now)
    w.samples(
        ACTIVE,
        [(name,) for name, _ in named],
        [
            1.0 if any(window.names(name, target) for window in open_windows) else 0.0
            for name, target in named
        ],
    )


def windows_of(config: Config) -> list[MaintenanceWindow]:
    """The windows of ``config``'s ``[[maintenance]]`` tables."""
    components = {c.name: c.probes for c in config.components}
    return [_from_config(table, components) for table in config.maintenance]
