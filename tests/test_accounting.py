"""Pure delivery accounting: enqueue timestamps and sequence tracking."""

from __future__ import annotations

import pytest

from probed.stream.accounting import SequenceTracker, Verdict, epoch_of, parse_timestamp


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2026-11-23T10:47:37.123Z", "auto", 1795430857.123),
        ("2026-11-23T11:47:37.123+01:00", "rfc3339", 1795430857.123),
        ("2026-11-23t10:47:37z", "auto", 1795430857.0),
        ("2026-11-23T10:47:37", "auto", None),  # naive: no offset, ambiguous
        ("yesterday", "auto", None),
        (1795430857, "auto", 1795430857.0),
        (1795430857123, "auto", 1795430857.123),
        ("1795430857.5", "auto", 1795430857.5),
        (1795430857123, "epoch_ms", 1795430857.123),
        ("1795430857123", "epoch_ms", 1795430857.123),
        (1795430857, "epoch_s", 1795430857.0),
        (1795430857, "rfc3339", None),
        (True, "auto", None),
        (None, "auto", None),
        (float("nan"), "auto", None),
        ({"a": 1}, "auto", None),
    ],
)
def test_parse_timestamp(value: object, fmt: str, expected: float | None) -> None:
    """Enqueue stamps parse from RFC 3339 and epoch seconds/milliseconds, else None."""
    got = parse_timestamp(value, fmt)  # type: ignore[arg-type]
    assert expected == (None if got is None else pytest.approx(got, abs=1e-6))


def feed(tracker: SequenceTracker, seqs: list[int], now: float = 0.0) -> list[Verdict]:
    """Observe each sequence number at ``now``."""
    return [tracker.observe(s, now) for s in seqs]


def test_in_order_is_clean() -> None:
    """A gapless increasing sequence counts nothing."""
    t = SequenceTracker()
    assert [Verdict.NEW] * 5 == feed(t, [1, 2, 3, 4, 5])
    assert (0, 0, 0, 0) == (t.lost, t.duplicated, t.out_of_order, t.pending)


def test_gap_becomes_lost_after_timeout() -> None:
    """A gap is pending until loss_timeout passes, then counted lost."""
    t = SequenceTracker(loss_timeout=10.0)
    feed(t, [1, 2, 5], now=0.0)
    assert (0, 2) == (t.lost, t.pending)
    assert 0 == t.expire(9.9)
    assert 2 == t.expire(10.1)
    assert (2, 0) == (t.lost, t.pending)


def test_reorder_is_not_duplication_nor_loss() -> None:
    """A late arrival filling a gap is out of order, not lost and not duplicated."""
    t = SequenceTracker()
    assert [Verdict.NEW, Verdict.NEW, Verdict.OUT_OF_ORDER, Verdict.NEW] == feed(t, [1, 3, 2, 4])
    assert (0, 0, 1) == (t.lost, t.duplicated, t.out_of_order)


def test_duplicates() -> None:
    """The same sequence number twice is a duplicate, also after reordering."""
    t = SequenceTracker()
    assert [Verdict.NEW, Verdict.NEW, Verdict.DUPLICATE, Verdict.OUT_OF_ORDER,
            Verdict.DUPLICATE] == feed(t, [1, 3, 3, 2, 2])  # fmt: skip
    assert 2 == t.duplicated


def test_arrival_after_declared_lost_moves_to_late() -> None:
    """A number already counted lost that then arrives is moved from lost to late."""
    t = SequenceTracker(loss_timeout=1.0)
    feed(t, [1, 3], now=0.0)
    t.expire(2.0)
    assert 1 == t.lost
    assert Verdict.LATE == t.observe(2, 3.0)
    assert (0, 1) == (t.lost, t.late)


def test_gap_wider_than_window() -> None:
    """A gap wider than the window counts its older part lost at once, tracks the rest."""
    t = SequenceTracker(window=16, loss_timeout=100.0)
    feed(t, [0, 100])
    assert (99 - 16, 16) == (t.lost, t.pending)


def test_gap_falls_out_of_window() -> None:
    """A pending gap a whole window behind the highest number is lost without waiting."""
    t = SequenceTracker(window=16, loss_timeout=1000.0)
    feed(t, [1, 3])
    feed(t, list(range(4, 22)))
    assert 1 == t.lost


def test_producer_restart_resets() -> None:
    """A number far below the window means the producer restarted: reset, not duplicate."""
    t = SequenceTracker(window=16)
    feed(t, list(range(1000, 1010)))
    assert Verdict.RESET == t.observe(1, 0.0)
    assert [Verdict.NEW] * 3 == feed(t, [2, 3, 4])
    assert (1, 0, 0) == (t.resets, t.duplicated, t.lost)


def test_memory_is_bounded() -> None:
    """The received-set window is one byte per slot, whatever the traffic."""
    t = SequenceTracker(window=32)
    feed(t, list(range(10_000)))
    assert 32 == len(t._ring)
    assert Verdict.DUPLICATE == t.observe(9_990, 0.0)


