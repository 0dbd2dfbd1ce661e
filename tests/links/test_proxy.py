"""Proxy mode against real peers: TLS (Python ssl, Mosquitto), CoAP (coap-server), UDP.

Bounds are relative to the configured link: a handshake over ``rtt=R`` must cost at least
1.5 R more than the same handshake direct (TCP connect + TLS 1.3 = 2 R).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest

from drivers.links import LinkError, TcpLinkProxy, UdpLinkProxy, open_link, parse_link
from drivers.peers import CoapServerPeer, LabPki, MosquittoPeer, find_program
from drivers.peers.coap import coap_ping
from tests.links.conftest import (
    MQTT_CONNACK_OK,
    MQTT_CONNECT,
    binomial_bounds,
    client_context,
    send_datagrams,
    timed_handshake,
    tls_echo_server,
    udp_counter,
)

RTT = 0.1


def best_of(count: int, measure) -> float:
    return min(measure() for _ in range(count))


def test_tls_handshake_through_the_proxy_costs_two_round_trips(pki: LabPki) -> None:
    context = client_context(pki)
    with tls_echo_server(pki) as port:
        direct = best_of(3, lambda: timed_handshake(("127.0.0.1", port), context, b"x")[0])
        with open_link(f"rtt={RTT * 1000:g}ms", "tcp", ("127.0.0.1", port)) as link:
            assert link.address != ("127.0.0.1", port)
            linked, answer = timed_handshake(link.address, context, b"ping")
            assert answer == b"ping"
            meta = link.metadata()
    extra = linked - direct
    assert extra >= 1.5 * RTT, f"only {extra * 1000:.1f} ms more than direct"
    assert extra < 3 * RTT, f"{extra * 1000:.1f} ms more than direct: the proxy over-delays"
    assert meta["mode"] == "proxy" and meta["loss"] == "none"
    assert meta["stats"]["up"]["bytes"] > 0 and meta["stats"]["down"]["bytes"] > 0


@pytest.mark.skipif(find_program("mosquitto") is None, reason="mosquitto is not installed")
def test_mosquitto_mutual_tls_through_the_proxy(pki: LabPki) -> None:
    context = client_context(pki, with_cert=True)
    with MosquittoPeer(pki=pki) as broker:
        peer = ("127.0.0.1", broker.port)
        direct = best_of(2, lambda: timed_handshake(peer, context, MQTT_CONNECT)[0])
        with open_link("rtt=100ms", "tcp", ("127.0.0.1", broker.port)) as link:
            linked, answer = timed_handshake(link.address, context, MQTT_CONNECT)
    assert answer == MQTT_CONNACK_OK
    assert linked - direct >= 1.5 * RTT


def test_server_first_bytes_wait_for_the_modelled_handshake() -> None:
    """A peer that speaks first is heard no sooner than 2 RTT after connect (SYN, SYN-ACK,
    ACK, then its banner back) -- the proxy connects on loopback at once, so it must hold."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def banner() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"220 hello\r\n")
            conn.recv(1)

    thread = threading.Thread(target=banner, daemon=True)
    thread.start()
    with TcpLinkProxy(parse_link("up.delay=20ms,down.delay=60ms"), listener.getsockname()) as link:
        start = time.perf_counter()
        with socket.create_connection(link.address, timeout=5) as client:
            assert client.recv(64) == b"220 hello\r\n"
            waited = time.perf_counter() - start
    thread.join(2)
    listener.close()
    # up + down + up (handshake) + down (banner) = 20 + 60 + 20 + 60 = 160 ms
    assert waited >= 0.155


def test_rate_limit_serialises_bytes_and_stream_stays_intact() -> None:
    """64 KB at 1 Mbit/s take at least 0.52 s, and arrive complete and in order."""
    payload = os.urandom(64 * 1024)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = bytearray()

    def sink() -> None:
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    with TcpLinkProxy(parse_link("up.rate=1mbit"), listener.getsockname()) as link:
        start = time.perf_counter()
        with socket.create_connection(link.address, timeout=5) as client:
            client.sendall(payload)
        thread.join(10)
        elapsed = time.perf_counter() - start
    listener.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert elapsed >= len(payload) * 8 / 1e6


