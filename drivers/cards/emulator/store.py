"""The emulated card's objects: keys, public keys, files, and the lab CA that signs them.

The card is provisioned at start the way an operator provisions a SIM: a device key pair, a
certificate for it from a CA (here a lab CA made with ``cryptography``), the CA certificate,
and slots for ECDH and a peer's public key. IDs follow the most common convention of the
reference (§1.6: Orange, wolfSSL on Raspberry Pi): private key ``01``, client certificate file
``02``, CA/server certificate file ``03``, ECDH key ``04``, peer public key ``05``.

| kind    | ID | label          | what                                            |
|---------|----|----------------|-------------------------------------------------|
| private | 01 | client         | P-256 signing key (sign/verify)                 |
| private | 02 | client-bp      | brainpoolP256r1 signing key (if asked for)      |
| private | 04 | ecdh           | P-256 key agreement key (ECKA, keygen)          |
| private | 06 | spare          | P-256 key for GENERATE KEY PAIR (sign, keygen)  |
| public  | 01 | client         | public half of private 01                       |
| public  | 02 | client-bp      | public half of private 02                       |
| public  | 04 | ecdh           | public half of private 04                       |
| public  | 05 | peer           | writable slot for PUT PUBLIC KEY                |
| public  | 06 | spare          | public half of private 06                       |
| file    | 02 | client-cert    | X.509 certificate of key 01                     |
| file    | 03 | ca-cert        | the lab CA certificate                          |
| file    | 07 | client-bp-cert | X.509 certificate of key 02 (if asked for)      |
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, overload

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drivers.cards.emulator.pqc import PqcKeyObject
from drivers.tokens.base import CURVES
from drivers.x509_profiles import CA_KEY_USAGE

KEY_TYPE_OF_CURVE = {"secp256r1": 0x13, "brainpoolP256r1": 0x23}
"""Persistent key types (object list tag ``4B``)."""

FN_SIGN, FN_KEYGEN, FN_AGREE = 0x01, 0x02, 0x04
ACCESS_READ, ACCESS_UPDATE = 0x01, 0x02

LAB_PIN = "1234"
"""The emulated SIM's PIN when a PIN is required (a test PIN, like SoftHSM's in the tests)."""


@dataclass
class PrivateKeyObject:
    id: bytes
    label: str
    key: ec.EllipticCurvePrivateKey
    functions: int = FN_SIGN
    usage: int = 0x01
    state: int = 0x01

    @property
    def curve(self) -> str:
        return _curve_name(self.key.curve)


@dataclass
class PublicKeyObject:
    id: bytes
    label: str
    key: ec.EllipticCurvePublicKey
    access: int = ACCESS_READ
    functions: int = FN_SIGN

    @property
    def curve(self) -> str:
        return _curve_name(self.key.curve)

    @property
    def point(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )


@dataclass
class FileObject:
    id: bytes
    label: str
    content: bytes
    usage: int = 0x02
    access: int = ACCESS_READ


CardObject = PrivateKeyObject | PublicKeyObject | FileObject
ObjectKind = Literal["private", "public", "file"]


@dataclass
class CardStore:
    """Everything the applet keeps across sessions: objects, PIN state, the lab CA."""

    private_keys: dict[bytes, PrivateKeyObject] = field(default_factory=dict)
    public_keys: dict[bytes, PublicKeyObject] = field(default_factory=dict)
    files: dict[bytes, FileObject] = field(default_factory=dict)
    pqc_keys: dict[bytes, PqcKeyObject] = field(default_factory=dict)
    """PQC key pairs (:func:`drivers.cards.emulator.pqc.add_pqc_key`): in memory only."""
    ca_certificate: x509.Certificate | None = None
    pin: str | None = None
    pin_tries: int = 3
    pin_verified: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @overload
    def find(
        self, kind: Literal["private"], *, id: bytes | None = None, label: str | None = None
    ) -> PrivateKeyObject | None: ...
    @overload
    def find(
        self, kind: Literal["public"], *, id: bytes | None = None, label: str | None = None
    ) -> PublicKeyObject | None: ...
    @overload
    def find(
        self, kind: Literal["file"], *, id: bytes | None = None, label: str | None = None
    ) -> FileObject | None: ...
    @overload
    def find(
        self, kind: ObjectKind, *, id: bytes | None = None, label: str | None = None
    ) -> CardObject | None: ...
    def find(
        self, kind: ObjectKind, *, id: bytes | None = None, label: str | None = None
    ) -> CardObject | None:
        """The object of ``kind`` with that ID or label, or ``None``."""
        tables: dict[str, Mapping[bytes, CardObject]] = {
            "private": self.private_keys,
            "public": self.public_keys,
            "file": self.files,
        }
        table = tables[kind]
        if id is not None:
            return table.get(id)
        for obj in table.values():
            if obj.label == label:
                return obj
        return None


def _curve_name(curve: ec.EllipticCurve) -> str:
    return {"secp256r1": "secp256r1", "brainpoolP256r1": "brainpoolP256r1"}.get(
        curve.name, curve.name
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SAFE Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def provision_lab_card(
    curves: tuple[str, ...] = ("secp256r1",), *, pin: str | None = None
) -> CardStore:
    """A freshly provisioned card (new keys every call) with a lab CA and certificates."""
    store = CardStore(pin=pin)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("SAFE Lab emulated card CA")
    ca_cert = _certificate(
        "SAFE Lab emulated card CA", ca_key.public_key(), ca_name, ca_key, ca=True
    )
    store.ca_certificate = ca_cert

    def add_pair(key_id: int, label: str, curve: str, functions: int) -> PrivateKeyObject:
        ident = bytes([key_id])
        key = ec.generate_private_key(CURVES[curve])
        private = PrivateKeyObject(ident, label, key, functions=functions)
        store.private_keys[ident] = private
        store.public_keys[ident] = PublicKeyObject(
            ident, label, key.public_key(), functions=functions
        )
        return private

    def add_cert(file_id: int, label: str, subject: str, key: PrivateKeyObject) -> None:
        cert = _certificate(subject, key.key.public_key(), ca_name, ca_key, ca=False)
        der = cert.public_bytes(serialization.Encoding.DER)
        store.files[bytes([file_id])] = FileObject(bytes([file_id]), label, der)

    client = add_pair(0x01, "client", "secp256r1", FN_SIGN)
    add_cert(0x02, "client-cert", "SAFE Lab emulated IoT SAFE device", client)
    store.files[b"\x03"] = FileObject(
        b"\x03", "ca-cert", ca_cert.public_bytes(serialization.Encoding.DER)
    )
    if "brainpoolP256r1" in curves:
        bp = add_pair(0x02, "client-bp", "brainpoolP256r1", FN_SIGN)
        add_cert(0x07, "client-bp-cert", "SAFE Lab emulated IoT SAFE device (brainpool)", bp)
    add_pair(0x04, "ecdh", "secp256r1", FN_AGREE | FN_KEYGEN)
    add_pair(0x06, "spare", "secp256r1", FN_SIGN | FN_KEYGEN)
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    store.public_keys[b"\x05"] = PublicKeyObject(
        b"\x05", "peer", peer, access=ACCESS_READ | ACCESS_UPDATE, functions=FN_AGREE
    )
    return store


_SHARED: dict[tuple[str, tuple[str, ...], str | None], CardStore] = {}
_SHARED_LOCK = threading.Lock()


def shared_card(
    name: str = "default",
    curves: tuple[str, ...] = ("secp256r1",),
    *,
    pin: str | None = None,
    persist: bool = True,
    fresh: bool = False,
) -> CardStore:
    """The emulated card called ``name``: the same keys in this process and across restarts.

    Every token opened on ``iotsafe:emulated;card=NAME`` in this process reaches the same keys,
    as tokens opened twice on one physical SIM would. With ``persist`` the card is read from
    ``<data dir>/cards/NAME.json`` (written when first provisioned; see
    :mod:`drivers.cards.emulator.persist`), so its keys and certificates survive restarts and
    trust built on them holds. ``fresh`` provisions new keys and overwrites the saved card.
    """
    from drivers.cards.emulator.persist import load_card, save_card

    key = (name, tuple(sorted(curves)), pin)
    with _SHARED_LOCK:
        store = None if fresh else _SHARED.get(key)
        if store is None:
            if persist and not fresh:
                store = load_card(name, curves, pin=pin)
            if store is None:
                store = provision_lab_card(curves, pin=pin)
                if persist:
                    save_card(name, store, curves)
            if fresh:  # a fresh card replaces every cached copy of that name
                for other in [k for k in _SHARED if k[0] == name and k != key]:
                    del _SHARED[other]
            _SHARED[key] = store
        return store
