"""Logging: one JSON object per line, schema fields, and redaction of every secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from probed.logging import (
    REDACTED,
    BoundOnce,
    EventLine,
    Redactor,
    configure_logging,
    redactor,
)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Each test starts with fresh structlog configuration and no registered secrets."""
    yield
    structlog.reset_defaults()
    redactor.set_secrets([])
    logging.getLogger().handlers.clear()


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    """Parse every output line as JSON (fails if any line is not exactly one object)."""
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_line_has_schema_fields() -> None:
    """A log event is one JSON line with ts, level, service, env, location first."""
    buf = io.StringIO()
    configure_logging(stream=buf, env="staging", location="eu-1")
    structlog.get_logger().info("probe_run", probe="health", latency_ms=12.5)
    (line,) = lines(buf)
    assert ["ts", "level", "event", "service", "env", "location"] == list(line)[:6]
    assert "probe_run" == line["event"]
    assert "info" == line["level"]
    assert "probed" == line["service"]
    assert ("staging", "eu-1") == (line["env"], line["location"])
    assert str(line["ts"]).endswith("Z")


def test_error_fields_are_nested() -> None:
    """error_code and error_message become error.code and error.message."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    structlog.get_logger().warning("probe_run", error_code="ECONNREFUSED", error_message="no")
    (line,) = lines(buf)
    assert {"code": "ECONNREFUSED", "message": "no"} == line["error"]


@pytest.mark.parametrize(
    "key",
    ["password", "Authorization", "cookie", "Set-Cookie", "token", "access_token", "client_secret",
     "api_key", "X-Api-Key", "tokenEnc", "refreshTokenEnc", "db_password"],
)  # fmt: skip
def test_secret_keys_are_redacted(key: str) -> None:
    """Any key that names a secret has its value replaced, also inside nested dicts."""
    r = Redactor()
    out = r(None, "info", {"event": "x", key: "v4lue", "nested": {key: "v4lue"}})
    assert REDACTED == out[key]
    assert {key: REDACTED} == out["nested"]


def test_registered_values_and_patterns_are_scrubbed_everywhere() -> None:
    """Registered secrets, e-mail addresses and bearer credentials are removed from values."""
    r = Redactor()
    r.set_secrets(["hunter2-password"])
    r.add_runtime_secret("tok_abcdef123")
    out = r(
        None,
        "info",
        {
            "event": "x",
            "detail": "sent hunter2-password and got tok_abcdef123",
            "who": "user probe@example.com logged in",
            "header": "Bearer eyJhbGciOi.x.y",
            "list": ["tok_abcdef123", 3],
        },
    )
    text = json.dumps(out)
    for secret in ("hunter2-password", "tok_abcdef123", "probe@example.com", "eyJhbGciOi"):
        assert secret not in text
    assert "sent [REDACTED] and got [REDACTED]" == out["detail"]
    assert "user [email] logged in" == out["who"]


def test_stdlib_loggers_go_through_redaction() -> None:
    """Lines from stdlib loggers (aiohttp, asyncio) are JSON and redacted too."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    redactor.set_secrets(["s3cr3t-value"])
    logging.getLogger("aiohttp.client").warning("failed with %s", "s3cr3t-value")
    (line,) = lines(buf)
    assert "failed with [REDACTED]" == line["event"]
    assert "aiohttp.client" == line["logger"]


def test_runtime_secrets_are_bounded() -> None:
    """The runtime-secret memory keeps only the newest values."""
    r = Redactor(max_runtime_secrets=2)
    for token in ("tok-one", "tok-two", "tok-three"):
        r.add_runtime_secret(token)
    assert "tok-one [REDACTED] [REDACTED]" == r.scrub("tok-one tok-two tok-three")


def test_console_format() -> None:
    """--log-format console renders a human line, still redacted."""
    buf = io.StringIO()
    configure_logging(stream=buf, fmt="console")
    structlog.get_logger().info("probe_run", password="pw", probe="health")
    out = buf.getvalue()
    assert "probe_run" in out
    assert "pw" not in out.replace("probe_run", "")


def test_a_string_found_clean_is_scrubbed_again_once_it_holds_a_new_secret() -> None:
    """The redactor remembers clean strings only until the secrets change."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    log = structlog.get_logger()
    log.info("probe_run", detail="got tok-later-learnt", target="tok-later-learnt")
    redactor.add_runtime_secret("tok-later-learnt")
    log.info("probe_run", detail="got tok-later-learnt", target="tok-later-learnt")
    redactor.set_secrets(["got"])
    log.info("probe_run", detail="got it")
    first, second, third = lines(buf)
    assert ("got tok-later-learnt", "tok-later-learnt") == (first["detail"], first["target"])
    assert (f"got {REDACTED}", REDACTED) == (second["detail"], second["target"])
    assert f"{REDACTED} it" == third["detail"]


def test_json_lines_are_compact_ascii_and_render_any_value() -> None:
    """orjson renders the line; what it cannot (a huge integer, a non-ASCII character) json
    does, in the same compact, ASCII-only form."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    log = structlog.get_logger()
    log.info("probe_run", probe="health", latency_ms=1.5, http_status=200, ok=True, gone=None)
    log.info("probe_run", probe="santé", count=10**30, nested={"a": [1, 2.5, "x"]})
    plain, other = buf.getvalue().splitlines()
    assert plain.isascii()
    assert other.isascii()
    assert '"probe":"health","latency_ms":1.5,"http_status":200,"ok":true,"gone":null}' in plain
    assert '"probe":"sant\\u00e9","count":1000000000000000000000000000000,' in other
    assert {"a": [1, 2.5, "x"]} == json.loads(other)["nested"]


