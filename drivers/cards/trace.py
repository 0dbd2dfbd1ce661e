"""The APDU trace: every command and response with its meaning, sizes, SW and own timing.

Lab engineers triage a slow SIM by reading which APDUs went out and how long each took (the
reference §3.7: no existing tool brackets each APDU with a monotonic clock). Every exchange is
timed with :func:`time.perf_counter_ns` around the transport call alone, so host-side parsing
is not counted, and is kept as a frozen :class:`TraceEntry` in a bounded :class:`TraceLog`.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass

from drivers.cards.status import describe_sw


@dataclass(frozen=True)
class TraceEntry:
    """One APDU exchange as it happened on the link."""

    seq: int
    """Position in the log (monotonic, never reused)."""
    name: str
    """Instruction name, e.g. ``COMPUTE SIGNATURE UPDATE``."""
    detail: str
    """Decoded command: channel, class, session, TLVs."""
    command: bytes
    response: bytes
    """Response data followed by SW1 SW2 (empty if the transport failed)."""
    sw: int
    start_ns: int
    """:func:`time.perf_counter_ns` just before the transport call."""
    duration_ns: int
    """Transport call duration: link plus card time for this one APDU."""
    response_detail: str = ""
    note: str = ""
    """Why the client sent it, when not obvious (``GET RESPONSE after 6143``, ``retry...``)."""
    framing_ns: int | None = None
    """Of ``duration_ns``, the time spent in the link's own framing (AT command encoding,
    serial writes, line parsing on a modem); ``None`` where the link has no such layer."""

    @property
    def bytes_out(self) -> int:
        return len(self.command)

    @property
    def bytes_in(self) -> int:
        return len(self.response)

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6

    @property
    def sw_meaning(self) -> str:
        return describe_sw(self.sw) if self.response else "no response"

    def line(self) -> str:
        """One human line: ``#12 COMPUTE SIGNATURE UPDATE 39→69 B 6143 0.482 ms  …``."""
        note = f"  [{self.note}]" if self.note else ""
        sw = f"{self.sw:04X}" if self.response else "----"
        framing = f" (AT {self.framing_ns / 1e6:.3f})" if self.framing_ns is not None else ""
        return (
            f"#{self.seq} {self.name} {self.bytes_out}→{self.bytes_in} B {sw} "
            f"{self.duration_ms:.3f} ms{framing}  {self.detail}{note}"
        )

    def hex_lines(self) -> tuple[str, str]:
        """``(">> 81 2A ...", "<< 90 00")`` for a raw trace."""
        return ">> " + self.command.hex(" ").upper(), "<< " + self.response.hex(" ").upper()

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "name": self.name,
            "detail": self.detail,
            "command": self.command.hex().upper(),
            "response": self.response.hex().upper(),
            "sw": f"{self.sw:04X}",
            "sw_meaning": self.sw_meaning,
            "start_ns": self.start_ns,
            "duration_ns": self.duration_ns,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "response_detail": self.response_detail,
            "note": self.note,
            "framing_ns": self.framing_ns,
        }


class TraceLog:
    """A bounded, thread-safe log of :class:`TraceEntry`; old entries fall off the front."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._entries: deque[TraceEntry] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._last_seq = 0

    def next_seq(self) -> int:
        with self._lock:
            self._last_seq = next(self._seq)
            return self._last_seq

    def append(self, entry: TraceEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def mark(self) -> int:
        """A position: :meth:`since` returns what was logged after it."""
        with self._lock:
            return self._last_seq

    def since(self, mark: int) -> tuple[TraceEntry, ...]:
        with self._lock:
            return tuple(entry for entry in self._entries if entry.seq > mark)

    def last(self, count: int) -> tuple[TraceEntry, ...]:
        with self._lock:
            if count <= 0:
                return ()
            return tuple(self._entries)[-count:]

    def entries(self) -> tuple[TraceEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
