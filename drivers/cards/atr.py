"""Answer-To-Reset: the emulator's own ATR, and decoding any ATR for triage.

The emulated card announces itself in its ATR's historical bytes (``SAFELABEMU``), so a token
reached through a PC/SC reader or a modem knows it is talking to the emulator and labels its
results as emulated, whatever link it went through. Decoding uses pyscard's ``ATR`` class.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

EMULATOR_MARK = b"SAFELABEMU"


def _with_tck(body: bytes) -> bytes:
    """Append TCK: the XOR of every byte from T0 on (needed when T=1 is offered)."""
    return body + bytes([reduce(lambda a, b: a ^ b, body[1:], 0)])


EMULATOR_ATR = _with_tck(bytes([0x3B, 0x80 | len(EMULATOR_MARK), 0x80, 0x01]) + EMULATOR_MARK)
"""TS=3B (direct), T0: TD1 present + 10 historical bytes, TD1: T=0 and TD2 present, TD2: T=1."""


def is_emulator_atr(atr: bytes) -> bool:
    return EMULATOR_MARK in atr


@dataclass(frozen=True)
class AtrSummary:
    hex: str
    protocols: tuple[str, ...]
    historical: str
    checksum_ok: bool | None
    emulated: bool

    def describe(self) -> str:
        parts = [f"protocols {', '.join(self.protocols) or 'none stated'}"]
        if self.historical:
            parts.append(f"historical bytes {self.historical}")
        if self.checksum_ok is False:
            parts.append("TCK WRONG")
        if self.emulated:
            parts.append("SAFE Lab emulator")
        return "; ".join(parts)


def decode_atr(atr: bytes) -> AtrSummary:
    """Protocols, historical bytes (printable where they are) and checksum of an ATR."""
    from smartcard.ATR import ATR

    parsed = ATR(list(atr))
    protocols = tuple(sorted(str(p) for p in parsed.getSupportedProtocols()))
    history = bytes(parsed.getHistoricalBytes())
    shown = (
        history.decode("ascii")
        if history.isascii() and history.decode().isprintable()
        else history.hex().upper()
    )
    checksum = parsed.checksumOK if parsed.hasChecksum else None
    return AtrSummary(atr.hex().upper(), protocols, shown, checksum, is_emulator_atr(atr))
