"""Free loopback ports, and checks that a chosen one is really free.

A port is found by binding port 0 and reading what the kernel chose. There is a small race
between closing that socket and the peer binding the port; peers detect "Address already in
use" in their log as well and report :class:`PortInUse`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from drivers.peers.errors import PortInUse

LOOPBACK = "127.0.0.1"

_KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def _bind(port: int, transport: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, _KINDS[transport])
    try:
        if transport == "tcp":
            # Peers set SO_REUSEADDR too, so a TIME_WAIT leftover does not count as "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


def is_free(port: int, transports: Iterable[str] = ("tcp",)) -> bool:
    """True if ``port`` can be bound on 127.0.0.1 for every transport given."""
    for transport in transports:
        try:
            _bind(port, transport).close()
        except OSError:
            return False
    return True


def require_free(port: int, transports: Iterable[str] = ("tcp",)) -> None:
    """Raise :class:`PortInUse` unless ``port`` is free for every transport given."""
    for transport in transports:
        try:
            _bind(port, transport).close()
        except OSError as exc:
            raise PortInUse(port, transport) from exc


def free_port(transports: Iterable[str] = ("tcp",), span: int = 1) -> int:
    """A port ``p`` such that ``p .. p+span-1`` are free for every transport given.

    ``span`` = 2 serves libcoap's server, which listens on ``p`` (CoAP) and ``p+1`` (DTLS).
    """
    kinds = tuple(transports)
    for _ in range(200):
        with _bind(0, kinds[0]) as probe:
            port = probe.getsockname()[1]
        if port + span - 1 > 65535:
            continue
        if all(is_free(port + offset, kinds) for offset in range(span)):
            return port
    raise PortInUse(0, "/".join(kinds))  # pragma: no cover - a machine out of ports
