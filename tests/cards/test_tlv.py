"""The TLV codec: BER length forms, nesting, descriptions, and only named errors on bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cards import tlv
from drivers.cards.errors import TlvError
from drivers.errors import SafeLabError


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "8180"),
        (0xFF, "81FF"),
        (0x100, "820100"),
        (0xFFFF, "82FFFF"),
    ],
)
def test_ber_length_forms(length: int, encoded: str) -> None:
    assert tlv.encode_length(length).hex().upper() == encoded
    value = bytes(length)
    item = tlv.decode(tlv.encode(0x9B, value))
    assert item == [tlv.Tlv(0x9B, value)]


def test_length_too_long_is_a_named_error() -> None:
    with pytest.raises(TlvError):
        tlv.encode_length(0x10000)


def test_nested_public_key_blob() -> None:
    point = b"\x04" + bytes(range(64))
    blob = tlv.encode(0x34, tlv.encode(0x49, tlv.encode(0x86, point)))
    assert blob[:6].hex().upper() == "344549438641"
    (outer,) = tlv.decode(blob, nested=True)
    assert outer.children[0].tag == 0x49
    assert outer.children[0].children[0].value == point


@pytest.mark.parametrize(
    "raw",
    ["84", "8402", "840201", "8480", "8483000001", "8481", "8482FF", "9E2000", "C10384"],
)
def test_malformed_tlv_raises_tlv_error(raw: str) -> None:
    data = bytes.fromhex(raw)
    with pytest.raises(TlvError) as info:
        tlv.decode(data, nested=True)
    assert info.value.problem and info.value.fix


def test_every_reference_tag_has_a_name_and_a_description() -> None:
    reference = [
        0x84,
        0x74,
        0x85,
        0x75,
        0x86,
        0x76,
        0x83,
        0x73,
        0xA1,
        0x9B,
        0x9A,
        0x9C,
        0x9D,
        0x9E,
        0x33,
        0x34,
        0x49,
        0xD1,
        0xD2,
        0xD3,
        0xD4,
        0xD5,
        0x10,
        0x11,
        0xB1,
        0xB2,
        0xB3,
        0xB4,
        0xB7,
        0x90,
        0x91,
        0x92,
        0x93,
        0x94,
        0xC1,
        0xC2,
        0xC3,
        0xC4,
        0x60,
        0x4A,
        0x4B,
        0x4E,
        0x61,
        0x6F,
        0x20,
        0x21,
    ]
    for tag in reference:
        name, meaning = tlv.TAGS[tag]
        assert name and meaning
        assert tlv.describe(tag, b"\x01")
    assert "unknown" in tlv.tag_name(0xEE)


@pytest.mark.parametrize(
    ("tag", "value", "expected"),
    [
        (0x4B, b"\x13", "secp256r1"),
        (0x4B, b"\x23", "brainpoolP256r1"),
        (0xA1, b"\x03", "final hash"),
        (0x91, b"\x00\x01", "SHA-256"),
        (0x92, b"\x04", "ECDSA"),
        (0x61, b"\x05", "key agreement"),
        (0x74, b"client", "'client'"),
        (0x20, b"\x01\xa1", "417"),
        (0x4E, b"\x03", "TLS 1.3"),
    ],
)
def test_describe_values(tag: int, value: bytes, expected: str) -> None:
    assert expected in tlv.describe(tag, value)


@pytest.mark.parametrize(
    ("raw", "length"),
    [
        ("3340" + "00" * 64, 64),
        ("330040" + "00" * 64, 64),
        ("338140" + "00" * 64, 64),
        ("33820040" + "00" * 64, 64),
        ("3303AABBCC", 3),
    ],
)
def test_tolerant_tail_accepts_every_length_form(raw: str, length: int) -> None:
    data = bytes.fromhex(raw)
    found, start = tlv.decode_tolerant_tail(data, 0)
    assert found == length
    assert start + found == len(data)


@given(st.binary(max_size=300))
def test_decode_never_crashes_on_random_bytes(data: bytes) -> None:
    try:
        items = tlv.decode(data, nested=True)
    except TlvError:
        return
    assert sum(len(item.value) for item in items) <= len(data)


@given(st.binary(max_size=300))
def test_describe_all_never_raises(data: bytes) -> None:
    assert isinstance(tlv.describe_all(data), str)


@given(st.binary(max_size=80), st.integers(min_value=0, max_value=5))
def test_tolerant_tail_only_raises_named_errors(data: bytes, offset: int) -> None:
    try:
        length, start = tlv.decode_tolerant_tail(data, offset)
    except SafeLabError:
        return
    assert start + length == len(data)


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=5))
def test_round_trip(items: list[tuple[int, bytes]]) -> None:
    encoded = tlv.encode_all(items)
    assert [(item.tag, item.value) for item in tlv.decode(encoded)] == items
