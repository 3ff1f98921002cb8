"""TLS and basic authentication for probed's own HTTP server.

The web config file uses the format of Prometheus's exporter-toolkit
(``--web.config.file``), so one file can serve probed and the exporters next
to it. probed implements this subset::

    tls_server_config:
      cert_file: server.crt          # relative paths: to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default),
      client_ca_file: clients-ca.crt                  #    VerifyClientCertIfGiven
      min_version: TLS12             # TLS12 (default) or TLS13
      max_version: TLS13
    http_server_config:
      headers:                       # added to every response
        X-Content-Type-Options: nosniff
    basic_auth_users:                # user: bcrypt hash ($2a$, $2b$ or $2y$)
      prometheus: $2b$10$...

Any other exporter-toolkit option is refused with a "not supported" error
naming the key, and an unknown key is an error too: a setting probed would
silently ignore could leave the endpoints less protected than intended. So is a
file that configures none of the three (an empty file, ``/dev/null``), and anything
but a regular UTF-8 file of at most 4 MiB.

With ``basic_auth_users`` set, every path (``/metrics`` and ``/-/healthy``
included) needs valid credentials. A failed check is a bare 401 with
``WWW-Authenticate: Basic realm="probed"``; the body never says what was
wrong. This module only reads the file (no aiohttp, no bcrypt: config loading
uses it); the server side is :mod:`probed.webserve` and the checks themselves are in
:mod:`probed.webauth`.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from probed.configfile import read_config_text
from probed.errors import ConfigError
from probed.records import record

if TYPE_CHECKING:
    import yaml

__all__ = [
    "REALM",
    "ClientAuthType",
    "TLSServerConfig",
    "WebConfig",
    "load_web_config",
]

REALM = "probed"

ClientAuthType = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]

_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_NAMES = {version: name for name, version in _TLS_VERSIONS.items()}

# Supported keys in documentation order, then the exporter-toolkit keys probed refuses.
_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TOP_UNSUPPORTED = ("rate_limit",)
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
)
_TLS_UNSUPPORTED = (
    "cert",
    "key",
    "client_ca",
    "client_allowed_sans",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
_HTTP_KEYS = ("headers",)
_HTTP_UNSUPPORTED = ("http2",)

_CLIENT_AUTH_UNSUPPORTED = ("RequestClientCert", "RequireAnyClientCert")

# The response headers exporter-toolkit allows, and the values it accepts for two of them.
_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
_HEADER_VALUES = {
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
}

# $2a$/$2b$/$2y$, two-digit cost, 22 salt characters (the last one carries only
# two bits, so it is one of . O e u), then the 31-character digest.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{31}")
_BCRYPT_MIN_COST = 4
_BCRYPT_MAX_COST = 31


# ---------------------------------------------------------------------------
# the loaded configuration


@record
class TLSServerConfig:
    """``tls_server_config``: the server certificate and the client certificate policy."""

    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3

    def build_ssl_context(self) -> ssl.SSLContext:
        """A fresh server context; raises ``OSError``/``ssl.SSLError`` if a file is unusable."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        context.maximum_version = self.max_version
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(self.cert_file, self.key_file, password=_no_key_password)
        if self.client_auth_type != "NoClientCert":
            assert self.client_ca_file is not None
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = (
                ssl.CERT_REQUIRED
                if self.client_auth_type == "RequireAndVerifyClientCert"
                else ssl.CERT_OPTIONAL
            )
        return context


class _EncryptedKeyError(ValueError):
    """The private key file is encrypted; probed reads no key passwords."""


def _no_key_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise _EncryptedKeyError("the private key is encrypted; use an unencrypted key file")


@record
class WebConfig:
    """A validated web config file. Build it with :func:`load_web_config`."""

    source: Path | None = None
    tls: TLSServerConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    """User name → bcrypt hash; empty means no authentication."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers set on every response."""

    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "https" if self.tls is not None else "http"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context for ``web.TCPSite(ssl_context=...)``; ``None`` without TLS."""
        if self.tls is None:
            return None
        try:
            return self.tls.build_ssl_context()
        except (OSError, ValueError) as exc:
            where = f"{self.source}: " if self.source else ""
            raise ConfigError(
                [f"{where}key 'tls_server_config': cannot load TLS files: {_ssl_reason(exc)}"]
            ) from None


# ---------------------------------------------------------------------------
# loading


class _Problems:
    """Collects messages ``FILE:LINE: key 'a.b': message`` (line of the nearest known key)."""

    def __init__(self, path: Path, lines: Mapping[tuple[str, ...], int]) -> None:
        self.path = path
        self.lines = lines
        self.messages: list[str] = []

    def add(self, key: tuple[str, ...], message: str) -> None:
        line = None
        for end in range(len(key), 0, -1):
            line = self.lines.get(key[:end])
            if line is not None:
                break
        where = f"{self.path}:{line}" if line else f"{self.path}"
        self.messages.append(f"{where}: key {'.'.join(key)!r}: {message}")


def _key_lines(
    node: yaml.Node | None, problems: list[tuple[tuple[str, ...], int]]
) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every mapping key; duplicates go to ``problems``."""
    lines: dict[tuple[str, ...], int] = {}

    import yaml

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = (*path, str(key_node.value))
            line = key_node.start_mark.line + 1
            if key[-1] in seen:
                problems.append((key, line))
            else:
                lines[key] = line
            seen.add(key[-1])
            walk(value_node, key)

    if node is not None:
        walk(node, ())
    return lines


