"""One ``severity`` label: pushed alerts and generated rules carry the Sev level and its routing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from aiohttp import web
from binaries import amtool, promtool

from probed.alerting import ALERT_NAME, AlertPusher
from probed.config import AlertingConfig, Config, load_config
from probed.rulefile import rule_groups
from probed.signals import Evidence, Recommendation, RecommendationState, Severity

if TYPE_CHECKING:
    from conftest import ServeApp

ROOT = Path(__file__).parent.parent
ALERTMANAGER_EXAMPLE = ROOT / "rules" / "alertmanager.example.yml"

#: The documented mapping (README "Severity"): Sev-1/Sev-2 page, Sev-3/Sev-4 open a ticket.
EXPECTED_ROUTING = {"Sev-1": "page", "Sev-2": "page", "Sev-3": "ticket", "Sev-4": "ticket"}
#: Receivers of the shipped example Alertmanager config, by routing label value.
RECEIVERS = {"page": "page", "ticket": "ticket"}

CONFIG_TOML = """
[daemon]
listen = "127.0.0.1:0"

[targets.app]
base_url = "http://127.0.0.1:1"

[[probes]]
name = "health"
kind = "http"
target = "app"
path = "/health"

[[slos]]
name = "api_availability"
sli = "availability"
probes = ["health"]
objective = 0.995
"""


def route(labels: Mapping[str, str]) -> list[str]:
    """The receivers the example Alertmanager config picks for an alert with ``labels``."""
    result = subprocess.run(
        [
            amtool(),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_EXAMPLE}",
            *(f"{name}={value}" for name, value in sorted(labels.items())),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def recommendation(scenario: str, severity: Severity) -> Recommendation:
    """An active recommendation of ``severity``, as the engine would build it."""
    since = time.time() - 120
    return Recommendation(
        scenario=scenario,
        title="SSE down or delayed",
        severity=severity,
        state=RecommendationState.ACTIVE,
        since=since,
        evidence=(Evidence("stream events lag_p95", 7.5, 5.0, since - 60, "3 of 3 streams"),),
        actions=("Switch clients to polling mode.",),
        rollback="Restore SSE once P95 delay < 5s.",
        runbook_url="https://runbooks.test/sse",
        summary="Events arrive late; switch clients to polling.",
    )


@pytest.fixture
async def pushed(serve_app: ServeApp) -> dict[str, dict[str, str]]:
    """Labels of the alerts probed pushes to a loopback Alertmanager API, by scenario."""
    bodies: list[Any] = []

    async def receive(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/v2/alerts", receive)
    url = await serve_app(app)
    pusher = AlertPusher(AlertingConfig(alertmanager_urls=[url]), location="eu-1")
    recs = [recommendation(f"scenario_{s.name.lower()}", s) for s in Severity]
    pusher.update(recs, time.time())
    await pusher.flush(10.0)
    return {a["labels"]["scenario"]: a["labels"] for body in bodies for a in body}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A configuration with one SLO, so its burn-rate alerts are generated."""
    path = tmp_path / "probes.toml"
    path.write_text(CONFIG_TOML)
    return load_config(path)


def alert_rules(config: Config) -> dict[tuple[str, str], dict[str, Any]]:
    """Every generated alerting rule by (alert name, long window or expires_within or "")."""
    return {
        (r["alert"], r["labels"].get("long_window", r["labels"].get("expires_within", ""))): r
        for g in rule_groups(config)
        for r in g["rules"]
        if "alert" in r
    }


# -- the label sets agree ---------------------------------------------------------------------


async def test_pushed_alerts_carry_the_sev_level_and_its_routing(
    pushed: dict[str, dict[str, str]],
) -> None:
    """Every pushed alert's severity is its Sev level and its routing label follows the mapping."""
    assert 4 == len(pushed)
    for severity in Severity:
        labels = pushed[f"scenario_{severity.name.lower()}"]
        assert severity.value == labels["severity"]
        assert EXPECTED_ROUTING[severity.value] == labels["routing"]


