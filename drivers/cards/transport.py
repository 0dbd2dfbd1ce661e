"""What every link to a card offers: send one command APDU, get the response with its SW.

The client never knows whether the card is the in-process emulator, a PC/SC reader (pyscard)
or a SIM behind a modem (AT+CSIM / AT+CGLA): each is a :class:`Transport`. A transport passes
bytes through and does nothing clever: no automatic GET RESPONSE, no retries, so the APDU
trace shows what really went over the link (the reference §2.1: pyscard and javax.smartcardio
behave the same way).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """A link to one card. Not thread-safe: the token's device lock serialises callers."""

    name: str
    """Human name of the link, e.g. ``emulator:paper-sim`` or a PC/SC reader name."""

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return the response data followed by SW1 SW2.

        Raises :class:`drivers.cards.errors.TransportError` when the link fails.
        """
        ...

    def close(self) -> None:
        """Release the link (safe to call twice)."""
        ...


@runtime_checkable
class ChannelManagingTransport(Transport, Protocol):
    """A link that opens the applet's channel itself (a modem's AT+CCHO / AT+CGLA / AT+CCHC).

    When ``manages_channels`` is true the client calls :meth:`open_channel` instead of
    MANAGE CHANNEL + SELECT and :meth:`close_channel` instead of MANAGE CHANNEL close, and
    sends every APDU with CLA channel bits 0: the link puts the real channel in.
    """

    manages_channels: bool

    def open_channel(self, aid: bytes) -> None:
        """Open a logical channel with the applet ``aid`` selected on it."""
        ...

    def close_channel(self) -> None:
        """Close the channel :meth:`open_channel` opened."""
        ...
