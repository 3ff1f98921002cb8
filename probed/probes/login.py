"""``kind = "login"``: post credentials, expect a token, optionally use it.

The token is looked for at ``token_path`` in the JSON body, then in the
``token_cookie`` Set-Cookie (whichever are configured, in that order). It is
handed to ``ctx.on_secret`` as soon as it is known so logs redact it, and it is
never put into a result's observations; neither is the password. Both are named
with ``ctx.redact``, so ``run_probe`` scrubs them from any result detail (a
follow-up check that quotes the token, an error that echoes the password).

Reasons this kind reports itself: ``status``, ``rate_limited``, ``oversize``,
``invalid_json``, ``no_token``, ``auth_failed`` (follow-up got 401/403),
``json_mismatch`` (follow-up ``json_checks``), ``redirected_to_other_origin`` (also
when a 307/308 would re-send the password to another origin).
"""

from __future__ import annotations

import time

from probed.config import LoginProbe
from probed.http.session import PhaseTimer
from probed.probes.base import ProbeContext
from probed.probes.exchange import (
    Response,
    check_json,
    check_status,
    lookup,
    parse_json,
    read_json,
    send,
)
from probed.results import ProbeResult, Reason

__all__ = ["probe_login"]


def _find_token(resp: Response, spec: LoginProbe) -> tuple[str, dict[str, str]]:
    """The token and the header that presents it; ``NO_TOKEN`` if neither source has one."""
    missing: list[str] = []
    if spec.token_path is not None:
        body, problem = read_json(resp)
        if problem:
            if spec.token_cookie is None:
                raise resp.failure(Reason.INVALID_JSON, problem)
            missing.append(f"body is not JSON (token_path {spec.token_path!r})")
        else:
            try:
                value = lookup(body, spec.token_path)
            except LookupError:
                missing.append(f"no JSON path {spec.token_path!r}")
            else:
                if isinstance(value, str) and value:
                    return value, {spec.token_header: f"{spec.token_prefix}{value}"}
                missing.append(f"JSON path {spec.token_path!r} is not a non-empty string")
    if spec.token_cookie is not None:
        cookie = resp.cookie(spec.token_cookie)
        if cookie:
            return cookie, {"Cookie": f"{spec.token_cookie}={cookie}"}
        missing.append(f"no cookie {spec.token_cookie!r}")
    raise resp.failure(Reason.NO_TOKEN, "no token: " + "; ".join(missing))


async def probe_login(ctx: ProbeContext, spec: LoginProbe) -> ProbeResult:
    """Log in, find the token, and (if configured) call ``follow_up`` with it."""
    timer = PhaseTimer()
    password = spec.password_value()
    ctx.redact(password)
    credentials = {spec.username_field: spec.username, spec.password_field: password}
    started = time.perf_counter()
    resp = await send(
        ctx,
        spec,
        method=spec.method,
        path=spec.path,
        headers=ctx.headers(spec),
        json=credentials if spec.encoding == "json" else None,
        data=credentials if spec.encoding == "form" else None,
        timer=timer,
    )
    ctx.observe(login_seconds=time.perf_counter() - started)
    check_status(resp, spec.expect_status)
    token, auth_header = _find_token(resp, spec)
    ctx.redact(token)
    if ctx.on_secret is not None:
        ctx.on_secret(token)
    follow_up = spec.follow_up
    if follow_up is not None:
        started = time.perf_counter()
        resp = await send(
            ctx,
            spec,
            method=follow_up.method,
            path=follow_up.path,
            headers=ctx.headers(spec, auth_header),
            timer=timer,
        )
        ctx.observe(follow_up_seconds=time.perf_counter() - started)
        check_status(resp, follow_up.expect_status, auth=True)
        if follow_up.json_checks:
            check_json(resp, parse_json(resp), follow_up.json_checks)
    return ProbeResult.ok(status_code=resp.status, phases=resp.phases)
