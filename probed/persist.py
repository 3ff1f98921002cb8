"""State that survives a restart: SLO buckets, recommendation states and the results ring.

Everything lives in one SQLite file, ``<state_dir>/state.sqlite3``, in WAL mode
with ``synchronous=NORMAL``: a commit survives a killed process (SIGKILL, OOM)
and the file stays consistent after a power loss, which may lose only the last
commits. Two objects:

``StateStore``
    The file: small synchronous methods (``sqlite3``), safe to call from
    ``asyncio.to_thread`` (one connection opened with
    ``check_same_thread=False``, every call under one lock). ``open()`` never
    raises: a file that is not SQLite, is damaged, belongs to another
    application (``PRAGMA application_id``) or has a newer schema is moved aside
    to ``state.sqlite3.corrupt-<UTC timestamp>`` (with its ``-wal`` and
    ``-shm``), logged as ``state_file_moved_aside`` with the reason, and a fresh
    file is started. A state directory that cannot be used at all (read-only,
    locked by another process) gives an in-memory store and a
    ``state_unavailable`` error line: the daemon runs, unpersisted.

``Persister``
    The policy the daemon runs. Runs (``record``) and timed stream events
    (``record_lag``) are appended to memory as they are fed to the SLO
    evaluator, and written every ``results_every`` (5 s); the recommendation
    states are written with them when they changed; the SLO buckets every
    ``slo_every`` (60 s), because a snapshot costs about 12 ms of event loop
    for 20 SLOs of 30 days.

How a SIGKILL loses at most one interval
    The results ring keeps every run written after the latest SLO snapshot
    (pruning to ``ring_size`` per probe only touches runs the snapshot already
    counts), and each SLO snapshot is written in the same transaction as the
    runs taken from memory with it, together with the highest run (and lag
    row) number it covers. ``restore`` loads the snapshot and replays the runs
    and lag rows written after it into the SLO evaluator, so the windows
    continue exactly as the last write left them: a SIGKILL loses the runs and
    stream events of at most one ``results_every`` (plus the few milliseconds
    of a write in progress), and so does the recommendation state.

Stream lag samples
    Timed stream events can arrive by the thousand per second, so they are
    not kept one by one: ``record_lag`` counts them per stream, wall-clock
    second and *threshold class* (which of the stream's ``delivery_lag`` SLO
    thresholds they fall within) and keeps the largest lag of each class.
    Replaying ``count`` events of that largest lag at that second gives every
    delivery_lag SLO exactly the good/total counts it had, as long as its
    buckets are whole seconds (the default is 60 s). The lag rows are only a
    replay journal: the next SLO snapshot deletes them. The store's own lag
    window (the stream lag p95 signal) is not restored; it refills within the
    signal window.

Counters are not persisted
    ``probed_probe_runs_total``, the failure counters and the duration
    histogram start from zero after a restart, as Prometheus counters may:
    ``rate()`` and ``increase()`` treat the drop as a reset. Restoring them
    would do harm: a restored value lower than the last scraped one (the lost
    interval) reads as a reset whose whole value counts as an increase.

What ``restore`` puts back in the result store
    Per configured probe: the recent ring (``ProbeState.recent``), the runs of
    it within the signal window (``ProbeState.window``, so failure ratios and
    p95s continue), ``last_success_at``, and, if the newest run lies within the
    signal window, ``last`` rebuilt from it (``run_id`` ``"restored"``, no
    phases or observations), so a failing canary keeps a recommendation
    inconclusive across a restart instead of briefly issuing it.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import os
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from probed.evaluate import Evaluator
from probed.probes.base import ProbeResult, ProbeRun, Reason
from probed.store import RecentResult, ResultStore

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "STATE_FILE",
    "LagSample",
    "Persister",
    "StateStore",
    "StoredResult",
]

_log = structlog.get_logger("probed.persist")

STATE_FILE = "state.sqlite3"
"""The state file's name inside ``[daemon] state_dir``."""
APPLICATION_ID = 0x70726F62
"""``PRAGMA application_id`` of a probed state file: ASCII ``prob``."""
SCHEMA_VERSION = 1
"""The schema this module writes; a file with a newer one is moved aside."""

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE snapshots (
    name TEXT PRIMARY KEY,
    saved_at REAL NOT NULL,
    results_seq INTEGER NOT NULL,
    lags_seq INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE snapshot_blobs (
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (name, idx)
);
CREATE TABLE results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    probe TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration REAL NOT NULL,
    success INTEGER NOT NULL,
    reason TEXT,
    status_code INTEGER
);
CREATE INDEX results_by_probe ON results (probe, seq);
CREATE TABLE lags (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    at REAL NOT NULL,
    lag REAL NOT NULL,
    events INTEGER NOT NULL
);
CREATE TABLE probes (name TEXT PRIMARY KEY, last_success_at REAL NOT NULL);
"""
_TABLES = frozenset({"schema_version", "snapshots", "snapshot_blobs", "results", "lags", "probes"})

_SLO = "slo"
_RECOMMENDATIONS = "recommendations"

#: SQLite result codes that say the file itself is bad (move it aside); others are the
#: environment's fault (locked, read-only, disk full) and must not cost the state.
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})

_WAL_HEADER = 32
_WAL_FRAME_HEADER = 24

_U32 = "I"
_PACKABLE = array(_U32).itemsize == 4
_BLOB_KEY = "$u32z"
"""Marks a bucket list stored as a zlib-compressed little-endian uint32 blob."""
_PACK_MIN = 64
"""Shorter lists stay in the JSON."""

_MAX_PENDING_RESULTS = 200_000
_MAX_PENDING_LAG_KEYS = 200_000
_MAX_REPLAY_EVENTS = 10_000_000
"""A lag journal row claiming more events than this is damage, not data."""


class StoredResult(NamedTuple):
    """One run as the results ring keeps it."""

    probe: str
    started_at: float
    duration: float
    success: bool
    reason: str | None
    status_code: int | None


class LagSample(NamedTuple):
    """``events`` timed events of ``stream`` at ``at`` whose lag, for the SLOs, equals ``lag``."""

    stream: str
    at: float
    lag: float
    events: int


def _errorname(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _is_damage(exc: BaseException) -> bool:
    """A SQLite error that means the file is not (or no longer) a usable database."""
    return isinstance(exc, sqlite3.DatabaseError) and _errorname(exc) in _DAMAGED


class _Bad(Exception):
    """The state file must be moved aside: ``reason`` (a snake_case word) and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- the file ----------------------------------------------------------------------------


