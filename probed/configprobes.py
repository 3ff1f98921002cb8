"""The ``[[probes]]`` models: one per ``kind``, and the unions that pick one by ``kind``.

``ProbeModel`` is the one list of the interval-run kinds. Built from it: ``ProbeSpec``
(what the scheduler runs through ``probed.probes.PROBERS``), ``AnySpec`` (what a table
may be, streams included), the tuples ``PROBE_MODELS`` and ``SPEC_MODELS`` of their
models and ``KINDS``, the ``kind`` values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, get_args

from probed.buckets import DELIVERY_LAG_BUCKETS, check_lag_buckets
from probed.configtypes import (
    API_READ,
    API_WRITE,
    BACKGROUND_JOBS,
    HEADER_NAME,
    PROBE_NAME,
    SSE_STREAM,
    HasHeaders,
    JsonAssertion,
    RedirectMode,
    SecretRef,
    StrictModel,
    check_abs_path,
    reject_inline_secret,
)
from probed.durations import Duration
from probed.model import (
    AfterValidator,
    BeforeValidator,
    Field,
    Model,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = [
    "KINDS",
    "MODEL_OF_KIND",
    "PROBE_MODELS",
    "SPEC_MODELS",
    "AnySpec",
    "FixtureProbe",
    "FollowUp",
    "HttpProbe",
    "ImportProbe",
    "LoginProbe",
    "ProbeModel",
    "ProbeSpec",
    "ReflectProbe",
    "SseStream",
]


class _Named(HasHeaders):
    """Fields every probe and stream has: a label-safe name and a target.

    Every kind sets two traits (a test checks each model sets them itself):
    ``COMPONENT``, the default status-page component of its probes
    (``DEFAULT_COMPONENTS``), and ``REPORTS_HTTP_STATUS``, whether a run's result
    carries the HTTP status of the probe's own request.
    """

    COMPONENT: ClassVar[str]
    REPORTS_HTTP_STATUS: ClassVar[bool]
    name: str
    target: str

    def component(self) -> str:
        """The default status-page component of this probe."""
        return self.COMPONENT

    def follows(self) -> str | None:
        """The stream watcher whose events this probe's runs wait for (None: none)."""
        return None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not PROBE_NAME.fullmatch(value):
            raise ValueError(
                f"probe name {value!r} must match [a-z][a-z0-9_]* (max 63 characters): "
                "it becomes a metric label"
            )
        return value


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
        return check_abs_path(value)

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
    COMPONENT: ClassVar[str] = API_READ
    REPORTS_HTTP_STATUS: ClassVar[bool] = True

    def component(self) -> str:
        """API Read for GET and HEAD, API Write for every other method."""
        return API_READ if self.method in ("GET", "HEAD") else API_WRITE

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


class FollowUp(StrictModel):
    """The authenticated request a login probe makes with the token it obtained."""

    path: str = "/api/me"
    method: Literal["GET", "POST"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    json_checks: list[JsonAssertion] = Field(default_factory=list)


class LoginProbe(_ProbeBase):
    """``kind = "login"``: post credentials, expect a token, optionally use it."""

    kind: Literal["login"] = "login"
    COMPONENT: ClassVar[str] = API_WRITE
    REPORTS_HTTP_STATUS: ClassVar[bool] = True
    method: Literal["POST"] = "POST"
    path: str = "/api/auth/login"
    latency_threshold: Duration | None = 0.25
    encoding: Literal["json", "form"] = "json"
    username: str
    username_field: str = "username"
    password_field: str = "password"
    password: Annotated[SecretRef, BeforeValidator(reject_inline_secret)]
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
        if not HEADER_NAME.fullmatch(self.token_header):
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
    COMPONENT: ClassVar[str] = API_WRITE
    REPORTS_HTTP_STATUS: ClassVar[bool] = True
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
    COMPONENT: ClassVar[str] = SSE_STREAM
    REPORTS_HTTP_STATUS: ClassVar[bool] = False
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
        return None if value is None else check_abs_path(value)

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
    COMPONENT: ClassVar[str] = SSE_STREAM
    REPORTS_HTTP_STATUS: ClassVar[bool] = False
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
        return None if value is None else check_abs_path(value)

    @model_validator(mode="after")
    def _transport_source(self) -> ReflectProbe:
        if "{nonce}" not in self.body_template:
            raise ValueError("body_template must contain the {nonce} placeholder")
        if self.transport == "sse" and self.stream is None:
            raise ValueError("transport 'sse' needs 'stream' (the name of a kind = \"sse\" probe)")
        if self.transport == "websocket" and self.ws_path is None:
            raise ValueError("transport 'websocket' needs 'ws_path'")
        return self

    def follows(self) -> str | None:
        return self.stream if self.transport == "sse" else None


class ImportProbe(_ProbeBase):
    """``kind = "import"``: start a job, follow its progress to 100 % or the deadline."""

    kind: Literal["import"] = "import"
    COMPONENT: ClassVar[str] = BACKGROUND_JOBS
    REPORTS_HTTP_STATUS: ClassVar[bool] = False
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

    def follows(self) -> str | None:
        return self.stream if self.progress_source == "stream" else None


#: The interval-run probe models, one per ``kind``: the one place the kinds are listed.
#: Everything else is built from it; it is a written union because mypy checks
#: annotations against written types, not against a union assembled at run time.
ProbeModel: TypeAlias = HttpProbe | LoginProbe | FixtureProbe | ReflectProbe | ImportProbe

#: ``ProbeModel``'s models, in order.
PROBE_MODELS: tuple[type[Model], ...] = get_args(ProbeModel)
#: Every model a ``[[probes]]`` table may be: the probes, then the stream watcher.
SPEC_MODELS: tuple[type[Model], ...] = (*PROBE_MODELS, SseStream)
#: The ``kind`` of each of ``SPEC_MODELS``, in order (the error messages list them so).
KINDS: tuple[str, ...] = tuple(model.model_fields["kind"].default for model in SPEC_MODELS)
#: The model of each ``kind``: its traits (``COMPONENT``, ``REPORTS_HTTP_STATUS``).
MODEL_OF_KIND: dict[str, type[Model]] = dict(zip(KINDS, SPEC_MODELS, strict=True))

#: Interval-run probes: the scheduler runs these through ``probed.probes.PROBERS``.
ProbeSpec = Annotated[ProbeModel, Field(discriminator="kind")]
#: Everything a ``[[probes]]`` table may be: interval-run probes and long-lived streams.
AnySpec = Annotated[ProbeModel | SseStream, Field(discriminator="kind")]
