"""The fleet's Kubernetes manifests (deploy/fleet/k8s/), checked offline.

- the core kinds (Namespace, ConfigMap, Service, StatefulSet) against the Kubernetes
  schemas that ``kubernetes-validate`` bundles, strictly (an unknown field is an error);
- the Prometheus Operator's kinds (PodMonitor, PrometheusRule), whose schemas nothing here
  bundles, by their structure: apiVersion, kind, required fields, known keys;
- the PrometheusRule's groups against what ``probed rules`` writes for the fleet config,
  and with ``promtool check rules``;
- each pod's environment, built as the kubelet would (downward API, ``$(VAR)``), loaded
  with the ConfigMap's probes.toml by ``probed check`` and by the config loader;
- the settings every manifest gives probed (config path, port, location, shard, job,
  image, state) against each other, the Dockerfile, the config and README.md's
  "Running a fleet" section.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_dockerfile import image_env, instructions
from test_readme import _cells, _section
from test_rules import run_promtool

from probed.config import Config, load_config
from probed.configtypes import DEFAULT_PORT
from probed.durations import parse_duration
from probed.fleetconfig import FleetConfig
from probed.fleetrules import FLEET_ALERTS
from probed.rulefile import render_rules

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "fleet" / "k8s"
FLEET_CONFIG = ROOT / "deploy" / "fleet" / "probes.toml"
SERVER = ROOT / "probed" / "server.py"

KUBERNETES_VERSION = "1.30.0"
"""The schemas the core kinds are validated against: the pod-index label needs 1.28+."""
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
"""The label the StatefulSet controller gives each pod: its ordinal (Kubernetes 1.28+)."""
CORE_KINDS = {"Namespace", "ConfigMap", "Service", "StatefulSet"}
OPERATOR_API = "monitoring.coreos.com/v1"
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}

RUNNING_A_FLEET = "## Running a fleet"
KUBERNETES = "### Kubernetes"


# ---------------------------------------------------------------------------------------------
# Reading the manifests


def _documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of every document of every manifest, in the order of the files."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(doc, dict), f"{path.name}: a document that is not an object"
            out.append((path.name, doc))
    return out


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    (doc,) = _of_kind(kind)
    return doc


def _statefulsets() -> list[dict[str, Any]]:
    return _of_kind("StatefulSet")


def _container(statefulset: dict[str, Any]) -> dict[str, Any]:
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _pod_labels(statefulset: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = statefulset["spec"]["template"]["metadata"]["labels"]
    return labels


def _env_var(statefulset: dict[str, Any], name: str) -> dict[str, Any]:
    (var,) = [v for v in _container(statefulset)["env"] if v["name"] == name]
    assert isinstance(var, dict)
    return var


def _label_ref(var: dict[str, Any]) -> str:
    """The pod label a downward-API variable reads (``metadata.labels['KEY']``)."""
    path = var["valueFrom"]["fieldRef"]["fieldPath"]
    match = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
    assert match, f"{var['name']}: {path} is not a pod label"
    return match.group(1)


def _shards(statefulset: dict[str, Any]) -> int:
    """The n of the StatefulSet's ``PROBED_DAEMON__SHARD`` ("$(POD_INDEX)/n")."""
    value = _env_var(statefulset, "PROBED_DAEMON__SHARD")["value"]
    match = re.fullmatch(r"\$\(POD_INDEX\)/(\d+)", value)
    assert match, f"PROBED_DAEMON__SHARD is {value!r}, not $(POD_INDEX)/n"
    return int(match.group(1))


def pod_environment(statefulset: dict[str, Any], index: int) -> dict[str, str]:
    """The environment of the StatefulSet's pod ``index``, as the kubelet builds it.

    The controller labels the pod with its ordinal (``POD_INDEX_LABEL``); a ``fieldRef``
    to a pod label takes its value; ``$(NAME)`` in a value expands to an earlier variable.
    """
    labels = {**_pod_labels(statefulset), POD_INDEX_LABEL: str(index)}
    env: dict[str, str] = {}
    for var in _container(statefulset)["env"]:
        if "valueFrom" in var:
            env[var["name"]] = labels[_label_ref(var)]
            continue
        references = re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var["value"])
        assert set(references) <= set(env), f"{var['name']}: refers to a variable set after it"
        env[var["name"]] = re.sub(
            r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], var["value"]
        )
    return env


