"""The state file's format: its schema, how it is opened, checked and moved aside.

Everything lives in one SQLite file, ``<state_dir>/state.sqlite3``, in WAL mode
with ``synchronous=NORMAL``: a commit survives a killed process (SIGKILL, OOM)
and the file stays consistent after a power loss, which may lose only the last
commits. ``connect`` opens a file as a probed state file and raises
``BadStateFile`` when it is not SQLite, is damaged, belongs to another
application (``PRAGMA application_id``) or has a newer schema; ``move_aside``
then renames it to ``state.sqlite3.corrupt-<UTC timestamp>`` (with its ``-wal``
and ``-shm``), logged as ``state_file_moved_aside`` with the reason.

SLO snapshots keep their long bucket lists as compressed binary blobs
(``pack_snapshot``/``unpack_snapshot``), not JSON.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import zlib
from array import array
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog

__all__ = [
    "APPLICATION_ID",
    "HISTORY_SNAPSHOT",
    "RECOMMENDATIONS_SNAPSHOT",
    "SCHEMA_VERSION",
    "SLO_SNAPSHOT",
    "STATE_FILE",
    "BadStateFile",
    "LagSample",
    "StoredResult",
    "connect",
    "create_schema",
    "dumps",
    "is_damage",
    "move_aside",
    "pack_snapshot",
    "unpack_snapshot",
]

_log = structlog.get_logger("probed.persist")

STATE_FILE = "state.sqlite3"
"""The state file's name inside ``[daemon] state_dir``."""
APPLICATION_ID = 0x70726F62
"""``PRAGMA application_id`` of a probed state file: ASCII ``prob``."""
SCHEMA_VERSION = 1
"""The schema this module writes; a file with a newer one is moved aside."""

_TIME_INDEX = "CREATE INDEX IF NOT EXISTS results_by_probe_time ON results (probe, started_at)"
"""Each probe's newest run and cut-off found without reading its runs (the ring's pruning)."""
_SCHEMA = f"""
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
{_TIME_INDEX};
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

SLO_SNAPSHOT = "slo"
RECOMMENDATIONS_SNAPSHOT = "recommendations"
HISTORY_SNAPSHOT = "history"
MAINTENANCE_SNAPSHOT = "maintenance"

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


def is_damage(exc: BaseException) -> bool:
    """A SQLite error that means the file is not (or no longer) a usable database."""
    return isinstance(exc, sqlite3.DatabaseError) and _errorname(exc) in _DAMAGED


class BadStateFile(Exception):
    """The state file must be moved aside: ``reason`` (a snake_case word) and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


# --- snapshot packing: long bucket lists as compressed binary, not JSON -------------------


def pack_snapshot(snapshot: Mapping[str, Any]) -> tuple[str, list[bytes]]:
    """The SLO snapshot as JSON with its long ``good``/``total`` lists moved into blobs.

    JSON-encoding long bucket lists holds the GIL (and so the event loop) in
    one C call; converting list by list to ``array`` and compressing (zlib
    releases the GIL) stalls it only briefly at a time (bench/README.md has
    the figures). Anything unexpected simply stays in the JSON.
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
    return dumps(envelope), blobs


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


def unpack_snapshot(text: str, blobs: list[bytes]) -> dict[str, Any] | None:
    """Reverse ``pack_snapshot``; a missing or damaged blob becomes None (restore reports it)."""

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


def connect(path: Path, busy_timeout: float = 5.0) -> tuple[sqlite3.Connection, str]:
    """Open ``path`` as a probed state file, creating it; ``BadStateFile`` if it is not one."""
    _warn_truncated_wal(path)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # inspect read-only: closing it does not checkpoint a foreign or damaged file's WAL
    uri = f"{path.absolute().as_uri()}?mode=ro"
    probe = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
    try:
        _check(probe)
    except sqlite3.Error as exc:
        if is_damage(exc):
            raise BadStateFile("corrupt", str(exc)) from exc
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
            create_schema(conn)
        else:
            conn.execute(_TIME_INDEX)  # a file written before the index existed
    except BadStateFile:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        if is_damage(exc):
            raise BadStateFile("corrupt", str(exc)) from exc
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
    """Raise ``BadStateFile`` unless ``conn`` is an empty file or a sound probed state file."""
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            reason = "not_sqlite" if _errorname(exc) == "SQLITE_NOTADB" else "corrupt"
            raise BadStateFile(reason, str(exc)) from exc
        raise
    if app_id == 0 and not tables:
        return  # new (or never committed): create the schema
    if app_id != APPLICATION_ID:
        raise BadStateFile(
            "foreign",
            f"application_id {app_id:#010x} is not probed's {APPLICATION_ID:#010x}; "
            f"tables: {', '.join(sorted(tables)) or 'none'}",
        )
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise BadStateFile("corrupt", "; ".join(problems[:5]))
        if "schema_version" not in tables:
            raise BadStateFile("corrupt", "the schema_version table is missing")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise BadStateFile("corrupt", str(exc)) from exc
        raise
    version = row[0] if row else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise BadStateFile(
            "newer_schema",
            f"schema version {version} is newer than this probed's {SCHEMA_VERSION} "
            "(written by a later release?)",
        )
    if version != SCHEMA_VERSION:
        raise BadStateFile("corrupt", f"unknown schema version {version!r}")
    if missing := sorted(_TABLES - tables):
        raise BadStateFile("corrupt", f"missing tables: {', '.join(missing)}")


def create_schema(conn: sqlite3.Connection) -> None:
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


def move_aside(path: Path, reason: str, detail: str) -> bool:
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
