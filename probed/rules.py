"""Prometheus recording and alerting rules from the configuration (``probed rules``).

Pure: a ``Config`` in, rule groups out (no I/O); ``probed.rulefile`` writes the file and
adds the fleet's groups (``probed.fleetrules``).

Per ``[[slos]]`` entry, one rule group ``probed-slo-NAME`` holds

- recording rules ``slo:sli_error:ratio_rate<W>{slo="NAME"}``, the share of bad
  events over each window ``W`` of ``ERROR_RATIO_WINDOWS`` (5m … 3d), summed over
  every probed instance and location, so several probing hosts count as one SLI:

  ============  ====================================================================
  sli           bad / total
  ============  ====================================================================
  availability  ``probed_probe_runs_total{result="failure"}`` / all runs of ``probes``
  latency       1 - runs within ``threshold`` (the ``le`` bucket) / all runs of ``probes``
  delivery_lag  1 - events within ``threshold`` / all timed events of ``stream``
  ============  ====================================================================

  Runs and events probed left out of the SLO (a maintenance window, an overloaded
  prober: ``probed_slo_excluded_events_total``) are subtracted from both the bad (or
  good) and the total events, as probed's own SLO evaluator leaves them out. A window
  without any counted run or event has no sample (the denominator is filtered with
  ``> 1e-9``), never ``NaN``;

- the multi-window, multi-burn-rate alerts of the Google SRE workbook (chapter 5,
  table 5-8), one rule per window pair, all named ``SloErrorBudgetBurn`` and
  told apart by the ``long_window`` and ``short_window`` labels:

  =====  ========  =======  ===========  ============  =========  ======
  speed  severity  routing  long window  short window  burn rate  for
  =====  ========  =======  ===========  ============  =========  ======
  fast   Sev-2     page     1h           5m            14.4       2m
  fast   Sev-2     page     6h           30m           6          2m
  slow   Sev-3     ticket   1d           2h            3          15m
  slow   Sev-3     ticket   3d           6h            1          1h
  =====  ========  =======  ===========  ============  =========  ======

  A fast burn is Sev-2, as the severity matrix has it ("fast SLO burn"); a slow
  one Sev-3. Sev-1 is left to the ``fast_burn`` recommendation, which also
  knows whether the budget is already spent.

  An alert fires while the error ratio exceeds ``burn rate * (1 - objective)``
  over both windows: the long one proves the burn is significant, the short one
  that it is still going on (so the alert resolves minutes after recovery, not
  hours). The burn rates are the workbook's, chosen for a 30-day budget; the
  annotations state what they mean for the SLO's own ``window``;

- ``SloFastBurnRecommended``, the Prometheus twin of the engine's ``fast_burn``
  recommendation (left out when ``[recommend] disabled`` lists it): the 1h and
  5m error ratios both above ``[recommend] fast_burn_rate * (1 - objective)``,
  ``for: enter_for`` (the engine's PENDING -> ACTIVE dwell) and
  ``keep_firing_for: exit_for`` (its exit dwell: it keeps firing until the
  condition has been false for ``exit_for``). Sev-2, page; the engine's Sev-1
  for an overspent budget and its ``min_runs`` and coverage guards are not
  repeated. ``tests/test_burn_agreement.py`` feeds one series to both and
  checks they enter and clear within one evaluation interval.

Alerts with a ``probe`` (or ``stream``) label are silent while
``probed_maintenance_active`` says the probe is under a maintenance window; the
SLO ratios, and so the burn alerts, leave its runs out (above).

A last group ``probed`` holds the alerts that are not derived from SLOs: a
stream with fewer connections than subscribers and reflect lag p95 above 3 s
(Sev-2), a failing probe and probed's own health (failed config reload,
event-loop lag; Sev-3), a TLS certificate a target presents expiring within
14 days (Sev-3) or 3 days (Sev-2; ``ProbeCertificateExpiresSoon``, told apart
by ``expires_within``), and active degraded-mode recommendations (the
recommendation's own Sev level).

Every alert carries ``severity`` = its Sev level and ``routing`` = ``page`` or
``ticket`` by ``probed.signals.ROUTING``, the labels probed's own Alertmanager
push sets, so one Alertmanager route on ``routing`` serves both.

Histogram ``le`` label values are written exactly as probed exposes them
(``repr(float)``: ``"0.25"``, ``"5.0"``), which is also how Prometheus 3
normalises them on ingestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from probed.config import SLO_WINDOWS, Config, SloConfig
from probed.durations import format_duration
from probed.playbooks import merge
from probed.records import record
from probed.signals import ROUTING, ROUTING_LABEL, Routing, Severity

__all__ = [
    "BURN_RATE_ALERTS",
    "CERTIFICATE_EXPIRY_ALERTS",
    "ERROR_RATIO_WINDOWS",
    "FAST_BURN_ALERT",
    "RUNBOOK_ANCHORS",
    "BurnRateAlert",
    "ErrorRatioParts",
    "by_scenario",
    "error_ratio_expr",
    "error_ratio_parts",
    "le_label",
    "probed_group",
    "runbook_url",
    "severity_labels",
    "slo_group",
]


@record
class BurnRateAlert:
    """One window pair of the multi-window multi-burn-rate alerts."""

    speed: Literal["fast", "slow"]
    severity: Severity
    long_window: str
    short_window: str
    burn_rate: float
    for_: str


BURN_RATE_ALERTS: tuple[BurnRateAlert, ...] = (
    BurnRateAlert("fast", Severity.SEV2, "1h", "5m", 14.4, "2m"),
    BurnRateAlert("fast", Severity.SEV2, "6h", "30m", 6.0, "2m"),
    BurnRateAlert("slow", Severity.SEV3, "1d", "2h", 3.0, "15m"),
    BurnRateAlert("slow", Severity.SEV3, "3d", "6h", 1.0, "1h"),
)
"""The SRE workbook's table 5-8 (burn rates for a 30-day budget), Sev level by speed."""

