"""Every IoT SAFE command through the client against the emulated applet, plus quirks & errors."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from drivers.cards import apdu
from drivers.cards.apdu import ISO, Mode, ObjectRef
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import CardStore, InProcessTransport, IoTSafeApplet
from drivers.cards.errors import (
    AppletNotFoundError,
    CardKeyNotFoundError,
    CardPinError,
    ClassNotSupportedError,
    ConditionsNotSatisfiedError,
    ResponseFormatError,
    SecurityStatusError,
    TransportError,
)
from drivers.errors import KeyNotFoundError

from .conftest import PAPER_DATA, make_client

DIGEST = hashlib.sha256(PAPER_DATA).digest()


def der(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def cert_key(client: IoTSafeClient, file_id: int = 2) -> ec.EllipticCurvePublicKey:
    cert = x509.load_der_x509_certificate(client.read_file(ObjectRef.of(file_id)))
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def verifies(key: ec.EllipticCurvePublicKey, raw: bytes, digest: bytes = DIGEST) -> bool:
    try:
        key.verify(der(raw), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except Exception:
        return False
    return True


def test_reference_sequence_bytes_on_the_wire(card_store: CardStore) -> None:
    """The applet answers the reference's bytes (§2.2 with 33 00 40), and the trace shows them."""
    client, _ = make_client(card_store, signature_length="two-byte")
    client.open()
    mark = client.trace.mark()
    raw = client.sign_digest(ObjectRef.of(1), DIGEST)
    entries = client.trace.since(mark)
    assert [e.command.hex().upper() for e in entries] == [
        "812A00010D840101A1010391020001920104",
        "812B8001229E20" + DIGEST.hex().upper(),
        "01C0000043",
    ]
    assert [e.sw for e in entries] == [0x9000, 0x6143, 0x9000]
    assert entries[2].response[:3] == b"\x33\x00\x40" and len(entries[2].response) == 69
    assert entries[2].note == "GET RESPONSE after 6143"
    assert verifies(cert_key(client), raw)
    client.close()
    assert client.trace.last(1)[0].command.hex().upper() == "00708001"


def test_trace_entries_are_complete(client: IoTSafeClient) -> None:
    client.get_random(8)
    entry = client.trace.last(1)[0]
    assert entry.name == "GET RANDOM" and entry.sw == 0x9000
    assert entry.bytes_out == 5 and entry.bytes_in == 10
    assert entry.duration_ns >= 0 and entry.start_ns > 0
    assert "9000" in entry.line() and entry.sw_meaning.startswith("9000 OK")
    assert entry.as_dict()["command"] == f"8{client.channel}84000008"
    with pytest.raises(AttributeError):
        entry.sw = 0  # type: ignore[misc]  # frozen


def test_application_info_and_object_list(client: IoTSafeClient) -> None:
    info = client.application_info()
    assert info.applet_id == "SAFE Lab emulator"
    assert info.max_sessions == 4 and info.signature_algorithms & 0x04
    objects = client.object_list()
    kinds = {(o.kind, o.id.hex(), o.label) for o in objects}
    assert ("private", "01", "client") in kinds and ("file", "02", "client-cert") in kinds
    signing = [o for o in objects if o.can_sign]
    assert {o.curve for o in signing} == {"secp256r1", "brainpoolP256r1"}
    key = client.object_info("private", ObjectRef.of(1))
    assert key.label == "client" and key.can_sign
    assert client.object_info("file", ObjectRef.parse("client-cert")).file_size


def test_every_signature_mode_verifies_against_the_certificate(client: IoTSafeClient) -> None:
    public = cert_key(client)
    message = bytes(range(256)) * 3
    digest = hashlib.sha256(message).digest()
    for mode, sign in (
        (Mode.FINAL_HASH, lambda: client.sign_final_hash(digest)),
        (Mode.FULL_TEXT, lambda: client.sign_full_text(message)),
        (Mode.LAST_BLOCK, lambda: client.sign_last_block(message)),
    ):
        client.sign_init(ObjectRef.of(1), mode)
        assert verifies(public, sign(), digest), mode


def test_brainpool_key_signs(client: IoTSafeClient) -> None:
    public = cert_key(client, 7)
    assert isinstance(public.curve, ec.BrainpoolP256R1)
    assert verifies(public, client.sign_digest(ObjectRef.parse("client-bp"), DIGEST))


