"""What a run learnt about the server that answered it: HTTP version and TLS facts.

blackbox_exporter exports, for the final response of an HTTP probe,
``probe_http_version`` and, over TLS, ``probe_tls_version_info{version}``,
``probe_ssl_earliest_cert_expiry`` (the earliest notAfter among the certificates the
server presented) and ``probe_ssl_last_chain_expiry_timestamp_seconds`` (the earliest
notAfter within the verified chain, root included). probed records the same for the last
response of each run (``ProbeResult.http_version`` and ``.tls``):

* ``run_probe`` opens a ``PeerFacts`` for the run (``watching()``); the sessions'
  connector tells it the TLS facts of each connection it hands out (``connected``), and
  their trace hook the HTTP version of each response (``responded``), which makes that
  connection's facts the run's. Requests outside a run (stream watchers) cost nothing.
* The facts of a connection are read once, when a request first gets it (the caller
  caches them on the connection), so a reused pooled connection reports the same.
* The chain: Python 3.13 has ``SSLObject.get_unverified_chain()`` and
  ``get_verified_chain()``; 3.10 to 3.12 have the same two methods on the private
  ``_sslobj`` (``_ssl._SSLSocket``). Where neither exists (or they fail), only the
  leaf is read (``getpeercert(binary_form=True)``) and stands for the whole chain.
* Without verification (``insecure_skip_verify``) nothing is verified, so there is no
  last-chain expiry (OpenSSL's partial chain is not reported as verified).
* Certificates are read with a small DER reader of the validity field only; anything it
  cannot read gives None, never an exception (no third-party parser is needed).
"""

from __future__ import annotations

import contextlib
import re
import ssl
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from probed.results import TlsInfo

__all__ = [
    "PeerFacts",
    "TlsInfo",
    "cert_not_after",
    "current",
    "tls_info",
    "tls_version_label",
    "watching",
]

_VERSIONS = {
    "TLSv1": "TLS 1.0",
    "TLSv1.1": "TLS 1.1",
    "TLSv1.2": "TLS 1.2",
    "TLSv1.3": "TLS 1.3",
}
"""Python's protocol names → blackbox_exporter's ``version`` label values."""


def tls_version_label(version: str | None) -> str:
    """blackbox_exporter's label for Python's ``SSLObject.version()``."""
    return _VERSIONS.get(version or "", "unknown")


# --- DER ------------------------------------------------------------------------------------

_UTC_TIME = re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")
_GENERALIZED_TIME = re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, end) of the contents of the DER element at ``pos`` (within ``end``)."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        size = first & 0x7F
        if not 1 <= size <= 4 or pos + size > end:
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        length = first
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _time(tag: int, value: bytes) -> float:
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, 1950-2049 (RFC 5280)
        match = _UTC_TIME.fullmatch(value)
        if match is None:
            raise ValueError("bad UTCTime")
        year = int(match[1])
        year += 1900 if year >= 50 else 2000
    elif tag == 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        match = _GENERALIZED_TIME.fullmatch(value)
        if match is None:
            raise ValueError("bad GeneralizedTime")
        year = int(match[1])
    else:
        raise ValueError("not a time")
    month, day, hour, minute, second = (int(match[i]) for i in range(2, 7))
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()  # validates


def cert_not_after(der: bytes) -> float | None:
    """The notAfter of a DER certificate as Unix time, or None if it cannot be read."""
    try:
        tag, start, end = _element(der, 0, len(der))  # Certificate
        if tag != 0x30:
            return None
        tag, pos, tbs_end = _element(der, start, end)  # tbsCertificate
        if tag != 0x30:
            return None
        tag, _, after = _element(der, pos, tbs_end)
        if tag == 0xA0:  # [0] version
            pos = after
        # serialNumber, signature, issuer, then validity
        for expected in (0x02, 0x30, 0x30):
            tag, _, after = _element(der, pos, tbs_end)
            if tag != expected:
                return None
            pos = after
        tag, start, end = _element(der, pos, tbs_end)  # validity
        if tag != 0x30:
            return None
        _, _, after = _element(der, start, end)  # notBefore
        tag, start, stop = _element(der, after, end)  # notAfter
        return _time(tag, der[start:stop])
    except (ValueError, IndexError):
        return None


# --- the connection -------------------------------------------------------------------------


def _der_chain(sslobj: ssl.SSLObject, which: str) -> list[bytes] | None:
    """The ``unverified`` or ``verified`` chain as DER, or None if it cannot be had."""
    name = f"get_{which}_chain"
    method: Any = getattr(sslobj, name, None)  # public since Python 3.13
    if method is not None:
        return [bytes(der) for der in method() or ()]
    method = getattr(getattr(sslobj, "_sslobj", None), name, None)  # private, 3.10-3.12
    if method is None:
        return None
    encoding: Any = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", None)
    if encoding is None:
        return None
    return [bytes(cert.public_bytes(encoding)) for cert in method() or ()]


def _earliest(chain: list[bytes]) -> float | None:
    expiries = [t for t in map(cert_not_after, chain) if t is not None]
    return min(expiries) if expiries else None


def tls_info(sslobj: ssl.SSLObject) -> TlsInfo:
    """The TLS facts of an established connection; never raises."""
    try:
        version = tls_version_label(sslobj.version())
    except (ssl.SSLError, ValueError, AttributeError):
        version = "unknown"
    try:
        verified = sslobj.context.verify_mode != ssl.CERT_NONE
    except AttributeError:
        verified = False
    presented: list[bytes] | None
    chain: list[bytes] | None
    try:
        presented = _der_chain(sslobj, "unverified")
        chain = _der_chain(sslobj, "verified") if verified else []
    except Exception:  # a private API: whatever it does, fall back to the leaf
        presented = chain = None
    if presented is None or chain is None:
        try:
            leaf = sslobj.getpeercert(binary_form=True)
        except (ssl.SSLError, ValueError, AttributeError):
            leaf = None
        presented = [leaf] if leaf else []
        chain = presented if verified else []
    return TlsInfo(version, _earliest(presented), _earliest(chain) if verified else None)


# --- the run --------------------------------------------------------------------------------


class PeerFacts:
    """The HTTP version and TLS facts of the last response of one run."""

    __slots__ = ("_hop_tls", "http_version", "tls")

    def __init__(self) -> None:
        self.http_version: float | None = None
        """``major.minor`` of the last response (None: no response yet)."""
        self.tls: TlsInfo | None = None
        """The TLS facts of the last response's connection (None: plain HTTP or none yet)."""
        self._hop_tls: TlsInfo | None = None

    def connected(self, tls: TlsInfo | None) -> None:
        """A request got a connection with these TLS facts (None: not TLS)."""
        self._hop_tls = tls

    def responded(self, major: int, minor: int) -> None:
        """A response arrived on the connection of the last ``connected``."""
        self.http_version = float(f"{major}.{minor}")
        self.tls = self._hop_tls


_current: ContextVar[PeerFacts | None] = ContextVar("probed_peer_facts", default=None)


def current() -> PeerFacts | None:
    """The facts of the run this task is executing, if any."""
    return _current.get()


class _Watching:
    """The context of ``watching``: a class, not a generator (it wraps every probe run)."""

    __slots__ = ("_facts", "_token")

    def __init__(self) -> None:
        self._facts = PeerFacts()
        self._token: Token[PeerFacts | None] | None = None

    def __enter__(self) -> PeerFacts:
        self._token = _current.set(self._facts)
        return self._facts

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current.reset(self._token)


def watching() -> contextlib.AbstractContextManager[PeerFacts]:
    """Collect the facts of the requests made inside the block (one probe run)."""
    return _Watching()