def _check_keys(
    section: Mapping[Any, Any],
    prefix: tuple[str, ...],
    supported: tuple[str, ...],
    unsupported: tuple[str, ...],
    problems: _Problems,
) -> None:
    listed = ", ".join(supported)
    for key in section:
        name = str(key)
        if name in supported:
            continue
        if name in unsupported:
            message = f"not supported by probed; supported keys: {listed}"
        else:
            message = f"unknown key; supported keys: {listed}"
        problems.add((*prefix, name), message)


def _section(
    raw: Mapping[Any, Any], key: tuple[str, ...], problems: _Problems
) -> Mapping[Any, Any]:
    """The mapping under the last part of ``key`` (null or absent: empty)."""
    value = raw.get(key[-1])
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(key, "expected a mapping")
        return {}
    return value


def _readable(value: object, key: tuple[str, ...], base: Path, problems: _Problems) -> Path | None:
    """Resolve a file name against ``base`` and check it can be read."""
    if not isinstance(value, str) or not value:
        problems.add(key, "expected a file name")
        return None
    path = base / value
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        problems.add(key, f"cannot read {path}: {exc.strerror}")
        return None
    return path


def _tls_version(
    value: object, key: tuple[str, ...], default: ssl.TLSVersion, problems: _Problems
) -> ssl.TLSVersion | None:
    if value is None:
        return default
    if isinstance(value, str) and value in _TLS_VERSIONS:
        return _TLS_VERSIONS[value]
    problems.add(key, f"{value!r} is not supported; expected TLS12 or TLS13")
    return None


def _client_auth(value: object, key: tuple[str, ...], problems: _Problems) -> ClientAuthType | None:
    if value is None:
        return "NoClientCert"
    choices = get_args(ClientAuthType)
    if value in choices:
        return cast(ClientAuthType, value)
    if value in _CLIENT_AUTH_UNSUPPORTED:
        problems.add(
            key,
            f"{value!r} is not supported by probed (it accepts unverified client "
            "certificates); use RequireAndVerifyClientCert",
        )
    else:
        problems.add(
            key, f"unknown client_auth_type {value!r}; expected one of: " + ", ".join(choices)
        )
    return None


def _load_tls(
    section: Mapping[Any, Any], base: Path, problems: _Problems
) -> TLSServerConfig | None:
    prefix = ("tls_server_config",)
    _check_keys(section, prefix, _TLS_KEYS, _TLS_UNSUPPORTED, problems)
    if not section:
        return None  # like exporter-toolkit: an empty section means plain HTTP
    files: dict[str, Path | None] = {}
    for name in ("cert_file", "key_file"):
        if section.get(name) is None:
            problems.add((*prefix, name), "required key is missing")
            files[name] = None
        else:
            files[name] = _readable(section[name], (*prefix, name), base, problems)
    client_auth = _client_auth(
        section.get("client_auth_type"), (*prefix, "client_auth_type"), problems
    )
    ca_key = (*prefix, "client_ca_file")
    client_ca: Path | None = None
    if section.get("client_ca_file") is not None:
        client_ca = _readable(section["client_ca_file"], ca_key, base, problems)
        if client_auth == "NoClientCert":
            problems.add(
                ca_key,
                "client_auth_type is NoClientCert, so this file would never be used; "
                "set client_auth_type: RequireAndVerifyClientCert",
            )
    elif client_auth not in (None, "NoClientCert"):
        problems.add(
            ca_key,
            f"required when client_auth_type is {client_auth}: "
            "the CA file client certificates are verified against",
        )
    low = _tls_version(
        section.get("min_version"), (*prefix, "min_version"), ssl.TLSVersion.TLSv1_2, problems
    )
    high = _tls_version(
        section.get("max_version"), (*prefix, "max_version"), ssl.TLSVersion.TLSv1_3, problems
    )
    if low is not None and high is not None and low > high:
        problems.add(
            (*prefix, "min_version"),
            f"min_version {_TLS_NAMES[low]} is above max_version {_TLS_NAMES[high]}",
        )
    cert, key = files["cert_file"], files["key_file"]
    if cert is None or key is None or client_auth is None or low is None or high is None:
        return None
    if low > high or (client_auth != "NoClientCert") != (client_ca is not None):
        return None
    tls = TLSServerConfig(cert, key, client_auth, client_ca, low, high)
    failure = _tls_failure(tls)
    if failure is not None:
        problems.add((*prefix, failure[0]), failure[1])
        return None
    return tls


