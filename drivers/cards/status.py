"""Status words: what each means, and the named error it becomes.

The table joins the IoT SAFE status words (Orange's ``iot_safe.h``, see the reference §1.5) with
the ISO 7816-4 ones a SIM answers around them (channel management, SELECT, GET RESPONSE). The
meaning text is what the APDU trace shows; :func:`error_for` turns an error SW into the
exception a caller can catch by kind (e.g. :class:`SignatureMismatchError` for ``6D01``) with a
fix a lab engineer can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

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

SW_OK = 0x9000


@dataclass(frozen=True)
class StatusInfo:
    """One status word's name, meaning, the error it raises and a hint."""

    name: str
    meaning: str
    error: type[StatusWordError] = StatusWordError
    fix: str = ""


_TRACE_FIX = "see the APDU trace for the command and its raw bytes"

STATUS_WORDS: dict[int, StatusInfo] = {
    0x9000: StatusInfo("OK", "command completed"),
    0x6300: StatusInfo("MORE_DATA", "warning: more data available (IoT SAFE)"),
    0x63CF: StatusInfo("OK_REMOTE_ADMIN", "ok, but a remote administration session completed"),
    0x6400: StatusInfo(
        "STORE_INTEGRITY", "store integrity issue on the card", fix="the card may be damaged"
    ),
    0x6581: StatusInfo("MEMORY_FAILURE", "memory failure", fix="the card may be damaged"),
    0x6700: StatusInfo(
        "WRONG_LENGTH",
        "wrong length (Lc or Le)",
        WrongLengthError,
        "the applet refused the APDU length; check the command's data and Le",
    ),
    0x6881: StatusInfo(
        "CHANNEL_NOT_SUPPORTED",
        "logical channel not supported or not open",
        ChannelError,
        "open the channel with MANAGE CHANNEL first, or use the basic channel",
    ),
    0x6882: StatusInfo(
        "SECURE_MESSAGING_NOT_SUPPORTED", "secure messaging not supported", ChannelError
    ),
    0x6981: StatusInfo("INCOMPATIBLE_FILE", "command incompatible with file structure"),
    0x6982: StatusInfo(
        "SECURITY_STATUS",
        "security status not satisfied",
        SecurityStatusError,
        "verify the PIN first (token spec login=verify) or check the key's access rights",
    ),
    0x6983: StatusInfo(
        "PIN_BLOCKED",
        "authentication method blocked (PIN blocked)",
        CardPinError,
        "the PIN is blocked; unblock it with the PUK in a SIM tool, SAFE Lab never retries",
    ),
    0x6984: StatusInfo(
        "DATA_INVALIDATED",
        "referenced data invalidated (remote administration in progress)",
        fix="wait for the remote administration session to end and try again",
    ),
    0x6985: StatusInfo(
        "CONDITIONS_NOT_SATISFIED",
        "conditions of use not satisfied",
        ConditionsNotSatisfiedError,
        "a session may already be open (close it), or the key cannot be used this way",
    ),
    0x6986: StatusInfo("COMMAND_NOT_ALLOWED", "command not allowed (no current EF)"),
    0x6989: StatusInfo(
        "REMOTE_ADMIN_FAILED",
        "remote administration completed and the command failed, or maximum capacity reached",
    ),
    0x6999: StatusInfo(
        "SELECT_FAILED", "applet selection failed", AppletNotFoundError, "check the AID"
    ),
    0x6A80: StatusInfo(
        "INCORRECT_DATA",
        "incorrect data in the command",
        IncorrectDataError,
        "the applet refused a TLV (algorithm, mode or length); see the APDU trace",
    ),
    0x6A81: StatusInfo("FUNCTION_NOT_SUPPORTED", "function not supported"),
    0x6A82: StatusInfo(
        "REFERENCE_NOT_FOUND",
        "reference not found (applet, key, file or object)",
        ReferenceNotFoundError,
        "list the card's objects (`safelab tokens`) and use an ID that exists",
    ),
    0x6A84: StatusInfo(
        "NOT_ENOUGH_MEMORY", "insufficient memory", CardMemoryError, "free an object slot"
    ),
    0x6A86: StatusInfo(
        "INCORRECT_P1P2",
        "incorrect P1/P2 (e.g. a session number the applet does not have)",
        IncorrectParametersError,
        "try the other session number (session=0 or session=1 in the token spec)",
    ),
    0x6A88: StatusInfo(
        "REFERENCED_DATA_NOT_FOUND",
        "referenced data not found",
        ReferenceNotFoundError,
        "list the card's objects and use an ID that exists",
    ),
    0x6B00: StatusInfo(
        "WRONG_P1P2",
        "wrong parameters P1/P2 (e.g. offset beyond the end of a file)",
        IncorrectParametersError,
    ),
    0x6D00: StatusInfo(
        "INS_NOT_SUPPORTED",
        "instruction not supported or invalid",
        InstructionNotSupportedError,
        "the IoT SAFE applet may not be selected on this channel, or lacks the command",
    ),
    0x6D01: StatusInfo(
        "SIGNATURE_MISMATCH",
        "signature mismatch (VERIFY SIGNATURE)",
        SignatureMismatchError,
        "the signature does not verify under that public key",
    ),
    0x6E00: StatusInfo(
        "CLA_NOT_SUPPORTED",
        "class not supported",
        ClassNotSupportedError,
        "try the other class byte (cla=80 or cla=00 in the token spec)",
    ),
    0x6F00: StatusInfo("UNKNOWN", "no precise diagnosis (unknown error)", fix=_TRACE_FIX),
}
"""Known status words, IoT SAFE and ISO 7816-4."""


