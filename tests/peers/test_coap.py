"""libcoap's coap-server-openssl: DTLS with a required lab-CA client certificate, and PSK.

The client side is libcoap's own ``coap-client-openssl`` (Debian libcoap3-bin) with a software
key file, so these tests check the peer, not SAFE Lab's DTLS client.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from drivers.peers import CoapServerPeer, Credentials, LabPki
from drivers.peers.coap import coap_ping

BANNER = "This is a test server made with libcoap"


def coap_get(url: str, *args: str, wait_s: int = 3) -> tuple[str, float]:
    """GET ``url`` with coap-client-openssl; returns its output and the time it took."""
    start = time.monotonic()
    result = subprocess.run(
        ["coap-client-openssl", "-B", str(wait_s), *args, url],
        capture_output=True,
        text=True,
        timeout=wait_s + 10,
    )
    return result.stdout + result.stderr, time.monotonic() - start


def pki_args(cred: Credentials) -> list[str]:
    assert cred.key_path is not None
    return ["-c", str(cred.cert_path), "-j", str(cred.key_path), "-C", str(cred.ca_path)]


def test_answers_a_client_with_a_lab_certificate(pki: LabPki) -> None:
    with CoapServerPeer() as server:
        assert server.mode == "pki"
        assert server.url == f"coaps://127.0.0.1:{server.port}/"
        assert server.port == server.plain_port + 1
        assert coap_ping(server.host, server.plain_port)
        output, seconds = coap_get(server.url, *pki_args(pki.software_client()))
        assert BANNER in output
        assert seconds < 2


@pytest.mark.parametrize("case", ["none", "foreign"])
def test_refuses_bad_clients_quickly(case: str, pki: LabPki) -> None:
    with CoapServerPeer() as server:
        since = server.log_size()
        args = [] if case == "none" else pki_args(pki.foreign_client())
        output, seconds = coap_get(server.url, *args)
        assert BANNER not in output
        assert seconds < 2, "the refusal must come as an alert, not a timeout"
        expected = "peer did not return a certificate" if case == "none" else "unknown CA"
        server.wait_for_log(expected, timeout=2, since=since)
        assert server.running


def test_expired_client_certificate_is_accepted_by_libcoap(pki: LabPki) -> None:
    """A known limit, asserted so that it is noticed if it changes: libcoap's example server
    hard-codes allow_expired_certs = 1, with no command-line option to refuse."""
    with CoapServerPeer() as server:
        assert server.accepts_expired_client_certs
        output, _ = coap_get(server.url, *pki_args(pki.expired_client()))
        assert BANNER in output


def test_psk_variant() -> None:
    with CoapServerPeer(psk="lab-secret", hint="CoAP") as server:
        assert server.mode == "psk"
        output, _ = coap_get(server.url, "-k", "lab-secret", "-u", "sensor-1")
        assert BANNER in output
        # DTLS silently drops records it cannot authenticate: a wrong key is seen only as
        # the client's own wait (-B) running out, bounded here to 2 s.
        output, seconds = coap_get(server.url, "-k", "wrong-secret", "-u", "sensor-1", wait_s=2)
        assert BANNER not in output
        assert seconds < 5


def test_empty_psk_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be empty"), CoapServerPeer(psk=b""):
        pass
