"""Every protocol end to end against its real peer, with the key in a software token, a
SoftHSM2 token and the emulated IoT SAFE card; signature counts; and the bad inputs."""

from __future__ import annotations

import os
import signal

import pytest

from drivers.bench.store import ResultsStore
from drivers.cards.atr import EMULATOR_ATR
from drivers.cards.emulator import INSTANT, IoTSafeApplet, provision_lab_card
from drivers.cards.vpcd import VirtualCard
from drivers.errors import KeyUsageError, SafeLabError
from drivers.peers.coap import CoapServerPeer
from drivers.peers.errors import PeerUnavailable
from drivers.peers.mosquitto import MosquittoPeer
from drivers.peers.nginx import NginxPeer
from drivers.peers.openvpn import OpenVpnServerPeer
from drivers.peers.pki import LabPki
from drivers.protocols.base import Condition, run_protocol
from drivers.protocols.experiment import make_client, run_experiment
from drivers.protocols.https import HttpsClient
from drivers.protocols.mqtt import MqttTlsClient, ProtocolError
from drivers.tls.signer import TokenSigner
from drivers.tokens.base import Pin
from drivers.tokens.registry import open_token

from ..cards.conftest import connect_reader
from ..conftest import SoftHsm

PEERS = {
    "mqtt": MosquittoPeer,
    "https": NginxPeer,
    "jwt": NginxPeer,
    "coap": CoapServerPeer,
    "vpn": OpenVpnServerPeer,
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def peers(pki: LabPki):
    started = {}
    try:
        for protocol, peer_class in PEERS.items():
            if peer_class not in {type(p) for p in started.values()}:
                started[protocol] = peer_class(pki=pki).start()
            else:
                started[protocol] = next(p for p in started.values() if type(p) is peer_class)
        yield started
    finally:
        for peer in set(started.values()):
            peer.stop()


def token_for(kind: str, softhsm: SoftHsm):
    if kind == "software":
        return open_token("software:p256"), None
    if kind == "softhsm":
        return open_token(softhsm.uri("dev")), Pin(softhsm.pin)
    return open_token("iotsafe:emulated;profile=discrete-se;speed=0.02"), None


@pytest.mark.parametrize("kind", ["software", "softhsm", "card"])
@pytest.mark.parametrize("protocol", ["mqtt", "https", "coap", "jwt", "vpn"])
def test_every_protocol_with_every_token(
    protocol: str, kind: str, peers, pki: LabPki, softhsm: SoftHsm
) -> None:
    token, pin = token_for(kind, softhsm)
    n = 1 if protocol == "vpn" else 3
    result = run_experiment(
        protocol,
        token,
        Condition(),
        ResultsStore(),
        n=n,
        warmup=1 if protocol == "jwt" else 0,  # the JWT connection handshake is warm-up
        pin=pin,
        pki=pki,
        peer=peers[protocol],
    )
    assert result.status == "complete" and result.stats.count == n
    # One token signature per full handshake (JWT: per fresh JWT; VPN: as OpenVPN asks).
    if protocol == "vpn":
        assert all(count >= 1 for count in result.n_sign)
    else:
        assert result.n_sign == [1] * n
    phases = result.stats.phases
    assert phases["sign"].mean_ms > 0 and set(phases) >= {"handshake", "ready"}


@pytest.mark.parametrize("protocol", ["mqtt", "https"])
def test_resumed_handshakes_make_no_signature(protocol: str, peers, pki: LabPki) -> None:
    token = open_token("iotsafe:emulated;profile=discrete-se;speed=0.02")
    result = run_experiment(
        protocol,
        token,
        Condition(resume=True),
        ResultsStore(),
        n=4,
        warmup=1,
        pki=pki,
        peer=peers[protocol],
    )
    assert result.n_sign == [0, 0, 0, 0]
    assert result.resumed == 4


def test_keep_alive_and_jwt_cache_skip_signatures(peers, pki: LabPki) -> None:
    token = open_token("software:p256")
    kept = run_experiment(
        "https",
        token,
        Condition(keep_alive=True),
        ResultsStore(),
        n=4,
        warmup=1,
        pki=pki,
        peer=peers["https"],
    )
    assert kept.n_sign == [0, 0, 0, 0]
    cached = run_experiment(
        "jwt",
        token,
        Condition(jwt_ttl_s=300),
        ResultsStore(),
        n=4,
        warmup=1,
        pki=pki,
        peer=peers["jwt"],
    )
    assert cached.n_sign == [0, 0, 0, 0]


def test_fresh_token_session_inside_handshakes(peers, pki: LabPki, softhsm: SoftHsm) -> None:
    token = open_token(softhsm.uri("dev"))
    result = run_experiment(
        "https",
        token,
        Condition(reuse_token_session=False),
        ResultsStore(),
        n=2,
        warmup=0,
        pin=Pin(softhsm.pin),
        pki=pki,
        peer=peers["https"],
    )
    assert result.n_sign == [1, 1]


@pytest.mark.parametrize("which", ["expired", "foreign"])
@pytest.mark.parametrize("protocol", ["mqtt", "https"])
def test_untrusted_or_expired_certificate_is_refused_quickly(
    protocol: str, which: str, peers, pki: LabPki
) -> None:
    credentials = pki.expired_client() if which == "expired" else pki.foreign_client()
    token = open_token(f"software:key={credentials.key_path}")
    signer = TokenSigner(token)
    peer = peers[protocol]
    client_class = MqttTlsClient if protocol == "mqtt" else HttpsClient
    client = client_class(
        signer, Condition(), peer.host, peer.port, credentials.cert_path, pki.ca_path, timeout_s=5
    )
    with pytest.raises(ProtocolError) as info:
        run_protocol(client, ResultsStore(), n=2, warmup=0)
    assert "certificate" in info.value.one_line()


def test_certificate_for_another_key_is_refused_before_connecting(pki: LabPki) -> None:
    other = pki.software_client("someone-else")
    signer = TokenSigner(open_token("software:p256"))
    with pytest.raises(KeyUsageError, match="not for the token's key"):
        HttpsClient(signer, Condition(), "127.0.0.1", 1, other.cert_path, pki.ca_path)


def test_key_that_cannot_sign_inside_a_handshake(peers, pki: LabPki, softhsm: SoftHsm) -> None:
    token = open_token(softhsm.uri("nosign"))
    signer = TokenSigner(token, pin=Pin(softhsm.pin))
    client = make_client("https", signer, Condition(), peers["https"], pki)
    with pytest.raises(KeyUsageError, match="not allowed to sign"):
        run_protocol(client, ResultsStore(), n=1, warmup=0)


def test_card_pulled_during_handshakes_keeps_the_run(pcscd: str, peers, pki: LabPki) -> None:
    applet = IoTSafeApplet(provision_lab_card(), INSTANT, speed=0)
    card = VirtualCard(applet.process_apdu, EMULATOR_ATR, on_reset=applet.reset).insert()
    try:
        connect_reader(pcscd).close()
        token = open_token(f"iotsafe:pcsc;reader={pcscd}")
        store = ResultsStore()
        signer = TokenSigner(token)
        client = make_client("mqtt", signer, Condition(), peers["mqtt"], pki)

        def pull(index: int, _trial: object) -> None:
            if index == 1:
                card.remove()

        with pytest.raises(SafeLabError, match=r"stopped answering|removed"):
            run_protocol(client, store, n=10, warmup=0, on_trial=pull)
        record = store.list_runs()[0]
        assert record.status == "incomplete" and record.n_samples == 2
        signer.close()
    finally:
        card.remove()


def test_peer_killed_mid_run_keeps_the_run(pki: LabPki) -> None:
    store = ResultsStore()
    with MosquittoPeer(pki=pki) as broker:
        signer = TokenSigner(open_token("software:p256"))
        client = make_client("mqtt", signer, Condition(), broker, pki)

        def kill(index: int, _trial: object) -> None:
            if index == 1:
                os.killpg(broker.pid, signal.SIGKILL)

        with pytest.raises(ProtocolError, match=r"failed|no CONNACK"):
            run_protocol(client, store, n=10, warmup=0, on_trial=kill)
    record = store.list_runs()[0]
    assert record.status == "incomplete" and record.n_samples == 2


def test_missing_peer_binary_names_the_package(pki: LabPki) -> None:
    with pytest.raises(PeerUnavailable) as info:
        run_experiment(
            "mqtt",
            open_token("software:p256"),
            Condition(),
            ResultsStore(),
            n=1,
            pki=pki,
            peer=MosquittoPeer(pki=pki, binary="mosquitto-not-here"),
        )
    assert "apt-get install mosquitto" in info.value.fix


def test_coap_psk_remedy_needs_no_signature(pki: LabPki) -> None:
    result = run_experiment(
        "coap-psk", open_token("software:p256"), Condition(), ResultsStore(), n=3, warmup=1, pki=pki
    )
    assert result.status == "complete" and result.n_sign == [0, 0, 0]


def test_coap_psk_with_a_wrong_key_times_out_clearly(pki: LabPki) -> None:
    from drivers.protocols.coap_psk import CoapPskClient

    with CoapServerPeer(pki=pki, psk=b"the-right-key") as peer:
        client = CoapPskClient(
            TokenSigner(open_token("software:p256")),
            Condition(),
            peer.host,
            peer.port,
            b"a-wrong-key",
            timeout_s=2,
        )
        with pytest.raises(ProtocolError, match="no CoAP answer over DTLS-PSK") as info:
            run_protocol(client, ResultsStore(), n=1, warmup=0)
        assert "wrong pre-shared key" in info.value.fix


def test_jwt_signed_with_hashing_on_the_card(peers, pki: LabPki) -> None:
    token = open_token("iotsafe:emulated;profile=discrete-se;speed=0.02")
    result = run_experiment(
        "jwt",
        token,
        Condition(jwt_hash_on_token=True),
        ResultsStore(),
        n=2,
        warmup=1,
        pki=pki,
        peer=peers["jwt"],
    )
    assert result.n_sign == [1, 1]
    names = {entry.name for entry in token.last_trace(40)}
    assert "COMPUTE SIGNATURE UPDATE" in names
    full_text = [e for e in token.last_trace(40) if e.name == "COMPUTE SIGNATURE INIT"]
    assert full_text and "full" in full_text[-1].detail.lower()
