"""Records (``probed.records.record``): frozen to mypy, filled by plain slot stores at run
time, equal and hashed as frozen dataclasses are."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from probed.http.wire import Reply
from probed.results import ProbeResult, ProbeRun, TlsInfo
from probed.runring import RecentResult
from probed.signals import Evidence, ProbeSignal, StreamSignal
from probed.stream.decoder import Comment, Event

ROOT = Path(__file__).resolve().parents[1]

# made for every event a stream delivers, every run, every evaluation
HOT = [Event, Comment, ProbeResult, ProbeRun, TlsInfo, RecentResult, Reply, ProbeSignal,
       StreamSignal, Evidence]  # fmt: skip


@pytest.mark.parametrize("cls", HOT, ids=lambda cls: cls.__name__)
def test_a_record_is_filled_by_plain_slot_stores(cls: type) -> None:
    # a frozen dataclass's __init__ goes through object.__setattr__ once per field
    assert dataclasses.is_dataclass(cls)
    assert "__setattr__" not in vars(cls)
    assert "__delattr__" not in vars(cls)
    assert "__slots__" in vars(cls)
    assert "__dict__" not in dir(cls)
    assert cls.__hash__ is not None
    assert "__hash__" in vars(cls)


def test_records_compare_and_hash_by_their_fields() -> None:
    one, same, other = Event("a", "tick", "7"), Event("a", "tick", "7"), Event("a", "tick", "8")
    assert one == same
    assert hash(one) == hash(same)
    assert one != other
    assert {one, same, other} == {one, other}
    comment: object = Comment("a")  # another record with the same fields' values
    assert Event("a") != comment
    moved = dataclasses.replace(one, id="9")
    assert (moved.data, moved.event, moved.id, one.id) == ("a", "tick", "9", "7")
    assert [f.name for f in dataclasses.fields(Event)] == ["data", "event", "id", "retry"]
    assert repr(one) == "Event(data='a', event='tick', id='7', retry=None)"


def test_mypy_refuses_an_assignment_to_a_record_field(tmp_path: Path) -> None:
    source = tmp_path / "assigns.py"
    source.write_text(
        "from probed.stream.decoder import Event\n"
        "from probed.results import ProbeRun\n"
        "event = Event('x')\n"
        "event.data = 'y'\n"
        "def later(run: ProbeRun) -> None:\n"
        "    run.probe = 'other'\n"
    )
    # in its own process: mypy's api raises the interpreter's recursion limit for good
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent",
         f"--cache-dir={tmp_path / 'cache'}", str(source)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    out, status = done.stdout, done.returncode
    assert status == 1
    assert 'assigns.py:4: error: Property "data" defined in "Event" is read-only' in out
    assert 'assigns.py:6: error: Property "probe" defined in "ProbeRun" is read-only' in out
    assert "Found 2 errors in 1 file" in out
