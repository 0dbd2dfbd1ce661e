"""Anonymity with traceability: keyed, rotatable external IDs and an audited mapping store.

External ID (research report §4, following ENISA's advice against unkeyed hashes of small ID
spaces)::

    K_e    = HKDF-SHA256(K_master, info = "ssdtf/ext-id/" ‖ epoch)
    ext_id = hex(trunc_96(HMAC-SHA256(K_e, scope ‖ 0x00 ‖ internal_id)))

``scope`` is the subscriber, so two subscribers cannot link their data by ID, and rotating
the epoch changes every ID, which bounds how long a subscriber can link a device's messages.

The mapping ``(ext_id, epoch, scope) → internal_id`` lives in a SQLite file in the data
directory. Only the operator may resolve an ID: :meth:`MappingStore.lookup` needs the operator
credential (a random secret created with mode 0600 in the data directory, i.e. whoever runs
``safelab ssdtf trace`` on the operator's account), and every lookup — granted or denied — is
appended to the audit table with time, who asked and the outcome.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from drivers.errors import SafeLabError
from drivers.paths import data_dir


class TraceDenied(SafeLabError):
    """Re-identification asked for without the operator's credential (and logged as such)."""


class UnknownExternalId(SafeLabError):
    """No device ever had this external ID (in any epoch kept)."""


def ssdtf_dir() -> Path:
    path = data_dir() / "ssdtf"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def operator_credential(create: bool = True) -> bytes:
    """The operator's secret (32 bytes), created on first use with mode 0600."""
    path = ssdtf_dir() / "operator.key"
    if not path.exists():
        if not create:
            raise TraceDenied("no operator credential on this account", "run a demo first")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


class Pseudonymizer:
    """Computes external IDs; holds the master key (never exported, never shown)."""

    def __init__(self, master: bytes | None = None, epoch: int = 1) -> None:
        self.__master = master or os.urandom(32)
        self.epoch = epoch
        self._epoch_key = self._derive(epoch)

    def _derive(self, epoch: int) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"ssdtf/ext-id/%d" % epoch
        ).derive(self.__master)

    def external_id(self, internal_id: str, scope: str) -> str:
        mac = hmac.new(
            self._epoch_key, scope.encode() + b"\x00" + internal_id.encode(), hashlib.sha256
        )
        return mac.digest()[:12].hex()

    def rotate(self) -> int:
        """Next epoch: every external ID changes from now on."""
        self.epoch += 1
        self._epoch_key = self._derive(self.epoch)
        return self.epoch

    def fingerprint(self) -> str:
        """A public identifier of the key (HMAC of a fixed label), not the key."""
        return hmac.new(self.__master, b"fingerprint", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Pseudonymizer(epoch={self.epoch})"


class MappingStore:
    """The internal/external table and its audit log (SQLite, thread-safe)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ssdtf_dir() / "mapping.sqlite"
        operator_credential(create=True)  # the operator's secret exists as soon as the table
        self._lock = threading.Lock()
        self._recorded: set[tuple[str, int, str]] = set()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS mapping (ext_id TEXT, epoch INTEGER, scope TEXT,"
                " internal_id TEXT, first_seen REAL, PRIMARY KEY (ext_id, epoch, scope))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS audit (t REAL, who TEXT, ext_id TEXT, outcome TEXT)"
            )
        os.chmod(self.path, 0o600)

    def record(self, ext_id: str, epoch: int, scope: str, internal_id: str) -> None:
        """Store a mapping row once (a commit per message would cost a disk sync each)."""
        key = (ext_id, epoch, scope)
        if key in self._recorded:
            return
        self._recorded.add(key)
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO mapping VALUES (?, ?, ?, ?, ?)",
                (ext_id, epoch, scope, internal_id, time.time()),
            )

    def lookup(
        self, ext_id: str, credential: bytes | None, who: str = ""
    ) -> list[dict[str, object]]:
        """Resolve ``ext_id`` for the operator; anyone else is refused. Both are audited.

        The audit's "who" is not the caller's word: it is what the store can establish (the
        operator credential was shown or not, by which OS account and process); a name the
        caller passes is kept only as a claim beside it.
        """
        allowed = credential is not None and hmac.compare_digest(
            credential, operator_credential(create=False)
        )
        role = "operator" if allowed else "no operator credential"
        who = f"{role} (account {getpass.getuser()}, pid {os.getpid()})" + (
            f"; claims {who!r}" if who else ""
        )
        if not allowed:
            with self._lock, self._db:  # committed before the refusal is raised
                self._db.execute(
                    "INSERT INTO audit VALUES (?, ?, ?, ?)", (time.time(), who, ext_id, "denied")
                )
            raise TraceDenied(
                "a caller without the operator credential may not resolve external IDs",
                "only the operator (holder of the operator credential) may trace a device",
            )
        with self._lock, self._db:
            rows = self._db.execute(
                "SELECT epoch, scope, internal_id, first_seen FROM mapping WHERE ext_id = ?"
                " ORDER BY epoch",
                (ext_id,),
            ).fetchall()
            outcome = "found" if rows else "unknown"
            self._db.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?)", (time.time(), who, ext_id, outcome)
            )
        if not rows:
            raise UnknownExternalId(
                f"no device had external ID {ext_id}",
                "check the ID (24 hex digits) or the data directory of the run",
            )
        return [{"epoch": e, "scope": s, "internal_id": i, "first_seen": f} for e, s, i, f in rows]

    def audit(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t, who, ext_id, outcome FROM audit ORDER BY t"
            ).fetchall()
        return [{"t": t, "who": w, "ext_id": e, "outcome": o} for t, w, e, o in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
