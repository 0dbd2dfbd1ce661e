"""A card in a PC/SC reader, through pyscard: one connection for the whole run.

One ``SCardConnect`` per run, not per APDU (the reference §2.1 shows a library that reconnects
for every APDU and so inflates every latency it reports). pyscard passes bytes through, as a
:class:`~drivers.cards.transport.Transport` must: GET RESPONSE and retries are the client's.

Never reset a card SAFE Lab did not ask to reset: other programs (a vendor's PKCS#11 provider,
a modem manager, ``pcsc_scan``) may hold the same card. pyscard's ``connect()`` defaults to
``SCARD_UNPOWER_CARD`` as its disposition, so its ``disconnect()`` powers the card off and
every other holder gets "card was reset" (a vendor provider aborted its whole process on it).
So every connection here is ``SCARD_SHARE_SHARED`` with disposition ``SCARD_LEAVE_CARD``, and
listing readers does not connect at all: the ATR comes from ``SCardGetStatusChange``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from drivers.cards.errors import TransportError


@dataclass(frozen=True)
class ReaderInfo:
    index: int
    name: str
    card_present: bool
    atr: bytes = b""


def _pcsc_unavailable(exc: Exception) -> TransportError:
    return TransportError(
        f"cannot talk to the PC/SC daemon ({exc})",
        "start pcscd (Debian package pcscd; `pcscd -f` in a shell if there is no service)",
    )


def ensure_pcscd(timeout_s: float = 15.0) -> subprocess.Popen[bytes] | None:
    """Start ``pcscd -f`` if no pcscd runs (root needed); wait until it lists readers.

    Returns the started process (the caller stops it) or ``None`` if one was running. Used by
    benchmarks and tests; on a normal system pcscd is a service and this does nothing.
    """
    started = None
    if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode != 0:
        if shutil.which("pcscd") is None:
            raise TransportError("pcscd is not installed", "apt-get install pcscd vsmartcard-vpcd")
        started = subprocess.Popen(
            ["pcscd", "-f", "-a"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(TransportError):
            if list_readers():
                return started
        time.sleep(0.2)
    raise TransportError("pcscd shows no reader", "install vsmartcard-vpcd (the virtual reader)")


def list_readers() -> list[ReaderInfo]:
    """Every PC/SC reader, with whether a card is in it and its ATR, without connecting.

    ``SCardGetStatusChange`` reports presence and ATR from pcscd's reader state, so listing
    neither powers, resets nor locks a card another program is using.
    """
    try:
        from smartcard import scard
    except ImportError as exc:  # pragma: no cover - pyscard is a dependency
        raise TransportError("pyscard is not installed", "pip install pyscard") from exc
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        raise _pcsc_unavailable(RuntimeError(scard.SCardGetErrorMessage(result)))
    try:
        result, names = scard.SCardListReaders(context, [])
        if result == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if result != scard.SCARD_S_SUCCESS:
            raise _pcsc_unavailable(RuntimeError(scard.SCardGetErrorMessage(result)))
        states = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        result, new_states = scard.SCardGetStatusChange(context, 0, states)
        if result != scard.SCARD_S_SUCCESS:
            raise _pcsc_unavailable(RuntimeError(scard.SCardGetErrorMessage(result)))
        infos = []
        for index, (name, state, atr) in enumerate(new_states):
            present = bool(state & scard.SCARD_STATE_PRESENT) and not (
                state & scard.SCARD_STATE_MUTE
            )
            infos.append(ReaderInfo(index, str(name), present, bytes(atr) if present else b""))
        return infos
    finally:
        scard.SCardReleaseContext(context)


def shared_connect(connection) -> None:
    """Connect a pyscard connection shared, leaving the card powered when it disconnects."""
    from smartcard.scard import SCARD_LEAVE_CARD, SCARD_SHARE_SHARED

    connection.connect(mode=SCARD_SHARE_SHARED, disposition=SCARD_LEAVE_CARD)


class PcscTransport:
    """APDUs to the card in one reader, chosen by index or by (part of) its name."""

    def __init__(self, reader: str | int | None = None) -> None:
        from smartcard.Exceptions import CardConnectionException, NoCardException
        from smartcard.System import readers

        try:
            found = readers()
        except Exception as exc:
            raise _pcsc_unavailable(exc) from None
        if not found:
            raise TransportError(
                "no PC/SC reader is connected",
                "plug in a reader, or start the emulated card with `safelab card serve`",
            )
        chosen = self._choose(found, reader)
        self.name = str(chosen)
        self._connection = chosen.createConnection()
        try:
            shared_connect(self._connection)
        except NoCardException:
            raise TransportError(
                f"no card in reader {self.name!r}", "insert the SIM (or start `safelab card serve`)"
            ) from None
        except CardConnectionException as exc:
            raise TransportError(
                f"cannot connect to the card in {self.name!r} ({exc})",
                "re-insert the card; check that no other program holds it",
            ) from None
        self.atr = bytes(self._connection.getATR())

    @staticmethod
    def _choose(found: list[Any], reader: str | int | None) -> Any:
        """The reader ``reader`` names (pyscard reader objects are untyped: Any)."""
        names = ", ".join(f"{i}: {r}" for i, r in enumerate(found))
        if reader is None:
            return found[0]
        if isinstance(reader, int) or (isinstance(reader, str) and reader.isdigit()):
            index = int(reader)
            if 0 <= index < len(found):
                return found[index]
            raise TransportError(f"there is no reader {index}", f"readers: {names}")
        matches = [r for r in found if reader.lower() in str(r).lower()]
        if len(matches) == 1:
            return matches[0]
        exact = [r for r in matches if str(r) == reader]
        if len(exact) == 1:
            return exact[0]
        what = "no reader matches" if not matches else f"{len(matches)} readers match"
        raise TransportError(f"{what} {reader!r}", f"give its index or full name; readers: {names}")

    def transmit(self, apdu: bytes) -> bytes:
        from smartcard.Exceptions import CardConnectionException

        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except CardConnectionException as exc:
            raise TransportError(
                f"the card in {self.name!r} stopped answering ({exc}); was it removed?",
                "re-insert it and run again; the trials measured so far are kept",
            ) from None
        return bytes(data) + bytes([sw1, sw2])

    def close(self) -> None:
        """Disconnect with ``SCARD_LEAVE_CARD`` (set at connect) and release the context."""
        with contextlib.suppress(Exception):  # already gone: nothing to release
            self._connection.disconnect()
        with contextlib.suppress(Exception):
            self._connection.release()
