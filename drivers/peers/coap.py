"""libcoap's ``coap-server-openssl`` as the CoAP-over-DTLS peer.

Two modes, one class:

- PKI (default): ``-c cert -j key -C ca -R ca``, so a client certificate from the lab CA is
  required (the paper's setting).
- PSK (``psk=...``): ``-k key -h hint``, the paper's DTLS-PSK remedy; no certificates, no
  signature at all in the handshake.

libcoap listens on ``p`` for plain CoAP (UDP and TCP) and on ``p+1`` for DTLS (and TLS), so
this peer reserves two consecutive ports; ``.port`` is the DTLS one. libcoap 4.3.1 has no DTLS
session resumption: every handshake is full (state it in results, never fake it).

Resource: ``GET /`` answers libcoap's fixed server banner (a 2.05 Content); ``.path`` names it.
``-d`` lets a ``PUT`` create up to :attr:`CoapServerPeer.dynamic` resources, which is how
:meth:`CoapServerPeer.publish` puts a firmware image there (block-wise, over the plain port)
for the bulk-transfer pattern to fetch block by block (Block2) over DTLS.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from drivers.peers.base import Peer
from drivers.peers.pki import LabPki


class CoapServerPeer(Peer):
    """``coap-server-openssl`` on 127.0.0.1; DTLS on ``.port`` (``.url`` = ``coaps://...``)."""

    protocol = "CoAP/DTLS server (libcoap)"
    version_arguments = ("-h",)
    program = "coap-server-openssl"
    package = "libcoap3-bin"
    transports = ("udp", "tcp")
    port_span = 2
    fatal_log = r"(?m)^.*(CRIT|EMRG|ALRT) .*$"
    path = "/"
    accepts_expired_client_certs = True
    """libcoap's example server hard-codes ``allow_expired_certs = 1`` (examples/coap-server.c,
    no option to change it): an expired lab-CA client certificate IS accepted. Results must
    say so; the untrusted-CA and no-certificate cases are refused."""

    def __init__(
        self,
        *,
        port: int | None = None,
        psk: bytes | str | None = None,
        hint: str = "CoAP",
        verbosity: int = 4,
        dynamic: int = 4,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        """``port`` is the *base* port (plain CoAP); DTLS is ``port + 1``."""
        super().__init__(port=port, pki=pki, binary=binary, keep_dir=keep_dir)
        self.dynamic = dynamic
        self.psk = psk.encode() if isinstance(psk, str) else psk
        self.hint = hint
        self.verbosity = verbosity
        self.plain_port = 0

    @property
    def mode(self) -> str:
        return "psk" if self.psk is not None else "pki"

    @property
    def url(self) -> str:
        return f"coaps://{self.host}:{self.port}{self.path}"

    def _prepare(self, program: str, workdir: Path) -> list[str]:
        # The base reserved `port` and `port+1`; expose the DTLS one as `.port`.
        self.plain_port = self.port
        argv = [
            program,
            "-A",
            self.host,
            "-p",
            str(self.plain_port),
            "-v",
            str(self.verbosity),
        ]
        if self.dynamic:
            argv += ["-d", str(self.dynamic)]
        if self.psk is not None:
            if not self.psk:
                raise ValueError("a DTLS pre-shared key cannot be empty")
            argv += ["-k", self.psk.decode("latin-1"), "-h", self.hint]
        else:
            argv += [
                "-c",
                str(self.cert_path),
                "-j",
                str(self.key_path),
                "-C",
                str(self.ca_path),
                "-R",
                str(self.ca_path),
            ]
        self.port = self.plain_port + 1
        return argv

    def publish(self, name: str, data: bytes, timeout_s: float = 30.0) -> str:
        """``PUT /NAME`` (block-wise, plain CoAP) so that it can be fetched; returns the path.

        libcoap keeps it in memory (a restart loses it) and serves ``GET`` with Block2 over
        DTLS as over plain CoAP.
        """
        import asyncio

        import aiocoap

        from drivers.peers.errors import PeerError

        async def put() -> aiocoap.Message:
            context = await aiocoap.Context.create_client_context()
            try:
                request = aiocoap.Message(
                    code=aiocoap.PUT,
                    uri=f"coap://{self.host}:{self.plain_port}/{name}",
                    payload=data,
                )
                return await asyncio.wait_for(context.request(request).response, timeout_s)
            finally:
                await context.shutdown()

        response = asyncio.run(put())
        if not response.code.is_successful():
            raise PeerError(
                f"the CoAP server refused PUT /{name} ({response.code})",
                "start it with dynamic resources (-d)",
            )
        return f"/{name}"

    def _healthy(self) -> bool:
        # DTLS is UDP, so no connect() can tell "bound" from "nothing there". libcoap creates
        # all endpoints before its loop runs, so: a CoAP ping (empty CON) on the plain port
        # answered by RST proves the loop runs, and the log shows no endpoint failure.
        return coap_ping(self.host, self.plain_port)


def coap_ping(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a CoAP endpoint at ``host:port`` (plain UDP) answers an empty CON with RST."""
    message_id = os.getpid() & 0xFFFF
    ping = bytes([0x40, 0x00]) + message_id.to_bytes(2, "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(ping, (host, port))
            reply = sock.recv(64)
        except OSError:
            return False
    return len(reply) >= 4 and reply[0] >> 4 == 0x7 and reply[2:4] == ping[2:4]
