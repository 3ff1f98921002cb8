"""The fixture probe kind against a real loopback server, run through ``run_probe``."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from probeservers import SEEN, Outcome, fails, ok, recording_app, run

from probed.config import FixtureProbe
from probed.probes.base import ProbeContext
from probed.probes.fixture import canonical_json, canonical_sha256
from probed.results import Reason

if TYPE_CHECKING:
    from conftest import NetworkFault

INPUT = b'{"items": [3, 1, 2]}\n'
ANSWER = '{"result": {"sorted": [1, 2, 3], "count": 3, "name": "\u00e9"}, "meta": {"engine": "v2"}}'
# the same document: other key order, whitespace and a \u escape
REORDERED = (
    '{\n  "meta": {"engine": "v2"},\n'
    '  "result": {"name": "\\u00e9", "count": 3, "sorted": [1,2,3]}\n}'
)
RESULT_SHA = hashlib.sha256(b'{"count":3,"name":"\xc3\xa9","sorted":[1,2,3]}').hexdigest()
DOCUMENT_SHA = hashlib.sha256(
    b'{"meta":{"engine":"v2"},"result":{"count":3,"name":"\xc3\xa9","sorted":[1,2,3]}}'
).hexdigest()


async def _render(request: web.Request) -> web.Response:
    variant = request.match_info.get("variant", "")
    answer = ANSWER
    if variant == "reordered":
        answer = REORDERED
    elif variant == "html":
        return web.Response(text="<html>oops</html>", content_type="text/html")
    elif variant == "nan":
        answer = '{"result": NaN}'
    elif variant == "empty":
        answer = ""
    elif variant == "503":
        return web.Response(status=503)
    elif variant == "429":
        return web.Response(status=429, headers={"Retry-After": "5"})
    elif variant == "slow":
        await asyncio.sleep(0.15)
    elif variant == "hang":
        await asyncio.sleep(1.5)
    return web.Response(text=answer, content_type="application/json")


def fixture_spec(**fields: Any) -> FixtureProbe:
    """A fixture probe posting ``INPUT`` to /render, checking ``result``."""
    spec = FixtureProbe(
        **{
            "name": "render",
            "target": "t",
            "path": "/render",
            "input_file": "render-input.json",
            "select": "result",
            "expected_sha256": RESULT_SHA,
            "timeout": "1s",
            **fields,
        }
    )
    spec._input = INPUT
    return spec


@pytest.fixture
async def app() -> web.Application:
    """The purpose-built fixture target: /render answers one way per variant."""
    return recording_app(
        web.route("*", "/render", _render),
        web.route("*", "/render/{variant}", _render),
    )


FAULTS = [
    ok("ok"),
    ok("ok_reordered", path="/render/reordered"),
    ok("ok_whole_document", select=None, expected_sha256=DOCUMENT_SHA),
    fails("output_mismatch", Reason.OUTPUT_MISMATCH, "output_mismatch", expected_sha256="0" * 64),
    fails("output_mismatch_without_select", Reason.OUTPUT_MISMATCH, "output_mismatch", select=None),
    fails("select_missing", Reason.JSON_MISMATCH, "json_mismatch", select="result.missing"),
    fails(
        "select_index_out_of_range", Reason.JSON_MISMATCH, "json_mismatch", select="result.sorted.7"
    ),
    fails("invalid_json", Reason.INVALID_JSON, "invalid_json", path="/render/html"),
    fails("nan_is_not_json", Reason.INVALID_JSON, "invalid_json", path="/render/nan"),
    fails("empty_body", Reason.INVALID_JSON, "invalid_json", path="/render/empty"),
    fails("status", Reason.STATUS, "http_503", path="/render/503"),
    fails("rate_limited", Reason.RATE_LIMITED, "http_429", path="/render/429"),
    fails("oversize", Reason.OVERSIZE, "oversize", max_body_size=16),
    fails("slow", Reason.SLOW, "slow", path="/render/slow", latency_threshold="50ms"),
    fails("timeout", Reason.TIMEOUT, "timeout", path="/render/hang", timeout="100ms"),
]


@pytest.mark.parametrize(("fields", "expected"), FAULTS)
async def test_fixture_faults(ctx: ProbeContext, fields: dict[str, Any], expected: Outcome) -> None:
    """Each fixture fault yields the expected success, reason and error code."""
    result = (await run(ctx, fixture_spec(**fields))).result

    assert expected == Outcome.of(result), result.detail


async def test_network_faults(network_fault: NetworkFault) -> None:
    """A fixture run reports network-level faults with the runner's reasons."""
    result = (await run(network_fault.ctx, fixture_spec())).result

    assert (False, network_fault.reason) == (result.success, result.reason), result.detail


