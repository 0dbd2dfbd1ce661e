"""Status words: what each means, and the named error it becomes.

The table joins the IoT SAFE status words (Orange's ``iot_safe.h``, see the reference §1.5) with
the ISO 7816-4 ones a SIM answers around them (channel management, SELECT, GET RESPONSE). The
meaning text is what the APDU trace shows; :func:`error_for` turns an error SW into the
exception a caller can catch by kind (e.g. :class:`SignatureMismatchError` for ``6D01``) with a
fix a lab engineer can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from drivers.cards.errors import (
    AppletNotFoundError,
    CardKeyNotFoundError,
    CardMemoryError,
    CardPinError,
    ChannelError,
    ClassNotSupportedError,
    ConditionsNotSatisfiedError,
    IncorrectDataError,
    IncorrectParametersError,
    InstructionNotSupportedError,
    ReferenceNotFoundError,
    SecurityStatusError,
    SignatureMismatchError,
    StatusWordError,
    WrongLengthError,
)


class SW(IntEnum):
    """The status words SAFE Lab names, IoT SAFE and ISO 7816-4 (the emulator answers these,
    the client tests for them); :data:`STATUS_WORDS` says what each means.

    The parameterised families are not members: ``61xx`` (:func:`bytes_remaining`), ``6Cxx``
    (:func:`wrong_le`), ``63Cx`` (:func:`pin_tries_left`).
    """

    OK = 0x9000
    MORE_DATA = 0x6300
    OK_REMOTE_ADMIN = 0x63CF
    STORE_INTEGRITY = 0x6400
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    INCOMPATIBLE_FILE = 0x6981
    SECURITY_STATUS = 0x6982
    PIN_BLOCKED = 0x6983
    DATA_INVALIDATED = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    REMOTE_ADMIN_FAILED = 0x6989
    SELECT_FAILED = 0x6999
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    REFERENCE_NOT_FOUND = 0x6A82
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    SIGNATURE_MISMATCH = 0x6D01
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN = 0x6F00

    @property
    def raw(self) -> bytes:
        """The two bytes on the wire (SW1 SW2)."""
        return self.to_bytes(2, "big")


SW1_BYTES_REMAINING = 0x61
"""``61xx``: ``xx`` response bytes wait for GET RESPONSE (T=0)."""
SW1_WRONG_LE = 0x6C
"""``6Cxx``: wrong Le, resend with Le ``xx``."""
SW1_CLA_FUNCTION = 0x68
"""``68xx``: a function of the class byte (channel, secure messaging) is not supported."""
PIN_TRIES_LEFT = 0x63C0
"""``63Cx``: verification failed, ``x`` tries left (mask with ``0xFFF0`` to test)."""


def bytes_remaining(count: int) -> bytes:
    """``61xx`` for ``count`` waiting bytes (256 and more say ``00``)."""
    return bytes([SW1_BYTES_REMAINING, min(count, 256) & 0xFF])


def wrong_le(length: int) -> bytes:
    """``6Cxx``: resend with Le ``length``."""
    return bytes([SW1_WRONG_LE, length & 0xFF])


def pin_tries_left(tries: int) -> int:
    """``63Cx`` with ``tries`` (0-15) left."""
    return PIN_TRIES_LEFT | (tries & 0x0F)


@dataclass(frozen=True)
class StatusInfo:
    """One status word's name, meaning, the error it raises and a hint."""

    name: str
    meaning: str
    error: type[StatusWordError] = StatusWordError
    fix: str = ""


def _info(
    sw: SW, meaning: str, error: type[StatusWordError] = StatusWordError, fix: str = ""
) -> StatusInfo:
    """A table row named after its :class:`SW` member, so names cannot drift."""
    return StatusInfo(sw.name, meaning, error, fix)


_TRACE_FIX = "see the APDU trace for the command and its raw bytes"