def _configmap_file(tmp_path: Path) -> Path:
    """The ConfigMap's probes.toml, written where a test can load it."""
    path = tmp_path / "probes.toml"
    path.write_text(_one("ConfigMap")["data"]["probes.toml"], encoding="utf-8")
    return path


def _fleet() -> FleetConfig:
    fleet = load_config(FLEET_CONFIG).fleet
    assert fleet is not None
    return fleet


def _routes() -> set[str]:
    """The GET routes probed's server registers."""
    return set(re.findall(r'add_get\("([^"]+)"', SERVER.read_text(encoding="utf-8")))


def _readme_rows(heading: str) -> dict[str, str]:
    """First cell (plain text) → the rest of the row, for every table row of the section."""
    rows = {}
    for line in _section(heading).splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            first, *rest = _cells(line)
            rows[first] = " | ".join(rest)
    return rows


def _kubernetes_section() -> str:
    text = _section(RUNNING_A_FLEET)
    return text[text.index(KUBERNETES) :]


# ---------------------------------------------------------------------------------------------
# Kinds and schemas


def test_the_manifests_hold_the_topology_and_only_kinds_checked_here() -> None:
    kinds = [doc["kind"] for _, doc in _documents()]
    assert CORE_KINDS | OPERATOR_KINDS == set(kinds)
    assert 1 == kinds.count("ConfigMap")
    assert "Namespace" == kinds[0], "the namespace first: kubectl applies files in name order"


def _core_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file:Kind/name, object) of every document of a core kind."""
    return [
        (f"{f}:{d['kind']}/{d['metadata']['name']}", d)
        for f, d in _documents()
        if d["kind"] in CORE_KINDS
    ]


@pytest.mark.parametrize(("name", "doc"), _core_documents())
def test_core_kinds_validate_against_the_kubernetes_schemas(name: str, doc: dict[str, Any]) -> None:
    """Strict: an unknown or misspelt field is an error, as with ``kubectl --validate=strict``."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{name}: {exc.message} at {where}")


def test_every_namespaced_object_is_in_the_namespace() -> None:
    namespace = _one("Namespace")["metadata"]["name"]
    assert [] == [
        f"{f}: {d['kind']}/{d['metadata']['name']}"
        for f, d in _documents()
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != namespace
    ]


def _unknown(obj: dict[str, Any], known: set[str], where: str) -> list[str]:
    return [f"{where}.{key}" for key in obj if key not in known]


# The Prometheus Operator's fields (monitoring.coreos.com/v1) that the manifests may use.
_PODMONITOR_SPEC = {
    "jobLabel", "podTargetLabels", "podMetricsEndpoints", "selector", "namespaceSelector",
    "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit",
    "labelValueLengthLimit", "keepDroppedTargets", "attachMetadata", "scrapeClass",
    "scrapeProtocols", "bodySizeLimit",
}  # fmt: skip
_POD_METRICS_ENDPOINT = {
    "port", "portNumber", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "followRedirects",
    "enableHttp2", "filterRunning", "basicAuth", "authorization", "tlsConfig", "proxyUrl",
}  # fmt: skip
_RELABELING = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement",
               "action"}  # fmt: skip
_RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                    "lowercase", "uppercase", "keepequal", "dropequal"}  # fmt: skip
_OPERATOR_DURATION = re.compile(
    r"0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?"
)
_RULE_GROUP = {"name", "interval", "rules", "limit", "partial_response_strategy",
               "query_offset", "labels"}  # fmt: skip