ERROR_RATIO_WINDOWS: tuple[str, ...] = tuple(
    sorted(
        {w for a in BURN_RATE_ALERTS for w in (a.long_window, a.short_window)},
        key=SLO_WINDOWS.__getitem__,
    )
)
"""Windows of the recorded error ratios: every window an alert needs (5m … 3d)."""

RUNBOOK_ANCHORS: dict[str, str] = {
    "fast": "fast_burn",
    "slow": "slow_burn",
    "StreamDisconnected": "sse_degraded",
    "ReflectLatencyP95High": "sse_degraded",
    "ProbeFailing": "probe_failing",
    "ProbeCertificateExpiresSoon": "certificate_expiry",
    "ProbedConfigReloadFailed": "config_reload_failed",
    "ProbedEventLoopLagHigh": "event_loop_lag",
    "ProberIsolated": "prober_isolated",
    "ProberDown": "prober_down",
    "FleetQuorumAtRisk": "prober_down",
}
"""Sections of ``[recommend] runbook_base_url`` the alerts link to (``base#anchor``).

SLO alerts use the SLO's own ``runbook_url`` when it has one. ``fast_burn`` and
``sse_degraded`` are the sections of those recommendation scenarios; the
degraded-mode alert links to the section named after its scenario.
"""

_RECORD = "slo:sli_error:ratio_rate{window}"

FAST_BURN_ALERT = "SloFastBurnRecommended"
"""The alert twin of the ``fast_burn`` recommendation (its windows: 1h and 5m)."""


def severity_labels(severity: Severity) -> dict[str, str]:
    """The ``severity`` and ``routing`` labels of an alert of ``severity``."""
    return {"severity": severity.value, ROUTING_LABEL: severity.routing.value}


def _routing_template() -> str:
    """A label template: the ``routing`` of the alert's ``severity`` label, by ``ROUTING``."""
    branches = []
    for routing in Routing:
        levels = " ".join(f'"{sev.value}"' for sev, r in ROUTING.items() if r is routing)
        branches.append(f"if eq $labels.severity {levels} }}}}{routing.value}")
    return "{{ " + "{{ else ".join(branches) + "{{ end }}"


