"""Proxy mode: an emulated link as a TCP or UDP proxy on loopback, in front of a real peer.

Needs no privileges, so it is the default. The client connects to the proxy's address; the
proxy connects to the peer and holds what crosses it in a :class:`~drivers.links.shaping.Pipe`
per direction.

What is real and what is modelled:

- **Delay, jitter, rate** are applied to real bytes and datagrams.
- **UDP loss is real**: a datagram that loses the draw is dropped, so DTLS and CoAP
  retransmission timers are the peers' own.
- **TCP loss is modelled**: the proxy terminates TCP on both sides, so it cannot drop a
  segment (the kernel would just deliver it again at once on loopback). A lost segment instead
  delays its chunk, and everything behind it, by a retransmission timeout: Linux's RTO is about
  ``RTT + 200 ms`` once its variance estimate settles (``rto_min`` = 200 ms), doubling on each
  further loss of the same segment; SYN/SYN-ACK losses cost the initial RTO of 1 s, doubling.
  Fast retransmit and tail-loss probes, which can recover sooner, are not modelled, so the
  figure leans pessimistic. Results must say **"loss: modelled"** (:meth:`LinkProxy.metadata`).
- **The TCP handshake**: the client's ``connect()`` to the proxy returns at once on loopback,
  one RTT earlier than over the emulated link. So the server only sees the connection after
  SYN, SYN-ACK and ACK have crossed (``up + down + up``), and the client's first bytes are held
  until then; server-first bytes are held one further ``down`` crossing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
from types import TracebackType
from typing import Any, Literal, Self

from drivers.errors import SafeLabError
from drivers.links.shaping import LinkStats, LoopThread, Pipe, Shaper, shapers_for
from drivers.links.spec import Direction, LinkSpec

MSS = 1448
"""Payload bytes per TCP segment on a 1500-byte path with timestamps."""
TCP_OVERHEAD = 52
"""IP + TCP headers (with timestamps) per segment, counted against the rate."""
UDP_OVERHEAD = 28
"""IP + UDP headers per datagram, counted against the rate."""
RTO_MIN = 0.2
"""Linux ``TCP_RTO_MIN``."""
SYN_RTO = 1.0
"""Linux ``TCP_TIMEOUT_INIT``: retransmission timeout of a SYN or SYN-ACK."""
MAX_RETRANSMISSIONS = 6
HIGH_WATER = 1 << 20
"""Bytes a TCP direction may hold before the proxy stops reading its sender."""
MAX_UDP_FLOWS = 1024

LinkProtocol = Literal["tcp", "udp"]


class LinkError(SafeLabError):
    """An emulated link that cannot be set up as asked."""


def require_loopback(host: str) -> None:
    """Links only put peers on loopback (network safety): refuse any other address."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise LinkError(
            f"link target {host} is not a loopback address",
            "emulated links only reach peers on 127.0.0.1; start the peer on loopback",
        )


class LinkProxy:
    """Base of the TCP and UDP proxies: loop thread, shapers, stats, context manager."""

    protocol: LinkProtocol = "tcp"

    def __init__(
        self,
        spec: LinkSpec,
        target: tuple[str, int],
        *,
        listen_host: str = "127.0.0.1",
        listen_sock: socket.socket | None = None,
        check_target: bool = True,
    ) -> None:
        if check_target:
            require_loopback(target[0])
        self.spec = spec
        self.target = target
        self.listen_host = listen_host
        self._listen_sock = listen_sock
        self.stats = LinkStats()
        self.shapers: dict[Direction, Shaper] = shapers_for(spec)
        self._thread = LoopThread(f"safelab-link-{self.protocol}")
        self.address: tuple[str, int] = ("", 0)
        """Where the client connects (set by :meth:`start`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._thread.loop

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Start the loop thread and listen; returns the address clients should use."""
        if self.address[1]:
            return self.address
        self._thread.start()
        try:
            self.address = self._thread.call(self._open())
        except BaseException:
            self.stop()
            raise
        return self.address

    def stop(self) -> None:
        """Close every flow and the listener, then end the loop thread. Idempotent."""
        if self._thread.running:
            with contextlib.suppress(Exception):
                self._thread.call(self._close(), timeout=5.0)
        self._thread.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _open(self) -> tuple[str, int]:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    # -- what results record ------------------------------------------------------------------
    def loss_label(self) -> str:
        if not self.spec.has_loss:
            return "none"
        return "modelled" if self.protocol == "tcp" else "real"

    def metadata(self) -> dict[str, Any]:
        """The link as results should record it: spec, mode, loss label and counters."""
        return {
            "link": self.spec.describe(),
            "mode": "proxy",
            "protocol": self.protocol,
            "loss": self.loss_label(),
            "stats": self.stats.as_dict(),
        }


# -- TCP --------------------------------------------------------------------------------------
class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name


_EOF = _Marker("eof")
_CLOSE = _Marker("close")
_Item = bytes | _Marker


