"""The "SSDTF TLV v1" wire format: a strict encoder and decoder for every SSDTF message.

Why a strict TLV and not JSON or free-form bytes: a signature is only as good as the parser
in front of it. Every ambiguity (duplicate fields, bytes after the signature, an unknown
version treated as "probably fine") is a place where an attacker can make the verifier and
the consumer read different messages. So the decoder refuses everything it does not fully
understand, and raises one named error per rule (all :class:`WireError`), which is what the
attack tests and the fuzz test look for.

Layout (research report §6.4, with the extensions listed in ``docs/ssdtf.md``)::

    envelope := 'S' 'D' | ver=0x01 | type(1) | flags(1) | TLV* | SIG-TLV
    TLV      := t(1) | len(2, big-endian) | value
    TBS      := "SSDTF/1 " ‖ type-name ‖ 0x00 ‖ pseudo_hdr ‖ envelope[0 : start of SIG TLV]
    pseudo_hdr := lp(topic) ‖ qos_pub ‖ retain_pub ‖ lp(cid)

TLVs appear in strictly ascending tag order; only CFRAG may repeat (consecutively); SIG is
last and nothing follows it. Tags below 0x40 are critical: an unknown one is an error. Tags
0x40..0x7E are non-critical and skipped (kept in :attr:`Envelope.extra`), so a later version
can add hints without breaking old receivers.
"""

from __future__ import annotations

import builtins
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from drivers.errors import SafeLabError

MAGIC = b"SD"
VERSION = 1
DOMAIN = b"SSDTF/1 "
MAX_ENVELOPE = 64 * 1024
"""Nothing SSDTF sends is larger; a bigger buffer is refused before parsing."""


class WireError(SafeLabError):
    """An envelope that breaks a rule of the wire format; ``code`` names the rule."""

    code = "malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.code}: {detail}", "the message is dropped; nothing in it is used")
        self.detail = detail


class TruncatedError(WireError):
    code = "truncated"


class MagicError(WireError):
    code = "bad magic"


class VersionError(WireError):
    code = "unsupported version"


class MsgTypeError(WireError):
    code = "unknown message type"


class FlagsError(WireError):
    code = "bad flags"


class OrderError(WireError):
    code = "out-of-order TLV"


class DuplicateError(WireError):
    code = "duplicate TLV"


class UnknownCriticalError(WireError):
    code = "unknown critical TLV"


class LengthError(WireError):
    code = "bad TLV length"


class TrailingError(WireError):
    code = "trailing bytes after SIG"


class MissingError(WireError):
    code = "missing field"


class UnexpectedError(WireError):
    code = "field not allowed here"


class FieldValueError(WireError):
    code = "bad field value"


class MsgType(IntEnum):
    """Message types; the name (lower case) is part of every signed string (domain separation)."""

    CHAL = 0x01
    RESP = 0x02
    OK = 0x03
    HELLO = 0x04
    DATA = 0x10
    ACK = 0x11
    DELIVER = 0x12
    FWD = 0x13
    RESEND = 0x14
    """Data user -> DS: a signed re-send request for a DELIVER that never arrived."""
    REPORT = 0x20
    REG = 0x30
    """Registrar -> management server: a signed registration (device, topic, destination,
    revocation) on ``ssdtf/v1/reg/{registrar}`` (see :mod:`drivers.ssdtf.registry`)."""
    PROV = 0x31
    """Management server -> gateway / DS: a registration it accepted, the registrar's REG
    inside (INNER), signed again by the MS, on ``ssdtf/v1/prov/{role}``."""


class T(IntEnum):
    """TLV tags."""

    CID = 0x01
    SID = 0x02
    SEQ = 0x03
    TS = 0x04
    ND = 0x05
    NB = 0x06
    KID = 0x07
    ALG = 0x08
    BROKER_ID = 0x09
    HASH = 0x0A
    CAPSULE = 0x10
    CT = 0x11
    CFRAG = 0x12
    EXT_ID = 0x13
    EPOCH = 0x14
    INNER = 0x15
    SUB = 0x16
    REASON = 0x17
    BIND = 0x18
    """Sender-binding nonce r of a DATA (see :mod:`drivers.ssdtf.binding`)."""
    KIND = 0x19
    """What a REG registers (:class:`RegKind`)."""
    TOPIC = 0x1A
    """A registered topic name (may contain ``/``, never a wildcard)."""
    PUBKEY = 0x1B
    """A registered signing public key (device or destination)."""
    KEYALG = 0x1C
    """The algorithm of PUBKEY (:class:`Alg`): pinned with the key."""
    PREKEY = 0x1D
    """A destination's PRE public key (what the conversion keys convert to)."""
    HASH2 = 0x1E
    """SHA-256 of conversion-key share 2 (HASH carries share 1's)."""
    WRAPKEY = 0x1F
    """A destination's X25519 wrap public key: the DS re-wraps its DELIVERs to it
    (:mod:`drivers.ssdtf.rewrap`)."""
    STATUS = 0x20
    SIG = 0x7F


