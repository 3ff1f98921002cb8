"""``--shard i/n`` on the command line: ``check`` lists what a shard runs, ``run`` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_first_contact import probed

from probed.shard import owner

CONFIG = """\
[targets.app]
base_url = "http://127.0.0.1:9"

[[probes]]
name = "home"
kind = "http"
target = "app"

[[probes]]
name = "api"
kind = "http"
target = "app"

[[probes]]
name = "docs"
kind = "http"
target = "app"

[[probes]]
name = "events"
kind = "sse"
target = "app"

[[probes]]
name = "reflect"
kind = "reflect"
target = "app"
stream = "events"

[[probes]]
name = "canary"
kind = "http"
target = "app"

[[slos]]
name = "site"
sli = "availability"
probes = ["home", "api", "docs"]
objective = 0.99

[[slos]]
name = "live"
sli = "delivery_lag"
stream = "events"
threshold = "5s"
objective = 0.99

[[slos]]
name = "front"
sli = "availability"
probes = ["home"]
objective = 0.99

[recommend]
canary = ["canary"]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_the_owners_this_test_relies_on() -> None:
    """home goes to shard 1 of 2; api, docs and the stream events to shard 0."""
    assert [1, 0, 0, 0] == [owner(name, 2) for name in ("home", "api", "docs", "events")]


def test_check_lists_what_a_shard_runs(config: Path) -> None:
    """Its probes and streams in file order (followers and canaries say why they are here),
    then its SLOs with the probes they keep."""
    result = probed("check", "-c", "probes.toml", "--shard", "0/2", cwd=config.parent)
    assert (0, "") == (result.returncode, result.stderr)
    assert (
        "probes.toml: OK (6 probes, 1 targets)\n"
        "shard 0/2 runs 5 of 6 probes and streams, and 2 of 3 SLOs:\n"
        "NAME     KIND     TARGET  NOTE\n"
        "api      http     app     -\n"
        "docs     http     app     -\n"
        "events   sse      app     -\n"
        "reflect  reflect  app     follows stream events\n"
        "canary   http     app     canary: every shard runs it\n"
        "SLO   PROBES\n"
        "site  api, docs (2 of 3)\n"
        "live  events\n"
    ) == result.stdout


def test_check_lists_the_other_shard(config: Path) -> None:
    result = probed("check", "-c", "probes.toml", "--shard", "1/2", cwd=config.parent)
    assert (0, "") == (result.returncode, result.stderr)
    assert (
        "probes.toml: OK (6 probes, 1 targets)\n"
        "shard 1/2 runs 2 of 6 probes and streams, and 2 of 3 SLOs:\n"
        "NAME    KIND  TARGET  NOTE\n"
        "home    http  app     -\n"
        "canary  http  app     canary: every shard runs it\n"
        "SLO    PROBES\n"
        "site   home (1 of 3)\n"
        "front  home\n"
    ) == result.stdout


def test_check_without_shard_is_unchanged(config: Path) -> None:
    """No listing without ``--shard``, even when the file or environment sets a shard."""
    result = probed("check", "-c", "probes.toml", cwd=config.parent, PROBED_DAEMON__SHARD="1/2")
    assert (0, "", "probes.toml: OK (6 probes, 1 targets)\n") == (
        result.returncode,
        result.stderr,
        result.stdout,
    )


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2/2", 'shard 2 of 2 does not exist: shards count from 0, so "0/2" to "1/2"'),
        ("half", 'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \'half\''),
    ],
)
def test_a_bad_shard_flag_exits_2_naming_the_flag(
    config: Path, command: str, value: str, message: str
) -> None:
    """argparse's usage line, then one line naming ``--shard``; nothing starts."""
    result = probed(command, "-c", "probes.toml", "--shard", value, cwd=config.parent)
    assert 2 == result.returncode
    assert f"probed {command}: error: argument --shard: {message}" == result.stderr.splitlines()[-1]
    assert "" == result.stdout


def test_run_shard_overrides_the_file_and_the_environment(config: Path) -> None:
    """``run --shard`` wins over ``[daemon] shard`` and ``PROBED_DAEMON__SHARD``:
    ``--config.check`` then validates the file as ``check`` does."""
    path = config.parent / "probes.toml"
    path.write_text('[daemon]\nshard = "7/8"\n' + CONFIG, encoding="utf-8")
    result = probed(
        "run", "-c", "probes.toml", "--shard", "0/2", "--config.check",
        cwd=config.parent, PROBED_DAEMON__SHARD="9/9",
    )  # fmt: skip
    assert (0, "") == (result.returncode, result.stderr)
    assert result.stdout.startswith("probes.toml: OK (6 probes, 1 targets)\n")


def test_a_bad_shard_from_the_environment_is_a_config_problem(config: Path) -> None:
    """Exit 2 with the config's one line naming the variable (as every config problem)."""
    result = probed("check", "-c", "probes.toml", cwd=config.parent, PROBED_DAEMON__SHARD="0/0")
    assert 2 == result.returncode
    assert [
        "probes.toml: [daemon] key 'shard' (from environment variable PROBED_DAEMON__SHARD): "
        "the number of shards must be 1 to 1000, got 0"
    ] == result.stderr.splitlines()
