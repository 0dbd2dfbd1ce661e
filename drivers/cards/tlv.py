"""The TLV codec of the IoT SAFE applet: 1-byte tags, BER lengths.

IoT.05 uses simple one-byte tags (``84``, ``A1``, ``9E``, ``C1``...) with BER-TLV lengths:
``00``–``7F`` in one byte, ``81 LL`` for 128–255, ``82 HH LL`` for up to 65535. Some tags hold
further TLVs (the object-list entries ``C1``–``C4`` and the public-key blob ``34``/``49``); they
are decoded into :attr:`Tlv.children` when asked. Tag numbers are *not* globally unique: ``86``
is a secret-key ID in the object list and the EC point inside a public key, ``91`` is a hash
algorithm in a command and in application info; :data:`TAGS` describes each tag with that in
mind, and :func:`describe` gives a one-line human reading of a value where the reference
defines one.

Malformed input always raises :class:`~drivers.cards.errors.TlvError`, never ``IndexError``:
these bytes come from cards and modems we do not control.

The one irregular length form of the field, the signature tag written ``33 00 40`` (a 2-byte
length without the ``82`` prefix, by wolfSSL and at_talk), is handled where it occurs, by
:func:`decode_tolerant_tail`, because it is ambiguous in general BER.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from drivers.cards.errors import TlvError

MAX_LENGTH = 0xFFFF
"""Largest value length the codec encodes (the ``82`` form); IoT SAFE values are far smaller."""

CONSTRUCTED_TAGS: frozenset[int] = frozenset({0xC1, 0xC2, 0xC3, 0xC4, 0x34, 0x49})
"""Tags whose value is itself a TLV sequence (object-list entries, public-key blob)."""


@dataclass(frozen=True)
class Tlv:
    """One tag-length-value item; ``children`` is filled for constructed tags when nested."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] = field(default=(), compare=False)

    def encode(self) -> bytes:
        """The item's bytes: tag, BER length, value."""
        return encode(self.tag, self.value)

    @property
    def name(self) -> str:
        """The tag's short name from :data:`TAGS`."""
        return tag_name(self.tag)

    def describe(self) -> str:
        """``tag name: reading`` for traces."""
        return f"{self.tag:02X} {self.name}: {describe(self.tag, self.value)}"


TAGS: dict[int, tuple[str, str]] = {
    # Command tags (COMPUTE SIGNATURE, VERIFY, PUT PUBLIC KEY, DH, READ FILE, GET DATA)
    0x84: ("private key ID", "identifier of a private key object (1-20 bytes)"),
    0x74: ("private key label", "label of a private key object (ASCII, up to 60 bytes)"),
    0x85: ("public key ID", "identifier of a public key object"),
    0x75: ("public key label", "label of a public key object"),
    0x86: (
        "secret key ID / EC point",
        "a secret key ID (object list, PRF) or, inside tag 49, the EC point 04||X||Y",
    ),
    0x76: ("secret key label", "label of a secret key object"),
    0x83: ("file ID", "identifier of a file object (certificates are files)"),
    0x73: ("file label", "label of a file object"),
    0xA1: ("mode of operation", "signature mode: 01 full text, 02 last block, 03 final hash"),
    0x9B: ("data to be signed", "full-text mode: message bytes the applet hashes"),
    0x9A: ("last block", "last-block mode: the data not yet hashed (up to 128 bytes)"),
    0x9C: ("intermediate hash", "last-block mode: hash state after the blocks already hashed"),
    0x9D: ("bytes hashed", "last-block mode: 4-byte count of bytes already hashed"),
    0x9E: ("final hash", "final-hash mode: the digest computed by the host"),
    0x33: ("signature", "ECDSA signature, raw r||s per IoT.05 (some applets answer DER)"),
    0x34: ("public key", "public key data object (holds tag 49)"),
    0x49: ("EC public key", "EC public key template (holds tag 86)"),
    0xD1: ("secret", "PRF/HKDF: secret value"),
    0xD2: ("label and seed", "PRF: label || seed"),
    0xD3: ("output length", "PRF: number of pseudo-random bytes wanted"),
    0xD4: ("pre-master secret", "PRF: pre-master secret (Thales)"),
    0xD5: ("salt", "HKDF: salt"),
    # Application info (GET DATA 00)
    0x10: ("SIM Alliance version", "version of the IoT SAFE specification the applet follows"),
    0x11: ("applet proprietary ID", "vendor's identification of the applet"),
    0xB1: ("max files", "maximum number of file objects"),
    0xB2: ("max private keys", "maximum number of private key objects"),
    0xB3: ("max public keys", "maximum number of public key objects"),
    0xB4: ("max secret keys", "maximum number of secret key objects"),
    0xB7: ("max sessions", "maximum number of simultaneous sessions"),
    0x90: ("crypto functions", "bitmap: 01 sign/verify, 02 keygen, 04 key agreement, 08 KDF"),
    0x91: ("hash algorithms", "bitmap: 01 SHA-256, 02 SHA-384, 04 SHA-512 (2 bytes in commands)"),
    0x92: ("signature algorithms", "bitmap: 01 RSA PKCS#1 v1.5, 02 RSA-PSS, 04 ECDSA"),
    0x93: ("key agreement algorithms", "bitmap: 01 ECKA (DL/ECKAS-DH1)"),
    0x94: ("KDF algorithms", "bitmap: 01 TLS PRF SHA-256, 02 HKDF"),
    # Object list (GET DATA 01, C1..C4) and object attributes
    0xC1: ("private key entry", "object list entry of a private key"),
    0xC2: ("public key entry", "object list entry of a public key"),
    0xC3: ("file entry", "object list entry of a file"),
    0xC4: ("secret key entry", "object list entry of a secret key"),
    0x60: ("access conditions", "bitmap: 01 read, 02 update"),
    0x4A: ("object state", "01 activated, 00 deactivated"),
    0x4B: ("key type", "13/14 P-256, 23/24 brainpoolP256r1 (persistent/volatile), 03 RSA, A0 HMAC"),
    0x4E: ("key usage", "01 general, 02 TLS 1.2 CertificateVerify, 03 TLS 1.3 CertificateVerify"),
    0x61: ("key crypto functions", "bitmap: 01 sign/verify, 02 keygen, 04 key agreement, 08 KDF"),
    0x6F: ("key agreement", "bitmap: 01 ECKA"),
    0x20: ("file size", "2-byte big-endian file size"),
    0x21: ("file usage", "02 X.509 v3 certificate"),
}
"""Every tag of the IoT SAFE reference: ``tag -> (short name, what it holds)``."""

