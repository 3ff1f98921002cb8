"""The reflect probe kind against the demo target's outbox, SSE stream and WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import structlog
from conftest import sse_feed
from probeservers import STREAM, with_hub

from probed.config import ReflectProbe
from probed.daemon import log_run
from probed.demo import DemoTarget, Faults
from probed.probes import PROBERS
from probed.probes.base import run_probe
from probed.probes.reflect import DUPLICATE_WINDOW, next_seq, probe_reflect, render_body
from probed.results import ProbeRun, Reason

if TYPE_CHECKING:
    from conftest import MakeProbeContext, StreamDown

SSE_OBSERVATIONS = {
    "transport", "inject_seconds", "arrivals", "delivery_lag_seconds", "duplicate_watch_seconds",
}  # fmt: skip
TIMED = {"delivery_lag_seconds", "duplicate_watch_seconds"}
"""Observations of a run that saw its event."""
WS_OBSERVATIONS = SSE_OBSERVATIONS | {"ws_connect_seconds"}


def _spec(**fields: Any) -> ReflectProbe:
    values: dict[str, Any] = {
        "name": "r",
        "target": "t",
        "stream": STREAM,
        "deadline": "300ms",
        "lost_after": "800ms",
        "timeout": "2s",
        "interval": "5s",
    }
    values.update(fields)
    return ReflectProbe(**values)


def _ws_spec(**fields: Any) -> ReflectProbe:
    fields = {"transport": "websocket", "stream": None, "ws_path": "/api/v1/events/ws", **fields}
    return _spec(**fields)


async def _next_seq_of_demo(target: DemoTarget) -> int:
    """The demo's next outbox ``seq`` (posts one event to find out)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{target.base_url}/api/v1/outbox", json={"type": "check"}) as resp,
    ):
        assert 202 == resp.status
        seq: int = (await resp.json())["seq"]
        return seq


def _lag(run: ProbeRun) -> float:
    lag = run.result.observations["delivery_lag_seconds"]
    assert isinstance(lag, float)
    return lag


# (faults, expected success, expected reason, expected copies, lag bounds or None)
OUTCOMES = {
    "ok": (Faults(stream_delay=0.05), True, None, 1, (0.05, 0.3)),
    "late": (Faults(stream_delay=0.45), False, Reason.LATE, 1, (0.45, 0.8)),
    "lost": (Faults(drop_ratio=1.0), False, Reason.LOST, 0, None),
    "duplicated": (Faults(duplicate_ratio=1.0), False, Reason.DUPLICATED, 2, (0.0, 0.3)),
}


