"""The fault matrix: one live daemon probes one target per fault; each fails the documented way.

A single in-process ``Daemon`` (a stub resolver: ``*.test`` is loopback, anything else
fails like DNS) runs a probe or stream watcher per fault, each against its own target on
loopback: a ``DemoTarget`` with the matching ``Faults``, or a purpose-built server from
``faultservers``. While the matrix runs, ``/metrics``, ``/api/v1/status`` and ``/`` are
scraped over and over. The matrix runs once (a module fixture) and every test below reads
its outcome:

- each fault's expected failure reason (or stream reconnect reason / counter), seen alike
  in the status API, in ``/metrics`` and in the log lines;
- ``/metrics`` answered 200 on every scrape while the faults were live;
- after stopping everything, no task left over and open file descriptors back to baseline;
- no configured secret value (passwords, the header secret, any token the demo issued)
  in any log line, metrics body, status document, status page or rendered status text;
- no configured secret value in any header or body a redirect delivered to another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import structlog
import trustme
from conftest import StubResolver
from faultservers import (
    API_KEY_HEADER,
    MidEventSse,
    RawServer,
    Received,
    WebServer,
    black_hole,
    elsewhere_app,
    huge_body_app,
    invalid_json_app,
    long_line_sse_app,
    ok_app,
    redirect_away_app,
    redirect_loop_app,
    slowloris,
    tokenless_login_app,
)
from prometheus_client.parser import text_string_to_metric_families

import probed.executor
import probed.logging
from probed.config import load_config
from probed.daemon import Daemon
from probed.demo import DemoTarget, Faults
from probed.logging import Redactor, configure_logging
from probed.results import Reason
from probed.statustext import render_incident, render_markdown, render_table

# The configured secrets: read from the environment by the config, never written in it.
PASSWORD = "matrix-Pass-7f3e9c2a41"
TOKENLESS_PASSWORD = "tokenless-Pass-51d0b8e6"
API_KEY = "matrix-key-c0ffee-9a7b35"
SECRET_ENV = {
    "MATRIX_PASSWORD": PASSWORD,
    "MATRIX_TOKENLESS_PASSWORD": TOKENLESS_PASSWORD,
    "MATRIX_API_KEY": API_KEY,
}

MATRIX_WITHIN = 45.0
"""Seconds the whole matrix may take to show every expected outcome (it takes about 5 s)."""
SCRAPE_EVERY = 0.25
SLOW_SCRAPE = 2.0
"""A scrape slower than this means the daemon stopped serving promptly."""
CLOCK_OFFSET = 30.0
LONG_LINE = 10 * 1024 * 1024
HUGE_BODY = 64 * 1024 * 1024
BODY_CAP = 1024 * 1024


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeFault:
    """A fault, the interval-run probe facing it, and the reason its runs must fail with."""

    fault: str
    probe: str
    reason: Reason
    min_failures: int = 2
    also: frozenset[Reason] = frozenset()
    """Other reasons allowed: ``stream_down`` while the watcher a probe relies on connects."""
    bug: str | None = None
    """A product bug this case shows (the case is then a strict xfail)."""


@dataclass(frozen=True)
class StreamFault:
    """A fault, the stream watcher facing it, and the only reason its connections may end."""

    fault: str
    stream: str
    reason: str
    bug: str | None = None


_HUB = frozenset({Reason.STREAM_DOWN})


PROBE_FAULTS = (
    ProbeFault("connection refused", "refused", Reason.CONNECT_REFUSED),
    ProbeFault("black hole", "black_hole", Reason.TIMEOUT),
    ProbeFault("slowloris", "slowloris", Reason.TIMEOUT),
    ProbeFault("5xx", "unavailable", Reason.STATUS),
    ProbeFault("429 with Retry-After", "rate_limited", Reason.RATE_LIMITED),
    ProbeFault("malformed JSON", "bad_json", Reason.INVALID_JSON),
    ProbeFault("huge body", "huge_body", Reason.OVERSIZE),
    ProbeFault("redirect loop", "redirect_loop", Reason.TOO_MANY_REDIRECTS),
    ProbeFault("302 to another host", "redirect_away", Reason.REDIRECTED_TO_OTHER_ORIGIN),
    ProbeFault("login 307 to another host", "login_away", Reason.REDIRECTED_TO_OTHER_ORIGIN),
    ProbeFault("TLS untrusted certificate", "tls_untrusted", Reason.TLS),
    ProbeFault("TLS expired certificate", "tls_expired", Reason.TLS),
    ProbeFault("DNS failure", "dns", Reason.DNS),
    ProbeFault("login 200 without token", "login_no_token", Reason.NO_TOKEN),
    ProbeFault("import stuck at 99 %", "import_stuck", Reason.STALLED, 1),
    ProbeFault("import regressing", "import_regressing", Reason.REGRESSED, 1, _HUB),
    ProbeFault("reflect event never arrives", "reflect_lost", Reason.LOST, 1, _HUB),
    ProbeFault("reflect event arrives twice", "reflect_twice", Reason.DUPLICATED, 1, _HUB),
)

STREAM_FAULTS = (
    StreamFault("SSE wrong content type", "sse_wrong_type", "content_type"),
    StreamFault("SSE never sends", "sse_silent", "stalled"),
    StreamFault("SSE closes mid-event", "sse_mid_event", "eof"),
    StreamFault("SSE 10 MB line", "sse_long_line", "oversize"),
)

HEALTHY_STREAMS = ("sse_disorder", "sse_skewed", "regress_events", "lost_events", "twice_events")
"""Streams whose connection is fine (their faults are in the events): they never reconnect."""
CONTROLS = ("control_login", "tls_valid", "redirect_any")
"""Healthy probes beside the faults: the matrix is not failing everything for one cause.
``redirect_any`` follows the 302 to the other host (``follow_redirects = "any"``)."""


def _params(cases: tuple[Any, ...]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.fault,
            marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else [],
        )
        for case in cases
    ]


# --- the config --------------------------------------------------------------------------

_STREAM_DEFAULTS = """connect_timeout = "1s"
reconnect_initial = "200ms"
reconnect_max = "1s"
"""


def matrix_config(urls: Mapping[str, str], ca_file: Path, state_dir: Path) -> str:
    """One target per fault (all sending the header secret) and one probe or stream each."""
    targets = []
    for name, url in urls.items():
        extra = f'ca_file = "{ca_file}"\n' if name in ("expired", "valid_tls") else ""
        targets.append(
            f'[targets.{name}]\nbase_url = "{url}"\n{extra}'
            f'headers = {{ "{API_KEY_HEADER}" = {{ env = "MATRIX_API_KEY" }} }}\n'
        )
    http = 'kind = "http"\ninterval = "2s"\ntimeout = "1s"\n'
    reflect = (
        'kind = "reflect"\ninterval = "3s"\ntimeout = "2500ms"\ndeadline = "1s"\n'
        'lost_after = "1500ms"\n'
    )
    imports = 'kind = "import"\ninterval = "5s"\ntimeout = "4500ms"\ndeadline = "4s"\n'
    demo_stream = 'kind = "sse"\npath = "/api/v1/events/stream"\nidle_timeout = "5s"\n'
    probes = f"""
