"""Configuration: ``probes.toml`` plus ``PROBED_…`` environment overrides.

The file has three parts::

    [daemon]            listen address, location label, state dir, logging, concurrency
    [targets.NAME]      base URL and default headers of a system under test
    [[probes]]          one table per probe; ``kind`` selects the model

Environment variables override the file through pydantic-settings, with
``__`` between nesting levels: ``PROBED_DAEMON__LISTEN=0.0.0.0:10115``,
``PROBED_TARGETS__DEMO__BASE_URL=https://staging.example``.

Every problem is reported at once, each naming the file, the line, the probe
(or section) and the key, for example::

    probes.toml:14: probe 'login' (probes[1]) key 'timeout': timeout 30s must be
    shorter than interval 15s

Secrets are never written in the file: a secret is a table naming where to read
it (``{ env = "NAME" }``, ``{ file = "/path" }`` or ``{ credential = "name" }``
for systemd's ``LoadCredential=``), resolved once at load time into a
``SecretStr``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from yarl import URL

from probed.buckets import DELIVERY_LAG_BUCKETS, DURATION_BUCKETS, check_lag_buckets
from probed.configchecks import (
    credential_name_problem,
    env_list_problems,
    header_value_problems,
    without_invalid_keys,
)
from probed.configenv import unknown_overrides
from probed.configfile import config_digest, decode_config_text, parse_toml, read_config_bytes
from probed.confighints import did_you_mean, known_keys, ratio_hint
from probed.configlocate import Locator
from probed.durations import Duration, format_duration
from probed.errors import ConfigError, SecretError
from probed.maintenanceconfig import MaintenanceConfig, config_problems
from probed.playbooks import SCENARIO_IDS, PlaybookConfig, duplicate_problems
from probed.webconfig import WebConfig, load_web_config

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "SLO_WINDOWS",
    "AlertingConfig",
    "AnySpec",
    "ComponentConfig",
    "Config",
    "DaemonConfig",
    "Duration",
    "FixtureProbe",
    "HttpProbe",
    "ImportProbe",
    "JsonAssertion",
    "LoginProbe",
    "ProbeSpec",
    "RecommendConfig",
    "RedirectMode",
    "ReflectProbe",
    "SecretRef",
    "SloConfig",
    "SseStream",
    "TargetConfig",
    "format_duration",
    "load_config",
    "split_listen",
]

#: 9100-9999 is fully allocated to exporters; 10115 is outside it, not taken by a
#: known exporter, and easy to remember next to blackbox_exporter's 9115.
DEFAULT_PORT = 10115
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where to read a secret: exactly one of ``env``, ``file`` or ``credential``."""

    env: str | None = None
    file: Path | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "credential") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a secret needs exactly one of 'env', 'file' or 'credential', "
                f"got {', '.join(given) or 'none'}"
            )
        return self

    def describe(self) -> str:
        """Name the source without revealing the value (for error messages)."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return f"credential {self.credential!r} in $CREDENTIALS_DIRECTORY"

    def read(self, environ: Mapping[str, str], base_dir: Path) -> SecretStr:
        """Read the secret now; raise ``SecretError`` naming the source if missing or empty."""
        if self.env is not None:
            value = environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set")
        else:
            if self.file is not None:
                if "\0" in str(self.file):
                    raise SecretError(f"file name {str(self.file)!r} contains a NUL byte")
                path = self.file if self.file.is_absolute() else base_dir / self.file
            else:
                if problem := credential_name_problem(str(self.credential)):
                    raise SecretError(problem)
                cred_dir = environ.get("CREDENTIALS_DIRECTORY")
                if not cred_dir:
                    raise SecretError(
                        f"credential {self.credential!r} requested but $CREDENTIALS_DIRECTORY "
                        "is not set (use LoadCredential= in the systemd unit)"
                    )
                path = Path(cred_dir) / str(self.credential)
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
        if not value:
            raise SecretError(f"{self.describe()} is empty")
        return SecretStr(value)


HeaderValue = str | SecretRef


def _reject_inline_secret(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(
            'inline secrets are not accepted; write { env = "NAME" }, '
            '{ file = "/path" } or { credential = "name" }'
        )
    return value


class _HasHeaders(_Strict):
    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    _resolved_headers: dict[str, str] = PrivateAttr(default_factory=dict)

    def secret_refs(self) -> Iterable[tuple[str, SecretRef]]:
        """Yield (key path, reference) for every secret this model needs."""
        for name, value in self.headers.items():
            if isinstance(value, SecretRef):
                yield f"headers.{name}", value

    def resolved_headers(self) -> dict[str, str]:
        """Headers with secret references replaced by their values."""
        return dict(self._resolved_headers)

    def resolved_secrets(self) -> dict[str, str]:
        """Each resolved secret value by key path (``headers.NAME``, ``password``)."""
        return {
            f"headers.{name}": self._resolved_headers.get(name, "")
            for name, value in self.headers.items()
            if isinstance(value, SecretRef)
        }

    def _store_secret(self, key: str, value: SecretStr) -> None:
        if key.startswith("headers."):
            self._resolved_headers[key.removeprefix("headers.")] = value.get_secret_value()

    def _finish_headers(self) -> None:
        for name, value in self.headers.items():
            if isinstance(value, str):
                self._resolved_headers[name] = value


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT``) as (host without brackets, port); ValueError if not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT (e.g. {DEFAULT_LISTEN!r}), got {listen!r}")
    return host.strip("[]"), int(port)


class DaemonConfig(_Strict):
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


class TargetConfig(_HasHeaders):
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


_PROBE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
"""An HTTP field name (RFC 9110 token)."""


class JsonAssertion(_Strict):
    """Check one value in a JSON body: ``path`` exists, and equals ``equals`` if given."""

    path: str
    equals: str | int | float | bool | None = None
    exists: bool = True

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            raise ValueError(f"path must be dotted keys like 'data.status', got {value!r}")
        return value


def _check_abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"path must start with '/', got {value!r}")
    return value


class _Named(_HasHeaders):
    """Fields every probe and stream has: a label-safe name and a target."""

    name: str
    target: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _PROBE_NAME.fullmatch(value):
            raise ValueError(
                f"probe name {value!r} must match [a-z][a-z0-9_]* (max 63 characters): "
                "it becomes a metric label"
            )
        return value


def _redirect_mode(value: object) -> object:
    # the former boolean: true stays on the target's origin, false follows nothing
    if isinstance(value, bool):
        return "same-origin" if value else "none"
    return value


#: Where a probe follows redirects (``probed.probes.redirects`` enforces it per hop).
RedirectMode = Annotated[
    Literal["same-origin", "same-host", "any", "none"], BeforeValidator(_redirect_mode)
]


class _ProbeBase(_Named):
    """An interval-run probe whose run starts with one HTTP request."""

    interval: Duration = 30.0
    timeout: Duration = 10.0
    latency_threshold: Duration | None = None
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    path: str = "/"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    fresh_connection: bool = True
    follow_redirects: RedirectMode = "same-origin"
    max_redirects: int = Field(default=10, ge=0, le=50)
    allow_insecure_redirects: bool = False
    """Follow a redirect from https to http (always refused otherwise)."""
    max_body_size: int = Field(default=10 * 1024 * 1024, ge=1)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _check_abs_path(value)

    @field_validator("expect_status")
    @classmethod
    def _check_status(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 100 <= s <= 599]
        if bad or not value:
            raise ValueError(f"expect_status must be non-empty HTTP status codes, got {value}")
        return value


class HttpProbe(_ProbeBase):
    """``kind = "http"``: one request, checked for status, body and JSON content."""

    kind: Literal["http"] = "http"
    body: str | None = None
    json_body: dict[str, Any] | list[Any] | None = None
    body_regex: str | None = None
    body_not_regex: str | None = None
    json_checks: list[JsonAssertion] = Field(default_factory=list)

    @field_validator("body_regex", "body_not_regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpProbe:
        if self.body is not None and self.json_body is not None:
            raise ValueError("set either 'body' or 'json_body', not both")
        return self


class FollowUp(_Strict):
    """The authenticated request a login probe makes with the token it obtained."""

    path: str = "/api/me"
    method: Literal["GET", "POST"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    json_checks: list[JsonAssertion] = Field(default_factory=list)


class LoginProbe(_ProbeBase):
    """``kind = "login"``: post credentials, expect a token, optionally use it."""

    kind: Literal["login"] = "login"
    method: Literal["POST"] = "POST"
    path: str = "/api/auth/login"
    latency_threshold: Duration | None = 0.25
    encoding: Literal["json", "form"] = "json"
    username: str
    username_field: str = "username"
    password_field: str = "password"
    password: Annotated[SecretRef, BeforeValidator(_reject_inline_secret)]
    token_path: str | None = "token"
    token_cookie: str | None = None
    token_header: str = "Authorization"
    """The follow-up presents a ``token_path`` token in this header, after ``token_prefix``."""
    token_prefix: str = "Bearer "
    follow_up: FollowUp | None = None
    _password: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _token_source(self) -> LoginProbe:
        if self.token_path is None and self.token_cookie is None:
            raise ValueError("set 'token_path' or 'token_cookie' so the probe can find the token")
        if not _HEADER_NAME.fullmatch(self.token_header):
            raise ValueError(f"token_header {self.token_header!r} is not a valid header name")
        if any(c in self.token_prefix for c in "\r\n\0"):
            raise ValueError("token_prefix must not contain line breaks")
        return self

    def secret_refs(self) -> Iterable[tuple[str, SecretRef]]:
        yield from super().secret_refs()
        yield "password", self.password

    def _store_secret(self, key: str, value: SecretStr) -> None:
        if key == "password":
            self._password = value
        else:
            super()._store_secret(key, value)

    def password_value(self) -> str:
        """The resolved password (only for building the request body)."""
        return self._password.get_secret_value()

    def resolved_secrets(self) -> dict[str, str]:
        return {**super().resolved_secrets(), "password": self.password_value()}


class FixtureProbe(_ProbeBase):
    """``kind = "fixture"``: post a fixed input, hash the canonical JSON answer, compare."""

    kind: Literal["fixture"] = "fixture"
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "POST"
    input_file: Path
    content_type: str = "application/json"
    select: str | None = None
    expected_sha256: str
    _input: bytes = PrivateAttr(default=b"")

    @field_validator("expected_sha256")
    @classmethod
    def _check_sha(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("expected_sha256 must be 64 lowercase hex characters")
        return value

    def input_bytes(self) -> bytes:
        """The input file's content, read at load time."""
        return self._input


