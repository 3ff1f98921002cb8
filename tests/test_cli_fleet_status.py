"""``probed status --prometheus``: the options, the formats, and one line per failure, against
a loopback server answering like Prometheus' HTTP API."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ServeApp, free_port
from test_fleet_status import FLEET_TOML, isolated_a

from probed.cli import main
from probed.config import load_config
from probed.fleetstatus import fleet_queries

USER = "reader"
PASSWORD = "s3cret-prom"
TOKEN = "tok-123"


@pytest.fixture(autouse=True)
def _no_prometheus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PROBED_PROMETHEUS_USER",
        "PROBED_PROMETHEUS_PASSWORD_FILE",
        "PROBED_PROMETHEUS_BEARER_TOKEN_FILE",
        "PROBED_PROMETHEUS_CA_FILE",
        "PROBED_CLIENT_USER",
        "PROBED_CLIENT_PASSWORD_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET_TOML)
    return path


class FakePrometheus:
    """Answers ``/api/v1/query`` with the canned answer of each fleet query; records requests."""

    def __init__(self, config_path: Path, *, auth: str | None = None) -> None:
        queries = fleet_queries(load_config(config_path, secrets=False))
        self.by_query = {promql: name for name, promql in queries.items()}
        self.answers: dict[str, Any] = isolated_a()
        self.auth = auth
        self.seen: list[dict[str, str]] = []
        self.delay = 0.0
        self.fail: tuple[int, str] | None = None

    async def query(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        self.seen.append(params)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.auth is not None and request.headers.get("Authorization") != self.auth:
            return web.json_response(
                {"status": "error", "errorType": "unauthorized", "error": "no"}, status=401
            )
        if self.fail is not None:
            return web.Response(status=self.fail[0], text=self.fail[1])
        name = self.by_query.get(params.get("query", ""))
        if name is None:
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "unknown query"}, status=400
            )
        return web.json_response(self.answers[name])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/query", self.query)
        return app


async def run_cli(*argv: str) -> int:
    """``probed ARGV`` in a worker thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


def one_line(err: str) -> str:
    """stderr of a failed command: exactly one line, no traceback."""
    assert 1 == len(err.splitlines()), err
    assert "Traceback" not in err
    return err.strip()


async def test_every_format_from_one_instant(
    fleet_file: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = FakePrometheus(fleet_file)
    url = await serve_app(prom.app())
    assert 0 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file))
    table = capsys.readouterr().out
    assert table.startswith(f"probed fleet from {url}: UNKNOWN (")
    assert "Locations: a isolated, b OK, c no data (quorum 2 of 3)" in table
    # every query is evaluated at the same instant
    assert len(fleet_queries(load_config(fleet_file))) == len(prom.seen)
    assert 1 == len({params["time"] for params in prom.seen})

    assert 0 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file), "-f", "json")
    doc = json.loads(capsys.readouterr().out)
    assert ["isolated", "OK", "no data"] == [loc["state"] for loc in doc["locations"]]

    assert 0 == await run_cli(
        "status", "--prometheus", url + "/", "-c", str(fleet_file), "-f", "markdown"
    )
    markdown = capsys.readouterr().out.splitlines()
    assert "Locations: a isolated, b OK, c no data" == markdown[3]

    assert 0 == await run_cli(
        "status", "--prometheus", url, "-c", str(fleet_file), "-f", "incident",
        "--incident-id", "INC-42",
    )  # fmt: skip
    incident = capsys.readouterr().out.splitlines()
    assert "Incident INC-42 \u2014 Ack" == incident[0]
    assert "Locations: a isolated, b OK, c no data" in incident

    assert 0 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file), "-f", "html")
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>")
    assert 'data-location="c" data-state="no data"' in page


async def test_basic_auth_from_a_password_file(
    fleet_file: Path,
    tmp_path: Path,
    serve_app: ServeApp,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    prom = FakePrometheus(fleet_file, auth=f"Basic {token}")
    url = await serve_app(prom.app())
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    assert 0 == await run_cli(
        "status", "--prometheus", url, "-c", str(fleet_file),
        "--prometheus-user", USER, "--prometheus-password-file", str(tmp_path / "pw"),
    )  # fmt: skip
    assert "Locations: a isolated" in capsys.readouterr().out
    # the daemon's credentials never go to Prometheus
    monkeypatch.setenv("PROBED_CLIENT_USER", USER)
    monkeypatch.setenv("PROBED_CLIENT_PASSWORD_FILE", str(tmp_path / "pw"))
    assert 1 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file))
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"probed status: cannot read {url}/api/v1/query: ")
    assert "HTTP 401: unauthorized: no" in err
    assert PASSWORD not in err
    monkeypatch.setenv("PROBED_PROMETHEUS_USER", USER)
    monkeypatch.setenv("PROBED_PROMETHEUS_PASSWORD_FILE", str(tmp_path / "pw"))
    assert 0 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file))


