"""A lean MQTT 3.1.1 client connection for the SSDTF roles: one socket, one reader thread,
packets written from the caller's thread.

Why not paho-mqtt here (it is still used everywhere else in SAFE Lab): profiled on the SSDTF
data path (four QoS 1 hops per reading, each a PUBLISH and a PUBACK each way), paho's
threaded mode costs most of a reading's non-cryptographic CPU. Every packet it queues, even
the PUBACK its own network thread answers, goes through an internal queue plus a byte written
to a socket pair to wake its ``select`` loop, which then writes the packet; a PUBLISH from
another thread (the roles publish from their worker-result threads) also wakes that thread.
It reads every fixed header a byte per ``recv``, and builds message-info, properties and
reason-code objects per packet. The roles need none of its features beyond the protocol:
they never reconnect (an SSDTF session ends with its connection), never retransmit (a new
connection needs a new handshake; the sensor re-sends at the SSDTF layer), and use QoS 0/1.

What this implements, strictly for a client: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH QoS
0/1/2 both ways (QoS 2 received is delivered once per packet identifier until its PUBREL),
PUBACK/PUBREC/PUBREL/PUBCOMP, PINGREQ when idle for half the keep-alive, DISCONNECT. A packet
a server must not send, a malformed length or a topic that is not UTF-8 closes the connection
(the broker is the only peer, so this is a broken broker, never a role's input: the roles'
input is the PUBLISH payload, which they check themselves). Writes are serialised by one lock
and go straight to the socket with ``sendall`` (TCP_NODELAY: a PUBACK never waits for
Nagle), reads are 64 KiB at a time and split here.

A PUBLISH larger than ``max_packet`` (``mqttcodec.PACKET_LIMIT``) is never buffered: once its
topic and packet identifier are in, it is acknowledged as any other (a QoS 1 message left
unacknowledged would hold one of the broker's in-flight slots for this client for ever),
reported to ``on_oversized(topic, size)`` and its remaining bytes are skipped as they arrive.
Our brokers refuse such packets already; this covers a broker that does not.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.ssdtf.mqttcodec import PACKET_LIMIT

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, UNSUBACK, PINGRESP = 9, 11, 13
MAX_PACKET = 268_435_455
"""The largest remaining length MQTT can encode."""


class ProtocolError(Exception):
    """The broker sent something a client must not accept; the connection is closed."""


@dataclass(slots=True)
class Message:
    """One PUBLISH as a role's handler sees it (the attributes paho's MQTTMessage has)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def connect_packet(
    client_id: str, username: str | None, password: str | None, clean: bool, keepalive: int
) -> bytes:
    flags = 0x02 if clean else 0
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    variable = _utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive)
    body = variable + payload
    return bytes([0x10]) + _remaining(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, mid: int) -> bytes:
    body = _utf8(topic) + (struct.pack(">H", mid) if qos else b"") + payload
    header = 0x30 | (qos << 1) | (1 if retain else 0)
    return bytes([header]) + _remaining(len(body)) + body


