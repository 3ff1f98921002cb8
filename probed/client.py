"""Talking to a running daemon from the command line: its URL, TLS trust and credentials.

``probed status`` and ``probed healthcheck`` (the Docker ``HEALTHCHECK``) call
the daemon's own server, which a web config may put behind TLS and basic
auth. This module turns their options into a ``DaemonClient``:

URL, first that applies
    ``--url``; else ``--config``'s ``[daemon] listen`` (https when its web
    config has ``tls_server_config``); else ``PROBED_DAEMON__LISTEN`` and
    ``--web.config.file`` / ``PROBED_DAEMON__WEB_CONFIG_FILE`` the same way;
    else ``http://127.0.0.1:10115``. A wildcard listen address (``0.0.0.0``,
    ``::``) is reached on loopback.

Credentials
    ``--user`` (env ``PROBED_CLIENT_USER``) with ``--password-file`` (env
    ``PROBED_CLIENT_PASSWORD_FILE``): the password is the file's first line.
    Never a password on the command line, where ``ps`` shows it.

TLS trust
    ``--ca-file`` (env ``PROBED_CLIENT_CA_FILE``) to trust the daemon's
    certificate, ``--tls-server-name`` when the certificate does not name the
    address dialled, or ``--insecure-skip-verify`` (env
    ``PROBED_CLIENT_INSECURE_SKIP_VERIFY=1``) for a liveness check on
    loopback.

Every problem is a ``ClientSetupError`` naming the option and the file.
"""

from __future__ import annotations

import argparse
import base64
import os
import ssl
from dataclasses import field
from pathlib import Path

from yarl import URL

from probed.errors import ConfigError
from probed.records import record
from probed.webconfig import load_web_config

__all__ = ["ClientSetupError", "DaemonClient", "add_client_options", "daemon_client"]

DEFAULT_URL = "http://127.0.0.1:10115"

_TRUE = {"1", "true", "yes", "on"}


class ClientSetupError(ValueError):
    """An option of ``probed status``/``healthcheck`` cannot be used (the message says why)."""


@record
class DaemonClient:
    """Where the daemon is and how to authenticate to it."""

    base_url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = None
    """None: the default verification (system CAs) for https."""
    verify: bool = True
    server_name: str | None = None

    def headers(self) -> dict[str, str]:
        """Request headers: ``Authorization`` when a user is set."""
        if self.user is None:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def ssl_option(self) -> ssl.SSLContext | bool:
        """The ``ssl`` argument of an aiohttp request."""
        if not self.verify:
            return False
        return self.ssl_context if self.ssl_context is not None else True


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that calls the daemon takes (see the module docs)."""
    parser.add_argument(
        "--url",
        help="the daemon's base URL (default: from --config's [daemon] listen, else "
        f"PROBED_DAEMON__LISTEN, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="the daemon's web config: https when it has tls_server_config",
    )
    parser.add_argument(
        "--user", help="basic-auth user name (env PROBED_CLIENT_USER)", metavar="NAME"
    )
    parser.add_argument(
        "--password-file",
        metavar="PATH",
        help="file whose first line is the basic-auth password (env PROBED_CLIENT_PASSWORD_FILE)",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PATH",
        help="CA certificate(s) to trust the daemon's TLS certificate (env PROBED_CLIENT_CA_FILE)",
    )
    parser.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="host name to verify the daemon's certificate against (default: the URL's host)",
    )
    parser.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        default=None,
        help="do not verify the daemon's certificate (env PROBED_CLIENT_INSECURE_SKIP_VERIFY=1)",
    )


def _option(value: str | None, env: str) -> str | None:
    if value:
        return value
    return os.environ.get(env) or None


def _url_for(listen: str, tls: bool, option: str) -> str:
    from probed.config import split_listen

    try:
        host, port = split_listen(listen)
    except ValueError as exc:
        raise ClientSetupError(f"{option}: {exc}") from None
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _web_config_has_tls(path: Path, option: str) -> bool:
    try:
        return load_web_config(path).tls is not None
    except ConfigError as exc:
        raise ClientSetupError(f"{option}: " + "; ".join(exc.problems)) from None


def _read_password(path: str, option: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientSetupError(f"{option} {path}: cannot read: {exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ClientSetupError(f"{option} {path}: the first line (the password) is empty")
    return lines[0]


def _base_url(args: argparse.Namespace, listen: str | None, web_config: Path | None) -> str:
    if args.url:
        url = URL(str(args.url))
        if url.scheme not in ("http", "https") or not url.host:
            raise ClientSetupError(
                f"--url {args.url!r} is not an http(s) URL; write it as http://HOST:PORT "
                "(or https://)"
            )
        return str(args.url).rstrip("/")
    listen_from = "[daemon] listen"
    if listen is None:
        listen = os.environ.get("PROBED_DAEMON__LISTEN")
        listen_from = "PROBED_DAEMON__LISTEN"
    if web_config is None:
        env = _option(args.web_config_file, "PROBED_DAEMON__WEB_CONFIG_FILE")
        web_config = Path(env) if env else None
    if listen is None:
        return DEFAULT_URL
    option = "--web.config.file" if args.web_config_file else "web config"
    tls = web_config is not None and _web_config_has_tls(web_config, f"{option} {web_config}")
    return _url_for(listen, tls, listen_from)


def daemon_client(
    args: argparse.Namespace, *, listen: str | None = None, web_config: Path | None = None
) -> DaemonClient:
    """The client the options in ``args`` describe.

    ``listen`` and ``web_config`` come from a loaded ``--config`` when the
    command has one. Raises ``ClientSetupError`` on an unusable option.
    """
    base_url = _base_url(args, listen, web_config)
    user = _option(args.user, "PROBED_CLIENT_USER")
    password_file = _option(args.password_file, "PROBED_CLIENT_PASSWORD_FILE")
    password_option = "--password-file" if args.password_file else "PROBED_CLIENT_PASSWORD_FILE"
    if password_file is not None and user is None:
        raise ClientSetupError(f"{password_option} needs --user (or PROBED_CLIENT_USER)")
    password = _read_password(password_file, password_option) if password_file else None
    insecure = bool(args.insecure_skip_verify) or (
        os.environ.get("PROBED_CLIENT_INSECURE_SKIP_VERIFY", "").lower() in _TRUE
    )
    ca_file = _option(args.ca_file, "PROBED_CLIENT_CA_FILE")
    context = None
    if ca_file is not None and not insecure:
        option = "--ca-file" if args.ca_file else "PROBED_CLIENT_CA_FILE"
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ClientSetupError(f"{option} {ca_file}: cannot load: {exc}") from None
    return DaemonClient(
        base_url=base_url,
        user=user,
        password=password,
        ssl_context=context,
        verify=not insecure,
        server_name=args.tls_server_name or None,
    )
