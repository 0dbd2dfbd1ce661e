"""PKCS#11 tokens against a real SoftHSM2 token: discovery, signing, phases, and every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.errors import (
    KeyNotFoundError,
    KeyUsageError,
    ModuleLoadError,
    PinError,
    TokenError,
    TokenNotFoundError,
)
from drivers.peers.base import python_environment
from drivers.tokens.base import PHASES, HashOn, Pin
from drivers.tokens.discovery import discover
from drivers.tokens.pkcs11_uri import parse_pkcs11_uri
from drivers.tokens.registry import open_token

from .conftest import PAPER_DATA, SoftHsm

SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so"


def test_uri_parsing_keeps_pins_out_of_public_text() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=my%20lab;object=dev;id=%01%a2?module-path=/x.so&pin-value=4321"
    )
    assert uri.path == {"token": "my lab", "object": "dev"}
    assert uri.key_id == b"\x01\xa2"
    assert uri.query["pin-value"] == "4321"
    text = uri.public_text()
    assert "4321" not in text and "pin" not in text and "4321" not in repr(uri)
    assert parse_pkcs11_uri(text).key_id == b"\x01\xa2"
    with pytest.raises(TokenError, match="unknown PKCS#11 URI attribute 'tokn'"):
        parse_pkcs11_uri("pkcs11:tokn=x")
    with pytest.raises(TokenError, match="has no value"):
        parse_pkcs11_uri("pkcs11:token")


@pytest.mark.parametrize("key,curve", [("dev", "secp256r1"), ("bp", "brainpoolP256r1")])
def test_sign_every_phase_and_verify(softhsm: SoftHsm, key: str, curve: str) -> None:
    token = open_token(softhsm.uri(key))
    assert token.needs_login
    assert token.info.kind == "pkcs11" and token.info.label == softhsm.label
    assert token.info.manufacturer == "SoftHSM project"
    for _ in range(2):  # twice: a second fresh session must log in again, not fail
        with token.open() as session:
            session.login(Pin(softhsm.pin))
            found = session.find_key()
            session.sign_init(found, HashOn.HOST)
            signature = session.sign(PAPER_DATA)
        assert found.curve == curve and found.can_sign
        assert set(session.phase_ns) == set(PHASES)
        assert signature.verify(token.public_key(), PAPER_DATA, HashOn.HOST)


def test_certificate_and_public_key_are_available(softhsm: SoftHsm) -> None:
    token = open_token(softhsm.uri("dev"))
    cert = token.certificate()
    assert cert is not None
    assert cert.public_key().public_numbers() == token.public_key().public_numbers()
    assert open_token(softhsm.uri("bp")).certificate() is None


def test_discovery_lists_slot_token_and_keys(softhsm: SoftHsm) -> None:
    found = discover([softhsm.module])
    modules = [m for m in found.modules if m.path == softhsm.module]
    assert modules and not modules[0].error
    tokens = {t.label: t for t in modules[0].tokens}
    entry = tokens[softhsm.label]
    assert entry.manufacturer == "SoftHSM project" and entry.serial
    assert "LOGIN_REQUIRED" in entry.flags
    keys = {k.label: k for k in entry.keys}
    assert keys["dev"].curve == "secp256r1" and keys["dev"].has_certificate
    assert keys["bp"].curve == "brainpoolP256r1"
    assert keys["rsa"].curve == "RSA"
    assert any("uninitialised" in slot for slot in modules[0].empty_slots)
    assert {t.kind for t in found.builtin} == {"software", "openssl-cli"}
    assert open_token(entry.uri).info.label == softhsm.label


@pytest.mark.wrong_pin
def test_wrong_pin_reports_tries_and_is_not_retried(softhsm: SoftHsm) -> None:
    token = open_token(softhsm.uri())
    with token.open() as session, pytest.raises(PinError) as info:
        session.login(Pin("0000"))
    message = info.value.one_line()
    assert "wrong PIN" in message and "CKR_PIN_INCORRECT" in message
    assert info.value.tries_left == "count low (a wrong PIN was entered since the last good one)"
    assert "never retries" in message
    assert "0000" not in message


def test_login_is_called_exactly_once_on_a_wrong_pin(softhsm: SoftHsm, tmp_path: Path) -> None:
    """Through OpenSC's pkcs11-spy (a real logging module in front of SoftHSM2) count C_Login."""
    log = tmp_path / "spy.log"
    script = (
        "import sys\n"
        "from drivers.tokens.registry import open_token\n"
        "from drivers.bench.runner import ExperimentRunner, RunConfig, Mode\n"
        "from drivers.bench.store import ResultsStore\n"
        "from drivers.tokens.base import Pin\n"
        "from drivers.errors import PinError\n"
        f"token = open_token({softhsm.uri(module=SPY)!r})\n"
        "runner = ExperimentRunner(token, RunConfig(mode=Mode.TOTAL, n=20), ResultsStore(),\n"
        "                          lambda: Pin('0000'))\n"
        "try:\n    runner.run()\nexcept PinError as e:\n    print(e.one_line()); sys.exit(3)\n"
    )
    env = dict(python_environment(), PKCS11SPY=softhsm.module, PKCS11SPY_OUTPUT=str(log))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    assert "wrong PIN" in result.stdout
    assert log.read_text().count("C_Login") == 1


