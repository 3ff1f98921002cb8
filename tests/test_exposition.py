"""The fast exposition: the same bytes as prometheus_client's encoders, for less CPU.

``probed.exposition`` renders the text format (0.0.4) and OpenMetrics 1.0 from label
strings cached per series; every test here holds it to prometheus_client's own
``generate_latest`` (and OpenMetrics' one), byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import math
import platform
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from bigstore import big_store
from binaries import promtool
from hypothesis import given
from hypothesis import strategies as st
from livedaemon import app_of, health, live_daemon
from prometheus_client import CollectorRegistry, exposition, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as untyped_float_to_go_string

from probed import exposition as exposition_module
from probed.exposition import (
    Family,
    Format,
    LabelCache,
    MetricWriter,
    Writer,
    compress,
    format_value,
    negotiate,
    render,
)
from probed.gcpolicy import THRESHOLDS
from probed.metrics import DaemonInfo, FrozenRegistry, build_registry
from probed.server import ServerState, create_app
from probed.steps import in_slices
from probed.store import Histogram, ResultStore

if TYPE_CHECKING:
    from conftest import ServeApp

floatToGoString: Callable[[float], str] = untyped_float_to_go_string
openmetrics_latest: Callable[[CollectorRegistry], bytes] = openmetrics.generate_latest

PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""What Prometheus 2.42 sends (captured from a real scrape)."""
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
FAST = (
    "",
    "text/plain",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5",
    PROMETHEUS_2,
    PROMETHEUS_3,
)
"""Accept headers the fast path answers (what prometheus_client would, byte for byte)."""
FALLBACK = (
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=2.0.0",
)
"""Accept headers left to prometheus_client's own encoders (escapings that rename)."""


class Only(CollectorRegistry):
    """A registry of one collector, for prometheus_client's encoders."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(auto_describe=False)
        self.register(collector)


class Written(Collector):
    """A collector over a ``write(writer)`` function, through prometheus_client's objects."""

    def __init__(self, write: Callable[[Writer], None]) -> None:
        self.write = write

    def collect(self) -> Iterator[Metric]:
        writer = MetricWriter()
        self.write(writer)
        return iter(writer.metrics)


def reference(write: Callable[[Writer], None], fmt: Format) -> bytes:
    """What prometheus_client's encoder makes of ``write``'s families (no ``# EOF``)."""
    registry = Only(Written(write))
    if fmt is Format.TEXT:
        return generate_latest(registry)
    body = openmetrics_latest(registry)
    assert body.endswith(b"# EOF\n")
    return body.removesuffix(b"# EOF\n")