class Alg(IntEnum):
    """Signature algorithms. 0 ("none") exists only so the decoder can name and refuse it."""

    NONE = 0x00
    ED25519 = 0x01
    ES256 = 0x02
    """ECDSA P-256 over SHA-256, raw r‖s: what a token of the driver layer (a SIM) signs."""


class RegKind(IntEnum):
    """What a REG registers; each kind has exactly its own fields (:data:`REG_FIELDS`)."""

    DEVICE = 1
    TOPIC = 2
    DESTINATION = 3
    REVOKE = 4
    """Revoke a destination (its conversion-key shares are deleted at gateway and DS)."""


class Status(IntEnum):
    """ACK status: what the gateway did with a DATA envelope."""

    OK = 0
    DUPLICATE = 1
    BAD_SIGNATURE = 2
    MALFORMED = 3
    STALE = 4
    POLICY = 5


FLAG_QOS = 0x03
FLAG_RETAIN = 0x04
FLAG_PLAIN = 0x08
FLAG_KNOWN = FLAG_QOS | FLAG_RETAIN | FLAG_PLAIN

FIXED_LEN: dict[int, int] = {
    T.SID: 16,
    T.SEQ: 8,
    T.TS: 8,
    T.ND: 16,
    T.NB: 16,
    T.KID: 8,
    T.ALG: 1,
    T.HASH: 32,
    T.EPOCH: 4,
    T.STATUS: 1,
    T.SIG: 64,
    T.BIND: 16,
    T.KIND: 1,
    T.KEYALG: 1,
    T.HASH2: 32,
    T.WRAPKEY: 32,
}
MAX_LEN: dict[int, int] = {
    T.CID: 64,
    T.BROKER_ID: 64,
    T.EXT_ID: 64,
    T.SUB: 64,
    T.REASON: 200,
    T.CAPSULE: 512,
    T.CFRAG: 1024,
    T.TOPIC: 128,
    T.PUBKEY: 133,
    T.PREKEY: 64,
}
TEXT_TAGS = {T.CID, T.BROKER_ID, T.EXT_ID, T.SUB, T.REASON, T.TOPIC}

