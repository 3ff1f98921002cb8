"""``kind = "http"``: one request, checked for status, body and JSON content.

Reasons this kind reports itself: ``status``, ``rate_limited``, ``oversize``,
``body_mismatch``, ``invalid_json``, ``json_mismatch``, ``redirected_to_other_origin``
(see ``probed.http.redirects``). Everything else
(timeout, slow, network errors) comes from the runner.
"""

from __future__ import annotations

import functools
import re

from probed.config import HttpProbe
from probed.http.session import PhaseTimer
from probed.probes.base import ProbeContext
from probed.probes.exchange import check_json, check_status, parse_json, send
from probed.results import ProbeResult, Reason

__all__ = ["probe_http"]


@functools.lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` once (the config validated it)."""
    return re.compile(pattern)


async def probe_http(ctx: ProbeContext, spec: HttpProbe) -> ProbeResult:
    """Request ``spec.path``; check status, ``body_regex``/``body_not_regex``, ``json_checks``."""
    timer = PhaseTimer()
    resp = await send(
        ctx,
        spec,
        method=spec.method,
        path=spec.path,
        headers=ctx.headers(spec),
        data=spec.body.encode() if spec.body is not None else None,
        json=spec.json_body,
        timer=timer,
    )
    check_status(resp, spec.expect_status)
    if spec.body_regex is not None or spec.body_not_regex is not None:
        text = resp.text()
        if spec.body_regex is not None and not _regex(spec.body_regex).search(text):
            raise resp.failure(
                Reason.BODY_MISMATCH, f"body does not match body_regex {spec.body_regex!r}"
            )
        if spec.body_not_regex is not None and (found := _regex(spec.body_not_regex).search(text)):
            raise resp.failure(
                Reason.BODY_MISMATCH,
                f"body matches body_not_regex {spec.body_not_regex!r} at offset {found.start()}",
            )
    if spec.json_checks:
        check_json(resp, parse_json(resp), spec.json_checks)
    return ProbeResult.ok(
        status_code=resp.status, phases=resp.phases, content_length=len(resp.body)
    )
