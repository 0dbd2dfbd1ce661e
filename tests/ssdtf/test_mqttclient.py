"""The roles' lean MQTT 3.1.1 connection (drivers/ssdtf/mqttclient.py) against a real
Mosquitto: QoS 0/1/2 both ways exactly once, retained messages, large payloads, a refused
CONNECT, a broker that goes away; and a broker that breaks the protocol (a socket server
here: no real broker sends a client a SUBSCRIBE) closes the connection."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.ssdtf.brokers import _wait_port
from drivers.ssdtf.endpoint import Endpoint, MqttError
from drivers.ssdtf.mqttclient import ProtocolError, publish_packet, split_packet
from drivers.ssdtf.mqttcodec import PACKET_LIMIT
from drivers.ssdtf.netloop import free_port


def _mosquitto(extra: str) -> Iterator[int]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = Path(tmp) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\npersistence false\nlog_dest none\n{extra}")
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            assert _wait_port("127.0.0.1", port, 5)
            yield port
        finally:
            proc.terminate()
            proc.wait(5)


@pytest.fixture
def broker() -> Iterator[int]:
    yield from _mosquitto("allow_anonymous true\n")


def _collector(endpoint: Endpoint, pattern: str) -> list[tuple[str, bytes, int, bool]]:
    got: list[tuple[str, bytes, int, bool]] = []
    endpoint.on(
        pattern, lambda topic, payload, msg: got.append((topic, payload, msg.qos, msg.retain))
    )
    return got


def _settle(got: list, count: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.3)  # anything redelivered (a missing PUBACK/PUBCOMP) would arrive now


def test_every_qos_exactly_once_and_large_payloads(broker: int) -> None:
    sub = Endpoint("lean-sub", "127.0.0.1", broker)
    pub = Endpoint("lean-pub", "127.0.0.1", broker)
    got = _collector(sub, "lean/#")
    sub.connect(5)
    pub.connect(5)
    try:
        assert sub.subscribe([("lean/#", 2)], 5) == [2]
        big = os.urandom(60_000)  # a 3-byte remaining length, under PACKET_LIMIT
        sent = [(f"lean/q{q}", os.urandom(50), q) for q in (0, 1, 2)] + [("lean/big", big, 1)]
        for topic, payload, qos in sent:
            pub.publish(topic, payload, qos=qos)
        _settle(got, len(sent))
        # QoS 2 completes after its PUBREL, so it may come after later QoS 1 messages
        assert sorted(got) == sorted((t, p, q, False) for t, p, q in sent)
    finally:
        sub.stop()
        pub.stop()


PUBLISHER = """
import sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, size, count, qos = (int(a) for a in sys.argv[1:5])
pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lean-big-pub")
pub.connect("127.0.0.1", port)
pub.loop_start()
sent = [pub.publish("lean/big", bytes(size), qos=qos) for _ in range(count)]
sent.append(pub.publish("lean/small", b"after", qos=qos))
for info in sent:
    info.wait_for_publish(30)  # the broker has them all before we leave
pub.disconnect()
pub.loop_stop()
"""


def _publish_elsewhere(port: int, size: int, count: int, qos: int) -> None:
    """Publish from another process, so this process's memory is only the subscriber's."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", PUBLISHER, str(port), str(size), str(count), str(qos)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
        timeout=60,
    )


@pytest.mark.parametrize("qos", [1, 2])
def test_an_oversized_publish_is_acknowledged_reported_and_never_held(
    broker: int, qos: int
) -> None:
    """This Mosquitto enforces no size limit, so it hands the subscriber 25 PUBLISHes over
    PACKET_LIMIT. Each is reported with its size and never delivered; each is acknowledged
    (Mosquitto keeps at most 20 QoS 1/2 messages in flight per client: unacknowledged, they
    would hold back the small message after them for ever); none is held whole in memory
    (traced: the peak stays at a few 64 KiB reads, a quarter of one message)."""
    sub = Endpoint("lean-big-sub", "127.0.0.1", broker)
    got = _collector(sub, "lean/#")
    dropped: list[tuple[str, str]] = []
    sub.on_dropped = lambda topic, reason: dropped.append((topic, reason))
    sub.connect(5)
    size = 1 << 20  # 16 times PACKET_LIMIT
    try:
        assert sub.subscribe([("lean/#", qos)], 5) == [qos]
        tracemalloc.start()
        try:
            _publish_elsewhere(broker, size, 25, qos)
            _settle(got, 1, timeout=20)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [(t, p) for t, p, _, _ in got] == [("lean/small", b"after")]
        assert len(dropped) == 25
        assert all(t == "lean/big" and f"exceeds the {PACKET_LIMIT}-byte" in r for t, r in dropped)
        assert peak < 4 * 65536 < size, peak  # a few 64 KiB reads, never a message
        assert sub.connected.is_set()
    finally:
        sub.stop()


