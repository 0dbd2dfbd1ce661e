"""A modem on a pseudo-terminal that forwards AT+CSIM / AT+CCHO / AT+CGLA to a card.

Why: without a real modem, the modem transport must still be exercised over a real serial line
with real AT framing, echo, errors and timeouts. This speaks the AT commands a cellular module
offers for SIM access (3GPP TS 27.007 §8.17, §8.45, §8.43, §8.46) on a pty and hands the APDUs
to any card, normally the IoT SAFE emulator. Like a real module it opens the logical channel and
selects the applet itself on ``AT+CCHO`` and answers a session *handle* (a large number that
is not the channel number), and patches the channel bits into the CLA of ``AT+CGLA`` APDUs.

``safelab card serve --modem`` uses it to give users a modem path to the emulated card.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import threading
import tty
from collections.abc import Callable

from drivers.cards.status import SW, SW1_BYTES_REMAINING

ApduProcessor = Callable[[bytes], bytes]

_CSIM = re.compile(r'^AT\+CSIM=(\d+),"([0-9A-Fa-f]*)"$', re.IGNORECASE)
_CGLA = re.compile(r'^AT\+CGLA=(\d+),(\d+),"([0-9A-Fa-f]*)"$', re.IGNORECASE)
_CCHO = re.compile(r'^AT\+CCHO="([0-9A-Fa-f]+)"$', re.IGNORECASE)
_CCHC = re.compile(r"^AT\+CCHC=(\d+)$", re.IGNORECASE)


class PtyModem:
    """A pseudo-terminal modem; :attr:`port` is the path to open as a serial port."""

    def __init__(
        self,
        card: ApduProcessor,
        *,
        echo: bool = True,
        identity: str = "SAFE Lab pty modem",
        stall_on: Callable[[str], bool] | None = None,
    ) -> None:
        """``identity`` answers ATI; ``stall_on(line)`` true: never answer it (timeout tests)."""
        self.card = card
        self.identity = identity
        self.echo = echo
        self.stall_on = stall_on
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._handles: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="pty-modem", daemon=True)
        self.lines_seen: list[str] = []

    def start(self) -> PtyModem:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyModem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return
            buffer += chunk
            while b"\r" in buffer:
                raw, buffer = buffer.split(b"\r", 1)
                line = raw.decode("ascii", errors="replace").strip()
                if line:
                    self._answer(line)

    def _write(self, text: str) -> None:
        os.write(self._master, text.encode("ascii"))

    def _answer(self, line: str) -> None:
        self.lines_seen.append(line)
        if self.echo:
            self._write(line + "\r\n")
        if self.stall_on is not None and self.stall_on(line):
            return
        try:
            lines = self._execute(line)
        except _AtError as error:
            self._write(f"\r\n{error}\r\n")
            return
        self._write("".join(f"\r\n{text}\r\n" for text in lines) + "\r\nOK\r\n")

    def _execute(self, line: str) -> list[str]:
        upper = line.upper()
        if upper == "AT":
            return []
        if upper == "ATI":
            return [self.identity]
        if upper in ("ATE0", "ATE1"):
            self.echo = upper == "ATE1"
            return []
        if upper in ("AT+CCHO=?", "AT+CGLA=?", "AT+CCHC=?", "AT+CSIM=?"):
            return []
        if match := _CSIM.match(line):
            return [self._apdu("CSIM", int(match.group(1)), match.group(2))]
        if match := _CCHO.match(line):
            return [f"+CCHO: {self._open(bytes.fromhex(match.group(1)))}"]
        if match := _CGLA.match(line):
            channel = self._channel(match.group(1))
            return [self._apdu("CGLA", int(match.group(2)), match.group(3), channel)]
        if match := _CCHC.match(line):
            channel = self._channel(match.group(1))
            self.card(bytes([0x00, 0x70, 0x80, channel, 0x00]))
            del self._handles[match.group(1)]
            return []
        raise _AtError("ERROR")

    def _apdu(self, name: str, length: int, hex_text: str, channel: int = 0) -> str:
        if length != len(hex_text) or len(hex_text) % 2 or len(hex_text) < 8:
            raise _AtError("ERROR")
        apdu = bytearray(bytes.fromhex(hex_text))
        if channel:
            apdu[0] = (apdu[0] & 0xFC) | channel  # the MT sets the channel bits (1..3)
        response = self.card(bytes(apdu)).hex().upper()
        return f'+{name}: {len(response)},"{response}"'

    def _open(self, aid: bytes) -> str:
        opened = self.card(bytes.fromhex("0070000001"))
        if len(opened) != 3 or opened[1:] != SW.OK.raw:
            raise _AtError("+CME ERROR: 3")
        channel = opened[0]
        selected = self.card(bytes([channel, 0xA4, 0x04, 0x00, len(aid)]) + aid)
        if selected[-2:] != SW.OK.raw and selected[-2] != SW1_BYTES_REMAINING:
            self.card(bytes([0x00, 0x70, 0x80, channel, 0x00]))
            raise _AtError("+CME ERROR: 4")
        handle = str(secrets.randbelow(10**9) + 10**9)  # a handle, not the channel number
        self._handles[handle] = channel
        return handle

    def _channel(self, handle: str) -> int:
        try:
            return self._handles[handle]
        except KeyError:
            raise _AtError("+CME ERROR: 21") from None  # invalid index


class _AtError(Exception):
    """The final result code a modem gives for a command it refuses."""
