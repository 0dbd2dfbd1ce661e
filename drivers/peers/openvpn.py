"""OpenVPN 2.6 as the TLS-VPN peer, without root: point-to-point TLS with ``dev null``.

``mode server`` needs a tun/tap device (root), so the server is a p2p ``tls-server`` with
``dev null``, ``ifconfig-noexec`` and ``route-noexec``; one client at a time, which is what a
trial needs. OpenVPN turns TLS session resumption off in its code (``SSL_OP_NO_TICKET``,
session cache off): every handshake and renegotiation is full; state it, never fake it.

:func:`write_client_config` writes the matching client: with a software key file, or with
``management-external-key`` so that a management client answers ``>PK_SIGN`` with the
token's DER signature (the TLS bridge's job, not this module's).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from drivers.peers.base import Peer
from drivers.peers.pki import Credentials, LabPki
from drivers.peers.ports import LOOPBACK, free_port

CONNECTED = "Initialization Sequence Completed"
"""What OpenVPN logs when the tunnel is up: the paper's "established" point for TLS-VPN."""


class OpenVpnServerPeer(Peer):
    """``openvpn --config server.conf`` as a p2p TLS server on ``.port`` (UDP or TCP).

    ``float`` lets a new client (new source port) replace the previous one over UDP; over TCP
    OpenVPN restarts and listens again after a client leaves, so trials can repeat against one
    server (after a TCP client leaves, OpenVPN pauses 1 s before it listens again).
    ``reneg_sec`` > 0 forces periodic renegotiation (each one a full handshake).

    Timing note: OpenVPN checks "connection established" on a 1-second timer, so
    :data:`CONNECTED` appears up to ~1 s after the TLS handshake ends; ``Peer Connection
    Initiated`` is logged right when the handshake completes.
    """

    protocol = "TLS-VPN server (OpenVPN)"
    program = "openvpn"
    package = "openvpn"
    fatal_log = r"(?m)^.*(Options error|Exiting due to fatal error).*$"

    def __init__(
        self,
        *,
        port: int | None = None,
        proto: str = "udp",
        reneg_sec: int = 0,
        verb: int = 3,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        if proto not in ("udp", "tcp"):
            raise ValueError(f"proto must be 'udp' or 'tcp', not {proto!r}")
        self.transports = (proto,)
        super().__init__(port=port, pki=pki, binary=binary, keep_dir=keep_dir)
        self.proto = proto
        self.reneg_sec = reneg_sec
        self.verb = verb

    def _prepare(self, program: str, workdir: Path) -> list[str]:
        lines = [
            "tls-server",
            "dev null",
            "ifconfig-noexec",
            "route-noexec",
            f"proto {'udp4' if self.proto == 'udp' else 'tcp4-server'}",
            f"local {self.host}",
            f"lport {self.port}",
            f"ca {self.ca_path}",
            f"cert {self.cert_path}",
            f"key {self.key_path}",
            "dh none",
            "remote-cert-tls client",
            "tls-version-min 1.2",
            f"reneg-sec {self.reneg_sec}",
            f"verb {self.verb}",
            "ping 10",
            "ping-restart 60",
        ]
        if self.proto == "udp":
            lines.append("float")
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")
        conf = workdir / "server.conf"
        conf.write_text("\n".join(lines) + "\n")
        return [program, "--config", str(conf), "--cd", str(workdir)]

    def _healthy(self) -> bool:
        # Log markers only: a TCP probe would count as a client, and its reset makes OpenVPN
        # restart with a 1 s pause, which the first real client would then wait through.
        log = self.log_text()
        if self.proto == "udp":
            return "link local (bound)" in log
        return "Listening for incoming TCP connection" in log


@dataclass(frozen=True)
class OpenVpnClientConfig:
    """A client config file and, for the external-key variant, its management port."""

    path: Path
    management_port: int | None
    """``None`` for a software key file; else OpenVPN listens for the management client
    here and holds (``management-hold``) until it says ``hold release``."""


def write_client_config(
    directory: Path,
    server: OpenVpnServerPeer,
    client: Credentials,
    *,
    management_port: int | None = None,
    verb: int = 3,
) -> OpenVpnClientConfig:
    """Write ``client.conf`` in ``directory`` for a client of ``server``.

    If ``client.key_path`` is set (software key), the key file is used directly. If it is
    ``None`` (a token's certificate), the config uses ``management-external-key`` with
    ``management 127.0.0.1 PORT`` (a free port unless given) and ``management-hold``: the
    caller connects, sends ``version 3``, answers ``>PK_SIGN`` with ``pk-sig`` lines (DER
    ECDSA signatures), then ``hold release``.
    """
    lines = [
        "tls-client",
        "dev null",
        "ifconfig-noexec",
        "route-noexec",
        f"proto {'udp4' if server.proto == 'udp' else 'tcp4-client'}",
        f"remote {server.host} {server.port}",
        "nobind",
        f"ca {client.ca_path}",
        f"cert {client.cert_path}",
        "remote-cert-tls server",
        "tls-version-min 1.2",
        "reneg-sec 0",
        f"verb {verb}",
        "connect-retry 1 1",
        "ping 10",
        "ping-restart 60",
    ]
    port: int | None = None
    if client.key_path is not None:
        lines.append(f"key {client.key_path}")
    else:
        port = management_port or free_port()
        lines += [
            f"management {LOOPBACK} {port}",
            "management-external-key",
            "management-hold",
            "management-query-passwords",
        ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "client.conf"
    path.write_text("\n".join(lines) + "\n")
    return OpenVpnClientConfig(path, port)
