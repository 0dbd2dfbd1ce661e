"""Mosquitto 2 as the MQTT-over-TLS peer, client certificates required.

Resumption: Mosquitto sets a session-id context per listener, so TLS 1.2 session IDs and
TLS 1.3 tickets work with client certificates; it has no option to turn them off, so
resumption is toggled from the client side.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from drivers.peers.base import Peer
from drivers.peers.pki import LabPki
from drivers.peers.ports import free_port, require_free


class MosquittoPeer(Peer):
    """``mosquitto -c conf`` with a TLS listener on ``.port`` that requires a lab-CA client
    certificate, and optionally a plain listener on ``.plain_port``.

    ``use_identity_as_username``: the certificate's CN becomes the MQTT username, so the
    broker needs no password file (the paper's setting).
    """

    protocol = "MQTT broker (Mosquitto)"
    version_arguments = ("-h",)
    program = "mosquitto"
    package = "mosquitto"

    def __init__(
        self,
        *,
        port: int | None = None,
        plain: bool = False,
        plain_port: int | None = None,
        use_identity_as_username: bool = True,
        tls_version: str | None = None,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(port=port, pki=pki, binary=binary, keep_dir=keep_dir)
        self.plain = plain or plain_port is not None
        self.requested_plain_port = plain_port
        self.plain_port = 0
        self.use_identity_as_username = use_identity_as_username
        self.tls_version = tls_version
        """Minimum TLS version (``tlsv1.2`` / ``tlsv1.3``); Mosquitto's default when None."""

    def _prepare(self, program: str, workdir: Path) -> list[str]:
        lines = [
            "per_listener_settings true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if os.geteuid() == 0:
            # As root Mosquitto switches to user "mosquitto", which cannot read our 0600
            # keys in a root-only directory; stay the current user instead.
            lines.append(f"user {getpass.getuser()}")
        lines += [
            "",
            f"listener {self.port} {self.host}",
            f"cafile {self.ca_path}",
            f"certfile {self.cert_path}",
            f"keyfile {self.key_path}",
            "require_certificate true",
        ]
        if self.use_identity_as_username:
            lines.append("use_identity_as_username true")
        else:
            lines.append("allow_anonymous true")
        if self.tls_version:
            lines.append(f"tls_version {self.tls_version}")
        if self.plain:
            if self.requested_plain_port is None:
                self.plain_port = free_port()
                while self.plain_port == self.port:
                    self.plain_port = free_port()
            else:
                require_free(self.requested_plain_port)
                self.plain_port = self.requested_plain_port
            lines += ["", f"listener {self.plain_port} {self.host}", "allow_anonymous true"]
        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return [program, "-c", str(conf)]

    def _healthy(self) -> bool:
        # Mosquitto opens its listeners before it logs "running"; a TCP probe would only add
        # a failed-handshake line to the log that a user might take for a real rejection.
        return "mosquitto version" in self.log_text() and " running" in self.log_text()
