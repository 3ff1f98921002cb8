"""Config loading: durations, secrets, env overrides, and one bad fixture per rule."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probed.config import DEFAULT_PORT, FixtureProbe, HttpProbe, LoginProbe, load_config
from probed.durations import format_duration, parse_duration
from probed.errors import ConfigError
from probed.model import ValidationError

CONFIGS = Path(__file__).parent / "configs"
BAD = CONFIGS / "bad"
GOOD_ENV = {"TEST_PASSWORD": "s3cret-pw", "TEST_API_KEY": "key-123456"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("15s", 15.0), ("5m", 300.0), ("1h30m", 5400.0), ("1d", 86400.0),
     ("1.5s", 1.5), (" 2s ", 2.0)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    """Human durations parse to seconds."""
    assert seconds == parse_duration(text)


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "5sec", "-1s", "0s", "1m-2s"])
def test_parse_duration_rejects(text: str) -> None:
    """Malformed or non-positive durations are rejected."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.25, 1.0, 15.0, 90.0, 300.0, 3600.0, 86400.0, 0.0015])
def test_format_duration_round_trips(seconds: float) -> None:
    """format_duration output parses back to the same value."""
    assert seconds == pytest.approx(parse_duration(format_duration(seconds)))


def test_good_config_loads() -> None:
    """The reference config loads with every kind, defaults and resolved secrets."""
    cfg = load_config(CONFIGS / "good.toml", environ=GOOD_ENV)
    assert ["health", "login", "indicators"] == [p.name for p in cfg.probes]
    health, login, fixture = cfg.probes
    assert isinstance(health, HttpProbe)
    assert isinstance(login, LoginProbe)
    assert isinstance(fixture, FixtureProbe)
    assert 0.25 == login.latency_threshold
    assert "s3cret-pw" == login.password_value()
    assert {"X-Env": "test", "X-Api-Key": "key-123456"} == cfg.targets["app"].resolved_headers()
    assert b'{"symbol": "X", "closes": [1, 2, 3]}\n' == fixture.input_bytes()
    assert {"s3cret-pw", "key-123456"} == set(cfg.secret_values())
    assert "test-lab" == cfg.daemon.location


def test_secrets_never_in_repr() -> None:
    """Resolved secrets do not appear in the config's repr or model dump."""
    cfg = load_config(CONFIGS / "good.toml", environ=GOOD_ENV)
    assert "s3cret-pw" not in repr(cfg)
    assert "s3cret-pw" not in str(cfg.model_dump())
    assert "key-123456" not in repr(cfg)


def test_default_listen_is_loopback() -> None:
    """Without a [daemon] section the daemon listens on loopback on the default port."""
    cfg = load_config(BAD / "missing_credential.toml", {"CREDENTIALS_DIRECTORY": str(CONFIGS)})
    assert ("127.0.0.1", DEFAULT_PORT) == cfg.daemon.host_port()
    assert 10115 == DEFAULT_PORT


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """PROBED_* environment variables override values from the file."""
    monkeypatch.setenv("PROBED_DAEMON__LOCATION", "eu-west")
    monkeypatch.setenv("PROBED_TARGETS__APP__BASE_URL", "http://127.0.0.1:2")
    cfg = load_config(CONFIGS / "good.toml", environ=GOOD_ENV)
    assert "eu-west" == cfg.daemon.location
    assert "http://127.0.0.1:2" == cfg.targets["app"].base_url


def test_bad_env_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid environment override is reported with the variable's name."""
    monkeypatch.setenv("PROBED_DAEMON__LISTEN", "nope")
    path = CONFIGS / "good.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=GOOD_ENV)
    assert [
        f"{path}:3: [daemon] key 'listen' (from environment variable PROBED_DAEMON__LISTEN): "
        "listen must be HOST:PORT (e.g. '127.0.0.1:10115'), got 'nope'"
    ] == info.value.problems


