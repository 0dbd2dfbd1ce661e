"""Shared fixtures: a real SoftHSM2 token in a temp directory, and an isolated data directory.

The SoftHSM2 token is created once per test session with ``softhsm2-util`` (Debian
``softhsm2``) and filled with real keys through python-pkcs11:

- ``dev``: P-256 signing key (CKA_ID 01) with a certificate from a lab CA;
- ``bp``: brainpoolP256r1 signing key (CKA_ID 02);
- ``nosign``: P-256 key whose private half has CKA_SIGN false (CKA_ID 03);
- ``rsa``: RSA-2048 key (CKA_ID 04), which SAFE Lab must refuse clearly.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is first initialised, and python-pkcs11 keeps
one initialised module per process, so the variable is set for the whole session here.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
USER_PIN = "lab-PIN-q7"  # letters: a PIN must never be found by chance in exported numbers
SO_PIN = "56789012"
TOKEN_LABEL = "safelab-test"
PAPER_DATA = b"12345678901234567890123456789012"


@dataclass(frozen=True)
class SoftHsm:
    module: str
    conf: Path
    label: str
    pin: str

    def uri(self, key: str = "dev", module: str | None = None) -> str:
        return f"pkcs11:token={self.label};object={key}?module-path={module or self.module}"


def _create_softhsm(root: Path) -> SoftHsm:
    if not Path(SOFTHSM_MODULE).exists() or shutil.which("softhsm2-util") is None:
        pytest.fail("SoftHSM2 is missing: run scripts/test, which installs Debian softhsm2")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
    )
    _provision_keys()
    return SoftHsm(SOFTHSM_MODULE, conf, TOKEN_LABEL, USER_PIN)


def _provision_keys() -> None:
    import pkcs11
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass

    p256 = bytes.fromhex("06082A8648CE3D030107")
    brainpool = bytes.fromhex("06092B2403030208010107")
    lib = pkcs11.lib(SOFTHSM_MODULE)
    token = lib.get_token(token_label=TOKEN_LABEL)
    with token.open(rw=True, user_pin=USER_PIN) as session:

        def ec_pair(params: bytes, label: str, key_id: bytes, sign: bool = True):
            domain = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: params}, local=True
            )
            return domain.generate_keypair(
                store=True,
                label=label,
                id=key_id,
                private_template={Attribute.SIGN: sign},
            )

        dev_public, _ = ec_pair(p256, "dev", b"\x01")
        ec_pair(brainpool, "bp", b"\x02")
        ec_pair(p256, "nosign", b"\x03", sign=False)
        session.generate_keypair(KeyType.RSA, 2048, store=True, label="rsa", id=b"\x04")

        # A certificate for "dev" from a lab CA, stored beside the key (same CKA_ID).
        point = bytes(dev_public[Attribute.EC_POINT])
        from asn1crypto.core import OctetString

        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), OctetString.load(point).native
        )
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")])
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SAFE Lab test CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(ca_key, hashes.SHA256())
        )
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: "dev",
                Attribute.ID: b"\x01",
                Attribute.SUBJECT: subject.public_bytes(),
                Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER),
            }
        )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    return _create_softhsm(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own SAFE Lab data directory (results store, lab keys)."""
    path = tmp_path / "safelab-data"
    monkeypatch.setenv("SAFELAB_DATA_DIR", str(path))
    monkeypatch.delenv("SAFELAB_DB", raising=False)
    return path


@pytest.fixture(scope="session")
def pcscd() -> Iterator[str]:
    """A running pcscd with the vpcd reader driver (Debian pcscd, vsmartcard-vpcd).

    Reuses a pcscd that is already running (a system service); otherwise starts ``pcscd -f``
    for the session. Returns the first virtual reader's name.
    """
    from drivers.cards.pcsc import ensure_pcscd, list_readers

    if shutil.which("pcscd") is None or not Path("/usr/lib/pcsc/drivers/serial").exists():
        pytest.fail("pcscd/vpcd missing: run scripts/test, which installs pcscd vsmartcard-vpcd")
    started = ensure_pcscd()
    names = [r.name for r in list_readers() if "Virtual PCD" in r.name]
    if not names:
        pytest.fail("pcscd shows no 'Virtual PCD' reader (is vsmartcard-vpcd installed?)")
    yield names[0]
    if started is not None:
        started.terminate()
        started.wait(10)


@dataclass
class TokenCounts:
    """What the ``counting:`` tokens of one test saw: tokens opened/closed, sessions too."""

    tokens: int = 0
    closed: int = 0
    sessions: int = 0
    sessions_closed: int = 0

    @property
    def balanced(self) -> bool:
        return self.tokens == self.closed and self.sessions == self.sessions_closed


@pytest.fixture
def counting_tokens(monkeypatch: pytest.MonkeyPatch) -> TokenCounts:
    """A ``counting:p256`` token scheme: the lab's real software key, counted.

    Every ``open_token("counting:...")`` builds a real :class:`SoftwareToken` that counts
    itself, its ``close()`` and its sessions, so a test proves a run opens a token once and
    closes what it opened (the scheme is removed again after the test).
    """
    from drivers.tokens import registry
    from drivers.tokens.software import SoftwareSession, SoftwareToken
    from drivers.tokens.spec import parse_spec

    counts = TokenCounts()

    class CountingSession(SoftwareSession):
        def _close(self) -> None:
            counts.sessions_closed += 1
            super()._close()

    class CountingToken(SoftwareToken):
        def __init__(self, text: str) -> None:
            super().__init__(parse_spec(text))
            counts.tokens += 1

        def _open(self) -> SoftwareSession:
            counts.sessions += 1
            return CountingSession(self)

        def close(self) -> None:
            counts.closed += 1

    monkeypatch.setitem(registry._FACTORIES, "counting", CountingToken)
    return counts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the ``wrong_pin`` tests first.

    Why: a PKCS#11 login belongs to the whole process while any session of the token is open
    (PKCS#11 v2.40 §5.6), and SoftHSM2 then answers a second C_Login with
    CKR_USER_ALREADY_LOGGED_IN, whatever the PIN. These tests must see the token logged out;
    in one long pytest process, a session some earlier test left for the garbage collector
    would make a wrong PIN look accepted. SAFE Lab closes its sessions (TokenSigner and the
    SSDTF signer refuse to reopen after close), but the suite was seen failing this way
    after a full run, so the order makes the tests independent of the rest of the suite.
    """
    items.sort(key=lambda item: item.get_closest_marker("wrong_pin") is None)
