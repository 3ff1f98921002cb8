"""The daemon's HTTP server: metrics, health, status API and reload.

=====================  ===================================================
``GET /metrics``       Prometheus exposition (text 0.0.4, or OpenMetrics
                       when the scraper asks for it)
``GET /-/healthy``     200 while the process serves requests (liveness)
``GET /-/ready``       200 once probes are scheduled and while the state directory
                       takes writes; 503 with the reason otherwise
``GET /api/v1/status`` JSON: components, recommendations, SLOs, probes, streams
``GET /api/v1/recommendations`` JSON: the current recommendations
``POST /-/reload``     reload the configuration file (see daemon)
``POST /api/v1/maintenance`` open an ad hoc maintenance window
                       (``probed.maintenanceapi``; ``probed silence``)
``GET /api/v1/streams/NAME/tap`` each event of a stream, live, with its lag
                       (server-sent events; ``probed.tap``; ``probed tap``)
``GET /``, ``/status`` the status page (self-contained HTML)
``GET /status/fragment`` what the page swaps in on its refresh: its title and
                       the inside of ``main#app`` (``probed.statuspage``)
=====================  ===================================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web, web_response
from aiohttp.typedefs import Middleware
from prometheus_client import exposition

from probed import __version__, clock
from probed.configstatus import config_document
from probed.exposition import negotiate
from probed.history import History
from probed.maintenanceapi import add_from_request
from probed.metrics import DaemonInfo, ProbedRegistry
from probed.signals import Evaluation
from probed.statehealth import StateHealth
from probed.status import recommendations_document
from probed.statuscache import StatusCache, StatusText
from probed.statuspage import FRAGMENT_CSP, FRAGMENT_PATH, render_fragment, render_page
from probed.steps import in_slices
from probed.store import ResultStore
from probed.tap import Taps

__all__ = ["ReloadFn", "ServerState", "create_app"]

ReloadFn = Callable[[], Awaitable[tuple[bool, str]]]


class ServerState:
    """What the handlers need; the daemon owns it and flips ``ready``."""

    def __init__(
        self,
        store: ResultStore,
        registry: ProbedRegistry,
        reload: ReloadFn | None = None,
        *,
        location: str = "default",
        info: DaemonInfo | None = None,
        state: StateHealth | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.reload = reload
        self.location = location
        self.info = info if info is not None else DaemonInfo(location=location)
        self.ready = False
        self.history: History | None = None
        """The daemon's transition history (``/api/v1/status`` lists the newest)."""
        self.state = state if state is not None else StateHealth()
        """Whether the state directory takes writes (the persister updates it)."""
        self.taps: Taps | None = None
        """The open stream taps (the daemon sets them; None: no tap endpoint)."""
        self.status = StatusCache()
        """The parts of the status document kept between requests."""

    @property
    def evaluation(self) -> Evaluation | None:
        """The latest evaluation: the one the daemon keeps in ``info`` (one holder)."""
        return self.info.evaluation

    @evaluation.setter
    def evaluation(self, value: Evaluation | None) -> None:
        self.info.evaluation = value


