"""Playbooks: recommendation text, runbook links and severities come from the configuration."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ServeApp
from livedaemon import health, live_daemon
from test_daemon import DEMO_CONFIG
from test_recommend import (
    ACTIVE,
    CFG,
    ENTER_FOR,
    STEP,
    T0,
    Shape,
    http,
    login,
    probes,
    rec_of,
    run,
)

from probed.config import RecommendConfig, load_config
from probed.model import ValidationError
from probed.playbooks import (
    BUILTIN,
    PLACEHOLDERS,
    SCENARIO_IDS,
    PlaybookConfig,
    load_builtin,
    merge,
)
from probed.recommend import SCENARIOS, RecommendationEngine
from probed.recommend.scenarios import SCENARIO_LIST, placeholders
from probed.rules import RUNBOOK_ANCHORS
from probed.signals import Recommendation, RecommendationState, Severity

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
evaluate_every = "250ms"
enter_for = "500ms"
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


# --- merging, severity, reload -----------------------------------------------------------------

PRODUCT_WORDS = (
    "JWKS",
    "RB-",
    "edge",
    "pods",
    "HEURISTICS_ONLY",
    "auto-approve",
    "Redis",
    "broker",
    "JWT",
    "core",
)


def login_playbook(**fields: object) -> PlaybookConfig:
    """A login_degraded playbook with one action and the given fields."""
    return PlaybookConfig.model_validate(
        {"scenario": "login_degraded", "actions": ["Restart sign-in."], **fields}
    )


def test_the_scenario_ids_are_the_engines() -> None:
    """The playbook module lists the engine's scenarios in the engine's order."""
    assert SCENARIOS == SCENARIO_IDS
    assert SCENARIO_IDS == tuple(s.id for s in SCENARIO_LIST)


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_built_in_playbooks_are_product_neutral(scenario: str) -> None:
    """No built-in title, action or rollback names a particular product's parts."""
    pb = BUILTIN[scenario]
    text = " ".join((pb.title, *pb.actions, pb.rollback))
    assert [] == [w for w in PRODUCT_WORDS if w in text]
    assert len(pb.actions) >= 3


BUILTIN_FILE = Path(__file__).parent.parent / "probed" / "playbooks.toml"


def builtin_data() -> dict[str, Any]:
    """``probed/playbooks.toml`` as parsed, for tests to damage."""
    return tomllib.loads(BUILTIN_FILE.read_text(encoding="utf-8"))


def test_the_built_in_playbooks_are_package_data() -> None:
    """BUILTIN is probed/playbooks.toml: every scenario in order, each read in full."""
    assert SCENARIO_IDS == tuple(BUILTIN)
    assert dict(BUILTIN) == load_builtin(builtin_data())
    table = builtin_data()["playbooks"][0]
    assert (table["title"], tuple(table["actions"]), table["rollback"]) == (
        BUILTIN["target_down"].title,
        BUILTIN["target_down"].actions,
        BUILTIN["target_down"].rollback,
    )


def _unknown_placeholder(data: dict[str, Any]) -> None:
    data["playbooks"][2]["rollback"] += " {exit_after}"


def _no_rollback(data: dict[str, Any]) -> None:
    del data["playbooks"][3]["rollback"]


def _no_title(data: dict[str, Any]) -> None:
    del data["playbooks"][0]["title"]


def _empty_actions(data: dict[str, Any]) -> None:
    data["playbooks"][1]["actions"] = []


def _a_severity(data: dict[str, Any]) -> None:
    data["playbooks"][4]["severity"] = "Sev-1"


def _a_scenario_missing(data: dict[str, Any]) -> None:
    data["playbooks"].pop()


def _out_of_order(data: dict[str, Any]) -> None:
    tables = data["playbooks"]
    tables[0], tables[1] = tables[1], tables[0]


def _another_table(data: dict[str, Any]) -> None:
    data["recommend"] = {}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            _unknown_placeholder,
            r"playbooks\[2\]: .*unknown placeholder\(s\) \{exit_after\}",
            id="unknown_placeholder",
        ),
        pytest.param(
            _no_rollback,
            r"playbooks\[3\] \(backlog\): .* needs a title and a rollback",
            id="no_rollback",
        ),
        pytest.param(
            _no_title,
            r"playbooks\[0\] \(target_down\): .* needs a title and a rollback",
            id="no_title",
        ),
        pytest.param(
            _empty_actions,
            r"playbooks\[1\]: .*actions must be a non-empty list",
            id="empty_actions",
        ),
        pytest.param(
            _a_severity,
            r"playbooks\[4\] \(rate_limited\): .* sets no runbook_url or severity",
            id="a_severity",
        ),
        pytest.param(
            _a_scenario_missing,
            r"one playbook per scenario, in this order: .*; got target_down, ",
            id="a_scenario_missing",
        ),
        pytest.param(_out_of_order, r"got health_failing, target_down, ", id="out_of_order"),
        pytest.param(
            _another_table,
            r"expected \[\[playbooks\]\] tables and nothing else",
            id="another_table",
        ),
    ],
)
def test_the_built_in_playbooks_are_checked_like_configuration(
    damage: Callable[[dict[str, Any]], None], message: str
) -> None:
    """A built-in playbook file with a mistake a [[playbooks]] table may not have is refused."""
    data = builtin_data()
    damage(data)
    with pytest.raises(ValueError, match=f"(?s){message}"):
        load_builtin(data)


RUNBOOKS = Path(__file__).parent.parent / "docs" / "runbooks.md"


