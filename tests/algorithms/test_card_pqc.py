"""PQC signatures made by the emulated card: real chained APDUs, the RAM limit, the model."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

from drivers.algorithms.card_model import sign_cost
from drivers.algorithms.card_sign import MESSAGE, sign_on_card
from drivers.cards import apdu
from drivers.cards.apdu import Command, Ins, Mode, ObjectRef
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import CardStore, InProcessTransport, IoTSafeApplet, load_profile
from drivers.cards.emulator.pqc import add_pqc_key, pqc_key_id
from drivers.cards.errors import ProfileError
from drivers.cards.status import SW
from drivers.errors import SafeLabError
from tests.cards.conftest import card_link


def test_ml_dsa_44_leaves_the_card_in_ten_get_responses_and_verifies() -> None:
    store = CardStore()
    result = sign_on_card("ml-dsa-44", "pqc-sim", store=store)
    assert result.signature_bytes == 2420
    assert result.sign_apdus == 12  # INIT, UPDATE (61 00), 10 x GET RESPONSE
    assert result.get_responses == 10
    assert result.bytes_from_card >= 2420 + 3
    assert result.verified
    assert result.modelled_card_ms is not None and result.modelled_card_ms > 100


def test_the_card_signature_verifies_with_cryptography_on_its_own() -> None:
    """Sign over raw APDUs and check the signature with cryptography's ML-DSA, not the card's
    own key object."""
    store = CardStore()
    key = add_pqc_key(store, "ml-dsa-44")
    applet = IoTSafeApplet(store, load_profile("pqc-sim"), speed=0)
    client = IoTSafeClient(InProcessTransport(applet))
    client.open()
    digest = hashlib.sha256(MESSAGE).digest()
    ref = ObjectRef(id=pqc_key_id("ml-dsa-44"))
    init = client.command(
        lambda cla: apdu.compute_signature_init(
            cla, 1, ref, Mode.FINAL_HASH, signature_algorithm=0x20
        )
    )
    assert init.sw == SW.OK
    response = client.command(lambda cla: apdu.compute_signature_update_final_hash(cla, 1, digest))
    client.close()
    assert response.sw == SW.OK and response.data[:3] == b"\x33\x09\x74"
    public = mldsa.MLDSA44PublicKey.from_public_bytes(key.key.public_bytes)
    public.verify(response.data[3:], digest)


def test_extended_length_fetches_the_signature_in_one_response() -> None:
    result = sign_on_card("ml-dsa-65", "pqc-sim", extended=True)
    assert result.sign_apdus == 2 and result.get_responses == 0
    assert result.signature_bytes == 3309 and result.verified


def test_a_card_without_extended_length_answers_6700() -> None:
    store = CardStore()
    add_pqc_key(store, "ml-dsa-44")
    applet = IoTSafeApplet(store, load_profile("pqc-sim"), speed=0)
    client = IoTSafeClient(InProcessTransport(applet))
    client.open()
    command = Command(0x81, Ins.COMPUTE_SIGNATURE_UPDATE, 0x80, 1, b"\x9e\x20" + bytes(32), 0, True)
    assert client.exchange(command).sw == SW.WRONG_LENGTH
    client.close()


def test_the_paper_sim_refuses_ml_dsa_for_ram_and_opens_no_session() -> None:
    with pytest.raises(SafeLabError, match=r"6A84.*7,540 B.*4,096 B"):
        sign_on_card("ml-dsa-44", "paper-sim")
    store = CardStore()
    add_pqc_key(store, "ml-dsa-44")
    applet = IoTSafeApplet(store, load_profile("paper-sim"), speed=0)
    client = IoTSafeClient(InProcessTransport(applet))
    client.open()
    ref = ObjectRef(id=pqc_key_id("ml-dsa-44"))
    init = client.command(
        lambda cla: apdu.compute_signature_init(
            cla, 1, ref, Mode.FINAL_HASH, signature_algorithm=0x20
        )
    )
    assert init.sw == SW.NOT_ENOUGH_MEMORY
    update = client.command(lambda cla: apdu.compute_signature_update_final_hash(cla, 1, bytes(32)))
    assert update.sw == SW.CONDITIONS_NOT_SATISFIED  # no session: nothing was signed
    assert not update.data
    client.close()


def test_falcon_does_not_fit_even_the_bigger_card() -> None:
    with pytest.raises(SafeLabError, match=r"FN-DSA-512.*40,609 B"):
        sign_on_card("fn-dsa-512", "pqc-sim")
    cost = sign_cost("fn-dsa-512", "pqc-sim")
    assert not cost.fits and cost.compute_ms is None


def test_wrong_algorithm_code_for_the_key_is_refused() -> None:
    store = CardStore()
    add_pqc_key(store, "ml-dsa-44")
    applet = IoTSafeApplet(store, load_profile("pqc-sim"), speed=0)
    client = IoTSafeClient(InProcessTransport(applet))
    client.open()
    ref = ObjectRef(id=pqc_key_id("ml-dsa-44"))
    init = client.command(
        lambda cla: apdu.compute_signature_init(cla, 1, ref, signature_algorithm=0x04)
    )
    assert init.sw == SW.INCORRECT_DATA
    client.close()


@pytest.mark.parametrize("name", ["ml-dsa-44", "ml-dsa-65", "slh-dsa-128s"])
def test_the_model_counts_the_apdus_the_card_really_exchanges(name: str) -> None:
    cost = sign_cost(name, "pqc-sim")
    chained = sign_on_card(name, "pqc-sim")
    extended = sign_on_card(name, "pqc-sim", extended=True)
    assert cost.chained_apdus == chained.sign_apdus
    assert cost.extended_apdus == extended.sign_apdus
    assert chained.modelled_link_ms is not None and extended.modelled_link_ms is not None
    assert chained.modelled_link_ms > extended.modelled_link_ms  # chaining costs link time


def test_ml_dsa_chained_apdus_through_pcscd_and_vpcd(request: pytest.FixtureRequest) -> None:
    """The same 2,420-byte signature through the real PC/SC stack (pcscd + vpcd + pyscard)."""
    store = CardStore()
    applet = IoTSafeApplet(store, load_profile("pqc-sim"), speed=0)
    with card_link("pcsc", applet, request) as transport:
        result = sign_on_card("ml-dsa-44", "pqc-sim", transport=transport, store=store)
    assert result.verified and result.signature_bytes == 2420
    assert result.get_responses == 10 and result.sign_apdus == 12


def test_a_bad_pqc_profile_field_is_named(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.toml"
    path.write_text("[card.pqc]\ncpu_mhz = 30.0\nram_bytes = 4096\nclock = 3\n")
    with pytest.raises(ProfileError, match=r"card\.pqc\.clock"):
        load_profile(path)
