"""Signing keys of the SSDTF roles and the pinned public keys that verify them.

Two kinds of signer, one interface (:class:`Signer`):

- :class:`Ed25519Signer` for the servers (broker gateway, distribution server, management
  server, data user): fast, deterministic, 64-byte signatures (research report §6.2);
- :class:`TokenSigner` for a sensor: its key lives in any token of the driver layer (the
  software key, a PKCS#11 token, the emulated or a real IoT SAFE SIM) and signs ECDSA P-256
  through :class:`drivers.tokens.base.TokenSession`, so a card's latency shows in every
  handshake and every DATA message. The signature is carried raw (r‖s, 64 bytes).

A verifier is a :class:`PublicKeyRef`: the algorithm is pinned with the key, so an envelope
whose ALG differs from the pinned one is refused before any cryptography (no algorithm
confusion, no "none").

Ed25519 runs on libsodium (PyNaCl), not on OpenSSL through ``cryptography``: the same RFC 8032
signatures (byte-identical, deterministic), but measured here a verification costs 0.064 ms
against 0.120 ms and a signature 0.024 against 0.036 ms, and a reading carries three of each
(FWD, DELIVER, ACK). libsodium's verification is the strict one (it refuses non-canonical S,
non-canonical and small-order keys and R), so nothing OpenSSL refused is accepted now.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from drivers.errors import SafeLabError
from drivers.ssdtf.wire import Alg
from drivers.tokens.base import HashOn, KeyInfo, Token, TokenSession


@functools.lru_cache(maxsize=1024)
def kid_of(public_bytes: bytes) -> bytes:
    """8-byte key identifier: the first bytes of SHA-256 of the public key (cached: every
    message names its signer's KID and every receiver compares it with the pinned one)."""
    return hashlib.sha256(public_bytes).digest()[:8]


@functools.lru_cache(maxsize=1024)
def _public_key(alg: Alg, public_bytes: bytes) -> Any:
    """The parsed key object, once per pinned key rather than once per message: parsing (a
    P-256 point decompression and on-curve check) cost about as much as the verification.
    Only keys that parsed are cached (an exception is never cached), and the bound keeps it
    small whatever keys arrive."""
    if alg == Alg.ED25519:
        return VerifyKey(public_bytes)  # libsodium: see the module docstring
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_bytes)


@dataclass(frozen=True)
class PublicKeyRef:
    """A pinned public key: algorithm + encoded public key. Safe to show and export."""

    alg: Alg
    public_bytes: bytes
    owner: str = ""

    @property
    def kid(self) -> bytes:
        return kid_of(self.public_bytes)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.public_bytes).hexdigest()[:16]

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` signs ``data`` under this key; never raises for bad input."""
        if len(signature) != 64:
            return False
        try:
            if self.alg == Alg.ED25519:
                _public_key(self.alg, self.public_bytes).verify(data, signature)
            elif self.alg == Alg.ES256:
                key = _public_key(self.alg, self.public_bytes)
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                key.verify(der, data, ec.ECDSA(hashes.SHA256()))
            else:
                return False
        except (InvalidSignature, BadSignatureError, ValueError):
            return False
        return True


class Signer(Protocol):
    """What a role needs from its signing key."""

    alg: Alg
    name: str

    def public(self) -> PublicKeyRef: ...

    def sign(self, data: bytes) -> bytes:
        """64-byte signature over ``data``."""
        ...

    @property
    def last_sign_ms(self) -> float: ...


class Ed25519Signer:
    """An Ed25519 key held in this process (the private key never leaves this object).

    ``key`` (a ``cryptography`` key) is accepted for callers that hold one; signing runs on
    libsodium with the same seed (see the module docstring)."""

    alg = Alg.ED25519

    def __init__(self, name: str, key: ed25519.Ed25519PrivateKey | None = None) -> None:
        self.name = name
        seed = (key or ed25519.Ed25519PrivateKey.generate()).private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.__key = SigningKey(seed)
        self._public = PublicKeyRef(Alg.ED25519, bytes(self.__key.verify_key), name)
        self._last_ns = 0

    def public(self) -> PublicKeyRef:
        return self._public

    def sign(self, data: bytes) -> bytes:
        start = time.perf_counter_ns()
        signature = self.__key.sign(data).signature
        self._last_ns = time.perf_counter_ns() - start
        return signature

    @property
    def last_sign_ms(self) -> float:
        return self._last_ns / 1e6

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.name!r}, kid={self._public.kid.hex()})"


class TokenSigner:
    """A sensor's key in a token of the driver layer; signs ES256 through the token interface.

    The session is opened and the key found once (phases open/login/find), then every
    signature is ``sign_init_and_sign`` with the hash on the host, as TLS does, so the time a
    card takes is exactly the token's ``sign_init`` + ``sign`` phases.
    """

    alg = Alg.ES256

    def __init__(
        self, name: str, token: Token, pin: object = None, *, owns_token: bool = True
    ) -> None:
        self.name = name
        self.token = token
        self.owns_token = owns_token
        """False for a token lent by the run service, which closes it itself."""
        self._closed = False
        self.session: TokenSession = token.open()
        try:
            self.session.login(pin)  # type: ignore[arg-type]
            self.key: KeyInfo = self.session.find_key(token.key_selector)
            public = token.public_key(token.key_selector)
        except BaseException:
            # A refused PIN or a missing key: release the session (a PKCS#11 login is
            # process-wide while any session of the token stays open).
            self.close()
            raise
        if not isinstance(public.curve, ec.SECP256R1):
            self.close()
            raise SafeLabError(
                f"the key of {name} is on {public.curve.name}, SSDTF pins ES256 (P-256)",
                "use a P-256 key (software:p256, an IoT SAFE p256 key, a PKCS#11 P-256 key)",
            )
        self._public = PublicKeyRef(
            Alg.ES256,
            public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            ),
            name,
        )
        self._last_ns = 0

    def public(self) -> PublicKeyRef:
        return self._public

    def sign(self, data: bytes) -> bytes:
        start = time.perf_counter_ns()
        signature = self.session.sign_init_and_sign(self.key, HashOn.HOST, data)
        self._last_ns = time.perf_counter_ns() - start
        return signature.raw

    @property
    def last_sign_ms(self) -> float:
        return self._last_ns / 1e6

    def close(self) -> None:
        """Close the session (and the token if this signer opened it); safe to call twice.

        Why it matters: a PKCS#11 login belongs to the whole process while any session of
        the token is open, so a session left behind keeps the token logged in for whoever
        comes next (a later wrong PIN would then seem to be accepted)."""
        if self._closed:
            return
        self._closed = True
        self.session.close()
        if self.owns_token:
            self.token.close()

    def __repr__(self) -> str:
        return f"TokenSigner({self.name!r}, {self.token.info.uri!r})"