KEY_TYPES: dict[int, str] = {
    0x03: "RSA-2048",
    0x13: "secp256r1 (persistent)",
    0x14: "secp256r1 (volatile)",
    0x23: "brainpoolP256r1 (persistent)",
    0x24: "brainpoolP256r1 (volatile)",
    0xA0: "HMAC",
}
KEY_USAGES: dict[int, str] = {
    0x01: "general",
    0x02: "TLS 1.2 CertificateVerify",
    0x03: "TLS 1.3 CertificateVerify",
}
MODES: dict[int, str] = {0x01: "full text", 0x02: "last block", 0x03: "final hash"}
STATES: dict[int, str] = {0x00: "deactivated", 0x01: "activated"}
FILE_USAGES: dict[int, str] = {0x02: "X.509 v3 certificate"}

_BITMAPS: dict[int, dict[int, str]] = {
    0x90: {0x01: "sign/verify", 0x02: "keygen", 0x04: "key agreement", 0x08: "KDF"},
    0x61: {0x01: "sign/verify", 0x02: "keygen", 0x04: "key agreement", 0x08: "KDF"},
    0x91: {0x01: "SHA-256", 0x02: "SHA-384", 0x04: "SHA-512"},
    0x92: {0x01: "RSA PKCS#1 v1.5", 0x02: "RSA-PSS", 0x04: "ECDSA"},
    0x93: {0x01: "ECKA"},
    0x6F: {0x01: "ECKA"},
    0x94: {0x01: "TLS PRF SHA-256", 0x02: "HKDF"},
    0x60: {0x01: "read", 0x02: "update"},
}
_ENUMS: dict[int, dict[int, str]] = {
    0x4B: KEY_TYPES,
    0x4E: KEY_USAGES,
    0xA1: MODES,
    0x4A: STATES,
    0x21: FILE_USAGES,
}
_LABEL_TAGS = frozenset({0x73, 0x74, 0x75, 0x76, 0x11})
_ID_TAGS = frozenset({0x83, 0x84, 0x85})
_SIZE_TAGS = frozenset({0xB1, 0xB2, 0xB3, 0xB4, 0xB7, 0xD3})


def tag_name(tag: int) -> str:
    """Short name of ``tag``, or ``unknown tag XX``."""
    entry = TAGS.get(tag)
    return entry[0] if entry else f"unknown tag {tag:02X}"


def describe(tag: int, value: bytes) -> str:
    """A human reading of ``value`` under ``tag`` (enumerations, bitmaps, labels, sizes)."""
    if not value:
        return "(empty)"
    if tag in _ENUMS:
        if len(value) == 1:
            return f"{value[0]:02X} {_ENUMS[tag].get(value[0], 'unknown')}"
        return value.hex().upper()
    if tag in _BITMAPS:
        bits = int.from_bytes(value, "big")
        names = [name for bit, name in _BITMAPS[tag].items() if bits & bit]
        rest = bits & ~sum(_BITMAPS[tag])
        if rest:
            names.append(f"unknown bits {rest:X}")
        return f"{value.hex().upper()} ({', '.join(names) or 'none'})"
    if tag in _LABEL_TAGS:
        text = value.decode("ascii", errors="replace")
        return repr(text)
    if tag in _ID_TAGS or (tag == 0x86 and len(value) <= 20):
        return value.hex().upper()
    if tag in _SIZE_TAGS or tag in (0x20, 0x9D):
        return str(int.from_bytes(value, "big"))
    if tag == 0x10:
        return ".".join(str(b) for b in value)
    shown = value[:16].hex().upper()
    return f"{len(value)} bytes {shown}{'…' if len(value) > 16 else ''}"


