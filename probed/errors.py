"""The exception tree of probed.

::

    ProbedError
    ├── ConfigError            a config file or environment value is invalid;
    │                          carries one message per problem (file, line, probe, key)
    ├── SecretError            a secret could not be read (missing env var, file, credential)
    │                          (also raised through ConfigError while loading)
    ├── DecodeError            (probed.stream.decoder) an SSE line or event exceeded its
    │                          size limit; carries the events completed before it
    └── ProbeFailure           raised inside a probe kind to fail the run with a
                               fixed reason (see probed.results.Reason); the one
                               way a kind reports a failure (probed.probes.base)

Errors raised by aiohttp and asyncio inside a probe run are not wrapped: the
runner (``probed.probes.base.run_probe``) maps them to a ``Reason``.
"""

from __future__ import annotations

from collections.abc import Mapping

from probed.results import Observation, Reason

__all__ = ["ConfigError", "ProbeFailure", "ProbedError", "SecretError", "drop_tracebacks"]


class ProbedError(Exception):
    """Base class of every error probed raises on purpose."""


class ConfigError(ProbedError):
    """The configuration is invalid; ``problems`` lists every problem found.

    ``file_hash`` is the config file's hash (``configfile.config_digest``) when the
    file could be read, set by ``load_config``; None otherwise.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.file_hash: str | None = None
        super().__init__("\n".join(problems))


class SecretError(ProbedError):
    """A configured secret could not be read."""


class ProbeFailure(ProbedError):
    """Fail the current probe run with ``reason``.

    ``detail`` is a short human explanation for the log line; it never becomes
    a metric label. A failure found after a response arrived carries its
    ``status_code`` and ``phases``, and ``error_code`` a finer code for logs
    (``http_503``; the reason's value if empty). ``observations`` belong to this
    failure (``retry_after``). A kind raises it and does not catch it:
    ``probed.probes.base.run_probe`` builds the failed ``ProbeResult`` from it and
    adds the observations the run recorded on its context.
    """

    def __init__(
        self,
        reason: Reason,
        detail: str = "",
        *,
        status_code: int | None = None,
        phases: Mapping[str, float] | None = None,
        error_code: str = "",
        **observations: Observation,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.status_code = status_code
        self.phases = dict(phases or {})
        self.error_code = error_code or reason.value
        self.observations = observations
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


def drop_tracebacks(exc: BaseException) -> None:
    """Detach the tracebacks of ``exc`` and of every exception it carries (cause, context).

    For a failure that is kept as a reason and a detail, never logged with its traceback
    (a probe run's, a stream connection's end). Left attached, a traceback holds the
    frames the exception passed through, and they hold the response, its reader and the
    reader's stored exception again: a reference cycle per failure that only a full
    collection frees (memory until then, and a stall of the event loop when it comes).
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
