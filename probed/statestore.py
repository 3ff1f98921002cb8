"""``StateStore``: the state file's snapshots, results ring and SLO replay journal.

Small synchronous methods (``sqlite3``), safe to call from
``asyncio.to_thread`` (one connection opened with ``check_same_thread=False``,
every call under one lock). ``open()`` never raises: a file that is not
SQLite, is damaged, belongs to another application or has a newer schema is
moved aside (see ``probed.statefile``) and a fresh file is started. A state
directory that cannot be used at all (read-only, locked by another process)
gives an in-memory store and a ``state_unavailable`` error line: the daemon
runs, unpersisted.

The results ring keeps every run written after the latest SLO snapshot
(pruning to ``ring_size`` per probe only touches runs the snapshot already
counts), and each SLO snapshot is written in the same transaction as the runs
taken from memory with it, together with the highest run (and lag row) number
it covers: ``load_replay`` returns what the snapshot does not count yet.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from probed import clock
from probed.statefile import (
    HISTORY_SNAPSHOT,
    MAINTENANCE_SNAPSHOT,
    RECOMMENDATIONS_SNAPSHOT,
    SLO_SNAPSHOT,
    STATE_FILE,
    BadStateFile,
    LagSample,
    StoredResult,
    connect,
    create_schema,
    dumps,
    move_aside,
    pack_snapshot,
    unpack_snapshot,
)
from probed.statehealth import StateLock

__all__ = ["StateStore"]

_PRUNE = (
    "DELETE FROM results WHERE probe = ?1 "
    "AND started_at < (SELECT max(started_at) FROM results WHERE probe = ?1) - ?4 "
    "AND seq <= ?2 "
    "AND seq < (SELECT seq FROM results WHERE probe = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?3)"
)
"""Prune one probe's runs (``StateStore._prune``): ``?1`` the probe, ``?2`` the newest run
the SLO snapshot counts, ``?3`` the ring's size less one, ``?4`` ``keep_seconds``."""

_PROBES = (
    "WITH RECURSIVE p(name) AS (SELECT min(probe) FROM results UNION ALL "
    "SELECT (SELECT min(probe) FROM results WHERE probe > p.name) FROM p "
    "WHERE p.name IS NOT NULL) SELECT name FROM p WHERE name IS NOT NULL"
)
"""The probes with runs in the ring, one index lookup each (not a read of every run)."""

