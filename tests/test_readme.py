"""README.md documents what the code has: every kind, every ``[daemon]``, ``[recommend]``,
``[fleet]`` and stream key, every fault knob of the demo target, and no word a new user cannot
know."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from probed.config import AnySpec, DaemonConfig, RecommendConfig, SseStream
from probed.demo.faults import Faults, _parse_admin_update
from probed.fleetconfig import FleetConfig
from probed.model import Model

README = Path(__file__).parent.parent / "README.md"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _section(heading: str) -> str:
    """The text under the heading line ``heading`` up to the next heading of its level or above."""
    lines = _text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert len(starts) == 1, f"README has {len(starts)} headings {heading!r}"
    level = len(heading) - len(heading.lstrip("#"))
    out: list[str] = []
    for line in lines[starts[0] + 1 :]:
        hashes = len(line) - len(line.lstrip("#"))
        if 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            break
        out.append(line)
    return "\n".join(out)


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells (an escaped ``\\|`` stays inside its cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _first_column(section: str) -> set[str]:
    """Every backticked name in the first cell of every table row of ``section``."""
    names: set[str] = set()
    for line in section.splitlines():
        if line.lstrip().startswith("|"):
            cells = _cells(line)
            if cells:
                names.update(re.findall(r"`([^`]+)`", cells[0]))
    return names


def _kinds() -> list[str]:
    union, *_metadata = typing.get_args(AnySpec)
    kinds = []
    for model in typing.get_args(union):
        (kind,) = typing.get_args(model.model_fields["kind"].annotation)
        kinds.append(kind)
    return kinds


COMMON = "### `[[probes]]` — keys common to every kind"


def test_no_seed_word() -> None:
    """The word "seed" (also as a prefix: "seeds", "seeded") is in-house: a user cannot know it."""
    assert [] == re.findall(r"(?i)\bseed\w*", _text())


def test_no_heartbeat_document_name() -> None:
    """The capitalised document name is in-house; the SSE heartbeat comment is plain English."""
    assert "HEARTBEAT" not in _text()


def test_kind_row_lists_every_kind() -> None:
    """The ``kind`` row of the common keys names each of the six kinds the config accepts."""
    kinds = _kinds()
    assert 6 == len(kinds)
    rows = [_cells(line) for line in _section(COMMON).splitlines() if line.startswith("| `kind` |")]
    assert 1 == len(rows)
    assert [] == [kind for kind in kinds if f"`{kind}`" not in rows[0][2]]


@pytest.mark.parametrize(
    ("model", "headings"),
    [
        (DaemonConfig, ["### `[daemon]`"]),
        (RecommendConfig, ["### `[recommend]` — degraded-mode recommendations"]),
        (SseStream, ['### `kind = "sse"` — stream watcher', COMMON]),
        (FleetConfig, ["### `[fleet]`"]),
    ],
    ids=["daemon", "recommend", "sse", "fleet"],
)
def test_tables_name_every_field(model: type[Model], headings: list[str]) -> None:
    """Every field of the model is a key in a table of its section."""
    documented = set().union(*(_first_column(_section(h)) for h in headings))
    assert [] == [name for name in model.model_fields if name not in documented]


def test_demo_target_lists_every_fault_knob() -> None:
    """Every key ``PUT /-/admin/faults`` accepts is in the Demo target section's table."""
    _parse_admin_update(Faults(), {"refuse_for": 1})  # accepted beside the Faults keys
    knobs = [*Faults.keys(), "refuse_for"]
    documented = _first_column(_section("## Demo target"))
    assert [] == [knob for knob in knobs if knob not in documented]
