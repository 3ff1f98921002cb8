"""``[daemon] shard``: its value from the file or the environment, and what a shard runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from probed.config import Config, load_config
from probed.errors import ConfigError
from probed.shard import Shard, owner

HTTP = [f"p{i:02d}" for i in range(12)]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fleet_config(*, components: bool = True, canary: list[str] | None = None) -> str:
    """12 http probes, a stream with a reflect and an import probe following it, SLOs."""
    text = '[daemon]\nstate_dir = "/nonexistent"\n[targets.app]\nbase_url = "http://127.0.0.1:9"\n'
    for name in HTTP:
        text += f'[[probes]]\nname = "{name}"\nkind = "http"\ntarget = "app"\n'
    text += '[[probes]]\nname = "events"\nkind = "sse"\ntarget = "app"\npath = "/events"\n'
    text += '[[probes]]\nname = "reflect"\nkind = "reflect"\ntarget = "app"\nstream = "events"\n'
    text += (
        '[[probes]]\nname = "imports"\nkind = "import"\ntarget = "app"\n'
        'progress_source = "stream"\nstream = "events"\n'
    )
    text += (
        '[[slos]]\nname = "all_http"\nsli = "availability"\nobjective = 0.99\n'
        f"probes = {HTTP!r}\n".replace("'", '"')
        + '[[slos]]\nname = "first"\nsli = "availability"\nobjective = 0.99\nprobes = ["p00"]\n'
        '[[slos]]\nname = "lag"\nsli = "delivery_lag"\nobjective = 0.99\nstream = "events"\n'
        'threshold = "5s"\n'
    )
    if components:
        text += (
            '[[components]]\nname = "Web"\nprobes = ["p00", "p01", "p02", "p03", "p04", "p05"]\n'
            '[[components]]\nname = "Live"\nprobes = ["events", "reflect"]\n'
            '[[components]]\nname = "Jobs"\nprobes = ["imports"]\n'
            '[[components]]\nname = "Console"\nprobes = []\n'
        )
    if canary is not None:
        text += f"[recommend]\ncanary = {canary!r}\n".replace("'", '"')
    return text


def names(config: Config) -> set[str]:
    return {spec.name for spec in config.probes}


def test_one_shard_by_default_which_owns_everything(tmp_path: Path) -> None:
    """Without ``shard`` the instance is shard 0 of 1, and its config is the whole file."""
    config = load_config(write(tmp_path, fleet_config()), {})
    assert Shard(0, 1) == config.daemon.shard
    assert config is config.for_shard()
    assert config.components == config.status_components


def test_the_file_and_the_environment_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shard = "1/3"`` in the file; ``PROBED_DAEMON__SHARD`` overrides it."""
    path = write(tmp_path, fleet_config().replace("[daemon]\n", '[daemon]\nshard = "1/3"\n'))
    assert Shard(1, 3) == load_config(path, {}).daemon.shard
    monkeypatch.setenv("PROBED_DAEMON__SHARD", "2/4")
    assert Shard(2, 4) == load_config(path, {}).daemon.shard


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"3/3"', 'shard 3 of 3 does not exist: shards count from 0, so "0/3" to "2/3"'),
        ('"two"', 'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \'two\''),
        ("1", 'a shard is a string "i/n", shard i of n counted from 0 (e.g. "0/3"), got 1'),
    ],
)
def test_a_bad_value_in_the_file_is_one_line_naming_the_key(
    tmp_path: Path, value: str, message: str
) -> None:
    """The problem names the file, the line and ``[daemon] key 'shard'``."""
    path = write(tmp_path, fleet_config().replace("[daemon]\n", f"[daemon]\nshard = {value}\n"))
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert [f"{path}:2: [daemon] key 'shard': {message}"] == info.value.problems