def _list_env_message(path: Path, variable: str, field: str) -> str:
    return (
        f"{path}: environment variable {variable}: {field!r} is a list, and lists come from "
        "the config file; environment variables override single values "
        "(e.g. PROBED_DAEMON__LISTEN)"
    )


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("PROBED_PROBES", "[]", "probes"),
        ("PROBED_SLOS", "[]", "slos"),
        ("probed_components", "[]", "components"),
        ("PROBED_PROBES__0__TIMEOUT", "1s", "probes"),
    ],
)
def test_env_cannot_replace_a_list(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    """An environment variable that would replace (or index into) a top-level list is refused."""
    monkeypatch.setenv(variable, value)
    path = CONFIGS / "good.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=GOOD_ENV)
    assert [_list_env_message(path, variable, field)] == info.value.problems


def test_check_refuses_a_list_from_the_environment() -> None:
    """``probed check`` with PROBED_PROBES set exits 2 with one line on stderr, no traceback."""
    path = CONFIGS / "good.toml"
    env = {**os.environ, **GOOD_ENV, "PROBED_PROBES": "[]"}
    out = subprocess.run(
        [sys.executable, "-m", "probed", "check", "-c", str(path)],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert (2, "", _list_env_message(path, "PROBED_PROBES", "probes") + "\n") == (
        out.returncode,
        out.stdout,
        out.stderr,
    )


def test_credentials_directory_value(tmp_path: Path) -> None:
    """A credential is read from $CREDENTIALS_DIRECTORY (systemd LoadCredential=)."""
    (tmp_path / "probe-password").write_text("from-systemd\n")
    cfg = load_config(BAD / "missing_credential.toml", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    login = cfg.probes[0]
    assert isinstance(login, LoginProbe)
    assert "from-systemd" == login.password_value()


@pytest.mark.parametrize("name", ["../outside", "sub/name", "..", ".", "", "a\0b"])
def test_credential_name_must_be_plain(tmp_path: Path, name: str) -> None:
    """A credential name with a '/' or NUL, or '.', '..' or empty, is refused unread."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sub").mkdir()
    (creds / "sub" / "name").write_text("nested\n")
    (creds / "a").write_text("a\n")
    (tmp_path / "outside").write_text("outside-secret\n")
    path = tmp_path / "probes.toml"
    path.write_text(
        (BAD / "credential_path.toml")
        .read_text()
        .replace('"../../../etc/hostname"', '"' + name.replace("\0", "\\u0000") + '"')
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert [
        f"{path}:9: probe 'login' (probes[0]) key 'password': secret not available: "
        f"credential name {name!r} is not a plain name (no '/' or NUL, not '.' or '..')"
    ] == info.value.problems


_HEADER_SECRET = """[targets.app]
base_url = "http://127.0.0.1:1"
headers = { "X-Api-Key" = { file = "key.secret" } }

[[probes]]
name = "health"
kind = "http"
target = "app"
headers = { "Authorization" = { file = "key.secret" }, "X-Tab" = "a\tb" }
"""


def test_multiline_secret_header_is_refused(tmp_path: Path) -> None:
    """A secret with a line break inside, used as a header value, fails naming where, not what."""
    (tmp_path / "key.secret").write_text("abc\ndef\n")
    path = tmp_path / "probes.toml"
    path.write_text(_HEADER_SECRET)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    refused = (
        "the header value (from file key.secret) contains a line break or another control "
        "character; a header value must be one line"
    )
    assert [
        f"{path}:9: probe 'health' (probes[0]) key 'headers.Authorization': {refused}",
        f"{path}:3: target 'app' key 'headers.X-Api-Key': {refused}",
    ] == info.value.problems
    assert "abc" not in str(info.value)


def test_secret_file_trailing_newline_is_stripped(tmp_path: Path) -> None:
    """A secret file's trailing newline is not part of the header value; a tab is allowed."""
    (tmp_path / "key.secret").write_text("abc\n")
    path = tmp_path / "probes.toml"
    path.write_text(_HEADER_SECRET)
    cfg = load_config(path, {})
    assert {"Authorization": "abc", "X-Tab": "a\tb"} == cfg.probes[0].resolved_headers()
    assert {"X-Api-Key": "abc"} == cfg.targets["app"].resolved_headers()


def test_missing_file() -> None:
    """A config path that does not exist is a clear error."""
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "nope.toml")
    assert [f"{CONFIGS / 'nope.toml'}: cannot read config file: No such file or directory"] == (
        info.value.problems
    )


BAD_CASES = {
    "unknown_key": "8: probe 'health' (probes[0]) key 'pathh': unknown key; did you mean 'path'?",
    "unknown_kind": "6: probe 'health' (probes[0]) key 'kind': unknown kind 'icmp'; "
    "expected one of: http, login, fixture, reflect, import, sse",
    "missing_kind": "4: probe 'health' (probes[0]) key 'kind': missing key 'kind'; "
    "expected one of: http, login, fixture, reflect, import, sse",
    "timeout_not_below_interval": "9: probe 'health' (probes[0]) key 'timeout': "
    "timeout 10s must be shorter than interval 10s",
    "duplicate_name": "10: probe 'health' (probes[1]) key 'name': "
    "duplicate probe name (first used by probes[0])",
    "unknown_target": "7: probe 'health' (probes[0]) key 'target': "
    "unknown target 'staging' (targets: app)",
    "missing_secret_env": "9: probe 'login' (probes[0]) key 'password': secret not available: "
    "environment variable PROBED_TEST_UNSET_PASSWORD is not set",
    "missing_secret_file": "9: probe 'login' (probes[0]) key 'password': secret not available: "
    "cannot read secret file {dir}/does-not-exist.secret: No such file or directory",
    "missing_credential": "9: probe 'login' (probes[0]) key 'password': secret not available: "
    "credential 'probe-password' requested but $CREDENTIALS_DIRECTORY is not set "
    "(use LoadCredential= in the systemd unit)",
    "credential_path": "9: probe 'login' (probes[0]) key 'password': secret not available: "
    "credential name '../../../etc/hostname' is not a plain name "
    "(no '/' or NUL, not '.' or '..')",
    "secret_file_nul": "9: probe 'login' (probes[0]) key 'password': secret not available: "
    "file name 'a\\x00b' contains a NUL byte",
    "multiline_header": "3: target 'app' key 'headers.X-Note': the header value contains a "
    "line break or another control character; a header value must be one line",
    "inline_password": "9: probe 'login' (probes[0]) key 'password': inline secrets are not "
    'accepted; write { env = "NAME" }, { file = "/path" } or { credential = "name" }',
    "bad_duration": "8: probe 'health' (probes[0]) key 'interval': invalid duration "
    "'15 seconds': use a number and a unit (ms, s, m, h, d), e.g. '250ms', '15s', '5m', '1h30m'",
    "bare_number_duration": "8: probe 'health' (probes[0]) key 'timeout': a bare number is "
    "ambiguous: write the unit, e.g. '5s' or '5ms'",
    "bad_probe_name": "5: probe 'Health Check' (probes[0]) key 'name': probe name "
    "'Health Check' must match [a-z][a-z0-9_]* (max 63 characters): it becomes a metric label",
    "bad_listen": "2: [daemon] key 'listen': listen must be HOST:PORT "
    "(e.g. '127.0.0.1:10115'), got 'localhost'",
    "invalid_toml": "1: invalid TOML: Expected ']' at the end of a table declaration "
    "(at line 1, column 13)",
    "missing_required": "4: probe 'login' (probes[0]) key 'username': required key is missing",
    "threshold_over_timeout": "9: probe 'health' (probes[0]) key 'latency_threshold': "
    "latency_threshold 2s is longer than timeout 1s: it could never fire",
    "bad_regex": "8: probe 'health' (probes[0]) key 'body_regex': invalid regular expression "
    "'([a-z': unterminated character set at position 1",
    "bad_base_url": "2: target 'app' key 'base_url': base_url must be an absolute http(s) URL, "
    "got 'ftp://files.invalid'",
    "missing_fixture_input": "8: probe 'indicators' (probes[0]) key 'input_file': cannot read "
    "{dir}/no-such-input.json: No such file or directory",
    "maintenance_end_before_start": "12: maintenance[0] key 'end': end 2027-01-15T08:30:00Z "
    "is not after start 2027-01-15T09:00:00Z",
    "bad_status": "8: probe 'health' (probes[0]) key 'expect_status': expect_status must be "
    "non-empty HTTP status codes, got [200, 700]",
    "unknown_scenario": "10: playbook 'login_slow' (playbooks[0]) key 'scenario': unknown "
    "scenario 'login_slow'; did you mean 'login_degraded'? (scenarios: target_down, "
    "health_failing, sse_degraded, backlog, rate_limited, login_degraded, ai_errors, fast_burn)",
    "duplicate_scenario": "14: playbook 'login_degraded' (playbooks[1]) key 'scenario': "
    "duplicate scenario (first used by playbooks[0])",
    "empty_actions": "11: playbook 'backlog' (playbooks[0]) key 'actions': actions must be a "
    "non-empty list of non-empty strings",
    "bad_runbook_url": "12: playbook 'backlog' (playbooks[0]) key 'runbook_url': runbook_url "
    "must be an absolute http(s) URL, got 'wiki/backlog'",
    "unknown_placeholder": "12: playbook 'backlog' (playbooks[0]) key 'rollback': unknown "
    "placeholder(s) {queue_exit} (placeholders: exit_for, probe_failure_ratio_exit, "
    "stream_lag_p95, backlog_queue_exit, backlog_stuck_exit, rate_limited_share_exit, "
    "login_failure_ratio_exit, login_p95, ai_error_ratio_exit, fast_burn_rate)",
}


def test_every_bad_fixture_has_a_case() -> None:
    """Each file in tests/configs/bad is covered by BAD_CASES and vice versa."""
    assert sorted(BAD_CASES) == sorted(p.stem for p in BAD.glob("*.toml"))


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_config_exact_message(name: str) -> None:
    """Each rule's fixture fails with exactly one message naming file, line, probe and key."""
    path = BAD / f"{name}.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"HOME": "/root"})
    expected = f"{path}:" + BAD_CASES[name].replace("{dir}", str(BAD))
    assert [expected] == info.value.problems


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    """Several problems in one file are all reported, not just the first."""
    path = tmp_path / "probes.toml"
    path.write_text(
        '[targets.app]\nbase_url = "http://127.0.0.1:1"\n\n'
        '[[probes]]\nname = "a"\nkind = "http"\ntarget = "nope"\n\n'
        '[[probes]]\nname = "a"\nkind = "http"\ntarget = "app"\ntimeout = "1m"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert 3 == len(info.value.problems)


def test_models_forbid_unknown_keys() -> None:
    """Models reject unknown keys even when built directly."""
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        HttpProbe(name="x", target="t", bogus=1)


def test_a_config_without_probes_is_refused_unless_allowed(tmp_path: Path) -> None:
    """An empty file is an error naming the flag; with allow_no_probes = true it loads."""
    path = tmp_path / "probes.toml"
    path.write_text("")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [
        f"{path}: no probes configured (an empty or cut-short file?); "
        "set allow_no_probes = true under [daemon] if that is intended"
    ] == caught.value.problems
    path.write_text("[daemon]\nallow_no_probes = true\n")
    assert [] == load_config(path).probes


def test_the_config_and_its_errors_carry_the_file_hash(tmp_path: Path) -> None:
    """A loaded config and the error of a readable bad file carry the hash of the bytes read;
    an unreadable file's error carries none."""
    path = tmp_path / "probes.toml"
    path.write_bytes(b"[daemon]\nallow_no_probes = true\n")
    before = time.time()
    cfg = load_config(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] == cfg.source_hash
    assert before <= (cfg.loaded_at or 0) <= time.time()
    path.write_bytes(b"[daemon]\n# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] == caught.value.file_hash
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert None is caught.value.file_hash


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "same-origin"), (False, "none"), ("same-host", "same-host"), ("any", "any")],
)
def test_follow_redirects_values(value: bool | str, expected: str) -> None:
    """``follow_redirects`` takes a policy name; old ``true``/``false`` mean same-origin/none."""
    spec = HttpProbe(name="x", target="t", follow_redirects=value)

    assert expected == spec.follow_redirects


def test_follow_redirects_defaults_to_same_origin() -> None:
    """Without ``follow_redirects`` a probe follows redirects only within its origin."""
    spec = HttpProbe(name="x", target="t")

    assert ("same-origin", False) == (spec.follow_redirects, spec.allow_insecure_redirects)


def test_follow_redirects_rejects_other_values() -> None:
    """An unknown redirect policy is rejected, naming the allowed ones."""
    with pytest.raises(ValidationError, match="'same-origin', 'same-host', 'any' or 'none'"):
        HttpProbe(name="x", target="t", follow_redirects="sometimes")


def test_a_schema_error_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    """A typo in one probe is reported together with the other probes' and SLOs' problems."""
    path = tmp_path / "probes.toml"
    path.write_text(
        '[targets.app]\nbase_url = "http://127.0.0.1:1"\n\n'
        '[[probes]]\nname = "health"\nkind = "http"\ntarget = "app"\nintervall = "5s"\n\n'
        '[[probes]]\nname = "ready"\nkind = "http"\ntarget = "nope"\n\n'
        '[[slos]]\nname = "s"\nsli = "availability"\nprobes = ["gone"]\nobjective = 0.99\n'
        'window = "1h"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [
        f"{path}:8: probe 'health' (probes[0]) key 'intervall': unknown key; "
        "did you mean 'interval'?",
        f"{path}:13: probe 'ready' (probes[1]) key 'target': unknown target 'nope' (targets: app)",
        f"{path}:18: slo 's' (slos[0]) key 'probes': unknown probe(s) 'gone'",
    ] == caught.value.problems


def _event_loop_config(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\n{line}\n[targets.app]\n'
        'base_url = "http://127.0.0.1:9"\n\n[[probes]]\nname = "h"\nkind = "http"\n'
        'target = "app"\npath = "/"\n'
    )
    return path


def test_event_loop_defaults_to_uvloop_on_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``event_loop`` the daemon runs on uvloop on Linux, asyncio's loop elsewhere."""
    monkeypatch.delenv("PROBED_DAEMON__EVENT_LOOP", raising=False)
    cfg = load_config(_event_loop_config(tmp_path, ""))
    assert ("uvloop" if sys.platform == "linux" else "asyncio") == cfg.daemon.event_loop


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_event_loop_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """``[daemon] event_loop`` chooses the loop; PROBED_DAEMON__EVENT_LOOP overrides it."""
    monkeypatch.delenv("PROBED_DAEMON__EVENT_LOOP", raising=False)
    assert (
        name
        == load_config(_event_loop_config(tmp_path, f'event_loop = "{name}"')).daemon.event_loop
    )
    other = "asyncio" if name == "uvloop" else "uvloop"
    monkeypatch.setenv("PROBED_DAEMON__EVENT_LOOP", other)
    assert (
        other
        == load_config(_event_loop_config(tmp_path, f'event_loop = "{name}"')).daemon.event_loop
    )


def test_an_unknown_event_loop_names_the_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other value is refused with its line and the two names, from the file or the env."""
    monkeypatch.delenv("PROBED_DAEMON__EVENT_LOOP", raising=False)
    path = _event_loop_config(tmp_path, 'event_loop = "trio"')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [f"{path}:3: [daemon] key 'event_loop': Input should be 'uvloop' or 'asyncio'"] == (
        info.value.problems
    )
    monkeypatch.setenv("PROBED_DAEMON__EVENT_LOOP", "tokio")
    path = _event_loop_config(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [
        f"{path}:1: [daemon] key 'event_loop' (from environment variable "
        "PROBED_DAEMON__EVENT_LOOP): Input should be 'uvloop' or 'asyncio'"
    ] == info.value.problems