class SseStream(_Named):
    """``kind = "sse"``: a long-lived stream watcher (not interval-run).

    Holds ``subscribers`` connections, reconnects with backoff honouring
    ``retry:`` and ``Last-Event-ID``, and accounts every event: delivery lag
    from ``lag_field``, loss/duplication/reordering from a sequence.
    """

    kind: Literal["sse"] = "sse"
    path: str = "/"
    subscribers: int = Field(default=1, ge=1, le=1000)
    connect_timeout: Duration = 10.0
    idle_timeout: Duration = 30.0
    event_timeout: Duration | None = 300.0
    """No event (comments and pings do not count) for this long: reason ``no_events``."""
    reconnect_initial: Duration = 0.5
    reconnect_max: Duration = 30.0
    retry_max: Duration = 300.0
    """The longest reconnection delay a server's ``retry:`` can ask for; longer is capped."""
    min_reconnect_delay: Duration = 1.0
    """No reconnect comes sooner: at most 60/this + 1 connections a minute per subscriber."""
    min_connection_lifetime: Duration = 5.0
    """A connection ending sooner is a failed attempt for the backoff, whatever it received."""
    max_event_rate: int = Field(default=5000, ge=1, le=1_000_000)
    """Events and comments a connection may deliver per second; beyond: cut, reason ``flood``."""
    lag_field: str | None = "enqueued_at"
    lag_format: Literal["auto", "rfc3339", "epoch_s", "epoch_ms"] = "auto"
    sequence_field: str | None = None
    sequence_from_id: bool = False
    sequence_epoch_field: str | None = None
    """Dotted path of the producer's run (epoch) in the JSON data: a changed value is a reset."""
    event_types: list[str] = Field(default_factory=list)
    late_after: Duration = 5.0
    burst_spread: Duration = 1.0
    """Timed events of one read whose enqueue stamps span this much: coalesced (a burst)."""
    loss_timeout: Duration = 30.0
    reorder_window: int = Field(default=4096, ge=16, le=1_000_000)
    max_line_size: int = Field(default=1 << 20, ge=1024)
    max_event_size: int = Field(default=4 << 20, ge=1024)
    time_path: str | None = None
    clock_check_interval: Duration = 60.0
    clock: Literal["correct", "trust", "ignore"] = "correct"
    """What lags do with the target's clock offset (``probed.skew``, README)."""
    clock_tolerance: Duration = 1.0
    lag_buckets: Annotated[tuple[Duration, ...], AfterValidator(check_lag_buckets)] = (
        DELIVERY_LAG_BUCKETS
    )
    """Upper bounds of the stream's lag histograms (see ``probed.buckets``)."""

    @field_validator("path", "time_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        return None if value is None else _check_abs_path(value)

    @field_validator("event_timeout", mode="before")
    @classmethod
    def _event_timeout_off(cls, value: object) -> object:
        return None if value == "off" else value


_REFLECT_TEMPLATE = (
    '{"type": "probe.reflect", "nonce": "{nonce}", "sent_at": "{sent_at}", "seq": {seq}}'
)


class ReflectProbe(_ProbeBase):
    """``kind = "reflect"``: inject a canary event, time its arrival on a live stream.

    The run's request is the inject (``method``/``path``/``body_template``);
    the lag runs on our monotonic clock from just before the inject to receipt.
    """

    kind: Literal["reflect"] = "reflect"
    fresh_connection: bool = False
    """Reflect measures delivery, not connection set-up: the inject reuses a connection."""
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "POST"
    path: str = "/api/v1/outbox"
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202])
    timeout: Duration = 15.0
    body_template: str = _REFLECT_TEMPLATE
    content_type: str = "application/json"
    transport: Literal["sse", "websocket"] = "sse"
    stream: str | None = None
    ws_path: str | None = None
    deadline: Duration = 3.0
    lost_after: Duration = 10.0

    @field_validator("ws_path")
    @classmethod
    def _check_ws_path(cls, value: str | None) -> str | None:
        return None if value is None else _check_abs_path(value)

    @model_validator(mode="after")
    def _transport_source(self) -> ReflectProbe:
        if "{nonce}" not in self.body_template:
            raise ValueError("body_template must contain the {nonce} placeholder")
        if self.transport == "sse" and self.stream is None:
            raise ValueError("transport 'sse' needs 'stream' (the name of a kind = \"sse\" probe)")
        if self.transport == "websocket" and self.ws_path is None:
            raise ValueError("transport 'websocket' needs 'ws_path'")
        return self


