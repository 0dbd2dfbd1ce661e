"""The lab PKI: one CA that every peer trusts, and the certificates it issues.

Why a persistent CA: every run (and every peer) must trust the same root, and a token's client
certificate is issued for the token's *own* public key (its private key never leaves the
token), so re-issuing on each run would only churn files. The CA lives under
``data_dir()/pki/`` (directory 0700, keys 0600) and is made on first use with ``cryptography``
(EC P-256, ECDSA-SHA256).

Bad-input tests need certificates a peer must refuse: :meth:`LabPki.expired_client` (right CA,
validity in the past) and :meth:`LabPki.foreign_client` (a second, untrusted "rogue" CA).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.paths import data_dir
from drivers.x509_profiles import CA_KEY_USAGE

if TYPE_CHECKING:
    from drivers.tokens.base import Token

PublicKey = ec.EllipticCurvePublicKey
"""Client keys are EC (P-256 or brainpoolP256r1), as the tokens of the driver layer."""

_CA_DAYS = 3650
_LEAF_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=7)
"""A cached certificate that expires sooner than this is re-issued, so a run never starts
with a certificate that dies in the middle of it."""


def key_fingerprint(public_key: PublicKey) -> str:
    """SHA-256 (hex) of the SubjectPublicKeyInfo DER: names a key across tokens and runs.

    The JWT verifier also uses it as the ``kid`` of registered keys.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """PEM files a peer or a client reads: a certificate, its key file (if software), the CA.

    ``key_path`` is ``None`` for a token's client certificate: its private key stays in the
    token and the TLS bridge (or OpenVPN's management interface) signs with it.
    """

    cert_path: Path
    key_path: Path | None
    ca_path: Path
    """The lab CA's certificate: what the *other* side must trust (for wrong-CA credentials
    this is still the lab CA, so a client can verify the server while being refused)."""

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` so that readers never see a half-written PEM file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SAFE Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class _Authority:
    """One CA key and certificate kept in a directory; makes them on first use."""

    def __init__(self, directory: Path, common_name: str) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.pem"
        self.key_path = directory / "ca.key"
        if not (self.cert_path.exists() and self.key_path.exists()):
            self._create(common_name)
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key

    def _create(self, common_name: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        name = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                CA_KEY_USAGE,
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_atomic(self.key_path, _key_pem(key), 0o600)
        _write_atomic(self.cert_path, _cert_pem(cert), 0o644)

    def issue(
        self,
        public_key: PublicKey,
        common_name: str,
        *,
        server_names: Iterable[str] = (),
        client: bool = True,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> x509.Certificate:
        """A leaf certificate for ``public_key``; server leaves carry DNS/IP SANs."""
        now = _now()
        start = not_before or now - datetime.timedelta(minutes=5)
        end = not_after or now + datetime.timedelta(days=_LEAF_DAYS)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # digitalSignature for ECDSA; keyAgreement as well because OpenVPN's
            # remote-cert-tls checks a key usage an EC server certificate commonly has.
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        names = list(server_names)
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _usable(cert_path: Path, ca: _Authority, public_key: PublicKey | None = None) -> bool:
    """True if a cached certificate is still issued by ``ca``, valid for a while, same key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca.cert)
    except Exception:  # unreadable, not PEM, other issuer, bad signature: re-issue
        return False
    if cert.not_valid_after_utc - _RENEW_BEFORE < _now():
        return False
    return public_key is None or key_fingerprint(cert.public_key()) == key_fingerprint(public_key)  # type: ignore[arg-type]


class LabPki:
    """The lab CA under ``root`` (default ``data_dir()/pki``) and the files it issues.

    Safe to use from several processes at once: creation happens under a lock file.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or data_dir() / "pki"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        with self._locked():
            self._ca = _Authority(self.root, "SAFE Lab CA")
            rogue_dir = self.root / "rogue"
            rogue_dir.mkdir(exist_ok=True, mode=0o700)
            self._rogue = _Authority(rogue_dir, "SAFE Lab rogue CA (untrusted)")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def ca_path(self) -> Path:
        """PEM of the lab CA: the ``cafile`` of every peer and client."""
        return self._ca.cert_path

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self._ca.cert

    def server_cert(self, names: Iterable[str] = ("localhost", "127.0.0.1")) -> Credentials:
        """Server certificate and software key for ``names`` (DNS names or IP addresses)."""
        wanted = sorted(set(names))
        tag = hashlib.sha256("\0".join(wanted).encode()).hexdigest()[:16]
        cert_path = self.root / f"server-{tag}.pem"
        key_path = self.root / f"server-{tag}.key"
        with self._locked():
            if not (key_path.exists() and _usable(cert_path, self._ca)):
                key = ec.generate_private_key(ec.SECP256R1())
                cert = self._ca.issue(
                    key.public_key(), wanted[0], server_names=wanted, client=False
                )
                _write_atomic(key_path, _key_pem(key), 0o600)
                _write_atomic(cert_path, _cert_pem(cert), 0o644)
        return Credentials(cert_path, key_path, self.ca_path)

    def client_cert_for(self, public_key: PublicKey, name: str) -> Credentials:
        """A client certificate (CN ``name``) for ANY public key; no private key involved.

        Cached by the key's fingerprint: the same key gets the same file until it nears
        expiry, the CA changes, or the name differs.
        """
        fp = key_fingerprint(public_key)
        cert_path = self.root / "clients" / f"client-{fp[:24]}.pem"
        with self._locked():
            cert_path.parent.mkdir(exist_ok=True, mode=0o700)
            if not (_usable(cert_path, self._ca, public_key) and _common_name(cert_path) == name):
                cert = self._ca.issue(public_key, name)
                _write_atomic(cert_path, _cert_pem(cert), 0o644)
        return Credentials(cert_path, None, self.ca_path)

    def client_cert_for_token(
        self, token: Token, name: str | None = None, selector: str | None = None
    ) -> Credentials:
        """The client certificate for a token's own signing key (``token.public_key()``).

        The private key stays in the token; the returned ``key_path`` is ``None``.
        """
        public_key = token.public_key(selector)
        return self.client_cert_for(public_key, name or token.info.label or "token")

    def software_client(self, name: str = "software-client") -> Credentials:
        """A client with a software key file (for health checks, tests, the baseline)."""
        return self._software_leaf(self._ca, name, f"soft-{_tag(name)}")

    def expired_client(self, name: str = "expired-client") -> Credentials:
        """A client certificate from the lab CA whose validity ended yesterday."""
        now = _now()
        return self._software_leaf(
            self._ca,
            name,
            f"expired-{_tag(name)}",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )

    def foreign_client(self, name: str = "foreign-client") -> Credentials:
        """A client certificate from a rogue CA no peer trusts (``ca_path`` is the lab CA)."""
        return self._software_leaf(self._rogue, name, f"foreign-{_tag(name)}")

    def _software_leaf(
        self,
        authority: _Authority,
        name: str,
        stem: str,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Credentials:
        directory = self.root / "clients"
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        expired = not_after is not None and not_after < _now()
        with self._locked():
            directory.mkdir(exist_ok=True, mode=0o700)
            fresh = key_path.exists() and (
                cert_path.exists() if expired else _usable(cert_path, authority)
            )
            if not fresh:
                key = ec.generate_private_key(ec.SECP256R1())
                cert = authority.issue(
                    key.public_key(), name, not_before=not_before, not_after=not_after
                )
                _write_atomic(key_path, _key_pem(key), 0o600)
                _write_atomic(cert_path, _cert_pem(cert), 0o644)
        return Credentials(cert_path, key_path, self.ca_path)


def _tag(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def _common_name(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""