class StateStore:
    """The state file: snapshots, the results ring and the SLO replay journal.

    Every method takes one lock and runs one transaction, so the object can be
    shared by ``asyncio.to_thread`` calls. Writes raise ``sqlite3.Error`` on
    failure (the ``Persister`` logs and retries); loads log and return
    nothing rather than raise.
    """

    def __init__(
        self, conn: sqlite3.Connection, path: Path | None, *, ring_size: int, journal_mode: str
    ) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        """The state file, or None for an in-memory store (state directory unusable)."""
        self.ring_size = ring_size
        """Runs kept per probe (beyond those the latest SLO snapshot does not count yet)."""
        self.keep_seconds = 0.0
        """Also kept: each probe's runs this close to its newest (the signal window, set by
        ``Persister``), so the failure ratios and p95s continue after a restart."""
        self.journal_mode = journal_mode

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls, state_dir: Path, *, ring_size: int = 120, busy_timeout: float = 5.0
    ) -> StateStore:
        """Open or create ``state_dir/state.sqlite3``; never raises (see the module docs).

        ``busy_timeout`` is how long to wait for a lock another process holds
        (a previous instance still stopping) before giving up on the file.
        """
        ring_size = max(1, ring_size)
        path = state_dir / STATE_FILE
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                conn, mode = _connect(path, busy_timeout)
            except _Bad as bad:
                if not _move_aside(path, bad.reason, bad.detail):
                    return cls._unavailable(path, bad, ring_size)
                conn, mode = _connect(path, busy_timeout)
        except (_Bad, OSError, sqlite3.Error) as exc:
            return cls._unavailable(path, exc, ring_size)
        _log.info("state_opened", path=str(path), journal_mode=mode)
        return cls(conn, path, ring_size=ring_size, journal_mode=mode)

    @classmethod
    def memory(cls, *, ring_size: int = 120) -> StateStore:
        """A store that keeps nothing across processes (tests, or no usable state dir)."""
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        _create_schema(conn)
        return cls(conn, None, ring_size=ring_size, journal_mode="memory")

    @classmethod
    def _unavailable(cls, path: Path, exc: BaseException, ring_size: int) -> StateStore:
        _log.error(
            "state_unavailable",
            path=str(path),
            error_message=str(exc),
            consequence="state is kept in memory only and lost on restart",
        )
        return cls.memory(ring_size=ring_size)

    def reset(self, reason: str, detail: str) -> None:
        """Move a file found damaged while running aside and continue with a fresh one."""
        with self._lock:
            self._conn.close()
            opened: tuple[sqlite3.Connection, str] | None = None
            if self.path is not None and _move_aside(self.path, reason, detail):
                try:
                    opened = _connect(self.path)
                except (_Bad, OSError, sqlite3.Error) as exc:
                    _log.error("state_unavailable", path=str(self.path), error_message=str(exc))
            if opened is None:
                self._conn = StateStore.memory(ring_size=self.ring_size)._conn
                self.path, self.journal_mode = None, "memory"
                return
            self._conn, self.journal_mode = opened
            _log.info("state_opened", path=str(self.path), journal_mode=self.journal_mode)

    def close(self) -> None:
        """Close the file (SQLite checkpoints the WAL into it)."""
        with self._lock:
            self._conn.close()

    # -- writing ------------------------------------------------------------------------

    def save(
        self,
        *,
        results: Sequence[StoredResult] = (),
        lags: Sequence[LagSample] = (),
        slo: Mapping[str, Any] | None = None,
        recommendations: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        """Write everything given in one transaction, in this order.

        ``slo`` must count every run and lag sample appended so far, ``results``
        and ``lags`` included: its replay watermark is taken after they are
        inserted. Saving it also drops the lag journal it covers and prunes the
        ring of every probe to ``ring_size``.
        """
        saved_at = time.time() if now is None else now
        slo_payload = _pack(slo) if slo is not None else None
        rec_text = None if recommendations is None else _dumps(recommendations)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if results:
                    self._insert_results(conn, results)
                if lags:
                    conn.executemany(
                        "INSERT INTO lags (stream, at, lag, events) VALUES (?, ?, ?, ?)", lags
                    )
                if slo_payload is not None:
                    self._write_slo(conn, *slo_payload, saved_at)
                if rec_text is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO snapshots VALUES (?, ?, 0, 0, ?)",
                        (_RECOMMENDATIONS, saved_at, rec_text),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def save_slo(self, snapshot: Mapping[str, Any], now: float | None = None) -> None:
        """Save ``SloEvaluator.snapshot()``; it must count every run appended so far."""
        self.save(slo=snapshot, now=now)

    def save_recommendations(self, snapshot: Mapping[str, Any], now: float | None = None) -> None:
        """Save ``RecommendationEngine.snapshot()``."""
        self.save(recommendations=snapshot, now=now)

    def append_results(self, runs: Iterable[StoredResult | tuple[Any, ...]]) -> None:
        """Append runs to the ring; each probe keeps ``ring_size`` (see ``save``)."""
        self.save(results=[StoredResult(*run) for run in runs])

    def append_lags(self, samples: Iterable[LagSample | tuple[Any, ...]]) -> None:
        """Append aggregated lag samples to the SLO replay journal."""
        self.save(lags=[LagSample(*sample) for sample in samples])

    def _insert_results(self, conn: sqlite3.Connection, results: Sequence[StoredResult]) -> None:
        conn.executemany(
            "INSERT INTO results (probe, started_at, duration, success, reason, status_code) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            results,
        )
        last_ok: dict[str, float] = {}
        for run in results:
            if run.success and run.started_at > last_ok.get(run.probe, -math.inf):
                last_ok[run.probe] = run.started_at
        conn.executemany(
            "INSERT INTO probes VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET last_success_at = max(last_success_at, excluded.last_success_at)",
            last_ok.items(),
        )
        watermark = _slo_watermark(conn)[0]
        conn.executemany(
            "DELETE FROM results WHERE probe = ?1 AND seq <= ?2 AND seq < ("
            "SELECT seq FROM results WHERE probe = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?3) "
            "AND started_at < (SELECT max(started_at) FROM results WHERE probe = ?1) - ?4",
            [
                (probe, watermark, self.ring_size - 1, self.keep_seconds)
                for probe in sorted({r.probe for r in results})
            ],
        )

    def _write_slo(
        self, conn: sqlite3.Connection, text: str, blobs: list[bytes], saved_at: float
    ) -> None:
        results_seq = _sequence(conn, "results")
        lags_seq = _sequence(conn, "lags")
        conn.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
            (_SLO, saved_at, results_seq, lags_seq, text),
        )
        conn.execute("DELETE FROM snapshot_blobs WHERE name = ?", (_SLO,))
        conn.executemany(
            "INSERT INTO snapshot_blobs VALUES (?, ?, ?)",
            [(_SLO, idx, blob) for idx, blob in enumerate(blobs)],
        )
        conn.execute("DELETE FROM lags WHERE seq <= ?", (lags_seq,))
        conn.execute(
            "DELETE FROM results WHERE seq <= ?1 AND seq IN (SELECT seq FROM ("
            "SELECT seq, started_at, "
            "row_number() OVER (PARTITION BY probe ORDER BY seq DESC) AS rn, "
            "max(started_at) OVER (PARTITION BY probe) AS newest FROM results) "
            "WHERE rn > ?2 AND started_at < newest - ?3)",
            (results_seq, self.ring_size, self.keep_seconds),
        )

    # -- reading ------------------------------------------------------------------------

    def load_slo(self) -> dict[str, Any] | None:
        """The latest ``SloEvaluator.snapshot()`` saved, or None."""
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT data FROM snapshots WHERE name = ?", (_SLO,)
                ).fetchone()
                if row is None:
                    return None
                blobs = [
                    bytes(blob)
                    for (blob,) in self._conn.execute(
                        "SELECT data FROM snapshot_blobs WHERE name = ? ORDER BY idx", (_SLO,)
                    )
                ]
                return _unpack(row[0], blobs)
            except (sqlite3.Error, ValueError) as exc:
                _log.warning("state_load_failed", part=_SLO, error_message=str(exc))
                return None

    def load_recommendations(self) -> dict[str, Any] | None:
        """The latest ``RecommendationEngine.snapshot()`` saved, or None."""
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT data FROM snapshots WHERE name = ?", (_RECOMMENDATIONS,)
                ).fetchone()
                if row is None:
                    return None
                data = json.loads(row[0])
            except (sqlite3.Error, ValueError) as exc:
                _log.warning("state_load_failed", part=_RECOMMENDATIONS, error_message=str(exc))
                return None
        return data if isinstance(data, dict) else None

    def load_replay(self) -> tuple[list[StoredResult], list[LagSample]]:
        """The runs and lag samples written after the latest SLO snapshot, oldest first."""
        with self._lock:
            try:
                results_seq, lags_seq = _slo_watermark(self._conn)
                results = [
                    _stored(row)
                    for row in self._conn.execute(
                        "SELECT probe, started_at, duration, success, reason, status_code "
                        "FROM results WHERE seq > ? ORDER BY seq",
                        (results_seq,),
                    )
                ]
                lags = [
                    LagSample(*row)
                    for row in self._conn.execute(
                        "SELECT stream, at, lag, events FROM lags WHERE seq > ? ORDER BY seq",
                        (lags_seq,),
                    )
                ]
            except sqlite3.Error as exc:
                _log.warning("state_load_failed", part="replay", error_message=str(exc))
                return [], []
        return results, lags

    def load_results(
        self, ring_size: int | None = None, *, since: float | None = None
    ) -> dict[str, list[StoredResult]]:
        """Per probe, oldest first: its newest ``ring_size`` runs (default: the store's),
        and also every run that started at or after ``since``.
        """
        size = self.ring_size if ring_size is None else ring_size
        out: dict[str, list[StoredResult]] = {}
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT probe, started_at, duration, success, reason, status_code FROM ("
                    "SELECT *, row_number() OVER (PARTITION BY probe ORDER BY seq DESC) AS rn "
                    "FROM results) WHERE rn <= ?1 OR started_at >= ?2 ORDER BY probe, seq",
                    (size, math.inf if since is None else since),
                ).fetchall()
            except sqlite3.Error as exc:
                _log.warning("state_load_failed", part="results", error_message=str(exc))
                return out
        for row in rows:
            out.setdefault(row[0], []).append(_stored(row))
        return out

    def load_last_success(self) -> dict[str, float]:
        """Per probe, the start of its latest successful run ever written."""
        with self._lock:
            try:
                return dict(self._conn.execute("SELECT name, last_success_at FROM probes"))
            except sqlite3.Error as exc:
                _log.warning("state_load_failed", part="probes", error_message=str(exc))
                return {}


