"""A loopback TCP tap between the MQTT clients and the broker: it records every real packet,
can pause before forwarding each one (the stepper's live mode), and lets an attack drop,
rewrite or inject packets on the wire.

Why a proxy and not packet capture: it needs no root and no capture privileges (runs in CI),
sees packets already split into MQTT frames, and can hold a packet back, which a passive
capture cannot. All clients of a deployment connect to the tap's port; the tap opens one
upstream connection to the broker per client, so every hop (sensor↔broker, broker↔gateway,
broker↔distribution server, broker↔data user) is captured with its direction.

Forwarding: every connection has two directions, each with a reader task, a bounded queue
(:data:`QUEUE_FRAMES`) and a forwarder task that writes and awaits ``drain()``. A receiver
that stops reading therefore stalls only its own direction: the queue fills, the reader
stops reading, and TCP pushes back on that one sender. The trace's order is the order in
which frames were forwarded. In step mode one lock is held across connections while a
packet is held, so exactly one packet waits and "step" releases exactly that one.

Why not one queue and one forwarder for all connections (the earlier design): the
forwarder awaited ``drain()`` after each write, so a single client that stopped reading
(a client reader thread blocked in a callback, a client that died without closing) froze
forwarding for every connection of the deployment once its socket buffers were full, and a
SUBSCRIBE queued behind it never got its SUBACK (``tests/ssdtf/test_tap.py`` shows it with
a real broker).

That head-of-line blocking was a real weakness but not what made ``control-qos`` (and other
attack runs) fail with "no SUBACK for 'ssdtf-ds' in 10 s". Captured failures showed the DS's
SUBSCRIBE unread in the kernel (Recv-Q 21) on a socket of this loop that was missing from the
loop's selector. Cause: the embedded broker's TCP readiness probe. amqtt never closes the
server side of a connection that ends before its CONNECT; when the GC finalized that
StreamWriter (on whichever thread triggered the collection), the transport's ``__del__``
closed the socket, freeing its fd number, and ``StreamWriter.__del__`` then called
``transport.close()`` → ``loop._remove_reader(fd)``. Reused in between by the next accepted
socket (the tap's or the broker's side of the DS connection), that number lost its reader.
Fixed in :meth:`drivers.ssdtf.brokers.EmbeddedBroker.start` (no probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from drivers.ssdtf.mqttcodec import (
    NAMES,
    PACKET_LIMIT,
    FrameSplitter,
    MqttPacket,
    decode_packet,
    redact_connect,
)
from drivers.ssdtf.trace import PacketRecord, Trace

QUEUE_FRAMES = 256
"""Frames buffered per connection and direction before the tap stops reading that sender."""

_Item = tuple[bytes | None, str, bool]
"""A queued frame (None: its sender closed the connection), its note, injected or not."""
PASS_THROUGH = "pass-through: part of a packet over the limit"
"""The note of a queued piece of an oversized packet: written on as it is, never decoded,
recorded or held (see :class:`drivers.ssdtf.mqttcodec.FrameSplitter`)."""


@dataclass
class Connection:
    id: int
    lane: str
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter | None = None
    closed: bool = False
    client_id: str = ""
    connected: bool = False
    """The client's CONNECT has been read (see ``Tap.connect_deadline_s``)."""
    queues: dict[str, asyncio.Queue[_Item]] = field(default_factory=dict)
    """``c2b`` and ``b2c``: the frames read from each side, waiting to be forwarded."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass
class Hop:
    """What an interceptor sees: one packet about to be forwarded."""

    conn: Connection
    direction: str
    raw: bytes
    packet: MqttPacket
    tap: Tap


@dataclass
class Forward:
    """An interceptor's decision: forward these frames (empty list: drop) with a note."""

    frames: list[bytes] = field(default_factory=list)
    note: str = ""


Interceptor = Callable[[Hop], Forward | None]
"""Returns None to forward unchanged, or a :class:`Forward` to drop/replace the packet."""


class Stepper:
    """Step control of a tap: pause before each packet, release one at a time, or run on.

    Thread-safe: the console calls these from its own thread while the tap runs on the
    deployment's loop.
    """

    def __init__(self, tap: Tap, stepping: bool) -> None:
        self._tap = tap
        self.stepping = stepping
        self._credits = 0
        self._wake: asyncio.Event | None = None
        self._held: PacketRecord | None = None
        self._held_changed = threading.Condition()

    @property
    def pending(self) -> PacketRecord | None:
        """The packet held before forwarding (live mode), or None."""
        return self._held

    def step(self, count: int = 1) -> None:
        """Release the next ``count`` packets."""
        self._post(self._grant, count)

    def run_to_end(self) -> None:
        """Stop pausing; forward everything from now on."""
        self.stepping = False
        self._post(self._grant, 0)

    def _post(self, callback: Callable[[int], None], count: int) -> None:
        """Hand ``callback`` to the tap's loop; once the flow has ended (loop closed) there is
        nothing left to release, so a late "step" or "stop" (a screen closing after its run)
        does nothing instead of raising."""
        loop = self._tap.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed between the check and the call
            loop.call_soon_threadsafe(callback, count)

    def pause(self) -> None:
        """Pause again before the next packet."""
        self.stepping = True

    def wait_pending(self, timeout: float = 5.0, after: int = -1) -> PacketRecord | None:
        """Block until a packet with index > ``after`` is held (or ``timeout``); return it.

        ``after`` is the index of the packet just stepped, so a caller never gets the same
        packet back before the tap has forwarded it.
        """
        with self._held_changed:
            self._held_changed.wait_for(
                lambda: self._held is not None and self._held.index > after, timeout
            )
            held = self._held
        return held if held is not None and held.index > after else None

    def _grant(self, count: int) -> None:
        self._credits += count
        if self._wake is not None:
            self._wake.set()

    async def gate(self, record: PacketRecord) -> None:
        if not self.stepping:
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        with self._held_changed:
            self._held = record
            self._held_changed.notify_all()
        while self.stepping and self._credits <= 0:
            self._wake.clear()
            await self._wake.wait()
        if self._credits > 0:
            self._credits -= 1
        with self._held_changed:
            self._held = None
            self._held_changed.notify_all()


