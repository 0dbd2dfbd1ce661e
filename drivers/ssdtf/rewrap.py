"""The DS's per-destination re-wrap: X25519 + HKDF-SHA256 + ChaCha20-Poly1305 (issue 10).

Why a re-wrap at all: a DELIVER must not repeat the DATA's capsule and ciphertext, nor share
bytes with another destination's DELIVER, or colluding data users could link their pseudonyms
(see :mod:`drivers.ssdtf.binding`). The DS therefore encrypts the bundle (capsule, ct, both
cfrags, expected sender tag) to each destination separately.

Why not umbral for it: the re-wrap needs no proxy re-encryption, only public-key encryption to
one receiver, and a second umbral encryption at the DS plus ``decrypt_original`` at the user
(each parsing and checking a capsule on secp256k1) cost ~0.7 ms per reading against ~0.15 ms
here. So each data user has a separate X25519 *wrap* key (``sk_U[user].wrap``; its public half
travels in the signed DESTINATION registration as WRAPKEY), and the DS seals with a fresh
ephemeral key per DELIVER: the 32-byte ephemeral public key goes in the DELIVER's CAPSULE
field, the AEAD ciphertext in CT. The AEAD key is ``HKDF(X25519(e, pk_U.wrap), salt = epk ‖
pk_U.wrap, info = "SSDTF/1 wrap")``, fresh per message, so the all-zero nonce is never reused
under one key. Authenticity of the DELIVER is still the DS's signature over every byte of it;
the AEAD tag additionally refuses a bundle that was not sealed for this receiver.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from drivers.ssdtf.pre import PreError

INFO = b"SSDTF/1 wrap"
KEY_LEN = 32
NONCE = bytes(12)
"""Constant nonce: safe only because every key is fresh (a new ephemeral key per message)."""


class WrapKeyPair:
    """A data user's X25519 wrap key. The secret never prints."""

    def __init__(self, name: str, secret: X25519PrivateKey) -> None:
        self.name = name
        self.__secret = secret
        self.public = secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def _secret(self) -> X25519PrivateKey:
        return self.__secret

    def secret_bytes(self) -> bytes:
        """Raw secret, only to hand to the role's own worker processes over their pipe."""
        return self.__secret.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def __repr__(self) -> str:
        return f"WrapKeyPair({self.name!r}, public={self.public[:6].hex()}…)"


def keygen(name: str) -> WrapKeyPair:
    return WrapKeyPair(name, X25519PrivateKey.generate())


def from_secret(name: str, raw: bytes) -> WrapKeyPair:
    return WrapKeyPair(name, X25519PrivateKey.from_private_bytes(raw))


def _key(shared: bytes, epk: bytes, receiver_public: bytes) -> ChaCha20Poly1305:
    if shared == bytes(len(shared)):  # a low-order point: no secret at all
        raise ValueError("degenerate X25519 shared secret")
    okm = HKDF(hashes.SHA256(), KEY_LEN, epk + receiver_public, INFO).derive(shared)
    return ChaCha20Poly1305(okm)


def wrap(receiver_public: bytes, data: bytes) -> tuple[bytes, bytes]:
    """Seal ``data`` for one receiver: (ephemeral public key, AEAD ciphertext)."""
    try:
        receiver = X25519PublicKey.from_public_bytes(receiver_public)
        ephemeral = X25519PrivateKey.generate()
        epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        aead = _key(ephemeral.exchange(receiver), epk, receiver_public)
    except ValueError as error:
        raise PreError(f"re-wrap refused: {error}", "check the destination's wrap key") from error
    return epk, aead.encrypt(NONCE, data, None)


def unwrap(keys: WrapKeyPair, epk: bytes, ciphertext: bytes) -> bytes:
    """Open a bundle sealed by :func:`wrap` for ``keys``; :class:`PreError` otherwise."""
    try:
        shared = keys._secret().exchange(X25519PublicKey.from_public_bytes(epk))
        return _key(shared, epk, keys.public).decrypt(NONCE, ciphertext, None)
    except (ValueError, InvalidTag) as error:
        raise PreError(
            "DELIVER not for this receiver (outer decryption failed)", "dropped"
        ) from error
