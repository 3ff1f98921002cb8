"""``run_probe`` builds every run's result: a kind raises ``ProbeFailure`` and leaves the rest
to it (status code, phases, error code, the observations the run collected, redaction)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, cast

import pytest

from probed.config import HttpProbe
from probed.errors import ProbeFailure
from probed.probes.base import ProbeContext, run_probe
from probed.results import ProbeResult, Reason

if TYPE_CHECKING:
    from conftest import MakeProbeContext

PHASES = {"resolve": 0.001, "connect": 0.002, "processing": 0.003, "transfer": 0.004}


def spec(**fields: Any) -> HttpProbe:
    """A probe for the fake kinds below (they send nothing)."""
    return HttpProbe(**{"name": "fake", "target": "t", "timeout": "1s", **fields})


@pytest.fixture
def ctx(make_probe_context: MakeProbeContext) -> ProbeContext:
    """A context whose target is never contacted: the kinds here are fakes."""
    return make_probe_context("http://127.0.0.1:9")


async def test_an_escaping_failure_keeps_status_code_phases_and_error_code(
    ctx: ProbeContext,
) -> None:
    """A kind raising ``ProbeFailure`` without catching it gets the full failed result."""

    async def status_503(ctx: ProbeContext, spec: Any) -> ProbeResult:
        raise ProbeFailure(
            Reason.STATUS,
            "status 503, expected 200",
            status_code=503,
            phases=PHASES,
            error_code="http_503",
        )

    result = (await run_probe(status_503, ctx, spec())).result

    expected = (False, Reason.STATUS, "status 503, expected 200", 503, PHASES, "http_503")
    assert expected == (
        result.success,
        result.reason,
        result.detail,
        result.status_code,
        dict(result.phases),
        result.error_code,
    )


async def test_observations_reach_a_success(ctx: ProbeContext) -> None:
    """What the kind observed is added to the observations it returns."""

    async def fine(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.observe(login_seconds=0.5)
        return ProbeResult.ok(status_code=200, phases=PHASES, content_length=12)

    result = (await run_probe(fine, ctx, spec())).result

    assert (True, 200, PHASES) == (result.success, result.status_code, dict(result.phases))
    assert {"content_length": 12, "login_seconds": 0.5} == dict(result.observations)


async def test_observations_reach_an_escaping_failure(ctx: ProbeContext) -> None:
    """The run's observations follow the ones the failure carries itself."""

    async def rate_limited(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.observe(login_seconds=0.5)
        ctx.observe(follow_up_seconds=0.25)
        raise ProbeFailure(Reason.RATE_LIMITED, "429", status_code=429, retry_after=7.0)

    result = (await run_probe(rate_limited, ctx, spec())).result

    assert (Reason.RATE_LIMITED, 429) == (result.reason, result.status_code)
    expected = [("retry_after", 7.0), ("login_seconds", 0.5), ("follow_up_seconds", 0.25)]
    assert expected == list(result.observations.items())


async def test_the_context_wins_on_a_shared_name(ctx: ProbeContext) -> None:
    """An observation recorded on the context replaces one of the same name in the result."""

    async def twice(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.observe(arrivals=2)
        return ProbeResult.ok(arrivals=1)

    assert {"arrivals": 2} == dict((await run_probe(twice, ctx, spec())).result.observations)


async def test_observations_reach_a_timeout(ctx: ProbeContext) -> None:
    """A run cut short by its timeout keeps what it observed before."""

    async def hangs(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.observe(login_seconds=0.01)
        await asyncio.sleep(5)
        return ProbeResult.ok()

    result = (await run_probe(hangs, ctx, spec(timeout="50ms"))).result

    assert (Reason.TIMEOUT, {"login_seconds": 0.01}) == (result.reason, dict(result.observations))


async def test_observations_reach_an_unexpected_exception(ctx: ProbeContext) -> None:
    """A bug in a kind is ``internal_error`` and still shows what the run observed."""

    async def broken(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.observe(polls=3)
        raise RuntimeError("bug")

    result = (await run_probe(broken, ctx, spec())).result

    assert (Reason.INTERNAL_ERROR, {"polls": 3}) == (result.reason, dict(result.observations))


async def test_each_run_starts_with_empty_observations(ctx: ProbeContext) -> None:
    """Runs of the same base context do not see each other's observations or secrets."""
    seen: list[tuple[dict[str, Any], list[str]]] = []

    async def counts(ctx: ProbeContext, spec: Any) -> ProbeResult:
        seen.append((dict(ctx.observations), list(ctx.redacted)))
        ctx.observe(runs=1)
        ctx.redact("s3cret")
        return ProbeResult.ok()

    for _ in range(2):
        assert {"runs": 1} == dict((await run_probe(counts, ctx, spec())).result.observations)

    assert [({}, []), ({}, [])] == seen
    assert ({}, []) == (ctx.observations, ctx.redacted)


@pytest.mark.parametrize(
    "error",
    [
        ProbeFailure(Reason.JSON_MISMATCH, "path 'echo' is 'tok-1234', expected 'x'"),
        RuntimeError("bug near tok-1234"),
    ],
    ids=["probe_failure", "unexpected_exception"],
)
async def test_redacted_values_are_scrubbed_from_the_detail(
    ctx: ProbeContext, error: Exception
) -> None:
    """A value named with ``redact`` never reaches a result's detail, however the run failed."""

    async def leaks(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.redact("tok-1234", "", None)
        raise error

    result = (await run_probe(leaks, ctx, spec())).result

    assert "tok-1234" not in result.detail
    assert "[redacted]" in result.detail


async def test_the_longest_secret_is_scrubbed_first(ctx: ProbeContext) -> None:
    """A secret containing another is replaced whole, leaving no part of it."""

    async def leaks(ctx: ProbeContext, spec: Any) -> ProbeResult:
        ctx.redact("pw", "tok-pw-99")
        raise ProbeFailure(Reason.NO_TOKEN, "got tok-pw-99")

    assert "got [redacted]" == (await run_probe(leaks, ctx, spec())).result.detail


def test_redacted_values_stay_out_of_the_context_repr(ctx: ProbeContext) -> None:
    """A traceback or log that shows the context does not show what it redacts."""
    ctx.redact("tok-1234")

    assert "tok-1234" not in repr(ctx)


def test_a_runs_copy_keeps_every_field_but_its_own(ctx: ProbeContext) -> None:
    """``for_run`` names the fields it copies: a field added to the context later must be
    copied too, or this fails (every field here differs from its default). A run's own
    fields are new; ``prepared`` is shared."""
    original = dataclasses.replace(
        ctx,
        traceparent="00-old-01",
        trace_id="old",
        ssl_context=False,
        on_secret=lambda _value: None,
        hub=cast(Any, object()),  # not a Hub: only its identity is compared
        observations={"x": 1.0},
        redacted=["s3cret"],
        prepared={},
    )
    copy = original.for_run("00-new-01", "new")
    own = {"traceparent", "trace_id", "observations", "redacted"}
    for f in dataclasses.fields(ProbeContext):
        if f.name not in own:
            assert getattr(copy, f.name) is getattr(original, f.name), f.name
    assert ("00-new-01", "new") == (copy.traceparent, copy.trace_id)
    assert {} == copy.observations
    assert [] == copy.redacted
    assert copy.observations is not original.observations
    assert copy.redacted is not original.redacted
    assert {f.name for f in dataclasses.fields(ProbeContext)} >= own
