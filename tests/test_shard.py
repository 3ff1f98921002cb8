"""Ownership of probes among the shards of a location: rendezvous hashing of their names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probed.shard import MAX_SHARDS, Shard, owner

#: 1,000 names shaped like probe names (the sample the moved fractions are measured on).
NAMES = [f"probe_{i:04d}" for i in range(1000)]


def partition(names: list[str], total: int) -> list[set[str]]:
    """What each of ``total`` shards owns, by asking each shard."""
    return [{n for n in names if Shard(index, total).owns(n)} for index in range(total)]


@pytest.mark.parametrize("total", range(1, 9))
def test_shards_are_disjoint_and_cover_every_name(total: int) -> None:
    """For n = 1 … 8 each name is owned by exactly one shard, the one ``owner`` names."""
    parts = partition(NAMES, total)
    assert len(NAMES) == sum(len(p) for p in parts)  # disjoint: nobody counted twice
    assert set(NAMES) == set().union(*parts)  # cover: nobody left out
    assert all(name in parts[owner(name, total)] for name in NAMES)


@pytest.mark.parametrize("total", range(1, 9))
def test_growing_by_one_shard_moves_only_what_the_new_shard_takes(total: int) -> None:
    """n → n+1: a name either stays where it was or moves to the new shard, about 1/(n+1)."""
    before = {name: owner(name, total) for name in NAMES}
    after = {name: owner(name, total + 1) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert [] == [name for name in moved if after[name] != total]
    fraction = len(moved) / len(NAMES)
    print(f"{total} -> {total + 1} shards: {fraction:.3f} moved, ideal {1 / (total + 1):.3f}")
    assert abs(fraction - 1 / (total + 1)) < 0.04


@pytest.mark.parametrize("total", [2, 3, 5, 8])
def test_shards_share_the_names_evenly(total: int) -> None:
    """Each shard owns about 1/n of 1,000 names (within 5 percentage points)."""
    shares = [len(p) / len(NAMES) for p in partition(NAMES, total)]
    assert all(abs(share - 1 / total) < 0.05 for share in shares), shares


def test_the_owners_are_pinned() -> None:
    """The hash is part of the contract: a changed hash would reshuffle every fleet on upgrade.

    The values are the README's one-line check's (an implementation of its own).
    """
    assert [3, 2, 2, 1, 1] == [owner(name, 4) for name in ("health", "login", "events", "a", "b")]


_OWNERS = (
    "import json, sys; from probed.shard import owner; "
    "names = json.loads(sys.stdin.read()); "
    "print(json.dumps({n: [owner(name, n) for name in names] for n in range(1, 9)}))"
)


def _owners_in_a_process(seed: str) -> dict[str, list[int]]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", _OWNERS], input=json.dumps(NAMES), env=env,
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    owners: dict[str, list[int]] = json.loads(out.stdout)
    return owners


def test_two_processes_with_different_hash_seeds_agree() -> None:
    """Every instance computes the same owners: the hash is not Python's salted ``hash``."""
    here = {str(n): [owner(name, n) for name in NAMES] for n in range(1, 9)}
    assert here == _owners_in_a_process("1") == _owners_in_a_process("4242")


@pytest.mark.parametrize(
    ("text", "index", "total"), [("0/1", 0, 1), ("0/3", 0, 3), ("2/3", 2, 3), ("07/8", 7, 8)]
)
def test_parse(text: str, index: int, total: int) -> None:
    """ "i/n" is shard i of n, counted from 0; str() gives the canonical form back."""
    shard = Shard.parse(text)
    assert (index, total, f"{index}/{total}") == (shard.index, shard.total, str(shard))
    assert Shard(index, total) == shard
    assert shard.sharded == (total > 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", 'shard 3 of 3 does not exist: shards count from 0, so "0/3" to "2/3"'),
        ("1/1", 'shard 1 of 1 does not exist: shards count from 0, so the only one is "0/1"'),
        ("0/0", f"the number of shards must be 1 to {MAX_SHARDS}, got 0"),
        ("0/1001", f"the number of shards must be 1 to {MAX_SHARDS}, got 1001"),
        ("1", 'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \'1\''),
        ("-1/3", 'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \'-1/3\''),
        (" 0/3", 'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \' 0/3\''),
        ("1/3/5", 'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \'1/3/5\''),
        (
            "\u0660/\u0663",
            'a shard is "i/n", shard i of n counted from 0 (e.g. "0/3"), got \'\u0660/\u0663\'',
        ),
    ],
)
def test_parse_refuses_with_one_line(text: str, message: str) -> None:
    """A bad value says what a shard is, or which shards exist, in one line."""
    with pytest.raises(ValueError, match=r"\A[^\n]+\Z") as info:
        Shard.parse(text)
    assert message == str(info.value)