def split_packet(buffer: bytearray | bytes, start: int = 0) -> tuple[int, int, int] | None:
    """(first byte, offset of the body, offset of the end) of the packet at ``start``, or
    None while its fixed header is incomplete; :class:`ProtocolError` for a malformed
    remaining length. The body may still be incomplete (end > len(buffer))."""
    size = len(buffer)
    if size - start < 2:
        return None
    length, shift, pos = 0, 0, start + 1
    while True:
        if pos >= size:
            return None
        byte = buffer[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ProtocolError("remaining length longer than four bytes")
    return buffer[start], pos, pos + length


class Connection:
    """One client connection. ``on_message(Message)``, ``on_suback(mid, codes)`` and
    ``on_closed()`` run in the reader thread; everything else may be called from any thread."""

    def __init__(
        self,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = True,
        keepalive: int = 30,
        on_message: Callable[[Message], None],
        on_suback: Callable[[int, list[int]], None],
        on_closed: Callable[[], None],
        on_oversized: Callable[[str, int], None] | None = None,
        max_packet: int = PACKET_LIMIT,
    ) -> None:
        self.client_id = client_id
        self.username = username
        self.password = password
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.on_message = on_message
        self.on_suback = on_suback
        self.on_closed = on_closed
        self.on_oversized = on_oversized
        self.max_packet = max_packet
        self._skip = 0
        """Bytes of an oversized PUBLISH still to arrive, dropped unread."""
        self.sock: socket.socket | None = None
        self._write = threading.Lock()
        self._mid = 0
        self._last_write = 0.0
        self._qos2_held: set[int] = set()
        self._pending = bytearray()
        """Bytes read after the CONNACK, before the reader thread started."""
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()
        self.connack_rc: int | None = None

    # --- connection -----------------------------------------------------------------
    def connect(self, host: str, port: int, timeout: float) -> int:
        """Open the TCP connection, CONNECT and wait for the CONNACK; its return code (0:
        accepted, then call :meth:`start`; otherwise the socket is closed)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        try:
            self._send(
                connect_packet(
                    self.client_id,
                    self.username,
                    self.password,
                    self.clean_session,
                    self.keepalive,
                )
            )
            buffer = bytearray()
            deadline = time.monotonic() + timeout
            while (head := split_packet(buffer)) is None or head[2] > len(buffer):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no CONNACK")
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before CONNACK")
                buffer += chunk
            first, body, end = head
            if first >> 4 != CONNACK or end - body != 2:
                raise ProtocolError("first packet is not a CONNACK")
            self.connack_rc = buffer[body + 1]
        except (OSError, ProtocolError):
            self._shutdown()
            raise
        if self.connack_rc != 0:
            self._shutdown()
            return self.connack_rc
        sock.settimeout(None)
        del buffer[:end]
        self._pending = buffer
        return 0

    def start(self) -> None:
        """Start the reader thread (after :meth:`connect` returned 0, once the caller has
        marked itself connected: a packet read at once may already close the connection)."""
        self._reader = threading.Thread(
            target=self._read_loop,
            args=(self._pending,),
            name=f"ssdtf-mqtt-{self.client_id}",
            daemon=True,
        )
        self._reader.start()

    def _next_mid(self) -> int:
        self._mid = self._mid % 65535 + 1
        return self._mid

    def _send(self, packet: bytes) -> None:
        sock = self.sock
        if sock is None:
            raise OSError("not connected")
        with self._write:
            sock.sendall(packet)
            self._last_write = time.monotonic()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Send a PUBLISH; False when the connection is gone (like paho, no exception)."""
        if self._closed.is_set():
            return False
        with self._write:  # the packet identifier and the write in one step
            mid = self._next_mid() if qos else 0
            sock = self.sock
            if sock is None:
                return False
            try:
                sock.sendall(publish_packet(topic, payload, qos, retain, mid))
            except OSError:
                return False
            self._last_write = time.monotonic()
        return True

    def subscribe(self, topics: list[tuple[str, int]]) -> int:
        """Send a SUBSCRIBE; its packet identifier (the SUBACK comes to ``on_suback``)."""
        with self._write:
            mid = self._next_mid()
        body = struct.pack(">H", mid) + b"".join(_utf8(t) + bytes([q]) for t, q in topics)
        self._send(bytes([0x82]) + _remaining(len(body)) + body)
        return mid

    def disconnect(self) -> None:
        """DISCONNECT and close; the reader thread ends. Safe to call twice, from any thread."""
        if not self._closed.is_set():
            with contextlib.suppress(OSError):
                self._send(b"\xe0\x00")
        self._shutdown()

    def join(self, timeout: float = 5.0) -> None:
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)

    def _shutdown(self) -> None:
        self._closed.set()
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    # --- reader thread --------------------------------------------------------------
    def _read_loop(self, buffer: bytearray) -> None:
        sock = self.sock
        assert sock is not None
        idle = max(self.keepalive / 2, 0.5) if self.keepalive else None
        try:
            while not self._closed.is_set():
                self._dispatch(buffer)
                if idle is not None:
                    ready, _, _ = select.select([sock], [], [], idle)
                    if not ready:
                        if time.monotonic() - self._last_write >= idle:
                            self._send(b"\xc0\x00")  # PINGREQ
                        continue
                chunk = sock.recv(65536)
                if not chunk:
                    break
                if self._skip:  # the rest of an oversized PUBLISH: never buffered
                    cut = min(self._skip, len(chunk))
                    self._skip -= cut
                    chunk = chunk[cut:]
                buffer += chunk
        except (OSError, ValueError, ProtocolError):
            pass  # a reset, a closed socket or a broken broker: the connection ends
        finally:
            self._shutdown()
            self.on_closed()

    def _dispatch(self, buffer: bytearray) -> None:
        """Handle every complete packet in ``buffer`` and remove it."""
        start = 0
        try:
            while (head := split_packet(buffer, start)) is not None:
                first, body, end = head
                if end - body > self.max_packet:
                    if not self._drop_oversized(first, buffer, body, end):
                        break  # its topic and packet identifier are not in yet
                    start = min(end, len(buffer))
                    continue
                if end > len(buffer):
                    break
                self._handle(first, bytes(buffer[body:end]))
                start = end
        finally:
            del buffer[:start]

    def _drop_oversized(self, first: int, buffer: bytearray, body: int, end: int) -> bool:
        """Acknowledge, report and skip a PUBLISH over ``max_packet``; False until its header
        (topic, packet identifier) has arrived. Any other packet that large is a broken
        broker: :class:`ProtocolError`."""
        if first >> 4 != PUBLISH:
            raise ProtocolError(f"packet type {first >> 4} of {end - body} bytes from the broker")
        qos = (first >> 1) & 3
        have = len(buffer) - body
        if have < 2:
            return False
        tlen = (buffer[body] << 8) | buffer[body + 1]
        need = 2 + tlen + (2 if qos else 0)
        if have < need:
            return False
        try:
            topic = bytes(buffer[body + 2 : body + 2 + tlen]).decode()
        except UnicodeDecodeError as error:
            raise ProtocolError("PUBLISH topic is not UTF-8") from error
        mid = bytes(buffer[body + need - 2 : body + need]) if qos else b""
        self._skip = max(0, end - len(buffer))
        if qos == 1:
            self._send(b"\x40\x02" + mid)  # PUBACK: the broker's in-flight slot is freed
        elif qos == 2:
            self._qos2_held.add(int.from_bytes(mid, "big"))
            self._send(b"\x50\x02" + mid)  # PUBREC; its PUBREL gets the PUBCOMP
        if self.on_oversized is not None:
            self.on_oversized(topic, end - body)
        return True

    def _handle(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == PUBLISH:
            qos = (first >> 1) & 3
            if qos == 3 or len(body) < 2:
                raise ProtocolError("malformed PUBLISH")
            tlen = (body[0] << 8) | body[1]
            pos = 2 + tlen
            mid = 0
            if qos:
                mid = (body[pos] << 8) | body[pos + 1] if pos + 2 <= len(body) else -1
                pos += 2
            if pos > len(body) or mid == -1 or (qos and mid == 0):
                raise ProtocolError("PUBLISH shorter than its header")
            try:
                topic = body[2 : 2 + tlen].decode()
            except UnicodeDecodeError as error:
                raise ProtocolError("PUBLISH topic is not UTF-8") from error
            message = Message(topic, body[pos:], qos, bool(first & 1), bool(first & 8), mid)
            if qos == 2:
                if mid not in self._qos2_held:  # once per identifier until its PUBREL
                    self._qos2_held.add(mid)
                    self.on_message(message)
                self._send(b"\x50\x02" + body[pos - 2 : pos])  # PUBREC
                return
            self.on_message(message)
            if qos == 1:
                self._send(b"\x40\x02" + body[pos - 2 : pos])  # PUBACK, after the handler
        elif kind in (PUBACK, PUBCOMP, UNSUBACK, PINGRESP):
            return  # nothing to retransmit, ever: an SSDTF connection is never resumed
        elif kind == PUBREC and len(body) == 2:
            self._send(b"\x62\x02" + body)  # PUBREL
        elif kind == PUBREL and len(body) == 2:
            self._qos2_held.discard((body[0] << 8) | body[1])
            self._send(b"\x70\x02" + body)  # PUBCOMP
        elif kind == SUBACK and len(body) >= 3:
            self.on_suback((body[0] << 8) | body[1], list(body[2:]))
        else:
            raise ProtocolError(f"packet type {kind} from the broker")
