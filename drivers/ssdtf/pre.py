"""Proxy re-encryption behind a small interface, so the SSDTF roles never import a PRE library.

Why an interface: umbral-pre (the chosen backend; research report §1) ships wheels only for
CPython ≤ 3.11 on x86-64 and is dormant. Everything SSDTF needs is five operations —
``keygen``, ``encrypt``, ``conversion_keys`` (umbral "kfrags"), ``reencrypt`` and ``decrypt`` —
so a stand-in backend can replace it without touching the roles.

Split conversion keys: the key owner issues a 2-of-2 pair of kfrags per recipient; share #1
goes to the broker gateway, share #2 to the distribution server. Either proxy alone produces a
cfrag that decrypts nothing; both proxies together still need the recipient's secret key.

When umbral-pre cannot be imported, :func:`backend` returns :data:`PLAIN`, which says so
(``available`` False, ``reason``); the deployment then sends DATA with the PLAIN flag and every
role reports "no confidentiality", rather than pretending.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import SafeLabError


class PreError(SafeLabError):
    """Re-encryption or decryption refused (wrong receiver, wrong capsule, tampered bytes)."""


@dataclass
class PreTimings:
    """Last duration of each operation in ms, for the benchmark's cost breakdown."""

    encrypt: float = 0.0
    reencrypt: float = 0.0
    decrypt: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, ms: float) -> None:
        setattr(self, name, ms)
        self.history.setdefault(name, []).append(ms)


class PreKeyPair:
    """A PRE key pair plus the kfrag signer of a key owner. The secret never prints."""

    def __init__(self, name: str, secret: Any, signer: Any, public: bytes, verifying: bytes):
        self.name = name
        self.__secret = secret
        self.__signer = signer
        self.public = public
        self.verifying = verifying

    def _secret(self) -> Any:
        return self.__secret

    def _signer(self) -> Any:
        return self.__signer

    def __repr__(self) -> str:
        return f"PreKeyPair({self.name!r}, public={self.public[:6].hex()}…)"


