"""Replay protection the seed leaves open: a per-stream sequence window and a clock window.

The sequence window is the IPsec/DTLS anti-replay bitmap (size 64 by default): a sequence
number above the high-water mark is new; one inside the window is new only if its bit is
clear; anything below the window is refused. A duplicate whose envelope hash equals the first
copy is a benign re-send (QoS 1 DUP, or the sensor's own retransmission after a lost ACK):
the gateway re-acknowledges it but never delivers it twice.

Bounded by construction (issue 10): the bitmap is masked to ``size`` bits whatever the jump (a
shift by ~2^64 must not allocate 2^64 bits), at most ``size`` hashes are kept, and a sequence
number more than ``max_jump`` above the high-water mark is refused ("too far ahead"): an honest
sender counts up by one, so a huge jump is either an attack or a bug, and accepting it would
let one message push every later honest number below the window.
"""

from __future__ import annotations

import threading
import time

MAX_SEQ = (1 << 64) - 1
DEFAULT_MAX_JUMP = 1 << 16


class SeqWindow:
    """Check-and-commit in one step, under a lock (two MQTT reader threads never both accept)."""

    NEW = "new"
    DUPLICATE = "duplicate"
    REPLAY = "replay"
    TOO_OLD = "too old"
    TOO_FAR = "too far ahead"

    def __init__(self, size: int = 64, max_jump: int = DEFAULT_MAX_JUMP) -> None:
        self.size = max(1, min(int(size), 4096))
        self.max_jump = max(1, int(max_jump))
        self.high = 0
        self.bits = 0
        self.hashes: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def _mask(self) -> int:
        return (1 << self.size) - 1

    def seen(self, seq: int) -> bool:
        """True if ``seq`` was accepted before or is below the window (no commit)."""
        with self._lock:
            if seq <= 0 or seq > MAX_SEQ or seq <= self.high - self.size:
                return True
            return seq <= self.high and bool(self.bits >> (self.high - seq) & 1)

    def check(self, seq: int) -> str:
        """What :meth:`accept` would answer for a new digest, without committing."""
        with self._lock:
            return self._classify(seq, None)

    def _classify(self, seq: int, digest: bytes | None) -> str:
        if seq <= 0 or seq > MAX_SEQ:
            return self.TOO_OLD if seq <= 0 else self.TOO_FAR
        if seq > self.high:
            return self.TOO_FAR if seq - self.high > self.max_jump else self.NEW
        offset = self.high - seq
        if offset >= self.size:
            return self.TOO_OLD
        if self.bits >> offset & 1:
            if digest is not None and self.hashes.get(seq) == digest:
                return self.DUPLICATE
            return self.REPLAY
        return self.NEW

    def accept(self, seq: int, digest: bytes) -> str:
        with self._lock:
            outcome = self._classify(seq, digest)
            if outcome != self.NEW:
                return outcome
            if seq > self.high:
                shift = seq - self.high
                # never shift by more than the window: the old bits all fall out anyway
                self.bits = 0 if shift >= self.size else (self.bits << shift) & self._mask()
                self.bits |= 1
                self.high = seq
                floor = self.high - self.size
                for old in [s for s in self.hashes if s <= floor]:
                    del self.hashes[old]
            else:
                self.bits |= 1 << (self.high - seq)
            self.hashes[seq] = digest
            return self.NEW


class DigestWindow:
    """A bounded set of recently seen message digests (duplicate suppression without a
    sequence number, e.g. REPORTs at the management server); the oldest fall out first."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._seen: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def add(self, digest: bytes) -> bool:
        """True if new (and now remembered), False if seen before."""
        with self._lock:
            if digest in self._seen:
                return False
            self._seen[digest] = None
            while len(self._seen) > self.size:
                del self._seen[next(iter(self._seen))]
            return True

    def __len__(self) -> int:
        return len(self._seen)


def now_ms(offset_s: float = 0.0) -> int:
    """Wall-clock milliseconds (the TS field); ``offset_s`` models a skewed device clock."""
    return int((time.time() + offset_s) * 1000)


def ts_ok(ts_ms: int, window_s: float) -> bool:
    return abs(now_ms() - ts_ms) <= window_s * 1000
