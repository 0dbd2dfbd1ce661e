"""Just enough MQTT 3.1.1 framing for the tap: split a byte stream into packets, decode them
for the trace, and re-encode a PUBLISH when an attack rewrites one.

Why not a library: paho and amqtt keep their codecs private to their client/broker state
machines, and the tap must handle *both* directions of any connection, including packets
that are wrong on purpose; a decoder that never raises on odd input is what a trace needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

NAMES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
    15: "AUTH",
}
PUBLIC_PASSWORDS = {b"SSDTF/1"}
"""CONNECT passwords that are protocol markers, not secrets; every other one is redacted."""
MARKER_PREFIX = b"SSDTF/1 "
"""A sensor's password is the marker plus its broker secret: the marker stays readable (it
says "an SSDTF sensor"), the secret after it is redacted."""
PACKET_LIMIT = 64 * 1024 + 1024
"""The largest MQTT packet (remaining length) any SSDTF component accepts: a maximal envelope
(``wire.MAX_ENVELOPE``, 64 KiB) plus its topic and packet identifier. MQTT allows 256 MiB;
without a limit one registered client could make the broker, the tap and every subscribed
role hold that much per message (issue 10: bounded state). Mosquitto gets it as
``max_packet_size``, the embedded broker and the tap close the sender's connection, and a
role's client drops a larger PUBLISH from a broker that does not enforce it."""


def _public_len(password: bytes) -> int:
    """How many leading bytes of a CONNECT password may be shown."""
    if password in PUBLIC_PASSWORDS:
        return len(password)
    return len(MARKER_PREFIX) if password.startswith(MARKER_PREFIX) else 0


class FrameSplitter:
    """Accumulates bytes of one direction and yields complete MQTT packets.

    A packet over ``limit`` (remaining length) is not accumulated: its bytes are yielded as
    they arrive, marked as not a whole packet, so one client announcing 256 MiB cannot make
    the tap hold 256 MiB; the receiver (a broker with its own limit) decides what to do."""

    def __init__(self, limit: int | None = None) -> None:
        self.buffer = bytearray()
        self.limit = limit
        self.passing = 0
        """Bytes of an oversized packet still to come (yielded as they arrive)."""
        self.oversized: list[tuple[int, int]] = []
        """(packet type, size) of the oversized packets that began in the last :meth:`feed`."""

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """(bytes, True) per complete packet, (bytes, False) per piece of an oversized one,
        in stream order."""
        out: list[tuple[bytes, bool]] = []
        self.oversized = []
        if self.passing:
            take = min(self.passing, len(data))
            self.passing -= take
            out.append((data[:take], False))
            data = data[take:]
        self.buffer += data
        while True:
            size = frame_size(self.buffer)
            if size is None:
                return out
            if self.limit is not None and size > self.limit + 5:  # +5: the fixed header
                take = min(size, len(self.buffer))
                self.oversized.append((self.buffer[0] >> 4, size))
                out.append((bytes(self.buffer[:take]), False))
                del self.buffer[:take]
                self.passing = size - take
                if self.passing:
                    return out
                continue
            if size > len(self.buffer):
                return out
            out.append((bytes(self.buffer[:size]), True))
            del self.buffer[:size]


def frame_size(buffer: bytes | bytearray) -> int | None:
    """Total length of the packet at the start of ``buffer``, or None if not known yet."""
    multiplier = 1
    value = 0
    for index in range(1, 5):
        if index >= len(buffer):
            return None
        byte = buffer[index]
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return 1 + index + value
        multiplier *= 128
    return 1 + 4 + value  # malformed length: let the receiver deal with it


def encode_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte = length % 128
        length //= 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _header_len(packet: bytes) -> int:
    index = 1
    while index < len(packet) and packet[index] & 0x80:
        index += 1
    return index + 1


@dataclass
class MqttPacket:
    """A decoded packet; ``fields`` holds what the trace shows (never a service password)."""

    type: int
    name: str
    flags: int
    raw: bytes
    topic: str | None = None
    payload: bytes | None = None
    qos: int = 0
    dup: bool = False
    retain: bool = False
    packet_id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def _str(body: bytes, pos: int) -> tuple[bytes, int]:
    length = struct.unpack(">H", body[pos : pos + 2])[0]
    return body[pos + 2 : pos + 2 + length], pos + 2 + length


