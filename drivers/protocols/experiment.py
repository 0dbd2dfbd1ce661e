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
from dataclasses import dataclass, field

from drivers.bench.paper import TABLE6
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
from drivers.protocols.rules import PROTOCOLS, RESUMABLE, check, no_resumption_note
from drivers.protocols.vpn import VpnClient
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


@contextlib.contextmanager
def protocol_session(
    protocol: str,
    token: Token,
    condition: Condition,
    pki: LabPki,
    *,
    pin: Pin | None = None,
    peer: Peer | None = None,
) -> Iterator[tuple[ProtocolClient, Peer]]:
    """Peer (started here unless given), signer and client; everything released after."""
    running = peer or peer_for(protocol, pki)
    own_peer = not running.running  # a peer given but not started is started (and stopped) here
    signer = TokenSigner(token, pin=pin, reuse_session=condition.reuse_token_session)
    client: ProtocolClient | None = None
    try:
        if own_peer:
            running.start()
        client = make_client(protocol, signer, condition, running, pki)
        yield client, running
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
) -> ProtocolResult:
    """Run ``protocol`` on ``token`` under ``condition``; the run is stored.

    ``on_peer`` hears which peer answered (before the trials), ``on_created`` the run's id.
    """
    check(protocol, condition)
    pki = pki or LabPki()
    session = protocol_session(protocol, token, condition, pki, pin=pin, peer=peer)
    with session as (client, running):
        identity = running.identity
        if on_peer is not None:
            on_peer(identity)
        return _run(
            client,
            store,
            n=n,
            warmup=warmup,
            peer=identity,
            stop=stop,
            on_trial=on_trial,
            on_created=on_created,
        )


@dataclass
class Table6Row:
    protocol: str
    software_ms: float
    token_ms: float
    token_sign_ms: float
    """Mean time of the token's signatures inside one full handshake (what the paper says
    the difference is made of)."""
    resumed_software_ms: float | None = None
    resumed_token_ms: float | None = None
    resumed_token_signatures: int | None = None
    run_ids: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def difference_ms(self) -> float:
        return self.token_ms - self.software_ms

    def as_dict(self) -> dict[str, object]:
        paper = TABLE6.get(self.protocol)
        return {
            "protocol": self.protocol,
            "software_ms": self.software_ms,
            "token_ms": self.token_ms,
            "difference_ms": self.difference_ms,
            "token_sign_ms": self.token_sign_ms,
            "resumed_software_ms": self.resumed_software_ms,
            "resumed_token_ms": self.resumed_token_ms,
            "resumed_token_signatures": self.resumed_token_signatures,
            "paper_software_ms": paper.software_ms if paper else None,
            "paper_iot_safe_ms": paper.iot_safe_ms if paper else None,
            "paper_difference_ms": paper.difference_ms if paper else None,
            "run_ids": self.run_ids,
            "note": self.note,
        }


def table6_row(protocol: str, results: dict[tuple[str, bool], ProtocolResult]) -> Table6Row:
    """One row from the runs ``(who, resumed) -> result`` (who: ``software`` or ``token``).

    Means are compared, as the paper's Table 6 gives means.
    """
    full_token = results[("token", False)]
    row = Table6Row(
        protocol,
        results[("software", False)].stats.mean_ms,
        full_token.stats.mean_ms,
        _mean_phase(full_token, "sign"),
        run_ids=[r.run_id for r in results.values()],
    )
    if ("token", True) in results:
        row.resumed_software_ms = results[("software", True)].stats.mean_ms
        row.resumed_token_ms = results[("token", True)].stats.mean_ms
        row.resumed_token_signatures = sum(results[("token", True)].n_sign)
    else:
        row.note = no_resumption_note(protocol)
    return row


def _mean_phase(result: ProtocolResult, phase: str) -> float:
    summary = result.stats.phases.get(phase)
    return summary.mean_ms if summary else 0.0
