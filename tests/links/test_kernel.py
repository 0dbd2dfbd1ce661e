"""Kernel mode: real TCP/UDP between two namespaces over a shaped TUN link, against real peers.

Skipped with the reason where namespaces are not allowed (not root, no TUN). Every test also
checks that the namespaces are gone afterwards, as ``ip netns list`` shows them.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from drivers.links import KernelLink, netns, open_link, parse_link, unavailable_reason
from drivers.peers import CoapServerPeer, LabPki, MosquittoPeer, find_program
from drivers.peers.coap import coap_ping
from tests.links.conftest import (
    MQTT_CONNACK_OK,
    MQTT_CONNECT,
    binomial_bounds,
    client_context,
    send_datagrams,
    timed_handshake,
    udp_counter,
)

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

RTT = 0.1
SERVER_PORT = 4433

TLS_ECHO_SERVER = """
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("0.0.0.0", int(sys.argv[3])))
for _ in range(8):
    conn, _ = listener.accept()
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while data := tls.recv(65536):
                tls.sendall(data)
    except OSError:
        pass
"""


def ip_netns_list() -> str:
    ip = find_program("ip")
    assert ip is not None
    return subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=True).stdout


def assert_gone(*names: str) -> None:
    listing = ip_netns_list()
    for name in names:
        assert name and name not in listing
        assert not (netns.NETNS_DIR / name).exists()


def wait_for_server(link: KernelLink, port: int, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with link.client_context():
            probe = socket.socket()
        with probe:
            probe.settimeout(2)
            try:
                probe.connect((link.server_host, port))
                return
            except OSError:
                time.sleep(0.05)
    raise AssertionError("the server in the namespace never listened")


def test_peer_process_in_the_server_namespace_pays_two_round_trips(pki: LabPki) -> None:
    cred = pki.server_cert(("localhost", "10.251.0.1"))
    argv = [sys.executable, "-c", TLS_ECHO_SERVER, str(cred.cert_path), str(cred.key_path)]
    with KernelLink(parse_link(f"rtt={RTT * 1000:g}ms")) as link:
        server = link.popen_in_server([*argv, str(SERVER_PORT)])
        wait_for_server(link, SERVER_PORT)
        handshake, answer = timed_handshake(
            (link.server_host, SERVER_PORT), client_context(pki), b"ping", link.client_context
        )
        names = (link.client_ns, link.server_ns)
        meta = link.metadata()
    assert answer == b"ping"
    # TCP connect (1 RTT) + TLS 1.3 (1 RTT); the forwarder never releases a packet early.
    assert handshake >= 2 * RTT * 0.98
    assert handshake < 3 * RTT, f"{handshake * 1000:.1f} ms: the link over-delays"
    assert meta["mode"] == "kernel" and meta["stats"]["up"]["packets"] >= 4
    assert server.poll() is not None, "the server process outlived its namespace"
    assert_gone(*names)


@pytest.mark.skipif(find_program("mosquitto") is None, reason="mosquitto is not installed")
def test_loopback_peer_behind_a_kernel_link(pki: LabPki) -> None:
    """open_link(mode='kernel') relays to a drivers.peers peer on loopback."""
    with (
        MosquittoPeer(pki=pki) as broker,
        open_link("rtt=100ms", "tcp", ("127.0.0.1", broker.port), mode="kernel") as link,
    ):
        handshake, answer = timed_handshake(
            link.address, client_context(pki, with_cert=True), MQTT_CONNECT, link.client_context
        )
        names = (link.link.client_ns, link.link.server_ns)  # type: ignore[union-attr]
    assert answer == MQTT_CONNACK_OK
    assert handshake >= 2 * RTT * 0.98
    assert_gone(*names)


def test_real_tcp_retransmissions_deliver_the_stream(pki: LabPki) -> None:
    """15% loss: the kernel's own TCP retransmits, so the echo still arrives intact."""
    payload = os.urandom(60_000)
    with KernelLink(parse_link("rtt=10ms,loss=15%,seed=5")) as link:
        cred = pki.server_cert(("localhost", "10.251.0.1"))
        argv = [sys.executable, "-c", TLS_ECHO_SERVER, str(cred.cert_path), str(cred.key_path)]
        link.popen_in_server([*argv, str(SERVER_PORT)])
        wait_for_server(link, SERVER_PORT, limit=20)
        with link.client_context():
            raw = socket.socket()
        raw.settimeout(30)
        raw.connect((link.server_host, SERVER_PORT))
        received = bytearray()
        with client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(payload)
            while len(received) < len(payload):
                chunk = tls.recv(65536)
                assert chunk, "connection closed early"
                received.extend(chunk)
        meta = link.metadata()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert meta["loss"] == "real"
    assert meta["stats"]["up"]["dropped"] + meta["stats"]["down"]["dropped"] > 0
    assert meta["stats"]["up"]["modelled_losses"] == 0


