"""The in-process software token (the ``local_sw`` baseline), on ``cryptography``.

The key is either a PEM file the user names (``software:key=/path/key.pem``) or the lab's own
key for the curve, generated once into the private lab-keys directory so that every run (and
the ``openssl-cli`` token, which needs a file) signs with the same key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from drivers.errors import KeyNotFoundError, KeyUsageError
from drivers.paths import lab_keys_dir
from drivers.tokens.base import (
    CURVES,
    HashOn,
    KeyInfo,
    Pin,
    Signature,
    Token,
    TokenInfo,
    TokenSession,
)
from drivers.tokens.spec import TokenSpec

_sha256 = hashlib.sha256
# Immutable algorithm objects, made once: building them costs µs inside a timed trial.
_HOST_HASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
_TOKEN_HASHED = ec.ECDSA(hashes.SHA256())


def lab_key_path(curve: str) -> Path:
    """Path of the lab's software key for ``curve``, created (mode 0600) on first use."""
    path = lab_keys_dir() / f"software-{curve}.pem"
    if not path.exists():
        key = ec.generate_private_key(CURVES[curve])
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    return path


def load_ec_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM EC private key, with errors that say what to do."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyNotFoundError(
            f"cannot read key file {path} ({exc.strerror})",
            "check the path in key=... and that you may read it",
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyUsageError(
            f"{path} is not an unencrypted PEM private key ({exc})",
            "give a PEM key file, e.g. from `openssl ecparam -genkey -name prime256v1`",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyUsageError(
            f"{path} holds a {type(key).__name__}, not an EC key",
            "SAFE Lab signs with ECDSA: give a P-256 or brainpoolP256r1 key",
        )
    return key


def resolve_key_file(spec: TokenSpec) -> Path:
    """The PEM file the spec names, or the lab key for its curve."""
    if "key" in spec.attrs:
        return Path(spec.attrs["key"]).expanduser()
    return lab_key_path(spec.curve)


class SoftwareSession(TokenSession):
    token: SoftwareToken

    def _login(self, pin: Pin | None) -> None:
        """A software key has no PIN."""

    def _find_key(self, selector: str | None) -> KeyInfo:
        return self.token.key_info

    def _sign_init(self, key: KeyInfo, hash_on: HashOn) -> None:
        self._algorithm = _HOST_HASHED if hash_on is HashOn.HOST else _TOKEN_HASHED
        self._signer = self.token.private_key.sign  # bound once: a trial pays no lookups

    def _sign(self, data: bytes, hash_on: HashOn) -> Signature:
        message = _sha256(data).digest() if hash_on is HashOn.HOST else data
        return Signature(der=self._signer(message, self._algorithm))

    def _sign_digest(self, digest: bytes) -> Signature:
        return Signature.from_der(self.token.private_key.sign(digest, _HOST_HASHED))

    def _close(self) -> None:
        """Nothing to release."""


class SoftwareToken(Token):
    """An EC private key in this process, signing with ``cryptography`` (OpenSSL)."""

    def __init__(self, spec: TokenSpec) -> None:
        self.key_file = resolve_key_file(spec)
        self.private_key = load_ec_private_key(self.key_file)
        curve = self.private_key.curve.name
        uri = f"software:key={self.key_file}" if "key" in spec.attrs else f"software:{curve}"
        info = TokenInfo(
            kind="software",
            uri=uri,
            label=f"software {curve}",
            manufacturer="cryptography",
            model="in-process",
            module=f"cryptography (OpenSSL) {self.key_file.name}",
        )
        super().__init__(info, device_identity=f"software:{self.key_file}")
        self.key_info = KeyInfo(
            label=self.key_file.stem, key_id="", curve=curve, can_sign=True, ref=self.private_key
        )

    def _open(self) -> SoftwareSession:
        return SoftwareSession(self)

    def keys(self) -> list[KeyInfo]:
        return [self.key_info]

    def public_key(self, selector: str | None = None) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()
