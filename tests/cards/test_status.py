"""Status words: meanings and the named errors they raise."""

from __future__ import annotations

import pytest

from drivers.cards import errors, status
from drivers.errors import KeyNotFoundError, PinError, TokenError


@pytest.mark.parametrize(
    ("sw", "error"),
    [
        (0x6700, errors.WrongLengthError),
        (0x6982, errors.SecurityStatusError),
        (0x6985, errors.ConditionsNotSatisfiedError),
        (0x6A80, errors.IncorrectDataError),
        (0x6A82, errors.ReferenceNotFoundError),
        (0x6A88, errors.ReferenceNotFoundError),
        (0x6A84, errors.CardMemoryError),
        (0x6A86, errors.IncorrectParametersError),
        (0x6D00, errors.InstructionNotSupportedError),
        (0x6D01, errors.SignatureMismatchError),
        (0x6E00, errors.ClassNotSupportedError),
        (0x6881, errors.ChannelError),
        (0x6983, errors.CardPinError),
        (0x63C2, errors.CardPinError),
        (0x6C10, errors.WrongLengthError),
        (0x6F00, errors.StatusWordError),
        (0x1234, errors.StatusWordError),
    ],
)
def test_error_classes(sw: int, error: type[Exception]) -> None:
    exc = status.error_for(sw, "COMPUTE SIGNATURE INIT")
    assert type(exc) is error
    assert isinstance(exc, TokenError)
    assert exc.sw == sw and exc.command == "COMPUTE SIGNATURE INIT"
    assert f"{sw:04X}" in exc.problem and exc.fix
    with pytest.raises(error):
        status.raise_for_sw(sw, "X")


def test_pin_errors_carry_tries_left() -> None:
    exc = status.error_for(0x63C2, "VERIFY PIN")
    assert isinstance(exc, PinError) and exc.tries_left == "2"
    assert status.error_for(0x6983).tries_left == "0"


def test_key_not_found_is_also_a_key_error() -> None:
    exc = status.key_not_found(0x6A82, "COMPUTE SIGNATURE INIT", "private key 09")
    assert isinstance(exc, KeyNotFoundError) and isinstance(exc, errors.ReferenceNotFoundError)


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "OK"),
        (0x6143, "67 response bytes"),
        (0x6100, "256"),
        (0x6C44, "Le=44"),
        (0x63CF, "remote administration"),
        (0x6D01, "signature mismatch"),
    ],
)
def test_meanings(sw: int, text: str) -> None:
    assert text in status.describe_sw(sw)


def test_success_words() -> None:
    assert status.is_success(0x9000) and status.is_success(0x63CF)
    assert not status.is_success(0x6143) and not status.is_success(0x6A82)
    status.raise_for_sw(0x9000)


def test_every_named_status_word_has_its_table_row() -> None:
    """The emulator answers SW members and the client tests for them: each must be described."""
    assert set(status.STATUS_WORDS) == set(status.SW)
    for sw in status.SW:
        assert status.STATUS_WORDS[sw].name == sw.name
        assert status.describe_sw(sw).startswith(f"{sw.value:04X} {sw.name}: ")
    assert status.SW.INCORRECT_P1P2.raw == b"\x6a\x86"
    assert status.bytes_remaining(300) == b"\x61\x00" and status.wrong_le(0x40) == b"\x6c\x40"
    assert status.status_info(status.pin_tries_left(2)).name == "PIN_TRIES_LEFT"
