"""What PQC keys do to a handshake's bytes: certificate chains and DTLS fragmentation.

A MODEL, labelled so wherever it shows: the system OpenSSL 3.0 (the one Python's ``ssl``, the
peers and the token bridge use) has no PQC, so no real TLS or DTLS handshake here can carry an
ML-DSA certificate. What is real:

- certificate sizes: for algorithms ``cryptography`` can put in an X.509 certificate (ECDSA,
  Ed25519, RSA, ML-DSA) the certificate is built and its DER counted (``built``); for FN-DSA
  and SLH-DSA, whose certificates no installed library writes, the size is the same
  certificate made with P-256 with the key and signature swapped for theirs (``modelled``);
- the fragmentation arithmetic of DTLS 1.2 (RFC 6347): each handshake message is cut into
  fragments that fit the path MTU after the IPv4/UDP (28 B), record (13 B) and handshake
  (12 B) headers; one fragment per datagram (OpenSSL packs small messages; we do not);
- over a link (:mod:`drivers.links` spec): serialisation at the link's rate, and the chance
  that a flight of n datagrams loses one (``1-(1-p)^n``), which in DTLS 1.2 costs a
  retransmission timer (initial 1 s, RFC 6347 4.2.4.1) plus the flight again.

The client's certificate flight in mutual auth is: Certificate (the chain), ClientKeyExchange
(ECDHE P-256, 65 B point), CertificateVerify (the device's signature), ChangeCipherSpec and
Finished. The chain sent is the device certificate plus one intermediate CA, both of the
same algorithm (a fully PQC PKI), the usual IoT deployment shape.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from drivers.algorithms.registry import Algorithm, get_algorithm

IP_UDP = 28
DTLS_RECORD = 13
DTLS_HANDSHAKE = 12
DTLS_RTO_S = 1.0
"""DTLS 1.2's initial retransmission timer (RFC 6347 4.2.4.1)."""
CKE_BYTES = 1 + 65
CCS_RECORD = DTLS_RECORD + 1
FINISHED_RECORD = DTLS_RECORD + DTLS_HANDSHAKE + 12 + 8 + 16
"""Finished under AES-128-GCM: explicit nonce 8 B, tag 16 B."""
BUILT = ("p256", "bp256", "ed25519", "rsa2048", "ml-dsa-44", "ml-dsa-65")
MODEL_LABEL = "model (no PQC in the system OpenSSL 3.0: not a measured handshake)"


def _private_key(name: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

    return {
        "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "bp256": lambda: ec.generate_private_key(ec.BrainpoolP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
        "ml-dsa-44": mldsa.MLDSA44PrivateKey.generate,
        "ml-dsa-65": mldsa.MLDSA65PrivateKey.generate,
    }[name]()


def _certificate_der(subject_alg: str, issuer_alg: str) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    subject_key = _private_key(subject_alg)
    issuer_key = _private_key(issuer_alg)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SAFE Lab"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    digest = hashes.SHA256() if issuer_alg in ("p256", "bp256", "rsa2048") else None
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("SAFE Lab emulated IoT SAFE device"))
        .issuer_name(name("SAFE Lab intermediate CA"))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer_key, digest)
    )
    return len(cert.public_bytes(Encoding.DER))


@cache
def certificate_bytes(subject: str, issuer: str | None = None) -> tuple[int, str]:
    """DER size of a device certificate with a ``subject`` key signed by an ``issuer`` key,
    and how it was obtained (``built`` or ``modelled``)."""
    s, i = get_algorithm(subject), get_algorithm(issuer or subject)
    if s.name in BUILT and i.name in BUILT:
        return _certificate_der(s.name, i.name), "built"
    base = _certificate_der("p256", "p256")
    p256 = get_algorithm("p256")
    size = base - p256.public_key_bytes + s.public_key_bytes - 71 + i.signature_bytes
    # 71: a typical P-256 DER signature; the lengths' own bytes grow by at most 4 (ignored).
    return size, "modelled"


@dataclass(frozen=True)
class Flight:
    """The device's certificate flight of a DTLS 1.2 mutual-auth handshake, over a link."""

    algorithm: str
    certificate_bytes: int
    certificate_source: str
    chain_bytes: int
    certificate_verify_bytes: int
    flight_bytes: int
    """Everything the client sends in that flight, headers included."""
    datagrams: int
    mtu: int
    serialisation_ms: float | None
    """At the link's up rate (``None``: no rate given)."""
    p_flight_lost: float
    """Chance at least one datagram of the flight is lost (the link's up loss)."""
    expected_retransmission_ms: float
    """``p_flight_lost`` x (DTLS initial timer + the flight again): the mean added delay."""
    label: str = MODEL_LABEL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fragments(message: int, mtu: int) -> int:
    room = mtu - IP_UDP - DTLS_RECORD - DTLS_HANDSHAKE
    return max(1, math.ceil(message / room))


def client_flight(
    algorithm: str | Algorithm,
    *,
    mtu: int = 1280,
    rate_bps: float | None = None,
    loss: float = 0.0,
) -> Flight:
    """The device's DTLS 1.2 certificate flight with ``algorithm`` keys (a model)."""
    alg = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    cert, source = certificate_bytes(alg.name)
    chain = 3 + 2 * (3 + cert)  # certificate_list length + (length + DER) per certificate
    verify = 4 + alg.signature_bytes  # SignatureAndHashAlgorithm + length + signature
    messages = [chain, CKE_BYTES, verify]
    datagrams = sum(_fragments(m, mtu) for m in messages) + 2  # + CCS and Finished
    header = IP_UDP + DTLS_RECORD + DTLS_HANDSHAKE
    body = sum(messages) + sum(_fragments(m, mtu) for m in messages) * header
    flight = body + CCS_RECORD + FINISHED_RECORD + 2 * IP_UDP
    serial = flight * 8 / rate_bps * 1e3 if rate_bps else None
    p_lost = 1 - (1 - loss) ** datagrams
    return Flight(
        algorithm=alg.name,
        certificate_bytes=cert,
        certificate_source=source,
        chain_bytes=chain,
        certificate_verify_bytes=verify,
        flight_bytes=flight,
        datagrams=datagrams,
        mtu=mtu,
        serialisation_ms=serial,
        p_flight_lost=p_lost,
        expected_retransmission_ms=p_lost * (DTLS_RTO_S * 1e3 + (serial or 0.0)),
    )


def flight_over_link(algorithm: str, link: str | None, *, mtu: int = 1280) -> Flight:
    """:func:`client_flight` with the up direction of a link spec (``--link``)."""
    if not link:
        return client_flight(algorithm, mtu=mtu)
    from drivers.links import parse_link

    up = parse_link(link).up
    return client_flight(algorithm, mtu=mtu, rate_bps=up.rate, loss=up.loss)
