"""Sender binding and per-destination re-wrapping (issue 10, classes 5 and 6).

**Sender binding.** Umbral has no associated data, so a compromised sensor could take another
sensor's (capsule, ciphertext) and sign it as its own DATA: every signature checks and the
reading is delivered under the wrong pseudonym. So the sensor encrypts
``PT_LABEL ‖ tag ‖ reading`` with ``tag = H("SSDTF/1 sender" ‖ cid ‖ r)`` for a fresh random
``r`` it sends, signed, in the DATA's BIND field. The DS, which knows the verified cid and
``r``, computes the expected tag and hands it to the destination inside the wrapped bundle;
the data user decrypts and compares. A re-signed ciphertext carries the victim's tag, which no
other cid and ``r`` can reproduce. The user learns only ``H(cid ‖ r)`` with an ``r`` it never
sees: nothing about the cid.

**Re-wrap per destination.** The DELIVER does not repeat the DATA's capsule and ciphertext
(colluding data users could link their pseudonyms by matching them): the DS seals the
bundle ``(capsule, ct, cfrags, expected tag)`` to the destination's own X25519 wrap key, a
fresh ephemeral key each time (:mod:`drivers.ssdtf.rewrap`), so DELIVER bytes differ from the
DATA and between destinations.
"""

from __future__ import annotations

import hashlib
import struct

from drivers.ssdtf.pre import PreError

PT_LABEL = b"SSDTF/1 pt\x00"
TAG_LEN = 32
BIND_LEN = 16


def sender_tag(cid: str, r: bytes) -> bytes:
    return hashlib.sha256(b"SSDTF/1 sender\x00" + cid.encode() + b"\x00" + r).digest()


def seal_plaintext(cid: str, r: bytes, reading: bytes) -> bytes:
    return PT_LABEL + sender_tag(cid, r) + reading


def open_plaintext(plaintext: bytes, expected_tag: bytes) -> bytes:
    """The reading, if ``plaintext`` carries the expected sender tag; else :class:`PreError`."""
    if not plaintext.startswith(PT_LABEL) or len(plaintext) < len(PT_LABEL) + TAG_LEN:
        raise PreError("sender binding missing in the plaintext", "not an SSDTF/1 reading")
    tag = plaintext[len(PT_LABEL) : len(PT_LABEL) + TAG_LEN]
    if tag != expected_tag:
        raise PreError(
            "sender binding failed: the reading was encrypted by another device",
            "a device re-signed someone else's ciphertext",
        )
    return plaintext[len(PT_LABEL) + TAG_LEN :]


def _lp(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def encode_bundle(capsule: bytes, ct: bytes, cfrags: list[bytes], expected_tag: bytes) -> bytes:
    return (
        b"B1"
        + _lp(capsule)
        + struct.pack(">I", len(ct))
        + ct
        + _lp(expected_tag)
        + bytes([len(cfrags)])
        + b"".join(_lp(c) for c in cfrags)
    )


def decode_bundle(data: bytes) -> tuple[bytes, bytes, list[bytes], bytes]:
    """(capsule, ct, cfrags, expected tag); :class:`PreError` for anything malformed."""
    try:
        if data[:2] != b"B1":
            raise ValueError("magic")
        pos = 2
        n = struct.unpack(">H", data[pos : pos + 2])[0]
        capsule, pos = data[pos + 2 : pos + 2 + n], pos + 2 + n
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        ct, pos = data[pos + 4 : pos + 4 + n], pos + 4 + n
        n = struct.unpack(">H", data[pos : pos + 2])[0]
        tag, pos = data[pos + 2 : pos + 2 + n], pos + 2 + n
        count, pos = data[pos], pos + 1
        cfrags = []
        for _ in range(count):
            n = struct.unpack(">H", data[pos : pos + 2])[0]
            cfrags.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        if pos != len(data) or len(tag) != TAG_LEN or any(len(c) == 0 for c in cfrags):
            raise ValueError("length")
    except (ValueError, IndexError, struct.error) as error:
        raise PreError(f"malformed DELIVER bundle ({error})", "the DELIVER is dropped") from error
    return capsule, ct, cfrags, tag
