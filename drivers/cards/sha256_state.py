"""SHA-256 with an exposed intermediate state, for IoT SAFE's last-block signature mode.

In last-block mode the host hashes all complete 64-byte blocks but the last data, and sends the
applet the *intermediate* hash state (tag ``9C``) and the count of bytes already hashed
(tag ``9D``); the applet finishes the hash and signs. ``hashlib`` and ``cryptography`` do not
expose SHA-256's chaining value, so the compression function (FIPS 180-4 §6.2) is written out
here; it is checked against ``hashlib`` in the tests. Speed does not matter: it runs on a few
blocks per signature.
"""

from __future__ import annotations

from drivers.cards.errors import CommandFormatError

BLOCK = 64

_K = (
    0x428A2F98,
    0x71374491,
    0xB5C0FBCF,
    0xE9B5DBA5,
    0x3956C25B,
    0x59F111F1,
    0x923F82A4,
    0xAB1C5ED5,
    0xD807AA98,
    0x12835B01,
    0x243185BE,
    0x550C7DC3,
    0x72BE5D74,
    0x80DEB1FE,
    0x9BDC06A7,
    0xC19BF174,
    0xE49B69C1,
    0xEFBE4786,
    0x0FC19DC6,
    0x240CA1CC,
    0x2DE92C6F,
    0x4A7484AA,
    0x5CB0A9DC,
    0x76F988DA,
    0x983E5152,
    0xA831C66D,
    0xB00327C8,
    0xBF597FC7,
    0xC6E00BF3,
    0xD5A79147,
    0x06CA6351,
    0x14292967,
    0x27B70A85,
    0x2E1B2138,
    0x4D2C6DFC,
    0x53380D13,
    0x650A7354,
    0x766A0ABB,
    0x81C2C92E,
    0x92722C85,
    0xA2BFE8A1,
    0xA81A664B,
    0xC24B8B70,
    0xC76C51A3,
    0xD192E819,
    0xD6990624,
    0xF40E3585,
    0x106AA070,
    0x19A4C116,
    0x1E376C08,
    0x2748774C,
    0x34B0BCB5,
    0x391C0CB3,
    0x4ED8AA4A,
    0x5B9CCA4F,
    0x682E6FF3,
    0x748F82EE,
    0x78A5636F,
    0x84C87814,
    0x8CC70208,
    0x90BEFFFA,
    0xA4506CEB,
    0xBEF9A3F7,
    0xC67178F2,
)
INITIAL_STATE = bytes.fromhex("6A09E667BB67AE853C6EF372A54FF53A510E527F9B05688C1F83D9AB5BE0CD19")
_MASK = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _MASK


def _compress(state: list[int], block: bytes) -> list[int]:
    w = [int.from_bytes(block[i : i + 4], "big") for i in range(0, 64, 4)]
    for i in range(16, 64):
        s0 = _rotr(w[i - 15], 7) ^ _rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = _rotr(w[i - 2], 17) ^ _rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _MASK)
    a, b, c, d, e, f, g, h = state
    for i in range(64):
        t1 = (
            h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + _K[i] + w[i]
        ) & _MASK
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _MASK
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & _MASK, c, b, a, (t1 + t2) & _MASK
    return [(x + y) & _MASK for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True)]


def _words(state: bytes) -> list[int]:
    if len(state) != 32:
        raise CommandFormatError(
            f"a SHA-256 intermediate state has 32 bytes, got {len(state)}",
            "send the 32-byte state in tag 9C",
        )
    return [int.from_bytes(state[i : i + 4], "big") for i in range(0, 32, 4)]


def midstate(prefix: bytes, state: bytes = INITIAL_STATE) -> bytes:
    """The chaining value after hashing ``prefix`` (a multiple of 64 bytes) from ``state``."""
    if len(prefix) % BLOCK:
        raise CommandFormatError(
            f"{len(prefix)} bytes is not a whole number of SHA-256 blocks", "hash 64-byte blocks"
        )
    words = _words(state)
    for i in range(0, len(prefix), BLOCK):
        words = _compress(words, prefix[i : i + BLOCK])
    return b"".join(x.to_bytes(4, "big") for x in words)


def finish(state: bytes, hashed: int, tail: bytes) -> bytes:
    """The SHA-256 digest of (``hashed`` bytes giving ``state``) ‖ ``tail``."""
    if hashed % BLOCK:
        raise CommandFormatError(
            f"{hashed} bytes already hashed is not a whole number of blocks",
            "the counter in tag 9D must be a multiple of 64",
        )
    total = hashed + len(tail)
    padded = tail + b"\x80" + b"\x00" * ((55 - len(tail)) % BLOCK) + (8 * total).to_bytes(8, "big")
    return midstate(padded, state)


def split_for_last_block(message: bytes, max_last: int = 0x80) -> tuple[bytes, int, bytes]:
    """``(intermediate state, bytes hashed, last block)`` for a message, the host's half.

    The host hashes whole 64-byte blocks and leaves between 1 and 64 bytes (none for an empty
    message) for the applet, well inside the 128-byte limit of tag ``9A``.
    """
    del max_last
    cut = max(0, (len(message) - 1) // BLOCK * BLOCK)
    return midstate(message[:cut]), cut, message[cut:]
