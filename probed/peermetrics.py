"""blackbox_exporter's HTTP-version and TLS families, from each probe's last run.

Every interval-run probe kind speaks HTTP (``probed.probes.peerinfo`` records what its
last response said), so:

* ``probe_http_version{probe}``: the last response's HTTP version (1.1); 0 when the last
  run got no response, as blackbox_exporter has it; absent for a run restored from the
  state directory (not recorded there) until the probe runs again;
* over TLS only, ``probe_tls_version_info{probe,version}`` (always 1; ``version`` is one of
  ``TLS 1.0`` … ``TLS 1.3``, ``unknown``), ``probe_ssl_earliest_cert_expiry{probe}`` and
  ``probe_ssl_last_chain_expiry_timestamp_seconds{probe}`` (Unix times); an expiry
  probed could not read, and the last-chain one without verification, is left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from probed.exposition import Family, Writer
from probed.results import TlsInfo
from probed.store import ProbeState

__all__ = ["write_peer_families"]

HTTP_VERSION = Family.gauge(
    "probe_http_version", "HTTP version of the last run's final response (0 if none).", "probe"
)
TLS_VERSION = Family.gauge(
    "probe_tls_version_info",
    "TLS version of the last run's final response; always 1.",
    "probe",
    "version",
)
EARLIEST = Family.gauge(
    "probe_ssl_earliest_cert_expiry",
    "Unix time the earliest-expiring certificate the server presented expires.",
    "probe",
)
LAST_CHAIN = Family.gauge(
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "Unix time the earliest-expiring certificate of the verified chain expires.",
    "probe",
)


def write_peer_families(w: Writer, states: Iterable[ProbeState]) -> None:
    """The four families for ``states`` (the probes' last runs)."""
    results = [(st.name, st.last.result) for st in states if st.last is not None]
    # no response at all: 0, as blackbox_exporter has it; a response of unknown version
    # (a run restored from the state directory): absent
    versions = [
        (name, r.http_version or 0)
        for name, r in results
        if r.http_version is not None or r.status_code is None
    ]
    w.samples(HTTP_VERSION, [(name,) for name, _ in versions], [v for _, v in versions])
    tls: list[tuple[str, TlsInfo]] = [(name, r.tls) for name, r in results if r.tls is not None]
    w.samples(TLS_VERSION, [(name, t.version) for name, t in tls], [1] * len(tls))
    w.present(EARLIEST, [((name,), t.earliest_cert_expiry) for name, t in tls])
    w.present(LAST_CHAIN, [((name,), t.last_chain_expiry) for name, t in tls])