def _stored(row: Sequence[Any]) -> StoredResult:
    probe, started_at, duration, success, reason, status_code = row
    return StoredResult(probe, started_at, duration, bool(success), reason, status_code)


def _sequence(conn: sqlite3.Connection, table: str) -> int:
    """The highest row number ever given in ``table`` (AUTOINCREMENT never reuses one)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row is not None else 0


def _slo_watermark(conn: sqlite3.Connection) -> tuple[int, int]:
    """(results seq, lags seq) the latest SLO snapshot counts; (0, 0) without one."""
    row = conn.execute(
        "SELECT results_seq, lags_seq FROM snapshots WHERE name = ?", (_SLO,)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


# --- snapshot packing: long bucket lists as compressed binary, not JSON -------------------


def _pack(snapshot: Mapping[str, Any]) -> tuple[str, list[bytes]]:
    """The SLO snapshot as JSON with its long ``good``/``total`` lists moved into blobs.

    JSON-encoding 20 SLOs of 30 days of buckets holds the GIL (and so the
    event loop) for about 90 ms in one C call; converting list by list to
    ``array`` and compressing (zlib releases the GIL) stalls it for well under
    a millisecond at a time. Anything unexpected simply stays in the JSON.
    """
    blobs: list[bytes] = []
    envelope = dict(snapshot)
    slos = snapshot.get("slos")
    if _PACKABLE and isinstance(slos, Mapping):
        packed: dict[str, Any] = {}
        for name, entry in slos.items():
            if isinstance(entry, Mapping):
                entry = dict(entry)
                for key in ("good", "total"):
                    value = entry.get(key)
                    if isinstance(value, list) and len(value) >= _PACK_MIN:
                        blob = _to_blob(value)
                        if blob is not None:
                            entry[key] = {_BLOB_KEY: len(blobs)}
                            blobs.append(blob)
            packed[name] = entry
        envelope["slos"] = packed
    return _dumps(envelope), blobs


def _to_blob(values: list[Any]) -> bytes | None:
    try:
        packed = array(_U32, values)
    except (TypeError, OverflowError):
        return None
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return zlib.compress(packed.tobytes(), 1)


def _from_blob(blob: bytes) -> list[int] | None:
    try:
        raw = zlib.decompress(blob)
    except zlib.error:
        return None
    if not _PACKABLE or len(raw) % 4:
        return None
    values = array(_U32)
    values.frombytes(raw)
    if sys.byteorder == "big":  # pragma: no cover
        values.byteswap()
    return values.tolist()


def _unpack(text: str, blobs: list[bytes]) -> dict[str, Any] | None:
    """Reverse ``_pack``; a missing or damaged blob becomes None (restore reports it)."""

    def hook(obj: dict[str, Any]) -> Any:
        if len(obj) == 1 and _BLOB_KEY in obj:
            idx = obj[_BLOB_KEY]
            if isinstance(idx, int) and 0 <= idx < len(blobs):
                return _from_blob(blobs[idx])
            return None
        return obj

    data = json.loads(text, object_hook=hook)
    return data if isinstance(data, dict) else None


# --- opening, checking and moving aside --------------------------------------------------


def _connect(path: Path, busy_timeout: float = 5.0) -> tuple[sqlite3.Connection, str]:
    """Open ``path`` as a probed state file, creating it; raise ``_Bad`` if it is not one."""
    _warn_truncated_wal(path)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # inspect read-only: closing it does not checkpoint a foreign or damaged file's WAL
    uri = f"{path.absolute().as_uri()}?mode=ro"
    probe = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
    try:
        _check(probe)
    except sqlite3.Error as exc:
        if _is_damage(exc):
            raise _Bad("corrupt", str(exc)) from exc
        raise
    finally:
        probe.close()
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
    )
    try:
        mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        if mode != "wal":
            _log.warning("state_wal_unavailable", path=str(path), journal_mode=mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        if not _tables(conn):
            _create_schema(conn)
    except _Bad:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        if _is_damage(exc):
            raise _Bad("corrupt", str(exc)) from exc
        raise
    return conn, mode


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {
        str(name)
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }


def _check(conn: sqlite3.Connection) -> None:
    """Raise ``_Bad`` unless ``conn`` is an empty file or a sound probed state file."""
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc):
            reason = "not_sqlite" if _errorname(exc) == "SQLITE_NOTADB" else "corrupt"
            raise _Bad(reason, str(exc)) from exc
        raise
    if app_id == 0 and not tables:
        return  # new (or never committed): create the schema
    if app_id != APPLICATION_ID:
        raise _Bad(
            "foreign",
            f"application_id {app_id:#010x} is not probed's {APPLICATION_ID:#010x}; "
            f"tables: {', '.join(sorted(tables)) or 'none'}",
        )
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _Bad("corrupt", "; ".join(problems[:5]))
        if "schema_version" not in tables:
            raise _Bad("corrupt", "the schema_version table is missing")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc):
            raise _Bad("corrupt", str(exc)) from exc
        raise
    version = row[0] if row else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise _Bad(
            "newer_schema",
            f"schema version {version} is newer than this probed's {SCHEMA_VERSION} "
            "(written by a later release?)",
        )
    if version != SCHEMA_VERSION:
        raise _Bad("corrupt", f"unknown schema version {version!r}")
    if missing := sorted(_TABLES - tables):
        raise _Bad("corrupt", f"missing tables: {', '.join(missing)}")


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _warn_truncated_wal(path: Path) -> None:
    """Log a WAL cut inside a frame (a power loss); SQLite keeps the last complete commit."""
    wal = path.with_name(path.name + "-wal")
    try:
        size = wal.stat().st_size
        if size == 0:
            return
        with wal.open("rb") as handle:
            header = handle.read(_WAL_HEADER)
    except OSError:
        return
    page_size = int.from_bytes(header[8:12], "big") if len(header) == _WAL_HEADER else 0
    frame = _WAL_FRAME_HEADER + page_size
    if size < _WAL_HEADER or not page_size or (size - _WAL_HEADER) % frame:
        _log.warning(
            "state_wal_truncated",
            path=str(wal),
            size=size,
            consequence="transactions after the last complete one in the WAL are lost",
        )


def _move_aside(path: Path, reason: str, detail: str) -> bool:
    """Rename the state file (and its -wal/-shm) to ``<name>.corrupt-<UTC>``; log it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        n += 1
    moved: list[str] = []
    try:
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists() or source.is_symlink():
                dest = target.with_name(target.name + suffix)
                source.rename(dest)
                moved.append(dest.name)
    except OSError as exc:
        _log.error("state_file_move_failed", path=str(path), reason=reason, error_message=str(exc))
        return False
    _log.warning(
        "state_file_moved_aside",
        path=str(path),
        moved_to=str(target),
        files=moved,
        reason=reason,
        detail=detail,
        consequence="starting with empty state",
    )
    return True