def test_retained_message_reaches_a_later_subscriber(broker: int) -> None:
    pub = Endpoint("lean-retain-pub", "127.0.0.1", broker)
    pub.connect(5)
    pub.publish("lean/state", b"kept", qos=1, retain=True)
    late = Endpoint("lean-late", "127.0.0.1", broker)
    got = _collector(late, "lean/state")
    late.connect(5)
    try:
        assert late.subscribe([("lean/state", 1)], 5) == [1]
        _settle(got, 1)
        assert got == [("lean/state", b"kept", 1, True)]
    finally:
        pub.stop()
        late.stop()


def test_refused_connect_is_an_error_with_the_code() -> None:
    for port in _mosquitto("allow_anonymous false\n"):
        endpoint = Endpoint("lean-nobody", "127.0.0.1", port, username="x", password="y")
        with pytest.raises(MqttError, match="CONNACK 5"):
            endpoint.connect(5)
        assert endpoint.connack_rc == 5
        assert endpoint.closed.is_set() and not endpoint.connected.is_set()


def test_no_broker_is_a_clear_error() -> None:
    with pytest.raises(MqttError, match="cannot reach the MQTT broker"):
        Endpoint("lean-alone", "127.0.0.1", free_port()).connect(2)


def test_broker_gone_closes_and_publish_is_silent() -> None:
    gen = _mosquitto("allow_anonymous true\n")
    port = next(gen)
    endpoint = Endpoint("lean-orphan", "127.0.0.1", port)
    closed = threading.Event()
    endpoint.on_closed = closed.set
    endpoint.connect(5)
    with pytest.raises(StopIteration):
        next(gen)  # the fixture's finally: Mosquitto terminates
    assert closed.wait(5)
    assert endpoint.closed.is_set() and not endpoint.connected.is_set()
    endpoint.publish("lean/after", b"x", qos=1)  # no exception, nothing sent
    endpoint.stop()


def test_a_broker_that_breaks_the_protocol_is_left() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def broken_broker() -> None:
        conn, _ = server.accept()
        conn.recv(1024)  # the CONNECT
        conn.sendall(b"\x20\x02\x00\x00")  # CONNACK accepted
        conn.sendall(b"\x82\x06\x00\x01\x00\x01a\x01")  # a SUBSCRIBE: servers never send one
        time.sleep(2)
        conn.close()

    thread = threading.Thread(target=broken_broker, daemon=True)
    thread.start()
    endpoint = Endpoint("lean-victim", "127.0.0.1", port)
    got = _collector(endpoint, "#")
    closed = threading.Event()
    endpoint.on_closed = closed.set
    endpoint.connect(5)
    assert closed.wait(1.5)  # closed by the client, before the server's own close at 2 s
    assert got == []
    endpoint.stop()
    thread.join(5)
    server.close()


def test_framing() -> None:
    packet = publish_packet("a/b", b"x" * 300, 1, True, 7)
    assert packet[0] == 0x33
    first, body, end = split_packet(packet)  # type: ignore[misc]
    assert (first, body, end) == (0x33, 3, len(packet))
    assert split_packet(packet[:3]) == (0x33, 3, len(packet))  # header complete, body not yet
    assert split_packet(packet[:2]) is None  # remaining length incomplete
    assert split_packet(packet[:1]) is None
    with pytest.raises(ProtocolError):
        split_packet(b"\x30\xff\xff\xff\xff\x01")
