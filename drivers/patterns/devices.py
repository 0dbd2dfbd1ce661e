"""The device side of a pattern: real clients on the real peers, with the toggles as mechanisms.

One :meth:`operate` is one event delivered and acknowledged: MQTT ``PUBLISH`` answered by
``PUBACK`` (QoS 1) or ``PUBCOMP`` (QoS 2; QoS 0 has no acknowledgement, so it ends when
written), an HTTPS batch of requests all answered, a CoAP confirmable GET answered by its ACK.
A device reads its :class:`~drivers.patterns.toggles.Toggles` at every operation
(:meth:`apply`), so a flip takes effect on the next one:

- ``keepalive``: the connection stays up between operations (else: connect, operate, close);
- ``resume``: each new TLS connection offers the last session (0 signatures when resumed);
- ``token-session``: the signer keeps its token session or opens one per signature;
- ``preauth``: a background thread opens the next authenticated connection (and signs the
  next JWTs) as soon as the last one is used, so the request path finds it ready; its card
  time is counted apart (``WatchedToken.background``);
- ``jwt-ttl`` / ``jwt-batch`` / ``jwt-refresh``: JWT reuse for a time, within a batch, and
  renewal in the background before expiry;
- ``nodelay``: ``TCP_NODELAY`` on the MQTT socket; ``psk``: CoAP over DTLS-PSK.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import SafeLabError
from drivers.patterns.faults import WatchedToken
from drivers.patterns.toggles import Toggles
from drivers.protocols.mqtt import ProtocolError
from drivers.protocols.timing import TimedContext
from drivers.tls.bridge import client_context
from drivers.tls.signer import TokenSigner


@dataclass(frozen=True)
class OpResult:
    """One operation on the request path (the latency is the caller's: event -> ack)."""

    auth_ns: int = 0
    """Time spent authenticating on the request path (connect + handshake, JWT signing)."""
    connected: bool = False
    """A new connection (TLS handshake) was made on the request path."""
    resumed: bool = False
    reused: bool = False
    """Served by a kept or pre-authenticated connection / JWT: no authentication waited for."""
    acked_ns: int = 0
    """``perf_counter_ns`` when the acknowledgement arrived (before any teardown)."""


class Device:
    """What every pattern device shares: the signer, the toggles, the preauth thread."""

    transport = ""

    def __init__(self, watch: WatchedToken, signer: TokenSigner, toggles: Toggles) -> None:
        self.watch = watch
        self.signer = signer
        self.toggles = toggles
        self.connections = 0
        self.resumed_handshakes = 0
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._prepared = threading.Event()
        self._thread: threading.Thread | None = None
        self.background_error: BaseException | None = None
        self.units_sent = 0
        """Messages / requests / chunks sent and acknowledged (retransmissions included)."""
        self.session_lifetime_s = 0.0
        """Keep-alive tuning: a kept connection older than this is replaced (0: never)."""
        self._opened = 0.0

    def _expired(self) -> bool:
        return (
            self.session_lifetime_s > 0
            and time.monotonic() - self._opened > self.session_lifetime_s
        )

    def apply(self, toggles: Toggles) -> None:
        """Take the toggles for the next operation (a flip)."""
        old, self.toggles = self.toggles, toggles
        if old.token_session != toggles.token_session:
            with self._lock:  # not while the preauth thread is connecting with it
                self.signer.close()
                self.signer.reuse_session = toggles.token_session == "kept"
        if toggles.preauth and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._preauth_loop, daemon=True)
            self._thread.start()
        elif not toggles.preauth and self._thread is not None:
            self._stop_thread()

    def wait_prepared(self, timeout_s: float = 10.0) -> None:
        """Preauth: wait until the background task made its first session ready (the device
        boots authenticated), so the first event does not race it."""
        if self._thread is not None:
            self._prepared.wait(timeout_s)

    def _preauth_loop(self) -> None:
        with self.watch.background():
            while not self._stop.is_set():
                try:
                    self.prepare()
                    self._prepared.set()
                    self.background_error = None
                except Exception as exc:  # a background task must not die silently
                    self.background_error = exc
                    self._stop.wait(0.05)
                    continue
                self._wake.wait(0.1)
                self._wake.clear()

    def _stop_thread(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def prepare(self) -> None:
        """Preauth: make the next operation's authentication ready (background thread)."""

    def reset(self) -> None:
        """Fault: the open connection is reset under the device (a peer restart, a NAT
        timeout); the device notices at its next operation, as a real one would."""

    def operate(self, size: int) -> OpResult:
        raise NotImplementedError

    def close(self) -> None:
        self._stop_thread()


class MqttDevice(Device):
    """paho-mqtt over the token-bridged TLS context, as :mod:`drivers.protocols.mqtt`."""

    transport = "mqtt"

    def __init__(
        self,
        watch: WatchedToken,
        signer: TokenSigner,
        toggles: Toggles,
        host: str,
        port: int,
        cert: Path,
        ca: Path,
        *,
        qos: int = 1,
        timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        super().__init__(watch, signer, toggles)
        self.host, self.port, self.qos, self.timeout_s = host, port, qos, timeout_s
        self.keepalive_s = keepalive_s
        self.context: TimedContext = client_context(  # type: ignore[assignment]
            signer, cert, ca, context_class=TimedContext
        )
        self.context.resume_session = None  # type: ignore[attr-defined]
        self._client: Any = None
        self._count = 0
        self.last_nodelay: bool | None = None
        self.bulk: BulkPlan | None = None
        self.apply(toggles)

    def _connect(self) -> tuple[Any, bool]:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        context = self.context
        context.reset_clock()
        context.tcp_nodelay = self.toggles.nodelay
        if not self.toggles.resume:
            context.resume_session = None  # type: ignore[attr-defined]
        self._count += 1
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"safelab-pattern-{id(self)}-{self._count}",
            protocol=mqtt.MQTTv311,
        )
        client.tls_set_context(context)
        connected = threading.Event()
        state: dict[str, Any] = {}

        def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
            state["reason"] = reason
            connected.set()

        def on_disconnect(c: Any, _u: object, _f: object, _r: object, _p: object) -> None:
            # A lost connection stays lost: paho's loop would reconnect on its own (and sign
            # outside the request path); the device reconnects at its next operation instead.
            c.disconnect()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except (ssl.SSLError, OSError) as exc:
            self.signer.raise_if_failed()
            raise ProtocolError(
                f"MQTT over TLS to {self.host}:{self.port} failed ({exc})",
                "check that the broker runs and trusts the token's certificate",
            ) from None
        client.loop_start()
        if not connected.wait(self.timeout_s) or getattr(state["reason"], "is_failure", False):
            client.loop_stop()
            raise ProtocolError(
                f"no CONNACK from {self.host}:{self.port} within {self.timeout_s:g} s",
                "check the broker's log",
            )
        socket = context.last_socket
        resumed = bool(socket is not None and socket.session_reused)
        if socket is not None and self.toggles.resume:
            context.resume_session = socket.session  # type: ignore[attr-defined]
        if socket is not None:  # what the kernel has, not what was asked
            import socket as sockets

            self.last_nodelay = bool(socket.getsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY))
        self.connections += 1
        self.resumed_handshakes += int(resumed)
        self._opened = time.monotonic()
        return client, resumed

    def _ready(self) -> bool:
        return self._client is not None and self._client.is_connected() and not self._expired()

    def prepare(self) -> None:
        with self._lock:
            if not self._ready():
                self._drop()
                self._client, _ = self._connect()

    def reset(self) -> None:
        with self._lock:
            client = self._client
            sock = client.socket() if client is not None else None
            if sock is not None:
                _shut(sock)
                deadline = time.monotonic() + 2.0
                while client.is_connected() and time.monotonic() < deadline:
                    time.sleep(0.01)  # paho's network thread sees the reset

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def operate(self, size: int) -> OpResult:
        start = time.perf_counter_ns()
        resumed = connected = False
        with self._lock:
            reused = self._ready()
            if not reused:
                self._drop()
                self._client, resumed = self._connect()
                connected = True
            client = self._client
            if not self.toggles.keepalive:
                self._client = None  # used once; the device sleeps disconnected after it
        auth_ns = time.perf_counter_ns() - start if connected else 0
        try:
            if self.bulk is not None:
                self.bulk.send(self, client)
            else:
                self.publish(client, b"x" * size)
            acked = time.perf_counter_ns()
        finally:
            if not self.toggles.keepalive:
                _close_later(client)  # the device goes to sleep; not the next event's wait
                self._wake.set()  # preauth: authenticate the next one now
        return OpResult(auth_ns, connected, resumed, reused, acked)

    def publish(self, client: Any, payload: bytes) -> None:
        """One PUBLISH, returned when acknowledged (QoS 1/2) or written (QoS 0)."""
        try:
            info = client.publish("safelab/pattern", payload, qos=self.qos)
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise ProtocolError(f"MQTT publish failed ({exc})", "check the broker") from None
        if not info.is_published():
            raise ProtocolError(
                f"no acknowledgement of a QoS {self.qos} PUBLISH within {self.timeout_s:g} s",
                "check the broker's log",
            )
        self.units_sent += 1

    def close(self) -> None:
        super().close()
        with self._lock:
            self._drop()