class ImportProbe(_ProbeBase):
    """``kind = "import"``: start a job, follow its progress to 100 % or the deadline."""

    kind: Literal["import"] = "import"
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "POST"
    path: str = "/api/v1/imports"
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202])
    interval: Duration = 300.0
    timeout: Duration = 90.0
    json_body: dict[str, Any] | None = Field(
        default_factory=lambda: {"broker": "mock", "trades": 50}
    )
    job_id_path: str = "id"
    progress_source: Literal["poll", "stream"] = "poll"
    status_path: str = "/api/v1/imports/{job_id}"
    poll_interval: Duration = 1.0
    progress_path: str = "progress"
    done_at: float = 100.0
    stream: str | None = None
    event_type: str = "import.progress"
    event_job_id_path: str = "payload.job_id"
    event_progress_path: str = "payload.progress"
    deadline: Duration = 60.0
    stall_after: Duration = 15.0

    @model_validator(mode="after")
    def _progress_source(self) -> ImportProbe:
        if self.progress_source == "stream" and self.stream is None:
            raise ValueError("progress_source 'stream' needs 'stream' (a kind = \"sse\" probe)")
        if "{job_id}" not in self.status_path and self.progress_source == "poll":
            raise ValueError("status_path must contain the {job_id} placeholder")
        return self


