"""TLS-VPN: OpenVPN 2.6 whose client key is a token, through the management interface.

OpenVPN with ``management-external-key`` asks its management client to sign:
``>PK_SIGN:<base64 digest>,ECDSA``; the token signs the digest and the answer is
``pk-sig`` / base64 DER / ``END`` (``../shared/DESIGN.md``). Established at the paper's point:
``Initialization Sequence Completed`` (management ``>STATE:...,CONNECTED``).

Every trial starts a fresh ``openvpn`` client process: that is how the paper timed its
1262 ms software figure, and OpenVPN disables TLS session resumption, so there is no resumed
condition (said in the run's limits). Phases: ``connect`` is process start until the
management interface answers; ``handshake`` is from ``hold release`` to CONNECTED (TLS
handshake, key exchange, the token's signatures); ``ready`` is 0.

``token_certificate`` (the paper's condition for the VPN): OpenVPN's PKCS#11 mode
(``pkcs11-id``) loads the client certificate from the token every time the client starts, in
the token session it later signs in. So each trial opens the connection's token session,
finds the key and reads the certificate from the token (phase ``cert``, timed inside
``connect``: OpenVPN's start-up) before ``hold release``; the handshake's signature then logs
in and signs in that session. The lab server trusts the lab CA, so OpenVPN is still handed
the lab-issued certificate of the same key: the read is the cost, checked to be the key's.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509

from drivers.errors import SafeLabError
from drivers.peers.openvpn import OpenVpnServerPeer, write_client_config
from drivers.peers.pki import Credentials
from drivers.protocols.base import PROTOCOL_PHASES, Condition, ProtocolClient, ProtocolTrial
from drivers.protocols.mqtt import ProtocolError
from drivers.tls.signer import TokenSigner


class VpnClient(ProtocolClient):
    protocol = "vpn"
    established_at = "OpenVPN Initialization Sequence Completed"
    limits = ("OpenVPN disables TLS session resumption: every connection is a full handshake",)

    def __init__(
        self,
        signer: TokenSigner,
        condition: Condition,
        server: OpenVpnServerPeer,
        credentials: Credentials,
        *,
        timeout_s: float = 30.0,
        binary: str = "openvpn",
    ) -> None:
        super().__init__(signer, condition)
        if condition.token_certificate:
            self.phases = (*PROTOCOL_PHASES, "cert")
        if shutil.which(binary) is None:
            raise ProtocolError("the openvpn program is not installed", "apt-get install openvpn")
        self.binary = binary
        self.server = server
        self.timeout_s = timeout_s
        self.workdir = Path(tempfile.mkdtemp(prefix="safelab-vpn-client-"))
        self.config = write_client_config(self.workdir, server, credentials)
        if self.config.management_port is None:
            raise ProtocolError(
                "the client credentials carry a key file",
                "give the token's certificate (no key file) for the VPN",
            )

    def trial(self) -> ProtocolTrial:
        mark = self.signer.mark()
        start = time.perf_counter_ns()
        log = self.workdir / "client.log"
        process = subprocess.Popen(
            [self.binary, "--config", str(self.config.path), "--log", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        cert_ns = 0
        try:
            management = self._connect_management(process)
            if self.condition.token_certificate:
                cert_ns = self._certificate_from_token()
            connected = time.perf_counter_ns()
            established = self._drive(management, process, log)
        finally:
            _stop(process)
            self.signer.end_connection()
        self.signer.raise_if_failed()
        n_sign, sign_ns = self._signatures_since(mark)
        phases = {
            "connect": connected - start,
            "handshake": established - connected,
            "sign": sign_ns,
            "ready": 0,
        }
        if self.condition.token_certificate:
            phases["cert"] = cert_ns
        return ProtocolTrial(established - start, phases, n_sign, False)

    def _certificate_from_token(self) -> int:
        """OpenVPN's PKCS#11 start-up: the connection's token session opened, the key found
        and its certificate read from the token. Returns the time it took (ns)."""
        start = time.perf_counter_ns()
        der = self.signer.begin_connection(read_certificate=True)
        took = time.perf_counter_ns() - start
        if der is None:
            return took  # the token keeps no certificate it reads in a session: nothing to load
        try:
            stored = x509.load_der_x509_certificate(der).public_key()
        except ValueError:
            raise ProtocolError(
                "the certificate read from the token is not a valid X.509 certificate",
                "re-provision the token's certificate file",
            ) from None
        if stored != self.signer.token.public_key(self.signer.key_selector):
            raise ProtocolError(
                "the certificate on the token is not the signing key's",
                "provision the key's own certificate on the token",
            )
        return took

    def _connect_management(self, process: subprocess.Popen[bytes]) -> socket.socket:
        assert self.config.management_port is not None
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ProtocolError(
                    f"openvpn exited ({process.returncode}) before its management interface opened",
                    "see the client log; check the config",
                )
            try:
                return socket.create_connection(
                    ("127.0.0.1", self.config.management_port), timeout=self.timeout_s
                )
            except OSError:
                time.sleep(0.005)
        raise ProtocolError(
            "openvpn's management interface never opened", "check that openvpn 2.6 is installed"
        )

    def _drive(self, management: socket.socket, process: subprocess.Popen[bytes], log: Path) -> int:
        """Answer PK_SIGN until CONNECTED; returns the time CONNECTED was seen."""
        management.sendall(b"version 3\nstate on\nhold release\n")
        deadline = time.monotonic() + self.timeout_s
        management.settimeout(0.5)
        pending = b""
        while time.monotonic() < deadline:
            if b"\n" not in pending:
                try:
                    chunk = management.recv(65536)
                except TimeoutError:
                    chunk = None
                if chunk == b"" or (chunk is None and process.poll() is not None):
                    raise ProtocolError(
                        f"openvpn exited ({process.poll()}) during the handshake",
                        f"client log: {_tail(log)}",
                    )
                pending += chunk or b""
                continue
            raw, pending = pending.split(b"\n", 1)
            line = raw.decode(errors="replace").strip()
            if line.startswith(">PK_SIGN:"):
                self._answer(management, line)
            elif line.startswith(">STATE:") and ",CONNECTED," in line:
                return time.perf_counter_ns()
            elif line.startswith(">FATAL:"):
                raise ProtocolError(f"openvpn failed: {line[7:]}", f"client log: {_tail(log)}")
        raise ProtocolError(
            f"the VPN was not up within {self.timeout_s:g} s",
            f"the server may refuse the certificate; client log: {_tail(log)}",
        )

    def _answer(self, management: socket.socket, line: str) -> None:
        data, _, algorithm = line[len(">PK_SIGN:") :].partition(",")
        digest = base64.b64decode(data)
        der = self.signer.sign_for_openssl(digest)
        if der is None:
            management.sendall(b"pk-sig\nEND\n")  # tells OpenVPN the signing failed
            error = self.signer.last_error
            raise (
                error
                if isinstance(error, SafeLabError)
                else ProtocolError(
                    f"the token failed to sign for OpenVPN ({error!r})", "check the token"
                )
            )
        encoded = base64.b64encode(der).decode()
        lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
        management.sendall(("pk-sig\n" + "\n".join(lines) + "\nEND\n").encode())
        del algorithm

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