_log = structlog.get_logger("probed.persist")


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
        """The state file, or None for an in-memory store."""
        self.state_dir: Path | None = None if path is None else path.parent
        """The directory the store is for; None for a store in memory by choice."""
        self.error: BaseException | None = None
        """Why the file could not be used, for a store that fell back to memory."""
        self.ring_size = ring_size
        """Runs kept per probe (beyond those the latest SLO snapshot does not count yet)."""
        self.keep_seconds = 0.0
        """Also kept: each probe's runs this close to its newest (the signal window, set by
        ``Persister``), so the failure ratios and p95s continue after a restart."""
        self.journal_mode = journal_mode

    @property
    def fallback(self) -> bool:
        """In memory because the state directory could not be used (not by choice)."""
        return self.path is None and self.state_dir is not None

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        ring_size: int = 120,
        busy_timeout: float = 5.0,
        lock: StateLock | None = None,
    ) -> StateStore:
        """Open or create ``state_dir/state.sqlite3``; raises only ``StateDirLocked``.

        ``busy_timeout`` is how long to wait for a lock another process holds
        (a previous instance still stopping) before giving up on the file.
        ``lock``, if given, is taken first: ``StateDirLocked`` if another daemon
        holds it; the file is not opened without it.
        """
        try:
            return cls.open_file(
                state_dir, ring_size=ring_size, busy_timeout=busy_timeout, lock=lock
            )
        except (BadStateFile, OSError, sqlite3.Error) as exc:
            return cls.unavailable(state_dir, exc, ring_size=ring_size)

    @classmethod
    def open_file(
        cls,
        state_dir: Path,
        *,
        ring_size: int = 120,
        busy_timeout: float = 5.0,
        lock: StateLock | None = None,
    ) -> StateStore:
        """``open``, but raise when the directory or the file cannot be used."""
        path = state_dir / STATE_FILE
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if lock is not None:
            lock.acquire()
        try:
            conn, mode = connect(path, busy_timeout)
        except BadStateFile as bad:
            if not move_aside(path, bad.reason, bad.detail):
                raise
            conn, mode = connect(path, busy_timeout)
        _log.info("state_opened", path=str(path), journal_mode=mode)
        return cls(conn, path, ring_size=max(1, ring_size), journal_mode=mode)

    @classmethod
    def memory(cls, *, ring_size: int = 120) -> StateStore:
        """A store that keeps nothing across processes (tests, or no usable state dir)."""
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        create_schema(conn)
        return cls(conn, None, ring_size=ring_size, journal_mode="memory")

    @classmethod
    def unavailable(
        cls, state_dir: Path, exc: BaseException, *, ring_size: int = 120
    ) -> StateStore:
        """The in-memory store of a daemon whose ``state_dir`` cannot be used; logs why."""
        _log.error(
            "state_unavailable",
            path=str(state_dir / STATE_FILE),
            error_message=str(exc),
            consequence="state is kept in memory and the file retried with backoff",
        )
        store = cls.memory(ring_size=max(1, ring_size))
        store.state_dir, store.error = state_dir, exc
        return store

    def reset(self, reason: str, detail: str) -> None:
        """Move a file found damaged while running aside and continue with a fresh one."""
        with self._lock:
            self._conn.close()
            opened: tuple[sqlite3.Connection, str] | None = None
            error: BaseException = BadStateFile(reason, detail)
            if self.path is not None and move_aside(self.path, reason, detail):
                try:
                    opened = connect(self.path)
                except (BadStateFile, OSError, sqlite3.Error) as exc:
                    _log.error("state_unavailable", path=str(self.path), error_message=str(exc))
                    error = exc
            if opened is None:
                self._conn = StateStore.memory(ring_size=self.ring_size)._conn
                self.path, self.journal_mode, self.error = None, "memory", error
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
        history: Mapping[str, Any] | None = None,
        maintenance: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        """Write everything given in one transaction, in this order.

        ``slo`` must count every run and lag sample appended so far, ``results``
        and ``lags`` included: its replay watermark is taken after they are
        inserted. Saving it also drops the lag journal it covers and prunes the
        ring of every probe to ``ring_size``.
        """
        saved_at = clock.wall() if now is None else now
        slo_payload = pack_snapshot(slo) if slo is not None else None
        texts = {
            name: dumps(data)
            for name, data in (
                (RECOMMENDATIONS_SNAPSHOT, recommendations),
                (HISTORY_SNAPSHOT, history),
                (MAINTENANCE_SNAPSHOT, maintenance),
            )
            if data is not None
        }
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
                for name, text in texts.items():
                    conn.execute(
                        "INSERT OR REPLACE INTO snapshots VALUES (?, ?, 0, 0, ?)",
                        (name, saved_at, text),
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

    def save_history(self, snapshot: Mapping[str, Any], now: float | None = None) -> None:
        """Save ``History.snapshot()``."""
        self.save(history=snapshot, now=now)

    def append_results(self, runs: Iterable[StoredResult | tuple[Any, ...]]) -> None:
        """Append runs to the ring; each probe keeps ``ring_size`` (see ``save``)."""
        self.save(results=[StoredResult(*run) for run in runs])

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
        self._prune(conn, sorted({r.probe for r in results}), _slo_watermark(conn)[0])

    def _prune(self, conn: sqlite3.Connection, probes: Iterable[str], watermark: int) -> None:
        """Drop the runs of ``probes`` up to run ``watermark`` that are beyond the ring and
        older than ``keep_seconds`` before the probe's newest.

        Each probe's newest run and cut-off are looked up in its indexes, and only its runs
        older than the cut-off are visited: the cost does not grow with the runs it keeps.
        """
        conn.executemany(
            _PRUNE, [(probe, watermark, self.ring_size - 1, self.keep_seconds) for probe in probes]
        )

    def _write_slo(
        self, conn: sqlite3.Connection, text: str, blobs: list[bytes], saved_at: float
    ) -> None:
        results_seq = _sequence(conn, "results")
        lags_seq = _sequence(conn, "lags")
        conn.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
            (SLO_SNAPSHOT, saved_at, results_seq, lags_seq, text),
        )
        conn.execute("DELETE FROM snapshot_blobs WHERE name = ?", (SLO_SNAPSHOT,))
        conn.executemany(
            "INSERT INTO snapshot_blobs VALUES (?, ?, ?)",
            [(SLO_SNAPSHOT, idx, blob) for idx, blob in enumerate(blobs)],
        )
        conn.execute("DELETE FROM lags WHERE seq <= ?", (lags_seq,))
        self._prune(conn, [name for (name,) in conn.execute(_PROBES)], results_seq)

    # -- reading ------------------------------------------------------------------------

    def load_slo(self) -> dict[str, Any] | None:
        """The latest ``SloEvaluator.snapshot()`` saved, or None."""
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT data FROM snapshots WHERE name = ?", (SLO_SNAPSHOT,)
                ).fetchone()
                if row is None:
                    return None
                blobs = [
                    bytes(blob)
                    for (blob,) in self._conn.execute(
                        "SELECT data FROM snapshot_blobs WHERE name = ? ORDER BY idx",
                        (SLO_SNAPSHOT,),
                    )
                ]
                return unpack_snapshot(row[0], blobs)
            except (sqlite3.Error, ValueError) as exc:
                _log.warning("state_load_failed", part=SLO_SNAPSHOT, error_message=str(exc))
                return None

    def load_recommendations(self) -> dict[str, Any] | None:
        """The latest ``RecommendationEngine.snapshot()`` saved, or None."""
        data = self._load_json(RECOMMENDATIONS_SNAPSHOT)
        return data if isinstance(data, dict) else None

    def load_history(self) -> Any:
        """The latest ``History.snapshot()`` saved (whatever JSON it holds), or None."""
        return self._load_json(HISTORY_SNAPSHOT)

    def load_maintenance(self) -> Any:
        """The latest ``Maintenance.snapshot()`` saved (whatever JSON it holds), or None."""
        return self._load_json(MAINTENANCE_SNAPSHOT)

    def _load_json(self, name: str) -> Any:
        """The JSON of snapshot ``name``; None if there is none or it cannot be read."""
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT data FROM snapshots WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    return None
                return json.loads(row[0])
            except (sqlite3.Error, ValueError) as exc:
                _log.warning("state_load_failed", part=name, error_message=str(exc))
                return None

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
        "SELECT results_seq, lags_seq FROM snapshots WHERE name = ?", (SLO_SNAPSHOT,)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)
