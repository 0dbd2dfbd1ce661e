"""HTTPS peers (nginx, embedded Python ssl): client certificates, keep-alive, resumption, and
the ES256 JWT check on /api."""

from __future__ import annotations

import datetime
import http.client
import ssl

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.peers import EmbeddedHttpsPeer, LabPki, NginxPeer
from drivers.peers.nginx import API_BODY, ROOT_BODY
from tests.peers.conftest import assert_rejected_quickly, client_context, tls_exchange

SERVERS = [NginxPeer, EmbeddedHttpsPeer]
GET_ROOT = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _connection(server, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(server.host, server.port, context=context, timeout=5)


def _get(conn: http.client.HTTPSConnection, path: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read().decode()


@pytest.mark.parametrize("cls", SERVERS)
def test_serves_root_to_a_lab_client_with_keep_alive(cls, pki: LabPki) -> None:
    with cls() as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        conn = _connection(server, client_context(pki.software_client(), server.ca_path))
        for _ in range(5):  # one TLS connection, many requests
            status, headers, body = _get(conn, "/")
            assert (status, body) == (200, ROOT_BODY)
            assert headers.get("Connection", "keep-alive").lower() != "close"
        sock = conn.sock
        _get(conn, "/")
        assert conn.sock is sock, "the server closed the keep-alive connection"
        conn.close()


@pytest.mark.parametrize("cls", SERVERS)
@pytest.mark.parametrize("case", ["none", "expired", "foreign"])
def test_refuses_bad_client_certificates_quickly(cls, case: str, pki: LabPki) -> None:
    cred = {"none": None, "expired": pki.expired_client(), "foreign": pki.foreign_client()}[case]
    with cls() as server:
        outcome = tls_exchange(server.port, client_context(cred, server.ca_path), GET_ROOT)
        if outcome.data is not None:
            # nginx finishes the TLS 1.3 handshake and answers 400 "No required SSL
            # certificate" / "The SSL certificate error": a refusal at the HTTP layer.
            assert cls is NginxPeer
            assert outcome.data.startswith(b"HTTP/1.1 400"), outcome.data[:80]
            assert b"SSL certificate" in outcome.data
            assert outcome.seconds < 3
        else:
            assert_rejected_quickly(outcome)
        assert server.running


@pytest.mark.parametrize("cls", SERVERS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(cls, version, pki: LabPki) -> None:
    context = client_context(pki.software_client(), pki.ca_path)
    context.minimum_version = context.maximum_version = version
    with cls() as server:
        first = tls_exchange(server.port, context, GET_ROOT)
        assert first.data is not None and first.data.startswith(b"HTTP/1.1 200")
        import socket

        session = None
        for attempt in range(2):
            with (
                socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
            ):
                tls.sendall(GET_ROOT)
                assert tls.recv(4096).startswith(b"HTTP/1.1 200")
                if attempt:
                    assert tls.session_reused
                session = tls.session


def _jwt(key: ec.EllipticCurvePrivateKey, kid: str | None, seconds: int, sub: str = "dev") -> str:
    exp = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    headers = {"kid": kid} if kid else None
    return jwt.encode({"sub": sub, "exp": exp}, key, algorithm="ES256", headers=headers)


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = jwt.utils.base64url_decode(payload).replace(b'"dev"', b'"adm"')
    return ".".join([header, jwt.utils.base64url_encode(claims).decode(), signature])


@pytest.mark.parametrize("cls", SERVERS)
def test_api_checks_es256_jwts(cls, pki: LabPki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    stranger = ec.generate_private_key(ec.SECP256R1())
    with cls() as server:
        kid = server.register_jwt_key(key.public_key())
        conn = _connection(server, client_context(pki.software_client(), server.ca_path))

        status, headers, body = _get(conn, "/api", _jwt(key, kid, 60))
        assert (status, body, headers.get("X-Auth-Subject")) == (200, API_BODY, "dev")
        status, _, _ = _get(conn, "/api", _jwt(key, None, 60))  # no kid: every key is tried
        assert status == 200

        cases = {
            "expired": _jwt(key, kid, -60),
            "bad-signature": _jwt(stranger, None, 60),
            "unknown-key": _jwt(stranger, "0" * 64, 60),
            "tampered": _tamper(_jwt(key, kid, 60)),
            "missing": None,
            "malformed": "not-a-jwt",
        }
        for case, token in cases.items():
            status, headers, _ = _get(conn, "/api", token)
            reason = headers.get("X-Auth-Reason", "")
            assert status == 401, case
            expected = "bad-signature" if case == "tampered" else case
            assert reason.startswith(expected), (case, reason)
        # The same connection keeps working after refusals.
        assert _get(conn, "/api", _jwt(key, kid, 60))[0] == 200


def test_jwt_key_registered_while_running_is_picked_up(pki: LabPki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with NginxPeer() as server:
        conn = _connection(server, client_context(pki.software_client(), server.ca_path))
        token = _jwt(key, None, 60)
        assert _get(conn, "/api", token)[0] == 401
        server.register_jwt_key(key.public_key())
        assert _get(conn, "/api", token)[0] == 200
