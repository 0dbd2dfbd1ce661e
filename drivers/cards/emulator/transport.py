"""The in-process transport: the client's APDUs go straight to an emulated applet.

No sockets, no framing, no buffering: the only time an APDU takes is the applet's modelled
delay (plus a function call), so what the trace shows is the profile, not this link.
"""

from __future__ import annotations

from drivers.cards.emulator.applet import IoTSafeApplet
from drivers.cards.errors import TransportError


class InProcessTransport:
    """A :class:`drivers.cards.transport.Transport` to an :class:`IoTSafeApplet` in this process."""

    def __init__(self, applet: IoTSafeApplet, name: str | None = None) -> None:
        self.applet = applet
        self.name = name or f"emulator:{applet.profile.name}"
        self._closed = False

    def transmit(self, apdu: bytes) -> bytes:
        if self._closed:
            raise TransportError(
                f"the link {self.name} is closed", "open the token again to reach the card"
            )
        return self.applet.process_apdu(apdu)

    def close(self) -> None:
        self._closed = True
