"""Command-line interface.

Exit codes: 0 ok, 1 a probe failed (``once``), the daemon could not start, or ``status``
could not read the daemon or the fleet's Prometheus, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

from probed import eventloop, startgc, startsignals, starttls
from probed.cliargs import build_parser, demo_config_path
from probed.client import ClientSetupError, DaemonClient, daemon_client
from probed.config import Config, DaemonConfig, load_config
from probed.errors import ConfigError
from probed.logging import configure_logging
from probed.shard import Shard

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _load(path: str, web_config_file: str | None = None, *, secrets: bool = True) -> Config | None:
    """The config at ``path``, or None after printing its problems; ``secrets``: resolve them
    (only the commands that probe need them)."""
    if web_config_file:
        os.environ["PROBED_DAEMON__WEB_CONFIG_FILE"] = str(Path(web_config_file).resolve())
    try:
        return load_config(path, secrets=secrets)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _setup_logging(args: argparse.Namespace, daemon: DaemonConfig) -> None:
    """Configure logging from ``[daemon]``; ``--log-level``/``--log-format`` take precedence."""
    level = args.log_level or daemon.log_level
    fmt = cast(Literal["json", "logfmt", "console"], args.log_format or daemon.log_format)
    configure_logging(level=level, fmt=fmt, env=daemon.env, location=daemon.location)


def _cmd_check(args: argparse.Namespace) -> int:
    if args.shard is not None:  # the flag wins over the file and the environment
        os.environ["PROBED_DAEMON__SHARD"] = str(args.shard)
    config = _load(args.config, args.web_config_file)
    if config is None:
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK ({len(config.probes)} probes, {len(config.targets)} targets)")
    if args.shard is not None:
        print("\n".join(_shard_listing(config, args.shard)))
    return EXIT_OK


def _shard_listing(config: Config, shard: Shard) -> list[str]:
    """What ``shard`` runs of ``config``: a table of its probes and streams, then its SLOs."""
    mine = config.for_shard(shard)
    lines = [
        f"shard {shard} runs {len(mine.probes)} of {len(config.probes)} probes and streams, "
        f"and {len(mine.slos)} of {len(config.slos)} SLOs:"
    ]
    canary = set(config.recommend.canary)
    notes = {s.name: f"follows stream {s.follows()}" for s in mine.probes if s.follows()}
    for spec in mine.probes:
        if spec.name in canary:
            notes[spec.name] = "canary: every shard runs it"
            if stream := spec.follows():
                notes[stream] = f"followed by canary {spec.name}: every shard runs it"
    rows = [[s.name, s.kind, s.target, notes.get(s.name, "-")] for s in mine.probes]
    if rows:
        lines += _columns(("NAME", "KIND", "TARGET", "NOTE"), rows)
    whole = {slo.name: len(slo.probes) for slo in config.slos}
    slos = []
    for slo in mine.slos:
        kept = ", ".join(slo.probes or [str(slo.stream)])
        if 0 < len(slo.probes) < whole[slo.name]:
            kept += f" ({len(slo.probes)} of {whole[slo.name]})"
        slos.append([slo.name, kept])
    if slos:
        lines += _columns(("SLO", "PROBES"), slos)
    return lines


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """``header`` and ``rows`` as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _cmd_run(args: argparse.Namespace) -> int:
    starttls.import_aiohttp()  # before the daemon's modules import it
    from probed.daemon import Daemon

    startgc.loaded()
    if args.listen_address:
        os.environ["PROBED_DAEMON__LISTEN"] = args.listen_address
    if args.shard is not None:  # a reload re-reads the file: the flag keeps winning
        os.environ["PROBED_DAEMON__SHARD"] = str(args.shard)
    if args.config_check:
        return _cmd_check(args)
    config = _load(args.config, args.web_config_file)
    if config is None:
        return EXIT_CONFIG
    _setup_logging(args, config.daemon)
    from probed.sdnotify import Notifier

    daemon = Daemon(
        config,
        config_path=Path(args.config),
        shutdown_grace=args.shutdown_grace,
        notifier=Notifier.from_env(),
        configure_logs=lambda section: _setup_logging(args, section),
    )
    return eventloop.run(daemon.run(), config.daemon.event_loop)


