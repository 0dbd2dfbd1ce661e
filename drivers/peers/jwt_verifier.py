"""A tiny HTTP JWT verifier that nginx consults with ``auth_request``.

nginx OSS cannot verify JWTs itself, so ``/api`` asks this server first: ``204`` with
``X-Auth-Subject`` lets the request through, ``401`` with ``X-Auth-Reason`` refuses it and
nginx passes the reason on to the client. It runs as its own process (``python -m
drivers.peers.jwt_verifier``) so that its signature checks never compete with the measuring
client for the GIL. HTTP/1.1 keep-alive lets nginx reuse one upstream connection.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from drivers.peers.base import PythonModulePeer
from drivers.peers.jwt_check import KeyDirectory, check_authorization
from drivers.peers.pki import LabPki


class _VerifyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    keys: ClassVar[KeyDirectory]

    def do_GET(self) -> None:
        verdict = check_authorization(self.headers.get("Authorization"), self.keys.keys())
        self.send_response(204 if verdict.ok else 401)
        if verdict.ok:
            self.send_header("X-Auth-Subject", verdict.subject)
        else:
            self.send_header("X-Auth-Reason", verdict.reason)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"jwt-verifier: {format % args}\n")


def serve(port: int, keys_dir: Path) -> None:
    """Serve on 127.0.0.1:``port`` until killed."""
    _VerifyHandler.keys = KeyDirectory(keys_dir)
    server = ThreadingHTTPServer(("127.0.0.1", port), _VerifyHandler)
    server.daemon_threads = True
    print(f"jwt-verifier listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


class JwtVerifierPeer(PythonModulePeer):
    """The verifier as a managed process (started and stopped by :class:`NginxPeer`)."""

    protocol = "JWT verifier"
    module = "drivers.peers.jwt_verifier"
    package = "python3"

    def __init__(self, keys_dir: Path, *, pki: LabPki | None = None) -> None:
        super().__init__(pki=pki)
        self.keys_dir = keys_dir

    def _module_arguments(self, workdir: Path) -> list[str]:
        return ["--keys", str(self.keys_dir)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port, args.keys)


if __name__ == "__main__":
    main()