#: Interval-run probes: the scheduler runs these through ``probed.probes.PROBERS``.
ProbeSpec = Annotated[
    HttpProbe | LoginProbe | FixtureProbe | ReflectProbe | ImportProbe,
    Field(discriminator="kind"),
]
#: Everything a ``[[probes]]`` table may be: interval-run probes and long-lived streams.
AnySpec = Annotated[
    HttpProbe | LoginProbe | FixtureProbe | ReflectProbe | ImportProbe | SseStream,
    Field(discriminator="kind"),
]


SLO_WINDOWS: dict[str, float] = {
    "5m": 300.0, "30m": 1800.0, "1h": 3600.0, "2h": 7200.0, "6h": 21600.0,
    "1d": 86400.0, "3d": 259200.0, "30d": 2592000.0,
}  # fmt: skip
"""Rolling windows every SLO is evaluated over (the multi-window burn-rate set)."""


class SloConfig(_Strict):
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
        if not _PROBE_NAME.fullmatch(value):
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


class RecommendConfig(_Strict):
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


class ComponentConfig(_Strict):
    """A ``[[components]]`` table: a status-page component and the probes behind it."""

    name: str
    probes: list[str]


class AlertingConfig(_Strict):
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


class Config(BaseSettings):
    """The whole configuration; environment variables override the file."""

    model_config = SettingsConfigDict(
        env_prefix="PROBED_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    probes: list[AnySpec] = Field(default_factory=list)
    slos: list[SloConfig] = Field(default_factory=list)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    components: list[ComponentConfig] = Field(default_factory=list)
    playbooks: list[PlaybookConfig] = Field(default_factory=list)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)
    _source: Path = PrivateAttr(default=Path("probes.toml"))
    _hash: str | None = PrivateAttr(default=None)
    _loaded_at: float | None = PrivateAttr(default=None)
    _web: WebConfig | None = PrivateAttr(default=None)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

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

    def probe(self, name: str) -> AnySpec:
        """The probe or stream called ``name``; ``KeyError`` if there is none."""
        for spec in self.probes:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def scheduled(self) -> list[ProbeSpec]:
        """The interval-run probes (everything but streams)."""
        return [s for s in self.probes if not isinstance(s, SseStream)]

    @property
    def streams(self) -> list[SseStream]:
        """The long-lived stream watchers."""
        return [s for s in self.probes if isinstance(s, SseStream)]

    def secret_values(self) -> list[str]:
        """Every resolved secret value (for the log redactor)."""
        holders = [*self.targets.values(), *self.probes]
        return [v for holder in holders for v in holder.resolved_secrets().values() if v]


