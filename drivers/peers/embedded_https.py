"""HTTPS on Python's ``ssl`` + ``http.server``: the fallback when nginx is not installed.

A real TLS server (the system OpenSSL through CPython), not a fake: client certificates are
required (``CERT_REQUIRED``), TLS 1.2 and 1.3, session tickets and the TLS 1.2 session cache
on (CPython sets a session-id context, so resumption works with client certificates), HTTP/1.1
keep-alive. It serves the same ``/`` and ``/api`` as :class:`~drivers.peers.nginx.NginxPeer`
and applies the same JWT check (:mod:`drivers.peers.jwt_check`).

It runs as its own process (``python -m drivers.peers.embedded_https``) so its handshakes do
not share the measuring client's GIL. Each connection's handshake happens in its own thread,
so a client that never finishes one cannot block the others.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric import ec

from drivers.peers.base import PythonModulePeer
from drivers.peers.jwt_check import KeyDirectory, check_authorization, register_key
from drivers.peers.nginx import API_BODY, ROOT_BODY
from drivers.peers.pki import LabPki

_HANDSHAKE_TIMEOUT_S = 10.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    keys: ClassVar[KeyDirectory]

    def do_GET(self) -> None:
        if self.path == "/":
            self._reply(200, ROOT_BODY, "text/plain")
        elif self.path == "/api":
            verdict = check_authorization(self.headers.get("Authorization"), self.keys.keys())
            if verdict.ok:
                self._reply(200, API_BODY, "application/json", {"X-Auth-Subject": verdict.subject})
            else:
                self._reply(401, "unauthorized\n", "text/plain", {"X-Auth-Reason": verdict.reason})
        else:
            self._reply(404, "not found\n", "text/plain")

    def _reply(
        self, status: int, body: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"embedded-https: {self.address_string()} {format % args}\n")


class _TlsServer(ThreadingHTTPServer):
    """Accepts plain TCP, then does the TLS handshake in the connection's own thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            sys.stderr.write(f"embedded-https: handshake refused {client_address[0]}: {exc}\n")
            return
        tls.settimeout(None)
        try:
            # typeshed types the third argument as Self of BaseServer, which mypy cannot
            # match from a subclass method; the handler gets this server, as socketserver does.
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS 1.2-1.3, client certificate from ``ca`` required, tickets on."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve(port: int, cert: Path, key: Path, ca: Path, keys_dir: Path) -> None:
    _Handler.keys = KeyDirectory(keys_dir)
    server = _TlsServer(("127.0.0.1", port), server_context(cert, key, ca))
    print(f"embedded-https listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


class EmbeddedHttpsPeer(PythonModulePeer):
    """Python ``ssl`` HTTPS server on ``.port``; same API as :class:`NginxPeer`."""

    protocol = "HTTPS server (embedded Python ssl)"
    module = "drivers.peers.embedded_https"
    embedded = True
    package = "python3"

    def __init__(
        self,
        *,
        port: int | None = None,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(port=port, pki=pki, binary=binary, keep_dir=keep_dir)
        self.jwt_keys_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def register_jwt_key(self, public_key: ec.EllipticCurvePublicKey) -> str:
        """Accept JWTs signed by ``public_key`` on ``/api``; returns the ``kid`` to use."""
        assert self.jwt_keys_dir is not None, "start the peer first"
        return register_key(self.jwt_keys_dir, public_key)

    def _module_arguments(self, workdir: Path) -> list[str]:
        self.jwt_keys_dir = workdir / "jwt-keys"
        self.jwt_keys_dir.mkdir()
        return [*self._tls_arguments(), "--keys", str(self.jwt_keys_dir)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port, args.cert, args.key, args.ca, args.keys)


if __name__ == "__main__":
    main()
