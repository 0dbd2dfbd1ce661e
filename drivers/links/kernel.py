"""Kernel mode: a TUN link between two network namespaces, shaped by a packet forwarder.

Why: in proxy mode TCP loss can only be modelled. Here the client and the server sit in two
namespaces joined by a pair of TUN devices, and every IP packet between them passes through a
forwarder in this process that delays, jitters, rate-limits and drops it. So TCP's SYN
timeouts, retransmissions and congestion control, and DTLS's flight timers, are the kernels'
own. (netem would do this in the kernel, but the kernels SAFE Lab runs on have no netem.)

Layout (addresses exist only inside the two namespaces)::

    client ns: tl0 10.251.0.2 <-fd-> forwarder (this process) <-fd-> tl0 10.251.0.1 :server ns
                                  up: client -> server
                                  down: server -> client

Two ways to put a peer on the server side:

- :meth:`KernelLink.popen_in_server` starts a process inside the server namespace; it must
  listen on ``10.251.0.1`` or ``0.0.0.0`` (loopback inside that namespace is not reachable).
- ``target=(host, port)``: a peer already running on this machine's loopback (every
  ``drivers.peers`` peer). A zero-delay relay listens in the server namespace on
  ``10.251.0.1`` and splices to the target over loopback. The shaped leg is real kernel TCP
  or UDP between the client and the relay; the relay's kernel is the TCP sender on the link
  for the server's bytes (same stack and defaults as the peer's), and it adds no timers.

Clients use :meth:`KernelLink.client_context` to create their sockets inside the client
namespace. Cleanup always runs in the order forwarder, relay, server processes, namespaces.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Self

from drivers.links import netns
from drivers.links.proxy import LinkError, LinkProtocol, LinkProxy, TcpLinkProxy, UdpLinkProxy
from drivers.links.shaping import LinkStats, LoopThread, Pipe, Shaper, shapers_for
from drivers.links.spec import Direction, LinkSpec


class LinkUnavailable(LinkError):
    """Kernel mode cannot run on this machine (not root, namespaces refused, no TUN)."""


class KernelLink:
    """Two namespaces, two TUN devices and a shaping forwarder; a context manager."""

    mode = "kernel"

    def __init__(
        self,
        spec: LinkSpec,
        *,
        protocol: LinkProtocol = "tcp",
        target: tuple[str, int] | None = None,
    ) -> None:
        self.spec = spec
        self.protocol = protocol
        self.target = target
        self.stats = LinkStats()
        self.shapers: dict[Direction, Shaper] = shapers_for(spec)
        self.client_ns = ""
        self.server_ns = ""
        self.server_host = netns.SERVER_ADDRESS
        self.client_host = netns.CLIENT_ADDRESS
        self.address: tuple[str, int] = ("", 0)
        """Where the client connects (the relay) when a ``target`` was given."""
        self._fds: dict[Direction, int] = {}
        self._thread: LoopThread | None = None
        self._pipes: dict[Direction, Pipe[bytes]] = {}
        self._relay: LinkProxy | None = None
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        reason = netns.unavailable_reason()
        if reason is not None:
            raise LinkUnavailable(reason, "use the proxy mode (mode='proxy'), which needs no root")
        netns.sweep_stale()
        try:
            self.client_ns = netns.new_name("c")
            self.server_ns = netns.new_name("s")
            for role, name in (("up", self.client_ns), ("down", self.server_ns)):
                netns.create(name)
                with netns.entered(name):
                    self._fds[role] = netns.open_tun()  # type: ignore[index]
                    _disable_ipv6()
            netns.configure(self.client_ns, netns.CLIENT_ADDRESS, netns.SERVER_ADDRESS)
            netns.configure(self.server_ns, netns.SERVER_ADDRESS, netns.CLIENT_ADDRESS)
            self._thread = LoopThread("safelab-link-kernel")
            self._thread.start()
            self._thread.call(self._attach())
            if self.target is not None:
                self._start_relay(self.target)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_relay(self, target: tuple[str, int]) -> None:
        kind = socket.SOCK_STREAM if self.protocol == "tcp" else socket.SOCK_DGRAM
        with netns.entered(self.server_ns):
            sock = socket.socket(socket.AF_INET, kind)
        try:
            if self.protocol == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((netns.SERVER_ADDRESS, target[1]))
            if self.protocol == "tcp":
                sock.listen(64)
        except OSError:
            sock.close()
            raise
        relay_class = TcpLinkProxy if self.protocol == "tcp" else UdpLinkProxy
        self._relay = relay_class(LinkSpec(source="relay"), target, listen_sock=sock)
        self.address = self._relay.start()

    def stop(self) -> None:
        """Forwarder, relay, server processes, then namespaces; idempotent, never raises."""
        if self._thread is not None:
            with contextlib.suppress(Exception):
                self._thread.call(self._detach(), timeout=5.0)
            self._thread.stop()
            self._thread = None
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        for process in self._processes:
            _stop_process(process)
        self._processes.clear()
        for name in (self.client_ns, self.server_ns):
            if name:
                netns.delete(name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- using the link -----------------------------------------------------------------------
    def client_context(self) -> AbstractContextManager[None]:
        """Sockets created in this with-block live in the client namespace (and keep it)."""
        return netns.entered(self.client_ns)

    def server_context(self) -> AbstractContextManager[None]:
        """Sockets and processes created in this with-block live in the server namespace."""
        return netns.entered(self.server_ns)

    def popen_in_server(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a peer process in the server namespace; stopped (whole group) by :meth:`stop`.

        It must listen on ``0.0.0.0`` or :data:`~drivers.links.netns.SERVER_ADDRESS`.
        """
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        with self.server_context():
            process: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv), start_new_session=True, **kwargs
            )
        self._processes.append(process)
        return process

    def metadata(self) -> dict[str, Any]:
        return {
            "link": self.spec.describe(),
            "mode": "kernel",
            "protocol": self.protocol,
            "loss": "real" if self.spec.has_loss else "none",
            "stats": self.stats.as_dict(),
        }

    # -- the forwarder (loop thread) ----------------------------------------------------------
    async def _attach(self) -> None:
        assert self._thread is not None
        loop = self._thread.loop
        client_fd, server_fd = self._fds["up"], self._fds["down"]
        self._pipes = {
            "up": Pipe(loop, lambda packet: self._write(server_fd, packet)),
            "down": Pipe(loop, lambda packet: self._write(client_fd, packet)),
        }
        loop.add_reader(client_fd, self._read, "up", client_fd)
        loop.add_reader(server_fd, self._read, "down", server_fd)

    async def _detach(self) -> None:
        assert self._thread is not None
        for fd in self._fds.values():
            self._thread.loop.remove_reader(fd)
        for pipe in self._pipes.values():
            pipe.close()

    def _read(self, direction: Direction, fd: int) -> None:
        assert self._thread is not None
        loop = self._thread.loop
        shaper = self.shapers[direction]
        stats = self.stats.direction(direction)
        pipe = self._pipes[direction]
        for _ in range(64):  # bounded per wake-up; the reader fires again if more wait
            try:
                packet = os.read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.errors += 1
                return
            stats.packets += 1
            stats.bytes += len(packet)
            if shaper.lost():
                stats.dropped += 1
                continue
            if len(pipe) >= shaper.spec.queue:
                stats.queue_drops += 1
                continue
            pipe.push(packet, shaper.due(loop.time(), len(packet)), len(packet))

    def _write(self, fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            self.stats.errors += 1


def _disable_ipv6() -> None:
    """No IPv6 on tl0: its router solicitations and DAD would be stray packets on the link."""
    path = f"/proc/sys/net/ipv6/conf/{netns.TUN_NAME}/disable_ipv6"
    with contextlib.suppress(OSError), open(path, "w") as handle:
        handle.write("1")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def kernel_link(
    spec: LinkSpec, protocol: LinkProtocol = "tcp", target: tuple[str, int] | None = None
) -> Iterator[KernelLink]:
    """``with kernel_link(spec) as link:`` — the namespaces are gone when the block ends."""
    link = KernelLink(spec, protocol=protocol, target=target)
    link.start()
    try:
        yield link
    finally:
        link.stop()