def status_info(sw: int) -> StatusInfo:
    """The :class:`StatusInfo` of ``sw``, including the parameterised ``61xx``/``6Cxx``/``63Cx``."""
    known = STATUS_WORDS.get(sw)
    if known is not None:
        return known
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return StatusInfo("BYTES_REMAINING", f"{sw2 or 256} response bytes waiting (GET RESPONSE)")
    if sw1 == 0x6C:
        return StatusInfo(
            "WRONG_LE", f"wrong Le; resend with Le={sw2:02X}", WrongLengthError, "resend with Le"
        )
    if sw & 0xFFF0 == 0x63C0:
        return StatusInfo(
            "PIN_TRIES_LEFT",
            f"verification failed, {sw & 0x0F} tries left",
            CardPinError,
            "check the PIN; SAFE Lab never retries a PIN by itself",
        )
    if sw1 == 0x62 or sw1 == 0x63:
        return StatusInfo("WARNING", f"warning {sw:04X} (state of non-volatile memory)")
    if sw1 == 0x68:
        return StatusInfo("CLA_FUNCTION", f"function in CLA not supported ({sw:04X})", ChannelError)
    return StatusInfo("UNKNOWN_SW", f"unknown status word {sw:04X}", fix=_TRACE_FIX)


def describe_sw(sw: int) -> str:
    """``9000 OK: command completed``; for traces."""
    info = status_info(sw)
    return f"{sw:04X} {info.name}: {info.meaning}"


def is_success(sw: int) -> bool:
    """True for ``9000`` and the IoT SAFE success warnings (``63CF``, ``6300``)."""
    return sw in (0x9000, 0x63CF, 0x6300)


def error_for(sw: int, command: str = "") -> StatusWordError:
    """The named error for an error ``sw`` returned to ``command``."""
    info = status_info(sw)
    where = f"{command} " if command else ""
    problem = f"{where}failed: card answered {sw:04X} ({info.meaning})"
    fix = info.fix or _TRACE_FIX
    if info.error is CardPinError:
        tries = str(sw & 0x0F) if sw & 0xFFF0 == 0x63C0 else "0"
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
