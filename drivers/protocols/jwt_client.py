"""JWT (ES256) signed by the token, sent over HTTPS to nginx's verified ``/api``.

:class:`TokenJwtKey` lets PyJWT sign with a token: PyJWT accepts any
``EllipticCurvePrivateKey``, and calls ``sign(message, ECDSA(SHA256))``; here that hashes on
the host and has the token sign the digest (as TLS does), answering DER, which PyJWT turns
into JOSE's raw r‖s. A trial is one request on a kept-alive connection: with
``jwt_ttl_s=0`` every request carries a fresh JWT (one token signature each); with a TTL the
JWT is cached and re-signed only when it expires (the paper's token caching).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.errors import KeyUsageError
from drivers.protocols.base import Condition, ProtocolTrial
from drivers.protocols.https import HttpsClient
from drivers.protocols.mqtt import ProtocolError
from drivers.tls.signer import TokenSigner
from drivers.tokens.base import HashOn


class TokenJwtKey(ec.EllipticCurvePrivateKey):
    """An EC private key whose only private operation is the token's signature."""

    def __init__(self, signer: TokenSigner, hash_on: HashOn = HashOn.HOST) -> None:
        self.signer = signer
        self.hash_on = hash_on
        self._public = signer.token.public_key(signer.key_selector)

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm.algorithm, hashes.SHA256):
            raise KeyUsageError("the token key signs ES256 (SHA-256) only", "use ES256")
        if self.hash_on is HashOn.TOKEN:
            return self.signer.sign_message(bytes(data), HashOn.TOKEN).der
        return self.signer.sign_digest(hashlib.sha256(data).digest()).der

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise KeyUsageError("the private key stays in the token", "only signing is possible")

    exchange = _refuse
    private_numbers = _refuse
    private_bytes = _refuse

    def __copy__(self) -> TokenJwtKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenJwtKey:
        return self


def make_jwt(
    key: ec.EllipticCurvePrivateKey,
    kid: str,
    ttl_s: float = 60.0,
    subject: str = "safelab-device",
    now: float | None = None,
) -> str:
    """An ES256 JWT with ``kid``, ``iat``/``exp`` and a unique ``jti``."""
    issued = now if now is not None else time.time()
    claims = {
        "sub": subject,
        "iat": int(issued),
        "exp": int(issued + ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


class JwtHttpsClient(HttpsClient):
    """GET ``/api`` with ``Authorization: Bearer <JWT>`` on a kept-alive mTLS connection."""

    protocol = "jwt"
    established_at = "HTTPS response to a JWT-authenticated request fully read"

    def __init__(
        self,
        signer: TokenSigner,
        condition: Condition,
        host: str,
        port: int,
        cert_chain: Path,
        ca_file: Path,
        kid: str,
        *,
        path: str = "/api",
        timeout_s: float = 10.0,
    ) -> None:
        keep = dataclasses.replace(condition, keep_alive=True)
        super().__init__(
            signer,
            keep,
            host,
            port,
            cert_chain,
            ca_file,
            path=path,
            timeout_s=timeout_s,
            headers=self._authorization,
        )
        self.key = TokenJwtKey(signer, HashOn.TOKEN if condition.jwt_hash_on_token else HashOn.HOST)
        self.kid = kid
        self._cached: tuple[str, float] | None = None
        self.jwt_ns = 0

    def _authorization(self) -> dict[str, str]:
        now = time.time()
        ttl = self.condition.jwt_ttl_s
        start = time.perf_counter_ns()
        if ttl <= 0 or self._cached is None or self._cached[1] <= now:
            token = make_jwt(self.key, self.kid, ttl_s=max(ttl, 60.0), now=now)
            self._cached = (token, now + ttl)
        self.jwt_ns = time.perf_counter_ns() - start
        return {"Authorization": f"Bearer {self._cached[0]}"}

    def trial(self) -> ProtocolTrial:
        result = super().trial()
        if self.last_status != 200:
            raise ProtocolError(
                f"the server refused the JWT (HTTP {self.last_status}: {self.last_body[:80]!r})",
                "register the token's public key with the verifier (kid) and check the clock",
            )
        phases = dict(result.phases)
        phases["sign"] = self.jwt_ns  # JWT creation; "ready" (the request) excludes it
        return ProtocolTrial(result.total_ns, phases, result.n_sign, result.resumed)