def _cmd_demo(args: argparse.Namespace) -> int:
    starttls.import_aiohttp()  # before the daemon's modules import it
    from probed.daemon import Daemon
    from probed.demo import DemoTarget

    startgc.loaded()
    path = Path(args.config) if args.config else demo_config_path()
    if args.listen:
        os.environ["PROBED_DAEMON__LISTEN"] = args.listen
    if args.target_listen:
        os.environ["PROBED_TARGETS__DEMO__BASE_URL"] = f"http://{args.target_listen}"
    password = secrets.token_urlsafe(18)
    for env_name in _password_envs(path):
        os.environ.setdefault(env_name, password)
        password = os.environ[env_name]
    config = _load(str(path))
    if config is None:
        return EXIT_CONFIG
    if "demo" not in config.targets:
        print(f"{path}: the demo needs a target named 'demo'", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(args, config.daemon)
    from yarl import URL

    url = URL(config.targets["demo"].base_url)
    host, port = url.host or "127.0.0.1", url.port or 80

    async def main() -> int:
        target = DemoTarget(host=host, port=port, password=password)
        try:
            await target.start()
        except OSError as exc:
            print(
                f"probed demo: cannot listen on {host}:{port} for the demo target: "
                f"{_os_reason(exc)}; choose another with --target-listen HOST:PORT",
                file=sys.stderr,
            )
            return EXIT_FAILED
        try:
            daemon = Daemon(
                config,
                config_path=path,
                configure_logs=lambda section: _setup_logging(args, section),
            )
            listen = config.daemon.listen
            print(
                f"probed demo: demo target on {url}, admin at {url}/-/admin/faults\n"
                f"probed demo: status page at http://{listen}/, metrics at "
                f"http://{listen}/metrics, status API at http://{listen}/api/v1/status\n"
                "probed demo: logs are the JSON lines below (stdout); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            code = await daemon.run()
            if code == EXIT_FAILED and daemon.bound_port is None:
                print(
                    f"probed demo: the daemon cannot listen on {listen} (see the listen_failed "
                    "line above); choose another with --listen HOST:PORT",
                    file=sys.stderr,
                )
            return code
        finally:
            await target.stop()

    return eventloop.run(main(), config.daemon.event_loop)


def _os_reason(exc: OSError) -> str:
    """The operating system's words for ``exc`` (``address already in use``), lower case."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return reason[0].lower() + reason[1:] if reason else "unknown error"


def _password_envs(path: Path) -> list[str]:
    """Environment variables the config reads login passwords from (for the demo)."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    names = []
    for probe in raw.get("probes", []):
        password = probe.get("password") if isinstance(probe, dict) else None
        if isinstance(password, dict) and isinstance(password.get("env"), str):
            names.append(password["env"])
    return names


def _cmd_once(args: argparse.Namespace) -> int:
    from probed.executor import run_once

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    known = {s.name for s in config.scheduled}
    streams = [n for n in args.probe or [] if n in {s.name for s in config.streams}]
    if streams:
        print(
            f'{args.config}: {streams[0]!r} is a stream watcher (kind = "sse"), which runs for '
            "as long as the daemon does; `once` runs the scheduled probes only (watch a stream "
            "with `probed run` and `probed status`)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    unknown = [n for n in args.probe or [] if n not in known]
    if unknown:
        print(
            f"{args.config}: unknown probe {', '.join(map(repr, unknown))} "
            f"(configured: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    configure_logging(
        level="warning", env=config.daemon.env, location=config.daemon.location, stream=sys.stderr
    )
    runs = eventloop.run(run_once(config, args.probe), config.daemon.event_loop)
    from probed.logging import redactor

    if args.json:
        out = [
            {
                "probe": r.probe,
                "kind": r.kind,
                "target": r.target,
                "success": r.success,
                "reason": r.result.reason.value if r.result.reason else None,
                "detail": redactor.scrub(r.result.detail),
                "status_code": r.result.status_code,
                "duration_seconds": round(r.duration, 6),
                "phases": dict(r.result.phases),
                "observations": dict(r.result.observations),
                "trace_id": r.trace_id,
            }
            for r in runs
        ]
        print(json.dumps(out, indent=2))
    else:
        header = ("PROBE", "KIND", "RESULT", "REASON", "STATUS", "MS", "DETAIL")
        rows = [
            (
                r.probe,
                r.kind,
                "ok" if r.success else "FAIL",
                r.result.reason.value if r.result.reason else "-",
                str(r.result.status_code or "-"),
                f"{r.duration * 1000:.1f}",
                redactor.scrub(r.result.detail) or "-",
            )
            for r in runs
        ]
        print("\n".join(_columns(header, rows)))
    return EXIT_OK if all(r.success for r in runs) else EXIT_FAILED


def _cmd_rules(args: argparse.Namespace) -> int:
    from probed.rulefile import render_rules

    config = _load(args.config, secrets=False)
    if config is None:
        return EXIT_CONFIG
    text = render_rules(config)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _client(args: argparse.Namespace, command: str) -> DaemonClient | int:
    """The daemon client of ``args``, or an exit code after printing why not."""
    listen = web_config = None
    if args.config:
        config = _load(args.config, secrets=False)
        if config is None:
            return EXIT_CONFIG
        listen = config.daemon.listen
        web_config = config.daemon.web_config_file
    if args.web_config_file:
        web_config = Path(args.web_config_file)
    try:
        return daemon_client(args, listen=listen, web_config=web_config)
    except ClientSetupError as exc:
        print(f"probed {command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


async def _get(client: DaemonClient, path: str, seconds: float) -> tuple[int, bytes]:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as http,
        http.get(
            f"{client.base_url}{path}",
            headers=client.headers(),
            ssl=client.ssl_option(),
            server_hostname=client.server_name,
        ) as resp,
    ):
        return resp.status, await resp.read()


def _cmd_fleet_status(args: argparse.Namespace) -> int:
    """``probed status --prometheus URL -c CONFIG``: the fleet's view, from Prometheus."""
    from probed.fleetclient import PrometheusError, prometheus_client, read_fleet

    def refuse(why: str) -> int:
        print(f"probed status: {why}", file=sys.stderr)
        return EXIT_CONFIG

    if args.url:
        return refuse("--url names a daemon, --prometheus a fleet's Prometheus: give one")
    if not args.config:
        return refuse("--prometheus needs -c CONFIG with a [fleet] section")
    config = _load(args.config, secrets=False)
    if config is None:
        return EXIT_CONFIG
    if config.fleet is None:
        return refuse(f"{args.config} has no [fleet] section (--prometheus reads a fleet's view)")
    try:
        client = prometheus_client(args)
    except ClientSetupError as exc:
        return refuse(str(exc))
    try:
        doc = asyncio.run(read_fleet(client, config))
    except PrometheusError as exc:
        print(f"probed status: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    if args.format == "html":
        from probed.fleetpage import render_fleet_page

        sys.stdout.write(render_fleet_page(doc))
        return EXIT_OK
    from probed.fleettext import render_fleet_incident, render_fleet_markdown, render_fleet_table

    if args.format == "markdown":
        print(render_fleet_markdown(doc))
    elif args.format == "incident":
        print(render_fleet_incident(doc, incident_id=args.incident_id))
    else:
        print(render_fleet_table(doc))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    import aiohttp

    from probed.statustext import render_incident, render_markdown, render_table

    if args.prometheus:
        return _cmd_fleet_status(args)
    if args.format == "html":
        print(
            "probed status: -f html is the fleet's page (with --prometheus); a daemon serves "
            "its own page at /",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    client = _client(args, "status")
    if isinstance(client, int):
        return client
    url = f"{client.base_url}/api/v1/status"
    try:
        code, body = asyncio.run(_get(client, "/api/v1/status", args.timeout))
        if code != 200:
            raise ValueError(f"HTTP {code}")
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"probed status: cannot read {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    elif args.format == "markdown":
        print(render_markdown(doc))
    elif args.format == "incident":
        print(render_incident(doc, incident_id=args.incident_id))
    else:
        print(render_table(doc))
    return EXIT_OK


def _cmd_silence(args: argparse.Namespace) -> int:
    import aiohttp

    from probed.maintenanceconfig import rfc3339

    client = _client(args, "silence")
    if isinstance(client, int):
        return client
    body: dict[str, object] = {"probes": args.probe, "targets": args.target, "reason": args.reason}
    body.update({"duration": args.duration} if args.duration else {"end": args.end})
    url = f"{client.base_url}/api/v1/maintenance"
    try:
        code, answer = asyncio.run(_post(client, "/api/v1/maintenance", body, 10.0))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"probed silence: {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    window = answer.get("window") if isinstance(answer, dict) else None
    if code != 200 or not isinstance(window, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        print(f"probed silence: {url}: HTTP {code}: {error or '-'}", file=sys.stderr)
        return EXIT_FAILED
    names = "; ".join(
        f"{key} {', '.join(window[key])}" for key in ("targets", "probes") if window.get(key)
    )
    print(f"maintenance of {names} until {rfc3339(float(window['end']))}")
    return EXIT_OK


async def _post(
    client: DaemonClient, path: str, body: object, seconds: float
) -> tuple[int, object]:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as http,
        http.post(
            f"{client.base_url}{path}",
            json=body,
            headers=client.headers(),
            ssl=client.ssl_option(),
            server_hostname=client.server_name,
        ) as resp,
    ):
        try:
            answer: object = await resp.json(content_type=None)
        except ValueError:
            answer = None
        return resp.status, answer


def _cmd_tap(args: argparse.Namespace) -> int:
    from probed.tapclient import run_tap

    client = _client(args, "tap")
    if isinstance(client, int):
        return client
    return run_tap(client, args.stream, count=args.count, as_json=args.json, out=sys.stdout)


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    import aiohttp

    client = _client(args, "healthcheck")
    if isinstance(client, int):
        return client
    url = f"{client.base_url}/-/healthy"
    try:
        code, _ = asyncio.run(_get(client, "/-/healthy", args.timeout))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(f"probed healthcheck: {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    if code != 200:
        print(f"probed healthcheck: {url}: HTTP {code}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probed`` command."""
    args = build_parser().parse_args(argv)
    if args.command not in ("run", "demo"):
        startsignals.release()  # only the daemon turns an early SIGHUP into a reload
        startgc.end()  # the daemon's GC policy ends start-up's at ready
    handlers = {
        "run": _cmd_run,
        "demo": _cmd_demo,
        "check": _cmd_check,
        "once": _cmd_once,
        "rules": _cmd_rules,
        "status": _cmd_status,
        "healthcheck": _cmd_healthcheck,
        "silence": _cmd_silence,
        "tap": _cmd_tap,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("PROBED_TRACEBACK") == "1":
            raise
        print(
            f"probed {args.command}: unexpected error ({type(exc).__name__}: {exc}); this is a "
            "bug in probed, please report it (PROBED_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
