"""The capture tap between real MQTT clients and a real broker: a client that stops reading
back-pressures its own connection only; everyone else's packets keep flowing.

Before, one task forwarded every connection's packets and awaited ``drain()`` after each
write, so one receiver that stopped reading froze the tap for all clients (a SUBSCRIBE
waiting behind it never got its SUBACK).
"""

from __future__ import annotations

import gc
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from drivers.ssdtf.brokers import BrokerPolicy, EmbeddedBroker, MosquittoBroker
from drivers.ssdtf.config import PREFIX
from drivers.ssdtf.endpoint import Endpoint, MqttError
from drivers.ssdtf.mqttcodec import PACKET_LIMIT, FrameSplitter, encode_length, encode_publish
from drivers.ssdtf.netloop import NetLoop
from drivers.ssdtf.tap import Tap
from drivers.ssdtf.trace import Trace

TOKEN = "tap-test-service-token"
STALLED, PUBLISHER, PROBE = "user-1", "ds", "gateway"
"""Real SSDTF principals, so the embedded broker's least-privilege ACL lets each do its part:
the distribution server floods a data user's delivery topic, and the gateway probes."""
BUSY = f"{PREFIX}/out/{STALLED}/busy"
PROBE_SUB = f"{PREFIX}/up/+"
PROBE_PUB = f"{PREFIX}/int/probe"
FLOOD = 1024
"""PUBLISHes of 16 KiB to the stalled subscriber: 16 MiB, far beyond the loopback socket
buffers and asyncio's write buffer, so a tap that waits on that receiver really waits."""
PAYLOAD = b"x" * 16384


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def _packet(header: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([header]) + bytes(encoded) + body


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


def stalled_subscriber(port: int) -> socket.socket:
    """A raw MQTT client: CONNECT, SUBSCRIBE to the busy topic, then never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    connect = b"\x00\x04MQTT\x04\xc2\x00\x3c" + _utf8(STALLED) + _utf8(STALLED) + _utf8(TOKEN)
    sock.sendall(_packet(0x10, connect))
    assert _recv_exactly(sock, 4) == b"\x20\x02\x00\x00", "CONNACK refused"
    sock.sendall(_packet(0x82, b"\x00\x01" + _utf8(f"{PREFIX}/out/{STALLED}/+") + b"\x00"))
    assert _recv_exactly(sock, 5) == b"\x90\x03\x00\x01\x00", "no SUBACK for the stalled client"
    return sock


@pytest.fixture(params=["embedded", "mosquitto"])
def tapped(request: pytest.FixtureRequest) -> Iterator[tuple[Tap, Trace]]:
    """A real broker with the tap in front of it, on a loop thread like a deployment's."""
    net = NetLoop("tap-test")
    if request.param == "embedded":
        broker: EmbeddedBroker | MosquittoBroker = EmbeddedBroker(
            net, _policy(STALLED, PUBLISHER, PROBE)
        )
    else:
        request.getfixturevalue("mosquitto_available")
        broker = MosquittoBroker()
    trace = Trace("tap test")
    tap = Tap(("127.0.0.1", 0), trace)
    try:
        broker.start()
        tap.upstream = (broker.host, broker.port)
        net.run(tap.start())
        yield tap, trace
    finally:
        net.run(tap.stop(), timeout=10)
        broker.stop()
        net.stop()


def _policy(*users: str) -> BrokerPolicy:
    """Each principal with its own credential and client ID (here one shared test secret)."""
    client_ids = {u: u if u == STALLED else f"tap-test-{u}" for u in users}
    return BrokerPolicy({u: TOKEN for u in users}, client_ids)


def _service(name: str, port: int) -> Endpoint:
    endpoint = Endpoint(f"tap-test-{name}", "127.0.0.1", port, username=name, password=TOKEN)
    endpoint.connect(10)
    return endpoint


def _count(trace: Trace, lane: str, direction: str, mqtt_type: str) -> int:
    return sum(
        1
        for p in trace.snapshot()
        if p.lane == lane and p.direction == direction and p.mqtt_type == mqtt_type
    )


def _wait(condition: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_client_that_stops_reading_does_not_stall_the_others(
    tapped: tuple[Tap, Trace],
) -> None:
    tap, trace = tapped
    stalled = stalled_subscriber(tap.port)
    publisher = _service(PUBLISHER, tap.port)
    try:
        for _ in range(FLOOD):
            publisher.publish(BUSY, PAYLOAD, qos=0)
        # Every PUBLISH of the flood passes the tap towards the broker...
        flooded = _wait(lambda: _count(trace, PUBLISHER, "c2b", "PUBLISH") == FLOOD, 30)
        assert flooded, (
            f"only {_count(trace, PUBLISHER, 'c2b', 'PUBLISH')}/{FLOOD} PUBLISHes passed the"
            " tap: forwarding stalled behind the client that does not read"
        )
        # ...while the stalled client really is stalled: the tap holds most of its copies.
        assert _wait(lambda: _count(trace, STALLED, "b2c", "PUBLISH") > 0, 10)
        assert _count(trace, STALLED, "b2c", "PUBLISH") < FLOOD // 2

        # A new client's CONNECT/CONNACK, SUBSCRIBE/SUBACK and PUBLISH round trips complete.
        got = threading.Event()
        publisher.on(PROBE_PUB, lambda topic, payload, msg: got.set())
        assert publisher.subscribe([(f"{PREFIX}/int/+", 1)], 10) == [1]
        probe = _service(PROBE, tap.port)
        try:
            assert probe.subscribe([(PROBE_SUB, 1)], 10) == [1]
            probe.publish(PROBE_PUB, b"ping", qos=1)
            assert got.wait(10), "the probe's PUBLISH never got through the tap to its reader"
        finally:
            probe.stop()
        assert _count(trace, PROBE, "b2c", "SUBACK") == 1
        assert _count(trace, STALLED, "b2c", "PUBLISH") < FLOOD // 2  # still stalled
    finally:
        publisher.stop()
        stalled.close()


def test_a_dropped_connection_is_not_silently_reconnected(tapped: tuple[Tap, Trace]) -> None:
    """paho used to reconnect ~1 s after a lost connection (it overwrote the disconnect the
    Endpoint asked for): a SUBSCRIBE in flight was never re-sent, so subscribe() waited out
    its timeout with "no SUBACK". Now the loss ends the endpoint and subscribe() says so."""
    tap, trace = tapped
    endpoint = _service(PROBE, tap.port)
    try:
        conn = tap.find(PROBE)
        assert conn is not None
        tap.loop.call_soon_threadsafe(tap._close, conn)
        assert endpoint.closed.wait(10)
        time.sleep(2.5)  # paho's first reconnect came after 1 s
        assert _count(trace, PROBE, "c2b", "CONNECT") == 1
        with pytest.raises(MqttError, match=r"closed before its SUBACK|SUBSCRIBE failed"):
            endpoint.subscribe([(PROBE_SUB, 1)], 10)
    finally:
        endpoint.stop()


def test_starting_the_embedded_broker_leaves_no_unclosed_connection() -> None:
    """The root cause of "no SUBACK for 'ssdtf-ds'": a readiness probe connection that amqtt
    never closed. When the GC finalized it, StreamWriter.__del__ unregistered its old fd
    number from the loop's selector, and that number could belong to a new connection by
    then, whose next packet was never read. The broker start must leave nothing to finalize.
    """
    net = NetLoop("broker-start-test")
    broker = EmbeddedBroker(net, _policy(PROBE))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            broker.start()
            endpoint = _service(PROBE, broker.port)  # a real client still gets in
            endpoint.stop()
            time.sleep(0.3)  # let amqtt finish with the closed client
            gc.collect()
        unclosed = [str(w.message) for w in caught if "unclosed" in str(w.message)]
        assert not unclosed, unclosed
    finally:
        broker.stop()
        net.stop()


def test_the_tap_passes_an_oversized_packet_through_without_holding_it() -> None:
    """A client announcing a packet over PACKET_LIMIT (MQTT allows 256 MiB) must not make the
    tap accumulate it: its bytes go on as they arrive (the broker's own limit then closes
    the sender), each piece no larger than what was read, and the packets around it are
    still split whole and in order."""
    size = 8 << 20
    small = encode_publish("a/b", b"before")
    after = encode_publish("a/b", b"after")
    body = b"\x00\x03a/b" + bytes(size - 5)
    big = b"\x30" + encode_length(len(body)) + body
    stream = small + big + after
    splitter = FrameSplitter(PACKET_LIMIT)
    pieces: list[tuple[bytes, bool]] = []
    oversized: list[tuple[int, int]] = []
    for offset in range(0, len(stream), 65536):
        pieces += splitter.feed(stream[offset : offset + 65536])
        oversized += splitter.oversized
        assert len(splitter.buffer) <= 65536  # never more than one read held
    whole = [p for p, is_whole in pieces if is_whole]
    assert whole == [small, after]
    assert b"".join(p for p, is_whole in pieces if not is_whole) == big
    assert max(len(p) for p, _ in pieces) <= 65536
    assert oversized == [(3, len(big))]
