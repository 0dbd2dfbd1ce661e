"""The lab PKI: persisted CA, server and client certificates, bad-input certificates."""

from __future__ import annotations

import datetime
import ipaddress
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.paths import data_dir
from drivers.peers import LabPki, key_fingerprint
from drivers.tokens.registry import open_token


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_persisted_private_and_reused() -> None:
    first = LabPki()
    assert first.root == data_dir() / "pki"
    assert _mode(first.root) == 0o700
    assert _mode(first.root / "ca.key") == 0o600
    second = LabPki()
    assert second.ca_certificate == first.ca_certificate
    ca = first.ca_certificate
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"


def test_server_cert_names_loopback(pki: LabPki) -> None:
    cred = pki.server_cert()
    cert = cred.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    cert.verify_directly_issued_by(pki.ca_certificate)
    assert cred.key_path is not None and _mode(cred.key_path) == 0o600
    assert pki.server_cert().cert_path == cred.cert_path
    assert pki.server_cert().certificate.serial_number == cert.serial_number


def test_client_cert_for_any_public_key_without_private_key(pki: LabPki) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    cred = pki.client_cert_for(key, "sensor-1")
    assert cred.key_path is None
    cert = cred.certificate
    assert key_fingerprint(cert.public_key()) == key_fingerprint(key)  # type: ignore[arg-type]
    cert.verify_directly_issued_by(pki.ca_certificate)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "sensor-1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    # Cached by fingerprint: the same key gets the same certificate.
    again = pki.client_cert_for(key, "sensor-1")
    assert again.cert_path == cred.cert_path
    assert again.certificate.serial_number == cert.serial_number
    # A new name re-issues in place.
    renamed = pki.client_cert_for(key, "sensor-2")
    assert renamed.cert_path == cred.cert_path
    assert renamed.certificate.serial_number != cert.serial_number


def test_brainpool_key_gets_a_certificate(pki: LabPki) -> None:
    key = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    cert = pki.client_cert_for(key, "bp").certificate
    assert cert.public_key().curve.name == "brainpoolP256r1"  # type: ignore[union-attr]


def test_client_cert_for_token_uses_the_tokens_own_key(pki: LabPki) -> None:
    with open_token("software:secp256r1") as token:
        cred = pki.client_cert_for_token(token)
        assert cred.key_path is None
        assert key_fingerprint(cred.certificate.public_key()) == key_fingerprint(  # type: ignore[arg-type]
            token.public_key()
        )


def test_bad_input_certificates(pki: LabPki) -> None:
    expired = pki.expired_client()
    now = datetime.datetime.now(datetime.UTC)
    assert expired.certificate.not_valid_after_utc < now
    expired.certificate.verify_directly_issued_by(pki.ca_certificate)
    foreign = pki.foreign_client()
    assert foreign.certificate.issuer != pki.ca_certificate.subject
    assert foreign.ca_path == pki.ca_path
    for cred in (expired, foreign):
        assert cred.key_path is not None and _mode(cred.key_path) == 0o600