# --- the policy --------------------------------------------------------------------------


class Persister:
    """Feeds the state file from the daemon and restores from it at startup.

    ``record`` and ``record_lag`` must be called for exactly the runs and
    events fed to the SLO evaluator, right beside those calls (same loop
    step, no ``await`` between): the replay after a SIGKILL relies on it.
    """

    def __init__(
        self,
        state: StateStore,
        evaluator: Evaluator,
        store: ResultStore,
        *,
        results_every: float = 5.0,
        slo_every: float = 60.0,
    ) -> None:
        if not (results_every > 0 and slo_every > 0):
            raise ValueError("results_every and slo_every must be positive")
        self.state = state
        self.results_every = results_every
        self.slo_every = slo_every
        self._evaluator = evaluator
        self._store = store
        state.keep_seconds = max(state.keep_seconds, store.signal_window)
        self._results: deque[StoredResult] = deque(maxlen=_MAX_PENDING_RESULTS)
        self._lags: dict[tuple[str, int, int], list[float]] = {}
        """(stream, wall second, threshold class) -> [count, largest lag]."""
        self._dropped = 0
        self._bounds: dict[str, list[float]] = {}
        self._bounds_of: object = None
        self._saved_recommendations: dict[str, Any] | None = None
        self._slo_due = True
        self._lock = asyncio.Lock()

    # -- feeds (event loop, cheap) -------------------------------------------------------

    def record(self, run: ProbeRun) -> None:
        """Queue one finished run for the next write."""
        result = run.result
        if len(self._results) == self._results.maxlen:
            self._dropped += 1
        self._results.append(
            StoredResult(
                run.probe,
                run.started_at,
                run.duration,
                result.success,
                result.reason.value if result.reason is not None else None,
                result.status_code,
            )
        )

    def record_lag(self, stream: str, lag: float, wall: float) -> None:
        """Count one timed event of ``stream`` for the SLO replay journal."""
        config = self._evaluator.config
        if config is not self._bounds_of:
            self._bounds = _lag_bounds(config.slos)
            self._bounds_of = config
        bounds = self._bounds.get(stream)
        if bounds is None or not lag >= 0 or not math.isfinite(wall):
            return  # no delivery_lag SLO on it, or no measurement: the SLOs ignore it too
        key = (stream, math.floor(wall), bisect.bisect_left(bounds, lag))
        agg = self._lags.get(key)
        if agg is not None:
            agg[0] += 1
            if lag > agg[1]:
                agg[1] = lag
        elif len(self._lags) < _MAX_PENDING_LAG_KEYS:
            self._lags[key] = [1, lag]
        else:
            self._dropped += 1

    # -- writing ------------------------------------------------------------------------

    async def run(self) -> None:
        """Write every ``results_every``; the SLO buckets every ``slo_every``. Never dies."""
        loop = asyncio.get_running_loop()
        next_slo = loop.time() + self.slo_every
        tick = loop.time()
        while True:
            tick += self.results_every
            now = loop.time()
            if tick < now:  # fell behind (suspended, slow disk): no burst of catch-up writes
                tick = now + self.results_every
            await asyncio.sleep(tick - now)
            due = loop.time() >= next_slo
            if await self.flush(slo=due) and due:
                next_slo = loop.time() + self.slo_every

    async def flush_all(self) -> bool:
        """Write everything now (at shutdown, after the scheduler and watchers stopped)."""
        return await self.flush(slo=True, recommendations=True)

    async def flush(self, *, slo: bool = False, recommendations: bool = False) -> bool:
        """Write the queued runs and lags, changed recommendations, and the SLO buckets if
        ``slo``; True if written. Never raises: failures are logged as ``state_save_failed``
        and the queue is kept for the next try.
        """
        async with self._lock:
            slo = slo or self._slo_due
            results = list(self._results)
            self._results.clear()
            lag_keys, self._lags = self._lags, {}
            dropped, self._dropped = self._dropped, 0
            if dropped:
                _log.warning("state_results_dropped", count=dropped)
            started = time.perf_counter()
            try:
                # taken in the same loop step as the queues: the snapshot counts exactly them
                slo_snapshot = self._evaluator.slo.snapshot() if slo else None
                rec = self._evaluator.engine.snapshot()
                rec_changed = recommendations or rec != self._saved_recommendations
                lags = [
                    LagSample(stream, float(second), agg[1], int(agg[0]))
                    for (stream, second, _), agg in lag_keys.items()
                ]
                await asyncio.to_thread(
                    self.state.save,
                    results=results,
                    lags=lags,
                    slo=slo_snapshot,
                    recommendations=rec if rec_changed else None,
                )
            except Exception as exc:
                self._requeue(results, lag_keys)
                _log.error(
                    "state_save_failed",
                    error_message=str(exc),
                    error_type=type(exc).__name__,
                    queued_results=len(self._results),
                )
                if _is_damage(exc):
                    await asyncio.to_thread(self.state.reset, "corrupt", str(exc))
                    self._slo_due = True  # the fresh file needs the buckets at once
                    self._saved_recommendations = None
                return False
            if rec_changed:
                self._saved_recommendations = rec
            if slo:
                self._slo_due = False
                _log.debug(
                    "state_saved",
                    results=len(results),
                    lag_rows=len(lags),
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            return True

    def _requeue(
        self, results: list[StoredResult], lags: dict[tuple[str, int, int], list[float]]
    ) -> None:
        """Put an unwritten batch back in front of what arrived meanwhile (newest kept)."""
        queue: deque[StoredResult] = deque(results, maxlen=_MAX_PENDING_RESULTS)
        queue.extend(self._results)
        self._results = queue
        for key, agg in self._lags.items():
            old = lags.get(key)
            if old is None:
                lags[key] = agg
            else:
                old[0] += agg[0]
                old[1] = max(old[1], agg[1])
        self._lags = lags

    def close(self) -> None:
        """Close the state file (after ``flush_all``)."""
        self.state.close()

    # -- restoring ----------------------------------------------------------------------

    def restore(self, now: float | None = None) -> list[str]:
        """Load the saved state into the evaluator and the result store; never raises.

        Call it once at startup, before any run or stream event is recorded
        (blocking: about 0.3 s for 20 SLOs of 30 days; nothing else touches the
        evaluator yet, so ``asyncio.to_thread`` is fine). Returns the problems
        found, each also logged as ``state_restore_problem``.
        """
        now = time.time() if now is None else now
        problems: list[str] = []
        summary: dict[str, Any] = {
            "path": None if self.state.path is None else str(self.state.path)
        }
        steps = (
            ("SLO state", self._restore_slo),
            ("recommendation state", self._restore_recommendations),
            ("results ring", self._restore_ring),
        )
        for what, step in steps:
            try:
                problems.extend(step(now, summary))
            except Exception as exc:
                problems.append(f"{what}: not restored ({type(exc).__name__}: {exc})")
        for problem in problems:
            _log.warning("state_restore_problem", problem=problem)
        _log.info("state_restored", problems=len(problems), **summary)
        return problems

    def _restore_slo(self, now: float, summary: dict[str, Any]) -> list[str]:
        slo = self._evaluator.slo
        problems: list[str] = []
        snapshot = self.state.load_slo()
        if snapshot is not None:
            problems = slo.restore(snapshot, now)
        runs, lags = self.state.load_replay()
        for run in runs:
            slo.record_run(run.probe, run.success, run.duration, run.started_at)
        events = 0
        for sample in lags:
            if not 0 < sample.events <= _MAX_REPLAY_EVENTS:
                problems.append(
                    f"SLO state: a lag journal row of stream {sample.stream!r} claims "
                    f"{sample.events} events; ignored"
                )
                continue
            for _ in range(sample.events):
                slo.record_lag(sample.stream, sample.lag, sample.at)
            events += sample.events
        summary.update(slo_snapshot=snapshot is not None, replayed_runs=len(runs))
        summary["replayed_lag_events"] = events
        return problems

    def _restore_recommendations(self, now: float, summary: dict[str, Any]) -> list[str]:
        engine = self._evaluator.engine
        data = self.state.load_recommendations()
        problems = [] if data is None else engine.restore(data)
        self._saved_recommendations = engine.snapshot() if data is not None else None
        summary["recommendations"] = len(engine.current())
        return problems

    def _restore_ring(self, now: float, summary: dict[str, Any]) -> list[str]:
        store = self._store
        for spec in self._evaluator.config.scheduled:
            store.register(spec.name, spec.kind, spec.target)
        horizon = now - store.signal_window
        rings = self.state.load_results(store.ring_size, since=horizon)
        last_ok = self.state.load_last_success()
        restored = 0
        for state in store:
            if state.last is not None or state.recent:
                continue  # already running: nothing to restore into
            ring = rings.get(state.name, [])
            entries = [
                RecentResult(r.started_at, r.duration, r.success, r.reason, r.status_code)
                for r in ring
            ]
            state.recent.extend(entries)  # a deque of ring_size: keeps the newest
            for e in entries:
                if horizon <= e.started_at <= now:
                    state.count_in_window(e)
            successes = [e.started_at for e in entries if e.success]
            if state.name in last_ok:
                successes.append(last_ok[state.name])
            if successes:
                state.last_success_at = max(successes)
            if ring and horizon <= ring[-1].started_at <= now:
                state.last = _rebuilt_run(ring[-1], state.kind, state.target)
            restored += bool(entries)
        summary["probes_restored"] = restored
        return []


def _lag_bounds(slos: Iterable[Any]) -> dict[str, list[float]]:
    """Per stream, the sorted thresholds of its delivery_lag SLOs."""
    bounds: dict[str, set[float]] = {}
    for slo in slos:
        if slo.sli == "delivery_lag" and slo.stream is not None and slo.threshold is not None:
            bounds.setdefault(slo.stream, set()).add(float(slo.threshold))
    return {stream: sorted(values) for stream, values in bounds.items()}


def _rebuilt_run(run: StoredResult, kind: str, target: str) -> ProbeRun:
    """A ``ProbeRun`` standing in for the newest saved run (no phases, observations, ids)."""
    try:
        reason = None if run.reason is None else Reason(run.reason)
    except ValueError:
        reason = Reason.INTERNAL_ERROR
    if not run.success and reason is None:
        reason = Reason.INTERNAL_ERROR
    return ProbeRun(
        probe=run.probe,
        kind=kind,
        target=target,
        run_id="restored",
        trace_id="",
        started_at=run.started_at,
        duration=run.duration,
        result=ProbeResult(run.success, reason, status_code=run.status_code),
    )
