"""A DTLS 1.2 client on OpenSSL (ctypes) whose certificate key is a token.

Why by hand: no Python DTLS stack takes an external key (aiocoap's tinyDTLS is PSK only;
``../shared/research/protocols.md`` §3). OpenSSL does DTLS; we drive it through the same
libssl as :mod:`drivers.tls.libssl`, with the token's :class:`~drivers.tls.bridge.TokenEvpKey`
as the client key, over a connected non-blocking UDP socket. Retransmission timers are
OpenSSL's (``DTLSv1_get_timeout``/``DTLSv1_handle_timeout``); every wait is bounded.

Used by the CoAP experiments: CoAP messages (encoded with aiocoap) are written and read as
DTLS records.
"""

from __future__ import annotations

import ctypes
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

from drivers.errors import SafeLabError
from drivers.tls import libssl
from drivers.tls.bridge import TokenEvpKey, install_client_key
from drivers.tls.libssl import load, openssl_errors
from drivers.tls.signer import TokenSigner


class DtlsError(SafeLabError):
    """The DTLS handshake or a record exchange failed or timed out."""


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class DtlsClient:
    """One DTLS connection to ``host:port``: :meth:`handshake`, then send and receive."""

    def __init__(
        self,
        signer: TokenSigner,
        cert_chain: Path,
        ca_file: Path,
        host: str,
        port: int,
        *,
        timeout_s: float = 10.0,
        key: TokenEvpKey | None = None,
    ) -> None:
        """``key``: a :class:`TokenEvpKey` made once for many connections (else one is made,
        which asks the token for its public key)."""
        self.lib = load()
        self.signer = signer
        self.timeout_s = timeout_s
        ssl_lib = self.lib.ssl
        self.ctx = ssl_lib.SSL_CTX_new(ssl_lib.DTLS_client_method())
        if not self.ctx:
            raise DtlsError(
                f"cannot create a DTLS context ({openssl_errors(self.lib)})",
                "check the OpenSSL installation",
            )
        self.ssl = None
        self.sock: socket.socket | None = None
        try:
            if ssl_lib.SSL_CTX_load_verify_locations(self.ctx, str(ca_file).encode(), None) != 1:
                raise DtlsError(
                    f"cannot load the CA {ca_file} ({openssl_errors(self.lib)})",
                    "check the lab CA file",
                )
            ssl_lib.SSL_CTX_set_verify(self.ctx, libssl.SSL_VERIFY_PEER, None)
            self.key = key or TokenEvpKey(signer, signer.token.public_key(signer.key_selector))
            install_client_key(self.ctx, self.key, cert_chain)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect((host, port))
            self.sock.setblocking(False)
            self.ssl = ssl_lib.SSL_new(self.ctx)
            bio = self.lib.crypto.BIO_new_dgram(self.sock.fileno(), libssl.BIO_NOCLOSE)
            address = _sockaddr_in(host, port)
            self.lib.crypto.BIO_ctrl(
                bio, libssl.BIO_CTRL_DGRAM_SET_CONNECTED, 0, ctypes.byref(address)
            )
            ssl_lib.SSL_set_bio(self.ssl, bio, bio)
        except BaseException:
            self.close()
            raise

    def _wait(self, want: int, deadline: float, what: str) -> None:
        """Wait for the socket, or run OpenSSL's retransmission timer when it fires."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DtlsError(
                f"the DTLS peer did not answer the {what} within {self.timeout_s:g} s",
                "check that the peer runs and accepts this client's certificate",
            )
        timer = _Timeval()
        wait = remaining
        if self.lib.ssl.SSL_ctrl(self.ssl, libssl.DTLS_CTRL_GET_TIMEOUT, 0, ctypes.byref(timer)):
            wait = min(wait, timer.tv_sec + timer.tv_usec / 1e6)
        sock = self.sock
        if sock is None:
            raise DtlsError(f"DTLS {what} on a closed connection", "connect again")
        readers = [sock] if want == libssl.SSL_ERROR_WANT_READ else []
        writers = [sock] if want == libssl.SSL_ERROR_WANT_WRITE else []
        ready = select.select(readers, writers, [], max(wait, 0.0))
        if not any(ready):
            self.lib.ssl.SSL_ctrl(self.ssl, libssl.DTLS_CTRL_HANDLE_TIMEOUT, 0, None)

    def _call(self, operation: Callable[[], int], what: str) -> int:
        deadline = time.monotonic() + self.timeout_s
        while True:
            result = operation()
            if result > 0:
                return result
            error = self.lib.ssl.SSL_get_error(self.ssl, result)
            if error in (libssl.SSL_ERROR_WANT_READ, libssl.SSL_ERROR_WANT_WRITE):
                self._wait(error, deadline, what)
                continue
            self.signer.raise_if_failed()
            raise DtlsError(
                f"DTLS {what} failed ({openssl_errors(self.lib)})",
                "the peer may have refused the client certificate; see its log",
            )

    def handshake(self) -> None:
        self._call(lambda: self.lib.ssl.SSL_connect(self.ssl), "handshake")

    def send(self, data: bytes) -> None:
        self._call(lambda: self.lib.ssl.SSL_write(self.ssl, data, len(data)), "write")

    def receive(self, size: int = 4096) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        count = self._call(lambda: self.lib.ssl.SSL_read(self.ssl, buffer, size), "read")
        return buffer.raw[:count]

    def close(self) -> None:
        ssl_lib = self.lib.ssl
        if self.ssl:
            ssl_lib.SSL_shutdown(self.ssl)
            ssl_lib.SSL_free(self.ssl)
            self.ssl = None
        if self.ctx:
            ssl_lib.SSL_CTX_free(self.ctx)
            self.ctx = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> DtlsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SockaddrIn(ctypes.Structure):
    _fields_ = (
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_uint16),
        ("addr", ctypes.c_uint8 * 4),
        ("zero", ctypes.c_uint8 * 8),
    )


def _sockaddr_in(host: str, port: int) -> _SockaddrIn:
    address = _SockaddrIn()
    address.family = socket.AF_INET
    address.port = socket.htons(port)
    address.addr[:] = list(socket.inet_aton(socket.gethostbyname(host)))
    return address