def test_verify_signature_on_card(client: IoTSafeClient) -> None:
    raw = client.sign_digest(ObjectRef.of(1), DIGEST)
    assert client.verify(ObjectRef.of(1), raw, digest=DIGEST)
    assert not client.verify(ObjectRef.of(1), raw, digest=hashlib.sha256(b"other").digest())
    assert client.trace.last(1)[0].sw == 0x6D01
    assert client.verify(ObjectRef.of(1), raw, message=PAPER_DATA)


def test_read_files_in_chunks(card_store: CardStore) -> None:
    client, _ = make_client(card_store)
    client.read_chunk = 100
    client.open()
    content = client.read_file(ObjectRef.of(2))
    assert content == card_store.files[b"\x02"].content
    reads = [e for e in client.trace.entries() if e.name == "READ FILE"]
    assert len(reads) == -(-len(content) // 100)
    assert x509.load_der_x509_certificate(client.read_file(ObjectRef.of(3))).subject


def test_keygen_put_key_dh_random(fresh_store: CardStore) -> None:
    client, _ = make_client(fresh_store)
    client.open()
    before = client.read_public_key(ObjectRef.of(6))
    generated = client.generate_key_pair(ObjectRef.of(6))
    assert generated.private_id == b"\x06" and generated.point != before
    assert client.read_public_key(ObjectRef.of(6)) == generated.point
    new_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), generated.point)
    assert verifies(new_public, client.sign_digest(ObjectRef.of(6), DIGEST))

    peer = ec.generate_private_key(ec.SECP256R1())
    point = peer.public_key().public_bytes(apdu_encoding(), apdu_format())
    client.put_public_key(ObjectRef.of(5), point)
    assert client.read_public_key(ObjectRef.of(5)) == point
    secret = client.compute_dh(ObjectRef.of(4), ObjectRef.of(5))
    card_public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), client.read_public_key(ObjectRef.of(4))
    )
    assert secret == peer.exchange(ec.ECDH(), card_public)

    randoms = {client.get_random(32) for _ in range(3)}
    assert len(randoms) == 3 and all(len(r) == 32 for r in randoms)
    assert len(client.get_random(256)) == 256


def apdu_encoding():
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.X962


def apdu_format():
    from cryptography.hazmat.primitives import serialization

    return serialization.PublicFormat.UncompressedPoint


# ------------------------------------------------------------------------------- quirks


@pytest.mark.parametrize(
    "quirks",
    [
        {"cla": "iso"},
        {"cla": "proprietary"},
        {"t0": False},
        {"strict_le": False},
        {"signature_format": "der"},
        {"signature_length": "two-byte"},
        {"signature_format": "der", "signature_length": "two-byte", "t0": False},
        {"auto_close_after_sign": False},
        {"first_session": 0, "max_sessions": 1},
        {"stale_session": "replace", "auto_close_after_sign": False},
    ],
)
def test_client_tolerates_applet_quirks(card_store: CardStore, quirks: dict) -> None:
    client, _ = make_client(card_store, **quirks)
    client.open()
    public = cert_key(client)
    for _ in range(3):
        assert verifies(public, client.sign_digest(ObjectRef.of(1), DIGEST))
    client.sign_init(ObjectRef.of(1), Mode.FULL_TEXT)
    assert verifies(public, client.sign_full_text(PAPER_DATA))
    client.close()


def test_class_fallback_is_traced_and_remembered(card_store: CardStore) -> None:
    client, _ = make_client(card_store, cla="iso")
    client.open()
    client.get_random(4)
    notes = [e.note for e in client.trace.entries() if e.sw == 0x6E00 or e.note]
    assert any("after 6E00" in note for note in notes)
    assert client.cla_class == ISO
    mark = client.trace.mark()
    client.get_random(4)
    assert [e.sw for e in client.trace.since(mark)] == [0x9000]


