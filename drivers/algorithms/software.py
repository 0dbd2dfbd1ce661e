"""A software signer and verifier per algorithm, on maintained libraries only.

- ECDSA P-256/brainpoolP256r1, Ed25519, RSA-2048 and ML-DSA-44/65: ``cryptography`` (its
  50.x wheel carries an OpenSSL with ML-DSA, unlike the system OpenSSL 3.0);
- FN-DSA-512 (Falcon-512): ``py-fn-dsa`` (bindings to the c-fn-dsa reference), padded
  signatures of exactly 666 bytes;
- SLH-DSA-128s/f: ``pqcrypto`` 0.4.0 (PQClean's round-3 SPHINCS+-SHA2-simple: the sizes and
  cost of FIPS 205 SLH-DSA, not byte-compatible with it). Pinned: 1.0.0 dropped Falcon and
  signs ML-DSA 15-20x slower.

The keys live in this process only; nothing here is stored or logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from drivers.algorithms.registry import Algorithm, get_algorithm
from drivers.errors import SafeLabError


@dataclass
class SoftwareKey:
    """One key pair of one algorithm: sign and verify raw bytes."""

    algorithm: Algorithm
    public_bytes: bytes
    _sign: Callable[[bytes], bytes]
    _verify: Callable[[bytes, bytes], bool]

    def sign(self, message: bytes) -> bytes:
        return self._sign(message)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is valid for ``message`` under this key."""
        return self._verify(message, signature)


def library_version(library: str) -> str:
    """``name version`` of an installed library (``?`` when it cannot be read)."""
    try:
        return f"{library} {metadata.version(library)}"
    except metadata.PackageNotFoundError:
        return f"{library} (not installed)"


def _cryptography_key(name: str) -> SoftwareKey:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa

    algorithm = get_algorithm(name)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    point = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint

    def checked(call: Callable[[], None]) -> bool:
        try:
            call()
        except InvalidSignature:
            return False
        return True

    if name in ("p256", "bp256"):
        curve = ec.SECP256R1() if name == "p256" else ec.BrainpoolP256R1()
        ek = ec.generate_private_key(curve)
        epub = ek.public_key()
        sig = ec.ECDSA(hashes.SHA256())
        return SoftwareKey(
            algorithm,
            epub.public_bytes(*point),
            lambda m: ek.sign(m, sig),
            lambda m, s: checked(lambda: epub.verify(s, m, sig)),
        )
    if name == "ed25519":
        dk = ed25519.Ed25519PrivateKey.generate()
        dpub = dk.public_key()
        return SoftwareKey(
            algorithm,
            dpub.public_bytes(*raw),
            dk.sign,
            lambda m, s: checked(lambda: dpub.verify(s, m)),
        )
    if name == "rsa2048":
        rk = rsa.generate_private_key(65537, 2048)
        rpub = rk.public_key()
        pad, digest = padding.PKCS1v15(), hashes.SHA256()
        return SoftwareKey(
            algorithm,
            rpub.public_bytes(*der),
            lambda m: rk.sign(m, pad, digest),
            lambda m, s: checked(lambda: rpub.verify(s, m, pad, digest)),
        )
    mk: mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey = (
        mldsa.MLDSA44PrivateKey.generate()
        if name == "ml-dsa-44"
        else mldsa.MLDSA65PrivateKey.generate()
    )
    mpub = mk.public_key()
    return SoftwareKey(
        algorithm,
        mpub.public_bytes(*raw),
        mk.sign,
        lambda m, s: checked(lambda: mpub.verify(s, m)),
    )


def _fn_dsa_key() -> SoftwareKey:
    import py_fn_dsa

    verify_key, signing_key = py_fn_dsa.keygen(py_fn_dsa.LOGN_512)
    return SoftwareKey(
        get_algorithm("fn-dsa-512"),
        bytes(verify_key.key_data),
        lambda m: bytes(py_fn_dsa.sign(signing_key, m)),
        lambda m, s: bool(py_fn_dsa.verify(verify_key, s, m)),
    )


def _sphincs_key(name: str) -> SoftwareKey:
    from pqcrypto.sign import sphincs_sha2_128f_simple, sphincs_sha2_128s_simple

    module = sphincs_sha2_128s_simple if name == "slh-dsa-128s" else sphincs_sha2_128f_simple
    public, secret = module.generate_keypair()

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            return bool(module.verify(public, message, signature))
        except (ValueError, RuntimeError):
            return False

    return SoftwareKey(
        get_algorithm(name),
        bytes(public),
        lambda m: bytes(module.sign(secret, m)),
        verify,
    )


def generate(name: str) -> SoftwareKey:
    """A fresh key pair of algorithm ``name`` (see :data:`~.registry.ALGORITHMS`)."""
    algorithm = get_algorithm(name)
    try:
        if algorithm.library == "cryptography":
            return _cryptography_key(algorithm.name)
        if algorithm.library == "py-fn-dsa":
            return _fn_dsa_key()
        return _sphincs_key(algorithm.name)
    except ImportError as exc:
        raise SafeLabError(
            f"{algorithm.title} needs the {algorithm.library} library ({exc})",
            f"pip install {algorithm.library} (see pyproject.toml for the pinned version)",
        ) from None
