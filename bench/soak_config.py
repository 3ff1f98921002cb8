"""The soak's plan (probes per kind, streams per target) and the daemon's config it writes.

Part of ``bench/soak.py`` (imported as ``soak_config``; ``bench/`` is the
script directory).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import LOOPBACK, BenchError
from soak_targets import PASSWORD_ENV, REPO, TargetProc

DEMO_CONFIG = REPO / "probed" / "demo" / "probes.toml"
FIXTURE = REPO / "probed" / "demo" / "fixtures" / "indicators.json"
USERNAME = "probe@demo.example"

FAST_INTERVAL = 2.0
"""Seconds between runs of each http, login and fixture probe."""
SLOW_INTERVAL = 10.0
"""Seconds between runs of each reflect and import probe (one of each per target)."""
SIGNAL_WINDOW = 300.0
"""The daemon's default ``[recommend] window``: per-run and per-event windows fill this long."""


def expected_fixture_sha() -> str:
    """The indicators fixture's expected hash, from the shipped demo config."""
    data = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    for probe in data.get("probes", []):
        if isinstance(probe, dict) and probe.get("kind") == "fixture":
            value = probe.get("expected_sha256")
            if isinstance(value, str):
                return value
    raise BenchError(f"no fixture probe with expected_sha256 in {DEMO_CONFIG}")


@dataclass(frozen=True, slots=True)
class Plan:
    """What the daemon is given: probes per kind, streams per target, events per second."""

    targets: int
    streams_per_target: tuple[int, ...]
    groups_per_target: tuple[int, ...]
    events_rate: float
    http: int
    logins: int
    fixtures: int

    @property
    def streams(self) -> int:
        return sum(self.streams_per_target)

    @property
    def fast_probes(self) -> int:
        return self.http + self.logins + self.fixtures

    @property
    def slow_probes(self) -> int:
        return 2 * self.targets

    @property
    def probes(self) -> int:
        return self.fast_probes + self.slow_probes

    @property
    def rate(self) -> float:
        """Planned probe runs per second."""
        return self.fast_probes / FAST_INTERVAL + self.slow_probes / SLOW_INTERVAL


def make_plan(args: argparse.Namespace) -> Plan:
    n_targets = args.targets
    if args.streams < 2 * n_targets:
        raise BenchError("--streams must be at least 2 per target (one control stream each)")
    base, extra = divmod(args.streams, n_targets)
    streams = tuple(base + (1 if k < extra else 0) for k in range(n_targets))
    per_target_rate = args.events_rate / n_targets
    # each filtered stream gets about one event per second: one event type per event/s
    groups = tuple(max(1, min(n - 1, round(per_target_rate))) for n in streams)
    fast = round((args.rate - 2 * n_targets / SLOW_INTERVAL) * FAST_INTERVAL)
    if fast < 3:
        raise BenchError(f"--rate {args.rate:g} is too low for {n_targets} targets")
    logins = max(1, round(fast * 0.05))
    fixtures = max(1, round(fast * 0.03))
    return Plan(
        targets=n_targets,
        streams_per_target=streams,
        groups_per_target=groups,
        events_rate=args.events_rate,
        http=fast - logins - fixtures,
        logins=logins,
        fixtures=fixtures,
    )


HEALTH_CHECKS = (
    ("/health", '[{ path = "status", equals = "healthy" }]'),
    ("/health/readiness", '[{ path = "status", equals = "ready" }]'),
    ("/health/liveness", '[{ path = "status", equals = "alive" }]'),
    ("/health/migrations", '[{ path = "status", equals = "up_to_date" }]'),
)


def q(text: str) -> str:
    """A TOML basic string."""
    return json.dumps(text)


