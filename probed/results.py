"""The vocabulary of a probe run: its result, the fixed set of failure reasons, the run.

The ground floor: imports nothing of probed, so configuration, the store, the SLO
evaluator and every output can speak of runs without importing the HTTP machinery
(``probed.probes.base`` runs probes; this module only describes their outcome).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import field

from probed.records import record

__all__ = [
    "Observation",
    "ProbeResult",
    "ProbeRun",
    "Reason",
    "TlsInfo",
]


@record
class TlsInfo:
    """The TLS facts of one connection (expiries as Unix times, None when unknown)."""

    version: str
    """``TLS 1.0`` … ``TLS 1.3`` or ``unknown`` (blackbox_exporter's label values)."""
    earliest_cert_expiry: float | None
    """The earliest notAfter of the certificates the server presented."""
    last_chain_expiry: float | None
    """The earliest notAfter within the verified chain; None without verification."""


Observation = float | int | str | None


class Reason(enum.StrEnum):
    """Why a probe run failed. The set is fixed and documented in the README."""

    TIMEOUT = "timeout"
    """The run did not finish within the probe's ``timeout``."""
    DNS = "dns"
    """The target's host name could not be resolved."""
    CONNECT_REFUSED = "connect_refused"
    """The TCP connection was actively refused (nothing listening)."""
    CONNECT_ERROR = "connect_error"
    """Any other failure to open the TCP connection (unreachable, reset during connect)."""
    TLS = "tls"
    """The TLS handshake or certificate verification failed."""
    PROTOCOL_ERROR = "protocol_error"
    """The server broke HTTP: closed the connection early, sent a malformed response."""
    TOO_MANY_REDIRECTS = "too_many_redirects"
    """More redirects than ``max_redirects`` (a redirect loop)."""
    REDIRECTED_TO_OTHER_ORIGIN = "redirected_to_other_origin"
    """A redirect led where ``follow_redirects`` does not allow (another origin or host,
    https to http, a body with a secret re-sent elsewhere); the detail names the origin."""
    STATUS = "status"
    """The HTTP status was not in ``expect_status``."""
    RATE_LIMITED = "rate_limited"
    """The server answered 429 Too Many Requests (its Retry-After is recorded)."""
    OVERSIZE = "oversize"
    """The response body exceeded ``max_body_size``."""
    BODY_MISMATCH = "body_mismatch"
    """``body_regex`` did not match, or ``body_not_regex`` did."""
    INVALID_JSON = "invalid_json"
    """A JSON body was required but the response was not valid JSON."""
    JSON_MISMATCH = "json_mismatch"
    """A ``json_checks`` assertion failed (path missing or value different)."""
    OUTPUT_MISMATCH = "output_mismatch"
    """A fixture probe's canonical output hash differed from ``expected_sha256``."""
    NO_TOKEN = "no_token"
    """A login succeeded by status but no token was found where configured."""
    AUTH_FAILED = "auth_failed"
    """A login probe's follow-up request was rejected with the obtained token."""
    SLOW = "slow"
    """The run succeeded but took longer than ``latency_threshold``."""
    LATE = "late"
    """Reflect: the canary event arrived, but after ``deadline`` (its lag is recorded)."""
    LOST = "lost"
    """Reflect: the canary event did not arrive within ``lost_after``."""
    DUPLICATED = "duplicated"
    """Reflect: the canary event arrived more than once."""
    STALLED = "stalled"
    """Import: progress did not advance for ``stall_after``; stream: no event or heartbeat
    for ``idle_timeout``."""
    REGRESSED = "regressed"
    """Import: progress went backwards."""
    DEADLINE = "deadline"
    """Import: the job was not complete within ``deadline``."""
    STREAM_DOWN = "stream_down"
    """Reflect/import: the stream watcher the probe relies on is not connected."""
    INTERNAL_ERROR = "internal_error"
    """A bug in probed itself; the log line carries the exception."""
    PROBER_OVERLOADED = "prober_overloaded"
    """A timeout while probed itself was behind (a late start, a saturated event loop):
    it says nothing about the target, so SLOs and recommendations do not count it."""


@record
class ProbeResult:
    """The outcome a kind reports: success or a reason, plus observations."""

    success: bool
    reason: Reason | None = None
    detail: str = ""
    status_code: int | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    observations: Mapping[str, Observation] = field(default_factory=dict)
    error_code: str = ""
    """A finer code than the reason for logs (``ECONNREFUSED``, ``http_503``); never a label."""
    http_version: float | None = None
    """HTTP version of the run's last response (1.1); None if no response arrived.
    Set by ``run_probe`` (``probed.probes.peerinfo``), like ``tls``."""
    tls: TlsInfo | None = None
    """TLS facts of the last response's connection; None for plain HTTP or no response."""

    @classmethod
    def ok(
        cls,
        *,
        status_code: int | None = None,
        phases: Mapping[str, float] | None = None,
        **observations: Observation,
    ) -> ProbeResult:
        """A successful run."""
        return cls(True, None, "", status_code, phases or {}, observations)

    @classmethod
    def fail(
        cls,
        reason: Reason,
        detail: str = "",
        *,
        status_code: int | None = None,
        phases: Mapping[str, float] | None = None,
        error_code: str = "",
        **observations: Observation,
    ) -> ProbeResult:
        """A failed run with ``reason``.

        For the runner and for records (the store, tests): a probe kind does not
        return one, it raises ``probed.errors.ProbeFailure`` (``probed.probes.base``).
        """
        return cls(
            False, reason, detail, status_code, phases or {}, observations, error_code or reason
        )


@record
class ProbeRun:
    """One finished run as the store keeps it."""

    probe: str
    kind: str
    target: str
    run_id: str
    trace_id: str
    started_at: float
    """Wall-clock start (Unix seconds), for display and logs only."""
    duration: float
    """Seconds, measured with ``time.perf_counter``."""
    result: ProbeResult

    @property
    def success(self) -> bool:
        """Whether the run succeeded."""
        return self.result.success
