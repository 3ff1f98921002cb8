"""Recommendations: which degraded-mode playbook the operator should apply now.

Pure: no I/O, no asyncio, no clock reads. Time is ``Signals.now``; the daemon
calls ``RecommendationEngine.evaluate`` every ``[recommend] evaluate_every``
with a fresh ``Signals`` and hands the returned ``Transition`` objects to the
logs and the alerting tasks.

Scenarios (the ids are the bounded ``scenario`` metric label, ``SCENARIOS``)::

    target_down        every probe of a target fails to connect       (Sev-1)
    health_failing     plain http probes failing                      (probe_failing_severity)
    sse_degraded    A  stream lag, stream down, reflect probes failing  (Sev-2, Sev-1 all dark)
    backlog         B  import jobs past deadline/stalled, queue depth   (Sev-2)
    rate_limited    C  share of runs answered 429                       (Sev-3, Sev-2 at >= 50 %)
    login_degraded  D  login probes failing or slow                     (Sev-2, Sev-1 at >= 50 %)
    ai_errors       E  fixture (AI) probes failing                      (Sev-2)
    fast_burn       F  an SLO burning budget fast, confirmed by 5m      (Sev-2, Sev-1 overspent)

The package, one job per module:

- ``facts``: what a rule sees, graded facts and the assessment they add up to;
- ``assess_targets``: the rules about targets (``target_down``, ``health_failing``);
- ``assess_symptoms``: the rules about what users see (``sse_degraded`` … ``fast_burn``);
- ``scenarios``: every scenario with its rule, in order, and the playbook placeholders;
- ``episode``: one scenario's state and the ``Transition`` reporting its changes;
- ``snapshot``: the episodes as JSON-compatible data and back, for restarts;
- ``engine``: the state machine (pending, active, inconclusive, resolved).

The playbook texts are configuration: :mod:`probed.playbooks`.
"""

from __future__ import annotations

from probed.recommend.engine import RecommendationEngine
from probed.recommend.episode import Transition
from probed.recommend.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "RecommendationEngine", "Transition"]
