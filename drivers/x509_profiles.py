"""X.509 extension values both lab CAs use (the PKI of the protocol peers, the emulated card's).

One definition so the two CAs cannot drift apart in what a CA certificate may do.
"""

from __future__ import annotations

from cryptography import x509

CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
"""A CA certificate signs certificates and CRLs (and its own OCSP-style statements)."""