@pytest.mark.parametrize("case", list(OUTCOMES))
async def test_reflect_over_sse(
    case: str, demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """Over SSE each stream fault gives its outcome; the lag is the stream delay, when any."""
    faults, success, reason, copies, lag_bounds = OUTCOMES[case]
    await demo_target.set_faults(faults)
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    spec = _spec()

    async with sse_feed(hub, demo_target.base_url):
        run = await run_probe(PROBERS[spec.kind], ctx, spec)

    assert (success, reason) == (run.result.success, run.result.reason), run.result.detail
    assert 202 == run.result.status_code
    assert copies == run.result.observations["arrivals"]
    assert "sse" == run.result.observations["transport"]
    if lag_bounds is None:
        assert SSE_OBSERVATIONS - TIMED == set(run.result.observations)
        assert run.duration >= 0.8
    else:
        assert SSE_OBSERVATIONS == set(run.result.observations)
        low, high = lag_bounds
        assert low <= _lag(run) < high


async def test_reflect_log_line_separates_delivery_lag_from_duplicate_watch(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """The run's probe_run line has the delivery lag and the duplicate watch as their own fields.

    latency_ms is the whole run (inject, delivery, then the duplicate watch); a 50 ms
    delivery must not read as a 300 ms one.
    """
    await demo_target.set_faults(Faults(stream_delay=0.05))
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    spec = _spec()

    async with sse_feed(hub, demo_target.base_url):
        run = await run_probe(PROBERS[spec.kind], ctx, spec)
    with structlog.testing.capture_logs() as logs:
        log_run(run)

    (line,) = [e for e in logs if e["event"] == "probe_run"]
    assert "success" == line["status"], run.result.detail
    assert round(_lag(run) * 1000, 3) == line["delivery_lag_ms"]
    assert 50 <= line["delivery_lag_ms"] < 250
    assert DUPLICATE_WINDOW * 1000 <= line["duplicate_watch_ms"] < DUPLICATE_WINDOW * 1000 + 50
    assert line["latency_ms"] >= line["delivery_lag_ms"] + line["duplicate_watch_ms"]


async def test_reflect_stream_down_injects_nothing(
    stream_down: StreamDown, demo_target: DemoTarget
) -> None:
    """A watcher that is down (or absent) fails the run ``stream_down`` before any inject."""
    spec = _spec()

    run = await run_probe(PROBERS[spec.kind], stream_down.ctx, spec)

    assert Reason.STREAM_DOWN == run.result.reason
    assert stream_down.detail in run.result.detail
    assert 1 == await _next_seq_of_demo(demo_target)


async def test_reflect_without_hub_is_stream_down(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """A context without a hub cannot watch a stream: ``stream_down``, nothing injected."""
    spec = _spec()

    run = await run_probe(PROBERS[spec.kind], make_probe_context(demo_target.base_url), spec)

    assert Reason.STREAM_DOWN == run.result.reason
    assert 1 == await _next_seq_of_demo(demo_target)


async def test_reflect_stream_dropping_while_waiting_is_stream_down(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """Nothing arrived and the watcher went down meanwhile: ``stream_down``, not ``lost``."""
    await demo_target.set_faults(Faults(drop_ratio=1.0))
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    spec = _spec()
    up = [True]

    async with sse_feed(hub, demo_target.base_url, connected=lambda: up[0]):
        asyncio.get_running_loop().call_later(0.2, up.__setitem__, 0, False)
        run = await run_probe(PROBERS[spec.kind], ctx, spec)

    assert Reason.STREAM_DOWN == run.result.reason
    assert "not connected" in run.result.detail


async def test_reflect_inject_rejected_is_status(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """An inject answered 503 fails ``status`` with the inject time kept; no wait follows."""
    await demo_target.set_faults(Faults(error_ratio=1.0, paths=["/api/v1/outbox"]))
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    spec = _spec()

    async with sse_feed(hub, demo_target.base_url):
        run = await run_probe(PROBERS[spec.kind], ctx, spec)

    assert (Reason.STATUS, 503) == (run.result.reason, run.result.status_code)
    assert {"transport", "inject_seconds"} == set(run.result.observations)
    assert run.duration < 0.5


@pytest.mark.parametrize("case", list(OUTCOMES))
async def test_reflect_over_websocket(
    case: str, demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """Over a per-run WebSocket each stream fault gives its outcome, and no reader task is left."""
    faults, success, reason, copies, lag_bounds = OUTCOMES[case]
    await demo_target.set_faults(faults)
    spec = _ws_spec()

    run = await run_probe(PROBERS[spec.kind], make_probe_context(demo_target.base_url), spec)

    assert (success, reason) == (run.result.success, run.result.reason), run.result.detail
    assert copies == run.result.observations["arrivals"]
    assert "websocket" == run.result.observations["transport"]
    if lag_bounds is None:
        assert WS_OBSERVATIONS - TIMED == set(run.result.observations)
    else:
        assert WS_OBSERVATIONS == set(run.result.observations)
        low, high = lag_bounds
        assert low <= _lag(run) < high
    assert [] == [t for t in asyncio.all_tasks() if t.get_name() == "probed-reflect-ws"]


async def test_reflect_websocket_closed_by_server_is_stream_down(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """The server ending the socket before the event arrived fails ``stream_down`` at once."""
    await demo_target.set_faults(Faults(drop_ratio=1.0, disconnect_every=0.2))
    spec = _ws_spec()

    run = await run_probe(PROBERS[spec.kind], make_probe_context(demo_target.base_url), spec)

    assert Reason.STREAM_DOWN == run.result.reason
    assert "closed by the server" in run.result.detail
    assert run.duration < 0.7


async def test_reflect_websocket_handshake_rejected_is_stream_down(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """A ``ws_path`` that does not upgrade fails ``stream_down`` with its status; no inject."""
    spec = _ws_spec(ws_path="/health")

    run = await run_probe(PROBERS[spec.kind], make_probe_context(demo_target.base_url), spec)

    assert (Reason.STREAM_DOWN, 200) == (run.result.reason, run.result.status_code)
    assert "ws_http_200" == run.result.error_code
    assert 1 == await _next_seq_of_demo(demo_target)


async def test_reflect_websocket_cancelled_leaves_nothing_behind(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """Cancelling a run mid-wait propagates and closes the socket and its reader task."""
    await demo_target.set_faults(Faults(drop_ratio=1.0))
    spec = _ws_spec()
    task = asyncio.create_task(probe_reflect(make_probe_context(demo_target.base_url), spec))
    await asyncio.sleep(0.2)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert [] == [t for t in asyncio.all_tasks() if t.get_name() == "probed-reflect-ws"]
    for _ in range(50):  # the demo notices the close on its next loop turns
        if 0 == demo_target._bus.subscriber_count:
            break
        await asyncio.sleep(0.01)
    assert 0 == demo_target._bus.subscriber_count


async def test_reflect_event_carries_nonce_seq_and_sent_at(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """The body is the template filled in: a fresh nonce, the next seq, an RFC 3339 time."""
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    seen: list[Any] = []
    hub.subscribe(STREAM, lambda received: seen.append(received.json()))
    spec = _spec(name="r_payload")

    async with sse_feed(hub, demo_target.base_url):
        runs = [await run_probe(PROBERS[spec.kind], ctx, spec) for _ in range(2)]

    assert [True, True] == [run.success for run in runs]
    payloads = [event["payload"] for event in seen]
    assert [1, 2] == [p["seq"] for p in payloads]
    assert ["probe.reflect", "probe.reflect"] == [p["type"] for p in payloads]
    assert 24 == len(payloads[0]["nonce"])
    assert payloads[0]["nonce"] != payloads[1]["nonce"]
    assert payloads[0]["sent_at"].endswith("Z")
    assert all(
        p["nonce"] not in json.dumps(dict(r.result.observations))
        for p, r in zip(payloads, runs, strict=True)
    )


def test_render_body_replaces_placeholders_not_json_braces() -> None:
    """Placeholders are replaced as plain text, so JSON braces in the template stay intact."""
    template = '{"n": "{nonce}", "s": {seq}, "t": "{sent_at}", "x": {"y": "{z}"}}'

    body = render_body(template, nonce="ab12", seq=7, sent_at="2026-01-02T03:04:05.678Z")

    assert '{"n": "ab12", "s": 7, "t": "2026-01-02T03:04:05.678Z", "x": {"y": "{z}"}}' == body


def test_next_seq_counts_per_probe() -> None:
    """Each probe name has its own sequence, increasing by one per call."""
    first_a = next_seq("seq_a")

    assert [first_a + 1, 1, first_a + 2] == [
        next_seq("seq_a"),
        next_seq("seq_b"),
        next_seq("seq_a"),
    ]
