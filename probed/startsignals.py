"""Signals that arrive before the daemon's own handlers exist are held, not fatal.

Importing the daemon takes a few hundred milliseconds; a SIGHUP in that time
would end the process with the default action (exit 129, no log line), as
``systemctl reload`` right after ``start`` does. The ``probed`` command calls
:func:`hold` first thing; the daemon takes the held signals once its loop
handles them (a held SIGHUP becomes a reload), and any other command
:func:`release`\\ s them, re-delivering a held one with its default action.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

__all__ = ["HELD", "hold", "release", "take"]

HELD = (signal.SIGHUP,)
_pending: list[int] = []
_holding = False


def _record(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def hold() -> None:
    """Record the signals in :data:`HELD` instead of acting on them."""
    global _holding
    _holding = True
    for signum in HELD:
        signal.signal(signum, _record)


def take() -> list[int]:
    """The signals held so far (oldest first), forgotten once taken."""
    held = list(_pending)
    _pending.clear()
    return held


def release() -> None:
    """Restore the default actions and re-deliver any held signal (a non-daemon command)."""
    global _holding
    if not _holding:
        return
    _holding = False
    held = take()
    for signum in HELD:
        signal.signal(signum, signal.SIG_DFL)
    for arrived in dict.fromkeys(held):
        os.kill(os.getpid(), arrived)
