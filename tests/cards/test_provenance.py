"""Provenance through any path: the served emulated card is labelled emulated even when a
third-party PKCS#11 module (OpenSC, reaching it over pcscd + vpcd) is the way to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pkcs11
import pytest

from drivers.tokens.provenance import emulated_reader_for_slot
from tests.cards.conftest import SAFELAB, serving

OPENSC = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"


@pytest.fixture
def opensc() -> str:
    if not Path(OPENSC).exists():
        pytest.fail("OpenSC's PKCS#11 module is missing: apt-get install opensc-pkcs11")
    return OPENSC


def _slot_descriptions(module: str) -> list[str]:
    lib = pkcs11.lib(module)
    return [str(slot.slot_description).strip() for slot in lib.get_slots(token_present=False)]


def test_a_pkcs11_slot_on_the_served_card_is_emulated(pcscd: str, opensc: str) -> None:
    with serving("--profile", "discrete-se", "--speed", "0") as served:
        reader = served.reader
        listing = subprocess.run(
            [*SAFELAB, "tokens", "--json", "--module", opensc],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert listing.returncode == 0, listing.stderr
        modules = {m["path"]: m for m in json.loads(listing.stdout)["modules"]}
        module = modules[opensc]
        assert module["error"] == ""
        assert [s for s in module["emulated_slots"] if reader in s], module
        assert any("emulated card" in s for s in module["empty_slots"] if reader in s)
        # the same decision on the slot as the module reports it to any PKCS#11 caller
        slots = _slot_descriptions(opensc)
        assert reader in slots
        assert emulated_reader_for_slot(reader) == reader
    # card removed: the same slot is no longer the emulator
    assert emulated_reader_for_slot(reader) is None
    assert emulated_reader_for_slot("SoftHSM slot ID 0x0") is None


def test_softhsm_tokens_are_not_emulated(softhsm) -> None:
    listing = subprocess.run(
        [*SAFELAB, "tokens", "--json", "--module", softhsm.module],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert listing.returncode == 0, listing.stderr
    modules = {m["path"]: m for m in json.loads(listing.stdout)["modules"]}
    tokens = modules[softhsm.module]["tokens"]
    assert tokens and not any(t["emulated"] for t in tokens)