# ---------------------------------------------------------------------------
# loading and error reporting


_NOUNS = {
    "slos": ("slo", "name"),
    "components": ("component", "name"),
    "playbooks": ("playbook", "scenario"),
}
"""Arrays of tables other than probes: the noun and the key naming an element."""


def _describe_loc(
    loc: Sequence[int | str], raw: Mapping[str, Any], locator: Locator
) -> tuple[int | None, str]:
    """Turn a pydantic location into (line, 'probe 'x' (probes[3]) key 'y'')."""
    parts = [str(p) for p in loc]
    if not parts:
        return None, "config"
    section = parts[0]
    if section == "probes" and len(parts) >= 2 and parts[1].isdigit():
        index = int(parts[1])
        rest = parts[2:]
        if rest and rest[0] in _KINDS:
            rest = rest[1:]
        key = ".".join(rest) if rest else None
        probes = raw.get("probes")
        name = None
        if isinstance(probes, list) and index < len(probes) and isinstance(probes[index], dict):
            name = probes[index].get("name")
        who = f"probe {name!r} (probes[{index}])" if name else f"probes[{index}]"
        line = locator.line("probes", index, key)
        return line, f"{who} key {key!r}" if key else who
    if section == "maintenance" and len(parts) >= 2 and parts[1].isdigit():
        key = ".".join(parts[2:]) or None
        line = locator.line(section, int(parts[1]), key)
        return line, f"maintenance[{parts[1]}] key {key!r}" if key else f"maintenance[{parts[1]}]"
    if section in _NOUNS and len(parts) >= 2 and parts[1].isdigit():
        index = int(parts[1])
        key = ".".join(parts[2:]) or None
        items = raw.get(section)
        name = None
        noun, name_key = _NOUNS[section]
        if isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
            name = items[index].get(name_key)
        who = f"{noun} {name!r} ({section}[{index}])" if name else f"{section}[{index}]"
        line = locator.line(section, index, key)
        return line, f"{who} key {key!r}" if key else who
    if section == "targets" and len(parts) >= 2:
        key = ".".join(parts[2:]) or None
        line = locator.line(f"targets.{parts[1]}", None, key)
        return line, f"target {parts[1]!r} key {key!r}" if key else f"target {parts[1]!r}"
    if section in ("daemon", "recommend", "alerting"):
        key = ".".join(parts[1:]) or None
        where = f"[{section}] key {key!r}" if key else f"[{section}]"
        return locator.line(section, None, key), where
    return locator.line(section, None, None), f"key {'.'.join(parts)!r}"


