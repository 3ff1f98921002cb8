"""The status page in real headless Chromium: a live daemon's data, and the refresh that swaps
in the server's fragment."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from probeservers import demo_health_toml

from probed import __version__
from probed.components import compute_components
from probed.config import Config, default_components, load_config
from probed.configstatus import config_document
from probed.configtypes import DEFAULT_COMPONENTS
from probed.daemon import Daemon
from probed.demo import DemoTarget
from probed.signals import Evaluation, ProbeSignal, Signals
from probed.status import status_document
from probed.statuspage import FRAGMENT_CSP, FRAGMENT_PATH, render_fragment, render_page
from probed.store import ResultStore

PASSWORD = "pw-Status-Page-7"
PASSWORD_ENV = "PROBED_STATUS_PAGE_PASSWORD"
PROBES = {"health", "liveness", "login"}
#: Where screenshots go: ``$PROBED_TEST_ARTIFACTS`` if set (CI uploads it), else tmp_path.
ARTIFACTS_ENV = "PROBED_TEST_ARTIFACTS"

#: Seconds one Chromium run may take (it usually takes one or two).
CHROMIUM_TIMEOUT = 90.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium() -> str:
    """Path of Chromium; skipped locally when absent, a failure under CI."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (Debian packages chromium chromium-driver)")
    pytest.skip("chromium not installed (apt-get install chromium)")


@dataclass
class Element:
    """One element of a parsed DOM with the text of all its descendants."""

    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The element's text content, whitespace collapsed."""
        return " ".join("".join(self.parts).split())

    @property
    def classes(self) -> set[str]:
        """The element's classes."""
        return set(self.attrs.get("class", "").split())


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class Dom(HTMLParser):
    """A flat list of the elements of a serialized DOM (what ``--dump-dom`` prints)."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.markup = markup
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def find(self, predicate: Callable[[Element], bool]) -> list[Element]:
        """Every element matching ``predicate``, in document order."""
        return [e for e in self.elements if predicate(e)]

    def by_id(self, ident: str) -> Element:
        """The element with ``id``; AssertionError if there is not exactly one."""
        [element] = self.find(lambda e: e.attrs.get("id") == ident)
        return element

    def by_class(self, name: str) -> list[Element]:
        """Every element with class ``name``."""
        return self.find(lambda e: name in e.classes)

    def app_inner(self) -> str:
        """The serialized inside of ``main#app`` (what the server and the script render)."""
        match = re.search(r'<main id="app"[^>]*>(.*)</main>', self.markup, re.S)
        assert match is not None, self.markup[:2000]
        return match.group(1)