_RULE = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_operator_kinds_have_their_api_and_metadata(kind: str) -> None:
    doc = _one(kind)
    assert OPERATOR_API == doc["apiVersion"]
    assert {"apiVersion", "kind", "metadata", "spec"} == set(doc)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert isinstance(doc["spec"], dict)


def test_the_podmonitor_is_well_formed_and_scrapes_the_pods() -> None:
    monitor = _one("PodMonitor")
    spec = monitor["spec"]
    problems = _unknown(spec, _PODMONITOR_SPEC, "spec")
    assert isinstance(spec["podMetricsEndpoints"], list)
    assert spec["podMetricsEndpoints"], "spec.podMetricsEndpoints is empty"
    for i, endpoint in enumerate(spec["podMetricsEndpoints"]):
        problems += _unknown(endpoint, _POD_METRICS_ENDPOINT, f"podMetricsEndpoints[{i}]")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint:
                assert _OPERATOR_DURATION.fullmatch(endpoint[key]), endpoint[key]
        for j, relabeling in enumerate(endpoint.get("relabelings", [])):
            problems += _unknown(relabeling, _RELABELING, f"podMetricsEndpoints[{i}][{j}]")
            assert relabeling.get("action", "replace").lower() in _RELABEL_ACTIONS
            assert isinstance(relabeling.get("sourceLabels", []), list)
    assert [] == problems
    selector = spec["selector"]["matchLabels"]
    for statefulset in _statefulsets():
        assert selector.items() <= _pod_labels(statefulset).items()
        names = {p["name"] for p in _container(statefulset)["ports"]}
        assert {e["port"] for e in spec["podMetricsEndpoints"]} <= names
    assert ["/metrics"] == [e.get("path", "/metrics") for e in spec["podMetricsEndpoints"]]
    assert "/metrics" in _routes()


def test_the_podmonitor_gives_the_series_the_fleet_labels() -> None:
    """job is ``[fleet] job`` (ProberDown reads its ``up``); the location label is
    ``[fleet] location_label``, from the pod label probed's own location comes from; the
    scrape interval fits four times in ``[fleet] rate_window``."""
    fleet = _fleet()
    spec = _one("PodMonitor")["spec"]
    (endpoint,) = spec["podMetricsEndpoints"]
    for statefulset in _statefulsets():
        assert fleet.job == _pod_labels(statefulset)[spec["jobLabel"]]
        label = _label_ref(_env_var(statefulset, "PROBED_DAEMON__LOCATION"))
        source = "__meta_kubernetes_pod_label_" + re.sub(r"[^A-Za-z0-9_]", "_", label)
        assert {
            "sourceLabels": [source],
            "targetLabel": fleet.location_label,
            "action": "replace",
        } in endpoint["relabelings"]
    assert 4 * parse_duration(endpoint["interval"]) <= fleet.rate_window
    assert parse_duration(endpoint["scrapeTimeout"]) <= parse_duration(endpoint["interval"])


# ---------------------------------------------------------------------------------------------
# The rules


def _rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = _one("PrometheusRule")["spec"]["groups"]
    return groups


def test_the_prometheusrule_is_well_formed() -> None:
    spec = _one("PrometheusRule")["spec"]
    assert {"groups"} == set(spec)
    problems: list[str] = []
    for group in _rule_groups():
        problems += _unknown(group, _RULE_GROUP, f"group {group.get('name')}")
        assert isinstance(group["name"], str)
        assert isinstance(group["rules"], list)
        for rule in group["rules"]:
            problems += _unknown(rule, _RULE, f"group {group['name']}")
            assert 1 == ("record" in rule) + ("alert" in rule), rule
            assert isinstance(rule["expr"], str)
    assert [] == problems
    names = [group["name"] for group in _rule_groups()]
    assert len(set(names)) == len(names)


