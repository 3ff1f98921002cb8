"""The import probe kind against the demo target's import jobs, by polling and by stream."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from conftest import sse_feed
from multidict import CIMultiDict, CIMultiDictProxy
from probeservers import STREAM, with_hub

from probed.config import ImportProbe, TargetConfig
from probed.demo import DemoTarget, Faults
from probed.errors import ProbeFailure
from probed.probes import PROBERS
from probed.probes.base import ProbeContext, run_probe
from probed.probes.exchange import Response
from probed.probes.import_job import _follow, _Tracker
from probed.results import ProbeRun, Reason
from probed.stream.decoder import Event
from probed.stream.hub import Hub, ReceivedEvent

if TYPE_CHECKING:
    from conftest import MakeProbeContext, ServeApp, StreamDown

SOURCES = ["poll", "stream"]


def _spec(source: str = "poll", **fields: Any) -> ImportProbe:
    values: dict[str, Any] = {
        "name": "imp",
        "target": "t",
        "interval": "10s",
        "timeout": "2500ms",
        "deadline": "2s",
        "stall_after": "300ms",
        "poll_interval": "20ms",
        "progress_source": source,
        "stream": STREAM if source == "stream" else None,
    }
    values.update(fields)
    return ImportProbe(**values)


async def _run_against_demo(
    source: str,
    target: DemoTarget,
    make_probe_context: MakeProbeContext,
    spec: ImportProbe,
) -> ProbeRun:
    ctx, hub = with_hub(make_probe_context(target.base_url))
    if source == "poll":
        return await run_probe(PROBERS[spec.kind], ctx, spec)
    async with sse_feed(hub, target.base_url):
        return await run_probe(PROBERS[spec.kind], ctx, spec)


# case → (faults, spec fields, expected reason (None: success), last progress seen (None: any))
OUTCOMES: dict[str, tuple[Faults, dict[str, Any], Reason | None, float | None]] = {
    "ok": (Faults(import_duration=0.3), {}, None, 100.0),
    "stalled": (Faults(import_duration=0.3, import_stall_at=99), {}, Reason.STALLED, 99.0),
    "regressed": (Faults(import_duration=1.0, import_regress=True), {}, Reason.REGRESSED, 30.0),
    "deadline": (
        Faults(import_duration=3.0),
        {"deadline": "500ms", "stall_after": "2s"},
        Reason.DEADLINE,
        None,
    ),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", list(OUTCOMES))
async def test_import_outcomes(
    case: str, source: str, demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """Each import fault gives its reason, by polling and by stream, keeping the observations."""
    faults, fields, reason, progress = OUTCOMES[case]
    await demo_target.set_faults(faults)
    spec = _spec(source, **fields)

    run = await _run_against_demo(source, demo_target, make_probe_context, spec)

    result = run.result
    assert (reason is None, reason) == (result.success, result.reason), result.detail
    assert 202 == result.status_code
    observations = result.observations
    count = observations["polls" if source == "poll" else "progress_events"]
    assert isinstance(count, int)
    assert count >= 1
    assert isinstance(observations["start_seconds"], float)
    if progress is not None:
        assert progress == observations["progress"]
    if reason is None:
        first, done = observations["first_progress_seconds"], observations["completion_seconds"]
        assert isinstance(first, float)
        assert isinstance(done, float)
        assert 0 < first < done < 1.0
        assert done >= 0.3
    else:
        assert "completion_seconds" not in observations
    assert "imp_1" not in json.dumps(dict(observations))


async def test_import_stream_sees_every_step(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """By stream the probe sees each of the job's ten progress events, in order."""
    await demo_target.set_faults(Faults(import_duration=0.3))
    spec = _spec("stream")

    run = await _run_against_demo("stream", demo_target, make_probe_context, spec)

    assert run.success, run.result.detail
    assert 10 == run.result.observations["progress_events"]