async def test_bearer_token_from_a_file(
    fleet_file: Path, tmp_path: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = FakePrometheus(fleet_file, auth=f"Bearer {TOKEN}")
    url = await serve_app(prom.app())
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert 0 == await run_cli(
        "status", "--prometheus", url, "-c", str(fleet_file),
        "--prometheus-bearer-token-file", str(tmp_path / "token"),
    )  # fmt: skip
    assert "Locations: a isolated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (400, '{"status":"error","errorType":"bad_data","error":"parse error"}',
         "HTTP 400: bad_data: parse error"),
        (503, '{"status":"error","errorType":"unavailable","error":"starting"}',
         "HTTP 503: unavailable: starting"),
        (401, "Unauthorized\n", "HTTP 401: credentials refused"),
        (404, "404 page not found", "HTTP 404: not a Prometheus API answer"),
        (200, "<html>a login page</html>", "HTTP 200: not a Prometheus API answer"),
    ],
)  # fmt: skip
async def test_an_error_answer_is_one_line_naming_the_url(
    status: int,
    body: str,
    reason: str,
    fleet_file: Path,
    serve_app: ServeApp,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prom = FakePrometheus(fleet_file)
    prom.fail = (status, body)
    url = await serve_app(prom.app())
    assert 1 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file))
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"probed status: cannot read {url}/api/v1/query: ")
    assert err.endswith(reason), err


async def test_a_malformed_answer_is_one_line(
    fleet_file: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = FakePrometheus(fleet_file)
    prom.answers["isolated"] = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    url = await serve_app(prom.app())
    assert 1 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file))
    err = one_line(capsys.readouterr().err)
    assert err == (
        f"probed status: cannot read {url}/api/v1/query: isolated: a matrix, not an instant vector"
    )


async def test_unreachable_prometheus(fleet_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert 1 == await run_cli("status", "--prometheus", url, "-c", str(fleet_file))
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"probed status: cannot read {url}/api/v1/query: ")


async def test_a_slow_prometheus_times_out(
    fleet_file: Path, serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = FakePrometheus(fleet_file)
    prom.delay = 5.0
    url = await serve_app(prom.app())
    assert 1 == await run_cli(
        "status", "--prometheus", url, "-c", str(fleet_file), "--timeout", "0.5"
    )
    err = one_line(capsys.readouterr().err)
    assert err == f"probed status: cannot read {url}/api/v1/query: no answer within 0.5 s"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prometheus", "http://127.0.0.1:9"],
         "probed status: --prometheus needs -c CONFIG with a [fleet] section"),
        (["--prometheus", "http://127.0.0.1:9", "-c", "{single}"],
         "probed status: {single} has no [fleet] section (--prometheus reads a fleet's view)"),
        (["--prometheus", "http://127.0.0.1:9", "-c", "{fleet}", "--url", "http://127.0.0.1:9"],
         "probed status: --url names a daemon, --prometheus a fleet's Prometheus: give one"),
        (["--prometheus", "ftp://127.0.0.1:9", "-c", "{fleet}"],
         "probed status: --prometheus 'ftp://127.0.0.1:9' is not an http(s) URL"),
        (["--prometheus", "http://127.0.0.1:9", "-c", "{fleet}",
          "--prometheus-password-file", "{tmp}/pw"],
         "probed status: --prometheus-password-file needs --prometheus-user "
         "(or PROBED_PROMETHEUS_USER)"),
        (["--prometheus", "http://127.0.0.1:9", "-c", "{fleet}",
          "--prometheus-bearer-token-file", "{tmp}/missing"],
         "probed status: --prometheus-bearer-token-file {tmp}/missing: cannot read"),
        (["-f", "html"],
         "probed status: -f html is the fleet's page (with --prometheus); a daemon serves its "
         "own page at /"),
    ],
)  # fmt: skip
async def test_bad_options_exit_2_with_one_line(
    argv: list[str],
    message: str,
    fleet_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    single = tmp_path / "single.toml"
    single.write_text(FLEET_TOML.split("[fleet]")[0])
    (tmp_path / "pw").write_text(PASSWORD + "\n")

    def fill(text: str) -> str:
        return text.format(single=single, fleet=fleet_file, tmp=tmp_path)

    assert 2 == await run_cli("status", *map(fill, argv))
    err = one_line(capsys.readouterr().err)
    assert err.startswith(fill(message)), err