@dataclass
class BulkPlan:
    """Bulk transfer (Table 7's firmware/OTA row) as chunked MQTT PUBLISHes, each acknowledged.

    ``resume``: after a cut the transfer continues from the last acknowledged chunk (else it
    starts again from zero). ``chunk_auth``: the card signs every chunk's SHA-256 (per-chunk
    authentication, the paper's remedy for authenticating large data: a cut loses at most one
    chunk's worth of trust); otherwise one signature over the image's manifest per transfer.
    ``cut_after``: a fault, the connection is reset (TCP RST) after that many chunks of the
    first transfer.
    """

    image_bytes: int
    chunk_bytes: int
    resume: bool = True
    chunk_auth: bool = False
    cut_after: int = 0
    next_chunk: int = 0
    cuts: int = 0
    transfers: int = 0

    @property
    def chunks(self) -> int:
        return max(1, -(-self.image_bytes // self.chunk_bytes))

    def send(self, device: MqttDevice, client: Any) -> None:
        import hashlib

        try:
            if self.next_chunk == 0 and not self.chunk_auth:
                manifest = hashlib.sha256(
                    b"safelab-image:%d:%d" % (self.transfers, self.image_bytes)
                ).digest()
                device.signer.sign_digest(manifest)
            for index in range(self.next_chunk, self.chunks):
                if self.cut_after and not self.cuts and index == self.cut_after:
                    self.cuts += 1
                    _cut(client)
                size = min(self.chunk_bytes, self.image_bytes - index * self.chunk_bytes)
                payload = index.to_bytes(4, "big") + bytes(max(size, 0))
                if self.chunk_auth:
                    payload += device.signer.sign_digest(hashlib.sha256(payload).digest()).der
                device.publish(client, payload)
                self.next_chunk = index + 1
        except SafeLabError:
            if not self.resume:
                self.next_chunk = 0
            raise
        self.next_chunk = 0
        self.transfers += 1


def _cut(client: Any) -> None:
    """Reset the client's connection now and wait until paho has seen it."""
    sock = client.socket()
    if sock is not None:
        _shut(sock)
    deadline = time.monotonic() + 2.0
    while client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)


@dataclass(kw_only=True)
class ImageDownload:
    """What the two bulk downloads share: a firmware image published on the peer (``path``,
    ``size``, its ``sha256``), fetched in numbered units (HTTPS ranges, CoAP blocks).

    ``resume``: after a cut the download continues from the next unit missing (else from
    unit 0). ``chunk_auth``: the card signs every received unit's SHA-256 (a per-unit
    receipt); otherwise one signature over the image's manifest per transfer. ``cut_after``:
    the first transfer loses its connection before that unit. The whole image's SHA-256 is
    checked at the end. Subclasses fetch a unit over their transport."""

    path: str
    size: int
    sha256: bytes
    resume: bool = True
    chunk_auth: bool = False
    cut_after: int = 0
    unit_bytes: int = 1024
    next_unit: int = 0
    cuts: int = 0
    transfers: int = 0
    bytes_received: int = 0
    """Every body byte read, re-downloads included (what resumption saves)."""
    parts: dict[int, bytes] = field(default_factory=dict)

    @property
    def units(self) -> int:
        return max(1, -(-self.size // self.unit_bytes))

    def _begin(self, signer: Any) -> None:
        """At unit 0: forget earlier parts, and sign the manifest unless every unit is."""
        import hashlib

        if self.next_unit == 0:
            self.parts.clear()
            if not self.chunk_auth:
                signer.sign_digest(hashlib.sha256(b"safelab-image:%s" % self.sha256).digest())

    def _keep(self, signer: Any, index: int, body: bytes) -> None:
        import hashlib

        if self.chunk_auth:
            signer.sign_digest(hashlib.sha256(body).digest())
        self.parts[index] = body
        self.next_unit = index + 1

    def _broken(self) -> None:
        """The transfer broke: without ``resume`` the next attempt starts from unit 0."""
        if not self.resume:
            self.next_unit = 0

    def _finish(self, what: str) -> None:
        import hashlib

        image = b"".join(self.parts[i] for i in range(self.units))
        self.next_unit = 0
        if hashlib.sha256(image).digest() != self.sha256:
            raise ProtocolError(
                f"the image {what} does not match its published SHA-256",
                "a resumed transfer joined the wrong parts: a bug",
            )
        self.transfers += 1


@dataclass(kw_only=True)
class RangeDownload(ImageDownload):
    """Bulk transfer over HTTPS: the device downloads the image in ``Range`` requests of
    ``unit_bytes`` (206 Partial Content each), on one connection; a cut is a TCP reset, and
    a resumed download asks the new connection for the rest."""

    def fetch(self, device: HttpsDevice, connection: http.client.HTTPSConnection) -> None:
        try:
            self._begin(device.signer)
            for index in range(self.next_unit, self.units):
                if self.cut_after and not self.cuts and index == self.cut_after:
                    self.cuts += 1
                    if connection.sock is not None:
                        _shut(connection.sock)
                first = index * self.unit_bytes
                last = min(first + self.unit_bytes, self.size) - 1
                connection.request("GET", self.path, headers={"Range": f"bytes={first}-{last}"})
                response = connection.getresponse()
                body = response.read()
                self.bytes_received += len(body)
                if response.status != 206 or len(body) != last - first + 1:
                    raise ProtocolError(
                        f"the server answered HTTP {response.status} with {len(body)} bytes "
                        f"to a range of {last - first + 1}",
                        "check that the HTTPS peer serves ranges of /firmware/",
                    )
                self._keep(device.signer, index, body)
                device.units_sent += 1
        except (ssl.SSLError, OSError, http.client.HTTPException, SafeLabError) as exc:
            self._broken()
            if isinstance(exc, SafeLabError):
                raise
            raise ProtocolError(
                f"the download broke at chunk {self.next_unit} ({exc!r})", "retry"
            ) from None
        self._finish("downloaded")


def _shut(sock: Any) -> None:
    """Reset a TCP connection now (RST: linger 0), as a restarted peer or a middlebox would."""
    import socket as sockets
    import struct

    with contextlib.suppress(OSError):
        sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(sockets.SHUT_RDWR)


def _close_later(client: Any) -> None:
    """DISCONNECT and stop paho's network thread without blocking the caller (joining that
    thread waits for its select to wake, which would delay the next event)."""

    def close() -> None:
        try:
            client.disconnect()
        finally:
            client.loop_stop()

    threading.Thread(target=close, daemon=True).start()


class JwtSource:
    """JWTs for the request path: fresh, cached for a TTL, per batch, or pre-signed."""

    def __init__(self, device: HttpsDevice, kid: str) -> None:
        from drivers.protocols.jwt_client import TokenJwtKey
        from drivers.tokens.base import HashOn

        self.device = device
        self.kid = kid
        self.key = TokenJwtKey(device.signer, HashOn.HOST)
        self.key_card = TokenJwtKey(device.signer, HashOn.TOKEN)
        self._cached: tuple[str, float] | None = None
        self._spare: list[str] = []
        self._lock = threading.Lock()
        self.signed = 0

    def _sign(self, lifetime_s: float) -> str:
        from drivers.protocols.jwt_client import make_jwt

        key = self.key_card if self.device.toggles.hash_on == "card" else self.key
        self.signed += 1
        return make_jwt(key, self.kid, ttl_s=max(lifetime_s, 60.0))

    def batch(self, n: int) -> tuple[list[str], int]:
        """JWTs for ``n`` requests of one operation, and how many were signed inline."""
        toggles = self.device.toggles
        before = self.signed
        out: list[str] = []
        with self._lock:
            for _ in range(n):
                now = time.monotonic()
                if toggles.jwt_ttl > 0:
                    if self._cached is None or self._cached[1] <= now:
                        self._cached = (self._sign(toggles.jwt_ttl), now + toggles.jwt_ttl)
                    out.append(self._cached[0])
                elif toggles.jwt_batch and out:
                    out.append(out[0])
                elif self._spare:
                    out.append(self._spare.pop(0))
                else:
                    out.append(self._sign(60.0))
        return out, self.signed - before

    def prepare(self, pool: int) -> None:
        """Background: renew a cached JWT before it expires; keep ``pool`` fresh ones signed."""
        toggles = self.device.toggles
        with self._lock:
            now = time.monotonic()
            if toggles.jwt_ttl > 0:
                renew = toggles.jwt_refresh or toggles.preauth
                margin = toggles.jwt_ttl * 0.3
                if renew and (self._cached is None or self._cached[1] - now < margin):
                    self._cached = (self._sign(toggles.jwt_ttl), now + toggles.jwt_ttl)
                return
            if toggles.preauth:
                want = 1 if toggles.jwt_batch else pool
                while len(self._spare) < want:
                    self._spare.append(self._sign(60.0))


class HttpsDevice(Device):
    """``http.client`` on the token-bridged TLS context; with ``kid``, JWT-authenticated."""

    transport = "https"

    def __init__(
        self,
        watch: WatchedToken,
        signer: TokenSigner,
        toggles: Toggles,
        host: str,
        port: int,
        cert: Path,
        ca: Path,
        *,
        kid: str | None = None,
        batch_size: int = 1,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(watch, signer, toggles)
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.batch_size = batch_size
        self.context: TimedContext = client_context(  # type: ignore[assignment]
            signer, cert, ca, context_class=TimedContext
        )
        self.context.resume_session = None  # type: ignore[attr-defined]
        self.jwt = JwtSource(self, kid) if kid else None
        self.path = "/api" if kid else "/"
        self._connection: http.client.HTTPSConnection | None = None
        self.bulk: RangeDownload | None = None
        self.apply(toggles)

    def apply(self, toggles: Toggles) -> None:
        super().apply(toggles)
        if (toggles.jwt_refresh or toggles.preauth) and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._preauth_loop, daemon=True)
            self._thread.start()

    def _connect(self) -> tuple[http.client.HTTPSConnection, bool]:
        context = self.context
        context.reset_clock()
        if not self.toggles.resume:
            context.resume_session = None  # type: ignore[attr-defined]
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=context, timeout=self.timeout_s
        )
        try:
            connection.connect()
        except (ssl.SSLError, OSError) as exc:
            connection.close()
            self.signer.raise_if_failed()
            raise ProtocolError(
                f"HTTPS to {self.host}:{self.port} failed ({exc!r})",
                "check that the server runs and trusts the token's certificate",
            ) from None
        socket = context.last_socket
        resumed = bool(socket is not None and socket.session_reused)
        if socket is not None and self.toggles.resume:
            context.resume_session = socket.session  # type: ignore[attr-defined]
        self.connections += 1
        self.resumed_handshakes += int(resumed)
        self._opened = time.monotonic()
        return connection, resumed

    def reset(self) -> None:
        with self._lock:
            connection = self._connection
            if connection is not None and connection.sock is not None:
                _shut(connection.sock)

    def prepare(self) -> None:
        if self.toggles.preauth:
            with self._lock:
                if self._connection is not None and self._expired():
                    self._connection.close()
                    self._connection = None
                if self._connection is None:
                    self._connection, _ = self._connect()
        if self.jwt is not None:
            self.jwt.prepare(self.batch_size)

    def operate(self, size: int) -> OpResult:
        start = time.perf_counter_ns()
        resumed = connected = False
        with self._lock:
            if self._connection is not None and self._expired():
                self._connection.close()
                self._connection = None
            reused = self._connection is not None
            if not reused:
                self._connection, resumed = self._connect()
                connected = True
            connection = self._connection
            if not self.toggles.keepalive:
                self._connection = None
        assert connection is not None
        auth_ns = time.perf_counter_ns() - start if connected else 0
        jwt_inline = 0
        try:
            if self.bulk is not None:
                self.bulk.fetch(self, connection)
                return OpResult(auth_ns, connected, resumed, reused, time.perf_counter_ns())
            tokens: list[str | None] = [None] * self.batch_size
            if self.jwt is not None:
                jwt_start = time.perf_counter_ns()
                signed, jwt_inline = self.jwt.batch(self.batch_size)
                tokens = list(signed)
                auth_ns += time.perf_counter_ns() - jwt_start if jwt_inline else 0
            for token in tokens:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                connection.request("GET", self.path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise ProtocolError(
                        f"the server answered HTTP {response.status} ({body[:60]!r})",
                        "check the JWT key registration and the certificate",
                    )
                self.units_sent += 1
            acked = time.perf_counter_ns()
        except (ssl.SSLError, OSError, http.client.HTTPException, ProtocolError) as exc:
            connection.close()
            with self._lock:
                if self._connection is connection:
                    self._connection = None
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"HTTPS request failed ({exc!r})", "check the server") from None
        finally:
            if not self.toggles.keepalive:
                connection.close()
            self._wake.set()
        return OpResult(auth_ns, connected, resumed, reused and not jwt_inline, acked)

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


@dataclass(kw_only=True)
class BlockDownload(ImageDownload):
    """Bulk transfer over CoAP block-wise (RFC 7959): the device fetches the image one Block2
    at a time (a confirmable ``GET`` with ``Block2: num`` answered by its ACK, 1 KiB each,
    SZX 6, CoAP's largest), in one DTLS session per transfer. Block2 requests are
    independent, so a cut (the DTLS session lost, as when a link drops: a new session, a new
    handshake) can resume from the next block."""

    def fetch(self, device: CoapDevice, session: Any) -> None:
        """The blocks still missing, over ``session`` (a handshaken DTLS client)."""
        try:
            self._begin(device.signer)
            for index in range(self.next_unit, self.units):
                if self.cut_after and not self.cuts and index == self.cut_after:
                    self.cuts += 1
                    session.close()  # the link drops: this DTLS session is gone
                    raise ProtocolError(
                        f"the DTLS session was lost before block {index} (injected cut)",
                        "retry on a new session",
                    )
                self._keep(device.signer, index, self._block(session, index))
                device.units_sent += 1
        except SafeLabError:
            self._broken()
            raise
        self._finish("fetched block-wise")

    def _block(self, session: Any, index: int) -> bytes:
        import warnings

        import aiocoap
        from aiocoap.optiontypes import BlockOption

        from drivers.protocols.coap import _MESSAGE_IDS

        message_id = next(_MESSAGE_IDS) & 0xFFFF
        token = message_id.to_bytes(2, "big")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            request = aiocoap.Message(
                code=aiocoap.GET,
                mtype=aiocoap.CON,
                uri_path=(self.path.strip("/"),),
                mid=message_id,
                token=token,
            )
        szx = self.unit_bytes.bit_length() - 5  # 1024 -> 6
        request.opt.block2 = BlockOption.BlockwiseTuple(index, False, szx)
        session.send(request.encode())
        while True:
            reply = aiocoap.Message.decode(session.receive(self.unit_bytes + 256))
            if reply.mid == message_id or reply.token == token:
                break
        block = reply.opt.block2
        expected = min(self.unit_bytes, self.size - index * self.unit_bytes)
        self.bytes_received += len(reply.payload)
        if (
            reply.code != aiocoap.CONTENT
            or block is None
            or block.block_number != index
            or len(reply.payload) != expected
        ):
            raise ProtocolError(
                f"block {index}: the CoAP server answered {reply.code} with "
                f"{len(reply.payload)} bytes ({block})",
                "check that the image was published on the CoAP peer",
            )
        return bytes(reply.payload)


class CoapDevice(Device):
    """A CoAP confirmable GET per operation over DTLS (certificate or PSK): a new DTLS session
    each time (libcoap 4.3.1 resumes nothing), so ``psk`` is the only remedy here."""

    transport = "coap"

    def __init__(self, watch: WatchedToken, signer: TokenSigner, toggles: Toggles, make: Any):
        super().__init__(watch, signer, toggles)
        self._make = make
        self._client = make(toggles.psk)
        self._psk = toggles.psk
        self.bulk: BlockDownload | None = None

    def operate(self, size: int) -> OpResult:
        if self.bulk is not None:
            return self._transfer(self.bulk)
        if self.toggles.psk != self._psk:
            self._client, self._psk = self._make(self.toggles.psk), self.toggles.psk
        trial = self._client.trial()
        self.connections += 1
        return OpResult(
            trial.phases.get("handshake", 0), True, False, False, time.perf_counter_ns()
        )

    def _transfer(self, bulk: BlockDownload) -> OpResult:
        """One DTLS session (a full handshake: libcoap resumes nothing) for the blocks still
        missing; a lost session fails the attempt, the retry resumes on a new one."""
        from drivers.tls.dtls import DtlsClient

        client = self._client
        start = time.perf_counter_ns()
        session = DtlsClient(
            self.signer,
            client.cert_chain,
            client.ca_file,
            client.host,
            client.port,
            timeout_s=client.timeout_s,
            key=client.key,
        )
        try:
            session.handshake()
            self.connections += 1
            auth_ns = time.perf_counter_ns() - start
            bulk.fetch(self, session)
            acked = time.perf_counter_ns()
        finally:
            session.close()
        return OpResult(auth_ns, True, False, False, acked)


class VpnDevice(Device):
    """Remote management over TLS-VPN: OpenVPN 2.6 whose client key is the token (the
    management interface answers ``>PK_SIGN``, as :class:`~drivers.protocols.vpn.VpnClient`).

    An operation needs the tunnel up: without ``keepalive`` a fresh ``openvpn`` client is
    started, its handshake signed by the card, and stopped after the operation (the paper's
    "VPN set-up" cost, △); with ``keepalive`` it stays up (the paper's remedy, "always-on
    VPN") and later operations find it connected; ``preauth`` brings the next tunnel up in the
    background. Acknowledgement: the client's management interface answers ``state`` with
    ``CONNECTED`` for the live tunnel. Limit: the peers run without root, so the tunnel is
    ``dev null`` (no tun device): the operator's command is not carried through it; what is
    measured is what the paper's △ is about, the tunnel's set-up. OpenVPN disables TLS
    resumption, so ``resume`` does not apply.
    """

    transport = "vpn"

    def __init__(
        self,
        watch: WatchedToken,
        signer: TokenSigner,
        toggles: Toggles,
        server: Any,
        credentials: Any,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        from drivers.protocols.base import Condition
        from drivers.protocols.vpn import VpnClient

        super().__init__(watch, signer, toggles)
        self.client = VpnClient(signer, Condition(), server, credentials, timeout_s=timeout_s)
        self.server, self.credentials = server, credentials
        self._tunnel: tuple[Any, Any] | None = None
        self._count = 0
        self._stopping: list[threading.Thread] = []
        self._stopping_lock = threading.Lock()
        self.apply(toggles)

    def _up(self) -> tuple[Any, Any]:
        """Start an openvpn client (its own management port) and drive it to CONNECTED."""
        import subprocess

        from drivers.peers.openvpn import write_client_config

        self._count += 1
        folder = self.client.workdir / f"tunnel-{self._count}"
        config = write_client_config(folder, self.server, self.credentials)
        log = folder / "client.log"
        process = subprocess.Popen(
            [self.client.binary, "--config", str(config.path), "--log", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        saved = self.client.config
        try:
            self.client.config = config
            management = self.client._connect_management(process)
            self.client._drive(management, process, log)
        except BaseException:
            _stop_vpn(process, None)
            raise
        finally:
            self.client.config = saved
        self.signer.raise_if_failed()
        self.connections += 1
        self._opened = time.monotonic()
        return process, management

    def _ready(self) -> bool:
        return self._tunnel is not None and self._tunnel[0].poll() is None and not self._expired()

    def prepare(self) -> None:
        if self.toggles.preauth:
            with self._lock:
                if not self._ready():
                    self._drop()
                    self._tunnel = self._up()

    def _drop(self) -> None:
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            self._stop_later(tunnel)

    def _stop_later(self, tunnel: tuple[Any, Any]) -> None:
        """Stop a tunnel without blocking the request path (openvpn exits in its own time);
        :meth:`close` waits for these, so no client outlives the run."""
        thread = threading.Thread(target=_stop_vpn, args=tunnel, daemon=True)
        thread.start()
        with self._stopping_lock:
            self._stopping = [t for t in self._stopping if t.is_alive()] + [thread]

    def reset(self) -> None:
        with self._lock:
            if self._tunnel is not None:
                _stop_vpn(*self._tunnel)  # the tunnel is gone; noticed at the next operation

    def operate(self, size: int) -> OpResult:
        start = time.perf_counter_ns()
        connected = False
        with self._lock:
            reused = self._ready()
            if not reused:
                self._drop()
                self._tunnel = self._up()
                connected = True
            tunnel = self._tunnel
            if not self.toggles.keepalive:
                self._tunnel = None
        assert tunnel is not None
        auth_ns = time.perf_counter_ns() - start if connected else 0
        try:
            _confirm_connected(tunnel[1], self.client.timeout_s)
            acked = time.perf_counter_ns()
            self.units_sent += 1
        except (OSError, ProtocolError) as exc:
            with self._lock:
                if self._tunnel is tunnel:
                    self._tunnel = None
            self._stop_later(tunnel)
            raise ProtocolError(f"the VPN tunnel is down ({exc})", "reconnect") from None
        finally:
            if not self.toggles.keepalive:
                self._stop_later(tunnel)
                self._wake.set()
        return OpResult(auth_ns, connected, False, reused, acked)

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._tunnel is not None:
                _stop_vpn(*self._tunnel)
                self._tunnel = None
        with self._stopping_lock:
            stopping = list(self._stopping)
        for thread in stopping:
            thread.join(timeout=15)
        self.client.close()


def _confirm_connected(management: Any, timeout_s: float) -> None:
    """Ask the client's management interface for its state; CONNECTED or an error."""
    management.settimeout(timeout_s)
    management.sendall(b"state\n")
    pending = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        chunk = management.recv(65536)
        if not chunk:
            raise ProtocolError("the VPN client's management interface closed", "reconnect")
        pending += chunk
        for raw in pending.split(b"\n"):
            line = raw.decode(errors="replace").strip()
            if line.startswith(">"):
                continue  # real-time notifications (>STATE:, >LOG:) are not the answer
            if ",CONNECTED," in line:
                return
            if "," in line and line.split(",")[0].isdigit():
                raise ProtocolError(f"the VPN is not connected ({line})", "reconnect")
    raise ProtocolError("the VPN client did not answer `state`", "reconnect")


def _stop_vpn(process: Any, management: Any) -> None:
    from drivers.protocols.vpn import _stop

    if management is not None:
        with contextlib.suppress(OSError):
            management.close()
    _stop(process)