[[probes]]
name = "refused"
target = "refused"
path = "/health"
{http}
[[probes]]
name = "black_hole"
target = "black_hole"
{http}
[[probes]]
name = "slowloris"
target = "slowloris"
kind = "http"
interval = "2s"
timeout = "1500ms"

[[probes]]
name = "unavailable"
target = "unavailable"
path = "/health"
{http}
[[probes]]
name = "rate_limited"
target = "rate_limited"
path = "/health"
{http}
[[probes]]
name = "bad_json"
target = "bad_json"
path = "/status"
json_checks = [{{ path = "status", equals = "up" }}]
{http}
[[probes]]
name = "huge_body"
target = "huge_body"
path = "/export"
max_body_size = {BODY_CAP}
{http}
[[probes]]
name = "redirect_loop"
target = "redirect_loop"
path = "/loop"
max_redirects = 5
{http}
[[probes]]
name = "redirect_away"
target = "redirect_away"
path = "/away"
{http}
[[probes]]
name = "redirect_any"
target = "redirect_away"
path = "/away"
follow_redirects = "any"
{http}
[[probes]]
name = "login_away"
target = "redirect_away"
kind = "login"
username = "probe@demo.example"
password = {{ env = "MATRIX_PASSWORD" }}
interval = "2s"
timeout = "1s"
latency_threshold = "1s"

[[probes]]
name = "tls_untrusted"
target = "untrusted"
{http}
[[probes]]
name = "tls_expired"
target = "expired"
{http}
[[probes]]
name = "tls_valid"
target = "valid_tls"
{http}
[[probes]]
name = "dns"
target = "nowhere"
{http}
[[probes]]
name = "login_no_token"
target = "tokenless"
kind = "login"
username = "probe@demo.example"
password = {{ env = "MATRIX_TOKENLESS_PASSWORD" }}
interval = "2s"
timeout = "1s"
latency_threshold = "1s"

