"""The results store: one SQLite file with every run, every sample, and how it was made.

A run is written as it goes: its row is created before the first trial (so a store problem is
found before anything is measured), samples are appended in small batches, and the row is
closed as ``complete`` or ``incomplete`` (Ctrl-C, stop, an error) with the reason. A process that
dies without closing its run leaves it ``running`` with its pid; listing shows such a run as
``incomplete`` once that process is gone. PINs and keys never reach this file: the token is
stored as its :class:`~drivers.tokens.base.TokenInfo` (a URI without PIN attributes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.errors import StoreError
from drivers.paths import data_dir
from drivers.tokens.base import PHASES

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    reason TEXT,
    pid INTEGER,
    host TEXT,
    experiment TEXT NOT NULL,
    mode TEXT NOT NULL,
    n_planned INTEGER NOT NULL,
    warmup INTEGER NOT NULL,
    data_len INTEGER NOT NULL,
    hash_on TEXT,
    threshold_ms REAL NOT NULL,
    token_kind TEXT,
    token_uri TEXT,
    token_json TEXT,
    emulated INTEGER NOT NULL DEFAULT 0,
    versions_json TEXT,
    extra_json TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    total_ns INTEGER NOT NULL,
    open_ns INTEGER, login_ns INTEGER, find_ns INTEGER, sign_init_ns INTEGER, sign_ns INTEGER,
    other_json TEXT,
    PRIMARY KEY (run_id, idx)
);
"""
MIGRATIONS = ("ALTER TABLE samples ADD COLUMN other_json TEXT",)
"""Applied to databases made by earlier versions (a duplicate column is ignored)."""

SAMPLE_COLUMNS = ("total_ns", *(f"{phase}_ns" for phase in PHASES))


def _other_json(phases: dict[str, int]) -> str | None:
    other = {name: value for name, value in phases.items() if name not in PHASES}
    return json.dumps(other) if other else None


def default_db_path() -> Path:
    return data_dir() / "results.sqlite"


