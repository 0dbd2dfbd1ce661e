"""MQTT brokers (Mosquitto and the embedded amqtt): certificate required, bad ones refused."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from drivers.peers import Credentials, EmbeddedMqttPeer, LabPki, MosquittoPeer
from drivers.tokens.registry import open_token
from tests.peers.conftest import assert_rejected_quickly, client_context, tls_exchange

# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "t".
CONNECT = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01t"
CONNACK_OK = b"\x20\x02\x00\x00"

BROKERS = [MosquittoPeer, EmbeddedMqttPeer]


def paho_connect(port: int, cred: Credentials, key_path: str | None = None) -> int:
    """Connect with paho-mqtt (the experiments' client); returns the CONNACK reason code."""
    done = threading.Event()
    result: dict[str, int] = {}

    def on_connect(client, userdata, flags, reason, properties) -> None:
        result["rc"] = reason.value if hasattr(reason, "value") else int(reason)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="safelab-test")
    client.on_connect = on_connect
    client.tls_set(
        ca_certs=str(cred.ca_path),
        certfile=str(cred.cert_path),
        keyfile=key_path or str(cred.key_path),
    )
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert done.wait(5), "no CONNACK within 5 s"
    finally:
        client.disconnect()
        client.loop_stop()
    return result["rc"]


@pytest.mark.parametrize("cls", BROKERS)
def test_accepts_a_lab_client_certificate(cls, pki: LabPki) -> None:
    with cls() as broker:
        assert paho_connect(broker.port, pki.software_client("alice")) == 0
        outcome = tls_exchange(
            broker.port, client_context(pki.software_client(), broker.ca_path), CONNECT
        )
        assert outcome.data == CONNACK_OK


def test_token_certificate_from_the_lab_ca_is_accepted(pki: LabPki) -> None:
    """The certificate issued for a token's own public key works (software token: its key
    file stands in for the bridge, which is another module's job)."""
    with open_token("software:secp256r1") as token, MosquittoPeer() as broker:
        cred = pki.client_cert_for_token(token, "token-client")
        assert paho_connect(broker.port, cred, key_path=str(token.key_file)) == 0
        assert "u'token-client'" in broker.log_text()  # use_identity_as_username


@pytest.mark.parametrize("cls", BROKERS)
@pytest.mark.parametrize("case", ["none", "expired", "foreign"])
def test_refuses_bad_client_certificates_quickly(cls, case: str, pki: LabPki) -> None:
    cred = {"none": None, "expired": pki.expired_client(), "foreign": pki.foreign_client()}[case]
    with cls() as broker:
        outcome = tls_exchange(broker.port, client_context(cred, broker.ca_path), CONNECT)
        assert_rejected_quickly(outcome)
        assert broker.running  # a refusal never takes the broker down


def test_mosquitto_logs_why_it_refused(pki: LabPki) -> None:
    with MosquittoPeer() as broker:
        tls_exchange(broker.port, client_context(pki.foreign_client(), broker.ca_path), CONNECT)
        broker.wait_for_log("certificate verify failed", timeout=3)
        tls_exchange(broker.port, client_context(None, broker.ca_path), CONNECT)
        broker.wait_for_log("peer did not return a certificate", timeout=3)


def test_mosquitto_plain_listener_and_no_identity(pki: LabPki) -> None:
    import socket

    with MosquittoPeer(plain=True, use_identity_as_username=False) as broker:
        assert broker.plain_port and broker.plain_port != broker.port
        with socket.create_connection(("127.0.0.1", broker.plain_port), timeout=3) as sock:
            sock.sendall(CONNECT)
            assert sock.recv(4) == CONNACK_OK
        assert paho_connect(broker.port, pki.software_client()) == 0


@pytest.mark.parametrize("cls", BROKERS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption_works_with_client_certificates(cls, version, pki: LabPki) -> None:
    context = client_context(pki.software_client(), pki.ca_path)
    context.minimum_version = context.maximum_version = version
    with cls() as broker:
        first = _connect_keep_session(broker.port, context, None)
        assert first is not None
        second = _connect_keep_session(broker.port, context, first)
        assert second is not None


def _connect_keep_session(port: int, context: ssl.SSLContext, session):
    import socket

    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
    ):
        tls.sendall(CONNECT)
        assert tls.recv(4) == CONNACK_OK
        if session is not None:
            assert tls.session_reused, "the broker did not resume the session"
        return tls.session
