"""nginx as the HTTPS peer: client certificates required, JWT-protected ``/api``.

- ``/`` answers a fixed body (:data:`ROOT_BODY`) to any client with a lab-CA certificate.
- ``/firmware/NAME`` serves a file put there with :meth:`NginxPeer.publish` (a firmware
  image for the bulk-transfer pattern), with ``Range`` requests (206 Partial Content), so a
  download cut half-way resumes from the last byte received.
- ``/api`` also needs ``Authorization: Bearer <ES256 JWT>`` signed by a registered key
  (:meth:`NginxPeer.register_jwt_key`); nginx OSS cannot verify JWTs, so ``auth_request``
  asks :mod:`drivers.peers.jwt_verifier`. Refusals are ``401`` with ``X-Auth-Reason``.

Resumption is on (TLS 1.2 session cache and tickets, TLS 1.3 tickets; nginx sets a
session-id context when it verifies clients) and so is keep-alive, so the experiments can
measure both optimisations against the same peer.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from drivers.peers.base import Peer
from drivers.peers.jwt_check import register_key
from drivers.peers.jwt_verifier import JwtVerifierPeer
from drivers.peers.pki import LabPki

ROOT_BODY = "SAFE Lab HTTPS peer\n"
API_BODY = '{"ok": true}\n'


class NginxPeer(Peer):
    """``nginx -p prefix -c conf`` in the foreground (``daemon off``) on ``.port``.

    ``.url`` is ``https://127.0.0.1:PORT``; clients verify it with ``.ca_path``.
    """

    protocol = "HTTPS server (nginx)"
    version_arguments = ("-v",)
    program = "nginx"
    package = "nginx"

    def __init__(
        self,
        *,
        port: int | None = None,
        keepalive_requests: int = 100_000,
        keepalive_timeout_s: int = 65,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(port=port, pki=pki, binary=binary, keep_dir=keep_dir)
        self.keepalive_requests = keepalive_requests
        self.keepalive_timeout_s = keepalive_timeout_s
        self.verifier: JwtVerifierPeer | None = None
        self.jwt_keys_dir: Path | None = None
        self.published: dict[str, bytes] = {}

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def register_jwt_key(self, public_key: ec.EllipticCurvePublicKey) -> str:
        """Accept JWTs signed by ``public_key`` on ``/api``; returns the ``kid`` to use."""
        assert self.jwt_keys_dir is not None, "start the peer first"
        return register_key(self.jwt_keys_dir, public_key)

    def publish(self, name: str, data: bytes) -> str:
        """Serve ``data`` at ``/firmware/NAME`` (ranges allowed); returns that path."""
        assert self.workdir is not None, "start the peer first"
        folder = self.workdir / "html" / "firmware"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        self.published[name] = data
        return f"/firmware/{name}"

    def _prepare(self, program: str, workdir: Path) -> list[str]:
        for name, data in self.published.items():  # a restart keeps what was published
            (workdir / "html" / "firmware").mkdir(parents=True, exist_ok=True)
            (workdir / "html" / "firmware" / name).write_bytes(data)
        self.jwt_keys_dir = workdir / "jwt-keys"
        self.jwt_keys_dir.mkdir()
        self.verifier = JwtVerifierPeer(self.jwt_keys_dir, pki=self.pki)
        self.verifier.start()
        html = workdir / "html"
        html.mkdir(exist_ok=True)
        (html / "api").write_text(API_BODY)
        temp = workdir / "temp"
        temp.mkdir()
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {workdir}/nginx.pid;
error_log {workdir}/peer.log info;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_timeout {self.keepalive_timeout_s}s;
    keepalive_requests {self.keepalive_requests};

    upstream jwt_verifier {{
        server 127.0.0.1:{self.verifier.port};
        keepalive 8;
    }}

    server {{
        listen {self.host}:{self.port} ssl;
        server_name localhost;
        ssl_certificate {self.cert_path};
        ssl_certificate_key {self.key_path};
        ssl_client_certificate {self.ca_path};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SAFELAB:1m;
        ssl_session_timeout 10m;
        ssl_session_tickets on;

        location = / {{
            default_type text/plain;
            return 200 "{ROOT_BODY.strip()}\\n";
        }}
        location = /api {{
            auth_request /_jwt;
            auth_request_set $auth_reason $upstream_http_x_auth_reason;
            auth_request_set $auth_subject $upstream_http_x_auth_subject;
            add_header X-Auth-Reason $auth_reason always;
            add_header X-Auth-Subject $auth_subject always;
            default_type application/json;
            root {html};
        }}
        location /firmware/ {{
            default_type application/octet-stream;
            root {html};
        }}
        location = /_jwt {{
            internal;
            proxy_pass http://jwt_verifier/verify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}
}}
"""
        )
        # -e: nginx opens its error log before reading the config; keep it out of /var/log.
        return [program, "-p", str(workdir), "-e", str(workdir / "peer.log"), "-c", str(conf)]

    def _healthy(self) -> bool:
        # nginx binds its listeners before it starts workers; waiting for that line avoids a
        # TCP probe, which would log an aborted handshake.
        return "start worker process" in self.log_text()

    def restart(self) -> None:
        """A real restart (connections, session cache and ticket keys lost) that keeps the
        registered JWT keys, as a server's key store on disk would survive it."""
        keys = (
            {p.name: p.read_bytes() for p in self.jwt_keys_dir.glob("*.pem")}
            if self.jwt_keys_dir is not None
            else {}
        )
        super().restart()
        assert self.jwt_keys_dir is not None
        for name, pem in keys.items():
            (self.jwt_keys_dir / name).write_bytes(pem)

    def _cleanup(self) -> None:
        if self.verifier is not None:
            self.verifier.stop()