def test_ts_is_iso_utc_with_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ts`` reads as ``datetime.isoformat`` in UTC with ``Z``, a given ``ts`` or
    ``timestamp`` being replaced."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    log = structlog.get_logger()
    monkeypatch.setattr("time.time", lambda: 1764745200.25)
    log.info("x", ts="mine", timestamp="also mine")
    monkeypatch.setattr("time.time", lambda: 1764745201.0)
    log.info("y")
    monkeypatch.setattr("time.time", lambda: 1764745201.9999996)
    log.info("z")
    assert ["2025-12-03T07:00:00.250000Z", "2025-12-03T07:00:01Z", "2025-12-03T07:00:02Z"] == [
        line["ts"] for line in lines(buf)
    ]
    assert "timestamp" not in lines(buf)[0]


def test_a_logger_bound_once_follows_a_new_configuration() -> None:
    """``BoundOnce`` binds again when logging is configured again (a reload)."""
    first, second = io.StringIO(), io.StringIO()
    bound = BoundOnce("probed")
    configure_logging(stream=first, level="info")
    bound.get().info("one")
    assert bound.get() is bound.get()
    configure_logging(stream=second, level="warning")
    bound.get().info("filtered")
    bound.get().warning("two")
    assert ["one"] == [line["event"] for line in lines(first)]
    assert ["two"] == [line["event"] for line in lines(second)]


_EVENT_LINE_CASES: list[tuple[str, dict[str, object]]] = [
    ("info", {"probe": "health", "run_id": "ab12-3", "latency_ms": 12.5, "http_status": 200}),
    ("warning", {"probe": "login", "status": "failure", "reason": "http_status",
                 "error_code": "http_503", "error_message": "503 from user@example.com"}),
    ("warning", {"probe": "p", "error_code": "", "error_message": None, "after": 1}),
    ("warning", {"probe": "p", "error_message": "only a message", "detail": "Bearer abc.def"}),
    ("info", {"probe": "p", "note": "s3cr3t-value inside", "api_key": "k-123", "n": 2**70}),
    ("info", {"probe": "p", "text": "caf\u00e9 \u2713",
              "nested": {"password": "x", "ok": [1, "y"]}}),
    ("error", {"probe": "p", "flag": True, "nothing": None}),
]  # fmt: skip


@pytest.mark.parametrize(("level", "fields"), _EVENT_LINE_CASES)
def test_an_event_line_is_what_the_chain_writes(level: str, fields: dict[str, object]) -> None:
    """``EventLine`` writes, without structlog's processors, the very line structlog writes
    with ``configure_logging``'s JSON chain: same keys, order, redaction and rendering."""
    buf = io.StringIO()
    configure_logging(stream=buf, env="staging", location="eu-1")
    redactor.set_secrets(["s3cr3t-value"])
    getattr(structlog.get_logger("probed"), level)("probe_run", **fields)
    EventLine("probed").write(level, "probe_run", dict(fields))  # type: ignore[arg-type]
    chained, fast = buf.getvalue().splitlines()
    assert chained.split(",", 1)[1] == fast.split(",", 1)[1]  # all but "ts"
    assert chained.startswith('{"ts":"')
    assert fast.startswith('{"ts":"')


def test_an_event_line_honours_the_level_and_other_configurations() -> None:
    """Below the configured level nothing is written; under another format or a test's
    own structlog configuration the line goes through structlog."""
    buf = io.StringIO()
    configure_logging(stream=buf, level="warning")
    line = EventLine("probed")
    line.write("info", "probe_run", {"probe": "a"})
    line.write("warning", "probe_run", {"probe": "b"})
    assert [("warning", "b")] == [(x["level"], x["probe"]) for x in lines(buf)]
    logfmt = io.StringIO()
    configure_logging(stream=logfmt, fmt="logfmt")
    line.write("info", "probe_run", {"probe": "c"})
    assert logfmt.getvalue().endswith(" location=default probe=c\n")
    with structlog.testing.capture_logs() as captured:
        line.write("info", "probe_run", {"probe": "d", "ts": "mine"})
    assert [{"probe": "d", "ts": "mine", "event": "probe_run", "log_level": "info"}] == captured
