"""The fleet drill's parts: a TCP proxy that can be cut, the real processes, and a watch.

``tests/test_fleet_e2e.py`` runs issue 14's fleet on loopback: the demo target, three
probed (locations a, b, c) each behind its own ``CutProxy``, a Prometheus agent per
location remote-writing to one central Prometheus, and Alertmanager. Every config is
derived from the shipped ones in ``deploy/fleet/`` by changing only addresses, ports and
intervals (``agent_config``, ``central_config``, ``alertmanager_config``,
``fleet_probes_toml``). ``AlertWatch`` polls the central Prometheus and Alertmanager and
keeps the timeline of what appeared and resolved, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import struct
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from binaries import alertmanager_binary, prometheus
from conftest import free_port
from probeservers import DEMO_PASSWORD

from probed.demo import DemoTarget

__all__ = [
    "FLEET_DIR",
    "AlertWatch",
    "CutProxy",
    "Fleet",
    "Process",
    "Seen",
    "Webhook",
    "agent_config",
    "alert_key",
    "alertmanager_config",
    "central_config",
    "fleet_probes_toml",
    "page_burn_threshold",
    "running_fleet",
]

ROOT = Path(__file__).parent.parent
FLEET_DIR = ROOT / "deploy" / "fleet"

#: How long the processes get to answer at start-up (two cores shared with other work).
STARTUP = 120.0

#: The alert labels that tell one alert of a name from another in the timeline.
KEY_LABELS = ("location", "probe", "stream", "slo", "long_window", "scenario")


# -- a TCP proxy that can be cut ----------------------------------------------------------


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), not a FIN: the peer sees the connection torn down."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class CutProxy:
    """A TCP proxy on 127.0.0.1 in front of ``127.0.0.1:upstream_port``.

    ``cut()`` resets every open connection (both sides) and, until ``restore()``, resets
    each new one as soon as it is accepted: a location whose network is gone, seen from
    its prober. The listening port stays the same throughout.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.is_cut = False
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        """Reset every connection now and every new one until ``restore()``."""
        self.is_cut = True
        for client, upstream in list(self._pairs):
            _reset(client)
            _reset(upstream)
        self._pairs.clear()

    def restore(self) -> None:
        """Proxy new connections again."""
        self.is_cut = False

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            _reset(writer)
            return
        if self.is_cut:  # cut while connecting
            _reset(writer)
            _reset(up_writer)
            return
        task = asyncio.current_task()
        assert task is not None
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self._handlers.add(task)
        try:
            # each direction until its end of file: a half-closed side still gets its answer
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except asyncio.CancelledError:
            pass  # stop() ends the handlers: end quietly
        finally:
            self._handlers.discard(task)
            if pair in self._pairs:
                self._pairs.discard(pair)
                for side in pair:
                    side.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of file or a broken connection."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


# -- the real processes -------------------------------------------------------------------


class Process:
    """A real program in its own session; stdout and stderr go to ``log``."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self._proc: asyncio.subprocess.Process | None = None

    @classmethod
    def probed(cls, name: str, config: Path, log: Path, env: Mapping[str, str]) -> Process:
        """``python -m probed run`` (honours ``PYTHONPATH``, as the other process tests)."""
        argv = [sys.executable, "-m", "probed", "run", "-c", str(config), "--shutdown-grace", "1"]
        return cls(name, argv, log, env)

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start it (again, after it was stopped)."""
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    async def kill(self) -> None:
        """SIGKILL: gone at once, nothing flushed, as a crashed host."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    def tail(self, lines: int = 8) -> str:
        """The last ``lines`` lines of its log."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def ready(self, url: str, http: aiohttp.ClientSession, within: float) -> None:
        """Wait until ``url`` answers 200; fail with the log if it exits or times out."""
        deadline = time.monotonic() + within
        while True:
            assert self.running, f"{self.name} exited:\n{self.tail()}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            assert time.monotonic() < deadline, (
                f"{self.name} not ready in {within:g}s:\n{self.tail()}"
            )
            await asyncio.sleep(0.2)


# -- configs derived from the shipped ones ------------------------------------------------


def _shipped(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FLEET_DIR / name).read_text(encoding="utf-8"))
    return doc


