"""Where results go: the sinks producers are handed when the daemon wires them.

The scheduler hands every finished run, the stream watchers every timed event, to
the sinks they were given at construction, in order and in the same loop step (no
await between), so that everything downstream sees the same runs. The daemon
builds the list once; it relays nothing itself.
"""

from __future__ import annotations

from typing import Protocol

from probed.results import ProbeRun

__all__ = ["LagSink", "RunSink"]


class RunSink(Protocol):
    """Takes every finished probe run (after the store has it)."""

    def run_finished(self, run: ProbeRun, scheduler_lag: float) -> None:
        """``run`` finished; it started ``scheduler_lag`` seconds after its planned time."""


class LagSink(Protocol):
    """Takes every timed stream event."""

    def lag_measured(self, stream: str, lag: float, wall: float) -> None:
        """An event of ``stream`` arrived ``lag`` seconds after its enqueue stamp, at ``wall``."""