def test_the_prometheusrule_wraps_the_generated_fleet_rules() -> None:
    generated = yaml.safe_load(render_rules(load_config(FLEET_CONFIG)))["groups"]
    assert generated == _rule_groups(), (
        "deploy/fleet/k8s/50-prometheusrule.yaml is stale: rebuild it as its header says"
    )
    alerts = {r.get("alert") for g in _rule_groups() for r in g["rules"]}
    assert set(FLEET_ALERTS) <= alerts
    assert "DegradedModeRecommended" not in alerts


def test_promtool_checks_the_prometheusrule_groups(tmp_path: Path) -> None:
    path = tmp_path / "prometheusrule.rules.yml"
    path.write_text(yaml.safe_dump({"groups": _rule_groups()}, sort_keys=False))
    result = run_promtool("check", "rules", str(path))
    assert 0 == result.returncode, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# The ConfigMap, the StatefulSets and the pods' environment


def test_the_configmap_holds_the_fleet_config() -> None:
    assert FLEET_CONFIG.read_text(encoding="utf-8") == _one("ConfigMap")["data"]["probes.toml"], (
        "deploy/fleet/k8s/10-configmap.yaml differs from deploy/fleet/probes.toml: "
        "rebuild it as its header says"
    )


def test_a_statefulset_per_fleet_location() -> None:
    """One StatefulSet per ``[fleet] locations`` entry, each the first with its location."""
    fleet = _fleet()
    located = {_pod_labels(s)["location"]: s for s in _statefulsets()}
    assert fleet.locations == sorted(located)
    first, *others = fleet.locations
    model = yaml.safe_dump(located[first])
    for location in others:
        expected = model.replace(f"probed-{first}", f"probed-{location}").replace(
            f"location: {first}\n", f"location: {location}\n"
        )
        assert yaml.safe_load(expected) == located[location], location


