"""Hosted AIDs: the emulated card answers under a vendor stack's own AID, and says which AID an
unknown SELECT asked for (``card serve --aid``, ``aid=`` on an emulated token spec)."""

from __future__ import annotations

import json
import subprocess

from drivers.cards.apdu import GSMA_AID
from drivers.cards.emulator import INSTANT, IoTSafeApplet, provision_lab_card
from drivers.tokens.registry import open_token
from tests.cards.conftest import SAFELAB, serving
from tests.cards.test_shared_card import Holder

VENDOR_AID = bytes.fromhex("A00000003053F12401770101495341")
"""A 15-byte proprietary applet AID (Thales' IoT SAFE applet, research notes §1.1)."""
UNKNOWN_AID = bytes.fromhex("A0000000041010")


def select(aid: bytes, channel: int = 0) -> bytes:
    return bytes([channel, 0xA4, 0x04, 0x00, len(aid)]) + aid


def test_the_applet_answers_under_hosted_aids_and_reports_unknown_ones() -> None:
    told: list[bytes] = []
    applet = IoTSafeApplet(
        provision_lab_card(),
        INSTANT,
        speed=0,
        hosted_aids=(VENDOR_AID,),
        on_unknown_aid=told.append,
    )
    assert applet.process_apdu(select(VENDOR_AID)) == b"\x90\x00"
    assert applet.process_apdu(select(GSMA_AID)) == b"\x90\x00"
    assert applet.process_apdu(select(VENDOR_AID[:9])) == b"\x90\x00"  # partial: ISO 7816-4
    assert applet.process_apdu(select(UNKNOWN_AID)) == b"\x6a\x82"
    assert told == [UNKNOWN_AID]
    # selected under the vendor AID, the IoT SAFE commands work (6Cxx: Le 00 is not exact)
    applet.process_apdu(select(VENDOR_AID))
    assert applet.process_apdu(bytes.fromhex("80CB000000"))[-2] in (0x90, 0x61, 0x6C)


def test_an_emulated_token_spec_with_aid_hosts_that_aid() -> None:
    token = open_token(f"iotsafe:emulated;speed=0;card=aid-test;aid={VENDOR_AID.hex()}")
    try:
        with token.open() as session:
            key = session.find_key()
            session.sign_init(key)
            signature = session.sign(b"data")
        assert signature.verify(token.public_key(), b"data", None)
        assert any(
            e.command[1] == 0xA4 and e.command.endswith(VENDOR_AID) and e.sw == 0x9000
            for e in token.trace.last(50)
        )
    finally:
        token.close()


def test_serve_hosts_a_15_byte_aid_over_pcsc_and_logs_unknown_selects(pcscd: str) -> None:
    with serving("--profile", "discrete-se", "--speed", "0", "--aid", VENDOR_AID.hex()) as served:
        uris, reader = served.uris, served.reader
        holder = Holder(reader)
        try:
            _, sw = holder.send(select(VENDOR_AID))
            assert sw == 0x9000
            assert holder.application_info_sw() >> 8 in (0x61, 0x90, 0x6C)
            _, sw = holder.send(select(UNKNOWN_AID))
            assert sw == 0x6A82
        finally:
            holder.close()
        signed = subprocess.run(
            [
                *SAFELAB,
                "sign",
                "--token",
                f"{uris[0]};aid={VENDOR_AID.hex()}",
                "-n",
                "2",
                "--warmup",
                "0",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert signed.returncode == 0, signed.stderr
        assert json.loads(signed.stdout)["run"]["emulated"] is True
        out = served.stop()
    assert f"SELECT of AID {UNKNOWN_AID.hex().upper()}" in out
    assert f"--aid {UNKNOWN_AID.hex().upper()}" in out
    assert f"SELECT of AID {VENDOR_AID.hex().upper()}" not in out
