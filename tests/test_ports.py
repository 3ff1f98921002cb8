"""``free_port``: a port no other socket of the machine can be handed meanwhile.

A port taken from a port-0 bind is in the kernel's ephemeral range, the range every
outgoing connection's local port and every other port-0 bind are drawn from: between the
test closing it and a real server (Alertmanager, Prometheus) binding it, one of those could
take it, and the server failed with "address already in use" (the fleet drill, once in CI).
"""

from __future__ import annotations

from pathlib import Path

from conftest import free_port


def _ephemeral() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_free_ports_are_outside_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert [p for p in ports if p in _ephemeral()] == []


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