async def test_output_mismatch_detail_names_both_hashes(ctx: ProbeContext) -> None:
    """An output mismatch gives the first 12 hex digits of the hash got and the one expected."""
    result = (await run(ctx, fixture_spec(expected_sha256="ab" * 32))).result

    assert f"output sha256 {RESULT_SHA[:12]}..., expected abababababab..." == result.detail
    assert RESULT_SHA == result.observations["output_sha256"]


async def test_select_missing_detail(ctx: ProbeContext) -> None:
    """A missing ``select`` path is named in the detail."""
    result = (await run(ctx, fixture_spec(select="result.missing"))).result

    assert "path 'result.missing' missing" == result.detail


@pytest.mark.parametrize(
    ("method", "content_type"),
    [("POST", "application/json"), ("PUT", "application/x-ndjson")],
)
async def test_input_sent_with_content_type(
    app: web.Application, ctx: ProbeContext, method: str, content_type: str
) -> None:
    """The input file's bytes are sent unchanged with the configured method and Content-Type."""
    probe_run = await run(ctx, fixture_spec(method=method, content_type=content_type))

    assert probe_run.success, probe_run.result.detail
    (seen,) = app[SEEN]
    assert (method, content_type, INPUT) == (seen.method, seen.content_type, seen.body)
    assert seen.traceparent is not None
    assert probe_run.trace_id == seen.traceparent.split("-")[1]


async def test_ok_reports_status_phases_and_length(ctx: ProbeContext) -> None:
    """A successful run reports the status, the four phases and the body length."""
    probe_run = await run(ctx, fixture_spec())
    result = probe_run.result

    assert (200, {"content_length": len(ANSWER.encode())}) == (
        result.status_code,
        dict(result.observations),
    )
    assert {"resolve", "connect", "processing", "transfer"} == set(result.phases)
    assert sum(result.phases.values()) <= probe_run.duration


def test_canonical_json_is_sorted_compact_utf8() -> None:
    """Canonical JSON sorts keys, drops whitespace and keeps non-ASCII as UTF-8."""
    obj = {"b": [1, 2.5, None], "a": "\u00e9", "c": {"z": True, "y": False}}

    assert b'{"a":"\xc3\xa9","b":[1,2.5,null],"c":{"y":false,"z":true}}' == canonical_json(obj)


def test_canonical_sha256_known_vector() -> None:
    """``canonical_sha256`` is the SHA-256 of the canonical bytes (pinned value)."""
    obj = {"b": [1, 2.5, None], "a": "\u00e9", "c": {"z": True, "y": False}}

    assert "273e18e0d87c2243159594871e239684e99462eaa778bd4b9a834a6ba6e97cb3" == (
        canonical_sha256(obj)
    )


def test_canonical_sha256_ignores_key_order() -> None:
    """Documents differing only in key order hash the same."""
    assert canonical_sha256({"a": 1, "b": {"c": 2, "d": 3}}) == canonical_sha256(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )


def test_canonical_json_rejects_nan() -> None:
    """NaN has no JSON form, so it cannot be hashed canonically."""
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("nan")})
