"""``PROBED_…`` environment overrides: names, nesting, JSON values and what is ignored.

These pin how the overrides read the environment (precedence over the file, names without
regard to case, ``__`` between levels, JSON for models, dicts and lists), so that the code
reading them can change without users noticing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from probed.config import Config, DaemonConfig, load_config
from probed.errors import ConfigError
from probed.model import ValidationError

CONFIGS = Path(__file__).parent / "configs"
GOOD_ENV = {"TEST_PASSWORD": "s3cret-pw", "TEST_API_KEY": "key-123456"}

RAW: dict[str, Any] = {
    "daemon": {"listen": "127.0.0.1:9", "location": "lab"},
    "targets": {
        "app": {"base_url": "http://app.example", "headers": {"X-A": "1"}},
        "APP2": {"base_url": "http://app2.example"},
    },
    "alerting": {"webhook_urls": ["http://hook.example/"]},
    "probes": [{"kind": "http", "name": "health", "target": "app", "path": "/h"}],
}
FLEET = {**RAW, "fleet": {"locations": ["a", "b"]}}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``PROBED_*`` variable but those the test sets."""
    for name in list(os.environ):
        if name.upper().startswith("PROBED"):
            monkeypatch.delenv(name)
    return monkeypatch


def _config(env: pytest.MonkeyPatch, variables: dict[str, str], raw: dict[str, Any]) -> Config:
    for name, value in variables.items():
        env.setenv(name, value)
    return Config(**raw)


def _targets(cfg: Config) -> dict[str, str]:
    return {name: target.base_url for name, target in cfg.targets.items()}


@pytest.mark.parametrize(
    "name", ["PROBED_DAEMON__LOCATION", "probed_daemon__location", "Probed_Daemon__Location"]
)
def test_names_match_without_case(env: pytest.MonkeyPatch, name: str) -> None:
    """A variable's name matches in any case, and it wins over the file."""
    assert "eu" == _config(env, {name: "eu"}, RAW).daemon.location


def test_variables_naming_no_field_are_ignored(env: pytest.MonkeyPatch) -> None:
    """``PROBED_*`` variables naming no field (test-only ones, typos) change nothing."""
    variables = {
        "PROBED_TEST_EVENT_LOOP": "uvloop",
        "PROBED_DEAMON__LISTEN": "0.0.0.0:1",
        "PROBED_BOGUS__X": "1",
        "PROBED_CONFIG": "x.toml",
        "PROBED_": "1",
    }
    assert Config(**RAW) == _config(env, variables, RAW)


def test_an_unknown_key_inside_a_section_is_refused(env: pytest.MonkeyPatch) -> None:
    """``PROBED_DAEMON__FOO`` names a key ``[daemon]`` does not have: refused, named."""
    env.setenv("PROBED_DAEMON__FOO", "1")
    path = CONFIGS / "good.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=GOOD_ENV)
    assert [
        f"{path}:2: [daemon] key 'foo' (from environment variable PROBED_DAEMON__FOO): unknown key"
    ] == info.value.problems


def test_dict_keys_are_lower_case(env: pytest.MonkeyPatch) -> None:
    """A target's name from a variable is lower-cased: ``APP2`` of the file is another one."""
    cfg = _config(env, {"PROBED_TARGETS__APP2__BASE_URL": "http://x.example"}, RAW)
    assert {
        "app": "http://app.example",
        "APP2": "http://app2.example",
        "app2": "http://x.example",
    } == _targets(cfg)


def test_a_variable_adds_a_target(env: pytest.MonkeyPatch) -> None:
    """``PROBED_TARGETS__NEW__BASE_URL`` adds a target; one without base_url is refused."""
    cfg = _config(env, {"PROBED_TARGETS__NEW__BASE_URL": "http://new.example"}, RAW)
    assert "http://new.example" == cfg.targets["new"].base_url
    env.delenv("PROBED_TARGETS__NEW__BASE_URL")
    env.setenv("PROBED_TARGETS__NEW__INSECURE_SKIP_VERIFY", "true")
    with pytest.raises(ValidationError) as info:
        Config(**RAW)
    assert [("missing", ("targets", "new", "base_url"))] == [
        (e["type"], e["loc"]) for e in info.value.errors()
    ]


def test_json_values_for_dicts_and_lists(env: pytest.MonkeyPatch) -> None:
    """A dict or list value is JSON; a dict merges into the file's, a list replaces it."""
    cfg = _config(
        env,
        {
            "PROBED_TARGETS__APP__HEADERS": '{"X-B": "2"}',
            "PROBED_TARGETS__APP__HEADERS__X-C": "3",
            "PROBED_ALERTING__WEBHOOK_URLS": '["http://a.example/"]',
        },
        RAW,
    )
    assert {"X-A": "1", "X-B": "2", "x-c": "3"} == cfg.targets["app"].headers
    assert ["http://a.example/"] == cfg.alerting.webhook_urls


def test_json_for_a_whole_section(env: pytest.MonkeyPatch) -> None:
    """``PROBED_DAEMON='{…}'`` merges into the file's ``[daemon]`` (its keys in any case),
    and a ``PROBED_DAEMON__KEY`` beside it merges too; ``null`` changes nothing."""
    variables = {"PROBED_DAEMON": '{"LISTEN": "0.0.0.0:3"}', "PROBED_DAEMON__LOCATION": "j"}
    daemon = _config(env, variables, RAW).daemon
    assert ("0.0.0.0:3", "j") == (daemon.listen, daemon.location)
    env.setenv("PROBED_DAEMON", "null")
    env.delenv("PROBED_DAEMON__LOCATION")
    assert Config(**RAW).daemon.listen == "127.0.0.1:9"
    env.setenv("PROBED_TARGETS", '{"z": {"base_url": "http://z.example"}}')
    assert {"app", "APP2", "z"} == set(Config(**RAW).targets)


