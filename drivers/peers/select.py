"""Which peer to run for a protocol: the real server when installed, else a real embedded one.

CoAP/DTLS and TLS-VPN have no embedded fallback (no Python DTLS server takes certificates, and
nothing but OpenVPN speaks OpenVPN), so for them a missing binary is :class:`PeerUnavailable`
with the package to install, and the console shows the protocol as unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.peers.base import Peer, find_program
from drivers.peers.coap import CoapServerPeer
from drivers.peers.embedded_https import EmbeddedHttpsPeer
from drivers.peers.embedded_mqtt import EmbeddedMqttPeer, amqtt_installed
from drivers.peers.errors import PeerUnavailable
from drivers.peers.mosquitto import MosquittoPeer
from drivers.peers.nginx import NginxPeer
from drivers.peers.openvpn import OpenVpnServerPeer
from drivers.peers.pki import LabPki


@dataclass(frozen=True)
class PeerStatus:
    """One protocol's peer as the console shows it before a run."""

    protocol: str
    peer: str
    """The class that would run (``MosquittoPeer``), or ``""`` when none can."""
    embedded: bool
    available: bool
    install: str
    """The command that makes the real peer available (``apt-get install nginx``)."""


def mqtt_peer(*, pki: LabPki | None = None, **options: object) -> MosquittoPeer | EmbeddedMqttPeer:
    """Mosquitto if installed, else amqtt; both require a lab-CA client certificate."""
    if find_program(MosquittoPeer.program):
        return MosquittoPeer(pki=pki, **options)  # type: ignore[arg-type]
    if not amqtt_installed():
        raise PeerUnavailable(MosquittoPeer.program, MosquittoPeer.package, "MQTT broker")
    return EmbeddedMqttPeer(pki=pki, port=options.get("port"))  # type: ignore[arg-type]


def https_peer(*, pki: LabPki | None = None, **options: object) -> NginxPeer | EmbeddedHttpsPeer:
    """nginx if installed, else the Python ``ssl`` server; same ``/`` and ``/api``."""
    if find_program(NginxPeer.program):
        return NginxPeer(pki=pki, **options)  # type: ignore[arg-type]
    return EmbeddedHttpsPeer(pki=pki, port=options.get("port"))  # type: ignore[arg-type]


def peer_status() -> list[PeerStatus]:
    """What each protocol would run on this machine, without starting anything."""
    rows = []
    for protocol, real, fallback in (
        ("MQTT/TLS", MosquittoPeer, EmbeddedMqttPeer if amqtt_installed() else None),
        ("HTTPS", NginxPeer, EmbeddedHttpsPeer),
        ("CoAP/DTLS", CoapServerPeer, None),
        ("TLS-VPN", OpenVpnServerPeer, None),
    ):
        chosen: type[Peer] | None = real if find_program(real.program) else fallback
        rows.append(
            PeerStatus(
                protocol=protocol,
                peer=chosen.__name__ if chosen else "",
                embedded=chosen is not None and chosen.embedded,
                available=chosen is not None,
                install=f"{real.installer} {real.package}",
            )
        )
    return rows
