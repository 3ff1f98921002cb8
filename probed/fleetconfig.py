"""The ``[fleet]`` section: the locations probing one product, aggregated by Prometheus.

Each probed stays a plain exporter of one ``location``; with ``[fleet]``, ``probed
rules`` also writes the rules a central Prometheus evaluates over every location
(``probed.fleetrules``) and ``probed status --prometheus`` reads the fleet view back.
"""

from __future__ import annotations

import re

from probed.configtypes import StrictModel
from probed.durations import Duration
from probed.model import Field, field_validator, model_validator

__all__ = ["LOCATION_PATTERN", "FleetConfig"]

LOCATION_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
"""What ``[daemon] location`` and a fleet location may be."""

_LABEL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class FleetConfig(StrictModel):
    """The ``[fleet]`` section."""

    locations: list[str] = Field(min_length=1)
    """Every location expected to report: one missing is a gap (``ProberDown``)."""
    min_failing_locations: int | None = Field(default=None, ge=1)
    """The quorum: a probe failing from this many locations is the product (default: a
    majority of ``locations``)."""
    location_label: str = "location"
    """The label naming the location on the series the central Prometheus holds (set as
    an external label by each location's Prometheus agent, or as a target label)."""
    job: str = "probed"
    """The ``job`` label of the probed scrape jobs (``ProberDown`` reads their ``up``)."""
    isolated_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    """A location failing more than this share of its probes while the other locations
    fail less than it is isolated: its prober's network, not the product."""
    quorum_for: Duration = 120.0
    """How long the quorum must hold before a quorum alert fires."""
    isolated_for: Duration = 300.0
    """How long a location must stay isolated before ``ProberIsolated`` fires."""
    down_for: Duration = 120.0
    """How long a location may report nothing before ``ProberDown`` fires."""
    rate_window: Duration = 60.0
    """The window of the per-location rates the fleet SLO sums (at least four scrape
    intervals of the location agents)."""

    @field_validator("locations")
    @classmethod
    def _check_locations(cls, value: list[str]) -> list[str]:
        for location in value:
            if not re.fullmatch(LOCATION_PATTERN, location):
                raise ValueError(
                    f"location {location!r} must be 1-64 characters of [A-Za-z0-9_.:-]"
                )
        if repeated := sorted({loc for loc in value if value.count(loc) > 1}):
            raise ValueError(f"location(s) listed twice: {', '.join(repeated)}")
        return value

    @field_validator("location_label", "job")
    @classmethod
    def _check_label(cls, value: str) -> str:
        if not re.fullmatch(_LABEL_NAME, value) or value.startswith("__"):
            raise ValueError(f"{value!r} is not a Prometheus label name (or value) to use")
        return value

    @model_validator(mode="after")
    def _check_quorum(self) -> FleetConfig:
        if self.min_failing_locations is not None and self.min_failing_locations > len(
            self.locations
        ):
            raise ValueError(
                f"min_failing_locations ({self.min_failing_locations}) exceeds the "
                f"{len(self.locations)} location(s) listed"
            )
        return self

    @property
    def quorum(self) -> int:
        """Locations that must fail a probe for it to be the product's failure."""
        if self.min_failing_locations is not None:
            return self.min_failing_locations
        return len(self.locations) // 2 + 1