def test_fleet_from_the_environment(env: pytest.MonkeyPatch) -> None:
    """``[fleet]`` (optional) takes JSON too; ``null`` keeps the file's, a non-JSON value
    reaches validation as a string."""
    cfg = _config(env, {"PROBED_FLEET__LOCATIONS": '["c", "d"]'}, FLEET)
    assert cfg.fleet is not None
    assert ["c", "d"] == cfg.fleet.locations
    env.delenv("PROBED_FLEET__LOCATIONS")
    env.setenv("PROBED_FLEET", "null")
    assert ["a", "b"] == Config(**FLEET).fleet.locations  # type: ignore[union-attr]
    env.setenv("PROBED_FLEET", "notjson")
    with pytest.raises(ValidationError) as info:
        Config(**FLEET)
    assert [("model_type", ("fleet",))] == [(e["type"], e["loc"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROBED_ALERTING__WEBHOOK_URLS", "http://a.example/"),
        ("PROBED_TARGETS__APP__HEADERS", "notjson"),
        ("PROBED_DAEMON", "notjson"),
        ("PROBED_DAEMON", ""),
    ],
)
def test_a_value_that_must_be_json_and_is_not(
    env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A list, dict or section value that is not JSON is refused naming the variable."""
    env.setenv(name, value)
    with pytest.raises(ValueError, match=f"^environment variable {name}: a section, list or"):
        Config(**RAW)


@pytest.mark.parametrize(
    ("variables", "errors"),
    [
        ({"PROBED_DAEMON__LISTEN": ""}, [("value_error", ("daemon", "listen"))]),
        ({"PROBED_DAEMON__LISTEN__X": "1"}, [("string_type", ("daemon", "listen"))]),
        ({"PROBED_DAEMON__PROBED_LISTEN": "1"}, [("extra_forbidden", ("daemon", "probed_listen"))]),
        ({"PROBED_DAEMON__": "1"}, [("extra_forbidden", ("daemon", ""))]),
        ({"PROBED_TARGETS__APP": "notjson"}, [("model_type", ("targets", "app"))]),
        ({"PROBED_RECOMMEND__CANARY": '"x"'}, [("list_type", ("recommend", "canary"))]),
        ({"PROBED_ALERTING__WEBHOOK_URLS": ""}, [("list_type", ("alerting", "webhook_urls"))]),
        ({"PROBED_PROBES__0__TIMEOUT": "1s"}, [("list_type", ("probes",))]),
        (
            {"PROBED_FLEET__MIN_FAILING_LOCATIONS": "null"},
            [("int_parsing", ("fleet", "min_failing_locations"))],
        ),
    ],
)
def test_values_reach_validation_as_given(
    env: pytest.MonkeyPatch, variables: dict[str, str], errors: list[tuple[str, tuple[str, ...]]]
) -> None:
    """Empty values, keys below a plain value, strings for lists: validation refuses them."""
    with pytest.raises(ValidationError) as info:
        _config(env, variables, FLEET)
    assert errors == [(e["type"], e["loc"]) for e in info.value.errors()]


def test_typed_values_from_strings(env: pytest.MonkeyPatch) -> None:
    """Numbers, booleans, paths and the shard are parsed from the variable's string."""
    daemon = _config(
        env,
        {
            "PROBED_DAEMON__MAX_CONCURRENCY": "5",
            "PROBED_DAEMON__ALLOW_NO_PROBES": "true",
            "PROBED_DAEMON__WEB_CONFIG_FILE": "/x",
            "PROBED_DAEMON__SHARD": "1/2",
            "PROBED_DAEMON__HTTP_MAX_CONNECTIONS": "7",
        },
        RAW,
    ).daemon
    assert (5, True, Path("/x"), "1/2", 7) == (
        daemon.max_concurrency,
        daemon.allow_no_probes,
        daemon.web_config_file,
        str(daemon.shard),
        daemon.http_max_connections,
    )


def test_a_section_given_as_a_model_is_replaced(env: pytest.MonkeyPatch) -> None:
    """``Config(daemon=DaemonConfig(…))`` with a ``PROBED_DAEMON__…`` variable set: the
    variable's keys stand alone, the given model is not merged into."""
    given = {"daemon": DaemonConfig(location="y", state_dir=Path("/keep"))}
    daemon = _config(env, {"PROBED_DAEMON__LOCATION": "x"}, given).daemon
    assert ("x", Path("/var/lib/probed")) == (daemon.location, daemon.state_dir)


def test_loading_a_config_imports_no_schema_library() -> None:
    """The config models check themselves (``probed.model``): importing the daemon and
    loading the shipped file imports neither pydantic nor pydantic-settings (together
    about 10 MB of the daemon's idle RSS and 0.15-0.2 s of its start, bench/README.md)."""
    code = (
        "import sys, probed.daemon, probed.config; probed.config.load_config('probes.toml'); "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('pydantic')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "[]" == out.stdout.strip()