def test_missing_module_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModuleLoadError, match="does not exist") as info:
        open_token(f"pkcs11:token=x?module-path={tmp_path}/nothing.so")
    assert "safelab tokens" in info.value.fix


@pytest.mark.parametrize(
    "path,why",
    [
        ("/lib/x86_64-linux-gnu/libz.so.1", "not a PKCS#11 module"),
        ("/etc/hostname", "not a shared library"),
    ],
)
def test_non_pkcs11_module_is_a_clear_error(path: str, why: str) -> None:
    with pytest.raises(ModuleLoadError, match=why):
        open_token(f"pkcs11:token=x?module-path={path}")


def test_uri_without_module_says_how_to_name_one() -> None:
    with pytest.raises(ModuleLoadError, match="names no module"):
        open_token("pkcs11:token=x")


def test_token_not_found_lists_present_tokens(softhsm: SoftHsm) -> None:
    with pytest.raises(TokenNotFoundError, match="no token matching token=nope") as info:
        open_token(f"pkcs11:token=nope?module-path={softhsm.module}")
    assert repr(softhsm.label) in info.value.problem


def test_key_not_found_and_ambiguous_key(softhsm: SoftHsm) -> None:
    token = open_token(softhsm.uri("missing"))
    with token.open() as session:
        session.login(Pin(softhsm.pin))
        with pytest.raises(KeyNotFoundError, match="no private key with label='missing'"):
            session.find_key()
    anonymous = open_token(f"pkcs11:token={softhsm.label}?module-path={softhsm.module}")
    with anonymous.open() as session:
        session.login(Pin(softhsm.pin))
        with pytest.raises(KeyNotFoundError, match="private keys match") as info:
            session.find_key()
        assert "object=LABEL" in info.value.fix


@pytest.mark.parametrize(
    "key,match", [("nosign", "not allowed to sign"), ("rsa", r"is not an EC key \(RSA\)")]
)
def test_key_that_cannot_sign(softhsm: SoftHsm, key: str, match: str) -> None:
    token = open_token(softhsm.uri(key))
    with token.open() as session:
        session.login(Pin(softhsm.pin))
        found = session.find_key()
        with pytest.raises(KeyUsageError, match=match):
            session.sign_init(found, HashOn.HOST)
            session.sign(PAPER_DATA)


def test_on_token_hashing_unsupported_by_softhsm_says_what_to_do(softhsm: SoftHsm) -> None:
    token = open_token(softhsm.uri("dev"))
    with token.open() as session:
        session.login(Pin(softhsm.pin))
        found = session.find_key()
        with pytest.raises(KeyUsageError) as info:
            session.sign_init(found, HashOn.TOKEN)
    assert "CKR_MECHANISM_INVALID" in info.value.problem
    assert "--hash-on host" in info.value.fix


def test_pkcs11_signs_a_digest(softhsm: SoftHsm) -> None:
    import hashlib

    token = open_token(softhsm.uri("dev"))
    digest = hashlib.sha256(b"transcript").digest()
    with token.open() as session:
        session.login(Pin(softhsm.pin))
        session.sign_init(session.find_key(), HashOn.HOST)
        signature = session.sign_digest(digest)
    assert signature.verify_digest(token.public_key(), digest)