def write_config(
    path: Path, plan: Plan, targets: Sequence[TargetProc], listen_port: int, state_dir: Path
) -> None:
    """The daemon's config: the planned probes and streams over ``targets``."""
    fast = f'interval = "{FAST_INTERVAL:g}s"\ntimeout = "1500ms"'
    parts = [
        "[daemon]",
        f'listen = "{LOOPBACK}:{listen_port}"',
        'location = "soak"',
        'env = "soak"',
        f"state_dir = {q(str(state_dir))}",
        'log_level = "info"',
        'log_format = "json"',
        "max_concurrency = 512",
        "",
    ]
    for t in targets:
        parts += [f"[targets.{t.name}]", f"base_url = {q(t.base_url)}", ""]
    http_names: list[str] = []
    login_names: list[str] = []
    for i in range(plan.http):
        t = targets[i % len(targets)]
        endpoint, checks = HEALTH_CHECKS[(i // len(targets)) % len(HEALTH_CHECKS)]
        name = f"http_{i:03d}"
        http_names.append(name)
        parts += [
            "[[probes]]",
            f"name = {q(name)}",
            'kind = "http"',
            f"target = {q(t.name)}",
            f"path = {q(endpoint)}",
            fast,
            f"json_checks = {checks}",
            "",
        ]
    for i in range(plan.logins):
        t = targets[i % len(targets)]
        name = f"login_{i:02d}"
        login_names.append(name)
        parts += [
            "[[probes]]",
            f"name = {q(name)}",
            'kind = "login"',
            f"target = {q(t.name)}",
            fast,
            f"username = {q(USERNAME)}",
            f'password = {{ env = "{PASSWORD_ENV}" }}',
            'token_path = "token"',
            'follow_up = { path = "/api/me", json_checks = [{ path = "id", exists = true }] }',
            "",
        ]
    sha = expected_fixture_sha()
    for i in range(plan.fixtures):
        t = targets[i % len(targets)]
        parts += [
            "[[probes]]",
            f'name = "fixture_{i:02d}"',
            'kind = "fixture"',
            f"target = {q(t.name)}",
            'path = "/v1/indicators"',
            fast,
            f"input_file = {q(str(FIXTURE))}",
            f"expected_sha256 = {q(sha)}",
            "",
        ]
    stream_common = [
        'idle_timeout = "10s"',
        'connect_timeout = "5s"',
        'reconnect_max = "10s"',
        'lag_field = "enqueued_at"',
    ]
    number = 0
    for t in targets:
        ctl = f"ctl_{t.name}"
        parts += [
            "[[probes]]",
            f"name = {q(ctl)}",
            'kind = "sse"',
            f"target = {q(t.name)}",
            'path = "/api/v1/events/stream"',
            *stream_common,
            'sequence_field = "seq"',
            "",
        ]
        for j in range(t.streams - 1):
            parts += [
                "[[probes]]",
                f'name = "s{number:04d}"',
                'kind = "sse"',
                f"target = {q(t.name)}",
                f'path = "/api/v1/events/stream?types=soak.g{j % t.groups}"',
                *stream_common,
                'sequence_field = "payload.gseq"',
                "",
            ]
            number += 1
        parts += [
            "[[probes]]",
            f'name = "reflect_{t.name}"',
            'kind = "reflect"',
            f"target = {q(t.name)}",
            f"stream = {q(ctl)}",
            f'interval = "{SLOW_INTERVAL:g}s"',
            'deadline = "3s"',
            'lost_after = "6s"',
            'timeout = "8s"',
            "",
            "[[probes]]",
            f'name = "import_{t.name}"',
            'kind = "import"',
            f"target = {q(t.name)}",
            f'interval = "{SLOW_INTERVAL:g}s"',
            'json_body = { broker = "mock", trades = 50 }',
            'progress_source = "stream"',
            f"stream = {q(ctl)}",
            'deadline = "8s"',
            'stall_after = "5s"',
            'timeout = "9s"',
            "",
        ]
    parts += [
        "[[slos]]",
        'name = "api_availability"',
        'sli = "availability"',
        f"probes = [{', '.join(map(q, http_names))}]",
        "objective = 0.995",
        "",
        "[[slos]]",
        'name = "login_latency"',
        'sli = "latency"',
        f"probes = [{', '.join(map(q, login_names))}]",
        'threshold = "250ms"',
        "objective = 0.95",
        "",
        "[[slos]]",
        'name = "events_delivery"',
        'sli = "delivery_lag"',
        f'stream = "ctl_{targets[0].name}"',
        'threshold = "5s"',
        "objective = 0.95",
        "",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")