[[probes]]
name = "control_login"
target = "control"
kind = "login"
username = "probe@demo.example"
password = {{ env = "MATRIX_PASSWORD" }}
follow_up = {{ path = "/api/me" }}
interval = "2s"
timeout = "1500ms"
latency_threshold = "1500ms"

[[probes]]
name = "import_stuck"
target = "stuck"
{imports}stall_after = "1s"
poll_interval = "100ms"

[[probes]]
name = "import_regressing"
target = "regressing"
{imports}stall_after = "2s"
progress_source = "stream"
stream = "regress_events"

[[probes]]
name = "regress_events"
target = "regressing"
{demo_stream}{_STREAM_DEFAULTS}
[[probes]]
name = "reflect_lost"
target = "dropping"
stream = "lost_events"
{reflect}
[[probes]]
name = "lost_events"
target = "dropping"
{demo_stream}{_STREAM_DEFAULTS}
[[probes]]
name = "reflect_twice"
target = "doubling"
stream = "twice_events"
{reflect}
[[probes]]
name = "twice_events"
target = "doubling"
{demo_stream}{_STREAM_DEFAULTS}
[[probes]]
name = "sse_wrong_type"
target = "wrong_type"
{demo_stream}{_STREAM_DEFAULTS}
[[probes]]
name = "sse_silent"
target = "silent"
kind = "sse"
path = "/api/v1/events/stream"
idle_timeout = "1s"
{_STREAM_DEFAULTS}
[[probes]]
name = "sse_mid_event"
target = "mid_event"
kind = "sse"
path = "/events"
idle_timeout = "5s"
{_STREAM_DEFAULTS}
[[probes]]
name = "sse_long_line"
target = "long_line"
kind = "sse"
path = "/events"
idle_timeout = "5s"
{_STREAM_DEFAULTS}
[[probes]]
name = "sse_disorder"
target = "disorder"
sequence_from_id = true
loss_timeout = "5s"
{demo_stream}{_STREAM_DEFAULTS}
[[probes]]
name = "sse_skewed"
target = "skewed"
clock = "trust"
{demo_stream}{_STREAM_DEFAULTS}"""
    return f"""[daemon]
listen = "127.0.0.1:0"
location = "matrix"
state_dir = "{state_dir}"

[recommend]
window = "20s"
evaluate_every = "1s"
min_runs = 2
enter_for = "2s"
exit_for = "5s"

{chr(10).join(targets)}
{probes}
"""


# --- the outcome -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One request to the daemon's HTTP endpoints during the matrix."""

    path: str
    status: int | None
    """None when the request failed outright."""
    seconds: float
    error: str = ""


@dataclass
class Outcome:
    """Everything the matrix observed; the tests judge it."""

    status: dict[str, Any] = field(default_factory=dict)
    """The last ``/api/v1/status`` document."""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    """The last ``/metrics`` scrape: (name, labels, value)."""
    scrapes: list[Scrape] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)
    """Expectations not seen within ``MATRIX_WITHIN`` (empty when the matrix completed)."""
    matrix_seconds: float = 0.0
    log_text: str = ""
    outputs: list[tuple[str, str]] = field(default_factory=list)
    """(what, text) of every body fetched from the daemon and every rendered status text."""
    tokens: list[str] = field(default_factory=list)
    """Every session token the demo targets issued during the matrix."""
    api_keys_seen: list[str] = field(default_factory=list)
    elsewhere_received: list[Received] = field(default_factory=list)
    """Every request the redirects' other host (127.0.0.2) received."""
    passwords_seen: list[str] = field(default_factory=list)
    """Passwords the tokenless login server received."""
    huge_body_sent: list[int] = field(default_factory=list)
    """Bytes the huge-body server got written per response before the probe hung up."""
    resolver_queries: list[str] = field(default_factory=list)
    mid_event_last_ids: list[str | None] = field(default_factory=list)
    daemon_exit: int | None = None
    tasks: tuple[int, int] = (0, 0)
    fds: tuple[int, int] = (0, 0)
    leftover_tasks: list[str] = field(default_factory=list)
    fd_diff: tuple[list[str], list[str]] = ([], [])
    """(opened, closed) descriptor targets between baseline and the end."""

    def probe(self, name: str) -> dict[str, Any]:
        """The probe's entry of the status document."""
        return next(p for p in self.status.get("probes", []) if p["probe"] == name)

    def stream(self, name: str) -> dict[str, Any]:
        """The stream's entry of the status document."""
        return next(s for s in self.status.get("streams", []) if s["stream"] == name)

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of the ``/metrics`` sample with exactly these labels, or None."""
        for sample_name, sample_labels, value in self.samples:
            if sample_name == name and sample_labels == labels:
                return value
        return None

    @functools.cached_property
    def logs(self) -> list[dict[str, Any]]:
        """Every captured log line, parsed (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self.log_text.splitlines() if line.strip()]

    def logged_reasons(self, event: str, key: str, name: str) -> list[str]:
        """The ``reason`` of every ``event`` log line whose ``key`` is ``name``."""
        return [
            str(line.get("reason"))
            for line in self.logs
            if (line.get("event"), line.get(key)) == (event, name)
        ]


