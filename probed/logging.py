"""structlog configuration: one JSON object per line on stdout, secrets redacted.

Fields follow the seeds' log schema (``ts, level, service, env, location,
probe, kind, target, run_id, status, latency_ms, reason, error.code``). The
redaction processor runs last before rendering, so nothing reaches the output
unredacted, including lines from the standard library's loggers (aiohttp,
asyncio), which are routed through the same chain.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import deque
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "Redactor", "configure_logging", "redactor"]

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(?i:pass(word|wd)?|secret|token|authori[sz]ation|cookie|api[-_]?key|credential)s?$|Enc$"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


class Redactor:
    """Remove secrets from an event dict before it is rendered.

    - any key that names a secret (password, secret, token, authorization,
      cookie, set-cookie, api key, credential, ``*Enc``) has its value replaced;
    - e-mail addresses and ``Bearer …``/``Basic …`` credentials inside values
      are replaced;
    - every registered secret value (configured passwords and header secrets,
      tokens learnt at run time) is replaced wherever it appears in a string.
    """

    def __init__(self, max_runtime_secrets: int = 256) -> None:
        self._static: tuple[str, ...] = ()
        self._runtime: deque[str] = deque(maxlen=max_runtime_secrets)
        self._pattern: re.Pattern[str] | None = None

    def set_secrets(self, values: Iterable[str]) -> None:
        """Replace the configured secret values (on load and reload)."""
        self._static = tuple(v for v in values if len(v) >= 3)
        self._rebuild()

    def add_runtime_secret(self, value: str) -> None:
        """Remember a secret learnt at run time, such as a login token.

        No regex is rebuilt here: that ran on every login and blocked the loop, and
        each new pattern filled ``re``'s compile cache.
        """
        if len(value) >= 3 and value not in self._runtime:
            self._runtime.append(value)

    def _rebuild(self) -> None:
        values = sorted(set(self._static), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def scrub(self, text: str) -> str:
        """Redact secrets, e-mail addresses and bearer credentials inside ``text``."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        for token in self._runtime:
            if token in text:
                text = text.replace(token, REDACTED)
        if "@" in text:
            text = _EMAIL.sub("[email]", text)
        return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)

    def _clean(self, key: str, value: Any) -> Any:
        if _SECRET_KEY.search(key) and value not in (None, "", False):
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, MutableMapping):
            return {str(k): self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub(str(value))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {k: self._clean(k, v) for k, v in event_dict.items()}


#: The process-wide redactor; the daemon feeds it configured and runtime secrets.
redactor = Redactor()


class _ErrorFields:
    """Nest ``error_code``/``error_message`` as ``error: {code, message}`` per the schema."""

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        code = event_dict.pop("error_code", None)
        message = event_dict.pop("error_message", None)
        if code or message:
            error: dict[str, Any] = {}
            if code:
                error["code"] = code
            if message:
                error["message"] = message
            event_dict["error"] = error
        return event_dict


class _Rename:
    """Rename structlog's ``event``/``timestamp`` keys to the schema's names."""

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if "timestamp" in event_dict:
            event_dict["ts"] = event_dict.pop("timestamp")
        return event_dict


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["json", "logfmt", "console"] = "json",
    env: str = "prod",
    location: str = "default",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library's logging to write one line per event."""
    out = stream if stream is not None else sys.stdout
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _Rename(),
        _StaticFields(service="probed", env=env, location=location),
        _ErrorFields(),
        structlog.processors.format_exc_info,
        redactor,
        _order,
    ]
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    elif fmt == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(bool_as_flag=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # aiohttp's access log carries paths and query strings: never emitted.
    logging.getLogger("aiohttp.access").disabled = True


_FIRST = ("ts", "level", "event", "service", "env", "location")


def _order(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Put the schema's leading fields first so lines read well in a terminal."""
    ordered = {k: event_dict.pop(k) for k in _FIRST if k in event_dict}
    ordered.update(event_dict)
    return ordered


class _StaticFields:
    """Add fixed fields (service, env, location) without overriding ones already set."""

    def __init__(self, **fields: str) -> None:
        self._fields = fields

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in self._fields.items():
            event_dict.setdefault(key, value)
        return event_dict