def le_label(bound: float) -> str:
    """The ``le`` label value of a histogram bucket, exactly as probed exposes it."""
    return repr(float(bound))


def _num(value: float) -> str:
    """A number for PromQL or prose without float noise (``1 - 0.999`` -> ``0.001``)."""
    return f"{value:.12g}"


def _pct(ratio: float) -> str:
    """A ratio as a percentage for prose (``0.0144`` -> ``1.44%``)."""
    return f"{ratio * 100:.4g}%"


def _human_span(seconds: float) -> str:
    """A rough duration for prose: ``2.08d``, ``10d``, ``28h``, ``42m``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.0f}s"


def _literal(text: str) -> str:
    """User text inside an annotation: its ``{{`` must not start a Go template action."""
    return text.replace("{{", '{{ "{{" }}')


def _budget(slo: SloConfig) -> float:
    return float(_num(1.0 - slo.objective))


def _probe_matcher(probes: list[str]) -> str:
    names = sorted(set(probes))
    if len(names) == 1:
        return f'probe="{names[0]}"'
    return f'probe=~"{"|".join(names)}"'


_EXCLUDED = "probed_slo_excluded_events_total"
_NO_TRAFFIC = "1e-9"
"""Events per second under which a window has no traffic (the subtraction's float residue)."""


@record
class ErrorRatioParts:
    """The event rates of an SLO over one window, as PromQL, before any summing across
    instances: all events, and the bad (availability) or good (latency, lag) ones, each
    with the rate of those probed left out (``probed_slo_excluded_events_total``)."""

    total: str
    excluded_total: str
    bad: str | None
    excluded_bad: str
    good: str | None
    excluded_good: str


def error_ratio_parts(slo: SloConfig, window: str) -> ErrorRatioParts:
    """The rates ``error_ratio_expr`` (and the fleet's per-location records) are made of."""

    def excluded(outcome: str | None) -> str:
        only = "" if outcome is None else f',outcome="{outcome}"'
        return f'rate({_EXCLUDED}{{slo="{slo.name}"{only}}}[{window}])'

    if slo.sli == "availability":
        sel = _probe_matcher(slo.probes)
        return ErrorRatioParts(
            total=f"rate(probed_probe_runs_total{{{sel}}}[{window}])",
            excluded_total=excluded(None),
            bad=f'rate(probed_probe_runs_total{{{sel},result="failure"}}[{window}])',
            excluded_bad=excluded("bad"),
            good=None,
            excluded_good=excluded("good"),
        )
    assert slo.threshold is not None  # SloConfig requires it for latency and delivery_lag
    if slo.sli == "latency":
        metric, sel = "probed_probe_duration_seconds", _probe_matcher(slo.probes)
    else:
        metric, sel = "probed_delivery_lag_seconds", f'stream="{slo.stream}"'
    return ErrorRatioParts(
        total=f"rate({metric}_count{{{sel}}}[{window}])",
        excluded_total=excluded(None),
        bad=None,
        excluded_bad=excluded("bad"),
        good=f'rate({metric}_bucket{{{sel},le="{le_label(slo.threshold)}"}}[{window}])',
        excluded_good=excluded("good"),
    )


def _minus_excluded(events: str, excluded: str, indent: str) -> str:
    """``events`` less the SLO's events probed left out (``probed.sloexclusions``)."""
    return f"{indent}sum({events})\n{indent}- (sum({excluded}) or vector(0))\n"


def error_ratio_expr(slo: SloConfig, window: str) -> str:
    """PromQL of the SLO's error ratio (bad / total events) over ``window``.

    Runs and events probed left out of the SLO (maintenance windows, an overloaded
    prober) are subtracted from both the bad (or good) and the total events.
    """
    parts = error_ratio_parts(slo, window)
    if parts.bad is not None:
        return (
            f"(\n{_minus_excluded(parts.bad, parts.excluded_bad, '  ')})\n/\n"
            f"((\n{_minus_excluded(parts.total, parts.excluded_total, '  ')}) > {_NO_TRAFFIC})\n"
        )
    assert parts.good is not None
    good = _minus_excluded(parts.good, parts.excluded_good, "    ")
    total = _minus_excluded(parts.total, parts.excluded_total, "    ")
    return f"1 - (\n  (\n{good}  )\n  /\n  ((\n{total}  ) > {_NO_TRAFFIC})\n)\n"


def _bad_events(slo: SloConfig) -> str:
    """What a bad event of the SLO is, for annotations."""
    if slo.sli == "availability":
        return f"of the runs of {', '.join(sorted(set(slo.probes)))} failed"
    assert slo.threshold is not None
    limit = format_duration(slo.threshold)
    if slo.sli == "latency":
        return f"of the runs of {', '.join(sorted(set(slo.probes)))} took longer than {limit}"
    return f"of the events of stream {slo.stream} arrived later than {limit}"


def runbook_url(config: Config, anchor: str) -> str:
    """The runbook section ``anchor`` under ``[recommend] runbook_base_url``."""
    return f"{_literal(config.recommend.runbook_base_url)}#{anchor}"


def slo_group(
    config: Config, slo: SloConfig, records: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The group ``probed-slo-NAME``: ``records`` of the error ratios (by default those of
    one probed, or of several summed), then the burn-rate alerts reading them."""
    rules: list[dict[str, Any]] = (
        [
            {
                "record": _RECORD.format(window=window),
                "expr": error_ratio_expr(slo, window),
                "labels": {"slo": slo.name},
            }
            for window in ERROR_RATIO_WINDOWS
        ]
        if records is None
        else list(records)
    )
    budget = _budget(slo)
    what = _literal(slo.description or slo.name)
    for pair in BURN_RATE_ALERTS:
        limit = f"({_num(pair.burn_rate)} * {_num(budget)})"
        long_series = f'{_RECORD.format(window=pair.long_window)}{{slo="{slo.name}"}}'
        short_series = f'{_RECORD.format(window=pair.short_window)}{{slo="{slo.name}"}}'
        share = pair.burn_rate * SLO_WINDOWS[pair.long_window] / slo.window
        rules.append(
            {
                "alert": "SloErrorBudgetBurn",
                "expr": f"{long_series} > {limit}\nand\n{short_series} > {limit}\n",
                "for": pair.for_,
                "labels": {
                    **severity_labels(pair.severity),
                    "slo": slo.name,
                    "long_window": pair.long_window,
                    "short_window": pair.short_window,
                },
                "annotations": {
                    "summary": (
                        f"{pair.speed.capitalize()} error-budget burn of SLO {slo.name} "
                        f"({_num(pair.burn_rate)}x over {pair.long_window} and "
                        f"{pair.short_window})"
                    ),
                    "description": (
                        f"{what}: {{{{ $value | humanizePercentage }}}} "
                        f"{_bad_events(slo)} over the last {pair.long_window}, and more than "
                        f"{_pct(pair.burn_rate * budget)} over the last {pair.short_window}. "
                        f"The objective is {_pct(slo.objective)}, so the error budget is "
                        f"{_pct(budget)} and it burns at least {_num(pair.burn_rate)}x as fast "
                        f"as sustainable: {_pct(share)} of the "
                        f"{format_duration(slo.window)} budget in {pair.long_window}, all of it "
                        f"within {_human_span(slo.window / pair.burn_rate)}."
                    ),
                    "runbook_url": _literal(slo.runbook_url)
                    if slo.runbook_url
                    else runbook_url(config, RUNBOOK_ANCHORS[pair.speed]),
                },
            }
        )
    if "fast_burn" not in config.recommend.disabled:
        rules.append(_fast_burn_twin(config, slo))
    return {"name": f"probed-slo-{slo.name}", "rules": rules}


def _fast_burn_twin(config: Config, slo: SloConfig) -> dict[str, Any]:
    """The alert that fires while the engine's ``fast_burn`` would be ACTIVE for ``slo``."""
    rec = config.recommend
    budget = _budget(slo)
    limit = f"({_num(rec.fast_burn_rate)} * {_num(budget)})"
    long_series = f'{_RECORD.format(window="1h")}{{slo="{slo.name}"}}'
    short_series = f'{_RECORD.format(window="5m")}{{slo="{slo.name}"}}'
    return {
        "alert": FAST_BURN_ALERT,
        "expr": f"{long_series} > {limit}\nand\n{short_series} > {limit}\n",
        "for": format_duration(rec.enter_for),
        "keep_firing_for": format_duration(rec.exit_for),
        "labels": {
            **severity_labels(Severity.SEV2),
            "slo": slo.name,
            "long_window": "1h",
            "short_window": "5m",
        },
        "annotations": {
            "summary": (
                f"Fast burn of SLO {slo.name}: the fast_burn playbook applies "
                f"({_num(rec.fast_burn_rate)}x over 1h and 5m)"
            ),
            "description": (
                f"{_literal(slo.description or slo.name)}: {{{{ $value | humanizePercentage }}}} "
                f"{_bad_events(slo)} over the last 1h, and more than "
                f"{_pct(rec.fast_burn_rate * budget)} over the last 5m "
                f"({_num(rec.fast_burn_rate)}x the {_pct(budget)} error budget), for "
                f"{format_duration(rec.enter_for)}. This is the rule twin of probed's fast_burn "
                f"recommendation; it clears {format_duration(rec.exit_for)} after the 5m window "
                "drops below the rate."
            ),
            "runbook_url": _literal(slo.runbook_url)
            if slo.runbook_url
            else runbook_url(config, RUNBOOK_ANCHORS["fast"]),
        },
    }


_UNDER_MAINTENANCE = "unless on(probe) probed_maintenance_active == 1\n"
"""Leaves out the probes probed reports under a maintenance window."""

CERTIFICATE_EXPIRY_ALERTS: tuple[tuple[Severity, int], ...] = (
    (Severity.SEV3, 14),
    (Severity.SEV2, 3),
)
"""``ProbeCertificateExpiresSoon``: (Sev level, days left under which it fires)."""


def _certificate_expiry(runbook_url: str) -> list[dict[str, Any]]:
    """A ticket when a presented certificate expires within 14 days, a page within 3.

    No ``for``: the expiry is a date, not a noisy measurement. ``keep_firing_for``
    keeps one steady alert when the backends behind a target present different
    certificates (the last run's value alternates) and clears it 30 minutes after
    the renewal is seen everywhere.
    """
    return [
        {
            "alert": "ProbeCertificateExpiresSoon",
            "expr": f"probe_ssl_earliest_cert_expiry - time() < {days} * 86400\n"
            + _UNDER_MAINTENANCE,
            "keep_firing_for": "30m",
            "labels": {**severity_labels(severity), "expires_within": f"{days}d"},
            "annotations": {
                "summary": (
                    f"A TLS certificate of probe {{{{ $labels.probe }}}} expires within {days} days"
                ),
                "description": (
                    "The earliest-expiring certificate the target of probe "
                    "{{ $labels.probe }} presents (probed {{ $labels.instance }}) expires in "
                    f"{{{{ $value | humanizeDuration }}}}, less than {days} days: renew it and "
                    "deploy the renewed chain before then."
                ),
                "runbook_url": runbook_url,
            },
        }
        for severity, days in CERTIFICATE_EXPIRY_ALERTS
    ]


def by_scenario(text: Mapping[str, str], otherwise: str) -> str:
    """A Go template: ``text`` of the alert's ``scenario`` label, else ``otherwise``."""
    if not text:
        return otherwise
    branches = [f'if eq $labels.scenario "{s}" }}}}{_literal(t)}' for s, t in sorted(text.items())]
    tail = f"{{{{ else }}}}{otherwise}" if otherwise else ""
    return "{{ " + "{{ else ".join(branches) + tail + "{{ end }}"


def probed_group(config: Config) -> dict[str, Any]:
    playbooks = merge(config.playbooks)

    def runbook(alert: str) -> str:
        return runbook_url(config, RUNBOOK_ANCHORS[alert])

    rules: list[dict[str, Any]] = [
        {
            "alert": "StreamDisconnected",
            "expr": "probed_stream_connected < probed_stream_subscribers\n"
            'unless on(stream) label_replace(probed_maintenance_active == 1, "stream", "$1", '
            '"probe", "(.*)")\n',
            "for": "2m",
            "labels": severity_labels(Severity.SEV2),
            "annotations": {
                "summary": "Stream {{ $labels.stream }} is disconnected",
                "description": (
                    "Only {{ $value }} of the subscriber connections of stream "
                    "{{ $labels.stream }} are open (probed {{ $labels.instance }}) for 2 minutes: "
                    "live events are not reaching that subscriber."
                ),
                "runbook_url": runbook("StreamDisconnected"),
            },
        },
        {
            "alert": "ReflectLatencyP95High",
            "expr": "histogram_quantile(0.95, rate(probed_reflect_lag_seconds_bucket[5m])) > 3\n"
            + _UNDER_MAINTENANCE,
            "for": "10m",
            "labels": severity_labels(Severity.SEV2),
            "annotations": {
                "summary": "Reflect delivery p95 of {{ $labels.probe }} is above 3s",
                "description": (
                    "The 95th percentile time from injecting a canary event to its arrival on "
                    "the stream is {{ $value | humanizeDuration }} over the last 5 minutes "
                    "(probe {{ $labels.probe }}, probed {{ $labels.instance }}); the target "
                    "is 3s."
                ),
                "runbook_url": runbook("ReflectLatencyP95High"),
            },
        },
        {
            "alert": "ProbeFailing",
            "expr": "probe_success == 0\n" + _UNDER_MAINTENANCE,
            "for": "5m",
            "labels": severity_labels(Severity.SEV3),
            "annotations": {
                "summary": "Probe {{ $labels.probe }} is failing",
                "description": (
                    "The latest run of probe {{ $labels.probe }} (probed {{ $labels.instance }}) "
                    "has failed at every evaluation for 5 minutes; "
                    "probed_probe_failures_total tells the reason."
                ),
                "runbook_url": runbook("ProbeFailing"),
            },
        },
        *_certificate_expiry(runbook("ProbeCertificateExpiresSoon")),
        {
            "alert": "ProbedConfigReloadFailed",
            "expr": "probed_config_last_reload_successful == 0\n",
            "for": "5m",
            "labels": severity_labels(Severity.SEV3),
            "annotations": {
                "summary": "probed {{ $labels.instance }} failed to reload its configuration",
                "description": (
                    "The last configuration reload of probed {{ $labels.instance }} failed; it "
                    "keeps probing with the previous configuration. `probed check` names the "
                    "problem."
                ),
                "runbook_url": runbook("ProbedConfigReloadFailed"),
            },
        },
        {
            "alert": "ProbedEventLoopLagHigh",
            "expr": "probed_event_loop_lag_seconds > 0.5\n",
            "for": "5m",
            "labels": severity_labels(Severity.SEV3),
            "annotations": {
                "summary": "probed {{ $labels.instance }} event loop is lagging",
                "description": (
                    "The event loop of probed {{ $labels.instance }} runs "
                    "{{ $value | humanizeDuration }} late (more than 0.5s for 5 minutes): "
                    "its timings, and so its probe results, are inflated."
                ),
                "runbook_url": runbook("ProbedEventLoopLagHigh"),
            },
        },
        {
            "alert": "DegradedModeRecommended",
            "expr": "probed_recommendation_active == 1\n",
            "labels": {
                "severity": "{{ $labels.severity }}",
                ROUTING_LABEL: _routing_template(),
            },
            "annotations": {
                "summary": "Degraded mode recommended: {{ $labels.scenario }} ("
                + by_scenario({s: pb.title for s, pb in playbooks.items()}, "")
                + ")",
                "description": (
                    "probed {{ $labels.instance }} recommends the {{ $labels.scenario }} "
                    "degraded-mode playbook ({{ $labels.severity }}); its status page and "
                    "/api/v1/recommendations show the evidence and the steps."
                ),
                "runbook_url": by_scenario(
                    {s: pb.runbook_url for s, pb in playbooks.items() if pb.runbook_url},
                    runbook_url(config, "{{ $labels.scenario }}"),
                ),
            },
        },
    ]
    return {"name": "probed", "rules": rules}