class _TcpFlow:
    """One client connection: two pipes between the client and the peer transports."""

    def __init__(self, proxy: TcpLinkProxy, client: asyncio.Transport) -> None:
        self.proxy = proxy
        self.client = client
        self.server: asyncio.Transport | None = None
        self.pending: list[_Item] = []
        loop = proxy.loop
        self.pipes: dict[Direction, Pipe[_Item]] = {
            "up": Pipe(loop, self._to_server),
            "down": Pipe(loop, self._to_client),
        }
        self.pipes["up"].on_drain = lambda: self._resume(self.client)
        self.pipes["down"].on_drain = lambda: self._resume(self.server)
        self.floor: dict[Direction, float] = {}
        self.closed: set[Direction] = set()
        self.done: set[Direction] = set()
        self._handshake(loop.time())

    def _handshake(self, now: float) -> None:
        """When the peer would see this connection: SYN, SYN-ACK, ACK crossed, plus losses."""
        up, down = self.proxy.shapers["up"], self.proxy.shapers["down"]
        accepted = now
        for shaper, direction in ((up, "up"), (down, "down"), (up, "up")):
            accepted += shaper.jittered_delay()
            lost = 0
            while lost < MAX_RETRANSMISSIONS and shaper.lost():
                lost += 1
            if lost:
                penalty = SYN_RTO * (2**lost - 1)
                stats = self.proxy.stats.direction(direction)  # type: ignore[arg-type]
                stats.modelled_losses += lost
                stats.modelled_delay += penalty
                accepted += penalty
        self.floor = {"up": accepted, "down": accepted + self.proxy.spec.down.delay}

    def connected(self, server: asyncio.Transport) -> None:
        self.server = server
        for item in self.pending:
            self._to_server(item)
        self.pending.clear()

    def send(self, direction: Direction, data: bytes) -> None:
        proxy = self.proxy
        shaper = proxy.shapers[direction]
        stats = proxy.stats.direction(direction)
        segments = max(1, math.ceil(len(data) / MSS))
        stats.packets += 1
        stats.bytes += len(data)
        now = proxy.loop.time()
        due = shaper.due(now, len(data) + segments * TCP_OVERHEAD)
        due += self._retransmission_delay(direction, segments)
        pipe = self.pipes[direction]
        pipe.push(data, max(due, self.floor[direction]), len(data))
        if pipe.queued_bytes > HIGH_WATER:
            sender = self.client if direction == "up" else self.server
            if sender is not None:
                sender.pause_reading()

    def _retransmission_delay(self, direction: Direction, segments: int) -> float:
        """Modelled TCP loss: the worst segment's RTO backoff delays the whole chunk."""
        shaper = self.proxy.shapers[direction]
        if not shaper.spec.loss:
            return 0.0
        stats = self.proxy.stats.direction(direction)
        rto = RTO_MIN + self.proxy.spec.rtt
        worst = 0.0
        for _ in range(min(segments, 4096)):
            lost = 0
            while lost < MAX_RETRANSMISSIONS and shaper.lost():
                lost += 1
            if lost:
                stats.modelled_losses += lost
                worst = max(worst, rto * (2**lost - 1))
        stats.modelled_delay += worst
        return worst

    def end(self, direction: Direction, marker: _Marker) -> None:
        """EOF or close from one side travels the pipe behind the data already in it."""
        if direction in self.closed:
            return
        if marker is _CLOSE:
            self.closed.add(direction)
        now = self.proxy.loop.time()
        due = now + self.proxy.shapers[direction].spec.delay
        self.pipes[direction].push(marker, max(due, self.floor[direction]))

    @staticmethod
    def _resume(transport: asyncio.Transport | None) -> None:
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(Exception):
                transport.resume_reading()

    def _to_server(self, item: _Item) -> None:
        if self.server is None:
            self.pending.append(item)
            return
        self._write(self.server, item, "up")

    def _to_client(self, item: _Item) -> None:
        self._write(self.client, item, "down")

    def _write(self, transport: asyncio.Transport, item: _Item, direction: Direction) -> None:
        if transport.is_closing():
            if item is _CLOSE:
                self._finished(direction)
            return
        if isinstance(item, bytes):
            transport.write(item)
        elif item is _EOF and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the other side is already gone: nothing left to half-close
                transport.close()
        else:
            transport.close()  # flushes what was written before it
            self._finished(direction)

    def _finished(self, direction: Direction) -> None:
        """A direction delivered its close; once both have, the proxy forgets the flow."""
        self.pipes[direction].close()
        self.done.add(direction)
        if len(self.done) == 2:
            self.proxy.flows.discard(self)

    def abort(self) -> None:
        for pipe in self.pipes.values():
            pipe.close()
        for transport in (self.client, self.server):
            if transport is not None:
                transport.abort()


