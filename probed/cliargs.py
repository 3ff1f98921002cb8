"""The command line's arguments: every subcommand and its options (``build_parser``).

Kept apart from ``probed.cli``, which runs the commands; the flags also answer to the
Prometheus exporters' spellings (``--config.file``, ``--web.listen-address``,
``--log.level``, ``--log.format``, ``--web.config.file``, ``--config.check``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from probed import __version__
from probed.client import add_client_options
from probed.fleetclient import add_prometheus_options
from probed.shard import Shard
from probed.tapclient import positive_count

__all__ = ["DEFAULT_CONFIG", "build_parser", "demo_config_path"]

DEFAULT_CONFIG = os.environ.get("PROBED_CONFIG", "probes.toml")


def demo_config_path() -> Path:
    """The demo's config, shipped beside the demo target's modules."""
    return Path(__file__).parent / "demo" / "probes.toml"


def _add_config(parser: argparse.ArgumentParser, default: str | None = DEFAULT_CONFIG) -> None:
    parser.add_argument(
        "-c",
        "--config",
        "--config.file",
        dest="config",
        default=default,
        help=f"path to the probes file (default: {default}; env PROBED_CONFIG)",
    )


def _add_web_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="exporter-toolkit style web config (TLS, basic auth); overrides "
        "[daemon] web_config_file",
    )


def _log_level(value: str) -> str:
    """A log level; ``warn`` (the Prometheus exporters' spelling) is ``warning``."""
    level = "warning" if value.lower() == "warn" else value.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise argparse.ArgumentTypeError(
            f"invalid level {value!r} (choose from debug, info, warn, warning, error)"
        )
    return level


def _add_logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        "--log.level",
        dest="log_level",
        type=_log_level,
        metavar="{debug,info,warn,error}",
        help="override [daemon] log_level",
    )
    parser.add_argument(
        "--log-format",
        "--log.format",
        dest="log_format",
        choices=["json", "logfmt", "console"],
        help="override [daemon] log_format",
    )


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="where to serve metrics, the status page and the API; overrides [daemon] listen",
    )


def _shard(value: str) -> Shard:
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_shard(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--shard", type=_shard, metavar="I/N", help=what)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="probed",
        description="Synthetic probing daemon: probes a web product on schedule and "
        "exports the results as Prometheus metrics and JSON logs.",
    )
    parser.add_argument("--version", action="version", version=f"probed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon", description="Run the probing daemon.")
    _add_config(run)
    _add_web_config(run)
    _add_logging(run)
    _add_listen(run)
    _add_shard(
        run,
        "run only what shard I of N (from 0) owns; overrides [daemon] shard and "
        "PROBED_DAEMON__SHARD",
    )
    run.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config file (as `probed check`) and exit",
    )
    run.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="seconds in-flight runs get to finish on SIGTERM (default 10)",
    )

    demo = sub.add_parser(
        "demo",
        help="run the built-in demo target and the daemon probing it",
        description="Start the built-in demo product on loopback and the daemon with the "
        "shipped probes.toml probing it. Metrics on http://127.0.0.1:10115/metrics.",
    )
    _add_config(demo, default=None)
    _add_logging(demo)
    demo.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where the daemon serves metrics and the status page (default 127.0.0.1:10115)",
    )
    demo.add_argument(
        "--target-listen",
        metavar="HOST:PORT",
        help="where the demo product listens (default 127.0.0.1:18115)",
    )

    check = sub.add_parser(
        "check",
        help="validate a config file (exit 0 valid, 2 invalid)",
        description="Validate the config file and its secrets; print every problem.",
    )
    _add_config(check)
    _add_web_config(check)
    _add_shard(check, "also list the probes, streams and SLOs shard I of N (from 0) runs")

    once = sub.add_parser(
        "once",
        help="run probes once and print the results",
        description="Run each selected probe once; exit 1 if any failed.",
    )
    _add_config(once)
    once.add_argument(
        "-p",
        "--probe",
        action="append",
        metavar="NAME",
        help="probe to run (repeatable; default all)",
    )
    once.add_argument("--json", action="store_true", help="print JSON instead of a table")

    rules = sub.add_parser(
        "rules",
        help="print Prometheus recording and alerting rules for the configured SLOs",
        description="Render Prometheus recording rules and multi-window multi-burn-rate "
        "alerts for every [[slos]] entry, plus probed's stream and self-monitoring alerts.",
    )
    _add_config(rules)
    rules.add_argument("-o", "--output", help="write to this file instead of stdout")

    status = sub.add_parser(
        "status",
        help="show a running daemon's status (components, recommendations, SLOs), or a "
        "fleet's from Prometheus",
        description="Fetch /api/v1/status from a running daemon and print it; with "
        "--prometheus URL and -c CONFIG, read the view of CONFIG's [fleet] (every location) "
        "from that Prometheus instead. Exit 0 when read, whatever it says; 1 unreachable or "
        "an error answer; 2 bad option or config.",
    )
    add_client_options(status)
    add_prometheus_options(status)
    _add_config(status, default=None)
    status.add_argument(
        "-f",
        "--format",
        choices=["table", "json", "markdown", "incident", "html"],
        default="table",
        help="table (default), json, markdown (a 'Status now' block for a shared status "
        "document), incident (a first incident acknowledgement) or, with --prometheus, html "
        "(a static page of the fleet)",
    )
    status.add_argument("--incident-id", help="incident id for --format incident")
    status.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each answer (default 10)",
    )

    silence = sub.add_parser(
        "silence",
        help="put probes or targets of a running daemon under maintenance for a while",
        description="POST /api/v1/maintenance: the named probes and targets neither burn SLO "
        "budget nor raise recommendations until the window ends (a daemon restart keeps it). "
        "Takes the same URL, TLS and credential options as status.",
    )
    add_client_options(silence)
    _add_config(silence, default=None)
    silence.add_argument("--probe", action="append", default=[], help="probe (repeatable)")
    silence.add_argument("--target", action="append", default=[], help="target (repeatable)")
    until = silence.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", help="how long, e.g. 30m or 2h")
    until.add_argument("--until", dest="end", help="end, RFC 3339 with an offset")
    silence.add_argument("--reason", default="", help="why (shown on the status page)")

    tap = sub.add_parser(
        "tap",
        help="print each event a running daemon's stream watcher receives, with its lag",
        description="Follow GET /api/v1/streams/STREAM/tap: one line per event (receive time, "
        "seq, id, type, lag); Ctrl-C ends. Takes the same URL, TLS and credential options as "
        "status.",
    )
    tap.add_argument("stream", help='the name of a kind = "sse" probe')
    add_client_options(tap)
    _add_config(tap, default=None)
    tap.add_argument("--count", type=positive_count, metavar="N", help="stop after N events")
    tap.add_argument("--json", action="store_true", help="one JSON object per event")

    health = sub.add_parser(
        "healthcheck",
        help="exit 0 if a running daemon answers /-/healthy (Docker HEALTHCHECK)",
        description="GET /-/healthy from a running daemon; exit 0 on 200, else 1 with the "
        "reason on stderr. Takes the same URL, TLS and credential options as status.",
    )
    add_client_options(health)
    _add_config(health, default=None)
    health.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)"
    )
    return parser
