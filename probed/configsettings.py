"""The configuration's sections and the ``Config`` class that holds them.

``[daemon]``, ``[targets.NAME]``, ``[[slos]]``, ``[recommend]``, ``[[components]]`` and
``[alerting]``; ``Config`` adds the probes (``probed.configprobes``), the playbooks, the
maintenance windows and ``[fleet]`` (``probed.fleetconfig``), and lets ``PROBED_…``
environment variables override the file (``probed.configoverrides``). ``Config.for_shard``
is what one shard of a location runs (``probed.shard``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from yarl import URL

from probed.configoverrides import merge, overrides
from probed.configprobes import AnySpec, ProbeSpec, SseStream
from probed.configtypes import (
    DEFAULT_COMPONENTS,
    DEFAULT_LISTEN,
    PROBE_NAME,
    HasHeaders,
    ShardValue,
    StrictModel,
    split_listen,
)
from probed.durations import Duration
from probed.fleetconfig import FleetConfig
from probed.maintenanceconfig import MaintenanceConfig
from probed.model import Field, PrivateAttr, field_validator, model_validator
from probed.playbooks import PlaybookConfig
from probed.shard import Shard
from probed.webconfig import WebConfig

__all__ = [
    "DEFAULT_EVENT_LOOP",
    "SLO_WINDOWS",
    "AlertingConfig",
    "ComponentConfig",
    "Config",
    "DaemonConfig",
    "EventLoopName",
    "RecommendConfig",
    "SloConfig",
    "TargetConfig",
    "default_components",
]

EventLoopName = Literal["uvloop", "asyncio"]
"""The event loops the daemon runs on (``[daemon] event_loop``)."""

DEFAULT_EVENT_LOOP: EventLoopName = "uvloop" if sys.platform == "linux" else "asyncio"
"""uvloop on Linux (aiohttp's recommendation), asyncio's own loop elsewhere."""


class DaemonConfig(StrictModel):
    """The ``[daemon]`` section."""

    listen: str = DEFAULT_LISTEN
    location: str = "default"
    env: str = "prod"
    state_dir: Path = Path("/var/lib/probed")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "logfmt", "console"] = "json"
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    results_ring_size: int = Field(default=120, ge=1, le=100_000)
    web_config_file: Path | None = None
    """Exporter-toolkit style web config (TLS, basic auth) protecting every endpoint."""
    allow_no_probes: bool = False
    """A config without probes is refused (an empty or cut-short file) unless this is set."""
    http_max_connections: int | None = Field(default=None, ge=1, le=1_000_000)
    """Connections the server keeps open (None: 256); never over half the soft fd limit."""
    http_header_timeout: Duration = 5.0
    """Time a new connection has to finish TLS and send its first request's headers."""
    http_idle_timeout: Duration = 60.0
    """Time a kept-alive connection may wait for its next request."""
    shard: ShardValue = Shard()
    """Which of the location's instances this is (``"i/n"``, from 0): it runs what it owns."""
    event_loop: EventLoopName = DEFAULT_EVENT_LOOP
    """The event loop (asyncio's if uvloop cannot be imported); chosen once, at start."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("location")
    @classmethod
    def _check_location(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
            raise ValueError("location must be 1-64 characters of [A-Za-z0-9_.:-]")
        return value

    def host_port(self) -> tuple[str, int]:
        """Split ``listen`` into host and port (brackets of an IPv6 host removed)."""
        return split_listen(self.listen)


class TargetConfig(HasHeaders):
    """A ``[targets.NAME]`` section: a system under test."""

    base_url: str
    insecure_skip_verify: bool = False
    ca_file: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {value!r}")
        return value


SLO_WINDOWS: dict[str, float] = {
    "5m": 300.0, "30m": 1800.0, "1h": 3600.0, "2h": 7200.0, "6h": 21600.0,
    "1d": 86400.0, "3d": 259200.0, "30d": 2592000.0,
}  # fmt: skip
"""Rolling windows every SLO is evaluated over (the multi-window burn-rate set)."""


class SloConfig(StrictModel):
    """A ``[[slos]]`` table: one objective of a user journey.

    - ``availability``: share of successful runs of ``probes``;
    - ``latency``: share of runs of ``probes`` finishing within ``threshold``;
    - ``delivery_lag``: share of ``stream`` events delivered within ``threshold``.
    """

    name: str
    sli: Literal["availability", "latency", "delivery_lag"]
    objective: float = Field(gt=0.0, lt=1.0)
    probes: list[str] = Field(default_factory=list)
    stream: str | None = None
    threshold: Duration | None = None
    window: Duration = 30 * 86400.0
    description: str = ""
    runbook_url: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not PROBE_NAME.fullmatch(value):
            raise ValueError(f"SLO name {value!r} must match [a-z][a-z0-9_]*: it becomes a label")
        return value

    @model_validator(mode="after")
    def _shape(self) -> SloConfig:
        if self.sli == "delivery_lag":
            if self.stream is None or self.probes:
                raise ValueError("a delivery_lag SLO needs 'stream' (and no 'probes')")
        elif not self.probes or self.stream is not None:
            raise ValueError(f"an {self.sli} SLO needs 'probes' (and no 'stream')")
        if (self.sli == "availability") != (self.threshold is None):
            raise ValueError(
                "'threshold' is required for latency and delivery_lag SLOs and not allowed "
                "for availability"
            )
        return self

    def run_is_good(self, success: bool, duration: float) -> bool:
        """Whether a run of one of ``probes`` is a good event of this SLO."""
        if self.sli == "availability" or self.threshold is None:
            return success
        return duration <= self.threshold

    def lag_is_good(self, lag: float) -> bool:
        """Whether an event of ``stream`` delivered ``lag`` seconds late is a good event."""
        return self.threshold is not None and lag <= self.threshold


class RecommendConfig(StrictModel):
    """The ``[recommend]`` section: when degraded-mode playbooks are recommended."""

    window: Duration = 300.0
    """Signal window: failure ratios, p95s and 429 shares are taken over it."""
    evaluate_every: Duration = 10.0
    min_runs: int = Field(default=3, ge=1)
    """A probe needs this many runs in the window before it can trigger anything."""
    enter_for: Duration = 60.0
    """A condition must hold this long before a recommendation becomes active."""
    exit_for: Duration = 300.0
    """The exit condition must hold this long before a recommendation resolves."""
    canary: list[str] = Field(default_factory=list)
    """Probes against a known-good target; if they fail too, results are inconclusive."""
    disabled: list[str] = Field(default_factory=list)
    runbook_base_url: str = "https://github.com/probed/probed/blob/main/docs/runbooks.md"
    stream_lag_p95: Duration = 5.0
    stream_down_after: Duration = 60.0
    reflect_failure_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    rate_limited_share: float = Field(default=0.05, ge=0.0, le=1.0)
    login_failure_ratio: float = Field(default=0.2, ge=0.0, le=1.0)
    login_p95: Duration = 0.25
    ai_error_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    fast_burn_rate: float = Field(default=2.0, gt=0.0)
    probe_failure_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    """A plain http probe failing this share of its runs raises ``probe_failing``."""
    probe_failing_severity: Literal["Sev-1", "Sev-2", "Sev-3", "Sev-4"] = "Sev-2"
    backlog_queue_url: str | None = None
    backlog_queue_path: str = "depth"
    backlog_queue_max: float = 200.0

    @model_validator(mode="after")
    def _order(self) -> RecommendConfig:
        if self.evaluate_every > self.window:
            raise ValueError("evaluate_every must not exceed window")
        return self


class ComponentConfig(StrictModel):
    """A ``[[components]]`` table: a status-page component and the probes behind it."""

    name: str
    probes: list[str]


class AlertingConfig(StrictModel):
    """The ``[alerting]`` section: where active recommendations are pushed."""

    alertmanager_urls: list[str] = Field(default_factory=list)
    webhook_urls: list[str] = Field(default_factory=list)
    resend_interval: Duration = 60.0
    timeout: Duration = 5.0

    @field_validator("alertmanager_urls", "webhook_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for item in value:
            url = URL(item)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"{item!r} is not an absolute http(s) URL")
        return value


class Config(StrictModel):
    """The whole configuration; environment variables override the file."""

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    probes: list[AnySpec] = Field(default_factory=list)
    slos: list[SloConfig] = Field(default_factory=list)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    components: list[ComponentConfig] = Field(default_factory=list)
    playbooks: list[PlaybookConfig] = Field(default_factory=list)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)
    fleet: FleetConfig | None = None
    _source: Path = PrivateAttr(default=Path("probes.toml"))
    _hash: str | None = PrivateAttr(default=None)
    _loaded_at: float | None = PrivateAttr(default=None)
    _web: WebConfig | None = PrivateAttr(default=None)
    _warnings: list[str] = PrivateAttr(default_factory=list)
    _shard_components: list[ComponentConfig] | None = PrivateAttr(default=None)

    def __init__(self, **values: Any) -> None:
        """Validate ``values`` (the file's) with the ``PROBED_…`` variables laid over them.

        Raises ``configoverrides.SettingsError`` for a variable that must be JSON and is not.
        """
        super().__init__(**merge(values, overrides(type(self), os.environ)))

    @property
    def source(self) -> Path:
        """The file this configuration was read from."""
        return self._source

    @property
    def source_hash(self) -> str | None:
        """``config_digest`` of the file's bytes as loaded (None: not loaded from a file)."""
        return self._hash

    @property
    def loaded_at(self) -> float | None:
        """Unix time the file was read (None: not loaded from a file)."""
        return self._loaded_at

    @property
    def warnings(self) -> list[str]:
        """What loaded but deserves a look (an override that sets nothing); never fatal."""
        return list(self._warnings)

    @property
    def web(self) -> WebConfig | None:
        """The loaded ``[daemon] web_config_file`` (TLS and basic auth), if configured."""
        return self._web

    @property
    def scheduled(self) -> list[ProbeSpec]:
        """The interval-run probes (everything but streams)."""
        return [s for s in self.probes if not isinstance(s, SseStream)]

    @property
    def streams(self) -> list[SseStream]:
        """The long-lived stream watchers."""
        return [s for s in self.probes if isinstance(s, SseStream)]

    @property
    def status_components(self) -> list[ComponentConfig]:
        """The status page's components: ``[[components]]``, else ``default_components``;
        a shard's (``for_shard``) are those it has probes of."""
        if self._shard_components is not None:
            return list(self._shard_components)
        return list(self.components) or default_components(self)

    def for_shard(self, shard: Shard | None = None) -> Config:
        """What ``shard`` (default: ``[daemon] shard``) runs: a copy keeping what it owns.

        A probe is owned by the shard its name hashes to (``probed.shard``), but a probe
        following a stream (reflect, import) goes with the stream, and every shard runs the
        ``[recommend] canary`` probes and the streams they follow: a canary judges the
        prober's own vantage point. An SLO keeps the probes it owns here and is left out
        without any (a ``delivery_lag`` SLO goes with its stream); so are the components,
        except one empty in the whole file (not monitored anywhere, as without shards).
        """
        shard = self.daemon.shard if shard is None else shard
        daemon = self.daemon.model_copy(update={"shard": shard})
        if not shard.sharded:
            return (
                self if shard == self.daemon.shard else self.model_copy(update={"daemon": daemon})
            )
        everywhere = set(self.recommend.canary)
        everywhere |= {f for s in self.probes if s.name in everywhere and (f := s.follows())}
        owned = {
            s.name for s in self.probes if s.name in everywhere or shard.owns(s.follows() or s.name)
        }
        slos = [
            slo.model_copy(update={"probes": [p for p in slo.probes if p in owned]})
            for slo in self.slos
            if owned.intersection(slo.probes if slo.stream is None else [slo.stream])
        ]
        components = [
            c.model_copy(update={"probes": [p for p in c.probes if p in owned]})
            for c in self.status_components
            if not c.probes or owned.intersection(c.probes)
        ]
        narrowed = self.model_copy(
            update={
                "daemon": daemon,
                "probes": [s for s in self.probes if s.name in owned],
                "slos": slos,
                "components": components if self.components else [],
            }
        )
        narrowed._shard_components = components
        return narrowed

    def secret_values(self) -> list[str]:
        """Every resolved secret value (for the log redactor)."""
        holders = [*self.targets.values(), *self.probes]
        return [v for holder in holders for v in holder.resolved_secrets().values() if v]


def default_components(config: Config) -> list[ComponentConfig]:
    """The five default components, each probe in the one its kind's ``component()`` names."""
    members: dict[str, list[str]] = {name: [] for name in DEFAULT_COMPONENTS}
    for spec in config.probes:
        members[spec.component()].append(spec.name)
    return [ComponentConfig(name=name, probes=probes) for name, probes in members.items()]