class Tap:
    """The proxy. Start it on a running loop with :meth:`start`; clients connect to ``port``."""

    def __init__(
        self,
        upstream: tuple[str, int],
        trace: Trace,
        *,
        stepping: bool = False,
        interceptor: Interceptor | None = None,
        connect_deadline_s: float = 11.0,
        max_unconnected: int = 128,
    ) -> None:
        self.upstream = upstream
        self.connect_deadline_s = connect_deadline_s
        """A client that sends no CONNECT for this long is disconnected: this process's file
        descriptors (two per connection here) are not held by idle connections."""
        self.max_unconnected = max(1, max_unconnected)
        """At most this many connections wait for their CONNECT; a new one beyond it closes
        the oldest waiting one (see ``FlowConfig.max_unconnected``)."""
        self._unconnected: dict[int, Connection] = {}
        """Connections without a CONNECT yet, oldest first (a dict keeps insertion order)."""
        self.trace = trace
        self.interceptor = interceptor
        self.port = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.stepper = Stepper(self, stepping)
        self.connections: dict[int, Connection] = {}
        """The open connections (a closed one is removed, so a connection flood leaves no
        state behind)."""
        self._next = 1
        self._hold: asyncio.Lock | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._hold = asyncio.Lock()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self.stepper.run_to_end()
        if self._server is not None:
            self._server.close()
        tasks = [t for conn in self.connections.values() for t in conn.tasks]
        for conn in list(self.connections.values()):
            self._close(conn)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def find(self, lane: str) -> Connection | None:
        """The newest open connection of ``lane`` (for injections)."""
        for conn in sorted(self.connections.values(), key=lambda c: -c.id):
            if conn.lane == lane and not conn.closed:
                return conn
        return None

    def inject(self, lane: str, direction: str, raw: bytes, note: str = "injected") -> bool:
        """Queue a frame on ``lane``'s newest connection; thread-safe. False if no such lane."""
        conn = self.find(lane)
        if conn is None or self.loop.is_closed():
            return False
        try:
            self.loop.call_soon_threadsafe(self._inject_now, conn, direction, raw, note)
        except RuntimeError:  # the loop closed meanwhile: the flow is over
            return False
        return True

    def _inject_now(self, conn: Connection, direction: str, raw: bytes, note: str) -> None:
        queue = conn.queues.get(direction)
        if queue is None or conn.closed:
            return
        # a task, not put_nowait: the queue is bounded and may be full right now
        self._spawn(conn, queue.put((raw, note, True)), f"tap-{conn.id}-{direction}-inject")

    def _spawn(self, conn: Connection, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self._next, f"conn-{self._next}", writer)
        self._next += 1
        if len(self._unconnected) >= self.max_unconnected:
            oldest = next(iter(self._unconnected.values()))
            self.trace.note(
                f"more than {self.max_unconnected} connections without a CONNECT: "
                "the tap closed the oldest",
                conn=oldest.id,
                lane=oldest.lane,
                event="close",
            )
            self._close(oldest)
        self.connections[conn.id] = conn
        self._unconnected[conn.id] = conn
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as error:
            self.trace.note(f"tap cannot reach the broker: {error}", conn=conn.id)
            self._close(conn)
            return
        if conn.closed:  # evicted while the broker connection was being opened
            up_writer.close()
            return
        conn.upstream_writer = up_writer
        for direction, source, sink in (("c2b", reader, up_writer), ("b2c", up_reader, writer)):
            queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=QUEUE_FRAMES)
            conn.queues[direction] = queue
            name = f"tap-{conn.id}-{direction}"
            self._spawn(conn, self._read(conn, source, queue), f"{name}-read")
            self._spawn(conn, self._forward(conn, direction, sink, queue), f"{name}-forward")
        self._spawn(conn, self._connect_deadline(conn), f"tap-{conn.id}-deadline")

    async def _connect_deadline(self, conn: Connection) -> None:
        await asyncio.sleep(self.connect_deadline_s)
        if not conn.connected and not conn.closed:
            self.trace.note(
                f"no CONNECT within {self.connect_deadline_s:g} s: the tap closed the connection",
                conn=conn.id,
                lane=conn.lane,
                event="close",
            )
            self._close(conn)

    async def _read(
        self, conn: Connection, reader: asyncio.StreamReader, queue: asyncio.Queue[_Item]
    ) -> None:
        """Split one direction's bytes into frames. ``put`` waits while the queue is full, so
        a receiver that does not read stops the tap reading from *its* sender only (TCP
        back-pressure on that one connection), never the other connections."""
        splitter = FrameSplitter(PACKET_LIMIT)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                pieces = splitter.feed(data)
                for kind, size in splitter.oversized:
                    self.trace.note(
                        f"a {NAMES.get(kind, 'packet')} of {size} bytes (over {PACKET_LIMIT}) "
                        "passed through undecoded; the broker's limit applies",
                        conn=conn.id,
                        lane=conn.lane,
                    )
                for frame, whole in pieces:
                    await queue.put((frame, "" if whole else PASS_THROUGH, False))
        except ConnectionError:
            pass
        await queue.put((None, "", False))

    async def _forward(
        self,
        conn: Connection,
        direction: str,
        writer: asyncio.StreamWriter,
        queue: asyncio.Queue[_Item],
    ) -> None:
        """Forward one direction of one connection, in order: interceptor, trace, step gate,
        write, drain. Waiting in ``drain`` for a slow receiver holds up only this queue."""
        while True:
            raw, note, injected = await queue.get()
            if raw is None:
                if not conn.closed:
                    side = "client" if direction == "c2b" else "broker"
                    self.trace.note(
                        f"TCP closed by {side}", conn=conn.id, lane=conn.lane, event="close"
                    )
                self._close(conn)
                return
            if conn.closed:
                return
            if note is PASS_THROUGH:
                writer.write(raw)
                try:
                    await writer.drain()
                except ConnectionError:
                    self._close(conn)
                    return
                continue
            for frame, frame_note in self._decide(conn, direction, raw, note, injected):
                if not await self._send(conn, direction, writer, frame, frame_note):
                    return

    def _decide(
        self, conn: Connection, direction: str, raw: bytes, note: str, injected: bool
    ) -> list[tuple[bytes, str]]:
        """The frames to forward for ``raw``: itself, or what the interceptor made of it."""
        packet = decode_packet(raw)
        if packet.type == 1 and direction == "c2b":
            conn.connected = True
            self._unconnected.pop(conn.id, None)
            self._name_lane(conn, packet)
        if self.interceptor is None or injected:
            return [(raw, note)]
        try:
            decision = self.interceptor(Hop(conn, direction, raw, packet, self))
        except Exception as error:
            self.trace.note(f"interceptor failed: {error!r}", conn=conn.id)
            decision = None
        if decision is None:
            return [(raw, note)]
        if not decision.frames:
            self.trace.add_packet(
                conn.id,
                conn.lane,
                direction,
                redact_connect(raw),
                "dropped",
                decision.note or "dropped",
            )
        return [(f, decision.note) for f in decision.frames]

    async def _send(
        self,
        conn: Connection,
        direction: str,
        writer: asyncio.StreamWriter,
        frame: bytes,
        note: str,
    ) -> bool:
        """Record, (in step mode) hold, then write one frame; False once the connection is gone.

        In step mode one lock is taken across all connections, so exactly one packet is held
        at a time and "step" releases exactly that one, in the order packets reached the gate.
        """
        if self.stepper.stepping and self._hold is not None:
            async with self._hold:
                record = self.trace.add_packet(
                    conn.id, conn.lane, direction, redact_connect(frame), "held", note
                )
                await self.stepper.gate(record)
                self.trace.set_status(record, "forwarded")
                if conn.closed:
                    self.trace.set_status(record, "dropped")
                    return False
                writer.write(frame)
        else:
            record = self.trace.add_packet(
                conn.id, conn.lane, direction, redact_connect(frame), "forwarded", note
            )
            if conn.closed:
                self.trace.set_status(record, "dropped")
                return False
            writer.write(frame)
        try:
            await writer.drain()
        except ConnectionError:
            self._close(conn)
            return False
        return True

    def _name_lane(self, conn: Connection, packet: MqttPacket) -> None:
        """Service clients log in with their role as user name; sensors by client ID."""
        fields = packet.fields
        conn.client_id = str(fields.get("client_id", ""))
        password = str(fields.get("password", ""))
        if password.startswith("<redacted") and fields.get("username"):
            conn.lane = str(fields["username"])
        else:
            conn.lane = conn.client_id or conn.lane

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.connections.pop(conn.id, None)
        self._unconnected.pop(conn.id, None)
        for writer in (conn.client_writer, conn.upstream_writer):
            if writer is not None:
                with contextlib.suppress(RuntimeError):
                    writer.close()
        current = asyncio.current_task()
        for task in list(conn.tasks):
            if task is not current:
                task.cancel()  # readers blocked on a full queue, forwarders blocked in drain