_STATE = web.AppKey("state", ServerState)


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    # prometheus_client negotiates the format; the body is ours (probed.exposition: the
    # same bytes as its encoders, for a fraction of the CPU), gzipped when the scraper
    # accepts it (Prometheus does).
    chosen = negotiate(request.headers.get("Accept", ""))
    gzipped = exposition.gzip_accepted(request.headers.get("Accept-Encoding", ""))
    # The store is only read on the loop: ProbedRegistry.frozen_steps() copies what the
    # collector needs, a few probes or streams between turns of the loop (milliseconds in
    # all with 500 streams); writing the text and compressing it (the costly part,
    # bench/scrape_stall.py) run in a worker thread, which hands the GIL back to the
    # loop every switch interval instead of stalling it.
    frozen = await in_slices(state.registry.frozen_steps())
    body = await asyncio.to_thread(frozen.expose, chosen, gzip=gzipped)
    headers = {"Content-Type": chosen.content_type, "Vary": "Accept, Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def _ready(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if not state.ready:
        return web.Response(status=503, text="Not ready\n")
    if (problem := state.state.problem()) is not None:
        return web.Response(status=503, text=f"Not ready: {problem}\n")
    return web.Response(text="Ready\n")


def _document(request: web.Request) -> StatusText:
    """The status document now, from the parts kept since the last request."""
    state = request.app[_STATE]
    return state.status.build(
        store=state.store,
        evaluation=state.evaluation,
        location=state.location,
        version=__version__,
        now=clock.wall(),
        mono=time.monotonic(),
        config=config_document(state.info),
        state=state.state.document(),
        maintenance=state.info.maintenance,
        history=state.history,
        shard=state.info.shard,
    )


async def _status(request: web.Request) -> web.Response:
    # On the loop (it reads the store), but only what changed since the last request is
    # built and encoded (probed.statuscache, bench/status_doc.py).
    return web.Response(text=_document(request).text(), content_type="application/json")


def _rendered(render: Callable[[dict[str, Any]], str], status: StatusText) -> str:
    """``render`` of the document (in a worker thread: parsing and rendering take long)."""
    return render(status.document())


async def _recommendations(request: web.Request) -> web.Response:
    evaluation = request.app[_STATE].evaluation
    return web.json_response(recommendations_document(evaluation, now=clock.wall()))


async def _reload(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if state.reload is None:
        return web.json_response({"status": "error", "error": "reload not available"}, status=501)
    ok, message = await state.reload()
    return web.json_response(
        {"status": "success" if ok else "error", "message": message}, status=200 if ok else 400
    )


async def _maintenance(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    registry = state.info.maintenance
    if registry is None:
        return web.json_response({"status": "error", "error": "not available"}, status=501)
    try:
        body = await request.json()
    except ValueError:
        body = None
    store = state.store
    members = [(st.name, st.target) for st in store]
    members += [(st.name, st.target) for st in store.streams.values()]
    status, answer = add_from_request(
        body,
        registry,
        clock.wall(),
        probes={name for name, _ in members},
        targets={target for _, target in members},
    )
    return web.json_response(answer, status=status)


async def _tap(request: web.Request) -> web.StreamResponse:
    taps = request.app[_STATE].taps
    if taps is None:
        return web.json_response({"status": "error", "error": "not available"}, status=501)
    return await taps.handle(request)


async def _end_taps(app: web.Application) -> None:
    taps = app[_STATE].taps
    if taps is not None:
        taps.close_all("daemon stopping")


async def _index(request: web.Request) -> web.Response:
    return web.Response(
        text=await asyncio.to_thread(_rendered, render_page, _document(request)),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def _fragment(request: web.Request) -> web.Response:
    return web.Response(
        text=await asyncio.to_thread(_rendered, render_fragment, _document(request)),
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": FRAGMENT_CSP},
    )


def create_app(state: ServerState, *, middlewares: Iterable[Middleware] = ()) -> web.Application:
    """The aiohttp application serving the daemon's endpoints (``middlewares``: e.g. auth)."""
    app = web.Application(middlewares=middlewares)
    app[_STATE] = state
    # aiohttp sends "Server: Python/3.11 aiohttp/<version>" to anyone, signed in or not,
    # also on the 400s its parser answers before any app hook runs: name no versions
    web_response.SERVER_SOFTWARE = "probed"  # type: ignore[attr-defined]
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_get("/api/v1/status", _status)
    app.router.add_post("/-/reload", _reload)
    app.router.add_post("/api/v1/maintenance", _maintenance)
    app.router.add_get("/api/v1/recommendations", _recommendations)
    app.router.add_get("/api/v1/streams/{name}/tap", _tap)
    app.on_shutdown.append(_end_taps)
    app.router.add_get("/", _index)
    app.router.add_get("/status", _index)
    app.router.add_get(FRAGMENT_PATH, _fragment)
    return app
