"""Helpers for link tests: real TLS and UDP servers, timed TLS handshakes through a link.

Timing asserts here are relative to the *configured* link (e.g. "at least 1.5 RTT more than
direct"), never absolute wall-clock figures, so a loaded machine cannot make them pass by
accident; only the upper bounds are generous.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from drivers.peers import LabPki

MQTT_CONNECT = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01t"
MQTT_CONNACK_OK = b"\x20\x02\x00\x00"


@pytest.fixture
def pki() -> LabPki:
    return LabPki()


def server_context(pki: LabPki) -> ssl.SSLContext:
    cred = pki.server_cert(("localhost", "127.0.0.1", "10.251.0.1"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert cred.key_path is not None
    context.load_cert_chain(cred.cert_path, cred.key_path)
    return context


def client_context(pki: LabPki, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    if with_cert:
        cred = pki.software_client("link-client")
        assert cred.key_path is not None
        context.load_cert_chain(cred.cert_path, cred.key_path)
    return context


@contextlib.contextmanager
def tls_echo_server(pki: LabPki, listener: socket.socket | None = None) -> Iterator[int]:
    """A Python ``ssl`` server thread answering each connection's bytes with the same bytes."""
    context = server_context(pki)
    sock = listener or socket.socket()
    if listener is None:
        sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, context.wrap_socket(conn, True) as tls:
            while data := tls.recv(4096):
                tls.sendall(data)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def timed_handshake(
    address: tuple[str, int],
    context: ssl.SSLContext,
    payload: bytes,
    socket_context: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> tuple[float, bytes]:
    """Seconds for TCP connect + TLS handshake, and the first answer to ``payload``."""
    start = time.perf_counter()
    with socket_context():
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with raw:
        raw.settimeout(10)
        raw.connect(address)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            handshake = time.perf_counter() - start
            tls.sendall(payload)
            answer = tls.recv(4096)
    return handshake, answer


@contextlib.contextmanager
def udp_counter(listener: socket.socket | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """A UDP server thread that records every datagram and echoes it back."""
    sock = listener or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if listener is None:
        sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    seen: list[bytes] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                data, address = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            seen.append(data)
            sock.sendto(data, address)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def send_datagrams(
    sock: socket.socket, address: tuple[str, int], count: int, settle: float = 0.3
) -> list[bytes]:
    """Send ``count`` numbered datagrams while a thread collects the echoes (so the client's
    receive buffer never overflows), then wait ``settle`` seconds for the last ones."""
    echoes: list[bytes] = []
    sock.settimeout(settle)
    done = threading.Event()

    def collect() -> None:
        while len(echoes) < count:
            try:
                echoes.append(sock.recv(64))
            except TimeoutError:
                if done.is_set():
                    return
            except OSError:
                return

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    for number in range(count):
        sock.sendto(number.to_bytes(4, "big"), address)
        time.sleep(0.0005)  # stay below any queue limit; this is a loss test, not a flood
    done.set()
    thread.join(settle * 4 + 5)
    return echoes


def binomial_bounds(count: int, p: float, sds: float = 4.0) -> tuple[float, float]:
    """Fraction bounds for a Binomial(count, p) draw: mean +/- ``sds`` standard deviations."""
    sd = (p * (1 - p) / count) ** 0.5
    return p - sds * sd, p + sds * sd
