"""Alerting: the real Alertmanager, webhooks, state filter, dead receivers, resends, retries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import socket
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from conftest import free_port
from polling import until

import probed.alerting as alerting_module
from probed.alerting import ALERT_NAME, AlertPusher
from probed.config import AlertingConfig
from probed.shard import Shard
from probed.signals import Evidence, Recommendation, RecommendationState, Severity

if TYPE_CHECKING:
    from conftest import ServeApp

ACTIVE = RecommendationState.ACTIVE


def rfc3339(ts: float) -> str:
    """Format like the module does (milliseconds, ``Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> float:
    """Parse an RFC 3339 timestamp as Alertmanager or the pusher writes it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rec(
    scenario: str = "sse_degraded",
    *,
    state: RecommendationState = ACTIVE,
    severity: Severity = Severity.SEV2,
    since: float | None = None,
    value: float = 7.5,
) -> Recommendation:
    """A recommendation built directly, as the engine would."""
    since = time.time() - 120 if since is None else since
    return Recommendation(
        scenario=scenario,
        title="SSE down or delayed",
        severity=severity,
        state=state,
        since=since,
        evidence=(
            Evidence(
                signal="stream events lag_p95",
                value=value,
                threshold=5.0,
                since=since - 60,
                detail="3 of 3 streams",
            ),
        ),
        actions=("Switch clients to polling mode.", "Reduce event fan-out."),
        rollback="Restore SSE once P95 delay < 5s.",
        runbook_url="https://runbooks.test/sse",
        summary="Events arrive late; switch clients to polling.",
    )


def make_pusher(
    *,
    alertmanager_urls: list[str] | None = None,
    webhook_urls: list[str] | None = None,
    resend_interval: str = "1m",
    timeout: str = "1s",
    max_attempts: int = 3,
    session: aiohttp.ClientSession | None = None,
    shard: Shard | None = None,
) -> AlertPusher:
    """An ``AlertPusher`` for location ``eu-1`` with millisecond retry backoff."""
    cfg = AlertingConfig(
        alertmanager_urls=alertmanager_urls or [],
        webhook_urls=webhook_urls or [],
        resend_interval=resend_interval,
        timeout=timeout,
    )
    pusher = AlertPusher(
        cfg,
        location="eu-1",
        shard=shard,
        session=session,
        generator_url="http://probed.test:10115/status",
    )
    pusher.max_attempts = max_attempts
    pusher.backoff_initial = 0.01
    pusher.backoff_max = 0.02
    return pusher


@contextlib.asynccontextmanager
async def running(pusher: AlertPusher) -> AsyncIterator[AlertPusher]:
    """Start ``pusher`` in a TaskGroup and a session of the test's for the block, then stop it."""
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
        pusher.start(tg, session)
        try:
            yield pusher
        finally:
            pusher.stop()


@dataclasses.dataclass(frozen=True)
class Post:
    """One request a receiver got."""

    path: str
    content_type: str
    body: Any
    at: float


class Receiver:
    """A loopback HTTP receiver that records every POST and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.posts: list[Post] = []
        self.statuses = list(statuses or [])
        self._event = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request; answer the next scripted status (200 once they run out)."""
        body = await request.json()
        self.posts.append(Post(request.path, request.content_type, body, time.monotonic()))
        self._event.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="" if status < 400 else f"scripted {status}")

    async def wait_for(self, count: int, within: float = 2.0) -> list[Post]:
        """Wait until at least ``count`` requests arrived (fail after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.posts) < count:
                self._event.clear()
                await self._event.wait()
        return self.posts


StartReceiver = Callable[..., Awaitable[tuple[Receiver, str]]]


@pytest.fixture
def start_receiver(serve_app: ServeApp) -> StartReceiver:
    """Start a ``Receiver`` on loopback: ``receiver, base_url = await start_receiver()``."""

    async def start(
        statuses: list[int] | None = None, receiver: Receiver | None = None
    ) -> tuple[Receiver, str]:
        receiver = receiver or Receiver(statuses)
        app = web.Application()
        app.router.add_post("/{tail:.*}", receiver.handle)
        return receiver, await serve_app(app)

    return start


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A URL whose port accepts TCP connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def refused_url() -> str:
    """A URL on a loopback port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def _metric(text: str, series: str) -> float:
    """The value of one exposition-format series (0 if absent)."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# -- the real Alertmanager ---------------------------------------------------------------


async def test_real_alertmanager_shows_then_resolves_the_alert(alertmanager: str) -> None:
    """Alertmanager lists the alert with our labels and annotations, and drops it once resolved."""
    pusher = make_pusher(alertmanager_urls=[alertmanager])
    since = time.time() - 120
    resolved_series = 'alertmanager_alerts_received_total{status="resolved",version="v2"}'
    async with aiohttp.ClientSession() as client:

        async def get_alerts() -> list[dict[str, Any]]:
            async with client.get(f"{alertmanager}/api/v2/alerts") as resp:
                assert 200 == resp.status
                alerts: list[dict[str, Any]] = await resp.json()
                return alerts

        async def metrics() -> str:
            async with client.get(f"{alertmanager}/metrics") as resp:
                return await resp.text()

        async with running(pusher):
            now = time.time()
            pusher.update([rec(since=since)], now)
            async with asyncio.timeout(3):
                while not (alerts := await get_alerts()) or (
                    alerts[0]["status"]["state"] != "active"
                ):
                    await asyncio.sleep(0.05)

            assert 1 == len(alerts)
            alert = alerts[0]
            assert {
                "alertname": ALERT_NAME,
                "scenario": "sse_degraded",
                "severity": "Sev-2",
                "routing": "page",
                "location": "eu-1",
            } == alert["labels"]
            assert {
                "summary": "Events arrive late; switch clients to polling.",
                "title": "SSE down or delayed",
                "actions": "1. Switch clients to polling mode.\n2. Reduce event fan-out.",
                "rollback": "Restore SSE once P95 delay < 5s.",
                "runbook_url": "https://runbooks.test/sse",
                "evidence": (
                    f"stream events lag_p95: value=7.5 threshold=5 since={rfc3339(since - 60)}"
                    " (3 of 3 streams)"
                ),
            } == alert["annotations"]
            assert "active" == alert["status"]["state"]
            assert since == pytest.approx(parse_ts(alert["startsAt"]), abs=0.002)
            assert now + 4 * 60 == pytest.approx(parse_ts(alert["endsAt"]), abs=1)
            assert "http://probed.test:10115/status" == alert["generatorURL"]
            assert 0 == _metric(await metrics(), resolved_series)

            pusher.update([], time.time())
            await pusher.flush(3.0)

            assert [] == await get_alerts()
            assert 1 == _metric(await metrics(), resolved_series)
            assert Counter({"alertmanager": 2}) == pusher.sent
            assert Counter() == pusher.failed


# -- the wire format -----------------------------------------------------------------------


async def test_alertmanager_request_shape(start_receiver: StartReceiver) -> None:
    """Alertmanager gets a JSON list of alerts at ``{url}/api/v2/alerts``, keeping a path prefix."""
    am, base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[f"{base}/prefix/"], resend_interval="30s")
    since = time.time() - 120
    now = time.time()
    async with running(pusher):
        pusher.update([rec(since=since)], now)
        [post] = await am.wait_for(1)

    assert "/prefix/api/v2/alerts" == post.path
    assert "application/json" == post.content_type
    [alert] = post.body
    assert {"labels", "annotations", "startsAt", "endsAt", "generatorURL"} == set(alert)
    assert rfc3339(since) == alert["startsAt"]
    assert now + 120 == pytest.approx(parse_ts(alert["endsAt"]), abs=0.1)
    assert "Sev-2" == alert["labels"]["severity"]


@pytest.mark.parametrize(
    ("shard", "labels"), [(None, {}), (Shard(0, 1), {}), (Shard(1, 3), {"shard": "1/3"})]
)
async def test_a_shard_labels_its_alerts(
    start_receiver: StartReceiver, shard: Shard | None, labels: dict[str, str]
) -> None:
    """Each shard of a location judges its own probes: its alerts say which shard it is, so
    Alertmanager never merges two shards' alerts of one scenario (nor resolves one by the
    other's resolution); one shard adds nothing."""
    am, base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[base], shard=shard)
    async with running(pusher):
        pusher.update([rec()], time.time())
        [post] = await am.wait_for(1)
    [alert] = post.body
    assert {
        "alertname": ALERT_NAME,
        "scenario": "sse_degraded",
        "severity": "Sev-2",
        "routing": "page",
        "location": "eu-1",
        **labels,
    } == alert["labels"]


