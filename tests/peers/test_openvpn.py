"""OpenVPN 2.6 point-to-point TLS server (dev null, no root) and the client configs.

Clients are real ``openvpn`` processes: one with a software key file, and one with
``management-external-key`` whose ``>PK_SIGN`` requests this test answers with the same
software key (DER ECDSA), the route the TLS bridge will take with a token.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from drivers.peers import CONNECTED, Credentials, LabPki, OpenVpnServerPeer, write_client_config


@contextmanager
def openvpn_client(config: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = config.parent / "client.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["openvpn", "--config", str(config), "--cd", str(config.parent)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_connected(process: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if CONNECTED in log.read_text(errors="replace"):
            return time.monotonic() - start
        assert process.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"no {CONNECTED!r} within {timeout} s:\n{log.read_text()}")


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_software_key_client_completes_initialization(proto: str, tmp_path: Path) -> None:
    pki = LabPki()
    with OpenVpnServerPeer(proto=proto) as server:
        for trial in range(2):  # the same server serves trial after trial
            config = write_client_config(tmp_path / f"c{trial}", server, pki.software_client())
            assert config.management_port is None
            with openvpn_client(config.path) as (process, log):
                wait_connected(process, log, timeout=15)
            server.wait_for_log(r"\[software-client\] Peer Connection Initiated", timeout=5)


@pytest.mark.parametrize("case", ["expired", "foreign"])
def test_server_refuses_bad_client_certificates_quickly(case: str, tmp_path: Path) -> None:
    pki = LabPki()
    cred = pki.expired_client() if case == "expired" else pki.foreign_client()
    reason = "certificate has expired" if case == "expired" else "unable to get local issuer"
    with OpenVpnServerPeer() as server:
        config = write_client_config(tmp_path, server, cred)
        since = server.log_size()
        with openvpn_client(config.path) as (_process, log):
            server.wait_for_log(f"VERIFY ERROR.*{reason}", timeout=3, since=since)
            assert CONNECTED not in log.read_text()
        assert server.running


def test_external_key_config_signs_through_management(tmp_path: Path) -> None:
    """The management-external-key config reaches CONNECTED when >PK_SIGN is answered."""
    pki = LabPki()
    key = ec.generate_private_key(ec.SECP256R1())
    cred = pki.client_cert_for(key.public_key(), "token-client")
    with OpenVpnServerPeer() as server:
        config = write_client_config(tmp_path, server, cred)
        text = config.path.read_text()
        assert config.management_port is not None
        for line in (
            "management-external-key",
            "management-hold",
            f"management 127.0.0.1 {config.management_port}",
        ):
            assert line in text
        assert "\nkey " not in text
        with openvpn_client(config.path) as (_process, log):
            signatures = _answer_management(config.management_port, key, log)
        assert signatures >= 1
        server.wait_for_log(r"\[token-client\] Peer Connection Initiated", timeout=5)


def _answer_management(port: int, key: ec.EllipticCurvePrivateKey, log: Path) -> int:
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            break
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    signatures = 0
    with sock, sock.makefile("rwb", buffering=0) as stream:
        stream.write(b"version 3\nstate on\nhold release\n")
        while True:
            line = stream.readline().decode().strip()
            assert line, f"management closed:\n{log.read_text()}"
            if line.startswith(">PK_SIGN:"):
                data, _, algorithm = line[len(">PK_SIGN:") :].partition(",")
                assert algorithm.startswith("ECDSA")
                digest = base64.b64decode(data)
                assert len(digest) == 32
                der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
                stream.write(b"pk-sig\n" + base64.b64encode(der) + b"\nEND\n")
                signatures += 1
            elif ",CONNECTED," in line:
                return signatures
            assert time.monotonic() < deadline + 10, log.read_text()


def test_token_certificate_has_no_key_file(tmp_path: Path) -> None:
    pki = LabPki()
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    cred: Credentials = pki.client_cert_for(public, "t")
    assert cred.key_path is None
    pem = cred.cert_path.read_bytes()
    assert b"PRIVATE KEY" not in pem