STATUS_WORDS: dict[int, StatusInfo] = {
    SW.OK: _info(SW.OK, "command completed"),
    SW.MORE_DATA: _info(SW.MORE_DATA, "warning: more data available (IoT SAFE)"),
    SW.OK_REMOTE_ADMIN: _info(
        SW.OK_REMOTE_ADMIN, "ok, but a remote administration session completed"
    ),
    SW.STORE_INTEGRITY: _info(
        SW.STORE_INTEGRITY, "store integrity issue on the card", fix="the card may be damaged"
    ),
    SW.MEMORY_FAILURE: _info(SW.MEMORY_FAILURE, "memory failure", fix="the card may be damaged"),
    SW.WRONG_LENGTH: _info(
        SW.WRONG_LENGTH,
        "wrong length (Lc or Le)",
        WrongLengthError,
        "the applet refused the APDU length; check the command's data and Le",
    ),
    SW.CHANNEL_NOT_SUPPORTED: _info(
        SW.CHANNEL_NOT_SUPPORTED,
        "logical channel not supported or not open",
        ChannelError,
        "open the channel with MANAGE CHANNEL first, or use the basic channel",
    ),
    SW.SECURE_MESSAGING_NOT_SUPPORTED: _info(
        SW.SECURE_MESSAGING_NOT_SUPPORTED, "secure messaging not supported", ChannelError
    ),
    SW.INCOMPATIBLE_FILE: _info(SW.INCOMPATIBLE_FILE, "command incompatible with file structure"),
    SW.SECURITY_STATUS: _info(
        SW.SECURITY_STATUS,
        "security status not satisfied",
        SecurityStatusError,
        "verify the PIN first (token spec login=verify) or check the key's access rights",
    ),
    SW.PIN_BLOCKED: _info(
        SW.PIN_BLOCKED,
        "authentication method blocked (PIN blocked)",
        CardPinError,
        "the PIN is blocked; unblock it with the PUK in a SIM tool, SAFE Lab never retries",
    ),
    SW.DATA_INVALIDATED: _info(
        SW.DATA_INVALIDATED,
        "referenced data invalidated (remote administration in progress)",
        fix="wait for the remote administration session to end and try again",
    ),
    SW.CONDITIONS_NOT_SATISFIED: _info(
        SW.CONDITIONS_NOT_SATISFIED,
        "conditions of use not satisfied",
        ConditionsNotSatisfiedError,
        "a session may already be open (close it), or the key cannot be used this way",
    ),
    SW.COMMAND_NOT_ALLOWED: _info(SW.COMMAND_NOT_ALLOWED, "command not allowed (no current EF)"),
    SW.REMOTE_ADMIN_FAILED: _info(
        SW.REMOTE_ADMIN_FAILED,
        "remote administration completed and the command failed, or maximum capacity reached",
    ),
    SW.SELECT_FAILED: _info(
        SW.SELECT_FAILED, "applet selection failed", AppletNotFoundError, "check the AID"
    ),
    SW.INCORRECT_DATA: _info(
        SW.INCORRECT_DATA,
        "incorrect data in the command",
        IncorrectDataError,
        "the applet refused a TLV (algorithm, mode or length); see the APDU trace",
    ),
    SW.FUNCTION_NOT_SUPPORTED: _info(SW.FUNCTION_NOT_SUPPORTED, "function not supported"),
    SW.REFERENCE_NOT_FOUND: _info(
        SW.REFERENCE_NOT_FOUND,
        "reference not found (applet, key, file or object)",
        ReferenceNotFoundError,
        "list the card's objects (`safelab tokens`) and use an ID that exists",
    ),
    SW.NOT_ENOUGH_MEMORY: _info(
        SW.NOT_ENOUGH_MEMORY, "insufficient memory", CardMemoryError, "free an object slot"
    ),
    SW.INCORRECT_P1P2: _info(
        SW.INCORRECT_P1P2,
        "incorrect P1/P2 (e.g. a session number the applet does not have)",
        IncorrectParametersError,
        "try the other session number (session=0 or session=1 in the token spec)",
    ),
    SW.REFERENCED_DATA_NOT_FOUND: _info(
        SW.REFERENCED_DATA_NOT_FOUND,
        "referenced data not found",
        ReferenceNotFoundError,
        "list the card's objects and use an ID that exists",
    ),
    SW.WRONG_P1P2: _info(
        SW.WRONG_P1P2,
        "wrong parameters P1/P2 (e.g. offset beyond the end of a file)",
        IncorrectParametersError,
    ),
    SW.INS_NOT_SUPPORTED: _info(
        SW.INS_NOT_SUPPORTED,
        "instruction not supported or invalid",
        InstructionNotSupportedError,
        "the IoT SAFE applet may not be selected on this channel, or lacks the command",
    ),
    SW.SIGNATURE_MISMATCH: _info(
        SW.SIGNATURE_MISMATCH,
        "signature mismatch (VERIFY SIGNATURE)",
        SignatureMismatchError,
        "the signature does not verify under that public key",
    ),
    SW.CLA_NOT_SUPPORTED: _info(
        SW.CLA_NOT_SUPPORTED,
        "class not supported",
        ClassNotSupportedError,
        "try the other class byte (cla=80 or cla=00 in the token spec)",
    ),
    SW.UNKNOWN: _info(SW.UNKNOWN, "no precise diagnosis (unknown error)", fix=_TRACE_FIX),
}
"""Known status words, IoT SAFE and ISO 7816-4."""


