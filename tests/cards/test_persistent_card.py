"""Persistent emulated cards: the same keys after a restart of ``card serve``, new ones with
``--fresh`` (a broker that registered the card's certificate keeps trusting it)."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization

from drivers.cards.emulator import provision_lab_card, shared_card
from drivers.cards.emulator.persist import card_path, load_card, save_card
from drivers.tokens.registry import open_token
from tests.cards.conftest import serving


def _served_public_key(*extra: str) -> bytes:
    with serving("--no-pcsc", "--modem", "--speed", "0", "--card", "lab-a", *extra) as served:
        token = open_token(served.uris[0])
        try:
            key = token.public_key()
            cert = token.certificate()
        finally:
            token.close()
    assert cert is not None and cert.public_key() == key
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def test_serve_keeps_the_cards_keys_across_restarts_and_fresh_renews_them(data_dir) -> None:
    first = _served_public_key()
    assert card_path("lab-a").is_file() and card_path("lab-a").stat().st_mode & 0o077 == 0
    assert _served_public_key() == first
    renewed = _served_public_key("--fresh")
    assert renewed != first
    assert _served_public_key() == renewed


def test_a_saved_card_loads_with_every_object(data_dir) -> None:
    store = provision_lab_card(("secp256r1", "brainpoolP256r1"), pin="1234")
    store.pin_tries = 2
    save_card("round-trip", store, ("secp256r1", "brainpoolP256r1"))
    loaded = load_card("round-trip", ("brainpoolP256r1", "secp256r1"), pin=None)
    assert loaded is not None
    assert loaded.pin_tries == 2
    assert set(loaded.private_keys) == set(store.private_keys)
    for ident, key in store.private_keys.items():
        assert loaded.private_keys[ident].key.private_numbers() == key.key.private_numbers()
        assert loaded.private_keys[ident].label == key.label
    assert {i: f.content for i, f in loaded.files.items()} == {
        i: f.content for i, f in store.files.items()
    }
    assert {i: p.point for i, p in loaded.public_keys.items()} == {
        i: p.point for i, p in store.public_keys.items()
    }
    # another set of curves is another card: not loaded from this file
    assert load_card("round-trip", ("secp256r1",), pin=None) is None
    # the file never holds the PIN, only the tries left
    saved = json.loads(card_path("round-trip").read_text())
    assert "pin" not in saved and saved["pin_tries"] == 2


def test_in_process_tokens_of_one_name_reuse_the_saved_card(data_dir) -> None:
    store = shared_card("persist-in-process")
    assert load_card("persist-in-process", ("secp256r1",), pin=None) is not None
    assert shared_card("persist-in-process") is store
    fresh = shared_card("persist-in-process", fresh=True)
    assert fresh is not store
    reloaded = load_card("persist-in-process", ("secp256r1",), pin=None)
    assert reloaded is not None
    assert reloaded.private_keys[b"\x01"].key.private_numbers() == (
        fresh.private_keys[b"\x01"].key.private_numbers()
    )
