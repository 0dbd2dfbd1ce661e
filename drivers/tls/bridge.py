"""A token's key inside OpenSSL's own handshake: ``ssl.SSLContext`` for TLS, and DTLS.

:class:`TokenEvpKey` is an ``EVP_PKEY`` made from the token's *public* key whose ``EC_KEY``
method signs by calling the token (:class:`~drivers.tls.signer.TokenSigner`) with the digest
OpenSSL hands over, answering DER. :func:`client_context` installs it, with the client
certificate, into a normal ``ssl.SSLContext`` that paho-mqtt, ``http.client`` or any library
taking a context can use; every signature the handshake needs goes to the token, which counts
it. The client's own signature algorithms are limited to ECDSA with SHA-256, the hash an IoT
SAFE applet's final-hash mode takes.

Keys and methods are freed when the Python object is collected; a context keeps its key alive
(``context._safelab_key``) as long as it lives.
"""

from __future__ import annotations

import ctypes
import ssl
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from drivers.errors import KeyUsageError
from drivers.tls import libssl
from drivers.tls.libssl import BridgeUnavailable, load, openssl_errors, ssl_ctx_pointer
from drivers.tls.signer import TokenSigner

CLIENT_SIGALGS = b"ECDSA+SHA256"


class TokenEvpKey:
    """An ``EVP_PKEY`` whose private operations are the token's signatures."""

    def __init__(self, signer: TokenSigner, public_key: ec.EllipticCurvePublicKey) -> None:
        self.lib = load()
        crypto = self.lib.crypto
        self.signer = signer
        nid = libssl.NID_BY_CURVE.get(public_key.curve.name)
        if nid is None:
            raise KeyUsageError(
                f"curve {public_key.curve.name} is not supported by the bridge",
                "use a P-256 or brainpoolP256r1 key",
            )
        self._sign_cb = libssl.SIGN_FN(self._sign)
        self._sign_sig_cb = libssl.SIGN_SIG_FN(self._sign_sig)
        self.method = crypto.EC_KEY_METHOD_new(crypto.EC_KEY_OpenSSL())
        setup = ctypes.c_void_p()
        crypto.EC_KEY_METHOD_get_sign(crypto.EC_KEY_OpenSSL(), None, ctypes.byref(setup), None)
        crypto.EC_KEY_METHOD_set_sign(
            self.method,
            ctypes.cast(self._sign_cb, ctypes.c_void_p),
            setup,
            ctypes.cast(self._sign_sig_cb, ctypes.c_void_p),
        )
        self.ec_key = crypto.EC_KEY_new_by_curve_name(nid)
        point = public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        if not crypto.EC_KEY_oct2key(self.ec_key, point, len(point), None):
            raise BridgeUnavailable(
                f"OpenSSL refused the public key ({openssl_errors(self.lib)})",
                "check the token's public key",
            )
        crypto.EC_KEY_set_method(self.ec_key, self.method)
        self.pkey = crypto.EVP_PKEY_new()
        crypto.EVP_PKEY_set1_EC_KEY(self.pkey, self.ec_key)
        self.field_bytes = (public_key.curve.key_size + 7) // 8

    def _sign(
        self,
        _type: int,
        digest: int,
        digest_len: int,
        sig: int,
        sig_len: ctypes._Pointer,
        _kinv: int,
        _r: int,
        _eckey: int,
    ) -> int:
        der = self.signer.sign_for_openssl(ctypes.string_at(digest, digest_len))
        if der is None:
            return 0
        ctypes.memmove(sig, der, len(der))
        sig_len[0] = len(der)
        return 1

    def _sign_sig(self, digest: int, digest_len: int, _kinv: int, _r: int, _eckey: int) -> int:
        der = self.signer.sign_for_openssl(ctypes.string_at(digest, digest_len))
        if der is None:
            return 0
        r, s = decode_dss_signature(der)
        crypto = self.lib.crypto
        size = self.field_bytes
        sig = crypto.ECDSA_SIG_new()
        crypto.ECDSA_SIG_set0(
            sig,
            crypto.BN_bin2bn(r.to_bytes(size, "big"), size, None),
            crypto.BN_bin2bn(s.to_bytes(size, "big"), size, None),
        )
        return sig or 0

    def __del__(self) -> None:
        crypto = getattr(getattr(self, "lib", None), "crypto", None)
        if crypto is None:
            return
        if getattr(self, "pkey", None):
            crypto.EVP_PKEY_free(self.pkey)
        if getattr(self, "ec_key", None):
            crypto.EC_KEY_free(self.ec_key)
        # The method stays allocated: an EC_KEY freed later by OpenSSL may still point to it.


def install_client_key(ctx_pointer: int, key: TokenEvpKey, cert_chain: Path) -> None:
    """Certificate chain file and token key into an ``SSL_CTX``; checks they match."""
    lib = key.lib.ssl
    if lib.SSL_CTX_use_certificate_chain_file(ctx_pointer, str(cert_chain).encode()) != 1:
        raise KeyUsageError(
            f"OpenSSL cannot use the certificate {cert_chain} ({openssl_errors(key.lib)})",
            "check the certificate file",
        )
    if lib.SSL_CTX_use_PrivateKey(ctx_pointer, key.pkey) != 1:
        errors = openssl_errors(key.lib)
        problem = (
            f"the certificate {cert_chain} is not for the token's key ({errors})"
            if "mismatch" in errors
            else f"OpenSSL refused the token key ({errors})"
        )
        raise KeyUsageError(problem, "issue the client certificate for this token's public key")
    if lib.SSL_CTX_check_private_key(ctx_pointer) != 1:
        raise KeyUsageError(
            f"the certificate {cert_chain} is not for the token's key ({openssl_errors(key.lib)})",
            "issue the client certificate for this token's public key",
        )
    lib.SSL_CTX_ctrl(
        ctx_pointer, libssl.SSL_CTRL_SET_CLIENT_SIGALGS_LIST, 0, ctypes.c_char_p(CLIENT_SIGALGS)
    )


def client_context(
    signer: TokenSigner,
    cert_chain: Path,
    ca_file: Path,
    *,
    minimum_version: ssl.TLSVersion | None = None,
    maximum_version: ssl.TLSVersion | None = None,
    tickets: bool = True,
    context_class: type[ssl.SSLContext] = ssl.SSLContext,
) -> ssl.SSLContext:
    """A client ``SSLContext`` (or subclass) that authenticates with the token's key."""
    context = context_class(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca_file))
    if minimum_version is not None:
        context.minimum_version = minimum_version
    if maximum_version is not None:
        context.maximum_version = maximum_version
    if not tickets:
        context.options |= ssl.OP_NO_TICKET
    key = TokenEvpKey(signer, signer.token.public_key(signer.key_selector))
    install_client_key(ssl_ctx_pointer(context), key, cert_chain)
    context._safelab_key = key  # type: ignore[attr-defined]  # keep the EVP_PKEY alive
    return context
