"""Pure delivery accounting: event timestamps and sequence tracking (no I/O).

``SequenceTracker`` follows LinkedIn's Xinfra Monitor in spirit, with one
difference: reordering is not counted as duplication. A received-set window
tells a duplicate (seen before) from a late arrival filling a gap
(out of order), and a gap only becomes *lost* after ``loss_timeout`` seconds
or once it falls ``window`` sequence numbers behind. A sequence number that
was already declared lost and then arrives is moved from lost to late.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import Literal

__all__ = ["SequenceTracker", "Verdict", "parse_timestamp"]

TimestampFormat = Literal["auto", "rfc3339", "epoch_s", "epoch_ms"]

# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1e11


def parse_timestamp(value: object, fmt: TimestampFormat = "auto") -> float | None:
    """An event's enqueue stamp as Unix seconds, or None if it is absent or unreadable.

    ``rfc3339``: ``2026-11-23T10:47:37.123Z`` (offsets allowed); ``epoch_s`` /
    ``epoch_ms``: a number or a numeric string; ``auto`` decides by type and size.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if fmt in ("epoch_s", "epoch_ms") or (fmt == "auto" and _is_number(text)):
            try:
                value = float(text)
            except ValueError:
                return None
        else:
            return _parse_rfc3339(text)
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number) or fmt == "rfc3339":
            return None
        if fmt == "epoch_ms" or (fmt == "auto" and abs(number) >= _MS_THRESHOLD):
            return number / 1000.0
        return number
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_rfc3339(text: str) -> float | None:
    if len(text) < 20 or text[10] not in "Tt ":
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # RFC 3339 requires an offset; a naive stamp is ambiguous
        return None
    return parsed.timestamp()


class Verdict(enum.Enum):
    """What one observed sequence number was."""

    NEW = "new"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    LATE = "late"
    RESET = "reset"


class SequenceTracker:
    """Loss, duplication and reordering of one subscriber's sequence numbers."""

    __slots__ = (
        "_lost_recent",
        "_missing",
        "_ring",
        "duplicated",
        "highest",
        "late",
        "loss_timeout",
        "lost",
        "out_of_order",
        "resets",
        "window",
    )

    def __init__(self, window: int = 4096, loss_timeout: float = 30.0) -> None:
        self.window = window
        self.loss_timeout = loss_timeout
        self.highest: int | None = None
        self._missing: dict[int, float] = {}
        # received flags of the sequence numbers in (highest - window, highest], indexed
        # by seq % window: one byte per slot, not an int object and a set entry per event
        self._ring = bytearray(window)
        # sequence numbers declared lost that are still inside the window, oldest first
        # (a late arrival is told from a reset by them); forgotten as the window moves on
        self._lost_recent: dict[int, None] = {}
        self.lost = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.late = 0
        self.resets = 0

    def _remember(self, seq: int) -> None:
        self._ring[seq % self.window] = 1

    def _advance(self, old: int, new: int) -> None:
        """Move the window's top from ``old`` to ``new``: clear the slots it enters."""
        window = self.window
        if new - old >= window:
            self._ring = bytearray(window)
            return
        ring = self._ring
        for seq in range(old + 1, new + 1):
            ring[seq % window] = 0

    def _seen(self, seq: int) -> bool:
        assert self.highest is not None
        return self.highest - self.window < seq <= self.highest and bool(
            self._ring[seq % self.window]
        )

    def observe(self, seq: int, now: float) -> Verdict:
        """Account one received sequence number at monotonic time ``now``."""
        self.expire(now)
        highest = self.highest
        if highest is None:
            self.highest = seq
            self._remember(seq)
            return Verdict.NEW
        if seq > highest:
            first = highest + 1
            if seq - first > self.window:  # a gap wider than the window: older part lost now
                self.lost += seq - first - self.window
                first = seq - self.window
            for missing in range(first, seq):
                self._missing[missing] = now
            self._advance(highest, seq)
            self.highest = seq
            self._remember(seq)
            self._forget_lost_before(seq - self.window)
            return Verdict.NEW
        if seq in self._missing:
            del self._missing[seq]
            self.out_of_order += 1
            self._remember(seq)
            return Verdict.OUT_OF_ORDER
        if self._seen(seq):
            self.duplicated += 1
            return Verdict.DUPLICATE
        if seq in self._lost_recent:
            del self._lost_recent[seq]
            self.lost -= 1
            self.late += 1
            self._remember(seq)
            return Verdict.LATE
        if seq < highest - self.window:
            # far behind anything we track: the producer restarted its sequence
            self.resets += 1
            self._missing.clear()
            self._lost_recent.clear()
            self._ring = bytearray(self.window)
            self.highest = seq
            self._remember(seq)
            return Verdict.RESET
        # inside the window, never missing, never seen: an old duplicate we forgot
        self.duplicated += 1
        return Verdict.DUPLICATE

    def expire(self, now: float) -> int:
        """Declare gaps older than ``loss_timeout`` (or a window behind) lost; return how many."""
        missing = self._missing
        if not missing:
            return 0
        assert self.highest is not None
        floor = self.highest - self.window
        deadline = now - self.loss_timeout
        newly = 0
        while missing:
            seq, noticed = next(iter(missing.items()))
            if noticed > deadline and seq >= floor:
                break
            del missing[seq]
            self._lost_recent[seq] = None
            newly += 1
        self._forget_lost_before(floor)
        self.lost += newly
        return newly

    def _forget_lost_before(self, floor: int) -> None:
        """Forget lost sequence numbers at or below ``floor`` (and beyond ``window`` of them)."""
        lost = self._lost_recent
        while lost:
            oldest = next(iter(lost))
            if oldest > floor and len(lost) <= self.window:
                return
            del lost[oldest]

    @property
    def pending(self) -> int:
        """Sequence numbers currently missing but not yet declared lost."""
        return len(self._missing)
