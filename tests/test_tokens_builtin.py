"""Software and openssl-cli tokens: real keys, real signatures, real processes."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.errors import KeyUsageError, TokenError
from drivers.tokens.base import PHASES, HashOn, Pin, Signature
from drivers.tokens.registry import open_token

from .conftest import PAPER_DATA


def sign_once(spec: str, hash_on: HashOn = HashOn.HOST) -> tuple[Signature, dict[str, int], object]:
    token = open_token(spec)
    with token.open() as session:
        session.login(None)
        key = session.find_key()
        session.sign_init(key, hash_on)
        signature = session.sign(PAPER_DATA)
    return signature, session.phase_ns, token


@pytest.mark.parametrize(
    "spec",
    [
        "software:p256",
        "software:brainpoolP256r1",
        "openssl-cli:p256",
        "openssl-cli:brainpoolP256r1",
    ],
)
@pytest.mark.parametrize("hash_on", list(HashOn))
def test_builtin_tokens_sign_verifiably_and_time_every_phase(spec: str, hash_on: HashOn) -> None:
    signature, phases, token = sign_once(spec, hash_on)
    assert signature.verify(token.public_key(), PAPER_DATA, hash_on)
    assert not signature.verify(token.public_key(), PAPER_DATA + b"x", hash_on)
    assert set(phases) == set(PHASES)
    assert all(ns >= 0 for ns in phases.values())


def test_signature_encodings_round_trip() -> None:
    signature, _, token = sign_once("software:p256")
    assert len(signature.raw) == 64
    again = Signature.from_raw(signature.raw)
    assert again.der == signature.der
    digest = hashlib.sha256(PAPER_DATA).digest()
    assert again.verify_digest(token.public_key(), digest)


def test_lab_key_is_private_and_shared_by_software_and_openssl(data_dir: Path) -> None:
    software = open_token("software:p256")
    cli = open_token("openssl-cli:p256")
    key_file = data_dir / "keys" / "software-secp256r1.pem"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    numbers = software.public_key().public_numbers()
    assert cli.public_key().public_numbers() == numbers


def test_software_token_from_a_key_file(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "k.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    signature, _, token = sign_once(f"software:key={path}")
    assert token.public_key().public_numbers() == key.public_key().public_numbers()
    assert signature.verify(key.public_key(), PAPER_DATA, HashOn.HOST)


def test_bad_key_file_and_curve_give_named_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(KeyUsageError, match="not an unencrypted PEM private key"):
        open_token(f"software:key={garbage}")
    with pytest.raises(TokenError, match="cannot read key file"):
        open_token(f"software:key={tmp_path / 'missing.pem'}")
    with pytest.raises(TokenError, match="unknown curve"):
        open_token("software:curve=p999")
    with pytest.raises(TokenError, match="unknown token scheme"):
        open_token("smartcard:foo")


def test_openssl_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(TokenError, match="not on PATH") as info:
        open_token("openssl-cli:openssl=/nonexistent/openssl")
    assert "apt-get install openssl" in info.value.fix


def test_pin_never_shows_itself() -> None:
    pin = Pin("987654")
    assert "987654" not in repr(pin) and "987654" not in str(pin)
    assert pin.reveal() == "987654"


def test_device_lock_serialises_phases_across_threads() -> None:
    """A second thread's sign waits while another holds the device (a SIM does one thing)."""
    import threading

    token = open_token("software:p256")
    other_view = open_token("software:p256")  # another Token object for the same device
    assert other_view.device_lock is token.device_lock
    session = other_view.open()
    key = session.find_key()
    session.sign_init(key)
    done = threading.Event()

    def sign_in_thread() -> None:
        session.sign(PAPER_DATA)
        done.set()

    with token.device_lock:
        worker = threading.Thread(target=sign_in_thread)
        worker.start()
        assert not done.wait(0.3), "sign ran while another holder had the device"
    worker.join(10)
    assert done.is_set()


@pytest.mark.parametrize("spec", ["software:p256", "openssl-cli:p256", "iotsafe:emulated;speed=0"])
def test_sign_digest_for_tls_handshakes(spec: str) -> None:
    """TLS and OpenVPN hand over a digest: the token signs it without hashing again."""
    token = open_token(spec)
    digest = hashlib.sha256(b"transcript").digest()
    with token.open() as session:
        key = session.find_key()
        session.sign_init(key, HashOn.HOST)
        signature = session.sign_digest(digest)
    assert signature.verify_digest(token.public_key(), digest)
    assert "sign" in session.phase_ns
