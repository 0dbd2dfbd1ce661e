"""Errors of the card stack, each a :class:`drivers.errors.SafeLabError` with a fix.

A card speaks in status words and TLVs that other people's code produced; when something is
wrong the user must learn *which* command failed, *what* the card said, and *what to try*,
never see an ``IndexError`` from a parser. Every error here is a :class:`TokenError`, so code
that already handles token errors (the CLI, the console) handles card errors too.
"""

from __future__ import annotations

from drivers.errors import KeyNotFoundError, PinError, SafeLabError, TokenError


class CardError(TokenError):
    """Anything that goes wrong between the host and an IoT SAFE applet."""


class TlvError(CardError):
    """Bytes that are not a well-formed TLV sequence (truncated, bad length form)."""


class ResponseFormatError(CardError):
    """A response whose SW was fine but whose data does not have the expected shape."""


class CommandFormatError(CardError):
    """A command that cannot be encoded or parsed (too long for a short APDU, truncated)."""


class TransportError(CardError):
    """The link to the card failed (closed, timed out, or returned too few bytes)."""


class ProfileError(SafeLabError):
    """A card profile TOML that cannot be found or read, or that has a wrong field."""


class StatusWordError(CardError):
    """The card answered a command with an error status word.

    ``sw`` is the status word, ``command`` the command's name, as in the APDU trace.
    """

    def __init__(self, problem: str, fix: str = "", *, sw: int = 0, command: str = "") -> None:
        super().__init__(problem, fix)
        self.sw = sw
        self.command = command


class WrongLengthError(StatusWordError):
    """6700: the card did not accept Lc or Le."""


class SecurityStatusError(StatusWordError):
    """6982: security status not satisfied (a PIN must be verified first)."""


class ConditionsNotSatisfiedError(StatusWordError):
    """6985: conditions of use not satisfied (e.g. a session already open, wrong key usage)."""


class IncorrectDataError(StatusWordError):
    """6A80: the command data (its TLVs) was refused."""


class ReferenceNotFoundError(StatusWordError):
    """6A82 / 6A88: the applet, key, file or session the command names does not exist."""


class AppletNotFoundError(ReferenceNotFoundError):
    """SELECT by AID failed: no applet with that AID on the card."""


class CardKeyNotFoundError(ReferenceNotFoundError, KeyNotFoundError):
    """The key ID or label is not on the card (also a :class:`KeyNotFoundError`)."""


class CardMemoryError(StatusWordError):
    """6A84: not enough memory on the card."""


class IncorrectParametersError(StatusWordError):
    """6A86 / 6B00: wrong P1/P2 (e.g. a session number the applet does not have)."""


class InstructionNotSupportedError(StatusWordError):
    """6D00: the instruction is unknown (often: the IoT SAFE applet is not selected)."""


class ClassNotSupportedError(StatusWordError):
    """6E00: the CLA byte is refused (0x8n vs 0x0n, see the reference's quirk 1)."""


class SignatureMismatchError(StatusWordError):
    """6D01: VERIFY SIGNATURE found that the signature does not match."""


class ChannelError(StatusWordError):
    """68xx: logical channel or secure messaging not supported, or no channel left."""


class CardPinError(StatusWordError, PinError):
    """63Cx / 6983: a PIN was refused or is blocked. Never retried automatically."""

    def __init__(
        self,
        problem: str,
        fix: str = "",
        *,
        sw: int = 0,
        command: str = "",
        tries_left: str = "unknown",
    ) -> None:
        super().__init__(problem, fix, sw=sw, command=command)
        self.tries_left = tries_left
