"""Applet quirks: the behaviours where real IoT SAFE applets differ, as one typed record.

A profile's ``[quirks]`` table and a token spec's ``quirk-NAME=VALUE`` both end up here, so
both are checked the same way: an unknown name or a mistyped value is refused with the name,
what was wrong and what to write instead, never carried as an untyped dict into the emulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

ClaMode = Literal["both", "proprietary", "iso"]
SignatureLength = Literal["ber", "two-byte"]
SignatureFormat = Literal["raw", "der"]
StaleSession = Literal["error", "replace"]
QuirkValue = bool | int | str

_CHOICES: dict[str, tuple[str, ...]] = {
    "cla": get_args(ClaMode),
    "signature_length": get_args(SignatureLength),
    "signature_format": get_args(SignatureFormat),
    "stale_session": get_args(StaleSession),
}
_RANGES: dict[str, tuple[int, int]] = {
    "first_session": (0, 0xFE),
    "max_sessions": (1, 16),
    "max_channels": (1, 20),
}


class QuirkValueError(ValueError):
    """One quirk that is unknown or has a wrong value; the caller says where it came from."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Quirks:
    """Applet behaviours a profile can switch, with the emulator's defaults.

    ``t0``: answer ``61xx`` and wait for GET RESPONSE (a SIM on T=0). ``strict_le``: answer
    ``6Cxx`` to a wrong Le. ``cla``: ``both``, ``proprietary`` (0x8n only) or ``iso`` (0x0n
    only). ``signature_length``: ``ber`` (``33 40``) or ``two-byte`` (``33 00 40``).
    ``signature_format``: ``raw`` r‖s (IoT.05) or ``der``. ``stale_session``: ``error``
    (``6985`` on INIT of an open session) or ``replace``. ``auto_close_after_sign``: the last
    UPDATE ends the session. ``first_session``/``max_sessions``: valid session numbers.
    ``max_channels``: logical channels including channel 0. ``extended_length``: accept
    extended-length APDUs and answer one with all its data at once (ISO 7816-4; T=1 or a
    reader that maps it), instead of ``6700``; big PQC signatures then need no GET RESPONSE.
    """

    t0: bool = True
    strict_le: bool = True
    cla: ClaMode = "both"
    signature_length: SignatureLength = "ber"
    signature_format: SignatureFormat = "raw"
    stale_session: StaleSession = "error"
    auto_close_after_sign: bool = True
    first_session: int = 0
    max_sessions: int = 4
    max_channels: int = 4
    extended_length: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The quirk names, in file order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> Quirks:
        """Quirks from a decoded ``[quirks]`` table; raises :class:`QuirkValueError`."""
        return cls().replace(**table)

    def replace(self, **changes: object) -> Quirks:
        """A copy with ``changes`` applied, each checked; raises :class:`QuirkValueError`."""
        # Any: each value was just checked against its field's type by _check.
        checked: dict[str, Any] = {key: _check(key, value) for key, value in changes.items()}
        result = dataclasses.replace(self, **checked)
        result._check_ranges()
        return result

    def as_table(self) -> dict[str, QuirkValue]:
        """Name → value, in file order (what a profile's ``[quirks]`` holds)."""
        return {name: getattr(self, name) for name in self.names()}

    def _check_ranges(self) -> None:
        for key, (low, high) in _RANGES.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise QuirkValueError(
                    key, f"must be {low}-{high}, got {value}", f"use {low}-{high}"
                )
        if self.first_session + self.max_sessions > 0x100:
            raise QuirkValueError(
                "max_sessions",
                "gives session numbers outside 00-FF",
                "lower first_session or max_sessions",
            )


DEFAULT_QUIRKS = Quirks()

QUIRK_DEFAULTS: dict[str, QuirkValue] = DEFAULT_QUIRKS.as_table()
"""Quirk name → the emulator's default (see :class:`Quirks` for what each means)."""


def _check(key: str, value: object) -> QuirkValue:
    """``value`` if it has the type (and choice) quirk ``key`` wants."""
    if key not in QUIRK_DEFAULTS:
        raise QuirkValueError(key, "is not a known quirk", f"use {', '.join(QUIRK_DEFAULTS)}")
    default = QUIRK_DEFAULTS[key]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise QuirkValueError(key, f"must be true or false, got {value!r}", "use true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise QuirkValueError(
                key, f"must be an integer, got {value!r}", f"use an integer (default {default})"
            )
        return value
    choices = _CHOICES[key]
    if value not in choices:
        raise QuirkValueError(
            key,
            f"must be one of {', '.join(choices)}, got {value!r}",
            f"use one of {', '.join(choices)}",
        )
    assert isinstance(value, str)
    return value


def quirk_from_text(key: str, text: str) -> QuirkValue:
    """A quirk value written as text (a token spec's ``quirk-NAME=VALUE``), typed and checked."""
    if key not in QUIRK_DEFAULTS:
        raise QuirkValueError(key, "is not a known quirk", f"use {', '.join(QUIRK_DEFAULTS)}")
    default = QUIRK_DEFAULTS[key]
    if isinstance(default, bool):
        word = text.strip().lower()
        if word not in ("true", "false", "1", "0", "yes", "no"):
            raise QuirkValueError(key, "wants true or false", "use true or false")
        return word in ("true", "1", "yes")
    if isinstance(default, int):
        try:
            number = int(text, 0)
        except ValueError:
            raise QuirkValueError(key, f"{text!r} is not an integer", "use an integer") from None
        return _check(key, number)
    return _check(key, text)