async def test_import_deadline_reports_progress_so_far(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """A slow job fails ``deadline`` at the deadline, with the progress reached by then."""
    await demo_target.set_faults(Faults(import_duration=3.0))
    spec = _spec(deadline="500ms", stall_after="2s")

    run = await _run_against_demo("poll", demo_target, make_probe_context, spec)

    assert Reason.DEADLINE == run.result.reason
    # uvloop's timers count whole milliseconds and may fire up to one early by the
    # monotonic clock the duration is taken from (0.49985 s seen in CI)
    assert 0.5 - 0.001 <= run.duration < 0.8
    assert 10.0 == run.result.observations["progress"]
    assert isinstance(run.result.observations["first_progress_seconds"], float)


async def test_import_stream_down_starts_nothing(
    stream_down: StreamDown, demo_target: DemoTarget
) -> None:
    """By stream, a watcher that is down (or absent) fails ``stream_down`` before any job starts."""
    spec = _spec("stream")

    run = await run_probe(PROBERS[spec.kind], stream_down.ctx, spec)

    assert Reason.STREAM_DOWN == run.result.reason
    assert stream_down.detail in run.result.detail
    assert 0 == len(demo_target._imports)


async def test_import_stream_dropping_while_following_is_stream_down(
    demo_target: DemoTarget, make_probe_context: MakeProbeContext
) -> None:
    """A stall while the watcher is disconnected is ``stream_down``: progress may be missed."""
    await demo_target.set_faults(Faults(import_duration=0.3, import_stall_at=50))
    ctx, hub = with_hub(make_probe_context(demo_target.base_url))
    spec = _spec("stream")
    up = [True]

    async with sse_feed(hub, demo_target.base_url, connected=lambda: up[0]):
        asyncio.get_running_loop().call_later(0.2, up.__setitem__, 0, False)
        run = await run_probe(PROBERS[spec.kind], ctx, spec)

    assert Reason.STREAM_DOWN == run.result.reason
    assert 50.0 == run.result.observations["progress"]


# --- a purpose-built server for malformed answers -----------------------------------------

JOB_ANSWERS: dict[str, tuple[int, Any]] = {
    "ok": (202, {"id": "j1"}),
    "missing": (202, {"job": "j1"}),
    "null": (202, {"id": None}),
    "object": (202, {"id": {"n": 1}}),
    "empty": (202, {"id": ""}),
    "numeric": (202, {"id": 7}),
    "not_json": (202, "<html>"),
    "error": (500, {"error": "boom"}),
}


def _odd_app(progress: Any, status: int = 200) -> web.Application:
    async def start(request: web.Request) -> web.Response:
        code, body = JOB_ANSWERS[request.match_info["case"]]
        if isinstance(body, str):
            return web.Response(status=code, text=body, content_type="text/html")
        return web.json_response(body, status=code)

    async def job(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], **progress}, status=status)

    app = web.Application()
    app.router.add_post("/start/{case}", start)
    app.router.add_get("/jobs/{id}", job)
    return app


@pytest.mark.parametrize(
    ("case", "reason", "status"),
    [
        ("missing", Reason.JSON_MISMATCH, 202),
        ("null", Reason.JSON_MISMATCH, 202),
        ("object", Reason.JSON_MISMATCH, 202),
        ("empty", Reason.JSON_MISMATCH, 202),
        ("not_json", Reason.INVALID_JSON, 202),
        ("error", Reason.STATUS, 500),
    ],
)
async def test_import_start_answer_problems(
    case: str,
    reason: Reason,
    status: int,
    serve_app: ServeApp,
    make_probe_context: MakeProbeContext,
) -> None:
    """A start answer without a usable job id, or with a bad status, fails at once."""
    base_url = await serve_app(_odd_app({"progress": 100}))
    spec = _spec(path=f"/start/{case}", status_path="/jobs/{job_id}")

    run = await run_probe(PROBERS[spec.kind], make_probe_context(base_url), spec)

    assert (reason, status) == (run.result.reason, run.result.status_code)
    assert "polls" not in run.result.observations
    assert isinstance(run.result.observations["start_seconds"], float)


