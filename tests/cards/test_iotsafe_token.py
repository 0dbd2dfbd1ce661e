"""The IoT SAFE token over the emulator: phases, APDUs per phase, spec parsing, errors."""

from __future__ import annotations

import pytest

from drivers.cards.apdu import ISO
from drivers.cards.errors import AppletNotFoundError, CardPinError
from drivers.cards.iotsafe_token import IoTSafeToken, open_iotsafe, parse_options
from drivers.errors import KeyNotFoundError, KeyUsageError, PinError, TokenError
from drivers.tokens.base import PHASES, HashOn, Pin, Token

from .conftest import PAPER_DATA

FAST = "iotsafe:emulated;profile=paper-sim;speed=0"


def run_phases(token: Token, hash_on: HashOn = HashOn.HOST, pin: Pin | None = None):
    with token.open() as session:
        session.login(pin)
        key = session.find_key()
        session.sign_init(key, hash_on)
        signature = session.sign(PAPER_DATA)
    return session, key, signature


@pytest.mark.parametrize("hash_on", list(HashOn))
@pytest.mark.parametrize(
    "extra",
    [
        "",
        ";token-hash=last-block",
        ";curves=p256,bp256;key=client-bp",
        ";find=info;key=01",
        ";channel=0",
        ";cla=00",
        ";quirk-cla=iso",
        ";quirk-signature_format=der",
        ";quirk-t0=false",
        ";session=0",
    ],
)
def test_token_signs_verifiably_and_times_every_phase(hash_on: HashOn, extra: str) -> None:
    token = open_iotsafe(FAST + extra)
    session, key, signature = run_phases(token, hash_on)
    assert set(session.phase_ns) == set(PHASES)
    assert signature.verify(token.public_key(), PAPER_DATA, hash_on)
    cert = token.certificate()
    assert cert is not None and cert.public_key() == token.public_key()
    assert signature.verify(cert.public_key(), PAPER_DATA, hash_on)
    assert not signature.verify(token.public_key(), PAPER_DATA + b"x", hash_on)
    assert token.info.emulated and token.info.kind == "iotsafe"
    assert key.has_certificate or "find=info" in extra  # info mode does not list files
    token.close()


def test_apdus_per_phase_follow_the_paper_sequence() -> None:
    token = open_iotsafe(FAST)
    session, _, _ = run_phases(token)
    names = {phase: [e.name for e in entries] for phase, entries in session.phase_trace.items()}
    assert names["open"] == ["MANAGE CHANNEL", "SELECT"]
    assert names["find"] == ["GET DATA", "GET RESPONSE"]
    assert names["sign_init"] == ["COMPUTE SIGNATURE INIT"]
    assert names["sign"] == ["COMPUTE SIGNATURE UPDATE", "GET RESPONSE"]
    assert names["close"] == ["MANAGE CHANNEL"]
    assert "login" not in names
    sign_update = session.phase_trace["sign"][0]
    assert sign_update.command[:4] == bytes.fromhex("812B8001") and sign_update.sw == 0x6143
    assert token.last_trace(1)[0].command == bytes.fromhex("00708001")


def test_hash_on_token_uses_full_text_mode() -> None:
    token = open_iotsafe(FAST)
    session, _, _ = run_phases(token, HashOn.TOKEN)
    init = session.phase_trace["sign_init"][0]
    assert init.command[8:11] == bytes.fromhex("A10101")  # mode 01 full text
    assert session.phase_trace["sign"][0].command[5] == 0x9B


def test_sign_only_loop_reuses_session() -> None:
    token = open_iotsafe(FAST)
    session = token.open()
    key = session.find_key()
    for _ in range(5):
        session.sign_init(key)
        assert session.sign(PAPER_DATA).verify(token.public_key(), PAPER_DATA, HashOn.HOST)
        assert len(session.phase_trace["sign_init"]) == 1
    session.close()
    session.close()


def test_keys_listing_and_selection() -> None:
    token = open_iotsafe(FAST + ";curves=p256,bp256")
    keys = token.keys()
    assert [k.label for k in keys if k.can_sign][:2] == ["client", "client-bp"]
    assert not keys[-1].can_sign
    with token.open() as session:
        assert session.find_key("02").curve == "brainpoolP256r1"
        assert session.find_key("spare").key_id == "06"
        with pytest.raises(KeyNotFoundError) as info:
            session.find_key("09")
        assert "client" in info.value.problem
        with pytest.raises(KeyUsageError):
            session.find_key("ecdh")


def test_unknown_key_with_find_info_is_a_named_error() -> None:
    token = open_iotsafe(FAST + ";find=info;key=0A")
    with token.open() as session, pytest.raises(KeyNotFoundError):
        session.find_key()


