"""``probed status`` and ``probed healthcheck`` against a live server behind TLS and basic auth."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from conftest import ServeApp
from livedaemon import app_of, health, live_daemon

from probed.cli import build_parser, main
from probed.client import ClientSetupError, daemon_client
from probed.metrics import DaemonInfo, build_registry
from probed.server import ServerState, create_app
from probed.store import ResultStore
from probed.webconfig import load_web_config
from probed.webserve import auth_middleware

USER = "ops"
PASSWORD = "s3cret-health"


def iso(at: float) -> str:
    """A Unix time as ``probed status`` prints it."""
    return datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_lines(out: str) -> list[str]:
    """The lines of ``probed status`` output about the config (the daemon logs to stdout too)."""
    return [line for line in out.splitlines() if line.startswith("config ")]


def parse(*argv: str) -> argparse.Namespace:
    """The ``healthcheck`` subcommand's options as the CLI parses them."""
    return build_parser().parse_args(["healthcheck", *argv])


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PROBED_CLIENT_USER",
        "PROBED_CLIENT_PASSWORD_FILE",
        "PROBED_CLIENT_CA_FILE",
        "PROBED_CLIENT_INSECURE_SKIP_VERIFY",
        "PROBED_DAEMON__LISTEN",
        "PROBED_DAEMON__WEB_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------
# options → client


@pytest.mark.parametrize(
    ("argv", "env", "url"),
    [
        ((), {}, "http://127.0.0.1:10115"),
        (("--url", "https://probed.test:9/",), {}, "https://probed.test:9"),
        ((), {"PROBED_DAEMON__LISTEN": "0.0.0.0:9100"}, "http://127.0.0.1:9100"),
        ((), {"PROBED_DAEMON__LISTEN": "[::]:9100"}, "http://[::1]:9100"),
        ((), {"PROBED_DAEMON__LISTEN": "[::1]:9100"}, "http://[::1]:9100"),
        ((), {"PROBED_DAEMON__LISTEN": "127.0.0.2:9100"}, "http://127.0.0.2:9100"),
    ],
)  # fmt: skip
def test_base_url(
    argv: tuple[str, ...], env: dict[str, str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert url == daemon_client(parse(*argv)).base_url


def test_web_config_with_tls_makes_the_url_https(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "s.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "s.key"))
    client = daemon_client(parse("--web.config.file", str(web)), listen="0.0.0.0:9100")
    assert "https://127.0.0.1:9100" == client.base_url


def test_password_is_the_first_line_of_the_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(f"{PASSWORD}\nignored\n")
    client = daemon_client(parse("--user", USER, "--password-file", str(pw)))
    assert (USER, PASSWORD) == (client.user, client.password)
    assert {"Authorization": "Basic b3BzOnMzY3JldC1oZWFsdGg="} == client.headers()
    assert PASSWORD not in repr(client)
    assert client.ssl_option() is True  # https verifies against the system CAs by default


def test_environment_supplies_credentials_and_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    monkeypatch.setenv("PROBED_CLIENT_USER", USER)
    monkeypatch.setenv("PROBED_CLIENT_PASSWORD_FILE", str(pw))
    monkeypatch.setenv("PROBED_CLIENT_INSECURE_SKIP_VERIFY", "1")
    client = daemon_client(parse())
    assert (USER, PASSWORD, False) == (client.user, client.password, client.ssl_option())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--user", USER, "--password-file", "{tmp}/missing"),
            "--password-file {tmp}/missing: cannot read: [Errno 2] No such file or directory",
        ),
        (("--password-file", "{tmp}/pw"), "--password-file needs --user (or PROBED_CLIENT_USER)"),
        (
            ("--user", USER, "--password-file", "{tmp}/empty"),
            "--password-file {tmp}/empty: the first line (the password) is empty",
        ),
        (("--ca-file", "{tmp}/pw"), "--ca-file {tmp}/pw: cannot load:"),
        (
            ("--listen-env", "localhost"),
            "PROBED_DAEMON__LISTEN: listen must be HOST:PORT (e.g. '127.0.0.1:10115'), "
            "got 'localhost'",
        ),
        (
            ("--web.config.file", "{tmp}/bad.yml", "--url", ""),
            "--web.config.file {tmp}/bad.yml: {tmp}/bad.yml:1: key 'tls_server_config.cert_file'",
        ),
    ],
)
def test_unusable_options_are_named(
    argv: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "bad.yml").write_text("tls_server_config:\n  key_file: k\n")
    argv = tuple(a.replace("{tmp}", str(tmp_path)) for a in argv)
    if argv[:1] == ("--listen-env",):  # not an option: the environment variable
        monkeypatch.setenv("PROBED_DAEMON__LISTEN", argv[1])
        argv = ()
    args = parse(*argv)
    with pytest.raises(ClientSetupError) as caught:
        daemon_client(args, listen="127.0.0.1:1" if args.web_config_file else None)
    assert str(caught.value).startswith(message.replace("{tmp}", str(tmp_path)))