def test_udp_loss_is_real_in_kernel_mode() -> None:
    count, loss = 400, 0.2
    with KernelLink(parse_link("up.loss=20%,seed=11"), protocol="udp") as link:
        with link.server_context():
            server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server_sock.bind((link.server_host, 0))
        with udp_counter(server_sock) as (port, seen):
            with link.client_context():
                client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with client:
                echoes = send_datagrams(client, (link.server_host, port), count)
        meta = link.metadata()
    dropped = meta["stats"]["up"]["dropped"]
    low, high = binomial_bounds(count, loss)
    assert low <= dropped / count <= high
    assert len(seen) == count - dropped
    assert len(echoes) == len(seen)


def test_namespaces_are_deleted_after_an_exception() -> None:
    link = KernelLink(parse_link("rtt=2ms"))
    with pytest.raises(RuntimeError, match="boom"), link:
        names = (link.client_ns, link.server_ns)
        assert all(name in ip_netns_list() for name in names)
        raise RuntimeError("boom")
    assert_gone(*names)
    assert not any(name.startswith(f"safelab-{os.getpid()}-") for name in netns.listed())


def test_stale_namespaces_of_dead_processes_are_swept() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(finished.stdout)
    name = f"safelab-{dead_pid}-1-c"
    netns.create(name)
    try:
        assert name in ip_netns_list()
        assert name in netns.sweep_stale()
    finally:
        netns.delete(name)
    assert_gone(name)


def test_client_context_returns_to_the_root_namespace() -> None:
    own = os.stat("/proc/thread-self/ns/net").st_ino
    with KernelLink(parse_link("rtt=1ms")) as link:
        with link.client_context():
            assert os.stat("/proc/thread-self/ns/net").st_ino != own
        assert os.stat("/proc/thread-self/ns/net").st_ino == own


def test_rate_limit_applies_to_real_ip_packets() -> None:
    """64 KB over up.rate=1mbit: at least 0.52 s (payload alone), delivered intact."""
    payload = os.urandom(64 * 1024)
    with KernelLink(parse_link("up.rate=1mbit,rtt=2ms")) as link:
        with link.server_context():
            listener = socket.socket()
        listener.bind((link.server_host, 0))
        listener.listen(1)
        received = bytearray()

        def sink() -> None:
            conn, _ = listener.accept()
            with conn:
                while chunk := conn.recv(65536):
                    received.extend(chunk)

        thread = threading.Thread(target=sink, daemon=True)
        thread.start()
        start = time.perf_counter()
        with link.client_context():
            client = socket.socket()
        with client:
            client.settimeout(10)
            client.connect(listener.getsockname())
            client.sendall(payload)
        thread.join(10)
        elapsed = time.perf_counter() - start
        listener.close()
    assert bytes(received) == payload
    assert elapsed >= len(payload) * 8 / 1e6


@pytest.mark.skipif(find_program("coap-server-openssl") is None, reason="libcoap3-bin missing")
def test_coap_server_on_loopback_behind_a_kernel_udp_link(pki: LabPki) -> None:
    """libcoap's server answers a CoAP ping through the namespaces, one RTT later."""
    with (
        CoapServerPeer(pki=pki) as coap,
        open_link("rtt=100ms", "udp", ("127.0.0.1", coap.plain_port), mode="kernel") as link,
    ):
        start = time.perf_counter()
        with link.client_context():
            answered = coap_ping(*link.address, timeout=2.0)
        elapsed = time.perf_counter() - start
        assert link.address[0] == "10.251.0.1"
    assert answered
    assert elapsed >= 0.098


def test_client_processes_started_in_the_client_context_run_there() -> None:
    """An openvpn-style client process inherits the client namespace from the starting thread."""
    show = [sys.executable, "-c", "import os; print(os.stat('/proc/self/ns/net').st_ino)"]
    with KernelLink(parse_link("rtt=1ms")) as link:
        with link.client_context():
            inside = subprocess.run(show, capture_output=True, text=True, check=True).stdout
        outside = subprocess.run(show, capture_output=True, text=True, check=True).stdout
        client_ns = (netns.NETNS_DIR / link.client_ns).stat().st_ino
    assert int(inside) == client_ns
    assert int(outside) != client_ns