def agent_config(probed_port: int, central_url: str, interval: str = "1s") -> str:
    """``prometheus-agent.yml`` scraping ``probed_port`` every ``interval`` into the centre.

    The location stays ``${LOCATION}``, expanded by Prometheus from the environment.
    """
    doc = _shipped("prometheus-agent.yml")
    assert {"location": "${LOCATION}"} == doc["global"]["external_labels"]
    doc["global"]["scrape_interval"] = interval
    doc["global"]["scrape_timeout"] = interval
    [job] = doc["scrape_configs"]
    assert "probed" == job["job_name"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{probed_port}"]}]
    [remote] = doc["remote_write"]
    assert remote["url"].endswith("/api/v1/write")
    remote["url"] = f"{central_url}/api/v1/write"
    return yaml.safe_dump(doc, sort_keys=False)


def central_config(alertmanager_port: int, interval: str = "1s") -> str:
    """``prometheus-central.yml`` evaluating every ``interval``, alerting to the test's AM."""
    doc = _shipped("prometheus-central.yml")
    assert ["fleet.rules.yml"] == doc["rule_files"]
    doc["global"]["evaluation_interval"] = interval
    [manager] = doc["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]
    return yaml.safe_dump(doc, sort_keys=False)


def alertmanager_config(webhook_url: str) -> str:
    """``alertmanager.yml`` notifying within a second, its receivers posting to the test."""
    doc = _shipped("alertmanager.yml")
    doc["route"]["group_wait"] = "1s"
    doc["route"]["group_interval"] = "1s"
    receivers = {r["name"]: r for r in doc["receivers"]}
    assert {"page", "ticket"} == set(receivers)
    for name, receiver in receivers.items():
        [hook] = receiver["webhook_configs"]
        hook["url"] = f"{webhook_url}/{name}"
    return yaml.safe_dump(doc, sort_keys=False)


def fleet_probes_toml(fleet: Mapping[str, str]) -> str:
    """``deploy/fleet/probes.toml`` probing every second, its stream reconnecting after at most
    2 s, ``fleet`` added to ``[fleet]``.

    Per location, the listen address, location, state directory and target come from
    ``PROBED_*`` variables, as the shipped file says.
    """
    text = (FLEET_DIR / "probes.toml").read_text(encoding="utf-8")
    for old, new in (
        ('interval = "15s"', 'interval = "1s"'),
        ('timeout = "5s"', 'timeout = "800ms"'),
    ):
        assert 2 == text.count(old), old
        text = text.replace(old, new)
    # the stream reconnects within 2 s of the proxy's restore, not after up to 30 s of backoff
    stream = 'path = "/api/v1/events/stream"\n'
    assert 1 == text.count(stream), stream
    text = text.replace(stream, stream + 'reconnect_max = "2s"\n')
    text += "".join(f'{key} = "{value}"\n' for key, value in fleet.items())
    parsed = tomllib.loads(text)
    assert fleet.items() <= parsed["fleet"].items(), "[fleet] is no longer the file's last table"
    return text


_BURN_BOUND = re.compile(r"slo:sli_error:ratio_rate5m\{[^}]*\} > \(([\d.]+) \* ([\d.]+)\)")


def page_burn_threshold(rules: str, slo: str) -> float:
    """The lowest 5m error ratio at which a page-routed burn alert of ``slo`` can fire."""
    bounds = []
    for group in yaml.safe_load(rules)["groups"]:
        for rule in group["rules"]:
            labels = rule.get("labels", {})
            if labels.get("routing") == "page" and labels.get("slo") == slo:
                for factor, budget in _BURN_BOUND.findall(rule["expr"]):
                    bounds.append(float(factor) * float(budget))
    assert bounds, f"no page-routed burn alert for {slo}"
    return min(bounds)


# -- Alertmanager's receivers -------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One webhook post of Alertmanager: which receiver, and its alerts' keys and status."""

    at: float
    receiver: str
    alerts: tuple[tuple[str, str], ...]
    """(alert key, "firing" or "resolved") for each alert of the post."""


class Webhook:
    """The page and ticket receivers: an aiohttp app on loopback recording each post."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.received: list[Notification] = []
        self.url = ""

    async def start(self) -> None:
        """Listen on a free loopback port (``url``)."""
        app = web.Application()
        app.router.add_post("/{receiver}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        alerts = tuple((alert_key(a["labels"]), str(a["status"])) for a in body["alerts"])
        self.received.append(Notification(self._clock(), request.match_info["receiver"], alerts))
        return web.Response(text="ok")

    def got(self, receiver: str, key: str, status: str = "firing", since: float = 0.0) -> bool:
        """Whether ``receiver`` was notified of ``key`` with ``status`` at or after ``since``."""
        return any(
            n.receiver == receiver and n.at >= since and (key, status) in n.alerts
            for n in self.received
        )


# -- watching the central Prometheus and Alertmanager -------------------------------------


def alert_key(labels: Mapping[str, str]) -> str:
    """``Name{label="value",…}`` with the labels that tell alerts of one name apart."""
    inner = ",".join(f'{k}="{labels[k]}"' for k in KEY_LABELS if k in labels)
    return f"{labels['alertname']}{{{inner}}}"


@dataclass(frozen=True)
class Seen:
    """One line of the timeline: seconds since the start, where, and what."""

    at: float
    where: str
    what: str
    labels: Mapping[str, str] = field(default_factory=dict)
    """The alert's labels (none for a step of the drill)."""

    @property
    def pages(self) -> bool:
        """Whether this is about an alert routed to the page receiver."""
        return self.labels.get("routing") == "page"


@dataclass
class AlertWatch:
    """Polls the central Prometheus and Alertmanager, keeping the timeline of changes.

    ``prometheus`` holds the alerts of ``/api/v1/alerts`` by key (with their state),
    ``alertmanager`` the active ones of ``/api/v2/alerts``; ``history`` every state
    each key was seen in, with when.
    """

    prometheus_url: str
    alertmanager_url: str
    clock: Callable[[], float]
    queries: dict[str, str] = field(default_factory=dict)
    """Instant queries to follow: name → PromQL; their latest vectors are in ``values``."""
    prometheus: dict[str, dict[str, Any]] = field(default_factory=dict)
    alertmanager: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    samples: list[tuple[float, str, list[dict[str, Any]]]] = field(default_factory=list)
    timeline: list[Seen] = field(default_factory=list)
    polls: int = 0

    def mark(self, what: str) -> float:
        """Note a step of the drill in the timeline; returns its time."""
        now = self.clock()
        self.timeline.append(Seen(now, "drill", what))
        return now

    def seen_since(self, since: float, where: str = "prometheus") -> list[Seen]:
        """The lines of ``where`` at or after ``since``."""
        return [s for s in self.timeline if s.where == where and s.at >= since]

    def firing(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """The firing alerts of ``name`` in Prometheus with these labels."""
        return [
            a
            for a in self.prometheus.values()
            if a["state"] == "firing" and _matches(a["labels"], name, labels)
        ]

    def in_prometheus(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """The alerts of ``name`` in Prometheus (pending or firing) with these labels."""
        return [a for a in self.prometheus.values() if _matches(a["labels"], name, labels)]

    def in_alertmanager(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """The active alerts of ``name`` in Alertmanager with these labels."""
        return [a for a in self.alertmanager.values() if _matches(a["labels"], name, labels)]

    def max_value(self, query: str, since: float) -> float:
        """The largest value ``query`` returned at or after ``since`` (0 if none)."""
        values = [
            float(item["value"][1])
            for at, name, vector in self.samples
            if name == query and at >= since
            for item in vector
        ]
        return max(values, default=0.0)

    async def run(self, http: aiohttp.ClientSession, every: float = 0.5) -> None:
        """Poll until cancelled; a failed poll (a server not up yet) is tried again."""
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError):
                await self.poll(http)
            await asyncio.sleep(every)

    async def poll(self, http: aiohttp.ClientSession) -> None:
        """Read both once and note what changed."""
        async with http.get(f"{self.prometheus_url}/api/v1/alerts") as resp:
            resp.raise_for_status()
            alerts = (await resp.json())["data"]["alerts"]
        async with http.get(f"{self.alertmanager_url}/api/v2/alerts") as resp:
            resp.raise_for_status()
            active = await resp.json()
        values = {}
        for name, promql in self.queries.items():
            async with http.get(
                f"{self.prometheus_url}/api/v1/query", params={"query": promql}
            ) as resp:
                resp.raise_for_status()
                values[name] = (await resp.json())["data"]["result"]
        now = self.clock()
        self._update(
            "prometheus", self.prometheus, {alert_key(a["labels"]): a for a in alerts}, now
        )
        self._update(
            "alertmanager", self.alertmanager, {alert_key(a["labels"]): a for a in active}, now
        )
        self.values = values
        self.samples.extend((now, name, vector) for name, vector in values.items())
        self.polls += 1

    def _update(
        self,
        where: str,
        held: dict[str, dict[str, Any]],
        new: dict[str, dict[str, Any]],
        now: float,
    ) -> None:
        for key, alert in new.items():
            state = _state(where, alert)
            if key not in held or _state(where, held[key]) != state:
                self.timeline.append(Seen(now, where, f"{key} {state}", alert["labels"]))
        for key in held.keys() - new.keys():
            self.timeline.append(Seen(now, where, f"{key} resolved", held[key]["labels"]))
        held.clear()
        held.update(new)


def render(timeline: Sequence[Seen]) -> str:
    """A timeline as aligned text, one line per change, in order."""
    lines = [f"{'t/s':>7}  {'where':<12}  what"]
    for seen in sorted(timeline, key=lambda s: s.at):
        lines.append(f"{seen.at:7.1f}  {seen.where:<12}  {seen.what}")
    return "\n".join(lines)


def _state(where: str, alert: Mapping[str, Any]) -> str:
    if where == "prometheus":
        return str(alert["state"])
    receivers = ",".join(sorted(r["name"] for r in alert["receivers"]))
    return f"{alert['status']['state']} → {receivers}"


def _matches(labels: Mapping[str, str], name: str, wanted: Mapping[str, str]) -> bool:
    return labels.get("alertname") == name and all(labels.get(k) == v for k, v in wanted.items())


# -- the whole fleet ----------------------------------------------------------------------


@dataclass
class Fleet:
    """The running fleet of ``running_fleet``: what the drill changes and what it reads."""

    target: DemoTarget
    proxies: dict[str, CutProxy]
    probeds: dict[str, Process]
    processes: list[Process]
    webhook: Webhook
    watch: AlertWatch
    http: aiohttp.ClientSession
    rules: str
    """The rules the central Prometheus evaluates (``probed rules`` of the fleet config)."""
    config: Path
    """The fleet's probes.toml, as every location reads it."""
    central_url: str

    async def status(self) -> dict[str, Any]:
        """What ``probed status --prometheus CENTRAL -c CONFIG -f json`` prints (the command
        an operator runs), parsed; its exit code must be 0."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probed",
            "status",
            "--prometheus",
            self.central_url,
            "-c",
            str(self.config),
            "-f",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert 0 == proc.returncode, err.decode()
        document: dict[str, Any] = json.loads(out)
        return document

    async def location_states(self) -> dict[str, str]:
        """Each location's state in the fleet status (``OK``, ``isolated``, ``no data``…)."""
        document = await self.status()
        return {loc["location"]: loc["state"] for loc in document["locations"]}

    async def set_faults(self, **faults: float) -> None:
        """Change the demo target's faults through its admin API."""
        url = f"{self.target.base_url}/-/admin/faults"
        async with self.http.put(url, json=faults) as resp:
            assert 200 == resp.status, await resp.text()

    def diagnosis(self) -> str:
        """The timeline and the end of every process's log."""
        logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)
        return f"timeline:\n{self.timeline()}\n{logs}"

    def timeline(self) -> str:
        """The watch's timeline with the receivers' notifications (each change of status:
        Alertmanager repeats a group's alerts in each notification of the group)."""
        last: dict[tuple[str, str], str] = {}
        notes = []
        for note in self.webhook.received:
            for key, status in note.alerts:
                if last.get((note.receiver, key)) != status:
                    last[note.receiver, key] = status
                    notes.append(Seen(note.at, f"→ {note.receiver}", f"{key} {status}"))
        return render(self.watch.timeline + notes)


@contextlib.asynccontextmanager
async def running_fleet(
    tmp_path: Path,
    clock: Callable[[], float],
    locations: Sequence[str],
    fleet: Mapping[str, str],
    queries: Mapping[str, str],
) -> AsyncIterator[Fleet]:
    """The demo target, a ``CutProxy``, a probed and a Prometheus agent per location, the
    central Prometheus and Alertmanager, every config derived from ``deploy/fleet/``.

    ``fleet`` is added to the ``[fleet]`` section; ``queries`` are followed by the watch,
    which is polling when this yields. Everything is stopped on the way out.
    """
    prometheus_binary, alertmanager = prometheus(), alertmanager_binary()
    config = tmp_path / "probes.toml"
    config.write_text(fleet_probes_toml(fleet), encoding="utf-8")
    central_dir = tmp_path / "central"
    central_dir.mkdir()
    rules_file = central_dir / "fleet.rules.yml"
    rendered = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probed", "rules", "-c", str(config), "-o", str(rules_file)
    )
    assert 0 == await rendered.wait()

    am_port, central_port = free_port(), free_port()
    am_url, central_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{central_port}"
    watch = AlertWatch(central_url, am_url, clock, dict(queries))
    processes: list[Process] = []
    proxies: dict[str, CutProxy] = {}
    probeds: dict[str, Process] = {}

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        )
        target = await stack.enter_async_context(DemoTarget(password=DEMO_PASSWORD, seed=1))
        webhook = Webhook(clock)
        await webhook.start()
        stack.push_async_callback(webhook.stop)

        async def stop_all() -> None:
            await asyncio.gather(*(p.stop() for p in processes))
            for proxy in proxies.values():
                await proxy.stop()

        stack.push_async_callback(stop_all)

        (tmp_path / "alertmanager.yml").write_text(alertmanager_config(webhook.url))
        am = Process(
            "alertmanager",
            [
                alertmanager,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            tmp_path / "alertmanager.log",
        )
        (central_dir / "prometheus.yml").write_text(central_config(am_port))
        central = Process(
            "central prometheus",
            [
                prometheus_binary,
                f"--config.file={central_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={central_dir / 'data'}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address=127.0.0.1:{central_port}",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ],
            central_dir / "prometheus.log",
        )
        processes += [am, central]
        for location in locations:
            proxy = proxies[location] = CutProxy(target.port)
            await proxy.start()
            port = free_port()
            probeds[location] = Process.probed(
                f"probed {location}",
                config,
                tmp_path / f"probed-{location}.log",
                {
                    "PROBED_DAEMON__LOCATION": location,
                    "PROBED_DAEMON__LISTEN": f"127.0.0.1:{port}",
                    "PROBED_DAEMON__STATE_DIR": str(tmp_path / f"state-{location}"),
                    "PROBED_DAEMON__LOG_LEVEL": "warning",
                    "PROBED_TARGETS__APP__BASE_URL": proxy.base_url,
                },
            )
            agent_dir = tmp_path / f"agent-{location}"
            agent_dir.mkdir()
            (agent_dir / "prometheus.yml").write_text(agent_config(port, central_url))
            agent = Process(
                f"agent {location}",
                [
                    prometheus_binary,
                    "--enable-feature=agent,expand-external-labels",
                    f"--config.file={agent_dir / 'prometheus.yml'}",
                    f"--storage.agent.path={agent_dir / 'wal'}",
                    # on SIGTERM, stop retrying the central Prometheus (stopped beside it)
                    # after 1 s, not after the 1 m default that outlasts stop()'s 10 s grace
                    "--storage.remote.flush-deadline=1s",
                    f"--web.listen-address=127.0.0.1:{free_port()}",
                    "--log.level=warn",
                ],
                agent_dir / "prometheus.log",
                {"LOCATION": location},
            )
            processes += [probeds[location], agent]

        for process in processes:
            await process.start()
        await am.ready(f"{am_url}/-/ready", http, STARTUP)
        await central.ready(f"{central_url}/-/ready", http, STARTUP)
        poller = asyncio.create_task(watch.run(http))
        try:
            yield Fleet(
                target,
                proxies,
                probeds,
                processes,
                webhook,
                watch,
                http,
                rules_file.read_text(encoding="utf-8"),
                config,
                central_url,
            )
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
