"""Issue 14's fleet drill on the real binaries, on loopback, with the shipped configs.

The demo target; three probed (locations a, b, c), each reaching it through its own
``CutProxy``; a Prometheus agent per location (``deploy/fleet/prometheus-agent.yml``)
remote-writing to one central Prometheus (``prometheus-central.yml``) that evaluates
``probed rules`` of the fleet config every second and alerts to Alertmanager
(``alertmanager.yml``), whose page and ticket receivers post to the test. Then:

1. location a's proxy is cut: ``ProberIsolated{location="a"}`` reaches Alertmanager as a
   ticket; no quorum alert, and the fleet's SLO stays under every page threshold;
2. the demo target answers 503: ``ProbeFailingQuorum`` pages, naming the failing
   locations; the target is healthy again afterwards;
3. location c's probed is killed: ``ProberDown{location="c"}`` (a gap) is a ticket, no
   page is caused by it and c's runs leave the fleet's SLO;
4. a's proxy is restored and c's probed restarted: all of these resolve, in Prometheus
   and in Alertmanager.

``pytest -s tests/test_fleet_e2e.py`` prints the timeline (bench/README.md, "Fleet drill
timeline", has one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from binaries import amtool, promtool
from fleetdrill import (
    FLEET_DIR,
    STARTUP,
    AlertWatch,
    Fleet,
    page_burn_threshold,
    running_fleet,
)
from polling import until

from probed.config import load_config
from probed.fleetrules import FLEET_ALERTS
from probed.rulefile import render_rules

LOCATIONS = ("a", "b", "c")
SLO = "api_availability"

#: The fleet's timings, short for the drill (the shipped defaults are minutes).
FLEET = {"quorum_for": "3s", "isolated_for": "3s", "down_for": "3s", "rate_window": "6s"}
RATE_WINDOW = 6.0

#: How long the fleet runs green before the drill starts.
WARM_UP = 8.0

#: How long each step may take: generous (two cores shared with other work), but bounded.
STEP = 90.0


def test_the_shipped_fleet_configs_pass_their_checkers(tmp_path: Path) -> None:
    """promtool and amtool accept deploy/fleet/ as shipped, the central config with the
    rules of the shipped probes.toml beside it (as its comment says to generate them)."""
    shutil.copy(FLEET_DIR / "prometheus-central.yml", tmp_path)
    rules = render_rules(load_config(FLEET_DIR / "probes.toml"))
    (tmp_path / "fleet.rules.yml").write_text(rules, encoding="utf-8")
    for argv in (
        [promtool(), "check", "config", "--agent", str(FLEET_DIR / "prometheus-agent.yml")],
        [promtool(), "check", "config", str(tmp_path / "prometheus-central.yml")],
        [amtool(), "check-config", str(FLEET_DIR / "alertmanager.yml")],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert 0 == result.returncode, f"{argv}: {result.stdout}{result.stderr}"


@pytest.mark.process
async def test_fleet_drill_isolation_quorum_gap_and_recovery(tmp_path: Path) -> None:
    started = time.monotonic()

    def clock() -> float:
        return time.monotonic() - started

    queries = {
        "ratio5m": f'slo:sli_error:ratio_rate5m{{slo="{SLO}"}}',
        "per_location": f'slo:sli_total:rate{RATE_WINDOW:g}s{{slo="{SLO}"}}',
        "bad_a": f'slo:sli_bad:rate{RATE_WINDOW:g}s{{slo="{SLO}",location="a"}}',
        "success": "min by (location) (probe_success)",
    }
    async with running_fleet(tmp_path, clock, LOCATIONS, FLEET, queries) as fleet:
        watch, webhook, proxies, probeds = fleet.watch, fleet.webhook, fleet.proxies, fleet.probeds
        page_ratio = page_burn_threshold(fleet.rules, SLO)
        try:
            # -- start: every location reports, all green, nothing alerting -------------
            def all_green() -> bool:
                success = {
                    v["metric"].get("location"): v["value"][1]
                    for v in watch.values.get("success", [])
                }
                return (
                    success == dict.fromkeys(LOCATIONS, "1")
                    and not [a for a in watch.prometheus.values() if a["state"] == "firing"]
                    and not [k for k in watch.prometheus if k.split("{")[0] in FLEET_ALERTS]
                    and not watch.alertmanager
                )

            await until(all_green, STARTUP, every=0.5, what="every location green, no alert")
            green = watch.mark("all three locations report, every probe green")
            await _status_shows(fleet, dict.fromkeys(LOCATIONS, "OK"), "0.")
            # the SLO windows need some history: over the first seconds of records, the
            # failures a location has before it counts as isolated are a large share
            await until(
                lambda: all_green() and clock() > green + WARM_UP,
                STARTUP,
                every=0.5,
                what=f"{WARM_UP:g}s of green fleet",
            )

            # -- 1. location a's network is cut ------------------------------------------
            proxies["a"].cut()
            cut = watch.mark("1. cut location a's proxy")
            isolated = await _in_alertmanager(watch, "ProberIsolated", location="a")
            assert ["ticket"] == [r["name"] for r in isolated[0]["receivers"]]
            await until(
                lambda: webhook.got("ticket", 'ProberIsolated{location="a"}'),
                STEP,
                every=0.5,
                what="the ticket receiver notified of ProberIsolated{location=a}",
            )
            # a's runs are out of the fleet's SLO while it is isolated
            assert {"b", "c"} == {v["metric"]["location"] for v in watch.values["per_location"]}
            step1 = watch.seen_since(cut)
            assert not [s for s in step1 if "Quorum" in s.what], step1
            assert not [s for s in step1 if s.pages], step1
            peak = watch.max_value("ratio5m", cut)
            watch.mark(
                f"1. fleet SLO 5m error ratio at most {peak:.4f} (pages from {page_ratio:g})"
            )
            assert peak < page_ratio, f"the fleet's SLO reached a page threshold: {peak}"
            await _status_shows(fleet, {"a": "isolated", "b": "OK", "c": "OK"}, "1.")

            # -- 2. the product fails everywhere ------------------------------------------
            await fleet.set_faults(error_ratio=1.0)
            watch.mark("2. the demo target answers 503")
            for probe in ("health", "readiness"):
                quorum = await _in_alertmanager(watch, "ProbeFailingQuorum", probe=probe)
                assert ["page"] == [r["name"] for r in quorum[0]["receivers"]]
                listed = re.search(
                    r"locations \(([^)]*)\)", quorum[0]["annotations"]["description"]
                )
                assert listed is not None, quorum[0]["annotations"]
                assert "a, b, c" == listed.group(1), quorum[0]["annotations"]["description"]
            await until(
                lambda: webhook.got("page", 'ProbeFailingQuorum{probe="health"}'),
                STEP,
                every=0.5,
                what="the page receiver notified of ProbeFailingQuorum",
            )
            document = await fleet.status()
            firing = {
                (x.get("alertname"), x.get("labels", {}).get("probe")) for x in document["alerts"]
            }
            assert ("ProbeFailingQuorum", "health") in firing, document["alerts"]
            failing = {loc["location"]: loc["state"] for loc in document["locations"]}
            watch.mark(f"2. probed status --prometheus: {failing}, ProbeFailingQuorum listed")
            await fleet.set_faults(error_ratio=0.0)
            healthy = watch.mark("2. the demo target is healthy again")
            await until(
                lambda: (
                    not watch.in_prometheus("ProbeFailingQuorum")
                    and not watch.in_alertmanager("ProbeFailingQuorum")
                ),
                STEP,
                every=0.5,
                what="ProbeFailingQuorum resolved",
            )
            # a is isolated again, and the last failures of b and c have left the rate window
            await until(
                lambda: (
                    watch.firing("ProberIsolated", location="a")
                    and clock() > healthy + RATE_WINDOW + 5
                ),
                STEP,
                every=0.5,
                what="ProberIsolated{location=a} firing again",
            )

            # -- 3. location c's prober dies -----------------------------------------------
            pages_before = {
                k for k, a in watch.prometheus.items() if a["labels"].get("routing") == "page"
            }
            await probeds["c"].kill()
            killed = watch.mark("3. kill location c's probed (SIGKILL)")
            down = await _in_alertmanager(watch, "ProberDown", location="c")
            assert ["ticket"] == [r["name"] for r in down[0]["receivers"]]
            # c's runs leave both sides of the fleet's SLO: no data is not counted at all
            await until(
                lambda: "c" not in {v["metric"]["location"] for v in watch.values["per_location"]},
                STEP,
                every=0.5,
                what="location c out of the fleet SLO's records",
            )
            step3 = watch.seen_since(killed)
            new_pages = [s for s in step3 if s.pages and s.what.split(" ")[0] not in pages_before]
            assert not new_pages, new_pages
            assert not [s for s in step3 if "FleetQuorumAtRisk" in s.what], step3
            await _status_shows(fleet, {"c": "no data"}, "3.")
            assert not [
                n
                for n in webhook.received
                if n.receiver == "page"
                and n.at >= killed
                and any('location="c"' in key for key, _ in n.alerts)
            ]

            # -- 4. everything restored ------------------------------------------------------
            proxies["a"].restore()
            await probeds["c"].start()
            restored = watch.mark("4. restore a's proxy, restart c's probed")
            drill_alerts = ("ProberIsolated", "ProberDown", "ProbeFailingQuorum")

            def all_resolved() -> bool:
                return not any(
                    watch.in_prometheus(name) or watch.in_alertmanager(name)
                    for name in drill_alerts
                )

            await until(all_resolved, STEP, every=0.5, what="every drill alert resolved")
            watch.mark("4. ProberIsolated, ProberDown, ProbeFailingQuorum all resolved")
            await _status_shows(fleet, dict.fromkeys(LOCATIONS, "OK"), "4.")
            # a is back in the fleet's SLO, without the failures of its isolated stretch
            await until(
                lambda: (
                    "a" in {v["metric"]["location"] for v in watch.values["per_location"]}
                    and clock() > restored + RATE_WINDOW
                ),
                STEP,
                every=0.5,
                what="location a back in the fleet SLO's records",
            )
            leaked = watch.max_value("bad_a", restored)
            watch.mark(f"4. a back in the fleet SLO, bad-event rate since the restore {leaked:g}/s")
            assert 0 == leaked, "a's failures while isolated came back into the fleet's SLO"
            await until(
                lambda: (
                    webhook.got("ticket", 'ProberDown{location="c"}', "resolved", restored)
                    and webhook.got("ticket", 'ProberIsolated{location="a"}', "resolved", restored)
                ),
                STEP,
                every=0.5,
                what="the ticket receiver notified of the resolutions",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{fleet.diagnosis()}") from exc
        finally:
            print(f"\nFleet drill timeline ({watch.polls} polls):\n{fleet.timeline()}")


async def _status_shows(fleet: Fleet, want: dict[str, str], step: str) -> None:
    """Wait until ``probed status --prometheus`` shows the locations in the ``want`` states;
    mark it on the timeline."""
    seen: dict[str, str] = {}

    async def shows() -> bool:
        nonlocal seen
        seen = await fleet.location_states()
        return all(seen.get(loc) == state for loc, state in want.items())

    await until(shows, STEP, every=1.0, what=f"fleet status showing {want}")
    states = ", ".join(f"{loc} {state}" for loc, state in sorted(seen.items()))
    fleet.watch.mark(f"{step} probed status --prometheus: {states}")


async def _in_alertmanager(watch: AlertWatch, name: str, **labels: str) -> list[dict[str, Any]]:
    """Wait for ``name`` with ``labels`` to be active in Alertmanager; its alerts."""
    shown = ",".join(f"{k}={v}" for k, v in labels.items())
    alerts: list[dict[str, Any]] = await until(
        lambda: watch.in_alertmanager(name, **labels),
        STEP,
        every=0.5,
        what=f"{name}{{{shown}}} in Alertmanager",
    )
    return alerts