def test_lost_numbers_are_forgotten_once_out_of_the_window() -> None:
    """Lost numbers are remembered (to spot late arrivals) only while inside the window.

    Kept by count alone they piled up to ``window`` per subscriber: 4,096 ints each, for
    months, on a lossy stream.
    """
    t = SequenceTracker(window=16, loss_timeout=1.0)
    feed(t, [1, 3, 5, 7], now=0.0)
    t.expire(2.0)
    assert (3, [2, 4, 6]) == (t.lost, list(t._lost_recent))
    assert Verdict.LATE == t.observe(4, 3.0)  # still inside the window: late, not lost
    feed(t, [18, 21], now=4.0)  # the window is now (5, 21]: 2 is behind it, 6 is not
    assert [6] == list(t._lost_recent)
    feed(t, list(range(22, 60)), now=10.0)  # 8..17, 19 and 20 time out; the window is (43, 59]
    assert (2 + 12, 1, []) == (t.lost, t.late, list(t._lost_recent))


def play(script: str) -> SequenceTracker:
    """Play ``script`` on a new tracker and declare whatever is still missing lost at the end.

    Tokens: ``7`` and ``1..373`` are observed in order, ``|`` is a reconnect, ``+5s`` lets
    five seconds pass, ``@b`` sets the epoch of the numbers that follow.
    """
    t = SequenceTracker()
    now, epoch = 0.0, None
    for token in script.split():
        if token == "|":
            t.new_connection()
        elif token.startswith("+"):
            now += float(token[1:].removesuffix("s"))
        elif token.startswith("@"):
            epoch = token[1:]
        else:
            first, _, last = token.partition("..")
            for seq in range(int(first), int(last or first) + 1):
                now += 0.001
                t.observe(seq, now, epoch)
    t.expire(now + t.loss_timeout + 1)
    return t


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # (resets, duplicated, out_of_order, lost)
        ("1..373 | 1..50", (1, 0, 0, 0)),  # the issue: restart, then a reconnect
        ("1..199 201..373 | 1..3 5..9", (1, 0, 0, 1)),  # 200 still awaited: forgotten; 4 lost
        ("1..199 201..373 +40s | 1..3 5..9", (1, 0, 0, 2)),  # 200 already declared lost stays
        ("1..373 +2s 1..50", (1, 0, 0, 0)),  # restart behind a proxy: no reconnect, a pause
        ("0..373 +2s 0..50", (1, 0, 0, 0)),  # a producer counting from 0
        ("1..373 | 101..150", (1, 0, 0, 0)),  # restarted minutes ago: below half the high mark
        ("1..373 1..50", (0, 50, 0, 0)),  # no pause, no reconnect: a replay, duplicates
        ("1..373 | 371..380", (0, 3, 0, 0)),  # a resuming server replaying a little
        ("1..373 | 274..380", (0, 100, 0, 0)),  # a server replaying its last 100 events
        ("1..373 +2s 373 374", (0, 1, 0, 0)),  # a real duplicate after a pause
        ("1..10 | 1..10", (0, 10, 0, 0)),  # too few numbers to tell a restart from a replay
        ("1..10 5", (0, 1, 0, 0)),  # a real duplicate
        ("1 3 2 4", (0, 0, 1, 0)),  # reordering
        ("1 3..40 | 2", (0, 0, 1, 0)),  # a gap filled after a reconnect: not a reset
        ("1..373 | 1..50 | 51..60", (1, 0, 0, 0)),  # the new range resumes: no second reset
        ("@a 1..373 @b 1..50", (1, 0, 0, 0)),  # a changed epoch: no pause needed
        ("@a 1..373 @b 400..410", (1, 0, 0, 0)),  # a changed epoch resets upwards too
        ("@a 1..373 +2s | @a 1..50", (0, 50, 0, 0)),  # the same epoch: a replay, duplicates
        ("1..373 @a | 1..50", (1, 0, 0, 0)),  # an epoch appearing is not yet trusted
    ],
)
def test_sequence_resets(script: str, expected: tuple[int, int, int, int]) -> None:
    """A producer restart is one reset; real duplicates and reordering keep their verdicts."""
    t = play(script)
    assert expected == (t.resets, t.duplicated, t.out_of_order, t.lost)


def test_reset_verdicts_after_reconnect() -> None:
    """After a reconnect the restarted sequence's first number is RESET and the next are NEW."""
    t = SequenceTracker()
    feed(t, list(range(1, 374)))
    t.new_connection()
    assert [Verdict.RESET, Verdict.NEW, Verdict.NEW] == feed(t, [1, 2, 3], now=1.0)
    assert 3 == t.highest


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:47:37Z", "2026-11-23T10:47:37Z"),
        (7, "7"),
        pytest.param("x" * 256, "x" * 256, id="256-chars"),
        pytest.param("x" * 257, None, id="257-chars"),
        pytest.param(10**300, None, id="301-digits"),
        (True, None),
        (1.5, None),
        ({"a": 1}, None),
        (None, None),
    ],
)
def test_epoch_of(value: object, expected: str | None) -> None:
    """An epoch is a string of at most 256 characters or an integer; anything else is none."""
    assert expected == epoch_of(value)
