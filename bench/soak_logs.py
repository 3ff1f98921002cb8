"""The soak's reading of the daemon's logs: unhandled exceptions and the window's scheduler lags.

Part of ``bench/soak.py`` (imported as ``soak_logs``; ``bench/`` is the script
directory). What counts as an unhandled exception is told in ``soak.py``'s
module docstring.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from _common import NAN

LATE_MS = 8.0
"""A window run this many milliseconds late or more is listed in ``LogScan.late``."""

EXCEPTION_EVENT = re.compile(r"(_failed$|_crashed$|internal_error|exception)")


@dataclass(slots=True)
class LogScan:
    lines: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    noisy: Counter[str] = field(default_factory=Counter)
    """level:event of every warning-or-worse line."""
    exceptions: int = 0
    exception_events: Counter[str] = field(default_factory=Counter)
    first: list[str] = field(default_factory=list)
    window_lag_ms: list[float] = field(default_factory=list)
    lag_by_phase: dict[str, list[float]] = field(default_factory=dict)
    """The window's scheduler lags (ms) by the faults on when the run was logged."""
    late: list[tuple[float, float]] = field(default_factory=list)
    """(scheduler lag ms, wall time the run was due) of the window's runs over ``LATE_MS``."""
    stderr_lines: int = 0
    stderr_first: list[str] = field(default_factory=list)

    def exception(self, line: str, key: str) -> None:
        self.exceptions += 1
        self.exception_events[key] += 1
        if len(self.first) < 5:
            self.first.append(line[:400])


def _wall(ts: object) -> float:
    if not isinstance(ts, str):
        return NAN
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return NAN


def scan_logs(
    stdout: Path, stderr: Path, window: tuple[float, float], phase_at: Callable[[float], str]
) -> LogScan:
    """Count the unhandled exceptions (see the module docstring) and the window's lags."""
    scan = LogScan()
    with stdout.open(encoding="utf-8", errors="replace") as lines:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line:
                continue
            scan.lines += 1
            try:
                event: object = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                scan.exception(line, "non-JSON stdout line")
                continue
            level = str(event.get("level", "?"))
            name = str(event.get("event", "?"))
            scan.levels[level] += 1
            if level not in ("info", "debug"):
                scan.noisy[f"{level}:{name}"] += 1
            if (
                level in ("error", "critical", "exception", "fatal")
                or "exception" in event
                or "exc_info" in event
                or "Traceback" in line
                or EXCEPTION_EVENT.search(name)
                or event.get("reason") == "internal_error"
            ):
                scan.exception(line, f"{level}:{name}")
            if name == "probe_run":
                lag = event.get("scheduler_lag_ms")
                wall = _wall(event.get("ts"))
                if isinstance(lag, int | float) and window[0] <= wall <= window[1]:
                    scan.window_lag_ms.append(float(lag))
                    scan.lag_by_phase.setdefault(phase_at(wall), []).append(float(lag))
                    latency = event.get("latency_ms")
                    if lag >= LATE_MS and isinstance(latency, int | float):
                        # logged when the run ended: it started latency earlier, due lag before
                        scan.late.append((float(lag), wall - (latency + lag) / 1000))
    with contextlib.suppress(OSError):
        text = stderr.read_text(encoding="utf-8", errors="replace")
        err_lines = [line for line in text.splitlines() if line.strip()]
        scan.stderr_lines = len(err_lines)
        scan.stderr_first = [line[:400] for line in err_lines[:8]]
        tracebacks = text.count("Traceback (most recent call last)")
        for _ in range(tracebacks or (1 if err_lines else 0)):
            scan.exceptions += 1
            scan.exception_events["stderr"] += 1
        if err_lines and len(scan.first) < 5:
            scan.first.append("stderr: " + err_lines[0][:400])
    return scan
