"""The strict wire format: round trips, every decoder rule, fuzzing, domain separation."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ssdtf import wire
from drivers.ssdtf.signing import Ed25519Signer
from drivers.ssdtf.wire import MsgType, T

SIGNER = Ed25519Signer("test")
TOPIC = "ssdtf/v1/up/sensor-1"


def data_envelope(flags: int = 1) -> bytes:
    fields = {
        T.CID: b"sensor-1",
        T.SID: b"\x01" * 16,
        T.SEQ: wire.u64(7),
        T.TS: wire.u64(1_700_000_000_000),
        T.KID: SIGNER.public().kid,
        T.ALG: bytes([SIGNER.alg]),
        T.CAPSULE: b"\x02" * 105,
        T.CT: b"ciphertext",
    }
    return wire.encode(MsgType.DATA, fields, flags=flags, sign=SIGNER.sign, topic=TOPIC)


def test_round_trip_and_signature() -> None:
    raw = data_envelope()
    env = wire.decode(raw)
    assert env.type == MsgType.DATA and env.int(T.SEQ) == 7 and env.text(T.CID) == "sensor-1"
    assert SIGNER.public().verify(env.get(T.SIG), env.tbs(TOPIC))
    assert not SIGNER.public().verify(env.get(T.SIG), env.tbs("ssdtf/v1/up/sensor-2"))


def test_pseudo_header_covers_qos_and_retain_as_published() -> None:
    env = wire.decode(data_envelope(flags=1))
    tampered = bytearray(env.raw)
    tampered[4] = 1 | wire.FLAG_RETAIN  # claim it was published retained
    other = wire.decode(bytes(tampered))
    assert not SIGNER.public().verify(other.get(T.SIG), other.tbs(TOPIC))


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + struct.pack(">H", len(value)) + value


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda r: r[:3], wire.TruncatedError),
        (lambda r: b"XX" + r[2:], wire.MagicError),
        (lambda r: r[:2] + b"\x00" + r[3:], wire.VersionError),
        (lambda r: r[:3] + b"\x55" + r[4:], wire.MsgTypeError),
        (lambda r: r[:4] + b"\x80" + r[5:], wire.FlagsError),
        (lambda r: r + b"\x00", wire.TrailingError),
        (lambda r: r[:-67], wire.MissingError),
        (lambda r: r[:5] + _tlv(0x30, b"x") + r[5:], wire.UnknownCriticalError),
        (lambda r: r[:5] + _tlv(T.SEQ, b"\x00" * 8) + r[5:], wire.OrderError),
        (lambda r: r[:5] + _tlv(T.CID, b"a") + r[5:], wire.DuplicateError),
        (lambda r: r[:-64] + b"\x00", wire.LengthError),
    ],
)
def test_decoder_rules(mutate, error) -> None:
    with pytest.raises(error):
        wire.decode(mutate(data_envelope()))


def test_non_critical_unknown_tlv_is_skipped() -> None:
    raw = data_envelope()
    sig_at = wire.decode(raw).sig_offset
    extended = raw[:sig_at] + _tlv(0x50, b"hint") + raw[sig_at:]
    env = wire.decode(extended)
    assert env.extra == {0x50: b"hint"}


def test_alg_none_refused() -> None:
    fields = {
        T.CID: b"c",
        T.ND: b"\x00" * 16,
        T.NB: b"\x00" * 16,
        T.BROKER_ID: b"b",
        T.HASH: b"\x00" * 32,
        T.KID: b"\x00" * 8,
        T.ALG: b"\x00",
        T.SIG: b"\x00" * 64,
    }
    raw = wire.encode(MsgType.RESP, fields) + _tlv(T.SIG, b"\x00" * 64)
    with pytest.raises(wire.FieldValueError, match="ALG"):
        wire.decode(raw)


def test_reflection_fails_by_domain_label() -> None:
    """A signature made for one message type never verifies as another (research §7 #11)."""
    fields = {
        T.CID: b"sensor-1",
        T.TS: wire.u64(1),
        T.ND: b"\x01" * 16,
        T.NB: b"\x02" * 16,
        T.BROKER_ID: b"b",
        T.KID: SIGNER.public().kid,
        T.ALG: bytes([SIGNER.alg]),
    }
    topic = "ssdtf/v1/auth/sensor-1/down"
    chal = wire.decode(wire.encode(MsgType.CHAL, fields, sign=SIGNER.sign, topic=topic))
    as_ok = wire.Envelope(
        MsgType.OK, chal.flags, chal.fields, raw=chal.raw, sig_offset=chal.sig_offset
    )
    assert SIGNER.public().verify(chal.get(T.SIG), chal.tbs(topic))
    assert not SIGNER.public().verify(chal.get(T.SIG), as_ok.tbs(topic))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_named_errors(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        wire.decode(b"SD\x01" + data[:1] + data[1:])
    with contextlib.suppress(wire.WireError):
        wire.decode(data)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=40),
)
def test_fuzz_mutated_envelopes_only_named_errors(pos: int, value: int, cut: int) -> None:
    raw = bytearray(data_envelope())
    raw[pos % len(raw)] = value
    mutated = bytes(raw[: len(raw) - cut])
    try:
        env = wire.decode(mutated)
    except wire.WireError:
        return
    env.summary()  # a decodable mutation must still be presentable