_SIGNED = {T.KID, T.ALG, T.SIG}
REQUIRED: dict[MsgType, frozenset[int]] = {
    MsgType.HELLO: frozenset({T.CID, T.ND}),
    MsgType.CHAL: frozenset({T.CID, T.TS, T.ND, T.NB, T.BROKER_ID} | _SIGNED),
    MsgType.RESP: frozenset({T.CID, T.ND, T.NB, T.BROKER_ID, T.HASH} | _SIGNED),
    MsgType.OK: frozenset({T.CID, T.SID, T.TS, T.BROKER_ID} | _SIGNED),
    MsgType.DATA: frozenset({T.CID, T.SID, T.SEQ, T.TS, T.CT} | _SIGNED),
    MsgType.ACK: frozenset({T.CID, T.SID, T.SEQ, T.TS, T.BROKER_ID, T.HASH, T.STATUS} | _SIGNED),
    MsgType.FWD: frozenset({T.SEQ, T.TS, T.BROKER_ID, T.INNER, T.SUB} | _SIGNED),
    MsgType.DELIVER: frozenset({T.SEQ, T.TS, T.CT, T.EXT_ID, T.EPOCH} | _SIGNED),
    MsgType.REPORT: frozenset({T.CID, T.SEQ, T.TS, T.HASH, T.STATUS, T.REASON} | _SIGNED),
    MsgType.RESEND: frozenset({T.SEQ, T.TS, T.SUB} | _SIGNED),
    MsgType.REG: frozenset({T.TS, T.ND, T.KIND} | _SIGNED),
    MsgType.PROV: frozenset({T.TS, T.INNER, T.SUB} | _SIGNED),
}
OPTIONAL: dict[MsgType, frozenset[int]] = {
    MsgType.DATA: frozenset({T.CAPSULE, T.BIND}),
    MsgType.FWD: frozenset({T.CFRAG}),
    MsgType.DELIVER: frozenset({T.CAPSULE, T.CFRAG}),
    MsgType.REPORT: frozenset({T.SID}),
    MsgType.RESEND: frozenset({T.REASON}),
    MsgType.REG: frozenset(
        {T.CID, T.SUB, T.TOPIC, T.PUBKEY, T.KEYALG, T.PREKEY, T.WRAPKEY, T.HASH, T.HASH2}
    ),
}
REG_FIELDS: dict[RegKind, tuple[frozenset[int], frozenset[int]]] = {
    RegKind.DEVICE: (frozenset({T.CID, T.PUBKEY, T.KEYALG}), frozenset()),
    RegKind.TOPIC: (frozenset({T.CID, T.TOPIC}), frozenset()),
    RegKind.DESTINATION: (
        frozenset({T.SUB, T.PUBKEY, T.KEYALG, T.HASH, T.HASH2}),
        # absent only without a PRE library (no confidentiality)
        frozenset({T.PREKEY, T.WRAPKEY}),
    ),
    RegKind.REVOKE: (frozenset({T.SUB}), frozenset()),
}
"""Per registration kind: (required, optional) fields beyond REG's own. Strict like the rest:
a field of another kind is an error, so a record cannot mean two things."""


def lp(value: bytes) -> bytes:
    """u16-length-prefixed bytes, so concatenated fields cannot be re-split differently."""
    if len(value) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return struct.pack(">H", len(value)) + value


def pseudo_header(topic: str, qos: int, retain: bool, cid: bytes) -> bytes:
    """What the signature covers of the MQTT packet: topic, QoS and RETAIN as published, cid.

    Not the literal fixed and variable headers: a broker may legally lower QoS to the
    subscription's, sets its own DUP and packet identifier on each hop, and clears RETAIN for
    live subscribers, so literal header bytes differ at every receiver ([MQTT-3.3.1-5/8/9]).
    """
    return lp(topic.encode()) + bytes([qos & 3, 1 if retain else 0]) + lp(cid)


@dataclass
class Envelope:
    """A decoded (or to-be-encoded) SSDTF message."""

    type: MsgType
    flags: int = 0
    fields: dict[int, bytes] = field(default_factory=dict)
    cfrags: list[bytes] = field(default_factory=list)
    extra: dict[int, bytes] = field(default_factory=dict)
    raw: bytes = b""
    sig_offset: int = 0
    """Offset of the SIG TLV's tag byte in :attr:`raw` (0 when the type carries no SIG)."""

    # --- typed accessors -------------------------------------------------------------
    def get(self, tag: int) -> bytes:
        if tag not in self.fields:
            raise MissingError(f"{T(tag).name} absent")
        return self.fields[tag]

    def text(self, tag: int) -> str:
        return self.get(tag).decode()

    def int(self, tag: int) -> builtins.int:
        return builtins.int.from_bytes(self.get(tag), "big")

    @property
    def qos_pub(self) -> builtins.int:
        return self.flags & FLAG_QOS

    @property
    def retain_pub(self) -> bool:
        return bool(self.flags & FLAG_RETAIN)

    @property
    def plain(self) -> bool:
        return bool(self.flags & FLAG_PLAIN)

    @property
    def cid(self) -> bytes:
        return self.fields.get(T.CID, b"")

    def tbs(self, topic: str) -> bytes:
        """The exact bytes the sender signed, given the topic the packet arrived on."""
        if self.type not in SIGNED_TYPES:
            raise UnexpectedError(f"{self.type.name} is not signed")
        name = self.type.name.lower().encode()
        header = pseudo_header(topic, self.qos_pub, self.retain_pub, self.cid)
        return DOMAIN + name + b"\x00" + header + self.raw[: self.sig_offset]

    def summary(self) -> dict[str, object]:
        """Decoded fields for a trace: short, readable, never secret (nothing here is)."""
        out: dict[str, object] = {
            "type": self.type.name,
            "flags": self.flags,
            "size": len(self.raw),
        }
        if self.flags & FLAG_QOS or self.flags & FLAG_RETAIN:
            out["qos_pub"] = self.qos_pub
            out["retain_pub"] = self.retain_pub
        if self.plain:
            out["plain"] = True
        for tag, value in self.fields.items():
            name = T(tag).name.lower()
            if tag in TEXT_TAGS:
                out[name] = value.decode(errors="replace")
            elif tag in (T.SEQ, T.TS, T.EPOCH, T.STATUS):
                out[name] = int.from_bytes(value, "big")
            elif tag in (T.ALG, T.KEYALG):
                out[name] = Alg(value[0]).name if value[0] in Alg._value2member_map_ else value[0]
            elif tag == T.KIND:
                known = value[0] in RegKind._value2member_map_
                out[name] = RegKind(value[0]).name if known else value[0]
            elif tag in (T.CT, T.CAPSULE, T.INNER):
                out[name] = {"len": len(value), "head": value[:16].hex()}
            else:
                out[name] = value.hex()
        if self.cfrags:
            out["cfrags"] = [len(c) for c in self.cfrags]
        return out


