"""Every algorithm signs and verifies in software with the sizes its standard gives."""

from __future__ import annotations

import pytest

from drivers.algorithms.measure import MESSAGE, measure
from drivers.algorithms.registry import ALGORITHMS, get_algorithm
from drivers.algorithms.software import generate
from drivers.errors import SafeLabError


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_signature_verifies_and_has_the_standard_sizes(name: str) -> None:
    algorithm = ALGORITHMS[name]
    key = generate(name)
    signature = key.sign(MESSAGE)
    assert len(key.public_bytes) == algorithm.public_key_bytes
    if algorithm.family == "ecc" and name != "ed25519":
        assert 68 <= len(signature) <= algorithm.signature_bytes  # DER varies
    else:
        assert len(signature) == algorithm.signature_bytes
    assert key.verify(MESSAGE, signature)
    assert not key.verify(MESSAGE[::-1], signature)
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not key.verify(MESSAGE, tampered)


def test_ml_dsa_signature_verifies_with_cryptography_directly() -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    key = generate("ml-dsa-44")
    signature = key.sign(MESSAGE)
    public = mldsa.MLDSA44PublicKey.from_public_bytes(key.public_bytes)
    public.verify(signature, MESSAGE)  # raises InvalidSignature if wrong


def test_fn_dsa_and_falcon_agree_on_sizes_across_libraries() -> None:
    """py-fn-dsa's FN-DSA-512 and pqcrypto's padded Falcon-512 give the same sizes."""
    from pqcrypto.sign import falcon_padded_512

    public, secret = falcon_padded_512.generate_keypair()
    signature = falcon_padded_512.sign(secret, MESSAGE)
    algorithm = get_algorithm("falcon-512")
    assert algorithm.name == "fn-dsa-512"
    assert len(public) == algorithm.public_key_bytes
    assert len(signature) == algorithm.signature_bytes
    assert falcon_padded_512.verify(public, MESSAGE, signature)


def test_measure_reports_counts_and_a_verified_signature() -> None:
    timing = measure(get_algorithm("ml-dsa-44"), n=5)
    assert timing.n_sign == timing.n_verify == 5
    assert timing.verified
    assert timing.signature_bytes == 2420
    assert timing.sign_p50_ms > 0 and timing.sign_p90_ms >= timing.sign_p50_ms
    assert timing.library.startswith("cryptography ")


def test_unknown_algorithm_names_the_known_ones() -> None:
    with pytest.raises(SafeLabError) as caught:
        get_algorithm("dilithium9")
    assert "ml-dsa-44" in caught.value.one_line() and "dilithium9" in caught.value.one_line()
