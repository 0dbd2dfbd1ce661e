"""Replay protection the seed leaves open: a per-stream sequence window and a clock window.

The sequence window is the IPsec/DTLS anti-replay bitmap (size 64 by default): a sequence
number above the high-water mark is new; one inside the window is new only if its bit is
clear; anything below the window is refused. A duplicate whose envelope hash equals the first
copy is a benign re-send (QoS 1 DUP, or the sensor's own retransmission after a lost ACK):
the gateway re-acknowledges it but never delivers it twice.
"""

from __future__ import annotations

import threading
import time


class SeqWindow:
    """Check-and-commit in one step, under a lock (two paho threads never both accept)."""

    NEW = "new"
    DUPLICATE = "duplicate"
    REPLAY = "replay"
    TOO_OLD = "too old"

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.high = 0
        self.bits = 0
        self.hashes: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def seen(self, seq: int) -> bool:
        """True if ``seq`` was accepted before or is below the window (no commit)."""
        with self._lock:
            if seq <= 0 or seq <= self.high - self.size:
                return True
            return seq <= self.high and bool(self.bits >> (self.high - seq) & 1)

    def accept(self, seq: int, digest: bytes) -> str:
        with self._lock:
            if seq <= 0:
                return self.TOO_OLD
            if seq > self.high:
                shift = seq - self.high
                self.bits = ((self.bits << shift) | 1) & ((1 << self.size) - 1)
                self.high = seq
                self.hashes[seq] = digest
                for old in [s for s in self.hashes if s <= self.high - self.size]:
                    del self.hashes[old]
                return self.NEW
            offset = self.high - seq
            if offset >= self.size:
                return self.TOO_OLD
            if self.bits >> offset & 1:
                return self.DUPLICATE if self.hashes.get(seq) == digest else self.REPLAY
            self.bits |= 1 << offset
            self.hashes[seq] = digest
            return self.NEW


def now_ms(offset_s: float = 0.0) -> int:
    """Wall-clock milliseconds (the TS field); ``offset_s`` models a skewed device clock."""
    return int((time.time() + offset_s) * 1000)


def ts_ok(ts_ms: int, window_s: float) -> bool:
    return abs(now_ms() - ts_ms) <= window_s * 1000
