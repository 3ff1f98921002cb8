"""Config errors a newcomer can act on: the exact line, a "did you mean", the unit expected,
and no silently ignored override."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_first_contact import probed

from probed.config import load_config
from probed.configlocate import Locator
from probed.errors import ConfigError

HEAD = """[daemon]
listen = "127.0.0.1:0"

[targets.app]
base_url = "http://127.0.0.1:9"

[[probes]]
name = "h"
kind = "http"
target = "app"
path = "/"
"""


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    """The problems ``load_config`` reports for ``text``."""
    path = tmp_path / "probes.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    return [p.replace(f"{tmp_path}/", "") for p in info.value.problems]


def test_a_misspelt_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    assert [
        "probes.toml:12: probe 'h' (probes[0]) key 'intervall': unknown key; "
        "did you mean 'interval'?"
    ] == problems(tmp_path, HEAD + 'intervall = "5s"\n')


def test_a_misspelt_section_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    text = HEAD.replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nlisten_adress = "x"')
    assert [
        "probes.toml:3: [daemon] key 'listen_adress': unknown key; did you mean 'listen'?"
    ] == problems(tmp_path, text)


def test_an_unknown_key_far_from_any_name_gets_no_guess(tmp_path: Path) -> None:
    assert ["probes.toml:12: probe 'h' (probes[0]) key 'zzzz': unknown key"] == problems(
        tmp_path, HEAD + "zzzz = 1\n"
    )


def test_a_percentage_objective_says_a_ratio_is_wanted(tmp_path: Path) -> None:
    text = HEAD + '\n[[slos]]\nname = "x"\nsli = "availability"\nprobes = ["h"]\nobjective = 99.9\n'
    assert [
        "probes.toml:17: slo 'x' (slos[0]) key 'objective': Input should be less than 1; "
        "the objective is a ratio: 99.9 % is 0.999"
    ] == problems(tmp_path, text)


def test_a_key_inside_an_inline_table_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = HEAD + (
        "json_checks = [\n"
        '  { path = "status", equals = "ok" },\n'
        '  { path = "checks.db", equals = "ok", bogus = 1 },\n'
        "]\n"
    )
    [problem] = problems(tmp_path, text)
    assert problem.startswith("probes.toml:14: probe 'h' (probes[0]) key 'json_checks.1.bogus': ")


def test_an_unknown_probed_variable_is_reported_with_a_guess(tmp_path: Path) -> None:
    """A typo in an override is not silently ignored: `check` warns, exit code still 0."""
    path = tmp_path / "probes.toml"
    path.write_text(HEAD)
    result = probed("check", "-c", str(path), PROBED_DEAMON__LISTEN="127.0.0.1:1")
    assert 0 == result.returncode, result.stderr
    assert (
        "warning: environment variable PROBED_DEAMON__LISTEN names no setting; "
        "did you mean PROBED_DAEMON__LISTEN?\n"
    ) == result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROBED_DAEMON", "listen=127.0.0.1:1"),
        ("PROBED_TARGETS__APP__HEADERS", "{'X-A': 1}"),
        ("PROBED_ALERTING__WEBHOOK_URLS", "http://127.0.0.1:9/hook"),
        ("probed_daemon", ""),
    ],
)
def test_an_override_that_must_be_json_and_is_not_is_a_config_error(
    tmp_path: Path, name: str, value: str
) -> None:
    """A section, dict or list given in a variable is JSON: anything else is the user's
    mistake, told in one line naming the variable (exit 2), not reported as a bug."""
    path = tmp_path / "probes.toml"
    path.write_text(HEAD)
    result = probed("check", "-c", str(path), cwd=tmp_path, **{name: value})
    assert 2 == result.returncode, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"{path}: environment variable {name.upper()}: a section, list or dict is given as "
        "JSON, and this value is not ("
    ), line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROBED_TARGETS__APP__HEADERS", '{"X-Env": "staging"}'),
        ("PROBED_TARGETS__APP", '{"base_url": "http://127.0.0.1:8"}'),
        ("PROBED_TARGETS", '{"app": {"base_url": "http://127.0.0.1:8"}}'),
        ("PROBED_TARGETS__APP__HEADERS__X_ENV", "staging"),
    ],
)
def test_a_table_or_section_given_as_json_is_not_reported(
    tmp_path: Path, name: str, value: str
) -> None:
    """A variable that sets a whole table or section (JSON) sets something: no warning."""
    path = tmp_path / "probes.toml"
    path.write_text(HEAD)
    result = probed("check", "-c", str(path), cwd=tmp_path, **{name: value})
    assert (0, "") == (result.returncode, result.stderr)


def test_probed_variables_that_are_not_settings_are_not_reported(tmp_path: Path) -> None:
    """PROBED_CONFIG, the client's and the demo's variables are probed's own, not overrides."""
    path = tmp_path / "probes.toml"
    path.write_text(HEAD)
    result = probed(
        "check", "-c", str(path), PROBED_CONFIG=str(path), PROBED_CLIENT_USER="u",
        PROBED_DAEMON__LOG_LEVEL="debug",
    )  # fmt: skip
    assert (0, "") == (result.returncode, result.stderr)


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ('a = [\n  { x = "}, {", y = 1 },\n  { x = 2, z = 3 },\n]\n', "a.1.z", 3),
        ('a = [\n  { x = "}, {", y = 1 },\n  { x = 2, z = 3 },\n]\n', "a.0.y", 2),
        ("a = { b = { c = [1,\n 2, { d = 4 }] } }\n", "a.b.c.2.d", 2),
        ("a = [ # a comment with ] and }\n  { q = 'a ] b' },\n  { r = 1 } ]\n", "a.1.r", 3),
        ('a = """\n{ not = a table }\n"""\nb = 1\n', "b", 4),
        ("a = [\n  1,\n  2,\n]\n", "a.5", 1),  # no such element: the key's own line
    ],
)
def test_the_locator_follows_keys_into_inline_values(text: str, key: str, line: int) -> None:
    """Strings holding brackets, comments, nested arrays and tables do not mislead it."""
    assert line == Locator(text).line("", None, key)