def _tls_failure(tls: TLSServerConfig) -> tuple[str, str] | None:
    """(key, message) naming the file that keeps ``tls`` from loading, if any."""
    for key, path in (("cert_file", tls.cert_file), ("client_ca_file", tls.client_ca_file)):
        if path is None:
            continue
        try:  # parses the certificates in the file, nothing else
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except (OSError, ValueError) as exc:
            return key, f"no usable PEM certificate in {path}: {_ssl_reason(exc)}"
    try:
        tls.build_ssl_context()
    except (OSError, ValueError) as exc:
        return "key_file", f"cannot use {tls.key_file} with {tls.cert_file}: {_ssl_reason(exc)}"
    return None


def _ssl_reason(exc: BaseException) -> str:
    """A short reason from an OpenSSL error (no C source positions)."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLError):
        if reason:
            return str(reason).replace("_", " ").lower()
        if "PEM lib" in str(exc):
            return "not a PEM private key, or it does not match the certificate"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _load_headers(section: Mapping[Any, Any], problems: _Problems) -> dict[str, str]:
    prefix = ("http_server_config",)
    _check_keys(section, prefix, _HTTP_KEYS, _HTTP_UNSUPPORTED, problems)
    raw = _section(section, (*prefix, "headers"), problems)
    canonical = {name.lower(): name for name in _HEADERS}
    headers: dict[str, str] = {}
    for name, value in raw.items():
        key = (*prefix, "headers", str(name))
        header = canonical.get(str(name).lower())
        if header is None:
            problems.add(key, "header not supported; supported headers: " + ", ".join(_HEADERS))
            continue
        if value is None or value == "":
            continue  # unset, as in exporter-toolkit
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            problems.add(key, "expected a single-line string")
            continue
        allowed = _HEADER_VALUES.get(header)
        if allowed is not None and value.lower() not in allowed:
            problems.add(key, f"invalid value {value!r}; expected one of: " + ", ".join(allowed))
            continue
        headers[header] = value
    return headers


def _load_users(section: Mapping[Any, Any], problems: _Problems) -> dict[str, str]:
    users: dict[str, str] = {}
    for name, hashed in section.items():
        key = ("basic_auth_users", str(name))
        if not isinstance(name, str):
            problems.add(key, "user name must be a string; quote it")
            continue
        if ":" in name:
            problems.add(key, "user name must not contain ':' (basic auth cannot send it)")
            continue
        # never echo the value: it might be a plain password pasted by mistake
        match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            problems.add(
                key, "not a bcrypt hash: expected $2a$, $2b$ or $2y$, a cost and 53 characters"
            )
            continue
        cost = int(match.group(1))
        if not _BCRYPT_MIN_COST <= cost <= _BCRYPT_MAX_COST:
            problems.add(
                key,
                f"bcrypt cost {cost} is out of range {_BCRYPT_MIN_COST}-{_BCRYPT_MAX_COST}",
            )
            continue
        users[name] = hashed
    return users


def load_web_config(path: Path, origin: str = "") -> WebConfig:
    """Read and validate a web config file; raise ``ConfigError`` listing every problem.

    File names inside it are resolved against the file's own directory, and the
    TLS files are loaded once so a bad certificate or key fails here, not at start.
    ``origin`` (`` (from environment variable …)``) follows the file's name in messages.
    """
    import yaml  # only a configured web config needs it (RSS and start-up time)

    text = read_config_text(path, what := f"web config file{origin}")
    try:
        raw = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}{at}: invalid YAML: {problem}"]) from None
    if raw is None:
        raw = {}  # an empty file: refused below as configuring nothing
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{path}: a web config file must be a YAML mapping"])

    duplicates: list[tuple[tuple[str, ...], int]] = []
    problems = _Problems(path, _key_lines(node, duplicates))
    for key, line in duplicates:
        problems.messages.append(f"{path}:{line}: key {'.'.join(key)!r}: duplicate key")
    _check_keys(raw, (), _TOP_KEYS, _TOP_UNSUPPORTED, problems)
    base = path.parent
    tls = _load_tls(_section(raw, ("tls_server_config",), problems), base, problems)
    headers = _load_headers(_section(raw, ("http_server_config",), problems), problems)
    users = _load_users(_section(raw, ("basic_auth_users",), problems), problems)
    if problems.messages:
        raise ConfigError(problems.messages)
    if tls is None and not users and not headers:  # /dev/null, an empty file: silently open
        nothing = "neither TLS nor basic auth nor headers"
        fix = "remove web_config_file to serve without them"
        raise ConfigError([f"{path}: {what} configures {nothing}; {fix}"])
    return WebConfig(source=path, tls=tls, basic_auth_users=users, headers=headers)