async def test_webhook_gets_firing_then_resolved(start_receiver: StartReceiver) -> None:
    """A webhook gets a firing document, none for an evidence-only change, then a resolved one."""
    hook, base = await start_receiver()
    pusher = make_pusher(webhook_urls=[f"{base}/hook"], resend_interval="100ms")
    since = time.time() - 120
    async with running(pusher):
        now = time.time()
        pusher.update([rec(since=since)], now)
        await hook.wait_for(1)
        pusher.update([rec(since=since, value=9.0)], now + 1)
        await asyncio.sleep(0.3)
        assert 1 == len(hook.posts)
        resolved_at = time.time()
        pusher.update([], resolved_at)
        first, second = await hook.wait_for(2)
        await asyncio.sleep(0.3)

    assert "/hook" == first.path
    assert "application/json" == first.content_type
    assert {"version": 1, "location": "eu-1", "status": "firing"} == {
        k: v for k, v in first.body.items() if k != "alerts"
    }
    [alert] = first.body["alerts"]
    assert "firing" == alert["status"]
    assert {
        "alertname": ALERT_NAME,
        "scenario": "sse_degraded",
        "severity": "Sev-2",
        "routing": "page",
        "location": "eu-1",
    } == alert["labels"]
    assert (
        "1. Switch clients to polling mode.\n2. Reduce event fan-out."
        == (alert["annotations"]["actions"])
    )
    assert rfc3339(since) == alert["startsAt"]

    assert "resolved" == second.body["status"]
    [resolved] = second.body["alerts"]
    assert "resolved" == resolved["status"]
    assert rfc3339(resolved_at) == resolved["endsAt"]
    assert "value=9 " in resolved["annotations"]["evidence"]
    assert 2 == len(hook.posts)
    assert Counter({"webhook": 2}) == pusher.sent