def test_generated_rules_carry_a_sev_level_and_its_routing(config: Config) -> None:
    """Every static generated alert has a Sev-level severity and the routing label for that Sev."""
    rules = alert_rules(config)
    static = {key: r for key, r in rules.items() if key[0] != "DegradedModeRecommended"}
    assert 12 == len(static)
    for (name, _), rule in static.items():
        severity = rule["labels"]["severity"]
        assert severity in EXPECTED_ROUTING, name
        assert EXPECTED_ROUTING[severity] == rule["labels"]["routing"], name


def test_burn_speed_sets_the_sev_level(config: Config) -> None:
    """Fast burns are Sev-2 (the matrix's "fast SLO burn"), slow burns Sev-3."""
    rules = alert_rules(config)
    assert {"1h": "Sev-2", "6h": "Sev-2", "1d": "Sev-3", "3d": "Sev-3"} == {
        window: rules["SloErrorBudgetBurn", window]["labels"]["severity"]
        for window in ("1h", "6h", "1d", "3d")
    }
    assert "Sev-2" == rules["SloFastBurnRecommended", "1h"]["labels"]["severity"]


def test_degraded_mode_rule_keeps_the_sev_level_and_derives_routing(
    config: Config, tmp_path: Path
) -> None:
    """promtool: DegradedModeRecommended keeps the exported Sev level and adds its routing label."""
    rule = dict(alert_rules(config)["DegradedModeRecommended", ""])
    del rule["annotations"]  # promtool compares annotations too; only the labels matter here
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump({"groups": [{"name": "probed", "rules": [rule]}]}))
    series = [
        {
            "series": (
                f'probed_recommendation_active{{scenario="s{n}",severity="{sev}",'
                'instance="a:10115",job="probed"}'
            ),
            "values": "1x3",
        }
        for n, sev in enumerate(EXPECTED_ROUTING, 1)
    ]
    expected = [
        {
            "exp_labels": {
                "severity": sev,
                "routing": routing,
                "scenario": f"s{n}",
                "instance": "a:10115",
                "job": "probed",
            }
        }
        for n, (sev, routing) in enumerate(EXPECTED_ROUTING.items(), 1)
    ]
    test_file = tmp_path / "routing.test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules_path)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": series,
                        "alert_rule_test": [
                            {
                                "eval_time": "1m",
                                "alertname": "DegradedModeRecommended",
                                "exp_alerts": expected,
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr


# -- the example Alertmanager config ----------------------------------------------------------


def test_example_alertmanager_config_is_valid() -> None:
    """amtool check-config accepts the shipped example Alertmanager config."""
    result = subprocess.run(
        [amtool(), "check-config", str(ALERTMANAGER_EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_pushed_alerts_route_by_sev_level(pushed: dict[str, dict[str, str]]) -> None:
    """amtool: pushed Sev-1/Sev-2 alerts reach the page receiver, Sev-3/Sev-4 the ticket one."""
    assert {
        "Sev-1": ["page"],
        "Sev-2": ["page"],
        "Sev-3": ["ticket"],
        "Sev-4": ["ticket"],
    } == {labels["severity"]: route(labels) for labels in pushed.values()}
    assert {ALERT_NAME} == {labels["alertname"] for labels in pushed.values()}


def test_generated_alerts_route_by_sev_level(config: Config) -> None:
    """amtool: fast burns and page-level rules reach the page receiver, slow burns the ticket."""
    rules = alert_rules(config)
    assert ["page"] == route(
        {"alertname": "SloErrorBudgetBurn", **rules["SloErrorBudgetBurn", "1h"]["labels"]}
    )
    assert ["ticket"] == route(
        {"alertname": "SloErrorBudgetBurn", **rules["SloErrorBudgetBurn", "3d"]["labels"]}
    )
    static = {key: r for key, r in rules.items() if key[0] != "DegradedModeRecommended"}
    for (name, _), rule in static.items():
        labels = {"alertname": name, **rule["labels"]}
        assert [RECEIVERS[EXPECTED_ROUTING[labels["severity"]]]] == route(labels), name