class _ClientSide(asyncio.Protocol):
    def __init__(self, proxy: TcpLinkProxy) -> None:
        self.proxy = proxy
        self.flow: _TcpFlow | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.flow = _TcpFlow(self.proxy, transport)
        self.proxy.flows.add(self.flow)
        self.proxy.stats.connections += 1
        task = self.proxy.loop.create_task(self.proxy.connect_target(self.flow))
        self.proxy.tasks.add(task)
        task.add_done_callback(self.proxy.tasks.discard)

    def data_received(self, data: bytes) -> None:
        assert self.flow is not None
        self.flow.send("up", data)

    def eof_received(self) -> bool:
        assert self.flow is not None
        self.flow.end("up", _EOF)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.flow is not None:
            self.flow.end("up", _CLOSE)


class _ServerSide(asyncio.Protocol):
    def __init__(self, flow: _TcpFlow) -> None:
        self.flow = flow

    def data_received(self, data: bytes) -> None:
        self.flow.send("down", data)

    def eof_received(self) -> bool:
        self.flow.end("down", _EOF)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.end("down", _CLOSE)


class TcpLinkProxy(LinkProxy):
    """A TCP proxy on loopback that makes the path to ``target`` look like ``spec``::

    with TcpLinkProxy(parse_link("rtt=100ms"), ("127.0.0.1", broker.port)) as link:
        client.connect(*link.address)
    """

    protocol: LinkProtocol = "tcp"

    def __init__(self, spec: LinkSpec, target: tuple[str, int], **kwargs: Any) -> None:
        super().__init__(spec, target, **kwargs)
        self.flows: set[_TcpFlow] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def _open(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        if self._listen_sock is not None:
            self._server = await loop.create_server(
                lambda: _ClientSide(self), sock=self._listen_sock
            )
        else:
            self._server = await loop.create_server(lambda: _ClientSide(self), self.listen_host, 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def connect_target(self, flow: _TcpFlow) -> None:
        try:
            transport, _ = await self.loop.create_connection(
                lambda: _ServerSide(flow), *self.target
            )
        except OSError:
            self.stats.errors += 1
            flow.abort()
            self.flows.discard(flow)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # the proxy must not add Nagle delays of its own
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_sock = flow.client.get_extra_info("socket")
        if client_sock is not None:
            client_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert isinstance(transport, asyncio.Transport)
        flow.connected(transport)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for flow in list(self.flows):
            flow.abort()
        self.flows.clear()
        for task in list(self.tasks):
            task.cancel()


# -- UDP --------------------------------------------------------------------------------------
class UdpLinkProxy(LinkProxy):
    """A UDP proxy on loopback: one socket to the peer per client address; loss is real."""

    protocol: LinkProtocol = "udp"

    def __init__(self, spec: LinkSpec, target: tuple[str, int], **kwargs: Any) -> None:
        super().__init__(spec, target, **kwargs)
        self._front: socket.socket | None = None
        self._flows: dict[tuple[str, int], socket.socket] = {}
        self._pipes: dict[Direction, Pipe[tuple[socket.socket, bytes, Any]]] = {}

    async def _open(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        front = self._listen_sock
        if front is None:
            front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            front.bind((self.listen_host, 0))
        front.setblocking(False)
        self._front = front
        self._pipes = {"up": Pipe(loop, self._send), "down": Pipe(loop, self._send)}
        loop.add_reader(front.fileno(), self._read_front)
        host, port = front.getsockname()[:2]
        return host, port

    @staticmethod
    def _send(item: tuple[socket.socket, bytes, Any]) -> None:
        sock, data, address = item
        with contextlib.suppress(OSError):  # a peer that went away (ICMP unreachable)
            if address is None:
                sock.send(data)
            else:
                sock.sendto(data, address)

    def _enter(self, direction: Direction, item: tuple[socket.socket, bytes, Any]) -> None:
        data = item[1]
        stats = self.stats.direction(direction)
        shaper = self.shapers[direction]
        stats.packets += 1
        stats.bytes += len(data)
        if shaper.lost():
            stats.dropped += 1
            return
        pipe = self._pipes[direction]
        if len(pipe) >= shaper.spec.queue:
            stats.queue_drops += 1
            return
        pipe.push(item, shaper.due(self.loop.time(), len(data) + UDP_OVERHEAD), len(data))

    def _read_front(self) -> None:
        assert self._front is not None
        for _ in range(64):  # bounded per wake-up; the reader fires again if more wait
            try:
                data, address = self._front.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.errors += 1
                return
            back = self._flows.get(address)
            if back is None:
                if len(self._flows) >= MAX_UDP_FLOWS:
                    self.stats.errors += 1
                    continue
                back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                back.setblocking(False)
                back.connect(self.target)
                self._flows[address] = back
                self.stats.connections += 1
                self.loop.add_reader(back.fileno(), self._read_back, back, address)
            self._enter("up", (back, data, None))

    def _read_back(self, back: socket.socket, address: tuple[str, int]) -> None:
        assert self._front is not None
        for _ in range(64):
            try:
                data = back.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP port unreachable from a stopped peer
                self.stats.errors += 1
                return
            self._enter("down", (self._front, data, address))

    async def _close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
        for back in self._flows.values():
            self.loop.remove_reader(back.fileno())
            back.close()
        self._flows.clear()
        if self._front is not None:
            self.loop.remove_reader(self._front.fileno())
            self._front.close()
            self._front = None
