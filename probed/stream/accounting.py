"""Pure delivery accounting: event timestamps and sequence tracking (no I/O).

``SequenceTracker`` follows LinkedIn's Xinfra Monitor in spirit, with one
difference: reordering is not counted as duplication. A received-set window
tells a duplicate (seen before) from a late arrival filling a gap
(out of order), and a gap only becomes *lost* after ``loss_timeout`` seconds
or once it falls ``window`` sequence numbers behind. A sequence number that
was already declared lost and then arrives is moved from lost to late.

**Resets.** A producer that restarts numbers its events from the start again;
those are new events, not duplicates. A number at or below the highest seen
that is not awaited (neither missing nor declared lost) is a *reset* when

* its epoch differs from the previous event's (``epoch``, e.g. from
  ``sequence_epoch_field``): the epoch alone decides, the sequence may even go
  up. While the epoch stays the same, nothing below is applied: a number seen
  again is a duplicate, however far back it lies;
* or it lies more than ``window`` below the highest (as before: nothing
  tracked could explain it);
* or it is the first number after a reconnect (``new_connection``) or after
  ``restart_pause`` seconds without a number, and it fell to at most half the
  highest and by more than ``restart_margin``: 373 → 1 or 373 → 101 is a
  restart, while 373 → 371 (a server resuming a little early) or 373 → 274 (a
  server replaying its last 100 events) stays duplicates. Without a pause or a
  reconnect a drop is a replay, counted as duplicates.

The margin makes young streams ambiguous: 10 → 1 after a reconnect counts
duplicates, and a server that replays its whole history from 1 on every
reconnect looks exactly like a restart (an epoch tells them apart). After a
reset the tracker starts over from the new number: gaps of the old range that
were still awaited are forgotten (losses already declared stay), and the new
range is accounted from scratch.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import Literal

__all__ = ["SequenceTracker", "Verdict", "epoch_of", "parse_timestamp"]

TimestampFormat = Literal["auto", "rfc3339", "epoch_s", "epoch_ms"]

# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1e11


def parse_timestamp(value: object, fmt: TimestampFormat = "auto") -> float | None:
    """An event's enqueue stamp as Unix seconds, or None if it is absent or unreadable.

    ``rfc3339``: ``2026-11-23T10:47:37.123Z`` (offsets allowed); ``epoch_s`` /
    ``epoch_ms``: a number or a numeric string; ``auto`` decides by type and size.
    """
    if value.__class__ is float and fmt == "auto":  # the common case, as below
        if not math.isfinite(value):
            return None
        return value / 1000.0 if abs(value) >= _MS_THRESHOLD else value
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


_EPOCH_MAX_CHARS = 256


def epoch_of(value: object) -> str | None:
    """``value`` as a sequence epoch (a string of at most 256 characters or an integer) or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # json.loads refuses integers over 4,300 digits
    if isinstance(value, str) and len(value) <= _EPOCH_MAX_CHARS:
        return value
    return None


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
        "_last_at",
        "_lost_recent",
        "_missing",
        "_reconnected",
        "_ring",
        "duplicated",
        "epoch",
        "highest",
        "late",
        "loss_timeout",
        "lost",
        "out_of_order",
        "resets",
        "restart_margin",
        "restart_pause",
        "window",
    )

    def __init__(
        self,
        window: int = 4096,
        loss_timeout: float = 30.0,
        *,
        restart_pause: float = 1.0,
        restart_margin: int = 16,
    ) -> None:
        self.window = window
        self.loss_timeout = loss_timeout
        self.restart_pause = restart_pause
        self.restart_margin = restart_margin
        self.highest: int | None = None
        self.epoch: str | None = None
        self._missing: dict[int, float] = {}
        # received flags of the sequence numbers in (highest - window, highest], indexed
        # by seq % window: one byte per slot, not an int object and a set entry per event
        self._ring = bytearray(window)
        # sequence numbers declared lost that are still inside the window, oldest first
        # (a late arrival is told from a reset by them); forgotten as the window moves on
        self._lost_recent: dict[int, None] = {}
        self._last_at: float | None = None
        """When the last number was observed (a pause before a drop marks a restart)."""
        self._reconnected = False
        """Whether no number was observed since ``new_connection``."""
        self.lost = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.late = 0
        self.resets = 0

    def new_connection(self) -> None:
        """The subscriber reconnected: its next number may show a restarted producer."""
        self._reconnected = True

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

    def observe(self, seq: int, now: float, epoch: str | None = None) -> Verdict:
        """Account one received sequence number at monotonic time ``now``.

        ``epoch`` is the producer's run the number belongs to (None: not known).
        """
        highest = self.highest
        if (  # the next number, nothing missing or lost to look after: the common case
            highest is not None
            and seq == highest + 1
            and not self._missing
            and not self._lost_recent
            and (epoch is None or self.epoch is None or epoch == self.epoch)
        ):
            if epoch is not None:
                self.epoch = epoch
            self._reconnected = False
            self._last_at = now
            self._ring[seq % self.window] = 1
            self.highest = seq
            return Verdict.NEW
        self.expire(now)
        trusted = epoch is not None and epoch == self.epoch  # the epoch decides, not a drop
        changed = epoch is not None and self.epoch is not None and epoch != self.epoch
        if epoch is not None:
            self.epoch = epoch
        after_break = self._reconnected or (
            self._last_at is not None and now - self._last_at >= self.restart_pause
        )
        self._reconnected = False
        self._last_at = now
        if highest is None:
            self.highest = seq
            self._remember(seq)
            return Verdict.NEW
        if changed:
            return self._reset(seq)
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
        if seq in self._lost_recent:
            del self._lost_recent[seq]
            self.lost -= 1
            self.late += 1
            self._remember(seq)
            return Verdict.LATE
        if not trusted and (
            seq < highest - self.window
            or (after_break and seq <= highest // 2 and highest - seq > self.restart_margin)
        ):
            return self._reset(seq)
        # seen before, or inside the window and never missing (an old duplicate we forgot),
        # or far behind within the same epoch
        self.duplicated += 1
        return Verdict.DUPLICATE

    def _reset(self, seq: int) -> Verdict:
        """The producer restarted its sequence at ``seq``: start over from it."""
        self.resets += 1
        self._missing.clear()
        self._lost_recent.clear()
        self._ring = bytearray(self.window)
        self.highest = seq
        self._remember(seq)
        return Verdict.RESET

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