@pytest.mark.parametrize("statefulset", _statefulsets(), ids=lambda s: s["metadata"]["name"])
def test_the_statefulset_wiring(statefulset: dict[str, Any]) -> None:
    """Selector, Service, shards, ports, health checks, volumes and user fit together."""
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    container = _container(statefulset)
    assert spec["selector"]["matchLabels"].items() <= _pod_labels(statefulset).items()
    service = _one("Service")
    assert service["metadata"]["name"] == spec["serviceName"]
    assert "None" == service["spec"]["clusterIP"]
    assert service["spec"]["selector"].items() <= _pod_labels(statefulset).items()
    # the ordinal is the shard: as many pods as shards
    assert spec["replicas"] == _shards(statefulset)
    assert POD_INDEX_LABEL == _label_ref(_env_var(statefulset, "POD_INDEX"))
    # a Service named probed would otherwise put PROBED_PORT, PROBED_SERVICE_HOST... in the
    # environment, where probed looks for its settings
    assert pod["enableServiceLinks"] is False
    # the port: the listen address, the container port, the Service, the health checks
    env = pod_environment(statefulset, 0)
    port = int(env["PROBED_DAEMON__LISTEN"].rsplit(":", 1)[1])
    assert DEFAULT_PORT == port
    (http,) = container["ports"]
    assert (port, "http") == (http["containerPort"], http["name"])
    (service_port,) = service["spec"]["ports"]
    assert (port, "http") == (service_port["port"], service_port["targetPort"])
    assert ("/-/healthy", "http") == (
        container["livenessProbe"]["httpGet"]["path"],
        container["livenessProbe"]["httpGet"]["port"],
    )
    assert ("/-/ready", "http") == (
        container["readinessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["port"],
    )
    assert {"/-/healthy", "/-/ready"} <= _routes()
    # the config: the argument, the mounted ConfigMap and its key, the image's default
    args = container["args"]
    assert ["run", "--config"] == args[:2]
    config_path = Path(args[2])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (config_volume,) = [v for v in volumes.values() if "configMap" in v]
    assert _one("ConfigMap")["metadata"]["name"] == config_volume["configMap"]["name"]
    assert str(config_path.parent) == mounts[config_volume["name"]]["mountPath"]
    assert config_path.name in _one("ConfigMap")["data"]
    assert str(config_path) == image_env()["PROBED_CONFIG"]
    # the state: a volume per pod where the daemon keeps it, as in the image
    (claim,) = spec["volumeClaimTemplates"]
    state_dir = env["PROBED_DAEMON__STATE_DIR"]
    assert state_dir == mounts[claim["metadata"]["name"]]["mountPath"]
    assert state_dir == image_env()["PROBED_DAEMON__STATE_DIR"]
    # the image and its user
    assert _image_tag() == container["image"]
    uid = _image_uid()
    assert (uid, uid, uid) == (
        pod["securityContext"]["runAsUser"],
        pod["securityContext"]["runAsGroup"],
        pod["securityContext"]["fsGroup"],
    )


def _image_tag() -> str:
    """The image name the Dockerfile's build line gives (``docker build -t NAME .``)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^# Build: docker build -t (\S+) \.", text, re.MULTILINE)
    assert match, "the Dockerfile's build line"
    return match.group(1)


def _image_uid() -> int:
    (useradd,) = [rest for word, rest in instructions() if word == "RUN" and "useradd" in rest]
    match = re.search(r"--uid (\d+)", useradd)
    assert match
    return int(match.group(1))


def _pods() -> Iterator[Any]:
    """Every pod of every StatefulSet: (its StatefulSet, its ordinal), named as the pod."""
    for statefulset in _statefulsets():
        for index in range(statefulset["spec"]["replicas"]):
            yield pytest.param(statefulset, index, id=f"{statefulset['metadata']['name']}-{index}")


@pytest.mark.parametrize("statefulset", _statefulsets(), ids=lambda s: s["metadata"]["name"])
def test_probed_check_loads_the_configmap_with_a_pods_environment(
    statefulset: dict[str, Any], tmp_path: Path
) -> None:
    """``probed check`` accepts the ConfigMap's file with the last pod's environment and
    warns about nothing: every ``PROBED_…`` variable the manifest sets is a real setting."""
    config = _configmap_file(tmp_path)
    env = pod_environment(statefulset, statefulset["spec"]["replicas"] - 1)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROBED_")}
    result = subprocess.run(
        [sys.executable, "-m", "probed", "check", "-c", str(config)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, "") == (result.returncode, result.stderr), result.stdout + result.stderr
    assert "OK" in result.stdout


def _load_as_pod(env: dict[str, str], path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    for name in os.environ:
        if name.startswith("PROBED_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_config(path)


@pytest.mark.parametrize(("statefulset", "index"), list(_pods()))
def test_each_pod_loads_its_location_and_listen_address(
    statefulset: dict[str, Any],
    index: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = pod_environment(statefulset, index)
    config = _load_as_pod(env, _configmap_file(tmp_path), monkeypatch)
    assert _pod_labels(statefulset)["location"] == config.daemon.location
    assert config.daemon.location in _fleet().locations
    assert ("0.0.0.0", DEFAULT_PORT) == config.daemon.host_port()
    assert Path(env["PROBED_DAEMON__STATE_DIR"]) == config.daemon.state_dir


def test_each_pod_runs_its_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pod i of a location's n runs shard "i/n"; the n shards share out every probe."""
    path = _configmap_file(tmp_path)
    for statefulset in _statefulsets():
        total = statefulset["spec"]["replicas"]
        owned: list[str] = []
        whole: Config | None = None
        for index in range(total):
            config = _load_as_pod(pod_environment(statefulset, index), path, monkeypatch)
            shard = config.daemon.shard
            assert (index, total) == (shard.index, shard.total)
            assert f"{index}/{total}" == str(shard)
            owned += [spec.name for spec in config.for_shard().probes]
            whole = config
        assert whole is not None
        canaries = set(whole.recommend.canary)
        assert sorted(s.name for s in whole.probes) == sorted(set(owned))
        assert [] == [n for n in set(owned) - canaries if owned.count(n) > 1]


# ---------------------------------------------------------------------------------------------
# README.md


def test_the_readme_names_every_manifest() -> None:
    section = _kubernetes_section()
    assert [] == [p.name for p in sorted(K8S.glob("*.yaml")) if f"`{p.name}`" not in section]


def test_the_readme_states_what_the_manifests_set() -> None:
    """The "what each pod gets" table of README's Kubernetes section, from the manifests."""
    rows = _readme_rows(RUNNING_A_FLEET)
    statefulset, *_ = _statefulsets()
    container = _container(statefulset)
    env = pod_environment(statefulset, 1)
    shard = _env_var(statefulset, "PROBED_DAEMON__SHARD")["value"]
    location_label = _label_ref(_env_var(statefulset, "PROBED_DAEMON__LOCATION"))
    job_label = _one("PodMonitor")["spec"]["jobLabel"]
    port = env["PROBED_DAEMON__LISTEN"].rsplit(":", 1)[1]
    expected = {
        "image": [f"`{container['image']}`", f"`docker build -t {_image_tag()} .`",
                  f"`{_image_uid()}`"],
        "config file": [f"`{container['args'][2]}`", f"`{' '.join(container['args'])}`",
                        f"`{_one('ConfigMap')['metadata']['name']}`"],
        "port": [f"`{port}`", f"`PROBED_DAEMON__LISTEN={env['PROBED_DAEMON__LISTEN']}`",
                 "`/metrics`", "`/-/healthy`", "`/-/ready`"],
        "location": ["`PROBED_DAEMON__LOCATION`", f"`{location_label}`"],
        "shard": [f"`PROBED_DAEMON__SHARD={shard}`", f"`{POD_INDEX_LABEL}`",
                  f"`{statefulset['metadata']['name']}-1`", f"`{env['PROBED_DAEMON__SHARD']}`",
                  f"`replicas: {statefulset['spec']['replicas']}`", '"i/n"'],
        "job": [f"`{job_label}: {_pod_labels(statefulset)[job_label]}`", "`jobLabel`",
                f'`job="{_fleet().job}"`'],
        "state": [f"`{env['PROBED_DAEMON__STATE_DIR']}`", "`volumeClaimTemplates`"],
    }  # fmt: skip
    missing = {
        row: [value for value in values if value not in rows.get(row, "")]
        for row, values in expected.items()
    }
    assert {row: [] for row in expected} == missing
    interval = _one("PodMonitor")["spec"]["podMetricsEndpoints"][0]["interval"]
    assert f"every {parse_duration(interval):.0f} s" in rows["port"]
    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert f"Kubernetes {major_minor} schemas" in " ".join(_kubernetes_section().split())


def test_the_readme_section_makes_the_promise_and_names_the_alerts() -> None:
    section = _section(RUNNING_A_FLEET)
    assert "**No data is never success**" in section
    assert [] == [alert for alert in FLEET_ALERTS if f"`{alert}`" not in section]
    assert "`DegradedModeRecommended`" in section
    for name in ("prometheus-agent.yml", "prometheus-central.yml", "alertmanager.yml"):
        assert f"`deploy/fleet/{name}`" in section


def test_the_readme_fleet_example_is_the_shipped_one() -> None:
    """The ``[fleet]`` example of the README is the fleet config's section, word for word."""
    text = FLEET_CONFIG.read_text(encoding="utf-8")
    shipped = text[text.index("[fleet]\n") :].strip()
    assert f"```toml\n{shipped}\n```" in _section("### `[fleet]`")


def test_the_pod_environment_expands_as_the_kubelet_does() -> None:
    """The helper above: labels through the downward API, ``$(VAR)`` of earlier variables."""
    statefulset = _statefulsets()[0]
    env = pod_environment(statefulset, 2)
    assert "2" == env["POD_INDEX"]
    assert f"2/{statefulset['spec']['replicas']}" == env["PROBED_DAEMON__SHARD"]
    assert _pod_labels(statefulset)["location"] == env["PROBED_DAEMON__LOCATION"]