@pytest.mark.parametrize(
    "state",
    [RecommendationState.PENDING, RecommendationState.INCONCLUSIVE, RecommendationState.RESOLVED],
)
async def test_only_active_recommendations_are_sent(
    start_receiver: StartReceiver, state: RecommendationState
) -> None:
    """Pending, inconclusive and resolved recommendations never reach any receiver."""
    am, am_base = await start_receiver()
    hook, hook_base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[am_base], webhook_urls=[hook_base])

    pusher.update([rec("login_degraded", state=state)], time.time())
    await pusher.flush(2.0)
    assert [] == am.posts
    assert [] == hook.posts

    pusher.update([rec("login_degraded", state=state), rec("sse_degraded")], time.time())
    await pusher.flush(2.0)
    am_alerts = [a["labels"]["scenario"] for p in am.posts for a in p.body]
    hook_alerts = [a["labels"]["scenario"] for p in hook.posts for a in p.body["alerts"]]
    assert ["sse_degraded"] == am_alerts
    assert ["sse_degraded"] == hook_alerts


async def test_active_scenario_turning_inconclusive_is_resolved(
    start_receiver: StartReceiver,
) -> None:
    """A scenario that goes from active to inconclusive is sent once more as resolved."""
    am, base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[base])
    pusher.update([rec()], time.time())
    await pusher.flush(2.0)
    ended = time.time()
    pusher.update([rec(state=RecommendationState.INCONCLUSIVE)], ended)
    await pusher.flush(2.0)
    pusher.update([rec(state=RecommendationState.INCONCLUSIVE)], ended + 1)
    await pusher.flush(2.0)

    assert 2 == len(am.posts)
    [resolved] = am.posts[1].body
    assert rfc3339(ended) == resolved["endsAt"]


