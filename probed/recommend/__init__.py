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
- ``engine``: the other rules, the scenarios and the state machine.

The playbook texts are configuration: :mod:`probed.playbooks`.
"""

from __future__ import annotations

from probed.recommend.engine import SCENARIOS, RecommendationEngine, Transition

__all__ = ["SCENARIOS", "RecommendationEngine", "Transition"]
