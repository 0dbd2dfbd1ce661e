"""Real peers on loopback with a lab PKI: Mosquitto, nginx (+ JWT verifier), libcoap's
coap-server, OpenVPN, and embedded Python fallbacks (HTTPS on ``ssl``, MQTT on amqtt).

Every peer is a context manager that starts on a free 127.0.0.1 port with a generated config in
a temp dir, waits until healthy, and always stops its whole process group.
"""

from __future__ import annotations

from drivers.peers.base import Peer, find_program
from drivers.peers.coap import CoapServerPeer
from drivers.peers.embedded_https import EmbeddedHttpsPeer
from drivers.peers.embedded_mqtt import EmbeddedMqttPeer
from drivers.peers.errors import PeerError, PeerStartError, PeerUnavailable, PortInUse
from drivers.peers.mosquitto import MosquittoPeer
from drivers.peers.nginx import NginxPeer
from drivers.peers.openvpn import (
    CONNECTED,
    OpenVpnClientConfig,
    OpenVpnServerPeer,
    write_client_config,
)
from drivers.peers.pki import Credentials, LabPki, key_fingerprint
from drivers.peers.ports import free_port
from drivers.peers.select import PeerStatus, https_peer, mqtt_peer, peer_status

__all__ = [
    "CONNECTED",
    "CoapServerPeer",
    "Credentials",
    "EmbeddedHttpsPeer",
    "EmbeddedMqttPeer",
    "LabPki",
    "MosquittoPeer",
    "NginxPeer",
    "OpenVpnClientConfig",
    "OpenVpnServerPeer",
    "Peer",
    "PeerError",
    "PeerStartError",
    "PeerStatus",
    "PeerUnavailable",
    "PortInUse",
    "find_program",
    "free_port",
    "https_peer",
    "key_fingerprint",
    "mqtt_peer",
    "peer_status",
    "write_client_config",
]