def _kinds() -> tuple[str, ...]:
    """The ``kind`` values of the ProbeSpec union, read from the models (written once)."""
    union = get_args(AnySpec)[0]
    return tuple(model.model_fields["kind"].default for model in get_args(union))


_KINDS = _kinds()


def _env_origin(loc: Sequence[int | str]) -> str:
    """`` (from environment variable NAME)`` if a set variable could have set ``loc``, else ''."""
    if not loc or loc[0] == "probes":
        return ""
    name = "PROBED_" + "__".join(str(p).upper() for p in loc)
    return f" (from environment variable {name})" if name in os.environ else ""


def _pydantic_problems(
    exc: ValidationError, path: Path, raw: Mapping[str, Any], locator: Locator
) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")
        line, where = _describe_loc(loc, raw, locator)
        if err["type"] == "union_tag_invalid":
            kind = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
            msg = f"unknown kind {kind!r}; expected one of: {', '.join(_KINDS)}"
        elif err["type"] == "union_tag_not_found":
            msg = f"missing key 'kind'; expected one of: {', '.join(_KINDS)}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(str(loc[-1]), known_keys(Config, loc))
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            msg += ratio_hint(str(loc[-1]), err)
        origin = _env_origin(loc)
        problems.append(f"{path}{f':{line}' if line else ''}: {where}{origin}: {msg}")
    return problems


_At = Callable[[int, str | None, str, str], None]


def _stream_problems(spec: SseStream, index: int, at: _At) -> None:
    if spec.reconnect_initial > spec.reconnect_max:
        at(
            index,
            "reconnect_initial",
            spec.name,
            f"reconnect_initial {format_duration(spec.reconnect_initial)} is longer than "
            f"reconnect_max {format_duration(spec.reconnect_max)}",
        )
    if spec.max_line_size > spec.max_event_size:
        at(index, "max_line_size", spec.name, "max_line_size must not exceed max_event_size")


def _follow_up_problems(spec: ReflectProbe | ImportProbe, index: int, at: _At, cfg: Config) -> None:
    """Cross-field checks of reflect and import probes (deadlines, stream references)."""
    streams = {s.name: s for s in cfg.streams}
    if spec.stream is not None and spec.stream not in streams:
        known = ", ".join(sorted(streams)) or "none defined"
        at(
            index,
            "stream",
            spec.name,
            f'unknown stream {spec.stream!r} (kind = "sse" probes: {known})',
        )
    elif spec.stream is not None and streams[spec.stream].target != spec.target:
        at(
            index,
            "stream",
            spec.name,
            f"stream {spec.stream!r} watches target {streams[spec.stream].target!r}, "
            f"not {spec.target!r}",
        )
    last, key = (
        (spec.lost_after, "lost_after")
        if isinstance(spec, ReflectProbe)
        else (spec.deadline, "deadline")
    )
    if isinstance(spec, ReflectProbe) and spec.deadline >= spec.lost_after:
        at(
            index,
            "deadline",
            spec.name,
            f"deadline {format_duration(spec.deadline)} must be shorter than lost_after "
            f"{format_duration(spec.lost_after)}",
        )
    if last >= spec.timeout:
        at(
            index,
            "timeout",
            spec.name,
            f"timeout {format_duration(spec.timeout)} must be longer than {key} "
            f"{format_duration(last)}",
        )


