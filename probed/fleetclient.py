"""Reading the fleet's view from Prometheus' HTTP API: ``probed status --prometheus URL``.

Every query of ``probed.fleetstatus.fleet_queries`` goes to ``URL/api/v1/query`` at once,
all evaluated at the same instant (``time=``), each within ``--timeout`` seconds (default
10); ``probed.fleetstatus.fleet_document`` turns the answers into the fleet status
document. Any failure is one ``PrometheusError`` naming the URL: unreachable, no answer in
time, an HTTP error (with Prometheus' ``errorType`` and ``error``), or an answer that is
not Prometheus' (a login page, a proxy's 404).

Credentials for Prometheus have their own options, so the daemon's (``--user``,
``PROBED_CLIENT_*``) never reach it:

``--prometheus-user NAME`` with ``--prometheus-password-file PATH``
    basic auth, the password being the file's first line (env ``PROBED_PROMETHEUS_USER``,
    ``PROBED_PROMETHEUS_PASSWORD_FILE``);
``--prometheus-bearer-token-file PATH``
    ``Authorization: Bearer`` with the file's first line (env
    ``PROBED_PROMETHEUS_BEARER_TOKEN_FILE``);
``--prometheus-ca-file PATH``
    CA certificate(s) to trust an https Prometheus (env ``PROBED_PROMETHEUS_CA_FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import time
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from probed.client import ClientSetupError
from probed.config import Config
from probed.records import record

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "PrometheusClient",
    "PrometheusError",
    "add_prometheus_options",
    "prometheus_client",
    "read_fleet",
]


class PrometheusError(Exception):
    """Prometheus could not be read: ``cannot read URL: reason`` (one line)."""


@record
class PrometheusClient:
    """Where Prometheus answers and how to authenticate to it."""

    base_url: str
    """Up to the API: ``http://host:9090`` or with a path prefix (no trailing slash)."""
    timeout: float = 10.0
    authorization: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = None

    @property
    def query_url(self) -> str:
        return f"{self.base_url}/api/v1/query"

    @property
    def shown_url(self) -> str:
        """``query_url`` as messages show it (without a password in the URL)."""
        return str(URL(self.query_url).with_password(None))


def add_prometheus_options(parser: argparse.ArgumentParser) -> None:
    """``--prometheus`` and its credentials (see the module docs)."""
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="read the fleet's view from this Prometheus (with -c CONFIG's [fleet]) instead "
        "of one daemon",
    )
    parser.add_argument(
        "--prometheus-user",
        metavar="NAME",
        help="basic-auth user for --prometheus (env PROBED_PROMETHEUS_USER)",
    )
    parser.add_argument(
        "--prometheus-password-file",
        metavar="PATH",
        help="file whose first line is that user's password (env PROBED_PROMETHEUS_PASSWORD_FILE)",
    )
    parser.add_argument(
        "--prometheus-bearer-token-file",
        metavar="PATH",
        help="file whose first line is a bearer token for --prometheus "
        "(env PROBED_PROMETHEUS_BEARER_TOKEN_FILE)",
    )
    parser.add_argument(
        "--prometheus-ca-file",
        metavar="PATH",
        help="CA certificate(s) to trust an https --prometheus (env PROBED_PROMETHEUS_CA_FILE)",
    )


def _option(args: argparse.Namespace, name: str, env: str) -> tuple[str | None, str]:
    """The value of option ``--name`` or else of ``env``, and which of them gave it."""
    value = getattr(args, name.replace("-", "_"), None)
    if value:
        return str(value), f"--{name}"
    return os.environ.get(env) or None, env


def _first_line(path: str, option: str, what: str) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientSetupError(f"{option} {path}: cannot read: {exc}") from None
    if not lines or not lines[0]:
        raise ClientSetupError(f"{option} {path}: the first line ({what}) is empty")
    return lines[0]