SIGNED_TYPES = frozenset(t for t in MsgType if T.SIG in REQUIRED[t])


FieldMap = dict[Any, bytes]
"""TLV fields by tag: :class:`T` members, or plain ints where an attack forges unknown tags.
(``dict`` is invariant in its key, so ``dict[T, bytes]`` is not a ``dict[int, bytes]``.)"""


def encode(
    msg_type: MsgType,
    fields: FieldMap,
    *,
    flags: int = 0,
    cfrags: list[bytes] | None = None,
    sign: object = None,
    topic: str = "",
) -> bytes:
    """Encode a message; when ``sign`` (a callable tbs -> 64-byte signature) is given, sign it.

    The SIG TLV is appended last; the TBS uses ``topic`` and the flags for the pseudo-header.
    """
    items: list[tuple[int, bytes]] = [(t, v) for t, v in fields.items() if t != T.SIG]
    items += [(T.CFRAG, c) for c in cfrags or []]
    items.sort(key=lambda item: item[0])
    body = bytearray(MAGIC + bytes([VERSION, msg_type, flags]))
    for tag, value in items:
        body += bytes([tag]) + struct.pack(">H", len(value)) + value
    if sign is None:
        return bytes(body)
    env = Envelope(msg_type, flags, dict(fields), raw=bytes(body), sig_offset=len(body))
    signature = sign(env.tbs(topic))  # type: ignore[operator]
    if len(signature) != 64:
        raise ValueError("signature must be 64 bytes")
    return bytes(body) + bytes([T.SIG]) + struct.pack(">H", 64) + signature


