"""The ES256 JWT check every HTTPS peer applies to ``/api`` (nginx via the verifier, and the
embedded Python server directly), so both reject the same tokens for the same reasons.

Keys are PEM public keys in a directory, one file per key named ``<fingerprint>.pem``
(:func:`drivers.peers.pki.key_fingerprint`). Registering a token's key is writing its file;
the check reloads the directory when it changes, so a running peer learns new keys.

A token names its key with the JOSE ``kid`` header (the fingerprint); without ``kid`` every
registered key is tried. ``exp`` is required: the experiments measure cached JWTs with a TTL,
and a token without expiry would make "expired" untestable.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``reason`` is a short machine word plus detail."""

    ok: bool
    reason: str
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return str(self.claims.get("sub", ""))


def register_key(directory: Path, public_key: ec.EllipticCurvePublicKey) -> str:
    """Make ``public_key`` acceptable for JWTs checked against ``directory``; returns its kid."""
    from drivers.peers.pki import key_fingerprint

    kid = key_fingerprint(public_key)
    directory.mkdir(parents=True, exist_ok=True)
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tmp = directory / f".{kid}.tmp"
    tmp.write_bytes(pem)
    os.replace(tmp, directory / f"{kid}.pem")
    return kid


class KeyDirectory:
    """Registered public keys by kid, reloaded when the directory's mtime changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: int | None = None
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._guard = threading.Lock()

    def keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        with self._guard:
            try:
                stamp = self.directory.stat().st_mtime_ns
            except FileNotFoundError:
                return {}
            if stamp != self._stamp:
                loaded = {}
                for path in self.directory.glob("*.pem"):
                    key = serialization.load_pem_public_key(path.read_bytes())
                    if isinstance(key, ec.EllipticCurvePublicKey):
                        loaded[path.stem] = key
                self._keys, self._stamp = loaded, stamp
            return self._keys


def check_authorization(header: str | None, keys: dict[str, ec.EllipticCurvePublicKey]) -> Verdict:
    """Check an ``Authorization: Bearer <jwt>`` header value against registered ``keys``."""
    if not header:
        return Verdict(False, "missing: no Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Verdict(False, "malformed: expected 'Bearer <jwt>'")
    return check_token(token.strip(), keys)


def check_token(token: str, keys: dict[str, ec.EllipticCurvePublicKey]) -> Verdict:
    """Verify signature (ES256, a registered key), then ``exp``/``nbf``/``iat``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        return Verdict(False, f"malformed: {exc}")
    if header.get("alg") != ALGORITHM:
        return Verdict(False, f"wrong-algorithm: {header.get('alg')!r}, only {ALGORITHM}")
    kid = header.get("kid")
    if kid is not None:
        if kid not in keys:
            return Verdict(False, "unknown-key: kid is not registered")
        candidates = [keys[kid]]
    else:
        candidates = list(keys.values())
    if not candidates:
        return Verdict(False, "unknown-key: no key registered")
    for key in candidates:
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], options={"require": ["exp"]}, leeway=0
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            return Verdict(False, "expired: exp is in the past")
        except jwt.MissingRequiredClaimError as exc:
            return Verdict(False, f"missing-claim: {exc}")
        except jwt.ImmatureSignatureError as exc:
            return Verdict(False, f"not-yet-valid: {exc}")
        except jwt.InvalidTokenError as exc:
            return Verdict(False, f"invalid: {exc}")
        return Verdict(True, "ok", claims)
    return Verdict(False, "bad-signature: no registered key verifies it")