def encode_length(length: int) -> bytes:
    """BER length: one byte up to 127, ``81 LL`` up to 255, ``82 HH LL`` up to 65535."""
    if length < 0:
        raise TlvError(f"negative TLV length {length}", "this is a bug in the caller")
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= MAX_LENGTH:
        return bytes([0x82, length >> 8, length & 0xFF])
    raise TlvError(
        f"TLV value of {length} bytes is longer than {MAX_LENGTH}",
        "IoT SAFE objects are small; split the data",
    )


def encode(tag: int, value: bytes) -> bytes:
    """One TLV with a 1-byte ``tag``."""
    if not 0 <= tag <= 0xFF:
        raise TlvError(f"tag {tag:#x} is not a one-byte tag", "IoT SAFE tags are one byte")
    return bytes([tag]) + encode_length(len(value)) + bytes(value)


def encode_all(items: Iterable[tuple[int, bytes]]) -> bytes:
    """Concatenate ``(tag, value)`` pairs as TLVs, in order."""
    return b"".join(encode(tag, value) for tag, value in items)


def decode_length(data: bytes, offset: int) -> tuple[int, int]:
    """Read a BER length at ``offset``; returns ``(length, offset of the value)``."""
    if offset >= len(data):
        raise TlvError(f"TLV truncated: no length byte at offset {offset}", _FIX)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    if first == 0x80 or count > 2:
        raise TlvError(
            f"TLV length byte {first:02X} at offset {offset} is not 00-7F, 81 or 82", _FIX
        )
    if offset + 1 + count > len(data):
        raise TlvError(f"TLV truncated in a {count + 1}-byte length at offset {offset}", _FIX)
    length = int.from_bytes(data[offset + 1 : offset + 1 + count], "big")
    return length, offset + 1 + count


_FIX = "the card or link returned malformed data; see the APDU trace for the raw bytes"


def iter_decode(data: bytes, *, nested: bool = False) -> Iterator[Tlv]:
    """Yield the TLVs of ``data`` in order; all of ``data`` must be TLVs."""
    data = bytes(data)
    offset = 0
    while offset < len(data):
        tag = data[offset]
        length, start = decode_length(data, offset + 1)
        end = start + length
        if end > len(data):
            raise TlvError(
                f"TLV {tag:02X} at offset {offset} claims {length} bytes, "
                f"only {len(data) - start} remain",
                _FIX,
            )
        value = data[start:end]
        children: tuple[Tlv, ...] = ()
        if nested and tag in CONSTRUCTED_TAGS:
            children = tuple(iter_decode(value, nested=True))
        yield Tlv(tag, value, children)
        offset = end


def decode(data: bytes, *, nested: bool = False) -> list[Tlv]:
    """All TLVs of ``data``; with ``nested`` the constructed tags are decoded into children."""
    return list(iter_decode(data, nested=nested))


def decode_tolerant_tail(data: bytes, offset: int) -> tuple[int, int]:
    """Length of a final TLV at ``offset`` (its tag byte), accepting ``LL``, ``81 LL``,
    ``82 HH LL`` and the non-BER 2-byte ``00 LL`` / ``HH LL`` form; returns ``(length, start)``.

    Used for the signature tag ``33``, which is the last TLV of its response or command and
    which implementations write with either length form: the form that makes the TLV end
    exactly at the end of ``data`` wins.
    """
    remaining = len(data) - offset - 1
    if remaining < 1:
        raise TlvError(f"TLV truncated: no length after tag at offset {offset}", _FIX)
    try:
        length, start = decode_length(data, offset + 1)
    except TlvError:
        length, start = -1, -1
    if start >= 0 and start + length == len(data):
        return length, start
    if remaining >= 2:
        two = int.from_bytes(data[offset + 1 : offset + 3], "big")
        if offset + 3 + two == len(data):
            return two, offset + 3
    raise TlvError(
        f"TLV {data[offset]:02X} at offset {offset}: its length matches neither a BER nor a "
        f"2-byte length of the {remaining - 1}-byte remainder",
        _FIX,
    )


def find(items: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first item with ``tag``, or ``None``."""
    for item in items:
        if item.tag == tag:
            return item
    return None


def as_dict(items: Iterable[Tlv]) -> dict[int, bytes]:
    """``tag -> value`` of the first occurrence of each tag."""
    result: dict[int, bytes] = {}
    for item in items:
        result.setdefault(item.tag, item.value)
    return result


def describe_all(data: bytes) -> str:
    """A one-line reading of a TLV sequence, or a note that it is not one (never raises)."""
    try:
        items = decode(data, nested=True)
    except TlvError:
        return f"{len(data)} bytes (not TLV)"
    return "; ".join(_describe_item(item) for item in items)


def _describe_item(item: Tlv) -> str:
    if item.children:
        inner = ", ".join(_describe_item(child) for child in item.children)
        return f"{item.tag:02X} {item.name} [{inner}]"
    return item.describe()