def _open_fds() -> dict[str, str]:
    fds: dict[str, str] = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return fds


def _pending(doc: dict[str, Any], mid_event: MidEventSse) -> list[str]:
    """The expectations the status document does not show yet."""
    probes = {p["probe"]: p for p in doc.get("probes", [])}
    streams = {s["stream"]: s for s in doc.get("streams", [])}
    unmet = []
    for pcase in PROBE_FAULTS:
        reasons = probes.get(pcase.probe, {}).get("reasons", {})
        if pcase.bug is None and reasons.get(pcase.reason.value, 0) < pcase.min_failures:
            unmet.append(f"{pcase.fault}: {pcase.probe} reasons {reasons}")
    for scase in STREAM_FAULTS:
        ends = streams.get(scase.stream, {}).get("reconnect_reasons", {})
        if scase.bug is None and ends.get(scase.reason, 0) < 2:
            unmet.append(f"{scase.fault}: {scase.stream} reconnects {ends}")
    disorder = streams.get("sse_disorder", {})
    if not (disorder.get("duplicated", 0) > 0 and disorder.get("out_of_order", 0) > 0):
        unmet.append(f"SSE duplicate and out-of-order ids: {disorder}")
    skewed = streams.get("sse_skewed", {})
    if not (skewed.get("negative_lag", 0) > 0 and skewed.get("clock_offset_seconds") is not None):
        unmet.append(f"server clock 30 s ahead: {skewed}")
    for name in CONTROLS:
        if probes.get(name, {}).get("last_success_at") is None:
            unmet.append(f"control {name} never succeeded")
    if len(mid_event.last_event_ids) < 3:
        unmet.append(f"SSE closes mid-event: {len(mid_event.last_event_ids)} connections")
    return unmet