def _semantic_problems(
    cfg: Config, path: Path, locator: Locator, environ: Mapping[str, str], secrets: bool
) -> list[str]:
    problems: list[str] = []
    base_dir = path.resolve().parent  # relative paths are the real file's, not a link's

    def at(index: int, key: str | None, name: str, msg: str) -> None:
        line = locator.line("probes", index, key)
        key_part = f" key {key!r}" if key else ""
        where = f"probe {name!r} (probes[{index}]){key_part}"
        problems.append(f"{path}{f':{line}' if line else ''}: {where}: {msg}")

    seen: dict[str, int] = {}
    for index, spec in enumerate(cfg.probes):
        if spec.name in seen:
            at(
                index,
                "name",
                spec.name,
                f"duplicate probe name (first used by probes[{seen[spec.name]}])",
            )
        else:
            seen[spec.name] = index
        if spec.target not in cfg.targets:
            known = ", ".join(sorted(cfg.targets)) or "none defined"
            at(index, "target", spec.name, f"unknown target {spec.target!r} (targets: {known})")
        if isinstance(spec, SseStream):
            _stream_problems(spec, index, at)
        elif spec.timeout >= spec.interval:
            at(
                index,
                "timeout",
                spec.name,
                f"timeout {format_duration(spec.timeout)} must be shorter than interval "
                f"{format_duration(spec.interval)}",
            )
        if isinstance(spec, ReflectProbe | ImportProbe):
            _follow_up_problems(spec, index, at, cfg)
        if (
            not isinstance(spec, SseStream)
            and spec.latency_threshold is not None
            and spec.latency_threshold > spec.timeout
        ):
            at(
                index,
                "latency_threshold",
                spec.name,
                f"latency_threshold {format_duration(spec.latency_threshold)} is longer than "
                f"timeout {format_duration(spec.timeout)}: it could never fire",
            )
        for key, ref in spec.secret_refs() if secrets else ():
            try:
                spec._store_secret(key, ref.read(environ, base_dir))
            except SecretError as exc:
                at(index, key, spec.name, f"secret not available: {exc}")
        spec._finish_headers()
        for key, msg in header_value_problems(spec.headers, spec.resolved_headers()):
            at(index, key, spec.name, msg)
        if isinstance(spec, FixtureProbe):
            input_path = (
                spec.input_file if spec.input_file.is_absolute() else base_dir / spec.input_file
            )
            try:
                spec._input = input_path.read_bytes()
            except OSError as exc:
                at(index, "input_file", spec.name, f"cannot read {input_path}: {exc.strerror}")
    problems.extend(_reference_problems(cfg, path, locator))
    for tname, target in cfg.targets.items():
        where: list[tuple[str, str]] = []
        for key, ref in target.secret_refs() if secrets else ():
            try:
                target._store_secret(key, ref.read(environ, base_dir))
            except SecretError as exc:
                where.append((key, f"secret not available: {exc}"))
        target._finish_headers()
        where.extend(header_value_problems(target.headers, target.resolved_headers()))
        for key, msg in where:
            line = locator.line(f"targets.{tname}", None, key)
            problems.append(
                f"{path}{f':{line}' if line else ''}: target {tname!r} key {key!r}: {msg}"
            )
    return problems


def _reference_problems(cfg: Config, path: Path, locator: Locator) -> list[str]:
    """SLOs, components and canaries name probes that exist; a scenario has one playbook."""
    problems: list[str] = []
    scheduled = {s.name for s in cfg.scheduled}
    streams = {s.name for s in cfg.streams}
    lag_buckets = {s.name: s.lag_buckets for s in cfg.streams}

    def at(section: str, index: int | None, key: str, who: str, msg: str) -> None:
        line = locator.line(section, index, key)
        problems.append(f"{path}{f':{line}' if line else ''}: {who} key {key!r}: {msg}")

    def unknown(names: list[str], known: set[str]) -> list[str]:
        return [n for n in names if n not in known]

    seen: set[str] = set()
    for i, slo in enumerate(cfg.slos):
        who = f"slo {slo.name!r} (slos[{i}])"
        if slo.name in seen:
            at("slos", i, "name", who, "duplicate SLO name")
        seen.add(slo.name)
        if missing := unknown(slo.probes, scheduled):
            at("slos", i, "probes", who, f"unknown probe(s) {', '.join(map(repr, missing))}")
        if slo.stream is not None and slo.stream not in streams:
            at("slos", i, "stream", who, f"unknown stream {slo.stream!r}")
        buckets = DURATION_BUCKETS
        where, add = "a histogram bucket boundary", ""
        if slo.sli == "delivery_lag":
            buckets = lag_buckets.get(slo.stream or "", DELIVERY_LAG_BUCKETS)
            where = f"one of stream {slo.stream!r}'s lag_buckets"
            add = "; or add it to the stream's lag_buckets"
        if slo.threshold is not None and slo.threshold not in buckets:
            choices = ", ".join(format_duration(b) for b in buckets)
            at(
                "slos",
                i,
                "threshold",
                who,
                f"threshold {format_duration(slo.threshold)} is not {where} "
                f"(so Prometheus rules could not compute it); use one of: {choices}{add}",
            )
    for i, comp in enumerate(cfg.components):
        who = f"component {comp.name!r} (components[{i}])"
        if missing := unknown(comp.probes, scheduled | streams):
            at("components", i, "probes", who, f"unknown probe(s) {', '.join(map(repr, missing))}")
    for i, message in duplicate_problems(cfg.playbooks):
        who = f"playbook {cfg.playbooks[i].scenario!r} (playbooks[{i}])"
        at("playbooks", i, "scenario", who, message)
    if missing := unknown(cfg.recommend.disabled, set(SCENARIO_IDS)):
        at(
            "recommend",
            None,
            "disabled",
            "[recommend]",
            f"unknown scenario(s) {', '.join(map(repr, missing))} "
            f"(scenarios: {', '.join(SCENARIO_IDS)})",
        )
    if missing := unknown(cfg.recommend.canary, scheduled):
        at(
            "recommend",
            None,
            "canary",
            "[recommend]",
            f"unknown probe(s) {', '.join(map(repr, missing))}",
        )
    windows = config_problems(
        cfg.maintenance,
        probes=scheduled | streams,
        targets=set(cfg.targets),
        components={c.name for c in cfg.components},
    )
    for i, key, msg in windows:
        line = locator.line("maintenance", i, key)
        where = f"maintenance[{i}]" + (f" key {key!r}" if key else "")
        problems.append(f"{path}{f':{line}' if line else ''}: {where}: {msg}")
    return problems