@pytest.mark.parametrize(
    ("progress", "status", "reason", "detail"),
    [
        ({"progress": 100}, 200, None, ""),
        ({"percent": 100}, 200, Reason.JSON_MISMATCH, "status poll: no progress at 'progress'"),
        ({"progress": "100"}, 200, Reason.JSON_MISMATCH, "is not a number"),
        ({"progress": True}, 200, Reason.JSON_MISMATCH, "is not a number"),
        ({"progress": 100}, 404, Reason.STATUS, "status poll: status 404"),
    ],
    ids=["ok", "missing", "string", "bool", "not_found"],
)
async def test_import_status_answer_problems(
    progress: dict[str, Any],
    status: int,
    reason: Reason | None,
    detail: str,
    serve_app: ServeApp,
    make_probe_context: MakeProbeContext,
) -> None:
    """A status answer must be 200 with a number at ``progress_path``; else the run fails."""
    base_url = await serve_app(_odd_app(progress, status))
    spec = _spec(path="/start/numeric", status_path="/jobs/{job_id}")

    run = await run_probe(PROBERS[spec.kind], make_probe_context(base_url), spec)

    assert (reason is None, reason) == (run.success, run.result.reason), run.result.detail
    assert detail in run.result.detail
    assert 1 == run.result.observations["polls"]


async def test_import_stream_keeps_events_sent_before_the_start_answer(
    serve_app: ServeApp, make_probe_context: MakeProbeContext
) -> None:
    """Progress published before the job id is known still counts; other jobs' events do not."""
    hub = Hub()
    hub.register_stream(STREAM, lambda: True)

    def publish(job_id: str, progress: int, kind: str = "import.progress") -> None:
        data = {"type": kind, "payload": {"job_id": job_id, "progress": progress}}
        event = Event(data=json.dumps(data), event="message")
        hub.publish(ReceivedEvent(STREAM, event, time.monotonic(), time.time()))

    async def start(request: web.Request) -> web.Response:
        publish("other", 100)
        publish("j1", 40)
        publish("j1", 100, kind="something.else")
        asyncio.get_running_loop().call_later(0.05, publish, "other", 5)
        asyncio.get_running_loop().call_later(0.1, publish, "j1", 100)
        return web.json_response({"id": "j1"}, status=202)

    app = web.Application()
    app.router.add_post("/start", start)
    base_url = await serve_app(app)
    ctx = dataclasses.replace(make_probe_context(base_url), hub=hub)
    spec = _spec("stream", path="/start")

    run = await run_probe(PROBERS[spec.kind], ctx, spec)

    assert run.success, run.result.detail
    observations = run.result.observations
    assert 2 == observations["progress_events"]
    first, done = observations["first_progress_seconds"], observations["completion_seconds"]
    started = observations["start_seconds"]
    assert isinstance(first, float)
    assert isinstance(done, float)
    assert isinstance(started, float)
    assert first < started < done


class _ClockAheadLoop(asyncio.SelectorEventLoop):
    """A loop whose clock is 1 ms ahead of ``time.monotonic()``: its timers fire up to 1 ms
    early by that clock, as uvloop's (whole milliseconds) often do."""

    def time(self) -> float:
        return super().time() + 0.001


def test_a_deadline_that_fires_a_little_early_is_still_the_deadline() -> None:
    """The wait for progress ends at the deadline (before the stall limit): the failure is
    ``deadline``, even when the loop's timer fired a fraction of a millisecond before
    ``time.monotonic()`` reached it."""
    spec = _spec("poll", deadline="50ms", stall_after="2s")
    target = TargetConfig(base_url="http://127.0.0.1:9")
    ctx = ProbeContext(target=target, session=None, pooled_session=None)  # type: ignore[arg-type]
    start = Response(202, CIMultiDictProxy(CIMultiDict()), b"", {})

    async def never() -> tuple[float, float]:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    async def follow() -> ProbeFailure:
        tracker = _Tracker(ctx, spec, start, time.monotonic(), "job")
        with pytest.raises(ProbeFailure) as failed:
            await _follow(tracker, never, lambda: None)
        return failed.value

    for _ in range(5):
        with asyncio.Runner(loop_factory=_ClockAheadLoop) as runner:
            failure = runner.run(follow())
        assert Reason.DEADLINE == failure.reason, failure.detail
