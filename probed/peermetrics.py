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

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from probed.store import ProbeState

__all__ = ["peer_families"]


def peer_families(states: Iterable[ProbeState]) -> Iterator[Metric]:
    """The four families for ``states`` (the probes' last runs)."""
    http_version = GaugeMetricFamily(
        "probe_http_version",
        "HTTP version of the last run's final response (0 if none).",
        labels=["probe"],
    )
    tls_version = GaugeMetricFamily(
        "probe_tls_version_info",
        "TLS version of the last run's final response; always 1.",
        labels=["probe", "version"],
    )
    earliest = GaugeMetricFamily(
        "probe_ssl_earliest_cert_expiry",
        "Unix time the earliest-expiring certificate the server presented expires.",
        labels=["probe"],
    )
    last_chain = GaugeMetricFamily(
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "Unix time the earliest-expiring certificate of the verified chain expires.",
        labels=["probe"],
    )
    for st in states:
        last = st.last
        if last is None:
            continue
        result = last.result
        if result.http_version is not None:
            http_version.add_metric([st.name], result.http_version)
        elif result.status_code is None:
            http_version.add_metric([st.name], 0)
        tls = result.tls
        if tls is None:
            continue
        tls_version.add_metric([st.name, tls.version], 1)
        if tls.earliest_cert_expiry is not None:
            earliest.add_metric([st.name], tls.earliest_cert_expiry)
        if tls.last_chain_expiry is not None:
            last_chain.add_metric([st.name], tls.last_chain_expiry)
    yield from (http_version, tls_version, earliest, last_chain)
