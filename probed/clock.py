"""probed's wall clock: the system's time at start, then advanced by the monotonic clock.

Timestamps that go into SLO buckets and delivery lags must not jump when an
operator or NTP steps the system clock: a +1 h step would turn every event into
an hour late and spend a week's error budget in a minute, and a step back would
pile new events into old buckets. :func:`wall` is therefore ``time.time()`` read
once (at import, i.e. start-up) plus ``time.monotonic()`` elapsed since, which
NTP slews with the system clock but never steps. :func:`step` is how far the
system clock has since stepped away (exported as ``probed_wall_clock_step_seconds``);
:class:`StepWatch` logs each new step once.

Where probed compares with someone else's clock (a server's ``Date``, an event's
enqueue stamp) it compares with :func:`wall`, and the estimated offset to that
clock is exported beside the lag, so a system clock that was wrong at start shows
up as an offset, not as a lag that changes with every step.
"""

from __future__ import annotations

import time

import structlog

__all__ = [
    "STEP_TOLERANCE",
    "StepWatch",
    "on_system_clock",
    "step",
    "stepped",
    "wall",
    "wall_at",
]

_log = structlog.get_logger("probed")

_ANCHOR = time.time() - time.monotonic()

STEP_TOLERANCE = 1.0
"""Seconds the system clock may move against :func:`wall` before it counts as a step."""


def wall() -> float:
    """Unix seconds that never step: the system time at start plus monotonic time since."""
    return time.monotonic() + _ANCHOR


def wall_at(monotonic: float) -> float:
    """:func:`wall` at the ``time.monotonic()`` reading ``monotonic`` (no second reading)."""
    return monotonic + _ANCHOR


def step() -> float:
    """How far the system clock is from :func:`wall` (positive: stepped forward)."""
    return time.time() - wall()


def stepped() -> float:
    """:func:`step` once it is a step (at least ``STEP_TOLERANCE``), to the millisecond; else 0.

    Both clocks are slewed alike, so below the tolerance the difference is reading noise.
    """
    moved = step()
    return round(moved, 3) if abs(moved) >= STEP_TOLERANCE else 0.0


def on_system_clock(at: float) -> float:
    """``at`` (a :func:`wall` time) on the system clock, for peers that read that one."""
    return at + stepped()


class StepWatch:
    """Notices when the system clock steps and logs ``wall_clock_step`` once per step."""

    def __init__(self) -> None:
        self._seen = step()

    def check(self) -> float | None:
        """The size of a new step since the last check (seconds), or None if there was none."""
        now = step()
        moved = now - self._seen
        if abs(moved) < STEP_TOLERANCE:
            return None
        self._seen = now
        _log.warning(
            "wall_clock_step",
            step_seconds=round(moved, 3),
            system_minus_probed_seconds=round(now, 3),
        )
        return moved