def decode(data: bytes) -> Envelope:
    """Parse ``data`` strictly; any rule broken raises a :class:`WireError` subclass."""
    if not isinstance(data, bytes | bytearray):
        raise FieldValueError("envelope must be bytes")
    data = bytes(data)
    if len(data) > MAX_ENVELOPE:
        raise LengthError(f"envelope of {len(data)} bytes exceeds {MAX_ENVELOPE}")
    if len(data) < 5:
        raise TruncatedError(f"{len(data)} bytes, header needs 5")
    if data[:2] != MAGIC:
        raise MagicError(f"starts with {data[:2].hex()}, not 5344")
    if data[2] != VERSION:
        raise VersionError(f"version {data[2]}, only {VERSION} is accepted (no downgrade)")
    if data[3] not in MsgType._value2member_map_:
        raise MsgTypeError(f"type 0x{data[3]:02x}")
    msg_type = MsgType(data[3])
    flags = data[4]
    if flags & ~FLAG_KNOWN or flags & FLAG_QOS == 3:
        raise FlagsError(f"flags 0x{flags:02x}")
    env = Envelope(msg_type, flags, raw=data)
    pos = 5
    last = -1
    size = len(data)
    fields, cfrags = env.fields, env.cfrags
    while pos < size:  # hot path (several per reading): plain ints, no enum lookups
        if pos + 3 > size:
            raise TruncatedError(f"TLV header at offset {pos}")
        tag = data[pos]
        length = (data[pos + 1] << 8) | data[pos + 2]
        start = pos + 3
        end = start + length
        if end > size:
            raise LengthError(f"TLV 0x{tag:02x} length {length} overruns the buffer")
        value = data[start:end]
        if tag < last or (tag == last and tag != _CFRAG):
            kind = DuplicateError if tag == last else OrderError
            raise kind(f"tag 0x{tag:02x} after 0x{last:02x}")
        if tag not in _KNOWN_TAGS:
            if tag < 0x40:
                raise UnknownCriticalError(f"tag 0x{tag:02x}")
            env.extra[tag] = value
        else:
            _check_value(tag, value)
            if tag == _CFRAG:
                cfrags.append(value)
            elif tag == _SIG:
                env.sig_offset = pos
                fields[tag] = value
                if end != size:
                    raise TrailingError(f"{size - end} bytes after SIG")
            else:
                fields[tag] = value
        last = tag
        pos = end
    present = set(fields) | ({T.CFRAG} if cfrags else set())
    missing = REQUIRED[msg_type] - present
    if missing:
        raise MissingError(", ".join(T(t).name for t in sorted(missing)))
    unexpected = present - REQUIRED[msg_type] - OPTIONAL.get(msg_type, frozenset())
    if unexpected:
        raise UnexpectedError(
            ", ".join(T(t).name for t in sorted(unexpected)) + f" in {msg_type.name}"
        )
    if T.ALG in env.fields and env.fields[T.ALG][0] not in (Alg.ED25519, Alg.ES256):
        raise FieldValueError(f"ALG 0x{env.fields[T.ALG][0]:02x} (none/unknown) refused")
    if msg_type == MsgType.DATA and not env.plain and T.CAPSULE not in env.fields:
        raise MissingError("CAPSULE (an encrypted DATA needs one)")
    if msg_type == MsgType.DATA and env.plain and T.CAPSULE in env.fields:
        raise UnexpectedError("CAPSULE in a plain DATA")
    if msg_type == MsgType.REG:
        _check_reg(env, present)
    return env


def _check_reg(env: Envelope, present: set[int]) -> None:
    kind_byte = env.fields[T.KIND][0]
    if kind_byte not in RegKind._value2member_map_:
        raise FieldValueError(f"KIND {kind_byte} (unknown registration)")
    kind = RegKind(kind_byte)
    required, optional = REG_FIELDS[kind]
    own = present - REQUIRED[MsgType.REG]
    missing = required - own
    if missing:
        raise MissingError(", ".join(T(t).name for t in sorted(missing)) + f" ({kind.name} REG)")
    unexpected = own - required - optional
    if unexpected:
        raise UnexpectedError(
            ", ".join(T(t).name for t in sorted(unexpected)) + f" in a {kind.name} REG"
        )
    if T.KEYALG in env.fields and env.fields[T.KEYALG][0] not in (Alg.ED25519, Alg.ES256):
        raise FieldValueError(f"KEYALG 0x{env.fields[T.KEYALG][0]:02x} (none/unknown) refused")


_CFRAG = int(T.CFRAG)
_SIG = int(T.SIG)
_STATUS = int(T.STATUS)
_KNOWN_TAGS = frozenset(int(t) for t in T)
_FIXED = {int(t): n for t, n in FIXED_LEN.items()}
_MAX = {int(t): n for t, n in MAX_LEN.items()}
_TEXT = frozenset(int(t) for t in TEXT_TAGS)


def _check_value(tag: int, value: bytes) -> None:
    fixed = _FIXED.get(tag)
    if fixed is not None and len(value) != fixed:
        raise LengthError(f"{T(tag).name} is {len(value)} bytes, must be {fixed}")
    limit = _MAX.get(tag)
    if limit is not None and not 1 <= len(value) <= limit:
        raise LengthError(f"{T(tag).name} is {len(value)} bytes, must be 1..{limit}")
    if tag in _TEXT:
        try:
            text = value.decode()
        except UnicodeDecodeError as error:
            raise FieldValueError(f"{T(tag).name} is not UTF-8") from error
        reserved = "\x00+#" if tag == T.TOPIC else "\x00/+#"
        if tag != T.REASON and any(ch in text for ch in reserved):
            raise FieldValueError(f"{T(tag).name} contains a reserved character")
    if tag == _STATUS and value[0] not in Status._value2member_map_:
        raise FieldValueError(f"STATUS {value[0]}")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")
