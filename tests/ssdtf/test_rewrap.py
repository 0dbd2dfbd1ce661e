"""The DS's per-destination re-wrap (X25519 + HKDF + ChaCha20-Poly1305): only the destination
opens it, every seal is fresh, and anything altered or degenerate is refused."""

from __future__ import annotations

import pytest

from drivers.ssdtf import rewrap
from drivers.ssdtf.pre import PreError

BUNDLE = b"B1 bundle bytes " * 40


def test_only_the_destination_opens_it() -> None:
    user, other = rewrap.keygen("user-1"), rewrap.keygen("user-2")
    epk, sealed = rewrap.wrap(user.public, BUNDLE)
    assert rewrap.unwrap(user, epk, sealed) == BUNDLE
    with pytest.raises(PreError, match="not for this receiver"):
        rewrap.unwrap(other, epk, sealed)
    assert BUNDLE not in sealed


def test_every_seal_is_fresh_and_differs_between_destinations() -> None:
    user, other = rewrap.keygen("user-1"), rewrap.keygen("user-2")
    seals = [rewrap.wrap(user.public, BUNDLE) for _ in range(3)]
    seals.append(rewrap.wrap(other.public, BUNDLE))
    assert len({epk for epk, _ in seals}) == 4
    assert len({sealed for _, sealed in seals}) == 4


@pytest.mark.parametrize("where", ["epk", "ciphertext", "tag"])
def test_a_changed_byte_is_refused(where: str) -> None:
    user = rewrap.keygen("user-1")
    epk, sealed = rewrap.wrap(user.public, BUNDLE)
    if where == "epk":
        epk = bytes([epk[0] ^ 1]) + epk[1:]
    elif where == "ciphertext":
        sealed = bytes([sealed[0] ^ 1]) + sealed[1:]
    else:
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PreError):
        rewrap.unwrap(user, epk, sealed)


def test_degenerate_and_malformed_keys_are_refused() -> None:
    user = rewrap.keygen("user-1")
    _, sealed = rewrap.wrap(user.public, BUNDLE)
    for bad in (bytes(32), b"\x01" + bytes(31), b"short"):  # low-order points, wrong length
        with pytest.raises(PreError):
            rewrap.unwrap(user, bad, sealed)
    with pytest.raises(PreError, match="re-wrap refused"):
        rewrap.wrap(bytes(32), BUNDLE)
    with pytest.raises(PreError, match="re-wrap refused"):
        rewrap.wrap(b"", BUNDLE)


def test_the_secret_never_prints() -> None:
    user = rewrap.keygen("user-1")
    assert user.secret_bytes().hex() not in repr(user)
    assert rewrap.from_secret("user-1", user.secret_bytes()).public == user.public
