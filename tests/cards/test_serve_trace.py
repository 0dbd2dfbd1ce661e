"""Serve-side APDU profiling: ``card serve`` records what any host stack sends, and
``safelab card trace`` shows it timed, decoded and by phase (real pcscd + vpcd + pyscard)."""

from __future__ import annotations

import json
import subprocess
import time

from drivers.cards.apdu import GSMA_AID
from drivers.cards.serve_trace import PhaseTracker, parse_since
from tests.cards.conftest import SAFELAB, serving
from tests.cards.test_shared_card import Holder


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SAFELAB, *args], capture_output=True, text=True, timeout=180)


def vendor_like_signature(holder: Holder) -> None:
    """What a vendor provider does per C_Sign: re-SELECT on the basic channel, INIT, UPDATE."""
    _, sw = holder.send(bytes([0x00, 0xA4, 0x04, 0x00, len(GSMA_AID)]) + GSMA_AID)
    assert sw == 0x9000
    _, sw = holder.send(bytes.fromhex("802A00000D840101A1010391020001920104"))
    assert sw == 0x9000
    data, sw = holder.send(bytes.fromhex("802B8000229E20") + bytes(32))
    if sw >> 8 == 0x61:
        data, sw = holder.send(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
    assert sw == 0x9000 and data[0] == 0x33


def test_card_trace_shows_every_apdu_of_any_host_by_phase(pcscd: str) -> None:
    with serving("--profile", "paper-sim", "--speed", "0.01", "--card", "traced", "--modem") as s:
        holder = Holder(s.reader)
        try:
            vendor_like_signature(holder)
            vendor_like_signature(holder)
            # The PC/SC host stays connected while the modem host signs: pcscd powers an idle
            # card off after a grace period, and a power cycle resets the one card for every
            # link, as on a real card (a modem session caught by it got 6881 once in CI).
            signed = run(
                "sign", "--token", s.uris[1], "--mode", "total", "-n", "1", "--warmup", "0"
            )
        finally:
            holder.close()
        assert signed.returncode == 0, signed.stderr
        document: dict = {}
        deadline = time.monotonic() + 10  # the writer thread flushes after each burst
        while time.monotonic() < deadline:
            listing = run("card", "trace", "--card", "traced", "--json")
            assert listing.returncode == 0, listing.stderr
            document = json.loads(listing.stdout)
            if any(a["link"] == "modem" and a["phase"] == "sign" for a in document["apdus"]):
                break
            time.sleep(0.2)
    apdus = document["apdus"]
    pcsc = [a for a in apdus if a["link"] == "pcsc"]
    modem = [a for a in apdus if a["link"] == "modem"]
    assert [(a["name"], a["phase"]) for a in pcsc] == 2 * [
        ("SELECT", "open"),
        ("COMPUTE SIGNATURE INIT", "sign_init"),
        ("COMPUTE SIGNATURE UPDATE", "sign"),
        ("GET RESPONSE", "sign"),
    ]
    update = pcsc[2]
    assert update["card_ms"] > 4 and update["answer_ms"] >= update["card_ms"]  # ECDSA at 0.01x
    assert pcsc[0]["host_gap_ms"] is None and all(a["host_gap_ms"] >= 0 for a in pcsc[1:])
    assert all(a["sw"] in ("9000", "6143", "6142", "6144") for a in pcsc)
    phases = {a["phase"] for a in modem}
    assert {"open", "find", "sign_init", "sign"} <= phases
    summary = {p["phase"]: p for p in document["phases"]}
    assert summary["sign"]["apdus"] == sum(a["phase"] == "sign" for a in apdus)
    # filters: nothing arrived in the future, the last 2 are the last 2
    assert (
        json.loads(run("card", "trace", "--card", "traced", "--json", "--since", "0s").stdout)[
            "apdus"
        ]
        == []
    )
    last = json.loads(run("card", "trace", "--card", "traced", "--json", "--last", "2").stdout)
    assert [a["seq"] for a in last["apdus"]] == [a["seq"] for a in apdus[-2:]]
    human = run("card", "trace", "--card", "traced")
    assert human.returncode == 0 and "per phase" in human.stdout and "COMPUTE" in human.stdout


def test_phases_of_apdus_and_since_parsing() -> None:
    tracker = PhaseTracker()
    assert tracker.phase(bytes.fromhex("0070000001")) == "open"
    assert tracker.phase(bytes.fromhex("0020000108")) == "login"
    assert tracker.phase(bytes.fromhex("81CB010000")) == "find"
    assert tracker.phase(bytes.fromhex("01C0000010")) == "find"  # completes the GET DATA
    assert tracker.phase(bytes.fromhex("812A0101")) == "close"
    assert parse_since("5m", now=1000.0) == 700.0
    assert parse_since("500ms", now=1000.0) == 999.5
    try:
        parse_since("yesterday")
    except ValueError as exc:
        assert "duration" in str(exc)
    else:
        raise AssertionError("a bad --since was accepted")