def test_the_default_runbooks_are_product_neutral_and_keep_their_anchors() -> None:
    """docs/runbooks.md, linked when no playbook has a runbook_url, names no product's parts.

    Every scenario and every section a generated alert links to keeps its anchor.
    """
    text = RUNBOOKS.read_text(encoding="utf-8")
    assert [] == [w for w in PRODUCT_WORDS if w in text]
    anchors = {*SCENARIO_IDS, *RUNBOOK_ANCHORS.values()}
    assert [] == sorted(a for a in anchors if f'<a id="{a}"></a>' not in text)


def test_every_placeholder_has_a_value() -> None:
    """Each documented placeholder is filled from the [recommend] section."""
    assert sorted(PLACEHOLDERS) == sorted(placeholders(CFG))


def test_merge_lays_the_configured_fields_over_the_built_in_ones() -> None:
    """Given fields replace the built-in ones; the others and other scenarios stay built in."""
    merged = merge([login_playbook(runbook_url="https://wiki.test/login")])
    builtin = BUILTIN["login_degraded"]
    pb = merged["login_degraded"]
    assert (builtin.title, ("Restart sign-in.",), builtin.rollback) == (
        pb.title,
        pb.actions,
        pb.rollback,
    )
    assert ("https://wiki.test/login", None) == (pb.runbook_url, pb.severity)
    assert {sid: BUILTIN[sid] for sid in SCENARIO_IDS if sid != "login_degraded"} == {
        sid: p for sid, p in merged.items() if sid != "login_degraded"
    }


def test_a_configured_recommendation_renders_placeholders() -> None:
    """Title, actions, rollback and URL come from the playbook, thresholds filled in."""
    playbook = login_playbook(
        title="Sign-in slow",
        actions=["Drain replicas slower than {login_p95}."],
        rollback="Undo after {exit_for}.",
        runbook_url="https://wiki.test/login",
    )
    engine = RecommendationEngine(CFG, [playbook])
    run(engine, probes(login(6), *http(0)), T0, T0 + ENTER_FOR + STEP)
    rec = rec_of(engine, "login_degraded")
    assert ("Sign-in slow", ("Drain replicas slower than 250ms.",)) == (rec.title, rec.actions)
    assert ("Undo after 5m.", "https://wiki.test/login") == (rec.rollback, rec.runbook_url)
    assert rec.summary.startswith("Sign-in slow: ")


def test_severity_override_replaces_the_rules_severity() -> None:
    """A playbook's severity is used instead of the computed one, also when that escalates."""
    engine = RecommendationEngine(CFG, [login_playbook(severity="Sev-3")])
    run(engine, probes(login(6), *http(0)), T0, T0 + ENTER_FOR + STEP)
    assert Severity.SEV3 == rec_of(engine, "login_degraded").severity
    run(engine, probes(login(12), *http(0)), T0 + ENTER_FOR + 2 * STEP, T0 + 2 * ENTER_FOR)
    assert Severity.SEV3 == rec_of(engine, "login_degraded").severity


def test_a_reload_changes_the_text_of_an_active_recommendation() -> None:
    """New playbook text applies at once; a new severity override at the next evaluation."""
    engine = RecommendationEngine(CFG)
    shape = probes(login(6), *http(0))
    now = run_until(engine, shape)
    before = rec_of(engine, "login_degraded")
    engine.apply(CFG, [login_playbook(severity="Sev-1", runbook_url="https://wiki.test/l")])
    after = rec_of(engine, "login_degraded")
    assert (ACTIVE, before.since) == (after.state, after.since)
    assert (("Restart sign-in.",), "https://wiki.test/l") == (after.actions, after.runbook_url)
    [changed] = engine.evaluate(shape.at(now + STEP))
    assert (ACTIVE, ACTIVE, Severity.SEV1) == (
        changed.old,
        changed.new,
        changed.recommendation.severity,
    )
    engine.apply(RecommendConfig(), [])
    assert BUILTIN["login_degraded"].actions == rec_of(engine, "login_degraded").actions


def run_until(engine: RecommendationEngine, shape: Shape) -> float:
    """Drive ``shape`` until login_degraded is active; the time of the last evaluation."""
    end = T0 + ENTER_FOR + STEP
    run(engine, shape, T0, end)
    assert ACTIVE == rec_of(engine, "login_degraded").state
    return end


def test_an_unknown_scenario_suggests_the_closest() -> None:
    """A mistyped scenario is refused with a suggestion and the list of scenarios."""
    with pytest.raises(ValidationError, match="did you mean 'rate_limited'"):
        PlaybookConfig(scenario="rate_limit", actions=["x"])


def test_the_demo_keeps_its_own_playbooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped demo config carries the demo product's own texts."""
    monkeypatch.setenv("PROBED_DEMO_PASSWORD", "pw")
    merged = merge(load_config(DEMO_CONFIG).playbooks)
    assert any("JWKS" in a for a in merged["login_degraded"].actions)
    assert any("HEURISTICS_ONLY" in a for a in merged["ai_errors"].actions)
    assert BUILTIN["target_down"] == merged["target_down"]


README = Path(__file__).parent.parent / "README.md"


def test_the_readme_example_is_a_valid_playbook_and_lists_every_scenario() -> None:
    """README's Playbooks section: its example validates and its key table names every id."""
    section = README.read_text(encoding="utf-8").split("### Playbooks")[1].split("\n### ")[0]
    example = section.split("```toml\n")[1].split("```")[0]
    [table] = tomllib.loads(example)["playbooks"]
    assert "login_degraded" == PlaybookConfig.model_validate(table).scenario
    assert [] == [sid for sid in SCENARIO_IDS if f"`{sid}`" not in section]


def test_a_blank_rollback_is_refused() -> None:
    """An empty rollback is a mistake: leaving the key out keeps the built-in one."""
    with pytest.raises(ValidationError, match="rollback must not be empty"):
        login_playbook(rollback=" ")