def status_info(sw: int) -> StatusInfo:
    """The :class:`StatusInfo` of ``sw``, including the parameterised ``61xx``/``6Cxx``/``63Cx``."""
    known = STATUS_WORDS.get(sw)
    if known is not None:
        return known
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == SW1_BYTES_REMAINING:
        return StatusInfo("BYTES_REMAINING", f"{sw2 or 256} response bytes waiting (GET RESPONSE)")
    if sw1 == SW1_WRONG_LE:
        return StatusInfo(
            "WRONG_LE", f"wrong Le; resend with Le={sw2:02X}", WrongLengthError, "resend with Le"
        )
    if sw & 0xFFF0 == PIN_TRIES_LEFT:
        return StatusInfo(
            "PIN_TRIES_LEFT",
            f"verification failed, {sw & 0x0F} tries left",
            CardPinError,
            "check the PIN; SAFE Lab never retries a PIN by itself",
        )
    if sw1 == 0x62 or sw1 == 0x63:
        return StatusInfo("WARNING", f"warning {sw:04X} (state of non-volatile memory)")
    if sw1 == SW1_CLA_FUNCTION:
        return StatusInfo("CLA_FUNCTION", f"function in CLA not supported ({sw:04X})", ChannelError)
    return StatusInfo("UNKNOWN_SW", f"unknown status word {sw:04X}", fix=_TRACE_FIX)


def describe_sw(sw: int) -> str:
    """``9000 OK: command completed``; for traces."""
    info = status_info(sw)
    return f"{sw:04X} {info.name}: {info.meaning}"


def is_success(sw: int) -> bool:
    """True for ``9000`` and the IoT SAFE success warnings (``63CF``, ``6300``)."""
    return sw in (SW.OK, SW.OK_REMOTE_ADMIN, SW.MORE_DATA)


def error_for(sw: int, command: str = "") -> StatusWordError:
    """The named error for an error ``sw`` returned to ``command``."""
    info = status_info(sw)
    where = f"{command} " if command else ""
    problem = f"{where}failed: card answered {sw:04X} ({info.meaning})"
    fix = info.fix or _TRACE_FIX
    if info.error is CardPinError:
        tries = str(sw & 0x0F) if sw & 0xFFF0 == PIN_TRIES_LEFT else "0"
        return CardPinError(problem, fix, sw=sw, command=command, tries_left=tries)
    return info.error(problem, fix, sw=sw, command=command)


def key_not_found(sw: int, command: str, what: str) -> CardKeyNotFoundError:
    """A :class:`CardKeyNotFoundError` for a key reference the card does not know."""
    return CardKeyNotFoundError(
        f"{command} failed: the card has no {what} (SW {sw:04X})",
        "list the card's keys (`safelab tokens`) and name one by label or hex ID (key=01)",
        sw=sw,
        command=command,
    )


def raise_for_sw(sw: int, command: str = "") -> None:
    """Raise the named error unless ``sw`` is a success status word."""
    if not is_success(sw):
        raise error_for(sw, command)
