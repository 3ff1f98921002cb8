"""What a failed request was: aiohttp's and the OS's exceptions as one fixed ``Reason``.

Probes and streams classify the same way; details name the target as
``scheme://host:port``, never a Python object's repr.
"""

from __future__ import annotations

import errno
import os
import re
import ssl

import aiohttp

from probed.errors import ProbeFailure
from probed.http.redirects import RedirectRefused
from probed.http.wire import WireConnectError
from probed.results import Reason

__all__ = ["classify_exception"]


def _errno_name(exc: BaseException) -> str:

    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, str(code)) if isinstance(code, int) else type(exc).__name__


_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _origin(exc: aiohttp.ClientConnectorError) -> str:
    """``http://host:port`` or ``https://host:port`` of the connection that failed."""
    key = exc.args[0] if exc.args else None  # aiohttp's ConnectionKey
    scheme = "https" if getattr(key, "is_ssl", False) else "http"
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    return f"{scheme}://{host}:{exc.port}"


def _os_text(error: BaseException) -> str:
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code > 0 and not isinstance(error, ssl.SSLError):
        return os.strerror(code)  # "Connection refused", not asyncio's "Connect call failed"
    return str(error) or type(error).__name__


def _connect_failure(stage: str, origin: str, error: BaseException) -> tuple[Reason, str, str]:
    """A failed resolve, connect or TLS handshake to ``origin`` (aiohttp's connector errors
    and ``probed.http.wire``'s ``WireConnectError`` alike)."""
    if stage == "dns":
        return Reason.DNS, "dns_error", f"cannot resolve {origin}: {error}"
    if stage == "certificate":
        return Reason.TLS, "certificate_error", f"cannot connect to {origin}: {error}"
    if stage == "tls":
        return Reason.TLS, "ssl_error", f"cannot connect to {origin}: {error}"
    detail = f"cannot connect to {origin}: {_os_text(error)}"
    if isinstance(error, ConnectionRefusedError):
        return Reason.CONNECT_REFUSED, "ECONNREFUSED", detail
    return Reason.CONNECT_ERROR, _errno_name(error), detail


def classify_exception(exc: BaseException) -> tuple[Reason, str, str]:
    """Map an exception raised during a run to (reason, error code, short detail).

    A detail names the target as ``scheme://host:port``, never by a Python object's repr
    (aiohttp's own connector messages show the request's ``SSLContext`` object).
    """
    reason, code, detail = _classify(exc)
    return reason, code, _OBJECT_REPR.sub(r"\1", detail)


def _classify(exc: BaseException) -> tuple[Reason, str, str]:
    if isinstance(exc, ProbeFailure):
        return exc.reason, exc.reason.value, exc.detail
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT, "timeout", "deadline exceeded"
    if isinstance(exc, WireConnectError):
        return _connect_failure(exc.stage, exc.origin, exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _connect_failure("dns", _origin(exc), exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _connect_failure("certificate", _origin(exc), exc.certificate_error)
    if isinstance(exc, aiohttp.ClientSSLError):
        return _connect_failure("tls", _origin(exc), exc.os_error)
    if isinstance(exc, ssl.SSLError):
        return Reason.TLS, "ssl_error", str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connect_failure("connect", _origin(exc), exc.os_error)
    if isinstance(exc, RedirectRefused):
        return Reason.REDIRECTED_TO_OTHER_ORIGIN, exc.code, str(exc)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return Reason.TOO_MANY_REDIRECTS, "too_many_redirects", str(exc)
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientResponseError
        | aiohttp.ClientOSError
        | aiohttp.ServerConnectionError,
    ):
        return Reason.PROTOCOL_ERROR, type(exc).__name__, str(exc) or type(exc).__name__
    return Reason.INTERNAL_ERROR, type(exc).__name__, repr(exc)
