"""``kind = "fixture"``: post a fixed input, hash the canonical JSON answer, compare.

The answer (or its ``select`` sub-part) is serialised canonically — sorted keys,
no whitespace, UTF-8, no NaN — and its SHA-256 compared with
``expected_sha256``. ``canonical_sha256`` computes the same hash for the CLI.

Reasons this kind reports itself: ``status``, ``rate_limited``, ``oversize``,
``invalid_json``, ``json_mismatch`` (``select`` path missing),
``output_mismatch``, ``redirected_to_other_origin``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from probed.config import FixtureProbe
from probed.http.session import PhaseTimer
from probed.probes.base import ProbeContext
from probed.probes.exchange import check_status, lookup, parse_json, send
from probed.results import ProbeResult, Reason

__all__ = ["canonical_json", "canonical_sha256", "probe_fixture"]


def canonical_json(obj: Any) -> bytes:
    """``obj`` as canonical JSON bytes: sorted keys, no whitespace, UTF-8; ``ValueError`` on NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def canonical_sha256(obj: Any) -> str:
    """The SHA-256 hex digest of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


async def probe_fixture(ctx: ProbeContext, spec: FixtureProbe) -> ProbeResult:
    """Send the fixture input and compare the canonical hash of the JSON answer."""
    timer = PhaseTimer()
    resp = await send(
        ctx,
        spec,
        method=spec.method,
        path=spec.path,
        headers=ctx.headers(spec, {"Content-Type": spec.content_type}),
        data=spec.input_bytes(),
        timer=timer,
    )
    check_status(resp, spec.expect_status)
    output = parse_json(resp)
    if spec.select is not None:
        try:
            output = lookup(output, spec.select)
        except LookupError:
            raise resp.failure(Reason.JSON_MISMATCH, f"path {spec.select!r} missing") from None
    got = canonical_sha256(output)
    if got != spec.expected_sha256:
        raise resp.failure(
            Reason.OUTPUT_MISMATCH,
            f"output sha256 {got[:12]}..., expected {spec.expected_sha256[:12]}...",
            output_sha256=got,
        )
    return ProbeResult.ok(
        status_code=resp.status, phases=resp.phases, content_length=len(resp.body)
    )
