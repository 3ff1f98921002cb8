"""The problems of a config its models accepted: what one model alone cannot see.

Cross-field checks of probes and streams (timeouts, deadlines, the stream a reflect or
import probe follows), secrets read and header values checked, fixture inputs read, and
the names SLOs, components, playbooks, ``[recommend]`` and maintenance windows refer
to. Each problem is one line naming the file, the line, the probe (or section) and the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from probed.buckets import DELIVERY_LAG_BUCKETS, DURATION_BUCKETS
from probed.configchecks import header_value_problems
from probed.configlocate import Locator
from probed.configprobes import FixtureProbe, ImportProbe, ReflectProbe, SseStream
from probed.configsettings import Config
from probed.durations import format_duration
from probed.errors import SecretError
from probed.maintenanceconfig import config_problems
from probed.playbooks import SCENARIO_IDS, duplicate_problems

__all__ = ["semantic_problems"]


_At = Callable[[int, str | None, str, str], None]


def _stream_problems(spec: SseStream, index: int, at: _At) -> None:
    if spec.reconnect_initial > spec.reconnect_max:
        at(
            index,
            "reconnect_initial",
            spec.name,
            f"reconnect_initial {format_duration(spec.reconnect_initial)} is longer than "
            f"reconnect_max {format_duration(spec.reconnect_max)}",
        )
    if spec.max_line_size > spec.max_event_size:
        at(index, "max_line_size", spec.name, "max_line_size must not exceed max_event_size")


def _follow_up_problems(spec: ReflectProbe | ImportProbe, index: int, at: _At, cfg: Config) -> None:
    """Cross-field checks of reflect and import probes (deadlines, stream references)."""
    streams = {s.name: s for s in cfg.streams}
    if spec.stream is not None and spec.stream not in streams:
        known = ", ".join(sorted(streams)) or "none defined"
        at(
            index,
            "stream",
            spec.name,
            f'unknown stream {spec.stream!r} (kind = "sse" probes: {known})',
        )
    elif spec.stream is not None and streams[spec.stream].target != spec.target:
        at(
            index,
            "stream",
            spec.name,
            f"stream {spec.stream!r} watches target {streams[spec.stream].target!r}, "
            f"not {spec.target!r}",
        )
    last, key = (
        (spec.lost_after, "lost_after")
        if isinstance(spec, ReflectProbe)
        else (spec.deadline, "deadline")
    )
    if isinstance(spec, ReflectProbe) and spec.deadline >= spec.lost_after:
        at(
            index,
            "deadline",
            spec.name,
            f"deadline {format_duration(spec.deadline)} must be shorter than lost_after "
            f"{format_duration(spec.lost_after)}",
        )
    if last >= spec.timeout:
        at(
            index,
            "timeout",
            spec.name,
            f"timeout {format_duration(spec.timeout)} must be longer than {key} "
            f"{format_duration(last)}",
        )


def semantic_problems(
    cfg: Config, path: Path, locator: Locator, environ: Mapping[str, str], secrets: bool
) -> list[str]:
    problems: list[str] = []
    base_dir = path.resolve().parent  # relative paths are the real file's, not a link's

    def at(index: int, key: str | None, name: str, msg: str) -> None:
        line = locator.line("probes", index, key)
        key_part = f" key {key!r}" if key else ""
        where = f"probe {name!r} (probes[{index}]){key_part}"
        problems.append(f"{path}{f':{line}' if line else ''}: {where}: {msg}")

    seen: dict[str, int] = {}
    for index, spec in enumerate(cfg.probes):
        if spec.name in seen:
            at(
                index,
                "name",
                spec.name,
                f"duplicate probe name (first used by probes[{seen[spec.name]}])",
            )
        else:
            seen[spec.name] = index
        if spec.target not in cfg.targets:
            known = ", ".join(sorted(cfg.targets)) or "none defined"
            at(index, "target", spec.name, f"unknown target {spec.target!r} (targets: {known})")
        if isinstance(spec, SseStream):
            _stream_problems(spec, index, at)
        elif spec.timeout >= spec.interval:
            at(
                index,
                "timeout",
                spec.name,
                f"timeout {format_duration(spec.timeout)} must be shorter than interval "
                f"{format_duration(spec.interval)}",
            )
        if isinstance(spec, ReflectProbe | ImportProbe):
            _follow_up_problems(spec, index, at, cfg)
        if (
            not isinstance(spec, SseStream)
            and spec.latency_threshold is not None
            and spec.latency_threshold > spec.timeout
        ):
            at(
                index,
                "latency_threshold",
                spec.name,
                f"latency_threshold {format_duration(spec.latency_threshold)} is longer than "
                f"timeout {format_duration(spec.timeout)}: it could never fire",
            )
        for key, ref in spec.secret_refs() if secrets else ():
            try:
                spec._store_secret(key, ref.read(environ, base_dir))
            except SecretError as exc:
                at(index, key, spec.name, f"secret not available: {exc}")
        spec._finish_headers()
        for key, msg in header_value_problems(spec.headers, spec.resolved_headers()):
            at(index, key, spec.name, msg)
        if isinstance(spec, FixtureProbe):
            input_path = (
                spec.input_file if spec.input_file.is_absolute() else base_dir / spec.input_file
            )
            try:
                spec._input = input_path.read_bytes()
            except OSError as exc:
                at(index, "input_file", spec.name, f"cannot read {input_path}: {exc.strerror}")
    problems.extend(_reference_problems(cfg, path, locator))
    for tname, target in cfg.targets.items():
        where: list[tuple[str, str]] = []
        for key, ref in target.secret_refs() if secrets else ():
            try:
                target._store_secret(key, ref.read(environ, base_dir))
            except SecretError as exc:
                where.append((key, f"secret not available: {exc}"))
        target._finish_headers()
        where.extend(header_value_problems(target.headers, target.resolved_headers()))
        for key, msg in where:
            line = locator.line(f"targets.{tname}", None, key)
            problems.append(
                f"{path}{f':{line}' if line else ''}: target {tname!r} key {key!r}: {msg}"
            )
    return problems


def _reference_problems(cfg: Config, path: Path, locator: Locator) -> list[str]:
    """SLOs, components and canaries name probes that exist; a scenario has one playbook."""
    problems: list[str] = []
    scheduled = {s.name for s in cfg.scheduled}
    streams = {s.name for s in cfg.streams}
    lag_buckets = {s.name: s.lag_buckets for s in cfg.streams}

    def at(section: str, index: int | None, key: str, who: str, msg: str) -> None:
        line = locator.line(section, index, key)
        problems.append(f"{path}{f':{line}' if line else ''}: {who} key {key!r}: {msg}")

    def unknown(names: list[str], known: set[str]) -> list[str]:
        return [n for n in names if n not in known]

    seen: set[str] = set()
    for i, slo in enumerate(cfg.slos):
        who = f"slo {slo.name!r} (slos[{i}])"
        if slo.name in seen:
            at("slos", i, "name", who, "duplicate SLO name")
        seen.add(slo.name)
        if missing := unknown(slo.probes, scheduled):
            at("slos", i, "probes", who, f"unknown probe(s) {', '.join(map(repr, missing))}")
        if slo.stream is not None and slo.stream not in streams:
            at("slos", i, "stream", who, f"unknown stream {slo.stream!r}")
        buckets = DURATION_BUCKETS
        where, add = "a histogram bucket boundary", ""
        if slo.sli == "delivery_lag":
            buckets = lag_buckets.get(slo.stream or "", DELIVERY_LAG_BUCKETS)
            where = f"one of stream {slo.stream!r}'s lag_buckets"
            add = "; or add it to the stream's lag_buckets"
        if slo.threshold is not None and slo.threshold not in buckets:
            choices = ", ".join(format_duration(b) for b in buckets)
            at(
                "slos",
                i,
                "threshold",
                who,
                f"threshold {format_duration(slo.threshold)} is not {where} "
                f"(so Prometheus rules could not compute it); use one of: {choices}{add}",
            )
    for i, comp in enumerate(cfg.components):
        who = f"component {comp.name!r} (components[{i}])"
        if missing := unknown(comp.probes, scheduled | streams):
            at("components", i, "probes", who, f"unknown probe(s) {', '.join(map(repr, missing))}")
    for i, message in duplicate_problems(cfg.playbooks):
        who = f"playbook {cfg.playbooks[i].scenario!r} (playbooks[{i}])"
        at("playbooks", i, "scenario", who, message)
    if missing := unknown(cfg.recommend.disabled, set(SCENARIO_IDS)):
        at(
            "recommend",
            None,
            "disabled",
            "[recommend]",
            f"unknown scenario(s) {', '.join(map(repr, missing))} "
            f"(scenarios: {', '.join(SCENARIO_IDS)})",
        )
    if missing := unknown(cfg.recommend.canary, scheduled):
        at(
            "recommend",
            None,
            "canary",
            "[recommend]",
            f"unknown probe(s) {', '.join(map(repr, missing))}",
        )
    windows = config_problems(
        cfg.maintenance,
        probes=scheduled | streams,
        targets=set(cfg.targets),
        components={c.name for c in cfg.components},
    )
    for i, key, msg in windows:
        line = locator.line("maintenance", i, key)
        where = f"maintenance[{i}]" + (f" key {key!r}" if key else "")
        problems.append(f"{path}{f':{line}' if line else ''}: {where}: {msg}")
    return problems