class UmbralBackend:
    """umbral-pre 0.11: Umbral threshold PRE on secp256k1 with XChaCha20-Poly1305 as DEM."""

    name = "umbral-pre"
    available = True
    reason = ""
    threshold = 2
    shares = 2

    def __init__(self) -> None:
        import umbral_pre

        self.u = umbral_pre
        self.timings = PreTimings()
        self._verified: dict[tuple[bytes, bytes, bytes, bytes], Any] = {}

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _pk(raw: bytes) -> Any:
        """A parsed secp256k1 public key, once per key rather than once per message (a point
        decompression each time); exceptions are never cached."""
        import umbral_pre

        return umbral_pre.PublicKey.from_compressed_bytes(raw)

    def keygen(self, name: str) -> PreKeyPair:
        u = self.u
        secret = u.SecretKey.random()
        signer = u.Signer(u.SecretKey.random())
        return PreKeyPair(
            name,
            secret,
            signer,
            secret.public_key().to_compressed_bytes(),
            signer.verifying_key().to_compressed_bytes(),
        )

    def encrypt(self, owner_public: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        start = time.perf_counter_ns()
        capsule, ct = self.u.encrypt(self._pk(owner_public), plaintext)
        self.timings.add("encrypt", (time.perf_counter_ns() - start) / 1e6)
        return bytes(capsule), bytes(ct)

    def conversion_keys(self, owner: PreKeyPair, receiver_public: bytes) -> list[bytes]:
        """Kfrag shares (threshold 2 of 2) that convert the owner's capsules for one receiver."""
        kfrags = self.u.generate_kfrags(
            delegating_sk=owner._secret(),
            receiving_pk=self._pk(receiver_public),
            signer=owner._signer(),
            threshold=self.threshold,
            shares=self.shares,
            sign_delegating_key=True,
            sign_receiving_key=True,
        )
        return [bytes(k) for k in kfrags]

    def reencrypt(
        self,
        capsule: bytes,
        kfrag: bytes,
        *,
        owner_public: bytes,
        owner_verifying: bytes,
        receiver_public: bytes,
    ) -> bytes:
        """One cfrag. The kfrag is checked against the owner's keys first (a proxy refuses a
        conversion key that the owner did not issue for this receiver)."""
        job = (kfrag, owner_public, owner_verifying, receiver_public)
        return self.reencrypt_all(capsule, [job])[0]

    def reencrypt_all(
        self, capsule: bytes, jobs: list[tuple[bytes, bytes, bytes, bytes]]
    ) -> list[bytes]:
        """One cfrag per job = (kfrag, owner public, owner verifying, receiver public), in
        job order. The capsule is parsed once for all destinations: parsing checks its proof
        (two scalar multiplications, ~0.3-0.4 ms, about as much as a re-encryption), which
        a proxy must do before converting it but need not repeat per destination."""
        u = self.u
        start = time.perf_counter_ns()
        try:
            parsed = u.Capsule.from_bytes(capsule)
            cfrags = [
                bytes(u.reencrypt(capsule=parsed, kfrag=self._verified_kfrag(*job))) for job in jobs
            ]
        except (ValueError, u.VerificationError) as error:
            raise PreError(f"re-encryption refused: {error}", "check the conversion key") from error
        self.timings.add("reencrypt", (time.perf_counter_ns() - start) / 1e6 / max(1, len(jobs)))
        return cfrags

    def _verified_kfrag(
        self, kfrag: bytes, owner_public: bytes, owner_verifying: bytes, receiver_public: bytes
    ) -> Any:
        """A conversion key checked once, not once per message (bounded: one per kfrag)."""
        cache_key = (kfrag, owner_public, owner_verifying, receiver_public)
        verified = self._verified.get(cache_key)
        if verified is None:
            u = self.u
            verified = u.KeyFrag.from_bytes(kfrag).verify(
                verifying_pk=self._pk(owner_verifying),
                delegating_pk=self._pk(owner_public),
                receiving_pk=self._pk(receiver_public),
            )
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified[cache_key] = verified
        return verified

    def decrypt(
        self,
        receiver: PreKeyPair,
        *,
        owner_public: bytes,
        owner_verifying: bytes,
        capsule: bytes,
        cfrags: list[bytes],
        ciphertext: bytes,
    ) -> bytes:
        """Verify every cfrag (it was made for this receiver and this capsule), then decrypt."""
        u = self.u
        start = time.perf_counter_ns()
        try:
            owner_pk = self._pk(owner_public)
            verifying_pk, receiving_pk = self._pk(owner_verifying), self._pk(receiver.public)
            caps = u.Capsule.from_bytes(capsule)
            verified = [
                u.CapsuleFrag.from_bytes(c).verify(
                    capsule=caps,
                    verifying_pk=verifying_pk,
                    delegating_pk=owner_pk,
                    receiving_pk=receiving_pk,
                )
                for c in cfrags
            ]
        except (ValueError, u.VerificationError) as error:
            raise PreError(
                f"cfrag verification failed: {error}", "not for this receiver"
            ) from error
        try:
            plaintext = bytes(
                u.decrypt_reencrypted(
                    receiving_sk=receiver._secret(),
                    delegating_pk=owner_pk,
                    capsule=caps,
                    verified_cfrags=verified,
                    ciphertext=ciphertext,
                )
            )
        except ValueError as error:
            raise PreError(f"decryption failed: {error}", "ciphertext or cfrags wrong") from error
        self.timings.add("decrypt", (time.perf_counter_ns() - start) / 1e6)
        return plaintext

    def decrypt_original(self, owner: PreKeyPair, capsule: bytes, ciphertext: bytes) -> bytes:
        """The key owner's own decryption (no proxy involved)."""
        try:
            return bytes(
                self.u.decrypt_original(
                    delegating_sk=owner._secret(),
                    capsule=self.u.Capsule.from_bytes(capsule),
                    ciphertext=ciphertext,
                )
            )
        except (ValueError, TypeError) as error:
            raise PreError(f"decryption failed: {error}", "wrong key") from error


class PlainBackend:
    """No PRE library: says so; DATA then travels signed but in the clear (flag PLAIN)."""

    name = "plain"
    available = False
    threshold = 0
    shares = 0

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.timings = PreTimings()


def backend(prefer: str = "auto") -> UmbralBackend | PlainBackend:
    """The PRE backend: ``auto``/``umbral`` (umbral-pre if importable) or ``plain``."""
    if prefer == "plain":
        return PlainBackend("plain mode requested")
    try:
        return UmbralBackend()
    except ImportError as error:
        if prefer == "umbral":
            raise SafeLabError(
                f"umbral-pre cannot be imported ({error})",
                "install umbral-pre 0.11 (CPython 3.11 x86-64 wheel) or use --pre plain",
            ) from error
        return PlainBackend(f"umbral-pre not installed ({error}): no confidentiality")