def prometheus_client(args: argparse.Namespace) -> PrometheusClient:
    """The client ``--prometheus`` and its options describe; ``ClientSetupError`` when one
    cannot be used."""
    url = URL(str(args.prometheus))
    if url.scheme not in ("http", "https") or not url.host:
        raise ClientSetupError(
            f"--prometheus {args.prometheus!r} is not an http(s) URL; write it as "
            "http://HOST:PORT (or https://, with a path prefix if any)"
        )
    user, _ = _option(args, "prometheus-user", "PROBED_PROMETHEUS_USER")
    password_file, password_from = _option(
        args, "prometheus-password-file", "PROBED_PROMETHEUS_PASSWORD_FILE"
    )
    token_file, token_from = _option(
        args, "prometheus-bearer-token-file", "PROBED_PROMETHEUS_BEARER_TOKEN_FILE"
    )
    if password_file is not None and user is None:
        raise ClientSetupError(
            f"{password_from} needs --prometheus-user (or PROBED_PROMETHEUS_USER)"
        )
    if user is not None and token_file is not None:
        raise ClientSetupError(f"give --prometheus-user or {token_from}, not both")
    authorization = None
    if token_file is not None:
        authorization = f"Bearer {_first_line(token_file, token_from, 'the token')}"
    elif user is not None:
        password = (
            _first_line(password_file, password_from, "the password") if password_file else ""
        )
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {pair}"
    if authorization is not None and url.user:
        raise ClientSetupError("--prometheus has credentials in its URL and as options: give one")
    ca_file, ca_from = _option(args, "prometheus-ca-file", "PROBED_PROMETHEUS_CA_FILE")
    context = None
    if ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ClientSetupError(f"{ca_from} {ca_file}: cannot load: {exc}") from None
    return PrometheusClient(
        base_url=str(args.prometheus).rstrip("/"),
        timeout=float(getattr(args, "timeout", None) or 10.0),
        authorization=authorization,
        ssl_context=context,
    )


def _error_reason(code: int, body: bytes) -> str:
    """``HTTP 400: bad_data: …`` from Prometheus' error answer; else ``credentials refused``
    (401, 403, as Prometheus' own basic auth or a proxy answers) or what the body is not."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and "errorType" in answer:
        return f"HTTP {code}: {answer.get('errorType')}: {answer.get('error') or '-'}"
    if code in (401, 403):
        return f"HTTP {code}: credentials refused"
    return f"HTTP {code}: not a Prometheus API answer"


async def _query(
    http: aiohttp.ClientSession, client: PrometheusClient, name: str, promql: str, at: float
) -> object:
    """The decoded answer to one instant query; ``PrometheusError`` when there is none."""
    import aiohttp

    headers = {"Accept": "application/json"}
    if client.authorization is not None:
        headers["Authorization"] = client.authorization
    try:
        async with http.get(
            client.query_url,
            params={"query": promql, "time": f"{at:.3f}"},
            headers=headers,
            ssl=client.ssl_context if client.ssl_context is not None else True,
        ) as resp:
            code, body = resp.status, await resp.read()
    except TimeoutError:
        raise PrometheusError(
            f"cannot read {client.shown_url}: no answer within {client.timeout:g} s"
        ) from None
    except aiohttp.ClientError as exc:
        reason = str(exc) or type(exc).__name__
        raise PrometheusError(f"cannot read {client.shown_url}: {reason}") from None
    if code != 200:
        raise PrometheusError(
            f"cannot read {client.shown_url}: {name}: {_error_reason(code, body)}"
        )
    try:
        answer: object = json.loads(body)
    except ValueError:
        raise PrometheusError(
            f"cannot read {client.shown_url}: {name}: HTTP {code}: not a Prometheus API answer"
        ) from None
    return answer


async def read_fleet(client: PrometheusClient, config: Config) -> dict[str, Any]:
    """The fleet status document of ``config`` (its ``[fleet]``) from Prometheus, now."""
    import aiohttp

    from probed.fleetstatus import PrometheusAnswerError, fleet_document, fleet_queries

    queries = fleet_queries(config)
    at = time.time()
    timeout = aiohttp.ClientTimeout(total=client.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        answers = await asyncio.gather(
            *(_query(http, client, name, promql, at) for name, promql in queries.items()),
            return_exceptions=True,
        )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    try:
        return fleet_document(
            config,
            dict(zip(queries, answers, strict=True)),
            at=at,
            source=str(URL(client.base_url).with_password(None)),
        )
    except PrometheusAnswerError as exc:
        raise PrometheusError(f"cannot read {client.shown_url}: {exc}") from None
