"""HTTPS with ``http.client`` on the bridged context: established when the response is read.

Conditions: ``resume`` gives each new connection the last TLS session (0 signatures when the
server resumes it); ``keep_alive`` keeps one connection for every trial after the first, so
those trials pay no handshake at all (the paper's keep-alive tuning).
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from drivers.protocols.base import Condition, ProtocolClient, ProtocolTrial
from drivers.protocols.mqtt import ProtocolError
from drivers.protocols.timing import TimedContext
from drivers.tls.bridge import client_context
from drivers.tls.signer import TokenSigner


class HttpsClient(ProtocolClient):
    protocol = "https"
    established_at = "HTTPS response fully read"

    def __init__(
        self,
        signer: TokenSigner,
        condition: Condition,
        host: str,
        port: int,
        cert_chain: Path,
        ca_file: Path,
        *,
        path: str = "/",
        timeout_s: float = 10.0,
        headers: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        super().__init__(signer, condition)
        self.host, self.port, self.path, self.timeout_s = host, port, path, timeout_s
        self.headers = headers
        self.context: TimedContext = client_context(  # type: ignore[assignment]
            signer, cert_chain, ca_file, context_class=TimedContext
        )
        self.context.resume_session = None  # type: ignore[attr-defined]
        self.connection: http.client.HTTPSConnection | None = None
        self.last_status = 0
        self.last_body = b""

    def _connect(self) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=self.timeout_s
        )
        connection.connect()
        return connection

    def trial(self) -> ProtocolTrial:
        context = self.context
        context.reset_clock()
        mark = self.signer.mark()
        start = time.perf_counter_ns()
        fresh = self.connection is None or not self.condition.keep_alive
        try:
            if fresh:
                self.close()
                self.connection = self._connect()
            assert self.connection is not None
            handshake_end = context.handshake_end_ns if fresh else start
            headers = self.headers() if self.headers else {}
            request_start = time.perf_counter_ns()
            self.connection.request("GET", self.path, headers=headers)
            response = self.connection.getresponse()
            self.last_body = response.read()
            self.last_status = response.status
            end = time.perf_counter_ns()
        except (ssl.SSLError, OSError, http.client.HTTPException) as exc:
            self.close()
            self.signer.raise_if_failed()
            raise ProtocolError(
                f"HTTPS to {self.host}:{self.port} failed ({exc!r})",
                "the server refuses client certificates it does not trust; "
                "check the certificate and that the server runs",
            ) from None
        self.signer.raise_if_failed()
        if self.last_status == 400 and b"certificate" in self.last_body.lower():
            self.close()
            raise ProtocolError(
                f"the HTTPS server refused the client certificate (HTTP 400: "
                f"{_first_line(self.last_body)})",
                "nginx answers 400 to an untrusted, expired or missing client certificate; "
                "issue one from the lab CA for this token",
            )
        socket = context.last_socket if fresh else None
        resumed = bool(socket is not None and socket.session_reused)
        if fresh and self.condition.resume and socket is not None:
            context.resume_session = socket.session  # type: ignore[attr-defined]
        if not self.condition.keep_alive:
            self.close()
        n_sign, sign_ns = self._signatures_since(mark)
        phases = {
            "connect": (context.tcp_ready_ns - start) if fresh else 0,
            "handshake": (context.handshake_end_ns - context.handshake_start_ns) if fresh else 0,
            "sign": sign_ns,
            "ready": end - (handshake_end if fresh else request_start),
        }
        return ProtocolTrial(end - start, phases, n_sign, resumed)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _first_line(body: bytes) -> str:
    text = body.decode(errors="replace")
    for marker in ("<title>", "<h1>"):
        if marker in text:
            return text.split(marker, 1)[1].split("<", 1)[0].strip()
    return text.strip().splitlines()[0][:80] if text.strip() else "empty body"