def test_wrong_aid_fails_at_open() -> None:
    """A card that does not host the AID (an emulated spec's aid= is hosted by its card)."""
    from drivers.cards.client import IoTSafeClient
    from drivers.cards.emulator import INSTANT, InProcessTransport, IoTSafeApplet
    from drivers.cards.emulator.store import provision_lab_card

    applet = IoTSafeApplet(provision_lab_card(), INSTANT, speed=0)
    client = IoTSafeClient(InProcessTransport(applet), aid=bytes.fromhex("A0000000030000"))
    with pytest.raises(AppletNotFoundError) as info:
        client.open()
    assert "A0000000030000" in info.value.problem


def test_login_verify_pin() -> None:
    token = open_iotsafe(FAST + ";login=verify;card=pin-test")
    assert token.needs_login
    assert token.pin_status() == "3 tries left"
    with token.open() as session, pytest.raises(PinError):
        session.login(None)
    with token.open() as session, pytest.raises(CardPinError) as info:
        session.login(Pin("0000"))
    assert info.value.tries_left == "2"
    assert token.pin_status() == "2 tries left"
    session, _, signature = run_phases(token, pin=Pin("1234"))
    assert [e.name for e in session.phase_trace["login"]] == ["VERIFY PIN"]
    assert signature.verify(token.public_key(), PAPER_DATA, HashOn.HOST)


def test_quirks_learned_across_sessions() -> None:
    token = open_iotsafe(FAST + ";quirk-cla=iso;card=quirky")
    run_phases(token)
    assert isinstance(token, IoTSafeToken) and token.cla_class == ISO
    session, _, _ = run_phases(token)
    assert all(e.sw != 0x6E00 for entries in session.phase_trace.values() for e in entries)


def test_same_card_name_shares_keys() -> None:
    first = open_iotsafe(FAST + ";card=shared")
    second = open_iotsafe("iotsafe:emulated;speed=0;card=shared;profile=discrete-se")
    assert first.public_key() == second.public_key()
    assert first.device_lock is second.device_lock
    other = open_iotsafe(FAST + ";card=other")
    assert other.public_key() != first.public_key()


def test_options_and_uri() -> None:
    options = parse_options("iotsafe:emulated;profile=discrete-se;speed=0.01;seed=3;key=01")
    assert options.profile == "discrete-se" and options.speed == 0.01 and options.seed == 3
    assert parse_options(options.uri()) == options
    assert parse_options("iotsafe:").target == "emulated"
    token = open_iotsafe("iotsafe:emulated;profile=paper-sim;speed=0.01")
    assert token.info.uri == "iotsafe:emulated;profile=paper-sim;speed=0.01"
    assert "PIN" not in token.info.uri


@pytest.mark.parametrize(
    ("spec", "word"),
    [
        ("iotsafe:floppy", "floppy"),
        ("iotsafe:modem", "port="),
        ("iotsafe:modem;port=/dev/null;mode=fast", "mode"),
        ("iotsafe:pcsc;profile=paper-sim", "profile only applies to the emulated card"),
        ("iotsafe:emulated;port=/dev/ttyUSB0", "port only applies to iotsafe:modem"),
        ("iotsafe:curve=pcsc", "unknown attribute 'curve'"),
        ("iotsafe:emulated;pcsc", "only the target may be a bare word"),
        ("iotsafe:speed=0;emulated", "only the target may be a bare word"),
        ("iotsafe:emulated;speed=0;speed=1", "speed repeats speed"),
        ("iotsafe:emulated;key=01;id=02", "id repeats key"),
        ("iotsafe:emulated;reader=0", "reader only applies to iotsafe:pcsc"),
        ("iotsafe:pcsc;quirk-t0=false", "only applies to the emulated card"),
        ("iotsafe:emulated;speed=fast", "speed"),
        ("iotsafe:emulated;speed=-1", "speed"),
        ("iotsafe:emulated;colour=red", "colour"),
        ("iotsafe:emulated;aid=zz", "aid"),
        ("iotsafe:emulated;cla=81", "cla"),
        ("iotsafe:emulated;session=x", "session"),
        ("iotsafe:emulated;curves=p384", "p384"),
        ("iotsafe:emulated;quirk-nope=1", "nope"),
        ("iotsafe:emulated;quirk-t0=maybe", "t0"),
        ("iotsafe:emulated;token-hash=half", "token-hash"),
        ("software:p256", "scheme"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, word: str) -> None:
    with pytest.raises(TokenError) as info:
        parse_options(spec)
    assert word in info.value.problem and info.value.fix


def test_bad_profile_in_spec() -> None:
    from drivers.errors import SafeLabError

    with pytest.raises(SafeLabError) as info:
        open_iotsafe("iotsafe:emulated;profile=nonexistent")
    assert "nonexistent" in info.value.problem


def test_closed_token_refuses_to_open() -> None:
    token = open_iotsafe(FAST)
    token.close()
    token.close()
    with pytest.raises(TokenError):
        token.open()