def test_a_bad_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PROBED_DAEMON__SHARD=1/0`` is refused naming the variable, not a line of the file."""
    monkeypatch.setenv("PROBED_DAEMON__SHARD", "1/0")
    path = write(tmp_path, fleet_config())
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert [
        f"{path}:1: [daemon] key 'shard' (from environment variable PROBED_DAEMON__SHARD): "
        "the number of shards must be 1 to 1000, got 0"
    ] == info.value.problems


def key(name: str) -> str:
    """What a probe is owned by: its name, or the stream it follows (reflect, import)."""
    return "events" if name in ("reflect", "imports") else name


@pytest.mark.parametrize("total", range(1, 9))
def test_shards_of_a_config_are_disjoint_and_cover_it(tmp_path: Path, total: int) -> None:
    """For n = 1 … 8 every probe and stream runs on exactly one shard, the owner of its key;
    a probe following a stream runs where the stream is watched."""
    config = load_config(write(tmp_path, fleet_config()), {})
    shards = [config.for_shard(Shard(index, total)) for index in range(total)]
    owned = [names(shard) for shard in shards]
    assert sum(len(o) for o in owned) == len(config.probes)
    assert names(config) == set().union(*owned)
    for index, shard in enumerate(shards):
        assert Shard(index, total) == shard.daemon.shard
        assert {n for n in names(config) if owner(key(n), total) == index} == owned[index]
        assert {"reflect", "imports"} <= names(shard) or not {"reflect", "imports"} & names(shard)
        assert ("events" in names(shard)) == ("reflect" in names(shard))


@pytest.mark.parametrize("total", range(1, 8))
def test_growing_by_one_shard_moves_probes_only_to_the_new_shard(
    tmp_path: Path, total: int
) -> None:
    """n → n+1: a probe stays on its shard or moves to the new one."""
    config = load_config(write(tmp_path, fleet_config()), {})
    before = {n: i for i in range(total) for n in names(config.for_shard(Shard(i, total)))}
    after = {n: i for i in range(total + 1) for n in names(config.for_shard(Shard(i, total + 1)))}
    assert {total} >= {after[n] for n in before if after[n] != before[n]}


@pytest.mark.parametrize("total", [2, 3, 5])
def test_a_shard_keeps_the_slos_and_components_of_what_it_owns(tmp_path: Path, total: int) -> None:
    """An SLO or component keeps its probes this shard owns and is left out without any;
    a component empty in the whole file (not monitored anywhere) stays."""
    config = load_config(write(tmp_path, fleet_config()), {})
    for index in range(total):
        shard = config.for_shard(Shard(index, total))
        mine = names(shard)
        expected_slos = {}
        if http := [p for p in HTTP if p in mine]:
            expected_slos["all_http"] = http
        if "p00" in mine:
            expected_slos["first"] = ["p00"]
        if "events" in mine:
            expected_slos["lag"] = []
        assert expected_slos == {slo.name: slo.probes for slo in shard.slos}
        expected = {
            name: [p for p in members if p in mine]
            for name, members in (
                ("Web", HTTP[:6]),
                ("Live", ["events", "reflect"]),
                ("Jobs", ["imports"]),
            )
            if any(p in mine for p in members)
        }
        expected["Console"] = []
        assert expected == {c.name: c.probes for c in shard.status_components}
        assert shard.components == shard.status_components


def test_a_shard_keeps_the_default_components_it_has_probes_of(tmp_path: Path) -> None:
    """Without ``[[components]]`` the five defaults are made from the whole file, then a
    shard leaves out those whose probes are all elsewhere (Console/Admin, empty, stays)."""
    config = load_config(write(tmp_path, fleet_config(components=False)), {})
    whole = {c.name: c.probes for c in config.status_components}
    assert [] == config.components
    for index in range(3):
        shard = config.for_shard(Shard(index, 3))
        mine = names(shard)
        assert {
            name: [p for p in members if p in mine]
            for name, members in whole.items()
            if not members or any(p in mine for p in members)
        } == {c.name: c.probes for c in shard.status_components}


def test_a_shard_that_owns_nothing_shows_no_component_with_members(tmp_path: Path) -> None:
    """More shards than probes: an idle shard runs nothing and reports nothing of the others."""
    text = fleet_config().split("[[probes]]")[0] + (
        '[[probes]]\nname = "only"\nkind = "http"\ntarget = "app"\n'
        '[[components]]\nname = "Web"\nprobes = ["only"]\n'
    )
    config = load_config(write(tmp_path, text), {})
    idle = next(i for i in range(2) if owner("only", 2) != i)
    shard = config.for_shard(Shard(idle, 2))
    assert ([], [], []) == (shard.probes, shard.slos, shard.status_components)


def test_canary_probes_run_on_every_shard(tmp_path: Path) -> None:
    """A canary judges the prober's own vantage point, so every shard runs it (and the
    stream it follows); the other probes stay disjoint."""
    config = load_config(write(tmp_path, fleet_config(canary=["p03", "reflect"])), {})
    shards = [names(config.for_shard(Shard(index, 4))) for index in range(4)]
    assert all({"p03", "reflect", "events"} <= owned for owned in shards)
    rest = [owned - {"p03", "reflect", "events"} for owned in shards]
    assert sum(len(r) for r in rest) == len(config.probes) - 3
    assert ["p03", "reflect"] == config.for_shard(Shard(1, 4)).recommend.canary
