"""The engine's fast_burn and its rule twin SloFastBurnRecommended agree on one synthetic series.

One probe runs every 10 s against a 99.9 % availability SLO. After an hour of
successes every other run fails for about five minutes, then all succeed
again. With ``fast_burn_rate = 14.4`` (the workbook's page rate) the 1h
window needs 6 failures among its 360 runs, so entering depends on the long
window, and any failure in the 5m window (30 runs) keeps the short one above
the rate, so clearing depends on the short window.

The same runs go to

1. the engine path: ``SloEvaluator`` (60 s buckets, as in the daemon) and
   ``RecommendationEngine``, evaluated every ``evaluate_every`` (10 s) right
   after the run of that instant is recorded;
2. ``promtool test rules``: the runs as ``probed_probe_runs_total`` counters
   sampled every 10 s, the generated SLO group, rules evaluated every 10 s.

Measured (enter_for 1m, exit_for 5m):

===================  ==============  ======================  =================
last failure at      both enter      engine ACTIVE/RESOLVED  Prometheus fires
===================  ==============  ======================  =================
65:00 (on a minute)  61:40           62:40 / 75:00           62:40 … 74:50
65:20 (mid-minute)   62:00           63:00 / 75:00           63:00 … 75:10
65:40 (mid-minute)   62:20           63:20 / 75:00           63:20 … 75:30
===================  ==============  ======================  =================

(times since the series starts; "fires" lists the first and last evaluation
at which promtool reports the alert firing, scanned every 10 s.)

Entering agrees to the evaluation. Clearing agrees when the last failure
falls on a bucket boundary; otherwise the engine clears up to one 60 s bucket
*earlier*, by ``last failure mod 60``: its 5m window sums the buckets that
started in the last 300 s, so it covers only 240-300 s, while Prometheus'
``rate(...[5m])`` covers 300 s exactly (samples every 10 s: no extrapolation,
and it cancels out of the ratio anyway). The test checks the transitions
within one evaluation interval (10 s), after that documented offset.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from binaries import promtool

from probed.config import Config, load_config
from probed.evaluate import run_rates
from probed.recommend import RecommendationEngine
from probed.rulefile import rule_groups
from probed.rules import FAST_BURN_ALERT
from probed.signals import RecommendationState, Signals
from probed.slo import SloEvaluator

STEP = 10
"""Seconds between runs, and between evaluations of the engine and of Prometheus."""
BUCKET = 60
"""The SLO evaluator's bucket, as in the daemon."""
BURST_START = 3600
"""The first failure: after a full hour of successes, so both 1h windows are full."""
BURST_RUNS = 16
"""Failures in the burst, one every other run (50 % of the runs for about five minutes)."""
END = 5400
"""The series ends here (90 minutes): well after both paths have cleared."""

CONFIG_TOML = """
[daemon]
listen = "127.0.0.1:0"

[targets.shop]
base_url = "http://127.0.0.1:1"

[[probes]]
name = "api"
kind = "http"
target = "shop"
path = "/health"
interval = "10s"
timeout = "2s"

[[slos]]
name = "checkout"
sli = "availability"
probes = ["api"]
objective = 0.999

[recommend]
evaluate_every = "10s"
enter_for = "1m"
exit_for = "5m"
fast_burn_rate = 14.4
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """One 10 s probe, one 99.9 % availability SLO and a fast_burn rate of 14.4."""
    path = tmp_path / "probes.toml"
    path.write_text(CONFIG_TOML)
    return load_config(path)


@dataclass(frozen=True, slots=True)
class Times:
    """When fast_burn entered (PENDING), became ACTIVE and RESOLVED, in seconds."""

    pending: int
    active: int
    resolved: int


def failures(shift: int) -> frozenset[int]:
    """Times of the failing runs: every other run from ``BURST_START + shift``."""
    return frozenset(BURST_START + shift + 2 * STEP * k for k in range(BURST_RUNS))


def engine_times(config: Config, failed: frozenset[int]) -> Times:
    """Feed the runs to the SLO evaluator and the engine; the fast_burn transitions' times."""
    slos = SloEvaluator(config.slos, bucket_seconds=BUCKET, rates=run_rates(config))
    engine = RecommendationEngine(config.recommend)
    assert STEP == config.recommend.evaluate_every
    seen: list[tuple[RecommendationState | None, RecommendationState, int]] = []
    for now in range(0, END + 1, STEP):
        slos.record_run("api", now not in failed, 0.05, now)
        signals = Signals(now=now, window=config.recommend.window, slos=slos.evaluate(now))
        seen += [(t.old, t.new, now) for t in engine.evaluate(signals) if t.scenario == "fast_burn"]
    pending, active = RecommendationState.PENDING, RecommendationState.ACTIVE
    resolved = RecommendationState.RESOLVED
    assert [(None, pending), (pending, active), (active, resolved)] == [
        (old, new) for old, new, _ in seen
    ], "one episode, no flapping"
    return Times(*(now for _, _, now in seen))


