"""Sharding a location's probes among instances: which instance runs which probe.

The ground floor: imports nothing of probed. ``[daemon] shard = "i/n"`` makes an instance
shard ``i`` of ``n``; every instance reads the same config file and runs only what its
shard owns. Shards count from 0, as StatefulSet ordinals and Prometheus' ``hashmod`` do:
``"0/3"``, ``"1/3"`` and ``"2/3"``; ``"0/1"`` (the default) owns everything.

Ownership is rendezvous (highest-random-weight) hashing. A name's weight on shard ``j`` is
the first 8 bytes, big-endian, of ``blake2b(f"{j}/{name}")``; the shard of highest weight
owns it (``owner``). The hash is fixed (never Python's ``hash``, which is salted per
process), so every process, host and version agrees. A shard's weights do not depend on
``n``, so going from ``n`` to ``n + 1`` shards moves only the names the new shard wins,
about ``1/(n + 1)`` of them, all to the new shard (``hashmod`` would move about all of
them). To check by hand::

    python3 -c 'import hashlib, sys; n, name = int(sys.argv[1]), sys.argv[2]; print(max(
        range(n), key=lambda j: hashlib.blake2b(f"{j}/{name}".encode()).digest()[:8]))' 3 login

(comparing 8-byte strings orders them as big-endian numbers do).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_SHARDS", "Shard", "owner", "weight"]

MAX_SHARDS = 1000
"""The most shards a location may have (each owns a name with one hash per shard)."""

_FORM = re.compile(r"(\d+)/(\d+)", re.ASCII)


def weight(name: str, index: int) -> int:
    """``name``'s rendezvous weight on shard ``index``: a stable 64-bit number."""
    digest = hashlib.blake2b(f"{index}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(name: str, total: int) -> int:
    """The shard (0 … ``total - 1``) of highest weight for ``name``: the one that owns it."""
    if total < 1:
        raise ValueError(f"a location has at least 1 shard, got {total}")
    return max(range(total), key=lambda index: weight(name, index))


class Shard:
    """Shard ``index`` of ``total`` (from 0); ``Shard()`` is the one shard that owns all.

    Immutable; ``str()`` gives the config's form ``"i/n"`` and ``Shard.parse`` reads it.
    """

    __slots__ = ("_index", "_total")

    def __init__(self, index: int = 0, total: int = 1) -> None:
        if total < 1 or total > MAX_SHARDS:
            raise ValueError(f"the number of shards must be 1 to {MAX_SHARDS}, got {total}")
        if not 0 <= index < total:
            raise ValueError(
                f"shard {index} of {total} does not exist: shards count from 0, so {_range(total)}"
            )
        self._index = index
        self._total = total

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` as a ``Shard``; ``ValueError`` with a one-line reason otherwise."""
        match = _FORM.fullmatch(text)
        if match is None:
            raise ValueError(
                f'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got {text!r}'
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def index(self) -> int:
        """Which shard this is, from 0."""
        return self._index

    @property
    def total(self) -> int:
        """How many shards the location has."""
        return self._total

    @property
    def sharded(self) -> bool:
        """Whether there is more than one shard (``Shard()`` owns everything)."""
        return self._total > 1

    def owns(self, name: str) -> bool:
        """Whether this shard runs ``name`` (a probe or stream name)."""
        return self._total == 1 or owner(name, self._total) == self._index

    def __str__(self) -> str:
        return f"{self._index}/{self._total}"

    def __repr__(self) -> str:
        return f"Shard({self._index}, {self._total})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Shard):
            return NotImplemented
        return (self._index, self._total) == (other._index, other._total)

    def __hash__(self) -> int:
        return hash((self._index, self._total))


def _range(total: int) -> str:
    """The valid spellings for ``total`` shards, for an error message."""
    if total == 1:
        return 'the only one is "0/1"'
    return f'"0/{total}" to "{total - 1}/{total}"'