def _problems_beside(
    exc: ValidationError,
    raw: Mapping[str, Any],
    path: Path,
    locator: Locator,
    environ: Mapping[str, str],
    secrets: bool,
) -> list[str]:
    """The semantic problems of the parts ``exc`` did not refuse (none if they cannot be told)."""
    found = without_invalid_keys(raw, (e["loc"] for e in exc.errors()), _KINDS)
    if found is None:
        return []
    repaired, refused = found
    try:
        cfg = Config(**repaired)
    except ValidationError:
        return []
    cfg._source = path
    referenced = [
        ref.env
        for owner in [*cfg.probes, *cfg.targets.values()]
        for _, ref in owner.secret_refs()
        if ref.env is not None
    ]
    cfg._warnings = unknown_overrides(os.environ, Config, referenced)
    problems = _semantic_problems(cfg, path, locator, environ, secrets)
    return [p for p in problems if not any(e in p for e in refused)]


def load_config(
    path: Path | str, environ: Mapping[str, str] | None = None, *, secrets: bool = True
) -> Config:
    """Read, validate and resolve the configuration; raise ``ConfigError`` listing every problem.

    The config (and the error, once the file could be read) carries the file's hash. With
    ``secrets=False`` no secret is read (nor missing): for commands that never probe
    (``rules``, ``status``, ``healthcheck``); such a config cannot run probes that need one.
    """
    path = Path(path)
    loaded_at = time.time()
    data = read_config_bytes(path)
    try:
        cfg = _validated(path, decode_config_text(data, path), environ, secrets)
    except ConfigError as exc:
        exc.file_hash = config_digest(data)
        raise
    cfg._hash, cfg._loaded_at = config_digest(data), loaded_at
    return cfg


def _validated(
    path: Path, text: str, environ: Mapping[str, str] | None, secrets: bool = True
) -> Config:
    environ = os.environ if environ is None else environ
    raw = parse_toml(text, path)
    locator = Locator(text)
    prefix = Config.model_config.get("env_prefix", "")
    lists = [name for name, f in Config.model_fields.items() if get_origin(f.annotation) is list]
    if env_problems := env_list_problems(path, os.environ, prefix, lists):
        raise ConfigError(env_problems)
    try:
        cfg = Config(**raw)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, path, raw, locator)
        beside = _problems_beside(exc, raw, path, locator, environ, secrets)
        raise ConfigError(problems + beside) from None
    cfg._source = path
    referenced = [
        ref.env
        for owner in [*cfg.probes, *cfg.targets.values()]
        for _, ref in owner.secret_refs()
        if ref.env is not None
    ]
    cfg._warnings = unknown_overrides(os.environ, Config, referenced)
    problems = _semantic_problems(cfg, path, locator, environ, secrets)
    if not cfg.probes and not cfg.daemon.allow_no_probes:
        problems.append(
            f"{path}: no probes configured (an empty or cut-short file?); "
            "set allow_no_probes = true under [daemon] if that is intended"
        )
    web_file = cfg.daemon.web_config_file
    if web_file is not None:
        web_path = web_file if web_file.is_absolute() else path.parent / web_file
        try:
            cfg._web = load_web_config(web_path, _env_origin(("daemon", "web_config_file")))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return cfg
