"""The paper's ``local_sw`` baseline exactly as it was timed: one ``openssl dgst`` per signature.

The paper ran ``openssl dgst -sha256 -sign privkey.pem`` and timed the whole command, process
start-up included. This token does the same: its ``sign`` phase is one child process, fed the
data on stdin, returning the DER signature on stdout. The other phases do nothing (there is no
session, PIN or key lookup outside the process) and so measure only the harness.
"""

from __future__ import annotations

import shutil
import subprocess

from cryptography.hazmat.primitives.asymmetric import ec

from drivers.errors import TokenError
from drivers.tokens.base import HashOn, KeyInfo, Pin, Signature, Token, TokenInfo, TokenSession
from drivers.tokens.software import load_ec_private_key, resolve_key_file
from drivers.tokens.spec import TokenSpec


def find_openssl(binary: str | None = None) -> str:
    """Absolute path of the ``openssl`` program, or a clear error naming the package."""
    path = shutil.which(binary or "openssl")
    if path is None:
        raise TokenError(
            f"the openssl program ({binary or 'openssl'}) is not on PATH",
            "install it (Debian: apt-get install openssl) or give openssl=/path/to/openssl",
        )
    return path


class OpensslCliSession(TokenSession):
    token: OpensslCliToken

    def _login(self, pin: Pin | None) -> None:
        """The key file has no PIN."""

    def _find_key(self, selector: str | None) -> KeyInfo:
        return self.token.key_info

    def _sign_init(self, key: KeyInfo, hash_on: HashOn) -> None:
        """Nothing to prepare: every signature is a fresh process."""

    def _sign(self, data: bytes, hash_on: HashOn) -> Signature:
        command = [self.token.openssl, "dgst", "-sha256", "-sign", str(self.token.key_file)]
        result = subprocess.run(command, input=data, capture_output=True, check=False)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise TokenError(
                f"openssl dgst -sign failed (exit {result.returncode}): "
                f"{message[0] if message else 'no message'}",
                "check that the key file is a readable, unencrypted EC key",
            )
        return Signature.from_der(result.stdout)

    def _sign_digest(self, digest: bytes) -> Signature:
        """``openssl pkeyutl -sign``: the same process per signature, on a given digest."""
        command = [self.token.openssl, "pkeyutl", "-sign", "-inkey", str(self.token.key_file)]
        result = subprocess.run(command, input=digest, capture_output=True, check=False)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise TokenError(
                f"openssl pkeyutl -sign failed (exit {result.returncode}): "
                f"{message[0] if message else 'no message'}",
                "check that the key file is a readable, unencrypted EC key",
            )
        return Signature.from_der(result.stdout)

    def _close(self) -> None:
        """Nothing to release."""


class OpensslCliToken(Token):
    """Signs by running ``openssl dgst -sha256 -sign KEY`` once per signature."""

    def __init__(self, spec: TokenSpec) -> None:
        self.openssl = find_openssl(spec.attrs.get("openssl"))
        self.key_file = resolve_key_file(spec)
        private_key = load_ec_private_key(self.key_file)
        self._public_key = private_key.public_key()
        curve = private_key.curve.name
        version = (
            subprocess.run([self.openssl, "version"], capture_output=True, text=True, check=False)
            .stdout.split("(")[0]
            .strip()
        )  # "OpenSSL 3.0.19 27 Jan 2026"
        uri = f"openssl-cli:key={self.key_file}" if "key" in spec.attrs else f"openssl-cli:{curve}"
        info = TokenInfo(
            kind="openssl-cli",
            uri=uri,
            label=f"openssl dgst {curve}",
            manufacturer="OpenSSL",
            model=version or "openssl",
            module=self.openssl,
        )
        super().__init__(info, device_identity=f"openssl-cli:{self.key_file}")
        self.key_info = KeyInfo(label=self.key_file.stem, key_id="", curve=curve, can_sign=True)

    def _open(self) -> OpensslCliSession:
        return OpensslCliSession(self)

    def keys(self) -> list[KeyInfo]:
        return [self.key_info]

    def public_key(self, selector: str | None = None) -> ec.EllipticCurvePublicKey:
        return self._public_key
