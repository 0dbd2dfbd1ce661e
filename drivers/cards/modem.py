"""A SIM behind a cellular modem: APDUs over AT+CSIM, or AT+CCHO/AT+CGLA/AT+CCHC channels.

Two ways a modem passes APDUs (3GPP TS 27.007; reference §2.2, §2.3):

- ``csim``: ``AT+CSIM=<len>,"<hex>"`` → ``+CSIM: <len>,"<hex response + SW>"``. The host
  manages logical channels itself (MANAGE CHANNEL, CLA channel bits), so the client's APDUs
  pass through unchanged.
- ``cgla``: ``AT+CCHO="<AID>"`` makes the modem open a channel and select the applet; it
  answers a *session handle*, not a channel number. APDUs then go as
  ``AT+CGLA=<handle>,<len>,"<hex>"`` with the CLA channel bits left at 0 (the modem patches
  them), and ``AT+CCHC=<handle>`` closes. This transport therefore offers
  :meth:`ModemTransport.open_channel` / :meth:`close_channel` for the client to use instead of
  MANAGE CHANNEL + SELECT (``manages_channels`` is True).

Echo (``ATE1``) is tolerated and switched off at start; ``ERROR`` and ``+CME ERROR: n`` become
:class:`~drivers.cards.errors.TransportError` with the command that failed; every command has
a timeout (slow SIM operations, keygen or sign, can exceed 1 s: the default is 10 s). For each
APDU the time spent in AT framing is measured apart from the wait for the modem's answer
(:attr:`ModemTransport.last_timing`), so a trace can show what the AT layer costs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import serial

from drivers.cards.errors import TransportError

_RESPONSE = re.compile(r'^\+(CSIM|CGLA):\s*(\d+)\s*,\s*"?([0-9A-Fa-f]*)"?\s*$')
_CCHO = re.compile(r"^(?:\+CCHO:\s*)?(\d+)\s*$")
_FINAL_OK = "OK"
_FINAL_ERRORS = ("ERROR", "+CME ERROR", "+CMS ERROR")


@dataclass(frozen=True)
class AtTiming:
    """Where the time of one AT exchange went (ns)."""

    framing_ns: int
    """Hex encoding, writing the command, reading and parsing the lines: the AT layer's cost."""
    wait_ns: int
    """From the command written to the first byte of the answer: modem + SIM + serial line."""
    chars_out: int
    chars_in: int


class ModemTransport:
    """APDUs to a SIM through a modem's AT interface on a serial port (or a pseudo-terminal)."""

    def __init__(
        self,
        port: str,
        *,
        mode: str = "csim",
        baudrate: int = 115200,
        command_timeout_s: float = 10.0,
    ) -> None:
        if mode not in ("csim", "cgla"):
            raise TransportError(f"unknown modem mode {mode!r}", "use csim or cgla")
        self.mode = mode
        self.name = f"modem:{port} ({mode})"
        self.command_timeout_s = command_timeout_s
        self.manages_channels = mode == "cgla"
        self.last_timing: AtTiming | None = None
        self._handle: str | None = None
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(
                f"cannot open the modem port {port} ({exc})",
                "check the device path (e.g. /dev/ttyUSB2) and that no other program uses it",
            ) from None
        self._serial.reset_input_buffer()
        self.command("ATE0")  # echo off; a modem still echoing this line is tolerated

    # -- AT layer ------------------------------------------------------------------------

    def command(self, line: str, timeout_s: float | None = None) -> list[str]:
        """Send one AT command; return its information lines (final OK stripped)."""
        lines, _ = self._exchange(line, timeout_s)
        return lines

    def _exchange(self, line: str, timeout_s: float | None = None) -> tuple[list[str], AtTiming]:
        start = time.perf_counter_ns()
        payload = (line + "\r").encode("ascii")
        try:
            self._serial.write(payload)
            self._serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(
                f"the modem port went away ({exc})", "reconnect the modem; the partial run is kept"
            ) from None
        written = time.perf_counter_ns()
        deadline = time.monotonic() + (timeout_s or self.command_timeout_s)
        buffer = b""
        first_byte: int | None = None
        lines: list[str] = []
        while True:
            try:
                chunk = self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise TransportError(
                    f"the modem port went away ({exc})",
                    "reconnect the modem; the partial run is kept",
                ) from None
            if chunk:
                if first_byte is None:
                    first_byte = time.perf_counter_ns()
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    text = raw.decode("ascii", errors="replace").strip()
                    if not text or text == line:  # blank, or the echo of our own command
                        continue
                    if text == _FINAL_OK:
                        end = time.perf_counter_ns()
                        wait = (first_byte or end) - written
                        timing = AtTiming(
                            framing_ns=(end - start) - wait,
                            wait_ns=wait,
                            chars_out=len(payload),
                            chars_in=sum(len(x) + 2 for x in lines) + 6,
                        )
                        return lines, timing
                    if text.startswith(_FINAL_ERRORS):
                        raise TransportError(
                            f"the modem answered {text!r} to {self._shown(line)}",
                            "check that the modem supports the command and the SIM is present"
                            " (AT+CPIN?); +CME ERROR codes are in 3GPP TS 27.007 §9.2",
                        )
                    lines.append(text)
            elif time.monotonic() > deadline:
                raise TransportError(
                    f"the modem did not answer {self._shown(line)} within "
                    f"{timeout_s or self.command_timeout_s:g} s",
                    "raise the timeout (slow SIM operations can take seconds) or check the port",
                )

    @staticmethod
    def _shown(line: str) -> str:
        return line if len(line) <= 40 else line[:37] + "..."

    # -- channels (cgla mode) -----------------------------------------------------------------

    def open_channel(self, aid: bytes) -> None:
        """AT+CCHO: the modem opens a logical channel and selects ``aid``; keep its handle."""
        lines = self.command(f'AT+CCHO="{aid.hex().upper()}"')
        for text in lines:
            match = _CCHO.match(text)
            if match:
                self._handle = match.group(1)
                return
        raise TransportError(
            f"AT+CCHO gave no session handle ({lines!r})",
            "the modem may not support AT+CCHO: use the csim mode",
        )

    def close_channel(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self.command(f"AT+CCHC={handle}")

    # -- Transport ----------------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> bytes:
        encoded = apdu.hex().upper()
        if self.mode == "csim":
            line = f'AT+CSIM={len(encoded)},"{encoded}"'
        else:
            if self._handle is None:
                raise TransportError(
                    "no channel open on the modem", "open it with AT+CCHO first (open_channel)"
                )
            line = f'AT+CGLA={self._handle},{len(encoded)},"{encoded}"'
        lines, timing = self._exchange(line)
        self.last_timing = timing
        for text in lines:
            match = _RESPONSE.match(text)
            if match:
                length, data = int(match.group(2)), match.group(3)
                if length != len(data) or len(data) < 4 or len(data) % 2:
                    raise TransportError(
                        f"malformed +{match.group(1)} answer {text!r}",
                        "the modem's answer length does not match its data",
                    )
                return bytes.fromhex(data)
        raise TransportError(
            f"the modem's answer to {self._shown(line)} has no response line",
            f"got {lines!r}; check the modem's AT+CSIM/AT+CGLA support",
        )

    def close(self) -> None:
        try:
            if self._handle is not None:
                self.close_channel()
        except TransportError:
            pass
        finally:
            self._serial.close()
