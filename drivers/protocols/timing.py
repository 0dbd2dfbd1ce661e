"""Phase clocks inside real clients: where TCP ends, the handshake starts and ends.

paho-mqtt and ``http.client`` build their TLS sockets from an ``SSLContext`` they are given,
and neither passes ``session=`` (so neither can resume a TLS session by itself). A
:class:`TimedContext` fixes both without touching those libraries: its ``wrap_socket`` (called
when the TCP connection is up) notes the time and injects the saved session, and its socket
class times ``do_handshake``. Everything else is the stock ``ssl`` module.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any


class TimedSocket(ssl.SSLSocket):
    """An SSLSocket that reports its handshake's start and end to its context."""

    def do_handshake(self, block: bool = False) -> None:
        context = self.context
        start = time.perf_counter_ns()
        super().do_handshake()
        if isinstance(context, TimedContext):
            context.handshake_start_ns = start
            context.handshake_end_ns = time.perf_counter_ns()
            context.last_socket = self


class TimedContext(ssl.SSLContext):
    """An SSLContext that times TCP-ready and the handshake, and resumes when asked."""

    sslsocket_class = TimedSocket

    def reset_clock(self) -> None:
        self.tcp_ready_ns = 0
        self.handshake_start_ns = 0
        self.handshake_end_ns = 0
        self.last_socket: ssl.SSLSocket | None = None

    tcp_nodelay: bool | None = None
    """``True``/``False``: set ``TCP_NODELAY`` on the TCP socket to that; ``None``: leave the
    client library's own choice (paho-mqtt: off; ``http.client``: on)."""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.tcp_ready_ns = time.perf_counter_ns()
        if self.tcp_nodelay is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self.tcp_nodelay))
        session = getattr(self, "resume_session", None)
        if session is not None and "session" not in kwargs:
            kwargs["session"] = session
        return super().wrap_socket(sock, *args, **kwargs)
