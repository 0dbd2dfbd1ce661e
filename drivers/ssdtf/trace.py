"""The record of one SSDTF run: every MQTT packet the tap saw, every verdict a role reached,
and what keys each role held at each point. This is what the packet-stepper screen shows.

Everything in a trace is safe to show and export: packets are stored after the tap has
redacted service passwords, keys appear only as :class:`KeyView` (name, kind, algorithm,
public fingerprint; never secret bytes), and plaintext readings appear only in the data user's
verdicts, where they are meant to arrive.

Thread safety: the tap (asyncio thread) and the roles (MQTT reader threads) write concurrently, the
UI reads; one lock guards the lists, and readers get copies.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drivers.ssdtf import wire
from drivers.ssdtf.mqttcodec import decode_packet


@dataclass
class Verdict:
    """What one role decided about one message, and why."""

    role: str
    ok: bool
    reason: str
    stage: str = ""
    """``handshake``, ``data``, ``ack``, ``forward``, ``deliver``, ``report``, ``policy``."""
    t_ms: float = 0.0
    packet: int | None = None
    """Index of the packet this verdict is about (None when the tap did not see it)."""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyView:
    """One key a role holds, as shown to people: never the secret itself."""

    name: str
    kind: str
    """``signing private``, ``public``, ``pre private``, ``pre public``, ``conversion key``,
    ``pseudonym key``, ``session``."""
    alg: str = ""
    fingerprint: str = ""
    note: str = ""


@dataclass
class KeyEvent:
    role: str
    op: str
    """``add`` or ``remove``."""
    key: KeyView
    at_packet: int
    """Number of packets captured when it happened: the key holds from packet ``at_packet``."""
    t_ms: float


@dataclass
class PacketRecord:
    """One MQTT packet on one TCP hop, as the tap saw and forwarded it."""

    index: int
    t_ms: float
    conn: int
    lane: str
    """The role on the client side of this connection (``sensor-1``, ``gateway``, ``ds``...)."""
    direction: str
    """``c2b`` (client to broker) or ``b2c`` (broker to client)."""
    mqtt_type: str
    raw: bytes
    topic: str | None = None
    qos: int = 0
    dup: bool = False
    retain: bool = False
    packet_id: int | None = None
    mqtt: dict[str, Any] = field(default_factory=dict)
    ssdtf: dict[str, Any] | None = None
    ssdtf_error: str | None = None
    payload_digest: str = ""
    status: str = "forwarded"
    """``held`` (paused before forwarding), ``forwarded``, ``dropped`` (an attack ate it)."""
    note: str = ""
    """What an attack did to this packet (``injected``, ``modified: bit flip``...)."""
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def arrow(self) -> str:
        return f"{self.lane}→broker" if self.direction == "c2b" else f"broker→{self.lane}"

    def hexdump(self, width: int = 16) -> str:
        lines = []
        for offset in range(0, len(self.raw), width):
            chunk = self.raw[offset : offset + width]
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            lines.append(f"{offset:04x}  {chunk.hex(' '):<{width * 3}} {text}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["raw"] = self.raw.hex()
        out["arrow"] = self.arrow
        return out


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


MAX_RECORDS = 100_000
"""Per kind (packets, verdicts, key events, notes): what one trace keeps. A trace lives as long
as its deployment and records what anyone sends it; under a flood (10,000 HELLOs, a connection
flood) an unbounded trace was the one piece of state that still grew. Past the bound a record
is counted in :attr:`Trace.not_recorded` (shown in the export), not kept."""
MAX_RAW_BYTES = 128 * 1024 * 1024
"""The packet bytes one trace keeps (packets are at most ``mqttcodec.PACKET_LIMIT``)."""
VERDICT_SEARCH = 4096
"""How many of the newest packets a verdict looks through for the packet it belongs to (a
verdict follows its packet closely; a full scan per verdict grew with the whole trace)."""


class Trace:
    """Packets, verdicts and key events of one run, with the JSON export.

    Bounded (:data:`MAX_RECORDS`, :data:`MAX_RAW_BYTES`): what is past the bound is counted,
    not kept, so a deployment under attack keeps a flat memory footprint."""

    def __init__(
        self,
        title: str = "ssdtf",
        *,
        max_records: int = MAX_RECORDS,
        max_raw_bytes: int = MAX_RAW_BYTES,
    ) -> None:
        self.title = title
        self.max_records = max_records
        self.max_raw_bytes = max_raw_bytes
        self.not_recorded: collections.Counter[str] = collections.Counter()
        """Kind ("packets", "verdicts", "key_events", "notes") -> records past the bound."""
        self._raw_bytes = 0
        self.t0 = time.perf_counter()
        self.started_at = time.time()
        self._lock = threading.RLock()
        self.packets: list[PacketRecord] = []
        self.verdicts: list[Verdict] = []
        self.key_events: list[KeyEvent] = []
        self.notes: list[dict[str, Any]] = []
        self.conn_endpoints: dict[int, tuple[str, int]] = {}
        self._listeners: list[Any] = []
        self._held_count = 0
        self._held_since = 0.0
        self._held_total = 0.0

    def now_ms(self) -> float:
        """Milliseconds since the start, not counting the time a packet waited for a person.

        In live mode the tap holds each packet until "step"; that wait says nothing about the
        protocol, so the clock of the trace stops while a packet is held (``t ms`` in the
        stepper then reads as if the flow had run straight through).
        """
        now = time.perf_counter()
        with self._lock:
            held = self._held_total + (now - self._held_since if self._held_count else 0.0)
        return (now - self.t0 - held) * 1000

    def _hold_changed(self, before: str, after: str) -> None:
        """Start or stop the held clock (called under the lock)."""
        if before != "held" and after == "held":
            if self._held_count == 0:
                self._held_since = time.perf_counter()
            self._held_count += 1
        elif before == "held" and after != "held" and self._held_count:
            self._held_count -= 1
            if self._held_count == 0:
                self._held_total += time.perf_counter() - self._held_since

    def subscribe(self, callback: Any) -> None:
        """``callback(kind, obj)`` on every new packet/verdict/key event (the live UI hook)."""
        self._listeners.append(callback)

    def _emit(self, kind: str, obj: Any) -> None:
        for callback in list(self._listeners):
            callback(kind, obj)

    # --- writers ---------------------------------------------------------------------
    def add_packet(
        self, conn: int, lane: str, direction: str, raw: bytes, status: str, note: str = ""
    ) -> PacketRecord:
        packet = decode_packet(raw)
        record = PacketRecord(
            index=0,
            t_ms=self.now_ms(),
            conn=conn,
            lane=lane,
            direction=direction,
            mqtt_type=packet.name,
            raw=raw,
            topic=packet.topic,
            qos=packet.qos,
            dup=packet.dup,
            retain=packet.retain,
            packet_id=packet.packet_id,
            mqtt=packet.fields,
            status=status,
            note=note,
        )
        if packet.payload is not None:
            record.payload_digest = digest(packet.payload)
            try:
                record.ssdtf = wire.decode(packet.payload).summary()
            except wire.WireError as error:
                record.ssdtf_error = error.problem
        with self._lock:
            record.index = len(self.packets) + self.not_recorded["packets"]
            self._hold_changed("", status)
            if (
                self.not_recorded["packets"]  # once full, stays full: index = position
                or len(self.packets) >= self.max_records
                or self._raw_bytes + len(raw) > self.max_raw_bytes
            ):
                # counted, not kept; the tap still forwards (and a stepper still holds) it
                self.not_recorded["packets"] += 1
                return record
            self.packets.append(record)
            self._raw_bytes += len(raw)
        self._emit("packet", record)
        return record

    def set_status(self, record: PacketRecord, status: str) -> None:
        with self._lock:
            self._hold_changed(record.status, status)
            record.status = status
        self._emit("status", record)

    def verdict(
        self,
        role: str,
        payload: bytes | None,
        ok: bool,
        reason: str,
        stage: str = "",
        **detail: Any,
    ) -> Verdict:
        """Record a decision; it is attached to the last packet delivered to ``role`` with
        this payload (so the stepper can show it on the right row)."""
        verdict = Verdict(role, ok, reason, stage, self.now_ms(), detail=detail)
        with self._lock:
            if len(self.verdicts) >= self.max_records:
                self.not_recorded["verdicts"] += 1
                return verdict
            if payload is not None:
                wanted = digest(payload)
                for record in itertools.islice(reversed(self.packets), VERDICT_SEARCH):
                    if (
                        record.payload_digest == wanted
                        and record.lane == role
                        and record.direction == "b2c"
                    ):
                        verdict.packet = record.index
                        record.verdicts.append(verdict)
                        break
            self.verdicts.append(verdict)
        self._emit("verdict", verdict)
        return verdict

    def key(self, role: str, op: str, key: KeyView) -> None:
        with self._lock:
            event = KeyEvent(role, op, key, len(self.packets), self.now_ms())
            if len(self.key_events) >= self.max_records:
                self.not_recorded["key_events"] += 1
                return
            self.key_events.append(event)
        self._emit("key", event)

    def note(self, text: str, **detail: Any) -> None:
        with self._lock:
            if len(self.notes) >= self.max_records:
                self.not_recorded["notes"] += 1
                return
            self.notes.append(
                {"t_ms": self.now_ms(), "at_packet": len(self.packets), "text": text} | detail
            )

    # --- readers ---------------------------------------------------------------------
    def snapshot(self) -> list[PacketRecord]:
        with self._lock:
            return list(self.packets)

    def keys_at(self, packet_index: int | None = None) -> dict[str, list[KeyView]]:
        """The keys each role holds just before packet ``packet_index`` is forwarded
        (``None``: at the end of the run)."""
        limit = len(self.packets) if packet_index is None else packet_index
        held: dict[str, dict[str, KeyView]] = {}
        with self._lock:
            events = list(self.key_events)
        for event in events:
            if event.at_packet > limit:
                break
            role_keys = held.setdefault(event.role, {})
            if event.op == "add":
                role_keys[event.key.name] = event.key
            else:
                role_keys.pop(event.key.name, None)
        return {role: list(keys.values()) for role, keys in held.items()}

    def rejections(self) -> list[Verdict]:
        with self._lock:
            return [v for v in self.verdicts if not v.ok]

    def lanes(self) -> list[str]:
        with self._lock:
            seen: dict[str, None] = {}
            for record in self.packets:
                seen.setdefault(record.lane, None)
            return list(seen)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": "safelab-ssdtf-trace/1",
                "title": self.title,
                "started_at": self.started_at,
                "lanes": self.lanes(),
                "packets": [p.as_dict() for p in self.packets],
                "verdicts": [asdict(v) for v in self.verdicts],
                "key_events": [asdict(e) for e in self.key_events],
                "notes": list(self.notes),
                "not_recorded": dict(self.not_recorded),
            }

    def export_json(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict(), indent=1, default=str))
        return path

    def export_pcap(self, path: Path) -> Path:
        from drivers.ssdtf.pcap import write_trace_pcap

        return write_trace_pcap(self, Path(path))