def test_session_fallback_and_stale_session(card_store: CardStore) -> None:
    client, _ = make_client(card_store, first_session=0, max_sessions=1)
    client.open()
    client.sign_digest(ObjectRef.of(1), DIGEST)
    assert client.sign_session == 0

    client, _ = make_client(card_store, auto_close_after_sign=False)
    client.open()
    client.sign_digest(ObjectRef.of(1), DIGEST)
    mark = client.trace.mark()
    client.sign_digest(ObjectRef.of(1), DIGEST)  # the first session is still open on the card
    sws = [e.sw for e in client.trace.since(mark)]
    assert sws[:3] == [0x6985, 0x9000, 0x9000]  # stale INIT, close, INIT again


def test_wrong_le_is_resent(card_store: CardStore) -> None:
    client, _ = make_client(card_store, strict_le=True)
    client.open()
    client.application_info()
    first, second = client.trace.last(2)
    assert first.sw >> 8 == 0x6C and second.command[-1] == first.sw & 0xFF


# ------------------------------------------------------------------------------- errors


def test_wrong_aid_is_a_named_error(card_store: CardStore) -> None:
    client, _ = make_client(card_store)
    client.aid = apdu.THALES_AID
    with pytest.raises(AppletNotFoundError) as info:
        client.open()
    assert "A00000003053F12401770101495341" in info.value.problem
    assert "A0000005590010" in info.value.fix


def test_unknown_key_is_a_named_error(client: IoTSafeClient) -> None:
    with pytest.raises(CardKeyNotFoundError) as info:
        client.sign_init(ObjectRef.of(0x09))
    assert isinstance(info.value, KeyNotFoundError) and info.value.sw == 0x6A82
    with pytest.raises(CardKeyNotFoundError):
        client.read_public_key(ObjectRef.parse("nobody"))
    with pytest.raises(ConditionsNotSatisfiedError):
        client.sign_init(ObjectRef.of(4))  # an ECDH-only key cannot sign


def test_applet_error_status_words(card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, speed=0)

    def send(hex_apdu: str) -> str:
        return applet.process_apdu(bytes.fromhex(hex_apdu)).hex().upper()

    assert send("802A00010D840101A1010391020001920104") == "6D00"  # not selected on channel 0
    assert send("822A0101") == "6881"  # channel 2 not open
    assert send("0070000001") == "019000"
    assert send("01A4040007A0000005590011") == "6A82"  # wrong AID
    assert send("01A4040007A0000005590010") == "9000"
    assert send("812A0009") == "6A86"  # no session 09
    assert send("812B8001229E20" + "00" * 32) == "6985"  # UPDATE without INIT
    assert send("812A0001028401") == "6A80"  # truncated TLV
    assert send("812A0001038401") == "6700"  # Lc larger than the data
    assert send("812A00010D840101A1010491020001920104") == "6A80"  # mode 04
    assert send("812A00010D840101A1010391020002920104") == "6A80"  # SHA-384 not offered
    assert send("8199000000") == "6D00"
    assert send("8148000000") == "6D00"  # COMPUTE PRF not implemented
    assert send("81CB0500") == "6A86"
    assert send("81B0FFFF03830102F0") == "6B00"  # offset beyond the file
    assert send("81C0000010") == "6985"  # nothing to GET
    assert send("81CB01") == "6700"  # malformed APDU
    assert send("0170000001") == "029000"
    assert send("0070000001") == "039000"
    assert send("0070000001") == "6A81"  # no channel left
    assert send("00708001") == "9000"


def test_emulator_verify_rejects_bad_signature(card_store: CardStore) -> None:
    client, _ = make_client(card_store)
    client.open()
    assert not client.verify(ObjectRef.of(1), bytes(64), digest=DIGEST)


class ScriptedTransport:
    """A link that answers from a script: for malformed and failing responses."""

    name = "scripted"

    def __init__(self, answers: list[bytes | Exception]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []

    def transmit(self, apdu_bytes: bytes) -> bytes:
        self.sent.append(apdu_bytes)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ([b"\x90"], ResponseFormatError),  # one status byte
        ([b"\x01\x02\x90\x00"], ResponseFormatError),  # two channel numbers
        ([b"\x01\x90\x00", b"\x90\x00", b"\x33\x05\x01\x90\x00"], ResponseFormatError),
        ([b"\x01\x90\x00", b"\x90\x00", b"\xc1\x05\x84\x90\x00"], ResponseFormatError),
        ([b"\x01\x90\x00", b"\x90\x00", OSError("modem gone")], TransportError),
        ([b"\x01\x90\x00", b"\x90\x00", b"\x6e\x00", b"\x6e\x00"], ClassNotSupportedError),
        ([b"\x01\x90\x00", b"\x69\x99"], AppletNotFoundError),
    ],
)
def test_malformed_or_failing_responses_give_named_errors(
    answers: list[bytes | Exception], error: type[Exception]
) -> None:
    client = IoTSafeClient(ScriptedTransport(list(answers)))
    with pytest.raises(error) as info:
        client.open()
        client.object_list()
    assert info.value.problem  # type: ignore[attr-defined]