async def run_chromium(binary: str, profile: Path, *args: str) -> str:
    """Run headless Chromium with a throwaway profile; return its stdout."""
    proc = await asyncio.create_subprocess_exec(
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHROMIUM_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"chromium did not finish in {CHROMIUM_TIMEOUT} s: {args}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers Chromium may leave behind
    assert 0 == proc.returncode, err.decode(errors="replace")[-3000:]
    return out.decode()


class Browser:
    """Headless Chromium runs, each in a fresh profile below ``tmp_path``."""

    def __init__(self, binary: str, tmp_path: Path) -> None:
        self.binary = binary
        self.tmp_path = tmp_path
        self.runs = 0

    def _profile(self) -> Path:
        self.runs += 1
        path = self.tmp_path / f"chromium-profile-{self.runs}"
        path.mkdir()
        return path

    async def dom(
        self, url: str, *, budget_ms: int = 3000, window: tuple[int, int] = (1280, 900)
    ) -> Dom:
        """The DOM after ``budget_ms`` of virtual time (the page refreshes every 10 s), laid out
        in a ``window`` (width, height) in CSS pixels."""
        out = await run_chromium(
            self.binary,
            self._profile(),
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={window[0]},{window[1]}",
            "--dump-dom",
            url,
        )
        return Dom(out)

    async def screenshot(
        self, url: str, path: Path, *, window: tuple[int, int] = (1280, 900)
    ) -> None:
        """Save a PNG of ``url`` in a ``window`` (width, height; 1280x900) to ``path``."""
        await run_chromium(
            self.binary,
            self._profile(),
            "--virtual-time-budget=3000",
            f"--window-size={window[0]},{window[1]}",
            f"--screenshot={path}",
            url,
        )


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    """Headless Chromium (skipped locally if missing, required under CI)."""
    return Browser(chromium(), tmp_path)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Directory for screenshots: ``$PROBED_TEST_ARTIFACTS`` or the test's tmp_path."""
    where = os.environ.get(ARTIFACTS_ENV)
    path = Path(where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


DocFn = Callable[[], dict[str, Any]]
#: What ``/status/fragment`` renders on each fetch: a document, or None for a 503.
FragmentFn = Callable[[], dict[str, Any] | None]


@contextlib.asynccontextmanager
async def page_server(
    pages: dict[str, DocFn], fragment: FragmentFn, wrap: Callable[[str], str] = str
) -> AsyncIterator[str]:
    """Serve ``wrap(render_page(doc()))`` at each path of ``pages`` and
    ``render_fragment(fragment())`` at /status/fragment, as the daemon does (503 when
    ``fragment()`` is None)."""

    def page_handler(make: DocFn) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=wrap(render_page(make())), content_type="text/html")

        return handler

    async def fragment_handler(request: web.Request) -> web.Response:
        doc = fragment()
        if doc is None:
            return web.Response(status=503, text="unavailable")
        return web.Response(text=render_fragment(doc), content_type="text/html")

    async def frame_handler(request: web.Request) -> web.Response:
        """/frame/W/H: the page at ``/`` in a W x H CSS pixel iframe (a viewport of that size,
        narrower than the 500 px Chromium's headless window allows)."""
        width, height = int(request.match_info["width"]), int(request.match_info["height"])
        return web.Response(
            text='<!doctype html><html><body style="margin:0">'
            f'<iframe src="/" width="{width}" height="{height}" style="border:0;display:block">'
            "</iframe></body></html>",
            content_type="text/html",
        )

    app = web.Application()
    for path, make in pages.items():
        app.router.add_get(path, page_handler(make))
    app.router.add_get(r"/frame/{width:\d+}/{height:\d+}", frame_handler)
    app.router.add_get(FRAGMENT_PATH, fragment_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        address = runner.addresses[0]
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        await runner.cleanup()


def evaluate_store(store: ResultStore, config: Config, now: float) -> Evaluation:
    """A minimal evaluation of the store: probe signals -> the default components."""
    probes = {}
    for state in store:
        runs = list(state.recent)
        probes[state.name] = ProbeSignal(
            name=state.name,
            kind=state.kind,
            target=state.target,
            runs=len(runs),
            failures=sum(1 for r in runs if not r.success),
            reasons={},
            rate_limited=0,
            p95_seconds=None,
            last_success=None if state.last is None else state.last.success,
            last_success_at=state.last_success_at,
        )
    signals = Signals(now=now, window=300.0, probes=probes)
    components = compute_components(default_components(config), signals)
    return Evaluation(at=now, signals=signals, components=components, recommendations=())


def write_config(tmp_path: Path, base_url: str) -> Path:
    """Two http probes and a login probe at 1 s against ``base_url``; any free listen port."""
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
location = "status-page-test"
state_dir = "{tmp_path / "state"}"
log_level = "warning"

[recommend]
evaluate_every = "1s"

{demo_health_toml(base_url)}
[[probes]]
name = "liveness"
kind = "http"
target = "demo"
path = "/health/liveness"
interval = "1s"
timeout = "900ms"

[[probes]]
name = "login"
kind = "login"
target = "demo"
interval = "1s"
timeout = "900ms"
latency_threshold = "900ms"  # a loaded CI machine must not turn the page red
username = "probe@demo.example"
password = {{ env = "{PASSWORD_ENV}" }}
follow_up = {{ path = "/api/me" }}
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def live_daemon(config: Config) -> AsyncIterator[Daemon]:
    """The daemon running in this event loop until the block ends."""
    daemon = Daemon(config, install_signal_handlers=False, shutdown_grace=1.0)
    task = asyncio.create_task(daemon.run())
    started = asyncio.ensure_future(daemon.wait_started())
    await asyncio.wait({task, started}, timeout=15.0, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        raise AssertionError(f"daemon did not start: {task.result() if task.done() else ''}")
    try:
        yield daemon
    finally:
        daemon.request_stop()
        assert 0 == await asyncio.wait_for(task, 30.0)


async def wait_until(predicate: Callable[[], bool], within: float) -> None:
    """Poll ``predicate`` until it holds or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


def probes_healthy(store: ResultStore) -> bool:
    """Every test probe has run at least twice and its last run succeeded."""
    states = {s.name: s for s in store}
    return set(states) == PROBES and all(
        s.last is not None and s.last.success and len(s.recent) >= 2 for s in states.values()
    )


def assert_probe_rows_ok(dom: Dom) -> None:
    """One row per test probe, each with a successful last run and a latency sparkline."""
    rows = dom.find(lambda e: e.tag == "tr" and "probe" in e.classes)
    assert PROBES == {r.attrs["data-probe"] for r in rows}
    assert {"true"} == {r.attrs["data-ok"] for r in rows}
    results = [e.text for e in dom.find(lambda e: e.tag == "td" and "result" in e.classes)]
    assert ["ok"] * len(PROBES) == results
    assert len(PROBES) == len(dom.find(lambda e: e.tag == "polyline"))


def components_of(dom: Dom) -> dict[str, str]:
    """Component card name -> state."""
    return {c.attrs["data-name"]: c.attrs["data-state"] for c in dom.by_class("component")}


EXPECTED_COMPONENTS = {
    "API Read": "OK",
    "API Write": "OK",
    "SSE Stream": "UNKNOWN",
    "Background Jobs": "UNKNOWN",
    "Console/Admin": "UNKNOWN",
}


async def test_status_page_of_a_live_daemon_in_chromium(
    browser: Browser, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chromium shows the live daemon's components and probe results, refreshes them with the
    fragment of /status/fragment, and the screenshot of the page is a real, non-trivial
    image."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    async with DemoTarget(password=PASSWORD) as demo:
        config = load_config(write_config(tmp_path, demo.base_url))
        async with live_daemon(config) as daemon:
            await wait_until(lambda: probes_healthy(daemon.store), within=20.0)

            def doc(*, evaluated: bool = True) -> dict[str, Any]:
                now = time.time()
                return status_document(
                    store=daemon.store,
                    evaluation=evaluate_store(daemon.store, config, now) if evaluated else None,
                    location=config.daemon.location,
                    version=__version__,
                    now=now,
                    config=config_document(daemon.info),
                )

            pages: dict[str, DocFn] = {"/": doc, "/bare": lambda: doc(evaluated=False)}
            async with page_server(pages, fragment=doc) as base:
                served = await browser.dom(f"{base}/")
                refreshed = await browser.dom(f"{base}/", budget_ms=12_000)
                bare = await browser.dom(f"{base}/bare")
                shot = artifacts / "status-page.png"
                await browser.screenshot(f"{base}/", shot)
            await check_daemon_page(browser, daemon)

    for dom, rendered in ((served, "server"), (refreshed, "client")):
        assert rendered == dom.by_id("app").attrs["data-rendered"]
        overall = dom.by_id("overall")
        assert ("OK", "OK") == (overall.attrs["data-state"], overall.text)
        assert "status-page-test" == dom.by_id("location").text
        assert list(DEFAULT_COMPONENTS) == [c.attrs["data-name"] for c in dom.by_class("component")]
        assert EXPECTED_COMPONENTS == components_of(dom)
        assert_probe_rows_ok(dom)
        assert [] == dom.by_class("recommendation")
        assert ("true", True) == (
            dom.by_id("config").attrs["data-ok"],
            dom.by_id("config").text.startswith(f"config {config.source_hash} from "),
        )
    assert served.by_id("config").text == refreshed.by_id("config").text
    assert "UNKNOWN" == bare.by_id("overall").attrs["data-state"]
    assert [] == bare.by_class("component")
    assert_probe_rows_ok(bare)

    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000, len(png)


async def check_daemon_page(browser: Browser, daemon: Daemon) -> None:
    """The daemon's own ``/`` in Chromium, before and after a refresh from its own
    /status/fragment, which answers HTML that runs and loads nothing on its own."""
    base = f"http://127.0.0.1:{daemon.bound_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v1/status") as resp:
            api = await resp.json()
        async with http.get(f"{base}{FRAGMENT_PATH}") as resp:
            fragment = await resp.text()
            assert (200, "text/html") == (resp.status, resp.content_type)
            assert "no-store" == resp.headers["Cache-Control"]
            assert FRAGMENT_CSP == resp.headers["Content-Security-Policy"]
    assert fragment.startswith("<title>")
    assert "<script" not in fragment
    assert len(api["components"]) == len(Dom(fragment).by_class("component"))
    served = await browser.dom(f"{base}/")
    refreshed = await browser.dom(f"{base}/", budget_ms=12_000)
    for dom, rendered in ((served, "server"), (refreshed, "client")):
        assert rendered == dom.by_id("app").attrs["data-rendered"]
        assert dom.by_id("overall").attrs["data-state"] in {"OK", "DEGRADED", "DOWN", "UNKNOWN"}
        assert len(api["components"]) == len(dom.by_class("component"))
        assert_probe_rows_ok(dom)
    assert "data-error" not in refreshed.by_id("refresh").attrs


# ---------------------------------------------------------------------------
# a refresh shows exactly what the server renders

HOSTILE = "<script>alert(1)</script>"
T0 = 1_770_508_800.0


def all_sections_doc() -> dict[str, Any]:
    """Every section filled, with markup in free text and numbers that round on a tie."""
    return {
        "version": "0.1.0",
        "location": HOSTILE,
        "generated_at": T0 + 0.999,
        "evaluated_at": T0,
        "overall": "DOWN",
        "components": [
            {"name": "API Read", "state": "OK", "probes": ["health", "readiness"],
             "failing": [], "last_healthy": T0 - 2},
            {"name": HOSTILE, "state": "DOWN", "probes": ["login"], "failing": ["login"],
             "last_healthy": None},
            {"name": "SSE Stream", "state": "DEGRADED", "probes": ["events", HOSTILE],
             "failing": ["events"], "degraded_by": [HOSTILE], "last_healthy": T0 - 4000},
            {"name": "Background Jobs", "state": "UNKNOWN", "probes": ["never"], "failing": [],
             "last_healthy": None},
            {"name": "Console/Admin", "state": "UNKNOWN", "probes": [], "failing": [],
             "last_healthy": None},
        ],
        "recommendations": [
            {"scenario": "login_failing", "title": "Login failing & \"slow\"",
             "severity": "Sev-1", "routing": "page", "state": "active", "since": T0 - 125,
             "summary": "Login fails for 2m 'everywhere'",
             "actions": ["Check the auth service.", "<img src=x onerror=alert(1)>"],
             "rollback": "Nothing to roll back.",
             "runbook_url": "https://runbooks.example/probed#login",
             "evidence": [
                 {"signal": "probe login failure_ratio", "value": 0.125, "threshold": 0.2,
                  "since": T0 - 130, "detail": "<b>3/24</b>"},
                 {"signal": "probe login p95", "value": 1.0005, "threshold": 0.25,
                  "since": T0 - 9000, "detail": ""},
                 {"signal": "slo login_availability burn_rate_1h", "value": 14.412345,
                  "threshold": 14.4, "since": T0 - 60, "detail": ""},
                 {"signal": "queue_depth", "value": 250.00001, "threshold": 200,
                  "since": T0 - 60, "detail": ""},
             ]},
            {"scenario": "x", "title": "pending one", "severity": "Sev-3", "routing": "ticket",
             "state": "pending", "since": T0 - 5, "summary": "", "actions": [], "rollback": "",
             "runbook_url": "javascript:alert(1)", "evidence": []},
        ],
        "slos": [
            {"name": "login_availability", "sli": "availability", "objective": 0.995,
             "window": 2592000.0, "ratio": {"1h": 0.99125, "30d": None},
             "burn_rate": {"1h": 1.75}, "budget_remaining": -0.0625,
             "events": {"1h": 360, "30d": 72}, "coverage": {"1h": 3600.0, "30d": 720.0}},
            {"name": "login_latency", "sli": "latency", "objective": 0.99999, "window": 5400.0,
             "ratio": {"1h": 0.41234}, "burn_rate": {"1h": 0.0012345},
             "budget_remaining": 0.99949999, "events": {"1h": 12}},
        ],
        "probes": [
            {"probe": HOSTILE, "kind": "http", "target": "demo", "runs": 7, "failures": 2,
             "last": {"success": False, "reason": "status", "status_code": 503,
                      "duration_seconds": 0.01225, "started_at": T0 - 7300,
                      "run_id": "r\"1", "trace_id": "<t>"},
             "recent": [{"t": T0 - 3, "d": 0.125, "ok": True, "reason": None},
                        {"t": T0 - 2, "d": 0.0375, "ok": False, "reason": "<timeout>"},
                        {"t": T0 - 1, "d": 2.5, "ok": False, "reason": "slow"},
                        {"t": T0 - 0.5, "d": 0.00125, "ok": True, "reason": None}]},
            {"probe": "login", "kind": "login", "target": "demo", "runs": 1, "failures": 0,
             "maintenance_until": T0 + 3600.5,
             "last": {"success": True, "reason": None, "status_code": 200,
                      "duration_seconds": 1.125, "started_at": T0 - 200, "run_id": "r2",
                      "trace_id": "t2"},
             "recent": [{"t": T0 - 200, "d": 1.125, "ok": True, "reason": None}]},
            {"probe": "never", "kind": "import", "target": "demo", "runs": 0, "failures": 0,
             "last": None, "recent": []},
        ],
        "streams": [
            {"stream": "events", "target": "demo", "connected": 0, "subscribers": 2,
             "received": 12, "lost": 3, "duplicated": 1, "out_of_order": 2, "late": 4,
             "negative_lag": 1, "reconnects": 5, "clock_offset_seconds": -30.013,
             "clock": {"mode": "trust", "skewed": True, "offset_seconds": -30.013,
                       "uncertainty_seconds": 0.0004, "tolerance_seconds": 1.0,
                       "note": f"-30.013 s \u00b1 0.4 ms (time_path), SKEWED {HOSTILE}"},
             "mean_lag_seconds": 0.5, "lag": [{"t": T0 - 60, "lag": 0.5},
                                              {"t": T0 - 30, "lag": 6.25}],
             "hints": ["events arrive in bursts", HOSTILE]},
            {"stream": "quiet", "target": "demo", "connected": 1, "subscribers": 1,
             "received": 0, "lost": 0, "duplicated": 0, "out_of_order": 0, "late": 0,
             "negative_lag": 0, "reconnects": 0, "clock_offset_seconds": 0.0003,
             "clock": {"offset_seconds": 0.0003, "uncertainty_seconds": 0.0005,
                       "tolerance_seconds": 1.0, "skewed": False},
             "mean_lag_seconds": 119.99, "lag": [{"t": T0 - 30, "lag": 0.0042512}]},
            {"stream": "unsure", "target": "demo", "connected": 1, "subscribers": 1,
             "clock_offset_seconds": 0.8, "clock": {"uncertainty_seconds": 1.5,
                                                   "tolerance_seconds": 1.0}},
            {"stream": "ahead", "target": "demo", "connected": 1, "subscribers": 1,
             "clock_offset_seconds": 0.41234, "clock": {"uncertainty_seconds": 0.0005,
                                                       "tolerance_seconds": 1.0}},
            {"stream": "unknown", "target": "demo", "connected": 0, "subscribers": 1,
             "clock_offset_seconds": None, "clock": {}},
        ],
        "maintenance": [
            {"start": T0 - 60, "end": T0 + 3600.5, "targets": ["demo"], "probes": [],
             "reason": HOSTILE, "active": True},
            {"start": T0 + 7200, "end": T0 + 9000, "targets": [], "probes": ["login", HOSTILE],
             "reason": "", "active": False},
        ],
        "history": [
            {"at": T0 - 0.5, "kind": "component", "name": HOSTILE, "old": "OK", "new": "DOWN",
             "detail": f"failing: login, {HOSTILE}"},
            {"at": T0 - 125, "kind": "recommendation", "name": "login_failing",
             "old": "pending", "new": "active", "detail": "Sev-1"},
            {"at": T0 - 200, "kind": "recommendation", "name": "x", "old": None,
             "new": "pending", "detail": ""},
            {"at": T0 - 600.5, "kind": "reload", "name": "config", "old": None,
             "new": "failed", "detail": f"<img src=x onerror=alert(1)> {HOSTILE}"},
            "not an entry",
        ],
        "state": {"healthy": False, "state_dir": HOSTILE, "in_memory": True,
                  "reason": "read_only", "since": T0 - 30.5, "write_failures": 3},
        "config": {"last_reload_successful": False, "last_reload_error": HOSTILE,
                   "last_reload_at": T0 - 600.5, "path": HOSTILE, "hash": "a1b2c3d4e5f6",
                   "loaded_at": T0 - 600.5, "failed_at": T0 - 60.25, "file_hash": None,
                   "problems": [HOSTILE, "second"], "more_problems": 5},
    }  # fmt: skip


def rows_of(dom: Dom, row: Callable[[Element], bool]) -> list[list[str]]:
    """The cell texts of every ``tr`` that ``row`` accepts, in order."""
    rows: list[list[str]] = []
    inside = False
    for element in dom.elements:
        if element.tag == "tr":
            inside = row(element)
            if inside:
                rows.append([])
        elif element.tag == "td" and inside:
            rows[-1].append(element.text)
    return rows


def history_rows(dom: Dom) -> list[list[str]]:
    """The cell texts of every ``tr.history``, in order."""
    return rows_of(dom, lambda e: "history" in e.classes)


def assert_all_sections(dom: Dom) -> None:
    """``dom`` shows every section of ``all_sections_doc``: hostile strings as text, nothing
    injected, every figure rounded with its unit."""
    assert 1 == len(dom.find(lambda e: e.tag == "script"))
    assert [] == dom.find(lambda e: e.tag in ("img", "b"))
    assert HOSTILE == dom.by_id("location").text
    assert "false" == dom.by_id("state").attrs["data-healthy"]
    assert (
        "false",
        "config reload failed at 2026-02-07T23:58:59Z: <script>alert(1)</script> (and 6 more "
        "problems); running config a1b2c3d4e5f6 from 2026-02-07T23:49:59Z, file on disk "
        "unreadable",
    ) == (dom.by_id("config").attrs["data-ok"], dom.by_id("config").text)
    assert [
        f"maintenance until 2026-02-08T01:00:00Z: {HOSTILE} (targets demo)",
        "maintenance from 2026-02-08T02:00:00Z until 2026-02-08T02:30:00Z: "
        f"- (probes login, {HOSTILE})",
    ] == [p.text for p in dom.by_class("maintenance") if p.tag == "p"]
    assert [
        ["2026-02-07T23:59:59Z", "component", HOSTILE, "OK \u2192 DOWN",
         f"failing: login, {HOSTILE}"],
        ["2026-02-07T23:57:55Z", "recommendation", "login_failing",
         "pending \u2192 active", "Sev-1"],
        ["2026-02-07T23:56:40Z", "recommendation", "x", "- \u2192 pending", ""],
        ["2026-02-07T23:49:59Z", "reload", "config", "- \u2192 failed",
         f"<img src=x onerror=alert(1)> {HOSTILE}"],
    ] == history_rows(dom)  # fmt: skip
    assert [
        f"stream events: target clock -30.013 s \u00b1 0.4 ms (time_path), SKEWED {HOSTILE}"
    ] == [p.text for p in dom.by_class("clock-skew")]
    assert [
        ("true", "-30 s skewed"),
        ("false", "in sync"),
        ("false", "-"),
        ("false", "+412 ms"),
        ("false", "-"),
    ] == [(td.attrs["data-clock-skewed"], td.text) for td in dom.by_class("clock")]
    assert [
        ["login_availability", "availability", "99.5 %", "30d", "99.13 %",
         "insufficient data (12m of 30d)", "1.75x", "-6.25 %"],
        ["login_latency", "latency", "99.999 %", "90m", "41.23 %", "-", "0x", "99.95 %"],
    ] == rows_of(dom, lambda e: "slo" in e.classes)  # fmt: skip
    assert [
        ["probe login failure_ratio", "12.5 %", "20 %"],
        ["probe login p95", "1 s", "250 ms"],
        ["slo login_availability burn_rate_1h", "14.4x", "14.4x"],
        ["queue_depth", "250", "200"],
    ] == [r[:3] for r in rows_of(dom, lambda e: not e.attrs) if r]
    assert ["12 ms", "1.1 s", "-"] == [r[6] for r in rows_of(dom, lambda e: "probe" in e.classes)]
    assert ["500 ms", "2 min", "-", "-", "-"] == [
        r[11] for r in rows_of(dom, lambda e: "stream" in e.classes)
    ]
    assert "DOWN" == dom.by_id("overall").attrs["data-state"]
    assert [
        ("API Read", "OK", "true", "OK"),
        (HOSTILE, "DOWN", "true", "DOWN"),
        ("SSE Stream", "DEGRADED", "true", "DEGRADED"),
        ("Background Jobs", "UNKNOWN", "true", "UNKNOWN"),
        ("Console/Admin", "UNKNOWN", "false", "not monitored"),
    ] == [
        (c.attrs["data-name"], c.attrs["data-state"], c.attrs["data-monitored"], state.text)
        for c, state in zip(
            dom.by_class("component"),
            dom.find(lambda e: e.tag == "p" and "state" in e.classes and "id" not in e.attrs),
            strict=True,
        )
    ]
    assert ["Sev-1", "Sev-3"] == [r.attrs["data-severity"] for r in dom.by_class("recommendation")]
    [link] = dom.find(lambda e: e.tag == "a")
    assert "https://runbooks.example/probed#login" == link.attrs["href"]
    assert 2 == len(dom.find(lambda e: e.tag == "circle" and "fail" in e.classes))


def quiet_doc() -> dict[str, Any]:
    """All is well: every component OK, nothing recommended, no history yet."""
    doc = all_sections_doc()
    doc["overall"] = "OK"
    doc["components"] = [
        {**c, "state": "OK", "failing": [], "degraded_by": []} for c in doc["components"]
    ]
    doc["recommendations"] = []
    doc["history"] = []
    return doc


def recovering_doc() -> dict[str, Any]:
    """Ten seconds after ``all_sections_doc``: login works again, its component is DEGRADED."""
    doc = all_sections_doc()
    doc["generated_at"] += 10
    doc["overall"] = "DEGRADED"
    doc["components"][1].update(state="DEGRADED", failing=[], degraded_by=["login"])
    doc["history"].insert(
        0,
        {"at": T0 + 9.5, "kind": "component", "name": HOSTILE, "old": "DOWN",
         "new": "DEGRADED", "detail": "degraded: login"},
    )  # fmt: skip
    return doc


class Fragments:
    """What /status/fragment answers, one document per fetch (None: a 503); the last repeats."""

    def __init__(self, *docs: dict[str, Any] | None) -> None:
        self.docs = docs
        self.fetches = 0

    def __call__(self) -> dict[str, Any] | None:
        doc = self.docs[min(self.fetches, len(self.docs) - 1)]
        self.fetches += 1
        return doc

    def reset(self) -> None:
        """Start over at the first document (for the next browser run)."""
        self.fetches = 0


def title(dom: Dom) -> str:
    """The text of the document's ``<title>`` (the first; the sparklines' come later)."""
    return dom.find(lambda e: e.tag == "title")[0].text


def without_refresh_note(app: str) -> str:
    """``main#app``'s markup without the ``#refresh`` note (a failed refresh rewrites it)."""
    return re.sub(r'<span id="refresh"[^>]*>[^<]*</span>', "", app)


async def test_refresh_shows_exactly_the_servers_fragment(
    browser: Browser, artifacts: Path
) -> None:
    """Every 10 s the page swaps in the server's fragment for the document of that moment: after
    one fetch main#app and the title are exactly those of the server's page of that document,
    after a second fetch those of the changed document (its state changes are visible), and a
    failed third fetch keeps the last page and says so. Hostile strings stay text and nothing
    injected runs."""
    fragments = Fragments(all_sections_doc(), recovering_doc(), None)
    pages: dict[str, DocFn] = {
        "/": quiet_doc,
        "/first": all_sections_doc,
        "/second": recovering_doc,
    }
    async with page_server(pages, fragment=fragments) as base:
        served = await browser.dom(f"{base}/")
        first = await browser.dom(f"{base}/first")
        second = await browser.dom(f"{base}/second")
        refreshed: list[Dom] = []
        for fetches in (1, 2, 3):
            fragments.reset()
            refreshed.append(await browser.dom(f"{base}/", budget_ms=fetches * 10_000 + 2_000))
            assert fetches == fragments.fetches
        shot = artifacts / "status-page-all-sections.png"
        await browser.screenshot(f"{base}/first", shot)
    assert len(shot.read_bytes()) > 10_000
    once, twice, failed = refreshed

    assert ("server", "OK") == (
        served.by_id("app").attrs["data-rendered"],
        served.by_id("overall").attrs["data-state"],
    )
    assert f"OK - probed status - {HOSTILE}" == title(served)
    for dom, expected in ((once, first), (twice, second)):
        assert ("client", "server") == (
            dom.by_id("app").attrs["data-rendered"],
            expected.by_id("app").attrs["data-rendered"],
        )
        assert expected.app_inner() == dom.app_inner()
        assert title(expected) == title(dom)
        assert "data-error" not in dom.by_id("refresh").attrs
    assert f"DOWN - probed status - {HOSTILE}" == title(once)
    assert f"DEGRADED - probed status - {HOSTILE}" == title(twice)
    assert [("DOWN", "DOWN"), ("DEGRADED", "DEGRADED")] == [
        (dom.by_id("overall").attrs["data-state"], components_of(dom)[HOSTILE])
        for dom in (once, twice)
    ]
    assert [HOSTILE, "DOWN \u2192 DEGRADED"] == history_rows(twice)[0][2:4]
    assert_all_sections(first)
    assert_all_sections(once)

    assert "client" == failed.by_id("app").attrs["data-rendered"]
    assert without_refresh_note(second.app_inner()) == without_refresh_note(failed.app_inner())
    note = failed.by_id("refresh")
    assert ("true", "update failed (HTTP 503); showing older data") == (
        note.attrs.get("data-error"),
        note.text,
    )
    assert title(second) == title(failed)


async def test_failed_refresh_keeps_the_page_and_says_so(browser: Browser) -> None:
    """When /status/fragment fails, the server-rendered page stays and the header flags it."""
    async with page_server({"/": all_sections_doc}, fragment=lambda: None) as base:
        dom = await browser.dom(f"{base}/", budget_ms=12_000)
    assert "server" == dom.by_id("app").attrs["data-rendered"]
    refresh = dom.by_id("refresh")
    assert "true" == refresh.attrs.get("data-error")
    assert "update failed (HTTP 503)" in refresh.text


# ---------------------------------------------------------------------------
# the page fits a phone and a desktop screen

#: Measures the laid-out page once it has loaded and writes the result, as JSON, into the
#: ``data-layout`` attribute of the top document's ``<html>`` (where ``--dump-dom`` carries it
#: out; the page may be in the iframe of ``/frame/W/H``).
LAYOUT_JS = """
addEventListener("load", () => {
  const root = document.documentElement;
  const top = window.parent.document.documentElement;
  const box = (el) => {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    const shown = style.display !== "none" && style.visibility !== "hidden" &&
      Number(style.opacity) > 0;
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
            width: r.width, height: r.height, shown};
  };
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const clipped = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) if (scrolls(p)) return true;
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.classList.length ? "." + [...el.classList].join(".") : "");
  top.setAttribute("data-layout", JSON.stringify({
    scrollWidth: root.scrollWidth,
    clientWidth: root.clientWidth,
    innerWidth: innerWidth,
    innerHeight: innerHeight,
    overall: box(document.getElementById("overall")),
    components: [...document.querySelectorAll(".component")]
      .map((c) => ({name: c.dataset.name, ...box(c)})),
    tables: [...document.querySelectorAll("table")].map((t) => ({
      table: name(t), scroller: scrolls(t.parentElement), ...box(t.parentElement)})),
    overflowing: [...document.body.querySelectorAll("*")]
      .filter((el) => !clipped(el) && el.getBoundingClientRect().right > innerWidth + 0.5)
      .slice(0, 12).map((el) => [name(el), el.getBoundingClientRect().right]),
  }));
});
"""


def with_layout_probe(page: str) -> str:
    """``page`` plus ``LAYOUT_JS``, which its Content-Security-Policy is told to allow."""
    digest = base64.b64encode(hashlib.sha256(LAYOUT_JS.encode()).digest()).decode()
    page, count = re.subn(
        r"script-src (&#x27;sha256-[^&]+&#x27;)",
        rf"script-src \1 &#x27;sha256-{digest}&#x27;",
        page,
    )
    assert 1 == count
    return page.replace("</body>", f"<script>{LAYOUT_JS}</script>\n</body>")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, from its IHDR chunk."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    assert b"IHDR" == data[12:16], path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def inside(box: dict[str, Any], width: float) -> bool:
    """The box is shown, not empty, and lies within the viewport's width."""
    return (
        bool(box["shown"])
        and box["width"] > 0
        and box["height"] > 0
        and (box["left"] >= 0 and box["right"] <= width + 0.5)
    )


@pytest.mark.parametrize("width", [360, 1280])
async def test_page_fits_the_screen_without_horizontal_scrolling(
    browser: Browser, artifacts: Path, width: int
) -> None:
    """At 360 px (a phone) and 1280 px the page never scrolls sideways: the document is no
    wider than the viewport, wide tables scroll inside their own container, and the headline
    state and every component card are on screen in full. Screenshots of both are kept.

    The layout is measured in an iframe of that width (Chromium's headless window is at least
    500 px wide for ``--dump-dom``); the screenshot is of a window of that width."""
    window = (width, 800)
    doc = all_sections_doc()
    async with page_server(
        {"/": all_sections_doc}, fragment=all_sections_doc, wrap=with_layout_probe
    ) as base:
        dom = await browser.dom(f"{base}/frame/{width}/{window[1]}", window=(max(width, 1280), 900))
        shot = artifacts / f"status-page-{width}px.png"
        await browser.screenshot(f"{base}/", shot, window=window)
    [html_element] = dom.find(lambda e: e.tag == "html")
    layout = json.loads(html_element.attrs["data-layout"])
    sizes = {
        "scrollWidth": layout["scrollWidth"],
        "clientWidth": layout["clientWidth"],
        "innerWidth": layout["innerWidth"],
        "screenshot": png_size(shot),
        "overflowing": layout["overflowing"],
    }
    assert (width, window) == (layout["innerWidth"], png_size(shot)), sizes
    assert layout["scrollWidth"] <= layout["clientWidth"] <= layout["innerWidth"], sizes
    assert [] == layout["overflowing"], sizes
    overall = layout["overall"]
    assert inside(overall, width), (overall, sizes)
    assert 0 <= overall["top"] < overall["bottom"] <= window[1], (overall, sizes)
    assert [c["name"] for c in doc["components"]] == [c["name"] for c in layout["components"]]
    for card in layout["components"]:
        assert inside(card, width), (card, sizes)
    assert layout["tables"], layout
    for table in layout["tables"]:
        assert table["scroller"], (table, sizes)
        assert inside(table, width), (table, sizes)
    assert len(shot.read_bytes()) > 10_000