def test_tcp_loss_is_modelled_as_delay_and_labelled(pki: LabPki) -> None:
    """30% loss: nothing is dropped (TCP cannot lose bytes), the echo is intact, retransmission
    timeouts are counted and the result is labelled 'modelled'."""
    context = client_context(pki)
    with (
        tls_echo_server(pki) as port,
        open_link("rtt=10ms,loss=30%,seed=3", "tcp", ("127.0.0.1", port)) as link,
    ):
        _, answer = timed_handshake(link.address, context, b"abc" * 1000)
        meta = link.metadata()
    assert answer.startswith(b"abc")
    assert meta["loss"] == "modelled"
    modelled = meta["stats"]["up"]["modelled_losses"] + meta["stats"]["down"]["modelled_losses"]
    assert modelled > 0
    assert meta["stats"]["up"]["dropped"] == meta["stats"]["down"]["dropped"] == 0
    assert meta["stats"]["up"]["modelled_delay"] + meta["stats"]["down"]["modelled_delay"] >= 0.2


def test_udp_loss_drops_about_the_configured_fraction() -> None:
    count, loss = 400, 0.2
    with (
        udp_counter() as (port, seen),
        open_link("up.loss=20%,seed=11", "udp", ("127.0.0.1", port)) as link,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        echoes = send_datagrams(client, link.address, count)
        meta = link.metadata()
    low, high = binomial_bounds(count, loss)
    dropped = meta["stats"]["up"]["dropped"]
    assert low <= dropped / count <= high
    assert len(seen) == count - dropped  # the server really missed exactly those
    assert len(echoes) == len(seen)  # the down direction had no loss configured
    assert meta["loss"] == "real"


@pytest.mark.skipif(find_program("coap-server-openssl") is None, reason="libcoap3-bin missing")
def test_coap_server_ping_through_the_udp_proxy(pki: LabPki) -> None:
    """libcoap's server answers a CoAP ping (empty CON -> RST) across the link, one RTT late."""
    with CoapServerPeer(pki=pki) as coap:
        target = ("127.0.0.1", coap.plain_port)
        with open_link("rtt=100ms", "udp", target) as link:
            start = time.perf_counter()
            assert coap_ping(*link.address, timeout=2.0)
            elapsed = time.perf_counter() - start
    assert elapsed >= 0.095


def test_stop_closes_the_listener_and_thread() -> None:
    with udp_counter() as (port, _):
        proxy = TcpLinkProxy(parse_link("rtt=10ms"), ("127.0.0.1", port))
        with proxy:
            address = proxy.address
        assert not proxy._thread.running
        with pytest.raises(OSError), socket.create_connection(address, timeout=1):
            pass
        with UdpLinkProxy(parse_link("rtt=10ms"), ("127.0.0.1", port)) as udp:
            assert udp._thread.running
        assert not udp._thread.running


def test_only_loopback_targets_are_accepted() -> None:
    with pytest.raises(LinkError) as caught, open_link("rtt=1ms", "tcp", ("192.0.2.1", 443)):
        pass
    assert "loopback" in caught.value.problem


def test_jitter_varies_delay_but_never_reorders() -> None:
    """±20 ms jitter on 30 ms with 0.5 ms between datagrams: independent delays would reorder
    almost every pair, yet they arrive in send order (FIFO, like a radio bearer)."""
    with (
        udp_counter() as (port, seen),
        open_link("up.delay=30ms,up.jitter=20ms,seed=4", "udp", ("127.0.0.1", port)) as link,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        echoes = send_datagrams(client, link.address, 100)
    numbers = [int.from_bytes(data, "big") for data in seen]
    assert numbers == list(range(100))
    assert len(echoes) == 100


def test_closed_connections_are_forgotten(pki: LabPki) -> None:
    """Each finished connection leaves nothing behind in the proxy (long runs stay bounded)."""
    context = client_context(pki)
    with (
        tls_echo_server(pki) as port,
        TcpLinkProxy(parse_link("rtt=4ms"), ("127.0.0.1", port)) as link,
    ):
        for _ in range(5):
            assert timed_handshake(link.address, context, b"x")[1] == b"x"
        deadline = time.monotonic() + 5
        while link.flows and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.stats.connections == 5
        assert len(link.flows) == 0
