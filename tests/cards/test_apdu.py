"""APDU builders byte-exact against the reference, parsers tolerant, fuzzed parsers safe."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from drivers.cards import apdu
from drivers.cards.apdu import ISO, PROPRIETARY, Mode, ObjectRef, cla_for
from drivers.cards.errors import CommandFormatError, ResponseFormatError
from drivers.errors import SafeLabError

DIGEST = bytes(range(32))
KEY = ObjectRef.of(1)


def hexof(command: apdu.Command) -> str:
    return command.to_bytes().hex().upper()


def test_reference_sign_sequence_is_byte_exact() -> None:
    """research/iotsafe-apdu.md §1.3 and §2.2: channel 1, key 01, hash on host."""
    cla = cla_for(1, PROPRIETARY)
    assert cla == 0x81
    assert hexof(apdu.manage_channel_open()) == "0070000001"
    assert hexof(apdu.select(1)) == "01A4040007A0000005590010"
    assert hexof(apdu.compute_signature_init(cla, 1, KEY)) == "812A00010D840101A1010391020001920104"
    assert hexof(apdu.compute_signature_update_final_hash(cla, 1, DIGEST)) == (
        "812B8001229E20" + DIGEST.hex().upper()
    )
    assert hexof(apdu.get_response(1, 0x43)) == "01C0000043"
    assert hexof(apdu.compute_signature_close(cla, 1)) == "812A0101"
    assert hexof(apdu.manage_channel_close(1)) == "00708001"
    assert hexof(apdu.manage_channel_close(1, le=0)) == "0070800100"


def test_reference_at_talk_three_byte_key_id() -> None:
    command = apdu.compute_signature_init(0x81, 1, ObjectRef(id=b"006"))
    assert hexof(command) == "812A00010F8403303036A1010391020001920104"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (apdu.get_data(0x81, apdu.GetDataP1.APPLICATION, le=0x44), "81CB000044"),
        (apdu.get_data(0x81, apdu.GetDataP1.OBJECT_LIST), "81CB010000"),
        (apdu.get_data(0x81, apdu.GetDataP1.FILE, ObjectRef.of(2)), "81CBC3000383010200"),
        (apdu.get_data(0x81, apdu.GetDataP1.PRIVATE_KEY, ObjectRef.of(1)), "81CBC1000384010100"),
        (apdu.read_file(0x81, ObjectRef.of(2), 0x01F0, 0xF0), "81B001F003830102F0"),
        (apdu.get_random(0x81, 16), "8184000010"),
        (apdu.get_random(0x81, 256), "8184000000"),
        (apdu.generate_key_pair(0x81, ObjectRef(id=b"006")), "81B90000058403303036"),
        (apdu.read_public_key(0x81, ObjectRef.of(1)), "81CD000003850101"),
        (apdu.put_public_key_init(0x81, 2, ObjectRef.of(5)), "8124000203850105"),
        (apdu.put_public_key_close(0x81, 2), "81240102"),
        (apdu.compute_dh(0x81, ObjectRef.of(4), ObjectRef.of(5)), "8146000006840104850105"),
        (apdu.verify_signature_close(0x81, 2), "812C0102"),
        (apdu.select(2, apdu.THALES_AID, le=0), "02A404000FA00000003053F1240177010149534100"),
        (apdu.verify_pin(0, b"1234"), "002000010831323334FFFFFFFF"),
        (apdu.verify_pin(0, b""), "00200001"),
    ],
)
def test_builders_are_byte_exact(command: apdu.Command, expected: str) -> None:
    assert hexof(command) == expected


def test_put_public_key_update_blob() -> None:
    point = b"\x04" + bytes(64)
    (command,) = apdu.put_public_key_update(0x81, 2, point)
    assert hexof(command).startswith("81D8800247344549438641" + "04")


def test_full_text_mode_chunks_with_last_flag() -> None:
    message = bytes(500)
    commands = apdu.compute_signature_update_full_text(0x81, 1, message)
    assert [c.p1 for c in commands] == [0x00, 0x00, 0x80]
    assert all(c.to_bytes()[5] == 0x9B for c in commands)
    assert b"".join(apdu.split_signature_tail(c.data)[0][0].value for c in commands) == message
    (only,) = apdu.compute_signature_update_full_text(0x81, 1, b"")
    assert hexof(only) == "812B8001029B00"


def test_last_block_mode_tags() -> None:
    command = apdu.compute_signature_update_last_block(0x81, 1, b"abc", bytes(32), 128)
    assert hexof(command) == ("812B80012D" + "9A03616263" + "9C20" + "00" * 32 + "9D0400000080")


def test_verify_update_two_byte_and_ber_signature() -> None:
    signature = bytes(64)
    two = apdu.verify_signature_update(0x81, 2, signature, digest=DIGEST)
    assert hexof(two).startswith("812D8002659E20")
    assert two.data[34:37] == b"\x33\x00\x40"
    ber = apdu.verify_signature_update(0x81, 2, signature, digest=DIGEST, two_byte_length=False)
    assert ber.data[34:36] == b"\x33\x40"
    for command in (two, ber):
        items, found = apdu.split_signature_tail(command.data)
        assert items[0].value == DIGEST and found == signature


@pytest.mark.parametrize(
    ("channel", "cla_class", "cla"),
    [
        (0, ISO, 0x00),
        (1, PROPRIETARY, 0x81),
        (3, ISO, 0x03),
        (4, ISO, 0x40),
        (19, PROPRIETARY, 0xCF),
    ],
)
def test_cla_channel_coding(channel: int, cla_class: int, cla: int) -> None:
    assert cla_for(channel, cla_class) == cla
    assert apdu.channel_of(cla) == channel
    assert apdu.class_of(cla) == cla_class


def test_parse_command_cases() -> None:
    assert apdu.parse_command(bytes.fromhex("00708001")) == apdu.Command(0, 0x70, 0x80, 1)
    assert apdu.parse_command(bytes.fromhex("0070000001")).le == 1
    case3 = apdu.parse_command(bytes.fromhex("01A4040007A0000005590010"))
    assert case3.data == apdu.GSMA_AID and case3.le is None
    case4 = apdu.parse_command(bytes.fromhex("81CBC3000383010200"))
    assert case4.data == bytes.fromhex("830102") and case4.le == 0
    for bad in ("", "0070", "81CB0000050102"):
        with pytest.raises(CommandFormatError):
            apdu.parse_command(bytes.fromhex(bad))


def test_command_too_long_is_named() -> None:
    with pytest.raises(CommandFormatError):
        apdu.Command(0x81, 0x2B, 0x80, 1, bytes(256)).to_bytes()


def test_object_ref_parse() -> None:
    assert ObjectRef.parse("01").id == b"\x01"
    assert ObjectRef.parse("0x0102").id == b"\x01\x02"
    assert ObjectRef.parse("client").label == "client"
    assert ObjectRef.parse("label:01").label == "01"
    with pytest.raises(CommandFormatError):
        ObjectRef(id=bytes(21))
    with pytest.raises(CommandFormatError):
        ObjectRef(label="x" * 61)


RAW = bytes(range(1, 65))


@pytest.mark.parametrize(
    "data",
    [
        b"\x33\x40" + RAW,
        b"\x33\x00\x40" + RAW,
        b"\x33\x81\x40" + RAW,
        RAW,
    ],
)
def test_signature_length_forms(data: bytes) -> None:
    assert apdu.parse_signature(data) == RAW


def test_der_signature_inside_tag_33() -> None:
    r = int.from_bytes(RAW[:32], "big")
    s = int.from_bytes(RAW[32:], "big")
    der = encode_dss_signature(r, s)
    assert apdu.parse_signature(apdu.tlv.encode(0x33, der)) == RAW
    assert apdu.parse_signature(b"\x33" + len(der).to_bytes(2, "big") + der) == RAW


@pytest.mark.parametrize("data", [b"", b"\x33", b"\x33\x05abc", b"\x33\x03\x30\x01\x00", b"x" * 10])
def test_bad_signature_is_a_named_error(data: bytes) -> None:
    with pytest.raises(SafeLabError):
        apdu.parse_signature(data)


def test_public_key_forms() -> None:
    point = b"\x04" + bytes(range(64))
    blob = apdu.public_key_blob(point)
    assert apdu.parse_public_key(blob) == point
    assert apdu.parse_public_key(point) == point
    assert apdu.parse_public_key(blob[2:]) == point  # bare 49 template
    generated = apdu.tlv.encode(0x84, b"\x06") + apdu.tlv.encode(0x85, b"\x06") + blob
    key = apdu.parse_generated_key(generated)
    assert (key.private_id, key.public_id, key.point) == (b"\x06", b"\x06", point)
    with pytest.raises(ResponseFormatError):
        apdu.parse_public_key(apdu.tlv.encode(0x34, b""))


def test_application_info_tolerates_one_byte_hash() -> None:
    data = apdu.tlv.encode_all(
        [(0x10, b"\x01\x00"), (0x11, b"X"), (0x91, b"\x01"), (0xB7, b"\x04")]
    )
    info = apdu.parse_application_info(data)
    assert info.hash_algorithms == 1 and info.max_sessions == 4 and info.applet_id == "X"


def test_response_split() -> None:
    assert apdu.parse_response(b"\x01\x90\x00") == apdu.Response(b"\x01", 0x9000)
    with pytest.raises(ResponseFormatError):
        apdu.parse_response(b"\x90")


PARSERS = [
    apdu.parse_application_info,
    apdu.parse_object_list,
    lambda d: apdu.parse_object_info(d, "private"),
    apdu.parse_public_key,
    apdu.parse_generated_key,
    apdu.parse_signature,
    apdu.parse_file_size,
    apdu.split_signature_tail,
    apdu.parse_response,
    apdu.parse_command,
]


@given(st.binary(max_size=400), st.sampled_from(range(len(PARSERS))))
def test_parsers_raise_only_named_errors(data: bytes, which: int) -> None:
    with contextlib.suppress(SafeLabError):
        PARSERS[which](data)


_TLVISH = st.lists(
    st.tuples(
        st.sampled_from([0x33, 0x34, 0x49, 0x86, 0x84, 0x85, 0xC1, 0xC3, 0x20, 0x91, 0x9E]),
        st.binary(max_size=70),
    ),
    max_size=4,
).map(lambda items: apdu.tlv.encode_all(items))


@given(_TLVISH, st.sampled_from(range(len(PARSERS))))
def test_parsers_on_plausible_tlvs_raise_only_named_errors(data: bytes, which: int) -> None:
    with contextlib.suppress(SafeLabError):
        PARSERS[which](data)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_describers_never_raise(command: bytes, response: bytes) -> None:
    name, detail = apdu.describe_command(command)
    assert isinstance(name, str) and isinstance(detail, str)
    assert isinstance(apdu.describe_response(command, response), str)


def test_describe_reference_command() -> None:
    raw = apdu.compute_signature_init(0x81, 1, KEY, Mode.FINAL_HASH).to_bytes()
    name, detail = apdu.describe_command(raw)
    assert name == "COMPUTE SIGNATURE INIT"
    assert "session 01" in detail and "final hash" in detail and "ECDSA" in detail
    _, pin_detail = apdu.describe_command(apdu.verify_pin(0, b"1234").to_bytes())
    assert "1234" not in pin_detail and "31323334" not in pin_detail