# -- resends and changes ---------------------------------------------------------------------


class SlowFirstReceiver(Receiver):
    """A receiver whose first request arrives ``delay`` seconds late (a busy machine, a slow
    first connection): it is recorded that much later than the pusher sent it."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle(self, request: web.Request) -> web.Response:
        if not self.posts:
            await asyncio.sleep(self.delay)
        return await super().handle(request)


@pytest.mark.parametrize("first_late", [0.0, 0.09])
async def test_alertmanager_resent_every_interval_webhook_only_on_change(
    start_receiver: StartReceiver, first_late: float
) -> None:
    """Alertmanager gets the active alert every resend_interval; the webhook gets it once.

    The resends keep to the pusher's schedule whatever one delivery's delay (a stall of the
    loop or a slow first connection moves one arrival, not the schedule): the typical gap is
    the interval, none is a storm's, none is a missed resend's."""
    am, am_base = await start_receiver(receiver=SlowFirstReceiver(first_late))
    hook, hook_base = await start_receiver()
    pusher = make_pusher(
        alertmanager_urls=[am_base], webhook_urls=[hook_base], resend_interval="200ms"
    )
    async with running(pusher):
        pusher.update([rec()], time.time())
        await asyncio.sleep(1.05)

    assert 1 == len(hook.posts)
    assert 5 <= len(am.posts) <= 7
    gaps = [b.at - a.at for a, b in itertools.pairwise(am.posts)]
    assert 0.18 < statistics.median(gaps) < 0.25, gaps
    assert all(0.05 < gap < 0.4 for gap in gaps), gaps
    ends = [parse_ts(p.body[0]["endsAt"]) for p in am.posts]
    assert ends == sorted(ends)


async def test_change_is_sent_at_once(start_receiver: StartReceiver) -> None:
    """A severity change goes out immediately; an evidence-value change waits for the resend."""
    am, base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[base], resend_interval="1m")
    since = time.time() - 120
    async with running(pusher):
        pusher.update([rec(since=since)], time.time())
        await am.wait_for(1)
        pusher.update([rec(since=since, severity=Severity.SEV1)], time.time())
        await am.wait_for(2, within=0.5)
        pusher.update([rec(since=since, severity=Severity.SEV1, value=8.0)], time.time())
        await asyncio.sleep(0.3)

    assert 2 == len(am.posts)
    assert "Sev-1" == am.posts[1].body[0]["labels"]["severity"]


# -- delivery failures ---------------------------------------------------------------------


async def test_dead_receivers_delay_nobody(
    start_receiver: StartReceiver, black_hole: str, refused_url: str
) -> None:
    """With a black hole and a refused port configured, update() returns at once, the live
    receiver gets the alert, failures are counted and nothing escapes."""
    hook, base = await start_receiver()
    pusher = make_pusher(
        alertmanager_urls=[black_hole, refused_url],
        webhook_urls=[black_hole, refused_url, base],
        timeout="300ms",
        max_attempts=2,
    )
    async with running(pusher):
        started = time.perf_counter()
        pusher.update([rec()], time.time())
        assert time.perf_counter() - started < 0.01
        await hook.wait_for(1, within=0.25)  # before the black hole's first timeout
        await until(lambda: sum(pusher.failed.values()) == 4, within=3)
        assert pusher.tasks
        assert not any(task.done() for task in pusher.tasks)

    assert Counter({"alertmanager": 2, "webhook": 2}) == pusher.failed
    assert Counter({"webhook": 1}) == pusher.sent


async def test_failure_log_names_host_only(refused_url: str) -> None:
    """``alert_delivery_failed`` names host and port, never credentials or the query string."""
    port = refused_url.rsplit(":", 1)[1]
    url = f"http://probed:hunter22@127.0.0.1:{port}/hook?token=s3cr3t-value"
    pusher = make_pusher(webhook_urls=[url], max_attempts=2)
    with structlog.testing.capture_logs() as logs:
        pusher.update([rec()], time.time())
        await pusher.flush(2.0)

    [failed] = [e for e in logs if e["event"] == "alert_delivery_failed"]
    assert f"127.0.0.1:{port}" == failed["target"]
    assert "webhook" == failed["target_kind"]
    assert "connect_refused" == failed["error_code"]
    assert 2 == failed["attempts"]
    assert "s3cr3t" not in repr(logs)
    assert "hunter22" not in repr(logs)


async def test_5xx_is_retried_4xx_is_not(start_receiver: StartReceiver) -> None:
    """Server errors are retried until success; a client error fails at once."""
    flaky, flaky_base = await start_receiver(statuses=[503, 502])
    rejecting, rejecting_base = await start_receiver(statuses=[400] * 5)
    pusher = make_pusher(webhook_urls=[flaky_base, rejecting_base], max_attempts=3)
    pusher.update([rec()], time.time())
    await pusher.flush(2.0)

    assert 3 == len(flaky.posts)
    assert 1 == len(rejecting.posts)
    assert Counter({"webhook": 1}) == pusher.sent
    assert Counter({"webhook": 1}) == pusher.failed


async def test_flush_retries_a_webhook_that_missed_the_latest_state(
    start_receiver: StartReceiver,
) -> None:
    """A webhook whose delivery was rejected gets the current state at the next flush."""
    hook, base = await start_receiver(statuses=[400])
    pusher = make_pusher(webhook_urls=[base])
    pusher.update([rec()], time.time())
    await pusher.flush(2.0)
    await pusher.flush(2.0)
    await pusher.flush(2.0)

    assert 2 == len(hook.posts)
    assert Counter({"webhook": 1}) == pusher.failed
    assert Counter({"webhook": 1}) == pusher.sent


async def test_failed_resolution_goes_out_with_the_next_resend(
    start_receiver: StartReceiver,
) -> None:
    """A resolution whose retries all fail is sent again at the next resend, then forgotten."""
    am, base = await start_receiver(statuses=[200, 503, 503])
    pusher = make_pusher(alertmanager_urls=[base], resend_interval="200ms", max_attempts=2)
    async with running(pusher):
        pusher.update([rec()], time.time())
        await am.wait_for(1)
        ended = time.time()
        pusher.update([], ended)
        await am.wait_for(4)
        await asyncio.sleep(0.5)

    assert 4 == len(am.posts)
    [resolved] = am.posts[3].body
    assert rfc3339(ended) == resolved["endsAt"]
    assert Counter({"alertmanager": 2}) == pusher.sent
    assert Counter({"alertmanager": 1}) == pusher.failed


async def test_loop_survives_unexpected_errors(
    start_receiver: StartReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in a sender is logged and the sender carries on."""
    hook, base = await start_receiver()
    pusher = make_pusher(webhook_urls=[base], resend_interval="100ms")
    original = pusher._post
    calls = 0

    async def post_once_broken(*args: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return await original(*args)

    monkeypatch.setattr(pusher, "_post", post_once_broken)
    with structlog.testing.capture_logs() as logs:
        async with running(pusher):
            pusher.update([rec()], time.time())
            await hook.wait_for(1)
            assert pusher.tasks
            assert not any(task.done() for task in pusher.tasks)

    assert ["alert_loop_error"] == [e["event"] for e in logs if e["log_level"] == "error"]


# -- lifecycle -----------------------------------------------------------------------------


async def test_no_task_leaks_after_stop(start_receiver: StartReceiver, black_hole: str) -> None:
    """stop() mid-delivery leaves no sender task behind and the caller's session open."""
    hook, base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[black_hole], webhook_urls=[base], timeout="5s")

    def sender_tasks() -> set[str]:
        return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("alert:")}

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
        pusher.start(tg, session)
        pusher.update([rec()], time.time())
        await hook.wait_for(1)
        hole_port = black_hole.rsplit(":", 1)[1]
        assert {f"alert:alertmanager:127.0.0.1:{hole_port}", f"alert:webhook:{base[7:]}"} == (
            sender_tasks()
        )
        stopped = pusher.stop()
        await asyncio.wait(stopped)
        assert all(task.cancelled() for task in stopped)
        assert set() == sender_tasks()
        assert [] == pusher.tasks
        assert not session.closed
        pusher.start(tg, session)  # a stopped pusher starts again; a started one refuses
        with pytest.raises(RuntimeError, match="already called"):
            pusher.start(tg, session)
        assert 2 == len(pusher.tasks)
        pusher.stop()


