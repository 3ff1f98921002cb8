"""Playbooks: recommendation text, runbook links and severities come from the configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ServeApp
from livedaemon import health, live_daemon

from probed.signals import Recommendation, RecommendationState

PASSWORD_ENV = "PROBED_TEST_SHOP_PASSWORD"

SHOP_ACTIONS = (
    "Page the storefront team on the shop-auth channel.",
    "Drain the slow shop-auth replica from the pool.",
)
SHOP_RUNBOOK = "https://wiki.shop.example/runbooks/login"

SHOP_PLAYBOOK = f"""
[[playbooks]]
scenario = "login_degraded"
title = "Shop sign-in slow"
actions = [{", ".join(f'"{a}"' for a in SHOP_ACTIONS)}]
rollback = "Put the replica back once sign-in is under {{login_p95}} for {{exit_for}}."
runbook_url = "{SHOP_RUNBOOK}"
"""


async def slow_login(request: web.Request) -> web.Response:
    """A login that answers correctly but takes 400 ms (over the 250 ms latency threshold)."""
    await asyncio.sleep(0.4)
    return web.json_response({"token": "t0k3n"})


def shop_config(tmp_path: Path, base_url: str, playbooks: str) -> Path:
    """A small product's config: a health and a login probe, fast recommendation timings."""
    path = tmp_path / "probes.toml"
    path.write_text(
        f"""
[daemon]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/state"

[targets.shop]
base_url = "{base_url}"

[[probes]]
name = "shop_health"
kind = "http"
target = "shop"
path = "/health"
interval = "1s"
timeout = "900ms"

[[probes]]
name = "shop_login"
kind = "login"
target = "shop"
interval = "1s"
timeout = "900ms"
username = "probe@shop.example"
password = {{ env = "{PASSWORD_ENV}" }}

[recommend]
window = "8s"
evaluate_every = "1s"
enter_for = "2s"
{playbooks}
"""
    )
    return path


async def active_login(tmp_path: Path, serve_app: ServeApp, playbooks: str) -> Recommendation:
    """Run the daemon against the slow-login product until login_degraded is active."""
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/api/auth/login", slow_login)
    path = shop_config(tmp_path, await serve_app(app), playbooks)
    async with live_daemon(path) as (daemon, _task, _base):
        async with asyncio.timeout(30):
            while True:
                active = [
                    r
                    for r in daemon.evaluator.engine.current()
                    if r.state is RecommendationState.ACTIVE
                ]
                if active:
                    break
                await asyncio.sleep(0.2)
    assert ["login_degraded"] == [r.scenario for r in active]
    return active[0]


async def test_a_product_with_its_own_playbook_gets_its_own_text(
    tmp_path: Path, serve_app: ServeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-demo product's slow login is recommended with its own playbook text and URL."""
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    rec = await active_login(tmp_path, serve_app, SHOP_PLAYBOOK)
    assert "Shop sign-in slow" == rec.title
    assert SHOP_ACTIONS == rec.actions
    assert SHOP_RUNBOOK == rec.runbook_url
    assert "Put the replica back once sign-in is under 250ms for 5m." == rec.rollback
    assert rec.summary.startswith("Shop sign-in slow: ")


async def test_a_product_without_playbooks_gets_generic_text(
    tmp_path: Path, serve_app: ServeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without playbooks a slow login is recommended in product-neutral words."""
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    rec = await active_login(tmp_path, serve_app, "")
    text = " ".join((rec.title, *rec.actions, rec.rollback, rec.summary))
    for word in ("JWKS", "RB-", "edge pods", "edge deploy"):
        assert word not in text
    assert rec.runbook_url.endswith("#login_degraded")