# ---------------------------------------------------------------------------
# against a live TLS + basic-auth server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def secured(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[tuple[str, Path, Path, Path]]:
    """(base URL, CA file, password file, web config) of a live server like the daemon's."""
    leaf = ca.issue_cert("127.0.0.1", "probed.test")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_path = tmp_path / "web.yml"
    web_path.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  {USER}: {hashed}\n"
    )
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "wrong").write_text("nope\n")
    cfg = load_web_config(web_path)
    store = ResultStore()
    state = ServerState(store=store, registry=build_registry(store, DaemonInfo()), reload=None)
    state.ready = True
    runner = web.AppRunner(
        create_app(state, middlewares=[auth_middleware(cfg)]), handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=cfg.ssl_context())
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}", tmp_path / "ca.crt", tmp_path / "pw", web_path
    await runner.cleanup()


async def run_cli(*argv: str) -> int:
    """``probed ARGV`` in a worker thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


async def test_healthcheck_with_credentials_and_ca(
    secured: tuple[str, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ca_file, pw, _ = secured
    auth = ("--user", USER, "--password-file", str(pw))
    assert 0 == await run_cli("healthcheck", "--url", url, *auth, "--ca-file", str(ca_file))
    assert ("", "") == capsys.readouterr()
    # the certificate names probed.test too: verify against that name while dialling the IP
    assert 0 == await run_cli(
        "healthcheck", "--url", url, *auth, "--ca-file", str(ca_file),
        "--tls-server-name", "probed.test",
    )  # fmt: skip
    assert 0 == await run_cli("healthcheck", "--url", url, *auth, "--insecure-skip-verify")


@pytest.mark.parametrize(
    ("extra", "stderr"),
    [
        (("--user", USER, "--password-file", "{tmp}/wrong", "--ca-file", "{tmp}/ca.crt"),
         "HTTP 401"),
        (("--ca-file", "{tmp}/ca.crt"), "HTTP 401"),
        (("--user", USER, "--password-file", "{tmp}/pw"), "certificate verify failed"),
        (("--user", USER, "--password-file", "{tmp}/pw", "--ca-file", "{tmp}/ca.crt",
          "--tls-server-name", "other.test"), "certificate verify failed"),
    ],
)  # fmt: skip
async def test_healthcheck_fails_with_the_reason(
    extra: tuple[str, ...],
    stderr: str,
    secured: tuple[str, Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, ca_file, _, _ = secured
    tmp = str(ca_file.parent)
    argv = [a.replace("{tmp}", tmp) for a in extra]
    assert 1 == await run_cli("healthcheck", "--url", url, *argv)
    err = capsys.readouterr().err
    assert err.startswith(f"probed healthcheck: {url}/-/healthy: ")
    assert stderr in err
    assert PASSWORD not in err


async def test_healthcheck_without_a_daemon(capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert 1 == await run_cli("healthcheck", "--url", url, "--timeout", "2")
    assert capsys.readouterr().err.startswith(f"probed healthcheck: {url}/-/healthy: ")


async def test_status_finds_https_and_authenticates_from_the_config(
    secured: tuple[str, Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``probed status -c`` takes listen and the TLS scheme from the config; creds from env."""
    url, ca_file, pw, web_path = secured
    port = url.rsplit(":", 1)[1]
    config = tmp_path / "probes.toml"
    config.write_text(
        f'[daemon]\nlisten = "127.0.0.1:{port}"\nweb_config_file = "{web_path}"\n'
        "allow_no_probes = true\n"
    )
    monkeypatch.setenv("PROBED_CLIENT_USER", USER)
    monkeypatch.setenv("PROBED_CLIENT_PASSWORD_FILE", str(pw))
    monkeypatch.setenv("PROBED_CLIENT_CA_FILE", str(ca_file))
    assert 0 == await run_cli("status", "-c", str(config), "-f", "json")
    doc = json.loads(capsys.readouterr().out)
    assert {"overall", "probes", "streams"} <= set(doc)
    monkeypatch.delenv("PROBED_CLIENT_PASSWORD_FILE")
    assert 1 == await run_cli("status", "-c", str(config))
    assert f"cannot read {url}/api/v1/status: HTTP 401" in capsys.readouterr().err


async def test_status_prints_the_running_config_line(
    tmp_path: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against a live daemon, ``probed status`` prints the running config's hash and load time,
    and after a failed reload the warning with the first problem."""
    url = await serve_app(app_of(("/health", health)))
    path = tmp_path / "probes.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}/state"\n\n'
        f'[targets.good]\nbase_url = "{url}"\n\n'
        '[[probes]]\nname = "healthy"\nkind = "http"\ntarget = "good"\npath = "/health"\n'
    )
    running = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    async with live_daemon(path) as (daemon, _, base):
        assert 0 == await run_cli("status", "--url", base)
        before = config_lines(capsys.readouterr().out)
        path.write_text(path.read_text().replace('"good"', '"gone"', 1))
        ok, problem = await daemon.reload()
        assert 0 == await run_cli("status", "--url", base)
        after = config_lines(capsys.readouterr().out)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/status") as resp:
            config = (await resp.json())["config"]
    loaded, failed_at = iso(config["loaded_at"]), iso(config["failed_at"])
    assert [f"config {running} from {path}, loaded {loaded}"] == before
    assert False is ok
    on_disk = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert [
        f"config reload failed at {failed_at}: {problem}; running config {running} "
        f"from {loaded}, file on disk {on_disk}"
    ] == after