async def test_given_session_is_left_open(start_receiver: StartReceiver) -> None:
    """A session passed in is used and not closed when the pusher stops."""
    hook, base = await start_receiver()
    async with aiohttp.ClientSession() as session:
        pusher = make_pusher(webhook_urls=[base], session=session)
        async with running(pusher):
            pusher.update([rec()], time.time())
            await hook.wait_for(1)
        assert not session.closed


async def test_apply_starts_new_targets_and_stops_removed_ones(
    start_receiver: StartReceiver,
) -> None:
    """After a reload the new webhook gets the current state at once and the old one nothing."""
    old, old_base = await start_receiver()
    new, new_base = await start_receiver()
    pusher = make_pusher(webhook_urls=[old_base])
    async with running(pusher):
        pusher.update([rec()], time.time())
        await old.wait_for(1)
        pusher.apply(AlertingConfig(webhook_urls=[new_base], resend_interval="1m", timeout="1s"))
        [firing] = await new.wait_for(1)
        pusher.update([], time.time())
        await new.wait_for(2)
        await asyncio.sleep(0.1)

    assert "firing" == firing.body["status"]
    assert "resolved" == new.posts[1].body["status"]
    assert 1 == len(old.posts)


def test_all_is_sorted_and_honest() -> None:
    """``__all__`` is sorted the way ruff sorts it and names only what the module defines."""
    exported = list(alerting_module.__all__)
    assert ["ALERTMANAGER", "ALERT_NAME", "WEBHOOK", "AlertPusher"] == exported
    assert all(hasattr(alerting_module, name) for name in exported)