@dataclass(frozen=True)
class RunRecord:
    """A stored run's metadata, as read back."""

    id: int
    started_at: float
    finished_at: float | None
    status: str
    reason: str | None
    pid: int | None
    host: str
    experiment: str
    mode: str
    n_planned: int
    warmup: int
    data_len: int
    hash_on: str | None
    threshold_ms: float
    token_kind: str
    token_uri: str
    token: dict[str, Any]
    emulated: bool
    versions: dict[str, str]
    extra: dict[str, Any]
    n_samples: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "status": self.status,
            "reason": self.reason,
            "host": self.host,
            "experiment": self.experiment,
            "mode": self.mode,
            "n_planned": self.n_planned,
            "n_samples": self.n_samples,
            "warmup": self.warmup,
            "data_len": self.data_len,
            "hash_on": self.hash_on,
            "threshold_ms": self.threshold_ms,
            "token": self.token,
            "emulated": self.emulated,
            "versions": self.versions,
            "extra": self.extra,
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultsStore:
    """Access to one results database; each thread should use its own instance."""

    def __init__(self, path: Path | str | None = None, busy_timeout_s: float = 2.0) -> None:
        self.path = Path(path) if path else default_db_path()
        self.busy_timeout_s = busy_timeout_s
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the results directory {self.path.parent} ({exc.strerror})",
                "choose a writable place with --db PATH or SAFELAB_DATA_DIR",
            ) from None
        if self.path.is_dir():
            raise StoreError(
                f"the results database path {self.path} is a directory",
                "point --db at a file (it is created if missing)",
            )
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(SCHEMA)
            for statement in MIGRATIONS:
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute(statement)
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None
        return conn

    def _error(self, exc: sqlite3.Error, action: str) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"the results database {self.path} is locked by another program "
                f"(waited {self.busy_timeout_s:g} s to {action} it)",
                "wait for the other safelab run to finish, or use --db PATH for a separate file",
            )
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"{self.path} is not a readable SAFE Lab results database ({text})",
                "move the file aside or use --db PATH for a new database",
            )
        if "readonly" in text or "unable to open" in text:
            return StoreError(
                f"cannot {action} the results database {self.path} ({text})",
                "check the file's permissions, or use --db PATH for a writable file",
            )
        return StoreError(f"results database {self.path}: {text}", "use --db PATH to try another")

    def _write(
        self, sql: str, params: Sequence[Any] | Sequence[Sequence[Any]], many: bool = False
    ) -> sqlite3.Cursor:
        try:
            with self._conn:
                if many:
                    return self._conn.executemany(sql, params)
                return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            self._conn.row_factory = sqlite3.Row
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None

    # -- writing a run ---------------------------------------------------------------------

    def create_run(
        self,
        *,
        experiment: str,
        mode: str,
        n_planned: int,
        warmup: int,
        data_len: int,
        hash_on: str | None,
        threshold_ms: float,
        token: dict[str, Any],
        versions: dict[str, str],
        extra: dict[str, Any] | None = None,
    ) -> int:
        cursor = self._write(
            "INSERT INTO runs (started_at, status, pid, host, experiment, mode, n_planned, warmup,"
            " data_len, hash_on, threshold_ms, token_kind, token_uri, token_json, emulated,"
            " versions_json, extra_json) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?)",
            (
                time.time(),
                os.getpid(),
                socket.gethostname(),
                experiment,
                mode,
                n_planned,
                warmup,
                data_len,
                hash_on,
                threshold_ms,
                token.get("kind", ""),
                token.get("uri", ""),
                json.dumps(token),
                int(bool(token.get("emulated"))),
                json.dumps(versions),
                json.dumps(extra or {}),
            ),
        )
        return int(cursor.lastrowid or 0)

    def add_samples(self, run_id: int, rows: Sequence[tuple[int, int, dict[str, int]]]) -> None:
        """Append ``(idx, total_ns, phase_ns)`` rows to a run.

        Token phases have their own columns; any other figure of a trial (a protocol's
        ``connect``/``handshake``/``ready`` times, its token signature count) goes to
        ``other_json``, so one table holds every experiment.
        """
        if not rows:
            return
        self._write(
            f"INSERT INTO samples (run_id, idx, {', '.join(SAMPLE_COLUMNS)}, other_json)"
            f" VALUES (?, ?, {', '.join('?' * len(SAMPLE_COLUMNS))}, ?)",
            [
                (run_id, idx, total, *(phases.get(phase) for phase in PHASES), _other_json(phases))
                for idx, total, phases in rows
            ],
            many=True,
        )

    def add_extra(self, run_id: int, extra: dict[str, Any]) -> None:
        """Merge ``extra`` into a run's extra fields: what a run only knows once it started (the
        summary of an SSDTF flow, an attack's verdict, the runs it was interleaved with) joins
        what was known at its start."""
        merged = {**self.get_run(run_id).extra, **extra}
        self._write(
            "UPDATE runs SET extra_json = ? WHERE id = ?",
            (json.dumps(merged, default=str), run_id),
        )

    def finish_run(self, run_id: int, status: str, reason: str | None = None) -> None:
        self._write(
            "UPDATE runs SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
            (status, reason, time.time(), run_id),
        )

    # -- reading -----------------------------------------------------------------------------

    def _record(self, row: sqlite3.Row) -> RunRecord:
        status = row["status"]
        reason = row["reason"]
        if (
            status == "running"
            and row["host"] == socket.gethostname()
            and row["pid"]
            and not _pid_alive(row["pid"])
        ):
            status, reason = "incomplete", "the process that ran it ended without closing it"
        return RunRecord(
            id=row["id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            status=status,
            reason=reason,
            pid=row["pid"],
            host=row["host"] or "",
            experiment=row["experiment"],
            mode=row["mode"],
            n_planned=row["n_planned"],
            warmup=row["warmup"],
            data_len=row["data_len"],
            hash_on=row["hash_on"],
            threshold_ms=row["threshold_ms"],
            token_kind=row["token_kind"] or "",
            token_uri=row["token_uri"] or "",
            token=json.loads(row["token_json"] or "{}"),
            emulated=bool(row["emulated"]),
            versions=json.loads(row["versions_json"] or "{}"),
            extra=json.loads(row["extra_json"] or "{}"),
            n_samples=row["n_samples"],
        )

    _RUN_QUERY = (
        "SELECT runs.*, (SELECT COUNT(*) FROM samples WHERE samples.run_id = runs.id)"
        " AS n_samples FROM runs"
    )

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        sql = self._RUN_QUERY + " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._record(row) for row in self._read(sql)]

    def get_run(self, run_id: int) -> RunRecord:
        rows = self._read(self._RUN_QUERY + " WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(
                f"there is no run {run_id} in {self.path}",
                "see `safelab runs list` for the stored runs",
            )
        return self._record(rows[0])

    def samples(self, run_id: int) -> Iterator[tuple[int, int, dict[str, int]]]:
        """``(idx, total_ns, phase_ns)`` of a run, in order: the token phases from their
        columns, then every other figure :meth:`add_samples` kept in ``other_json`` (a
        protocol trial's ``connect``/``handshake``/``ready`` and its ``n_sign``/``n_resumed``
        counts), so what was written is what is read back."""
        rows = self._read(
            f"SELECT idx, {', '.join(SAMPLE_COLUMNS)}, other_json FROM samples"
            " WHERE run_id = ? ORDER BY idx",
            (run_id,),
        )
        for row in rows:
            phases = {
                phase: row[f"{phase}_ns"] for phase in PHASES if row[f"{phase}_ns"] is not None
            }
            if row["other_json"]:
                phases.update(json.loads(row["other_json"]))
            yield row["idx"], row["total_ns"], phases

    def sample_figures(self, run_id: int) -> list[tuple[int, int, dict[str, int]]]:
        """Like :meth:`samples`, with each sample's other figures (``other_json``: a
        protocol's ``n_sign``, a pattern event's ``attempts``, ``flip``...) merged in."""
        rows = self._read(
            "SELECT idx, total_ns, other_json FROM samples WHERE run_id = ? ORDER BY idx",
            (run_id,),
        )
        return [
            (row["idx"], row["total_ns"], json.loads(row["other_json"] or "{}")) for row in rows
        ]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
