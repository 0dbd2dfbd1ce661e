"""Put a card (normally the IoT SAFE emulator) into a virtual PC/SC reader through vpcd.

Debian's ``vsmartcard-vpcd`` is a pcscd reader driver that listens on TCP (35963 for reader
``Virtual PCD 00 00``, 35964 for ``... 01``); a *card* connects to it. Framing: a 2-byte big
endian length, then the payload. A 1-byte payload is a control: 0 power off, 1 power on,
2 reset, 4 "send your ATR". Anything longer is a command APDU, answered with the response APDU.

Why the socket options matter: vpcd writes the 2-byte length and the APDU in two ``send``
calls. With delayed ACKs on the card's side, Nagle's algorithm at vpcd holds the APDU until
the card acknowledges the header, ~40 ms later, on every APDU. Setting ``TCP_QUICKACK`` right
after each header is read makes the card acknowledge at once (it is not sticky on Linux, so
it is set every time); responses go out in one ``sendall`` with ``TCP_NODELAY``. This took a
naive card from ~44 ms to ~0.1 ms per APDU round trip (``../shared/DESIGN.md``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

from drivers.cards.errors import TransportError

VPCD_PORT = 35963
"""vpcd's port for reader ``Virtual PCD 00 00`` (the next one for ``... 01``)."""

POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4

ApduProcessor = Callable[[bytes], bytes]


class VirtualCard:
    """A card inserted in vpcd's virtual reader, served from a thread until :meth:`stop`."""

    def __init__(
        self,
        card: ApduProcessor,
        atr: bytes,
        *,
        host: str = "127.0.0.1",
        port: int = VPCD_PORT,
        on_reset: Callable[[], None] | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.card = card
        self.atr = atr
        self.host = host
        self.port = port
        self.on_reset = on_reset
        self.connect_timeout_s = connect_timeout_s
        self.apdus = 0
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    def insert(self) -> VirtualCard:
        """Connect to vpcd (the card appears in the reader) and serve in a thread."""
        self._socket = self._connect()
        self._thread = threading.Thread(target=self._serve, name="vpcd-card", daemon=True)
        self._thread.start()
        return self

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"cannot reach vpcd at {self.host}:{self.port} ({exc.strerror})",
                        "start pcscd with the vpcd driver (Debian pcscd and vsmartcard-vpcd; "
                        "`pcscd -f` in a shell, or the system service)",
                    ) from None
                time.sleep(0.1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        return sock

    def _receive_exactly(self, size: int) -> bytes | None:
        assert self._socket is not None
        data = b""
        while len(data) < size:
            chunk = self._socket.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self) -> None:
        sock = self._socket
        assert sock is not None
        try:
            while not self._stop.is_set():
                header = self._receive_exactly(2)
                if header is None:
                    return
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                (length,) = struct.unpack(">H", header)
                payload = self._receive_exactly(length)
                if payload is None:
                    return
                answer = self._handle(payload)
                if answer is not None:
                    sock.sendall(struct.pack(">H", len(answer)) + answer)
        except OSError as exc:
            if not self._stop.is_set():
                self.error = exc

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            control = payload[0]
            if control == GET_ATR:
                return self.atr
            if control in (RESET, POWER_ON, POWER_OFF) and self.on_reset is not None:
                self.on_reset()
            return None
        self.apdus += 1
        return self.card(payload)

    @property
    def reader_suffix(self) -> str:
        """How pcscd's name of this card's reader ends: vpcd slot ``00`` is port 35963."""
        return f" {self.port - VPCD_PORT:02d}"

    def remove(self, wait_s: float = 5.0) -> None:
        """Pull the card out: close the connection, then wait until PC/SC shows it gone.

        Waiting matters because PC/SC clients now leave the card powered when they
        disconnect: a card inserted before pcscd noticed the removal would be taken for the
        old, already powered card and never be powered on (every APDU then fails).
        """
        self._stop.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._socket is not None and wait_s > 0:
            self._wait_until_reader_empty(wait_s)

    def _wait_until_reader_empty(self, wait_s: float) -> None:
        from drivers.cards.pcsc import list_readers

        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                readers = [r for r in list_readers() if r.name.endswith(self.reader_suffix)]
            except TransportError:
                return  # no pcscd: nobody to tell
            if not any(r.card_present and r.atr == self.atr for r in readers):
                return
            time.sleep(0.05)

    stop = remove

    def __enter__(self) -> VirtualCard:
        return self.insert()

    def __exit__(self, *exc: object) -> None:
        self.remove()
