"""Where the evaluator meets the state file: the parts of it the state file holds, and
the SLO feed that counts a run or event and journals it for the replay in one step."""

from __future__ import annotations

from probed.evaluate import Evaluator
from probed.persist import Persisted, Persister
from probed.results import ProbeRun

__all__ = ["SloFeed", "persisted_parts"]


def persisted_parts(evaluator: Evaluator) -> Persisted:
    """The objects of ``evaluator`` the state file saves and restores."""
    ev = evaluator
    return Persisted(ev.slo, ev.engine, ev.history, ev.maintenance, ev.counts_for_slo)


class SloFeed:
    """The SLO evaluator and the state that replays it, fed together: a run and lag sink.

    In one loop step the evaluator counts a run (or timed event) and the persister
    queues it, so a restart replays exactly what the SLO snapshot does not yet count;
    an event the SLOs leave out (maintenance, skew) is not journalled either.
    """

    def __init__(self, evaluator: Evaluator, persister: Persister) -> None:
        self._evaluator = evaluator
        self._persister = persister

    def run_finished(self, run: ProbeRun, scheduler_lag: float) -> None:
        """Count ``run`` in the SLOs and queue it for the state file."""
        self._evaluator.record_run(run)
        self._persister.record(run)

    def lag_measured(self, stream: str, lag: float, wall: float) -> None:
        """Count a timed event in the SLOs; journal it if they counted it."""
        if self._evaluator.record_lag(stream, lag, wall):
            self._persister.record_lag(stream, lag, wall)
