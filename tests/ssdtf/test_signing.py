"""Ed25519 on libsodium (PyNaCl) for the SSDTF servers: the same signatures as OpenSSL, and
every forgery OpenSSL refuses is still refused (drivers/ssdtf/signing.py)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from drivers.ssdtf.signing import Ed25519Signer, PublicKeyRef
from drivers.ssdtf.wire import Alg

L = 2**252 + 27742317777372353535851937790883648493
"""The order of the Ed25519 base point."""


def _openssl_public(ref: PublicKeyRef) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(ref.public_bytes)


def test_same_signature_as_openssl_and_verifies_both_ways() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signer = Ed25519Signer("B", key)
    message = b"SSDTF/1 fwd\x00" + bytes(range(200))
    ours = signer.sign(message)
    assert ours == key.sign(message)  # RFC 8032 signatures are deterministic
    expected_public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert signer.public().public_bytes == expected_public
    _openssl_public(signer.public()).verify(ours, message)  # raises if OpenSSL disagrees
    assert signer.public().verify(key.sign(b"other"), b"other")


def test_forgeries_refused() -> None:
    signer = Ed25519Signer("DS")
    ref = signer.public()
    message = b"deliver"
    good = signer.sign(message)
    assert ref.verify(good, message)
    assert not ref.verify(good, message + b"!")
    flipped = bytes([good[0] ^ 1]) + good[1:]
    assert not ref.verify(flipped, message)
    assert not ref.verify(good[:63], message)
    # malleability: S + L is the same scalar, a non-canonical encoding; both libraries refuse
    s = int.from_bytes(good[32:], "little") + L
    malleated = good[:32] + s.to_bytes(32, "little")
    assert not ref.verify(malleated, message)
    try:
        _openssl_public(ref).verify(malleated, message)
        raise AssertionError("OpenSSL accepted a non-canonical S")
    except InvalidSignature:
        pass
    # another signer's key, a wrong-length key and the identity point (small order) refused
    assert not Ed25519Signer("other").public().verify(good, message)
    assert not PublicKeyRef(Alg.ED25519, ref.public_bytes[:31]).verify(good, message)
    identity = bytes([1]) + bytes(31)
    assert not PublicKeyRef(Alg.ED25519, identity).verify(bytes(64), message)