@contextlib.contextmanager
def no_collections() -> Iterator[None]:
    """No garbage collection in between: the GC pause histograms the probed families end
    with stay the same from one render to the next."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def stable(body: bytes) -> list[str]:
    """The lines of an exposition, without the process collector's samples and the GC's
    pauses and counts (they move)."""
    moving = (
        "process_",
        "probed_gc_pause_seconds",
        "probed__gc__pause",
        "python_gc_",
        "python__gc__",
    )
    return [line for line in body.decode().splitlines() if not line.startswith(moving)]


def frozen_of(store: ResultStore, info: DaemonInfo) -> FrozenRegistry:
    """A snapshot registry of a fresh registry over ``store``."""
    return build_registry(store, info).frozen()


# -- numbers ------------------------------------------------------------------------------


@given(
    st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-2e6, max_value=2e17)  # around Go's switch to exponents
    | st.integers(-(10**20), 10**20)
)
def test_format_value_is_prometheus_clients(value: float) -> None:
    """Every float and int is written as floatToGoString writes it."""
    assert floatToGoString(value) == format_value(value)


@pytest.mark.parametrize(
    "value",
    [0, -0.0, 1, True, False, 999_999, 1_000_000, 999_999.99, 1e6, 1e15, 1e16, -1e15, -1e16,
     2**53 + 1, 10**20, 5e-324, 1e-7, math.nan, math.inf, -math.inf, 0.1 + 0.2, 1234567.0,
     1_796_277_189.7927577, 9_999_999_999_999_998.0, 10_000_000.5, -1_796_277_189.5],
)  # fmt: skip
def test_format_value_at_the_edges(value: float) -> None:
    """Exactly at the edges of the fast paths (Go switches to exponents at 1e6 and up)."""
    assert floatToGoString(value) == format_value(value)


@pytest.mark.parametrize("accept", FAST + FALLBACK)
def test_negotiation_is_prometheus_clients(accept: str) -> None:
    """prometheus_client's choice and content type; the fast path takes the formats it
    writes the same, and leaves the escapings that rename to prometheus_client."""
    encoder, content_type = exposition.choose_encoder(accept)
    chosen = negotiate(accept)
    assert content_type == chosen.content_type
    assert repr(encoder) == repr(chosen.encoder)  # partials compare by identity
    assert (accept in FAST) == (chosen.format is not None)
    openmetrics_asked = content_type.startswith("application/openmetrics-text")
    assert chosen.format in (None, Format.OPENMETRICS if openmetrics_asked else Format.TEXT)


# -- families with awkward contents --------------------------------------------------------

GAUGE = Family.gauge("demo_gauge", 'Help with a back\\slash, a "quote" and a\nnewline.', "name")
COUNTER = Family.counter("demo_events", "Counted things.", "name", "kind")
HIST = Family.histogram("demo_seconds", "A histogram.", "name")
BARE = Family.histogram("demo_bare_seconds", "No labels at all.")
UNLABELLED = Family.gauge("demo_unlabelled", "One value.")
EMPTY = Family.counter("demo_never", "No series yet.", "name")
AWKWARD = ('quo"te', "back\\slash", "new\nline", "per%cent", "brace{}", "ünïcødé ✓", "", "a,b=c")


def _histogram(bounds: Sequence[float], counts: list[int], total: float) -> Histogram:
    hist = Histogram(bounds)
    hist.counts, hist.count, hist.sum = counts, sum(counts), total
    return hist


def awkward(writer: Writer) -> None:
    """Families with label values to escape, odd numbers, big counts and empty families."""
    keys = [(value,) for value in AWKWARD]
    values = [1, 0.5, math.nan, math.inf, -math.inf, -0.0, 10**20, 123456789.125]
    writer.samples(GAUGE, keys, values)
    writer.samples(
        COUNTER,
        [(value, kind) for value in AWKWARD for kind in ("x", 'y"')],
        [n * 999_999 for n in range(2 * len(AWKWARD))],
    )
    writer.histograms(
        HIST,
        [("small",), ('big"',), ("nan_sum",), ("no_bounds",), ("negative",)],
        [
            _histogram((0.001, 0.5, 1.0), [1, 2, 3, 4], 1.25),
            _histogram((0.001, 0.5, 1.0), [600_000, 500_000, 0, 7], 1e9),
            _histogram((1e-05, 2.5), [0, 0, 0], math.nan),
            _histogram((), [5], 0.5),
            _histogram((-1.0, 0.0, 1.0), [1, 1, 1, 1], -0.5),
        ],
    )
    writer.histograms(BARE, [()], [_histogram((0.1, 1.0), [3, 0, 2], 7.0)])
    writer.value(UNLABELLED, 42)
    writer.samples(EMPTY, [], [])


@pytest.mark.parametrize("fmt", list(Format))
def test_awkward_families_match_prometheus_client(fmt: Format) -> None:
    """Escaping (labels and help), NaN/Inf, -0, exponents, negative buckets, empty families."""
    assert reference(awkward, fmt) == render(awkward, fmt, LabelCache())


@pytest.mark.parametrize("fmt", list(Format))
def test_a_changed_bucket_layout_is_rendered_anew(fmt: Format) -> None:
    """The same series with new bounds (a stream's lag_buckets reloaded) gets new lines."""
    cache = LabelCache()
    layouts = [(0.1, 1.0), (0.1, 1.0, 10.0), (0.5,), (0.1, 1.0)]
    for bounds in layouts:
        hist = _histogram(bounds, list(range(1, len(bounds) + 2)), 3.5)

        def write(writer: Writer, hist: Histogram = hist) -> None:
            writer.histograms(HIST, [("s",)], [hist])

        assert reference(write, fmt) == render(write, fmt, cache)


@pytest.mark.parametrize("fmt", list(Format))
def test_a_histogram_is_rendered_anew_when_anything_changed(fmt: Format) -> None:
    """A series' last text is reused only for the same counts and the same sum's text."""
    cache = LabelCache()
    steps = [
        ([1, 2, 3], 11.5),
        ([1, 2, 3], 11.5),
        ([1, 2, 3], 1.5),  # a sum whose text ends the previous one's
        ([1, 3, 2], 1.5),  # the same count, other buckets
        ([1, 3, 2], 0.0),
        ([1, 3, 2], -0.0),  # equal to 0.0, written otherwise
        ([1, 3, 2], math.nan),
        ([1, 3, 2], math.nan),
        ([999_999, 0, 1], 2e6),  # past the fast template
        ([0, 0, 0], 0.0),
    ]
    for counts, total in steps:
        hist = _histogram((0.5, 1.0), counts, total)

        def write(writer: Writer, hist: Histogram = hist) -> None:
            writer.histograms(HIST, [("s",), ("t",)], [hist, _histogram((0.5,), [1, 1], 9.0)])

        assert reference(write, fmt) == render(write, fmt, cache)


def test_families_check_their_names() -> None:
    """Names the formats would escape or rename are refused where the family is declared."""
    for bad in ("has-dash", "9lives", "colon:name", "", "demo_total"):
        with pytest.raises(ValueError, match="name"):
            Family.counter(bad, "x", "label")
    for label in ("le", "bad-label", "__reserved", ""):
        with pytest.raises(ValueError, match="label"):
            Family.histogram("demo_hist", "x", label)


# -- the daemon's own families -------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(Format))
def test_a_large_store_renders_as_prometheus_client_does(fmt: Format) -> None:
    """200 probes of every kind, 500 streams, SLOs, recommendations, maintenance: same bytes."""
    store, info = big_store()
    frozen = frozen_of(store, info)
    probed = frozen.probed
    with no_collections():
        body = render(probed.write, fmt, LabelCache())
        assert reference(probed.write, fmt) == body
    assert 40_000 < body.count(b"\n")


@pytest.mark.parametrize("accept", FAST + FALLBACK)
def test_every_accept_header_gets_prometheus_clients_bytes(accept: str) -> None:
    """The body and content type prometheus_client's negotiation would give, for any Accept."""
    store, info = big_store(40, 60)
    frozen = frozen_of(store, info)
    chosen = negotiate(accept)
    encoder, content_type = exposition.choose_encoder(accept)
    assert content_type == chosen.content_type
    assert (accept in FAST) == (chosen.format is not None)
    body = frozen.expose(chosen)
    assert stable(encoder(frozen)) == stable(body)
    assert body.endswith(b"# EOF\n") == content_type.startswith("application/openmetrics-text")
    assert stable(body) == stable(gzip.decompress(frozen.expose(chosen, gzip=True)))


GZIP_WHEELS = ("x86_64", "aarch64", "AMD64", "arm64")
"""The machines pyproject.toml installs ISA-L's wheel on (``isal``'s marker)."""


def test_gzip_is_isa_l_where_its_wheel_installs() -> None:
    """A scrape's gzip costs 1.3 ms of CPU with ISA-L against 6.5 with zlib at level 1, for
    the same size (2.5 MB of OpenMetrics, 157 kB either way: ``bench/scrape_stall.py``)."""
    if platform.machine() not in GZIP_WHEELS:
        pytest.skip(f"no ISA-L wheel for {platform.machine()}: zlib")
    assert "isal" == exposition_module.GZIP_BACKEND


@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_either_gzip_gives_back_the_body(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISA-L or zlib (a machine without ISA-L's wheel): a gzip member any reader reads, with
    no timestamp in it (the same body zips to the same bytes)."""
    deflate = pytest.importorskip("isal.isal_zlib").compress if backend == "isal" else zlib.compress
    monkeypatch.setattr(exposition_module, "_deflate", deflate)
    store, info = big_store(40, 60)
    body = frozen_of(store, info).expose(negotiate(PROMETHEUS_2))
    zipped = compress(body)
    assert gzip.decompress(zipped) == body
    assert b"\x1f\x8b\x08" == zipped[:3]  # gzip, deflate
    assert b"\0\0\0\0" == zipped[4:8]  # no timestamp
    assert zipped == compress(body)
    assert len(zipped) < len(body) / 10


def test_the_cache_follows_reloads_and_forgets_what_went() -> None:
    """Probes removed or changed, streams re-registered with other buckets: still the same
    bytes as prometheus_client, and the cache holds only the series of the last scrape."""
    store, info = big_store(60, 80)
    registry = build_registry(store, info)

    def check() -> str:
        frozen = registry.frozen()
        probed = frozen.probed
        for fmt in Format:
            with no_collections():
                assert reference(probed.write, fmt) == render(probed.write, fmt, registry.labels)
        return frozen.expose(negotiate("")).decode()

    check()
    full = len(registry.labels)
    for i in range(0, 60, 2):
        store.forget(f"probe_{i}")
    store.register("probe_1", "login", "elsewhere")  # kind and target changed: a fresh state
    store.register_stream("stream_3", "feed_9", 2, (0.5, 5.0))
    store.forget_stream("stream_4")
    store.register("probe_new", "http", 'odd "target"\n')
    text = check()
    assert 'probe="probe_0"' not in text
    assert 'stream="stream_4"' not in text
    assert 'probed_probe_info{kind="login",probe="probe_1",target="elsewhere"} 1.0' in text
    assert 'probed_delivery_lag_seconds_bucket{le="5.0",stream="stream_3"} 0.0' in text
    assert 'target="odd \\"target\\"\\n"' in text
    assert len(registry.labels) < full
    store.register("probe_0", "http", "target_0")  # back again
    assert 'probe="probe_0"' in check()


def test_an_empty_store_and_a_fresh_daemon() -> None:
    """Nothing configured, nothing evaluated: the headers and daemon-wide series only."""
    frozen = frozen_of(ResultStore(), DaemonInfo())
    for fmt in Format:
        with no_collections():
            assert reference(frozen.probed.write, fmt) == render(
                frozen.probed.write, fmt, LabelCache()
            )


def test_concurrent_scrapes_render_the_same() -> None:
    """Two worker threads exposing at once share the label cache and agree with the reference."""
    store, info = big_store(50, 100)
    registry = build_registry(store, info)
    frozen = registry.frozen()
    expected = stable(generate_latest(frozen))
    bodies: list[bytes] = []

    def scrape() -> None:
        for _ in range(3):
            bodies.append(frozen.expose(negotiate("")))

    threads = [threading.Thread(target=scrape) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 9 == len(bodies)
    assert all(expected == stable(body) for body in bodies)


async def test_promtool_finds_nothing_in_the_fast_text() -> None:
    """``promtool check metrics`` on the fast text of the large store: no complaint."""
    store, info = big_store()
    frozen = frozen_of(store, info)
    body = frozen.expose(negotiate(""))
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(body), 60)
    assert (0, b"", b"") == (proc.returncode, out, err)


# -- over HTTP -----------------------------------------------------------------------------


async def _get(
    base: str, accept: str | None = None, encoding: str = "identity"
) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of ``GET /metrics`` (nothing decompressed on the way)."""
    headers = {"Accept-Encoding": encoding}
    if accept is not None:
        headers["Accept"] = accept
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(f"{base}/metrics", headers=headers) as resp,
    ):
        assert 200 == resp.status
        return dict(resp.headers), await resp.read()


async def test_the_server_gzips_when_asked(serve_app: ServeApp) -> None:
    """Plain without Accept-Encoding: gzip, gzip with it; both say the same."""
    store, info = big_store(30, 50)
    state = ServerState(store, build_registry(store, info), info=info)
    base = await serve_app(create_app(state))
    plain_headers, plain = await _get(base)
    zipped_headers, zipped = await _get(base, encoding="gzip, deflate")
    assert "Content-Encoding" not in plain_headers
    assert "gzip" == zipped_headers["Content-Encoding"]
    assert "text/plain; version=0.0.4; charset=utf-8" == zipped_headers["Content-Type"]
    assert len(zipped) < len(plain) / 5

    def fixed(body: bytes) -> list[str]:  # the stream ages move between two scrapes
        return [line for line in stable(body) if not line.startswith("probed_stream_last_")]

    assert fixed(plain) == fixed(gzip.decompress(zipped))
    om_headers, om = await _get(base, PROMETHEUS_2, "gzip")
    assert om_headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert gzip.decompress(om).endswith(b"# EOF\n")


async def test_a_live_daemon_answers_plain_gzip_and_openmetrics(
    tmp_path: Path, serve_app: ServeApp
) -> None:
    """GET /metrics of a running daemon: plain, gzip (the same series), and OpenMetrics."""
    target = await serve_app(app_of(("/health", health)))
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[targets.app]
base_url = "{target}"

[[probes]]
name = "health"
kind = "http"
target = "app"
path = "/health"
interval = "100ms"
timeout = "90ms"
"""
    )
    async with live_daemon(path) as (_, _task, base):
        for _ in range(100):
            _, plain = await _get(base)
            if b'probe_success{probe="health"} 1.0' in plain:
                break
            await asyncio.sleep(0.05)
        headers, zipped = await _get(base, encoding="gzip")
        assert "gzip" == headers["Content-Encoding"]
        unzipped = gzip.decompress(zipped)

        def series(body: bytes) -> list[str]:
            return [line.rpartition(" ")[0] for line in body.decode().splitlines()]

        assert series(plain) == series(unzipped)
        assert b'probe_success{probe="health"} 1.0' in unzipped
        headers, om = await _get(base, PROMETHEUS_2)
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.endswith(b"# EOF\n")
        assert b"# TYPE probed_probe_runs counter\n" in om
        assert b"# TYPE probed_probe_runs_total counter\n" in plain
    for body in (plain, unzipped):
        proc = await asyncio.create_subprocess_exec(
            promtool(), "check", "metrics", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(body), 30)
        assert (0, b"", b"") == (proc.returncode, out, err)


@pytest.mark.parametrize("thresholds", [(700, 10, 10), THRESHOLDS], ids=["interpreter", "daemon"])
def test_a_histogram_series_cached_lines_leave_one_object_for_full_collections(
    thresholds: tuple[int, int, int] | None,
) -> None:
    """A soak's full collection walked 1,206 series' lines with 10,854 references: each
    series' prefixes and last counts are kept where a young collection untracks them,
    so the series is one object to walk, whatever its buckets. Under the interpreter's
    thresholds and the daemon's, collections running on their own while the cache fills."""
    before = gc.get_threshold()
    gc.set_threshold(*(thresholds or before))
    try:
        store, info = big_store(40, 60)
        frozen = frozen_of(store, info)
        cache = LabelCache()
        for _ in range(2):
            render(frozen.probed.write, Format.TEXT, cache)
    finally:
        gc.set_threshold(*before)
    gc.collect(1)  # what a young collection leaves (dicts are untracked only by full ones)
    series = [lines for family in cache._histograms.values() for lines in family.values()]
    assert len(series) > 200
    walked = [
        obj
        for lines in series
        for obj in (lines, *gc.get_referents(lines))
        if gc.is_tracked(obj) and not isinstance(obj, type)
    ]
    assert len(series) == len(walked)

    def tracked() -> list[object]:
        return [
            obj
            for lines in cache._samples.values()
            for obj in gc.get_referents(lines)
            if gc.is_tracked(obj) and not isinstance(obj, type | dict)
        ]

    # a gauge or counter family: its series' keys in one tuple (of tuples of str) and
    # nothing else tracked; its prefixes dict is untracked by the first full collection,
    # as nothing tracked goes into it. A collection untracks the keys tuple once it finds
    # the inner tuples untracked; one that examined it before them and was of the middle
    # generation moves it to the old one still tracked, and the next full collection
    # untracks it there: at most one object per family until then.
    keys = {id(lines.keys) for lines in cache._samples.values()}
    assert [] == [obj for obj in tracked() if id(obj) not in keys]
    gc.collect()
    assert [] == tracked()


def test_the_copy_of_a_large_store_lets_the_loop_turn() -> None:
    """Copying 200 probes and 500 streams for a scrape took 4.7-7 ms on the loop in one go
    (``bench/scrape_stall.py``): it hands the loop back after every 25 of them, and what it
    copies renders the same bytes as the copy in one go."""
    store, info = big_store()
    registry = build_registry(store, info)
    whole = registry.frozen()

    async def sliced() -> tuple[FrozenRegistry, int]:
        work = asyncio.create_task(in_slices(registry.frozen_steps(), 0.0))
        turns = 0
        while not work.done():
            turns += 1
            await asyncio.sleep(0)
        return await work, turns

    frozen, turns = asyncio.run(sliced())
    assert turns >= (200 + 500) // 25
    text = negotiate("")
    got, expected = stable(frozen.expose(text)), stable(whole.expose(text))
    assert len(got) == len(expected)
    for line, same in zip(got, expected, strict=True):
        if "_age_seconds{" in line:  # read at each copy's own time
            series, age = line.rsplit(" ", 1)
            assert series == same.rsplit(" ", 1)[0]
            assert 0 <= float(age) - float(same.rsplit(" ", 1)[1]) < 5
        else:
            assert line == same
