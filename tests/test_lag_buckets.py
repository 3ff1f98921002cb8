"""Delivery-lag histogram buckets: the sub-millisecond default, per-stream ``lag_buckets``,
their validation, SLO thresholds on them, and what /metrics and the rules make of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from aiohttp import web
from binaries import promtool
from livedaemon import live_daemon, sample, watch_metrics
from test_watcher import open_stream, sse_server

from probed.buckets import DELIVERY_LAG_BUCKETS
from probed.config import load_config
from probed.errors import ConfigError
from probed.rules import error_ratio_expr
from probed.store import Histogram

#: The boundaries before sub-millisecond buckets came: every SLO threshold they allowed
#: must stay allowed.
OLD_BOUNDARIES = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0,
    120.0,
)  # fmt: skip


def stream_config(tmp_path: Path, stream_keys: str = "", slo: str = "", url: str = "") -> Path:
    """A config with one kind = "sse" probe 'events' (plus ``stream_keys``) and ``slo``."""
    path = tmp_path / "probes.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n\n'
        f'[targets.app]\nbase_url = "{url or "http://127.0.0.1:1"}"\n\n'
        '[[probes]]\nname = "events"\nkind = "sse"\ntarget = "app"\npath = "/sse"\n'
        f"{stream_keys}\n{slo}"
    )
    return path


def problems(path: Path) -> list[str]:
    """The problems ``load_config`` reports for ``path``, without the file name."""
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return [p.removeprefix(f"{path}:") for p in info.value.problems]


def lag_slo(threshold: str) -> str:
    """A delivery_lag SLO on stream 'events'."""
    return (
        '[[slos]]\nname = "lag"\nsli = "delivery_lag"\nstream = "events"\n'
        f'threshold = "{threshold}"\nobjective = 0.99\n'
    )


# -- the default ------------------------------------------------------------------------------


def test_default_runs_from_sub_millisecond_to_minutes_in_few_buckets() -> None:
    """Finest bound below 1 ms, coarsest at least a minute, at most 25 series per stream."""
    buckets = DELIVERY_LAG_BUCKETS
    assert buckets[0] <= 0.0005
    assert buckets[-1] >= 60.0
    assert len(buckets) + 1 <= 25  # + the +Inf bucket
    assert list(buckets) == sorted(set(buckets))
    assert set(OLD_BOUNDARIES) <= set(buckets)


@pytest.mark.parametrize(
    ("fast", "slower"),
    [(0.0003, 0.0013), (0.0004, 0.0034), (0.0013, 0.0043), (0.0008, 0.0018)],
)
def test_a_millisecond_of_overhead_changes_the_bucket(fast: float, slower: float) -> None:
    """A 1 ms overhead, or a 3 ms regression, on a sub-millisecond bus lands in another bucket."""
    before, after = Histogram(DELIVERY_LAG_BUCKETS), Histogram(DELIVERY_LAG_BUCKETS)
    before.observe(fast)
    after.observe(slower)
    assert before.cumulative() != after.cumulative()


# -- lag_buckets in the config ----------------------------------------------------------------


def test_lag_buckets_default_and_configured(tmp_path: Path) -> None:
    """Without the key a stream has the default; with it, exactly the listed bounds."""
    default = load_config(stream_config(tmp_path), environ={}).streams[0]
    assert DELIVERY_LAG_BUCKETS == default.lag_buckets
    keys = 'lag_buckets = ["500ms", "1ms", "2.5ms", "1s", "1m"]'
    with pytest.raises(ConfigError):
        load_config(stream_config(tmp_path, keys), environ={})
    keys = 'lag_buckets = ["0.1ms", "1ms", "2.5ms", "1s", "1m"]'
    tuned = load_config(stream_config(tmp_path, keys), environ={}).streams[0]
    assert (0.0001, 0.001, 0.0025, 1.0, 60.0) == tuned.lag_buckets


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            '["1ms", "5ms", "2ms"]',
            "lag_buckets must be strictly increasing: 2ms follows 5ms",
            id="unsorted",
        ),
        pytest.param(
            '["1ms", "1ms"]', "lag_buckets must be strictly increasing: 1ms follows 1ms", id="twice"
        ),
        pytest.param("[]", "lag_buckets must list at least one bucket", id="empty"),
        pytest.param(
            json.dumps([f"{i}ms" for i in range(1, 42)]),
            "lag_buckets has 41 buckets, at most 40 are allowed "
            "(each bucket is a series per stream)",
            id="too_many",
        ),
        pytest.param(f'["1ms", "{"9" * 400}s"]', "lag_buckets must be finite", id="infinite"),
    ],
)
def test_bad_lag_buckets_are_one_line_naming_probe_and_key(
    value: str, message: str, tmp_path: Path
) -> None:
    path = stream_config(tmp_path, f"lag_buckets = {value}")
    assert [f"13: probe 'events' (probes[0]) key 'lag_buckets': {message}"] == problems(path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["1ms", 5]', "a bare number is ambiguous: write the unit, e.g. '5s' or '5ms'"),
        ('["1ms", "0ms"]', "duration '0ms' must be greater than zero"),
    ],
)
def test_each_bucket_is_a_positive_duration(value: str, message: str, tmp_path: Path) -> None:
    path = stream_config(tmp_path, f"lag_buckets = {value}")
    [problem] = problems(path)
    assert problem.startswith("13: probe 'events' (probes[0]) key 'lag_buckets.")
    assert problem.endswith(message)


# -- SLO thresholds ---------------------------------------------------------------------------


def test_delivery_lag_threshold_must_be_one_of_its_streams_buckets(tmp_path: Path) -> None:
    """2 ms is no default boundary: refused for a default stream, fine once the stream lists it."""
    [problem] = problems(stream_config(tmp_path, slo=lag_slo("2ms")))
    assert problem.startswith(
        "18: slo 'lag' (slos[0]) key 'threshold': threshold 2ms is not one of stream 'events''s "
        "lag_buckets (so Prometheus rules could not compute it); use one of: 0.25ms, 0.5ms, 1ms,"
    )
    assert problem.endswith(", 2m; or add it to the stream's lag_buckets")
    keys = 'lag_buckets = ["1ms", "2ms", "4ms"]'
    config = load_config(stream_config(tmp_path, keys, lag_slo("2ms")), environ={})
    assert 'le="0.002"' in error_ratio_expr(config.slos[0], "5m")
    [problem] = problems(stream_config(tmp_path, keys, lag_slo("5s")))
    assert "threshold 5s is not one of stream 'events''s lag_buckets" in problem
    assert "use one of: 1ms, 2ms, 4ms; or add it" in problem


def test_default_stream_keeps_the_old_thresholds(tmp_path: Path) -> None:
    """Every threshold the old buckets allowed still loads for a stream with the default."""
    for bound in OLD_BOUNDARIES:
        text = f"{bound}s"
        config = load_config(stream_config(tmp_path, slo=lag_slo(text)), environ={})
        assert bound == config.slos[0].threshold


# -- /metrics ---------------------------------------------------------------------------------


async def test_live_scrape_has_each_streams_buckets_and_promtool_is_clean(
    tmp_path: Path,
) -> None:
    """A live daemon exposes the default sub-ms buckets of one stream and the configured ones of
    another; a 3 ms lag lands above 2.5 ms in both; promtool accepts the scrape."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        with contextlib.suppress(ConnectionError):  # the daemon stops reading at the end
            for seq in range(1, 1000):
                stamp = time.time() - 0.003  # epoch seconds as a float: sub-ms precise
                data = f'{{"seq": {seq}, "enqueued_at": {stamp}}}'
                await resp.write(f"id: {seq}\ndata: {data}\n\n".encode())
                await asyncio.sleep(0.02)
        return resp

    async with sse_server(handler) as url:
        path = stream_config(tmp_path, 'sequence_field = "seq"', url=url)
        text = path.read_text() + (
            '\n[[probes]]\nname = "tuned"\nkind = "sse"\ntarget = "app"\npath = "/sse"\n'
            'lag_buckets = ["1ms", "2ms", "4ms", "1s"]\n'
        )
        path.write_text(text)
        async with live_daemon(path) as (_, task, base):
            metric = "probed_delivery_lag_seconds_count"
            scrape, _ = await watch_metrics(
                base,
                task,
                0.1,
                lambda t: (
                    sample(t, metric, stream="events") >= 5
                    and sample(t, metric, stream="tuned") >= 5
                ),
            )
    bucket = "probed_delivery_lag_seconds_bucket"
    tuned = [
        line.split('le="')[1].split('"')[0]
        for line in scrape.splitlines()
        if line.startswith(bucket) and 'stream="tuned"' in line
    ]
    assert ["0.001", "0.002", "0.004", "1.0", "+Inf"] == tuned
    assert 0 == sample(scrape, bucket, stream="tuned", le="0.002")
    assert sample(scrape, metric, stream="tuned") == sample(
        scrape, bucket, stream="tuned", le="1.0"
    )
    assert 0 == sample(scrape, bucket, stream="events", le="0.0025")
    assert f'{bucket}{{le="0.00025",stream="events"}}' in scrape
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(scrape.encode()), 30)
    assert (0, b"") == (proc.returncode, out)
