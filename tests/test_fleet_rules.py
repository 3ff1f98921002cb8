"""The fleet's rules: ``[fleet]`` parsing and what ``probed rules`` adds for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rules import run_promtool

from probed.config import load_config
from probed.errors import ConfigError
from probed.rulefile import render_rules, rule_groups

ROOT = Path(__file__).parent.parent
FLEET_CONFIG = ROOT / "deploy" / "fleet" / "probes.toml"
FLEET_RULES = ROOT / "rules" / "fleet.rules.yml"

_BASE = """
[targets.app]
base_url = "http://127.0.0.1:9"

[[probes]]
name = "health"
kind = "http"
target = "app"
path = "/health"

[[slos]]
name = "up"
sli = "availability"
probes = ["health"]
objective = 0.99
"""


def _load(tmp_path: Path, fleet: str) -> object:
    path = tmp_path / "probes.toml"
    path.write_text(_BASE + fleet)
    return load_config(path)


def test_committed_fleet_rule_file_is_current() -> None:
    """rules/fleet.rules.yml is what `probed rules` renders for the shipped fleet config."""
    assert render_rules(load_config(FLEET_CONFIG)) == FLEET_RULES.read_text(encoding="utf-8"), (
        "rules/fleet.rules.yml is stale: regenerate it with "
        "`probed rules -c deploy/fleet/probes.toml -o rules/fleet.rules.yml`"
    )


def test_promtool_checks_the_fleet_rules() -> None:
    result = run_promtool("check", "rules", str(FLEET_RULES))
    assert 0 == result.returncode, result.stdout + result.stderr


def test_the_fleet_group_comes_first_and_replaces_the_local_recommendation_alert(
    tmp_path: Path,
) -> None:
    """Location records come before the SLO records reading them; a single location's
    degraded-mode alert gives way to the fleet's, and its per-location alerts are tickets."""
    config = _load(tmp_path, '[fleet]\nlocations = ["a", "b", "c"]\n')
    groups = rule_groups(config)  # type: ignore[arg-type]
    assert ["probed-fleet", "probed-slo-up", "probed"] == [g["name"] for g in groups]
    alerts = {r.get("alert") for g in groups for r in g["rules"]}
    assert "DegradedModeRecommended" not in alerts
    assert {"ProberIsolated", "ProberDown", "ProbeFailingQuorum"} <= alerts
    local = {r["alert"]: r for r in groups[2]["rules"] if "alert" in r}
    for name in ("StreamDisconnected", "ReflectLatencyP95High", "ProbeFailing"):
        assert "Sev-3" == local[name]["labels"]["severity"], name
        assert "unless on(location) probed:location_isolated" in local[name]["expr"]


@pytest.mark.parametrize(
    ("locations", "given", "quorum"),
    [(1, None, 1), (2, None, 2), (3, None, 2), (4, None, 3), (5, None, 3), (5, 2, 2)],
)
def test_the_quorum_defaults_to_a_majority(
    tmp_path: Path, locations: int, given: int | None, quorum: int
) -> None:
    names = ", ".join(f'"l{i}"' for i in range(locations))
    extra = "" if given is None else f"min_failing_locations = {given}\n"
    config = _load(tmp_path, f"[fleet]\nlocations = [{names}]\n{extra}")
    assert quorum == config.fleet.quorum  # type: ignore[attr-defined]
    text = render_rules(config)  # type: ignore[arg-type]
    assert f") >= {quorum}\n" in text


def test_the_location_label_and_job_are_used(tmp_path: Path) -> None:
    config = _load(
        tmp_path, '[fleet]\nlocations = ["x", "y"]\nlocation_label = "site"\njob = "p"\n'
    )
    text = render_rules(config)  # type: ignore[arg-type]
    assert 'absent(probed_build_info{site="x"})' in text
    assert 'max by (site) (up{job="p"} == 0)' in text
    for use in ("(location", "location=", "location)"):
        assert use not in text


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ('locations = ["a", "b"]\nmin_failing_locations = 3', "exceeds the 2 location(s)"),
        ('locations = ["a", "a"]', "listed twice: a"),
        ("locations = []", "at least 1 item"),
        ('locations = ["a b"]', "'a b' must be 1-64 characters"),
        ('locations = ["a"]\nlocation_label = "9x"', "'9x' is not a Prometheus label name"),
        ('locations = ["a"]\nisolated_share = 1.0', "less than 1"),
        ('locations = ["a"]\nquorum_for = "0s"', "key 'fleet.quorum_for'"),
        ('locations = ["a"]\nquorom = 2', "quorom"),
    ],
)
def test_a_bad_fleet_section_is_refused_with_its_key(
    tmp_path: Path, fleet: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"[fleet]\n{fleet}\n")
    text = str(err.value)
    assert message in text
    assert "fleet" in text