def test_signature_response_malformed(card_store: CardStore) -> None:
    transport = ScriptedTransport(
        [b"\x01\x90\x00", b"\x90\x00", b"\x90\x00", b"\x33\x40\x01\x02\x90\x00"]
    )
    client = IoTSafeClient(transport)
    client.open()
    with pytest.raises(ResponseFormatError):
        client.sign_digest(ObjectRef.of(1), DIGEST)


def test_pin_flow_is_never_retried(card_store: CardStore) -> None:
    from drivers.cards.emulator import provision_lab_card

    store = provision_lab_card(pin="1234")
    client, _ = make_client(store)
    client.open()
    assert client.pin_tries_left() == 3
    with pytest.raises(SecurityStatusError):
        client.sign_init(ObjectRef.of(1))
    with pytest.raises(CardPinError) as info:
        client.verify_pin(b"0000")
    assert info.value.tries_left == "2"
    assert sum(1 for e in client.trace.entries() if e.name == "VERIFY PIN") == 2  # 1 probe + 1
    client.verify_pin(b"1234")
    assert client.pin_tries_left() is None
    client.sign_digest(ObjectRef.of(1), DIGEST)
    for expected in ("2", "1"):
        with pytest.raises(CardPinError) as info:
            client.verify_pin(b"9999")
        assert info.value.tries_left == expected
    with pytest.raises(CardPinError) as info:
        client.verify_pin(b"9999")
    assert info.value.sw == 0x6983 and info.value.tries_left == "0"
    with pytest.raises(CardPinError):
        client.verify_pin(b"1234")  # blocked stays blocked


def test_closed_transport(card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, speed=0)
    transport = InProcessTransport(applet)
    transport.close()
    with pytest.raises(TransportError):
        IoTSafeClient(transport).open()


def test_basic_channel_mode(card_store: CardStore) -> None:
    client, _ = make_client(card_store)
    client.logical_channel = False
    client.open()
    assert client.channel == 0
    client.sign_digest(ObjectRef.of(1), DIGEST)
    assert client.trace.entries()[0].name == "SELECT"
    assert all(e.command[0] & 0x03 == 0 for e in client.trace.entries())


class ChannelLink:
    """A link that opens the channel itself and patches CLA channel bits, like AT+CGLA."""

    name = "cgla-like"
    manages_channels = True

    def __init__(self, applet: IoTSafeApplet) -> None:
        self.applet = applet
        self.channel = 0

    def open_channel(self, aid: bytes) -> None:
        answer = self.applet.process_apdu(apdu.manage_channel_open().to_bytes())
        self.channel = answer[0]
        assert self.applet.process_apdu(apdu.select(self.channel, aid).to_bytes()) == b"\x90\x00"

    def close_channel(self) -> None:
        self.applet.process_apdu(apdu.manage_channel_close(self.channel).to_bytes())
        self.channel = 0

    def transmit(self, apdu_bytes: bytes) -> bytes:
        assert apdu_bytes[0] & 0x03 == 0  # the client leaves the channel bits to the link
        patched = bytes([apdu_bytes[0] | self.channel]) + apdu_bytes[1:]
        return self.applet.process_apdu(patched)

    def close(self) -> None:
        pass


def test_link_managed_channel(card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, speed=0)
    link = ChannelLink(applet)
    client = IoTSafeClient(link)
    client.open()
    assert link.channel == 1 and client.channel == 0
    raw = client.sign_digest(ObjectRef.of(1), DIGEST)
    assert verifies(cert_key(client), raw)
    assert all(e.name != "MANAGE CHANNEL" for e in client.trace.entries())
    client.close()
    assert link.channel == 0 and 1 not in applet.channels
