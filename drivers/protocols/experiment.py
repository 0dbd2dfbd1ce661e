"""One protocol experiment from start to end, and the rows of the paper's Table 6.

:func:`run_experiment` starts the peer (the real server, or the embedded one where allowed),
issues the token's client certificate from the lab CA, runs the trials and always stops the
peer and closes the token session, also on error or Ctrl-C. Which conditions a protocol
accepts is :mod:`drivers.protocols.rules`' call, checked here before anything starts.
Front ends do not call this module: they start runs through :mod:`drivers.runs`
(``ProtocolRun``, ``Table6Run``), which builds on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from drivers.bench.store import ResultsStore
from drivers.peers.base import Peer, PeerIdentity
from drivers.peers.coap import CoapServerPeer
from drivers.peers.openvpn import OpenVpnServerPeer
from drivers.peers.pki import LabPki
from drivers.peers.select import https_peer, mqtt_peer
from drivers.protocols.base import Condition, ProtocolClient, ProtocolResult, ProtocolTrial
from drivers.protocols.base import run_protocol as _run
from drivers.protocols.coap import CoapDtlsClient
from drivers.protocols.coap_psk import CoapPskClient
from drivers.protocols.https import HttpsClient
from drivers.protocols.jwt_client import JwtHttpsClient
from drivers.protocols.mqtt import MqttTlsClient
from drivers.protocols.rules import PROTOCOLS, RESUMABLE, check
from drivers.protocols.vpn import VpnClient
from drivers.runs.protocol import Table6Row, table6_row
from drivers.tls.signer import TokenSigner
from drivers.tokens.base import Pin, Token

__all__ = ["PROTOCOLS", "RESUMABLE", "Table6Row", "peer_for", "run_experiment", "table6_row"]

LAB_PSK = b"safelab-lab-psk"
"""The pre-shared key of the CoAP DTLS-PSK peer and client (a lab value, not a secret)."""


def peer_for(protocol: str, pki: LabPki) -> Peer:
    if protocol == "mqtt":
        return mqtt_peer(pki=pki)
    if protocol in ("https", "jwt"):
        return https_peer(pki=pki)
    if protocol == "coap":
        return CoapServerPeer(pki=pki)
    if protocol == "coap-psk":
        return CoapServerPeer(pki=pki, psk=LAB_PSK)
    if protocol == "vpn":
        return OpenVpnServerPeer(pki=pki)
    raise ValueError(f"unknown protocol {protocol!r}")


def make_client(
    protocol: str, signer: TokenSigner, condition: Condition, peer: Peer, pki: LabPki
) -> ProtocolClient:
    if protocol == "coap-psk":
        return CoapPskClient(signer, condition, peer.host, peer.port, LAB_PSK)
    credentials = pki.client_cert_for_token(signer.token, selector=signer.key_selector)
    cert, ca = credentials.cert_path, pki.ca_path
    if protocol == "mqtt":
        return MqttTlsClient(
            signer, condition, peer.host, peer.port, cert, ca, peer_log=lambda: peer.log_tail(2)
        )
    if protocol == "https":
        return HttpsClient(signer, condition, peer.host, peer.port, cert, ca)
    if protocol == "jwt":
        kid = peer.register_jwt_key(signer.token.public_key(signer.key_selector))  # type: ignore[attr-defined]
        return JwtHttpsClient(signer, condition, peer.host, peer.port, cert, ca, kid)
    if protocol == "coap":
        return CoapDtlsClient(signer, condition, peer.host, peer.port, cert, ca)
    if protocol == "vpn":
        return VpnClient(signer, condition, peer, credentials)  # type: ignore[arg-type]
    raise ValueError(f"unknown protocol {protocol!r}")


class PeerBehindLink:
    """A running peer seen through an emulated link: the same peer (identity, logs, JWT key
    registry, VPN settings) at the link's address, so every client connects through the link
    without knowing it is there."""

    def __init__(self, peer: Peer, address: tuple[str, int]) -> None:
        self._peer = peer
        self.host, self.port = address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._peer, name)


def link_transport(protocol: str, peer: Peer) -> str:
    """The transport an emulated link carries for ``protocol``: UDP for CoAP/DTLS and
    OpenVPN over UDP, TCP otherwise."""
    if protocol in ("coap", "coap-psk"):
        return "udp"
    if protocol == "vpn":
        return str(getattr(peer, "proto", "udp"))
    return "tcp"


@contextlib.contextmanager
def protocol_session(
    protocol: str,
    token: Token,
    condition: Condition,
    pki: LabPki,
    *,
    pin: Pin | None = None,
    peer: Peer | None = None,
    link: str | None = None,
    link_mode: str = "proxy",
    link_info: dict[str, Any] | None = None,
) -> Iterator[tuple[ProtocolClient, Peer]]:
    """Peer (started here unless given), signer and client; everything released after.

    ``link`` (``--link`` text) puts an emulated link (:mod:`drivers.links`) between the client
    and the peer; the client is made and every trial runs inside the link's client context
    (kernel mode: the client network namespace). ``link_info`` receives the link's metadata
    (spec, mode, the "modelled" loss label, counters) when the session ends.
    """
    running = peer or peer_for(protocol, pki)
    own_peer = not running.running  # a peer given but not started is started (and stopped) here
    signer = TokenSigner(token, pin=pin, reuse_session=condition.reuse_token_session)
    client: ProtocolClient | None = None
    try:
        with contextlib.ExitStack() as stack:
            if own_peer:
                running.start()
            target: Peer = running
            endpoint = None
            if link:
                from drivers.links import open_link

                endpoint = stack.enter_context(
                    open_link(
                        link,
                        link_transport(protocol, running),  # type: ignore[arg-type]
                        target=(running.host, running.port),
                        mode=link_mode,  # type: ignore[arg-type]
                    )
                )
                stack.enter_context(endpoint.client_context())
                target = PeerBehindLink(running, endpoint.address)  # type: ignore[assignment]
                if link_info is not None:
                    link_info.update(endpoint.metadata())
            client = make_client(protocol, signer, condition, target, pki)
            try:
                yield client, running
            finally:
                if endpoint is not None and link_info is not None:
                    link_info.update(endpoint.metadata())
    finally:
        if client is not None:
            client.close()
        signer.close()
        if own_peer:
            running.stop()


def run_experiment(
    protocol: str,
    token: Token,
    condition: Condition,
    store: ResultsStore,
    *,
    n: int = 30,
    warmup: int = 1,
    pin: Pin | None = None,
    pki: LabPki | None = None,
    peer: Peer | None = None,
    stop: Callable[[], bool] | None = None,
    on_trial: Callable[[int, ProtocolTrial], None] | None = None,
    on_peer: Callable[[PeerIdentity], None] | None = None,
    on_created: Callable[[int], None] | None = None,
    link: str | None = None,
    link_mode: str = "proxy",
) -> ProtocolResult:
    """Run ``protocol`` on ``token`` under ``condition``; the run is stored.

    ``on_peer`` hears which peer answered (before the trials), ``on_created`` the run's id.
    ``link``: an emulated network link between client and peer, recorded in the run.
    """
    check(protocol, condition)
    pki = pki or LabPki()
    link_info: dict[str, Any] = {}
    session = protocol_session(
        protocol,
        token,
        condition,
        pki,
        pin=pin,
        peer=peer,
        link=link,
        link_mode=link_mode,
        link_info=link_info,
    )
    with session as (client, running):
        identity = running.identity
        if on_peer is not None:
            on_peer(identity)
        result = _run(
            client,
            store,
            n=n,
            warmup=warmup,
            peer=identity,
            stop=stop,
            on_trial=on_trial,
            on_created=on_created,
            extra={"link": dict(link_info)} if link else None,
        )
    if link:
        store.add_extra(result.run_id, {"link": dict(link_info)})  # final counters
    return result