class _Scraper:
    """Fetches the daemon's endpoints, timing and keeping every answer."""

    def __init__(self, http: aiohttp.ClientSession, base: str, outcome: Outcome) -> None:
        self.http, self.base, self.outcome = http, base, outcome

    async def get(self, path: str) -> str | None:
        started = time.monotonic()
        try:
            async with self.http.get(self.base + path) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.outcome.scrapes.append(Scrape(path, None, time.monotonic() - started, repr(exc)))
            return None
        self.outcome.scrapes.append(Scrape(path, status, time.monotonic() - started))
        self.outcome.outputs.append((f"GET {path}", text))
        return text if status == 200 else None

    async def round(self) -> dict[str, Any] | None:
        """Scrape ``/metrics``, ``/`` and the status API; the status document if it came."""
        metrics = await self.get("/metrics")
        if metrics is not None:
            self.outcome.samples = [
                (s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(metrics)
                for s in family.samples
            ]
        await self.get("/")
        text = await self.get("/api/v1/status")
        return None if text is None else dict(json.loads(text))


@contextlib.contextmanager
def _captured_logs(buf: io.StringIO) -> Iterator[None]:
    """Route probed's structlog and the stdlib loggers into ``buf`` at debug level, with a
    fresh redactor; restore the previous logging set-up afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiohttp.access").disabled)
    structlog_was_configured, structlog_config = structlog.is_configured(), structlog.get_config()
    fresh = Redactor()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(probed.logging, "redactor", fresh)
        mp.setattr(probed.executor, "redactor", fresh)
        configure_logging(stream=buf, level="debug", location="matrix")
        try:
            yield
        finally:
            structlog.reset_defaults()
            if structlog_was_configured:
                structlog.configure(**structlog_config)
            root.handlers[:], root.level = saved[0], saved[1]
            logging.getLogger("aiohttp.access").disabled = saved[2]


def _server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context


async def _publish(demos: list[DemoTarget]) -> None:
    """Enqueue an event on each demo every 100 ms (the streams' traffic)."""
    n = 0
    while True:
        n += 1
        for demo in demos:
            demo.publish("matrix.tick", {"n": n})
        await asyncio.sleep(0.1)


async def _settle(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check() and time.monotonic() < deadline:
        gc.collect()
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def outcome(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outcome]:
    """Run the whole matrix once against a live daemon; yield what it observed."""
    tmp = tmp_path_factory.mktemp("faults")
    out = Outcome()
    # certificates before the baseline: making them opens nothing that stays open
    trusted, untrusted = trustme.CA(), trustme.CA()
    now = datetime.now(UTC)
    expired_leaf = trusted.issue_cert(
        "expired.test", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    valid_leaf = trusted.issue_cert("valid.test")
    untrusted_leaf = untrusted.issue_cert("untrusted.test")
    ca_file = tmp / "ca.pem"
    trusted.cert_pem.write_to_path(str(ca_file))
    tls = {
        "untrusted": _server_context(untrusted_leaf),
        "expired": _server_context(expired_leaf),
        "valid_tls": _server_context(valid_leaf),
    }

    gc.collect()
    base_tasks = len(asyncio.all_tasks())
    base_fds = _open_fds()
    log_buf = io.StringIO()
    resolver = StubResolver()
    mid_event = MidEventSse()

    def demo(**faults: Any) -> DemoTarget:
        return DemoTarget(password=PASSWORD, faults=Faults(**faults), seed=7)

    demos = {
        "refused": demo(refuse_connections=True),
        "unavailable": demo(error_ratio=1.0),
        "rate_limited": demo(rate_limit_ratio=1.0, retry_after=7),
        "control": demo(),
        "stuck": demo(import_stall_at=99, import_duration=1.0),
        "regressing": demo(import_regress=True, import_duration=1.0),
        "dropping": demo(drop_ratio=1.0),
        "doubling": demo(duplicate_ratio=1.0),
        "wrong_type": demo(wrong_content_type=True),
        "silent": demo(stall=True),
        "disorder": demo(duplicate_ratio=0.3, reorder_ratio=0.3),
        "skewed": demo(clock_offset=CLOCK_OFFSET),
    }
    raw = {
        "black_hole": RawServer(black_hole),
        "slowloris": RawServer(slowloris),
        "mid_event": RawServer(mid_event),
    }
    elsewhere = WebServer(elsewhere_app(), host="127.0.0.2")
    web_servers = {
        "bad_json": WebServer(invalid_json_app()),
        "huge_body": WebServer(huge_body_app(HUGE_BODY, out.huge_body_sent)),
        "redirect_loop": WebServer(redirect_loop_app()),
        "redirect_away": WebServer(redirect_away_app(elsewhere.base_url)),
        "tokenless": WebServer(tokenless_login_app(out.passwords_seen)),
        "long_line": WebServer(long_line_sse_app(LONG_LINE)),
        **{name: WebServer(ok_app(), ssl_context=context) for name, context in tls.items()},
    }

    with _captured_logs(log_buf), pytest.MonkeyPatch.context() as mp:
        for name, value in SECRET_ENV.items():
            mp.setenv(name, value)
        async with contextlib.AsyncExitStack() as servers:
            every: list[DemoTarget | RawServer | WebServer] = [
                elsewhere,
                *demos.values(),
                *raw.values(),
                *web_servers.values(),
            ]
            for server in every:
                await server.start()
                servers.push_async_callback(server.stop)
            urls = {name: target.base_url for name, target in demos.items()}
            urls |= {name: server.base_url for name, server in raw.items()}
            urls |= {name: server.base_url() for name, server in web_servers.items()}
            urls["untrusted"] = web_servers["untrusted"].base_url("untrusted.test")
            urls["expired"] = web_servers["expired"].base_url("expired.test")
            urls["valid_tls"] = web_servers["valid_tls"].base_url("valid.test")
            urls["nowhere"] = "http://nowhere.invalid:8080"
            config_path = tmp / "probes.toml"
            config_path.write_text(matrix_config(urls, ca_file, tmp / "state"), encoding="utf-8")
            config = load_config(config_path)

            daemon = Daemon(
                config, resolver=resolver, install_signal_handlers=False, shutdown_grace=1.0
            )
            daemon_task = asyncio.create_task(daemon.run(), name="matrix-daemon")
            publisher = asyncio.create_task(
                _publish([demos["disorder"], demos["skewed"]]), name="matrix-publisher"
            )
            try:
                async with asyncio.timeout(10):
                    await daemon.wait_started()
                base = f"http://127.0.0.1:{daemon.bound_port}"
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    scraper = _Scraper(http, base, out)
                    started = time.monotonic()
                    deadline = started + MATRIX_WITHIN
                    while True:
                        doc = await scraper.round()
                        if doc is not None:
                            out.status = doc
                            out.unmet = _pending(doc, mid_event)
                            if not out.unmet or time.monotonic() > deadline:
                                break
                        await asyncio.sleep(SCRAPE_EVERY)
                    out.matrix_seconds = time.monotonic() - started
                    # one full round after the matrix completed: what the tests judge
                    if (doc := await scraper.round()) is not None:
                        out.status = doc
                for what, render in (
                    ("table", render_table),
                    ("markdown", render_markdown),
                    ("incident", render_incident),
                ):
                    out.outputs.append((f"render_{what}", render(out.status)))
                out.tokens = [t for d in demos.values() for t in d.issued_tokens()]
            finally:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
                daemon.request_stop()
                async with asyncio.timeout(15):
                    out.daemon_exit = await daemon_task
        # every server stopped (the exit stack closed them)
        out.api_keys_seen = [k for s in web_servers.values() for k in s.api_keys]
        out.elsewhere_received = list(elsewhere.received)
        out.resolver_queries = list(resolver.queries)
        out.mid_event_last_ids = list(mid_event.last_event_ids)
        out.log_text = log_buf.getvalue()

    gc.unfreeze()  # the daemon froze its objects into the permanent generation
    current = asyncio.current_task()

    def others() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t is not current]

    await _settle(lambda: len(others()) + 1 == base_tasks and _open_fds() == base_fds, 5.0)
    out.tasks = (base_tasks, len(others()) + 1)
    out.leftover_tasks = [repr(t) for t in others()]
    end_fds = _open_fds()
    out.fds = (len(base_fds), len(end_fds))
    out.fd_diff = (
        sorted(f"{fd} -> {target}" for fd, target in end_fds.items() if base_fds.get(fd) != target),
        sorted(f"{fd} -> {target}" for fd, target in base_fds.items() if end_fds.get(fd) != target),
    )
    yield out


# --- the tests ---------------------------------------------------------------------------


def test_matrix_completes(outcome: Outcome) -> None:
    """Every expected outcome showed within the time limit and the daemon exited cleanly."""
    assert [] == outcome.unmet, f"after {outcome.matrix_seconds:.1f}s"
    assert 0 == outcome.daemon_exit


@pytest.mark.parametrize("case", _params(PROBE_FAULTS))
def test_probe_fault(outcome: Outcome, case: ProbeFault) -> None:
    """Each fault fails its probe with the expected reason, in the status API and /metrics."""
    probe = outcome.probe(case.probe)
    reasons = probe["reasons"]
    assert reasons.get(case.reason.value, 0) >= case.min_failures, reasons
    assert set(reasons) <= {case.reason.value, *case.also}, reasons
    assert probe["last_success_at"] is None
    assert probe["last"] is not None
    assert probe["last"]["reason"] in {case.reason.value, *case.also}
    assert 0.0 == outcome.sample("probe_success", probe=case.probe)
    assert 0.0 == outcome.sample("probed_probe_runs_total", probe=case.probe, result="success")
    failures = outcome.sample(
        "probed_probe_failures_total", probe=case.probe, reason=case.reason.value
    )
    assert failures is not None
    assert failures >= case.min_failures
    logged = outcome.logged_reasons("probe_run", "probe", case.probe)
    assert logged.count(case.reason.value) >= case.min_failures, logged
    assert set(logged) <= {case.reason.value, *case.also}, logged


@pytest.mark.parametrize("case", _params(STREAM_FAULTS))
def test_stream_fault(outcome: Outcome, case: StreamFault) -> None:
    """Each stream fault ends every connection with the expected reconnect reason."""
    stream = outcome.stream(case.stream)
    assert {case.reason} == set(stream["reconnect_reasons"]), stream
    assert stream["reconnect_reasons"][case.reason] >= 2
    reconnects = outcome.sample(
        "probed_stream_reconnects_total", stream=case.stream, reason=case.reason
    )
    assert reconnects is not None
    assert reconnects >= 2
    logged = outcome.logged_reasons("stream_disconnected", "stream", case.stream)
    assert len(logged) >= 2
    assert {case.reason} == set(logged), logged


def test_timeouts_are_cut_at_the_probe_timeout(outcome: Outcome) -> None:
    """A black hole and a slowloris run last their probe's timeout, not less, not much more."""
    for name, limit in (("black_hole", 1.0), ("slowloris", 1.5)):
        duration = outcome.probe(name)["last"]["duration_seconds"]
        assert limit * 0.95 <= duration < limit + 1.0, (name, duration)


def test_http_status_faults_record_the_answer(outcome: Outcome) -> None:
    """5xx records its status; 429 records the rate limit and its Retry-After in /metrics."""
    assert 503 == outcome.probe("unavailable")["last"]["status_code"]
    assert 429 == outcome.probe("rate_limited")["last"]["status_code"]
    assert 7.0 == outcome.sample("probed_probe_retry_after_seconds", probe="rate_limited")
    limited = outcome.sample("probed_probe_rate_limited_total", probe="rate_limited")
    assert limited is not None
    assert limited >= 2
    assert 200 == outcome.probe("huge_body")["last"]["status_code"]


def test_huge_body_reading_stops_at_the_cap(outcome: Outcome) -> None:
    """The probe hangs up at its 1 MiB cap: no response of 64 MiB is ever sent in full.

    What got written includes the loopback socket buffers (a few MiB), far below the total.
    """
    assert outcome.huge_body_sent
    assert max(outcome.huge_body_sent) < HUGE_BODY // 2, outcome.huge_body_sent


def test_import_faults_say_where_progress_went(outcome: Outcome) -> None:
    """The stuck import stalls at 99 %; the regressing one is caught going from 50 to 30."""
    details = {
        line["probe"]: str(line.get("error", {}).get("message", ""))
        for line in outcome.logs
        if line.get("event") == "probe_run"
        and line.get("probe") in ("import_stuck", "import_regressing")
        and line.get("reason") in ("stalled", "regressed")
    }
    assert "(progress 99)" in details["import_stuck"], details
    assert "progress went back from 50 to 30" in details["import_regressing"], details


def test_tls_failures_say_why(outcome: Outcome) -> None:
    """The expired certificate (from a trusted CA) fails for its date; the untrusted one for trust.

    The control probe against a valid certificate from the same CA succeeds, so the
    expired case fails for the date alone.
    """
    messages: dict[str, set[str]] = {"tls_expired": set(), "tls_untrusted": set()}
    for line in outcome.logs:
        if line.get("event") == "probe_run" and line.get("probe") in messages:
            messages[line["probe"]].add(str(line.get("error", {}).get("message", "")))
    assert messages["tls_expired"]
    assert all("expired" in m for m in messages["tls_expired"]), messages
    assert messages["tls_untrusted"]
    assert not any("expired" in m for m in messages["tls_untrusted"]), messages
    assert outcome.probe("tls_valid")["last_success_at"] is not None


def test_dns_goes_through_the_test_resolver_only(outcome: Outcome) -> None:
    """Every host name went to the stub resolver (no real DNS query); ``.invalid`` failed."""
    assert "nowhere.invalid" in outcome.resolver_queries
    assert {"nowhere.invalid", "untrusted.test", "expired.test", "valid.test"} == set(
        outcome.resolver_queries
    )


def test_sse_mid_event_close_does_not_count_the_partial_event(outcome: Outcome) -> None:
    """Only the complete event is received; the one cut off by the close is not counted."""
    stream = outcome.stream("sse_mid_event")
    assert 1 == stream["received"]
    assert 1.0 == outcome.sample("probed_events_received_total", stream="sse_mid_event")
    assert len(outcome.mid_event_last_ids) >= 3  # it reconnected, and got no more events


def test_sse_mid_event_close_resumes_after_the_last_complete_event(outcome: Outcome) -> None:
    """Reconnections send ``Last-Event-ID: 1``: the cut-off event 2 was never dispatched."""
    first, *later = outcome.mid_event_last_ids
    assert first is None
    assert later
    assert {"1"} == set(later)


def test_sse_long_line_is_cut_at_the_line_limit(outcome: Outcome) -> None:
    """A 10 MB line ends the connection as ``oversize`` without any event counted."""
    assert 0 == outcome.stream("sse_long_line")["received"]


def test_sse_duplicate_and_out_of_order_ids(outcome: Outcome) -> None:
    """Duplicated and reordered ids are counted as such, never as lost."""
    stream = outcome.stream("sse_disorder")
    for metric in ("probed_events_duplicated_total", "probed_events_out_of_order_total"):
        value = outcome.sample(metric, stream="sse_disorder")
        assert value is not None
        assert value > 0, metric
    assert 0.0 == outcome.sample("probed_events_lost_total", stream="sse_disorder")
    assert 0 == stream["lost"]
    assert stream["received"] > stream["duplicated"] + stream["out_of_order"]


def test_server_clock_ahead(outcome: Outcome) -> None:
    """A target clock 30 s ahead, trusted (clock = "trust"), shows as a +30 s skew and events
    with negative lag."""
    offset = outcome.sample("probed_stream_clock_offset_seconds", stream="sse_skewed")
    assert offset is not None
    assert CLOCK_OFFSET == pytest.approx(offset, abs=1.5)
    negative = outcome.sample("probed_events_negative_lag_total", stream="sse_skewed")
    assert negative is not None
    assert negative > 0
    # every event is stamped in our future: none reaches the lag histogram
    assert 0.0 == outcome.sample("probed_delivery_lag_seconds_count", stream="sse_skewed")
    assert 1.0 == outcome.sample("probed_stream_clock_skewed", stream="sse_skewed")


def test_streams_with_healthy_connections_never_reconnect(outcome: Outcome) -> None:
    """Faults in events (drops, duplicates, skew) and faults elsewhere leave these connected."""
    for name in HEALTHY_STREAMS:
        stream = outcome.stream(name)
        assert (1, 0) == (stream["connected"], stream["reconnects"]), stream


def test_controls_succeed(outcome: Outcome) -> None:
    """The healthy login (with its follow-up) and the valid TLS probe succeed beside the faults."""
    for name in CONTROLS:
        assert outcome.probe(name)["last_success_at"] is not None, outcome.probe(name)
    assert outcome.tokens, "the control login obtained no token: the secret scan would be vacuous"


def test_metrics_served_throughout(outcome: Outcome) -> None:
    """Every scrape during the matrix answered 200, promptly, from start to end."""
    metrics = [s for s in outcome.scrapes if s.path == "/metrics"]
    assert len(metrics) >= 10
    assert [] == [s for s in outcome.scrapes if s.status != 200]
    slowest = max(s.seconds for s in outcome.scrapes)
    assert slowest < SLOW_SCRAPE, slowest
    configured = {p["probe"] for p in outcome.status["probes"]}
    configured |= {s["stream"] for s in outcome.status["streams"]}
    assert configured == {
        labels["probe"] for name, labels, _ in outcome.samples if name == "probe_success"
    }


def test_no_leaked_tasks_or_descriptors(outcome: Outcome) -> None:
    """Once the daemon and every server stopped, tasks and open descriptors are at baseline."""
    assert outcome.tasks[0] == outcome.tasks[1], outcome.leftover_tasks
    assert outcome.fds[0] == outcome.fds[1], outcome.fd_diff
    assert ([], []) == outcome.fd_diff  # the very same descriptors, not just as many


def test_no_secret_anywhere(outcome: Outcome) -> None:
    """No password, header secret or issued token appears in logs, metrics or status output."""
    secrets = [PASSWORD, TOKENLESS_PASSWORD, API_KEY, *outcome.tokens]
    haystacks = [("logs", outcome.log_text), *outcome.outputs]
    leaks = [
        (what, secret[:6] + "…") for what, text in haystacks for secret in secrets if secret in text
    ]
    assert [] == leaks
    # the scan is not vacuous: every secret was resolved, sent and (tokens) used
    assert {API_KEY} == set(outcome.api_keys_seen)
    assert {TOKENLESS_PASSWORD} == set(outcome.passwords_seen)
    assert outcome.probe("control_login")["last_success_at"] is not None  # PASSWORD accepted
    assert any(what == "GET /metrics" for what, _ in outcome.outputs)
    assert any(what == "render_incident" for what, _ in outcome.outputs)


def test_no_secret_delivered_to_another_host(outcome: Outcome) -> None:
    """Redirects to another host deliver none of the configured secrets, header or body."""
    secrets = [PASSWORD, TOKENLESS_PASSWORD, API_KEY]
    leaks = [
        (f"{r.method} {r.path_qs}", secret[:6] + "…")
        for r in outcome.elsewhere_received
        for secret in secrets
        if r.contains(secret)
    ]
    assert [] == leaks
    # not vacuous: redirect_any reached the other host, without its secret header
    assert outcome.elsewhere_received
    assert {"GET"} == {r.method for r in outcome.elsewhere_received}


def test_redirect_refusals_name_the_other_origin(outcome: Outcome) -> None:
    """Each refused redirect's logged detail names the other host's origin, not its query."""
    messages = {
        str(line.get("error", {}).get("message", ""))
        for line in outcome.logs
        if line.get("event") == "probe_run" and line.get("probe") in ("redirect_away", "login_away")
    }
    assert messages
    assert all("http://127.0.0.2:" in m and "sig=" not in m for m in messages), messages
