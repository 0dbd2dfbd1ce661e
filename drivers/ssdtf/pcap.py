"""Write a trace as a classic libpcap file that Wireshark/tshark dissect as MQTT.

Why a small writer instead of scapy: scapy is a large GPL dependency for one function, and
the format is tiny (a 24-byte global header, a 16-byte record header per packet). The tap
works on TCP payloads, not frames, so each MQTT packet is wrapped in a synthetic IPv4 + TCP
header with LINKTYPE_RAW (101, raw IPv4): each connection gets its own client address
(10.84.x.y from the connection number), the broker is 10.83.0.1:1883 (the MQTT port
Wireshark's dissector binds to), and sequence/acknowledgement numbers run on per direction,
so stream reassembly and the Flow Graph work. A SYN/SYN-ACK/ACK opens every connection.
Checksums are computed, so no "bad checksum" noise. Only what the trace holds is written:
CONNECT passwords of service clients are already redacted.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.ssdtf.trace import Trace

LINKTYPE_RAW = 101
BROKER_IP = bytes([10, 83, 0, 1])
BROKER_PORT = 1883


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_tcp(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    """One IPv4 packet carrying one TCP segment (no options)."""
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack(">BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack(">H", _checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
    return ip + tcp + payload


class PcapWriter:
    """Synthesises TCP streams for (conn, direction, payload) tuples and writes records."""

    SYN, ACK, PSH = 0x02, 0x10, 0x08

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        self.streams: dict[int, dict[str, int]] = {}

    def _record(self, t_s: float, frame: bytes) -> None:
        sec = int(t_s)
        usec = int((t_s - sec) * 1e6)
        self.file.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)

    def _client(self, conn: int) -> tuple[bytes, int]:
        return bytes([10, 84, (conn >> 8) & 0xFF, conn & 0xFF]), 40000 + (conn % 20000)

    def _open(self, conn: int, t_s: float) -> dict[str, int]:
        stream = {"c": 1000, "b": 5000}
        ip, port = self._client(conn)
        self._record(t_s, ipv4_tcp(ip, BROKER_IP, port, BROKER_PORT, 999, 0, self.SYN, b""))
        self._record(
            t_s, ipv4_tcp(BROKER_IP, ip, BROKER_PORT, port, 4999, 1000, self.SYN | self.ACK, b"")
        )
        self._record(t_s, ipv4_tcp(ip, BROKER_IP, port, BROKER_PORT, 1000, 5000, self.ACK, b""))
        self.streams[conn] = stream
        return stream

    def add(self, conn: int, direction: str, t_s: float, payload: bytes) -> None:
        stream = self.streams.get(conn) or self._open(conn, t_s)
        ip, port = self._client(conn)
        flags = self.PSH | self.ACK
        if direction == "c2b":
            frame = ipv4_tcp(
                ip, BROKER_IP, port, BROKER_PORT, stream["c"], stream["b"], flags, payload
            )
            stream["c"] += len(payload)
        else:
            frame = ipv4_tcp(
                BROKER_IP, ip, BROKER_PORT, port, stream["b"], stream["c"], flags, payload
            )
            stream["b"] += len(payload)
        self._record(t_s, frame)

    def close(self) -> None:
        self.file.close()


def write_trace_pcap(trace: Trace, path: Path) -> Path:
    """Every forwarded packet of ``trace`` (dropped ones are left out: they never flowed)."""
    writer = PcapWriter(path)
    try:
        for record in trace.snapshot():
            if record.status == "dropped":
                continue
            writer.add(
                record.conn, record.direction, trace.started_at + record.t_ms / 1000, record.raw
            )
    finally:
        writer.close()
    return path


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(time, frame) records of a pcap written above; used by the tests to check the file."""
    data = Path(path).read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    if magic != 0xA1B2C3D4 or linktype != LINKTYPE_RAW:
        raise ValueError("not a raw-IPv4 pcap written by SAFE Lab")
    out = []
    pos = 24
    while pos < len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[pos : pos + 16])
        out.append((sec + usec / 1e6, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return out