async def test_alert_times_follow_the_system_clock_after_a_step(
    start_receiver: StartReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a +1 h step of the system clock, startsAt and endsAt are on the stepped clock."""
    am, base = await start_receiver()
    pusher = make_pusher(alertmanager_urls=[base], resend_interval="30s")
    since = time.time() - 120
    now = time.time()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)
    async with running(pusher):
        pusher.update([rec(since=since)], now)
        [post] = await am.wait_for(1)
    [alert] = post.body
    assert since + 3600 == pytest.approx(parse_ts(alert["startsAt"]), abs=0.01)
    assert now + 3600 + 120 == pytest.approx(parse_ts(alert["endsAt"]), abs=0.1)


def test_the_evidence_annotation_of_500_streams_is_bounded() -> None:
    """A recommendation resting on 500 lagging streams: the annotation lists the first 20
    pieces of evidence and how many more there are (all 500 made 65 kB sent to the
    receivers at every resend)."""
    base = rec()
    one = base.evidence[0]
    many = dataclasses.replace(
        base,
        evidence=tuple(
            dataclasses.replace(one, signal=f"stream s{i:03d} lag_p95") for i in range(500)
        ),
    )
    evidence = make_pusher()._alert(many, time.time())["annotations"]["evidence"]
    lines = evidence.splitlines()
    assert [line.split(":")[0] for line in lines[:20]] == [
        f"stream s{i:03d} lag_p95" for i in range(20)
    ]
    assert lines[20:] == ["and 480 more (the status document lists them all)"]
