"""Start, health, stop for every peer: missing program, port in use, cleanup on errors."""

from __future__ import annotations

import socket

import pytest

from drivers.peers import (
    CoapServerPeer,
    EmbeddedHttpsPeer,
    EmbeddedMqttPeer,
    MosquittoPeer,
    NginxPeer,
    OpenVpnServerPeer,
    Peer,
    PeerUnavailable,
    PortInUse,
    peer_status,
)
from drivers.peers.base import find_program
from tests.peers.conftest import assert_stopped, group_members

REAL = [
    (MosquittoPeer, "mosquitto"),
    (NginxPeer, "nginx"),
    (CoapServerPeer, "libcoap3-bin"),
    (OpenVpnServerPeer, "openvpn"),
]
ALL = [
    MosquittoPeer,
    NginxPeer,
    CoapServerPeer,
    OpenVpnServerPeer,
    EmbeddedHttpsPeer,
    EmbeddedMqttPeer,
]


def test_real_binaries_are_installed() -> None:
    for cls, package in REAL:
        assert find_program(cls.program), f"{cls.program} missing: apt-get install -y {package}"


@pytest.mark.parametrize(("cls", "package"), REAL)
def test_missing_binary_names_the_package(cls: type[Peer], package: str) -> None:
    peer = cls(binary="safelab-no-such-program")
    with pytest.raises(PeerUnavailable) as info, peer:
        pass
    assert info.value.package == package
    assert info.value.fix == f"apt-get install {package}"
    assert "safelab-no-such-program" in info.value.problem
    assert peer.process is None


@pytest.mark.parametrize("cls", ALL)
def test_starts_healthy_and_stops_everything(cls: type[Peer]) -> None:
    with cls() as peer:
        assert peer.running
        assert 1024 < peer.port < 65536
        pid = peer.pid
        workdir = peer.workdir
        assert workdir is not None and workdir.exists()
    assert not peer.running
    assert_stopped(pid)
    assert not workdir.exists()
    # The log is kept after stop, for error messages (libcoap logs nothing when idle).
    assert peer.log_text() or cls is CoapServerPeer


def _occupy(transport: str) -> socket.socket:
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if transport == "tcp":
        sock.listen()
    return sock


@pytest.mark.parametrize(
    ("factory", "transport", "offset"),
    [
        (lambda port: MosquittoPeer(port=port), "tcp", 0),
        (lambda port: NginxPeer(port=port), "tcp", 0),
        (lambda port: EmbeddedHttpsPeer(port=port), "tcp", 0),
        (lambda port: OpenVpnServerPeer(port=port, proto="udp"), "udp", 0),
        (lambda port: OpenVpnServerPeer(port=port, proto="tcp"), "tcp", 0),
        # libcoap's base port is plain CoAP; DTLS is base + 1.
        (lambda port: CoapServerPeer(port=port - 1), "udp", 1),
    ],
)
def test_port_in_use_is_a_clear_error(factory, transport: str, offset: int) -> None:
    with _occupy(transport) as sock:
        port = sock.getsockname()[1]
        peer = factory(port)
        with pytest.raises(PortInUse) as info:
            peer.start()
    # CoAP reserves base and base + 1: if the base port happens to be taken by another program
    # too, that is the one reported, which is just as right.
    assert info.value.port in (port, port - offset)
    assert "already in use" in info.value.one_line()
    assert peer.process is None


def test_port_taken_after_the_check_is_reported_from_the_log(monkeypatch) -> None:
    """The race: the port is free when checked but taken when the peer binds."""
    import drivers.peers.base as base

    monkeypatch.setattr(base, "require_free", lambda *args, **kwargs: None)
    with _occupy("tcp") as sock:
        peer = NginxPeer(port=sock.getsockname()[1])
        with pytest.raises(PortInUse) as info:
            peer.start()
    assert "Address already in use" in info.value.log_tail
    assert peer.process is None


def test_stopped_after_an_exception_in_the_with_block() -> None:
    peer = NginxPeer()
    with pytest.raises(RuntimeError, match="boom"), peer:
        pid = peer.pid
        assert len(group_members(pid)) >= 2  # master and worker
        raise RuntimeError("boom")
    assert_stopped(pid)
    assert peer.verifier is not None and peer.verifier.process is None


def test_stopped_after_ctrl_c_in_the_with_block() -> None:
    peer = MosquittoPeer()
    with pytest.raises(KeyboardInterrupt), peer:
        pid = peer.pid
        raise KeyboardInterrupt
    assert_stopped(pid)


def test_peer_killed_mid_run_is_reported() -> None:
    import os
    import signal

    from drivers.peers import PeerError

    with MosquittoPeer() as peer:
        peer.check_alive()
        os.kill(peer.pid, signal.SIGKILL)
        peer.process.wait(5)
        with pytest.raises(PeerError, match="stopped unexpectedly"):
            peer.check_alive()


def test_peer_status_lists_every_protocol() -> None:
    rows = {row.protocol: row for row in peer_status()}
    assert set(rows) == {"MQTT/TLS", "HTTPS", "CoAP/DTLS", "TLS-VPN"}
    assert rows["HTTPS"].peer == "NginxPeer" and not rows["HTTPS"].embedded
    assert rows["CoAP/DTLS"].install == "apt-get install libcoap3-bin"
    assert all(row.available for row in rows.values())