def decode_packet(packet: bytes) -> MqttPacket:
    """Decode ``packet``; a malformed one is returned with ``fields['error']`` set."""
    ptype = packet[0] >> 4
    flags = packet[0] & 0x0F
    out = MqttPacket(ptype, NAMES.get(ptype, f"TYPE{ptype}"), flags, packet)
    body = packet[_header_len(packet) :]
    try:
        if ptype == 3:
            out.qos = (flags >> 1) & 3
            out.dup = bool(flags & 8)
            out.retain = bool(flags & 1)
            topic, pos = _str(body, 0)
            out.topic = topic.decode(errors="replace")
            if out.qos:
                out.packet_id = struct.unpack(">H", body[pos : pos + 2])[0]
                pos += 2
            out.payload = body[pos:]
        elif ptype == 1:
            _decode_connect(body, out)
        elif ptype == 2:
            out.fields = {"session_present": bool(body[0] & 1), "return_code": body[1]}
        elif ptype in (4, 5, 6, 7, 11):
            out.packet_id = struct.unpack(">H", body[:2])[0]
        elif ptype in (8, 10):
            out.packet_id = struct.unpack(">H", body[:2])[0]
            pos = 2
            filters = []
            while pos < len(body):
                name, pos = _str(body, pos)
                entry: dict[str, Any] = {"filter": name.decode(errors="replace")}
                if ptype == 8:
                    entry["qos"] = body[pos]
                    pos += 1
                filters.append(entry)
            out.fields = {"filters": filters}
            out.topic = ", ".join(f["filter"] for f in filters)
        elif ptype == 9:
            out.packet_id = struct.unpack(">H", body[:2])[0]
            out.fields = {"granted": list(body[2:])}
    except (IndexError, struct.error) as error:
        out.fields["error"] = f"malformed {out.name}: {error}"
    return out


def _decode_connect(body: bytes, out: MqttPacket) -> None:
    name, pos = _str(body, 0)
    level = body[pos]
    cflags = body[pos + 1]
    keepalive = struct.unpack(">H", body[pos + 2 : pos + 4])[0]
    pos += 4
    client_id, pos = _str(body, pos)
    fields: dict[str, Any] = {
        "protocol": name.decode(errors="replace"),
        "level": level,
        "clean_session": bool(cflags & 2),
        "keepalive": keepalive,
        "client_id": client_id.decode(errors="replace"),
    }
    if cflags & 4:
        will_topic, pos = _str(body, pos)
        _, pos = _str(body, pos)
        fields["will_topic"] = will_topic.decode(errors="replace")
    if cflags & 0x80:
        username, pos = _str(body, pos)
        fields["username"] = username.decode(errors="replace")
    if cflags & 0x40:
        password, pos = _str(body, pos)
        shown = _public_len(password)
        fields["password"] = password[:shown].decode() + (
            f"<redacted {len(password) - shown} B>" if shown < len(password) else ""
        )
    out.fields = fields


def redact_connect(packet: bytes) -> bytes:
    """``packet`` with a secret CONNECT password overwritten by ``*`` (same length).

    The tap stores only redacted bytes, so hex dumps, JSON and pcap exports never contain a
    service credential; protocol markers such as ``SSDTF/1`` stay readable.
    """
    if packet[0] >> 4 != 1:
        return packet
    try:
        body_start = _header_len(packet)
        body = packet[body_start:]
        _, pos = _str(body, 0)
        cflags = body[pos + 1]
        pos += 4
        _, pos = _str(body, pos)
        if cflags & 4:
            _, pos = _str(body, pos)
            _, pos = _str(body, pos)
        if cflags & 0x80:
            _, pos = _str(body, pos)
        if not cflags & 0x40:
            return packet
        password, _end = _str(body, pos)
        shown = _public_len(password)
        if shown == len(password):
            return packet
        start = body_start + pos + 2 + shown
        hidden = len(password) - shown
        return packet[:start] + b"*" * hidden + packet[start + hidden :]
    except (IndexError, struct.error):
        return packet


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    """A PUBLISH packet (used by attacks to rewrite or inject one)."""
    header = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = struct.pack(">H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack(">H", packet_id or 1)
    body += payload
    return bytes([header]) + encode_length(len(body)) + body
