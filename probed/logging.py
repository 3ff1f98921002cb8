"""structlog configuration: one JSON object per line on stdout, secrets redacted.

Fields follow the seeds' log schema (``ts, level, service, env, location,
probe, kind, target, run_id, status, latency_ms, reason, error.code``). The
redaction processor runs last before rendering, so nothing reaches the output
unredacted, including lines from the standard library's loggers (aiohttp,
asyncio), which are routed through the same chain.

Every probe run writes a line, so the chain is kept cheap: one processor adds the
schema's fields, one redacts and orders (the verdict on each key name and the strings
found clean are remembered until the secrets change), and lines are rendered by
orjson (compact, ASCII only: a line with other characters is rendered by ``json``).
The run's own line (``EventLine``) skips the processors' calls: one function makes
the line the JSON chain would, byte for byte.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "BoundOnce", "EventLine", "Redactor", "configure_logging", "redactor"]

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(?i:pass(word|wd)?|secret|token|authori[sz]ation|cookie|api[-_]?key|credential)s?$|Enc$"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_MAYBE_CREDENTIAL = re.compile(r"[@\s]")
"""Neither an e-mail address nor a bearer credential is found without one of these."""

_SECRET_KEYS: dict[str, bool] = {}
"""Whether each key name seen names a secret (``_SECRET_KEY`` scans the whole name)."""
_KEYS_REMEMBERED = 4096
_CLEAN_REMEMBERED = 2048
"""Strings a redactor remembers as clean (none of them longer than ``_CLEAN_LONGEST``)."""
_CLEAN_LONGEST = 128


def _names_secret(key: str) -> bool:
    verdict = _SECRET_KEYS.get(key)
    if verdict is None:
        verdict = _SECRET_KEY.search(key) is not None
        if len(_SECRET_KEYS) < _KEYS_REMEMBERED:
            _SECRET_KEYS[key] = verdict
    return verdict


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
        self._clean_texts: set[str] = set()
        """Short strings ``scrub`` leaves as they are, under the current secrets (the same
        probe, target and field values come back on every line)."""

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
            self._clean_texts = set()  # a new set: a scrub running in a thread fills the old

    def _rebuild(self) -> None:
        values = sorted(set(self._static), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
        self._clean_texts = set()

    def scrub(self, text: str) -> str:
        """Redact secrets, e-mail addresses and bearer credentials inside ``text``."""
        clean = self._clean_texts
        if text in clean:
            return text
        scrubbed = self._scrub(text)
        if len(text) <= _CLEAN_LONGEST and scrubbed == text:
            if len(clean) >= _CLEAN_REMEMBERED:
                clean.clear()
            clean.add(text)
        return scrubbed

    def _scrub(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        for token in self._runtime:
            if token in text:
                text = text.replace(token, REDACTED)
        if _MAYBE_CREDENTIAL.search(text) is None:  # ids, hashes, single words
            return text
        if "@" in text:
            text = _EMAIL.sub("[email]", text)
        return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)

    def _clean(self, key: str, value: Any) -> Any:
        if _names_secret(key) and value not in (None, "", False):
            return REDACTED
        cls = value.__class__  # the common exact types first; subclasses below
        if cls is str:
            return self.scrub(value)
        if cls is int or cls is float or cls is bool or value is None:
            return value
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
        """A structlog processor: a copy of ``event_dict`` with every value redacted."""
        out = dict(event_dict)
        self.redact_values(out)
        return out

    def redact_values(self, fields: dict[str, Any], skip: int = 0) -> None:
        """Redact the values of ``fields`` in place, all but the first ``skip`` (the
        caller's own, known clean).

        A value needs no look when its key was seen and names no secret and it is a
        number, a bool, None, or a string already found clean.
        """
        clean_texts = self._clean_texts
        secret_keys = _SECRET_KEYS
        # replaces values only: the dict keeps its size while it is walked
        for key, value in itertools.islice(fields.items(), skip, None):
            if secret_keys.get(key) is False:
                cls = value.__class__
                if cls is str:
                    if value in clean_texts:
                        continue
                elif cls is int or cls is float or cls is bool or value is None:
                    continue
            fields[key] = self._clean(key, value)


#: The process-wide redactor; the daemon feeds it configured and runtime secrets.
redactor = Redactor()


_LEADING = ("level", "event", "service", "env", "location")
"""The fields every line starts with, after ``ts``."""


class _Schema:
    """The schema's own fields: the fixed fields (service, env, location) unless already
    set, and ``error_code``/``error_message`` nested as ``error: {code, message}``. A
    ``timestamp`` or ``ts`` given goes: ``_Redacted`` writes the time as ``ts``."""

    def __init__(self, **fields: str) -> None:
        self._fields = tuple(fields.items())

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.pop("timestamp", None)
        event_dict.pop("ts", None)
        for key, value in self._fields:
            if key not in event_dict:
                event_dict[key] = value
        _nest_error(event_dict)
        return event_dict


def _nest_error(fields: MutableMapping[str, Any]) -> None:
    """``error_code`` and ``error_message`` of ``fields`` as ``error: {code, message}``, last
    (none if both are empty)."""
    if "error_code" not in fields and "error_message" not in fields:
        return
    code = fields.pop("error_code", None)
    message = fields.pop("error_message", None)
    if code or message:
        error: dict[str, Any] = {}
        if code:
            error["code"] = code
        if message:
            error["message"] = message
        fields["error"] = error


_this_second: tuple[int, str] = (-1, "")
"""A Unix second and its date and time of day (one tuple: threads log too)."""


def _utc_now() -> str:
    """Now in UTC as ISO 8601 with microseconds and ``Z``, as ``datetime.isoformat`` writes
    it (no fraction at a whole second); the date and time of day are formatted once a second."""
    global _this_second
    now = time.time()
    second = int(now)
    micro = round((now - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached = _this_second
    if cached[0] != second:
        cached = _this_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micro:06d}Z" if micro else f"{cached[1]}Z"


class _Redacted:
    """The redactor's output in one new dict: ``ts`` (now, written here) and the schema's
    other leading fields first. ``ts`` is probed's own and is not looked at."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        out: dict[str, Any] = {"ts": _utc_now()}
        for key in _LEADING:
            if key in event_dict:
                out[key] = event_dict.pop(key)
        out.update(event_dict)
        self._redactor.redact_values(out, skip=1)
        return out


def _render_json(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """One compact JSON object; ``json`` renders what orjson cannot (integers beyond 64 bits)
    and lines with non-ASCII characters, which it escapes."""
    try:
        line = orjson.dumps(event_dict, default=str).decode()
    except orjson.JSONEncodeError:
        line = ""
    if line.isascii() and line:
        return line
    return json.dumps(event_dict, default=str, separators=(",", ":"))


class _LineWriter:
    """Writes each line and its newline in one call, then flushes; ``None`` writes to
    whatever ``sys.stdout`` is at the time (as ``print`` would)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        out = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            out.write(message + "\n")
            out.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


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
    global _json_chain
    schema = _Schema(service="probed", env=env, location=location)
    shared: list[Processor] = [  # no contextvars merged: probed binds none
        structlog.processors.add_log_level,
        schema,
        structlog.processors.format_exc_info,
        _Redacted(redactor),
    ]
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    elif fmt == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(bool_as_flag=False)
    else:
        renderer = _render_json
    numeric = logging.getLevelNamesMapping()[level.upper()]
    writer = _LineWriter(stream if stream is not None and stream is not sys.stdout else None)
    processors = [*shared, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=False,
    )
    _json_chain = _JsonChain(processors, schema, writer, numeric) if fmt == "json" else None
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


class BoundOnce:
    """``structlog.get_logger(name)`` bound once per configuration, for lines written often.

    A module's ``structlog.get_logger()`` proxy binds anew on every call (a few
    microseconds); ``get()`` returns the same bound logger until structlog is configured
    again (``configure_logging`` on a reload, a test's own configuration).
    """

    __slots__ = ("_bound", "_config", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._config: tuple[object, object, object] | None = None
        self._bound: Any = None

    def get(self) -> Any:
        """The bound logger of the current configuration."""
        config = structlog.get_config()
        key = (config["processors"], config["wrapper_class"], config["logger_factory"])
        cached = self._config
        if (
            cached is None
            or cached[0] is not key[0]
            or cached[1] is not key[1]
            or cached[2] is not key[2]
        ):
            self._bound = structlog.get_logger(self._name).bind()
            self._config = key
        return self._bound


_LEVELS = {name.lower(): number for name, number in logging.getLevelNamesMapping().items()}
_RESERVED = frozenset(
    ("ts", "timestamp", "level", "event", "service", "env", "location", "exc_info")
)
"""Keys a fast line's fields must not have: the chain itself writes or reads them."""


class _JsonChain:
    """What ``configure_logging``'s JSON chain makes of an event whose fields are plain
    (none in ``_RESERVED``), in one function: the same line, without the processors' calls."""

    __slots__ = ("_fixed", "_min_level", "_processors", "_writer")

    def __init__(
        self, processors: list[Processor], schema: _Schema, writer: _LineWriter, min_level: int
    ) -> None:
        self._processors = processors
        self._fixed = dict(schema._fields)
        self._writer = writer
        self._min_level = min_level

    def installed(self) -> bool:
        """Whether structlog still runs this chain (a test may have configured its own)."""
        processors = structlog.get_config()["processors"]
        return processors is self._processors and processors[-1] is _render_json

    def write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """The chain's line of ``event`` at ``level`` with ``fields``, unless filtered out."""
        if _LEVELS[level] < self._min_level:
            return
        out: dict[str, Any] = {"ts": _utc_now(), "level": level, "event": event}
        out.update(self._fixed)
        out.update(fields)
        _nest_error(out)
        redactor.redact_values(out, skip=1)
        self._writer.msg(_render_json(None, level, out))


_json_chain: _JsonChain | None = None


class EventLine:
    """A line written often (every probe run), its fields given as a dict.

    Under ``configure_logging``'s JSON chain the line is made in one function
    (``_JsonChain``), byte for byte what the chain writes; otherwise (logfmt, console, a
    test's own structlog configuration, a field the chain treats itself) through structlog.
    """

    __slots__ = ("_bound",)

    def __init__(self, name: str) -> None:
        self._bound = BoundOnce(name)

    def write(
        self, level: Literal["info", "warning", "error"], event: str, fields: dict[str, Any]
    ) -> None:
        """Write ``event`` at ``level`` with ``fields``."""
        chain = _json_chain
        if chain is not None and _RESERVED.isdisjoint(fields) and chain.installed():
            chain.write(level, event, fields)
        else:
            getattr(self._bound.get(), level)(event, **fields)