def counters(failed: frozenset[int]) -> tuple[str, str]:
    """The success and failure run counters sampled every ``STEP`` from 0 to ``END``."""
    good = bad = 0
    goods, bads = [], []
    for now in range(0, END + 1, STEP):
        bad += now in failed
        good += now not in failed
        goods.append(str(good))
        bads.append(str(bad))
    return " ".join(goods), " ".join(bads)


def twin_group(config: Config) -> dict[str, Any]:
    """The SLO's generated rule group, annotations left out (promtool would compare them)."""
    (group,) = [g for g in rule_groups(config) if g["name"] == "probed-slo-checkout"]
    rules = [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]]
    return {"name": group["name"], "rules": rules}


def run_promtool_test(config: Config, failed: frozenset[int], firing: dict[int, bool]) -> str:
    """``promtool test rules`` of the twin over the series; ``firing``: eval time -> expected."""
    twin = next(r for r in twin_group(config)["rules"] if r.get("alert") == FAST_BURN_ALERT)
    labels = {"alertname": FAST_BURN_ALERT, **twin["labels"]}
    good, bad = counters(failed)
    job = 'instance="a:10115",job="probed"'
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{STEP}s",
        "tests": [
            {
                "name": "fast_burn twin over the engine's series",
                "interval": f"{STEP}s",
                "input_series": [
                    {
                        "series": f'probed_probe_runs_total{{probe="api",result="success",{job}}}',
                        "values": good,
                    },
                    {
                        "series": f'probed_probe_runs_total{{probe="api",result="failure",{job}}}',
                        "values": bad,
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": f"{at}s",
                        "alertname": FAST_BURN_ALERT,
                        "exp_alerts": [{"exp_labels": labels}] if fires else [],
                    }
                    for at, fires in sorted(firing.items())
                ],
            }
        ],
    }
    return yaml.safe_dump(test, sort_keys=False)


def promtool_agrees(
    tmp_path: Path, config: Config, failed: frozenset[int], expect: dict[int, bool]
) -> None:
    """Write the rule group and the test file and assert promtool's verdict is SUCCESS."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [twin_group(config)]}))
    test_file = tmp_path / "agreement.test.yml"
    test_file.write_text(run_promtool_test(config, failed, expect))
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("shift", "expected"),
    [
        pytest.param(0, Times(3700, 3760, 4500), id="last-failure-on-a-minute"),
        pytest.param(40, Times(3740, 3800, 4500), id="last-failure-mid-minute"),
    ],
)
def test_engine_transitions_of_the_synthetic_series(
    config: Config, shift: int, expected: Times
) -> None:
    """The engine enters at the 6th failure, is ACTIVE 1m later and resolves 5m after 5m clears."""
    assert expected == engine_times(config, failures(shift))


@pytest.mark.parametrize("shift", [0, 20, 40], ids=lambda s: f"burst+{s}s")
def test_prometheus_twin_agrees_with_the_engine(config: Config, tmp_path: Path, shift: int) -> None:
    """promtool fires the twin within one 10 s evaluation of the engine's ACTIVE and RESOLVED."""
    failed = failures(shift)
    engine = engine_times(config, failed)
    # the engine's 5m window starts on a bucket boundary: it clears early by this much
    lead = max(failed) % BUCKET
    resolved = engine.resolved + lead
    expect = {
        engine.active - STEP: False,
        engine.active + STEP: True,
        resolved - STEP: True,
        resolved + STEP: False,
    }
    promtool_agrees(tmp_path, config, failed, expect)
