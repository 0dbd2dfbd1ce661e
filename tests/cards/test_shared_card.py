"""Other programs keep their session with the card while SAFE Lab uses it (no card resets).

A second PC/SC client (pyscard, as a vendor's host stack would be) holds the served card on
its own logical channel with the applet selected. ``safelab tokens``, ``triage`` and ``sign``
then use the same card; afterwards the holder's channel must still be open and selected, and
its connection must not have seen a reset (pyscard raises on ``SCARD_W_RESET_CARD``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from drivers.cards.apdu import GSMA_AID
from tests.cards.conftest import SAFELAB, serving


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SAFELAB, *args], capture_output=True, text=True, timeout=180)


class Holder:
    """A pyscard connection holding the card, shared, that never resets it."""

    def __init__(self, reader_name: str) -> None:
        from smartcard.scard import SCARD_LEAVE_CARD, SCARD_SHARE_SHARED
        from smartcard.System import readers

        reader = next(r for r in readers() if str(r) == reader_name)
        self.connection = reader.createConnection()
        self.connection.connect(mode=SCARD_SHARE_SHARED, disposition=SCARD_LEAVE_CARD)
        self.channel = 0

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data), (sw1 << 8) | sw2

    def open_and_select(self) -> None:
        data, sw = self.send(bytes.fromhex("0070000001"))
        assert sw == 0x9000 and len(data) == 1
        self.channel = data[0]
        _, sw = self.send(bytes([self.channel, 0xA4, 0x04, 0x00, len(GSMA_AID)]) + GSMA_AID)
        assert sw == 0x9000

    def application_info_sw(self) -> int:
        """GET DATA application info on the holder's channel: works only while selected."""
        _, sw = self.send(bytes([0x80 | self.channel, 0xCB, 0x00, 0x00, 0x00]))
        return sw

    def close(self) -> None:
        self.connection.disconnect()
        self.connection.release()


@pytest.fixture
def served_reader(pcscd: str) -> Iterator[str]:
    with serving("--profile", "discrete-se", "--speed", "0") as served:
        yield served.reader


def test_a_second_client_keeps_its_session_across_tokens_triage_and_sign(
    served_reader: str,
) -> None:
    holder = Holder(served_reader)
    try:
        holder.open_and_select()
        before = holder.application_info_sw()
        assert before >> 8 in (0x61, 0x90, 0x6C)
        listing = run("tokens", "--json")
        assert listing.returncode == 0, listing.stderr
        cards = json.loads(listing.stdout)["cards"]
        assert any(c["slot"] == served_reader and c["emulated"] for c in cards)
        report = run("triage", "--token", f"iotsafe:pcsc;reader={served_reader}", "-n", "2")
        assert report.returncode == 0, report.stdout + report.stderr
        signed = run(
            "sign",
            "--token",
            f"iotsafe:pcsc;reader={served_reader}",
            "--mode",
            "total",
            "-n",
            "3",
            "--warmup",
            "0",
        )
        assert signed.returncode == 0, signed.stderr
        # the holder's own session survived: same channel, applet still selected, no reset
        assert holder.application_info_sw() == before
    finally:
        holder.close()
