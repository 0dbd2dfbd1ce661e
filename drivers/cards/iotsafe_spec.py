"""``iotsafe:`` token specs: the typed options, and a parser with one rule per attribute.

``iotsafe:TARGET;name=value;...`` (README "Token specs"). The target is the only word written
without a name, and only in the first place: ``iotsafe:pcsc;reader=0``. Every other part is
``name=value``, looked up in :data:`ATTRIBUTES`, which says the option field it sets, how its
text is checked, and the targets it applies to. So ``iotsafe:curve=pcsc`` is refused (``curve``
is no attribute; the generic spec parser would have filed the target under it), as is a bare
word later on, an attribute given twice, or one that does not apply to the target.

To add an attribute, add a field to :class:`IoTSafeOptions` (and to :meth:`IoTSafeOptions.uri`)
and one :class:`Attribute` row; nothing else in the parser changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from drivers.cards.apdu import GSMA_AID, ISO, PROPRIETARY, Mode
from drivers.cards.client import SIGN_SESSION
from drivers.cards.emulator.quirks import QuirkValue, QuirkValueError, quirk_from_text
from drivers.errors import TokenError
from drivers.tokens.base import CURVE_ALIASES

DEFAULT_PROFILE = "paper-sim"
TARGETS = ("emulated", "pcsc", "modem")
EMULATED = frozenset({"emulated"})
ANY_TARGET = frozenset(TARGETS)
_WHERE = {"emulated": "the emulated card", "pcsc": "iotsafe:pcsc", "modem": "iotsafe:modem"}


@dataclass(frozen=True)
class IoTSafeOptions:
    """What an ``iotsafe:`` spec asks for, checked (defaults: the emulated lab card)."""

    target: str = "emulated"
    profile: str = DEFAULT_PROFILE
    speed: float = 1.0
    seed: int | None = None
    card: str = "default"
    curves: tuple[str, ...] = ("secp256r1",)
    key: str | None = None
    aid: bytes = GSMA_AID
    cla_class: int = PROPRIETARY
    session: int = SIGN_SESSION
    logical_channel: bool = True
    find: str = "list"
    token_hash: Mode = Mode.FULL_TEXT
    login: bool = False
    quirks: dict[str, QuirkValue] = field(default_factory=dict)
    reader: str | None = None
    port: str | None = None
    modem_mode: str = "csim"
    baud: int = 115200
    timeout_s: float = 10.0

    def uri(self) -> str:
        """The spec again, normalised, without defaults where they add nothing."""
        if self.target == "pcsc":
            parts = ["pcsc"] + ([f"reader={self.reader}"] if self.reader is not None else [])
        elif self.target == "modem":
            parts = ["modem", f"port={self.port}", f"mode={self.modem_mode}"]
            if self.baud != 115200:
                parts.append(f"baud={self.baud}")
            if self.timeout_s != 10.0:
                parts.append(f"timeout={self.timeout_s:g}")
        else:
            parts = [self.target, f"profile={self.profile}", f"speed={self.speed:g}"]
        if self.card != "default":
            parts.append(f"card={self.card}")
        if self.curves != ("secp256r1",):
            parts.append("curves=" + ",".join(self.curves))
        if self.key:
            parts.append(f"key={self.key}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.aid != GSMA_AID:
            parts.append(f"aid={self.aid.hex().upper()}")
        if self.cla_class != PROPRIETARY:
            parts.append("cla=00")
        if self.session != SIGN_SESSION:
            parts.append(f"session={self.session}")
        if not self.logical_channel:
            parts.append("channel=0")
        if self.find != "list":
            parts.append(f"find={self.find}")
        if self.token_hash != Mode.FULL_TEXT:
            parts.append("token-hash=last-block")
        if self.login:
            parts.append("login=verify")
        for name, value in sorted(self.quirks.items()):
            parts.append(f"quirk-{name}={_quirk_text(value)}")
        return "iotsafe:" + ";".join(parts)


def _quirk_text(value: QuirkValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ------------------------------------------------------------------------------- value rules


class _Refused(ValueError):
    """One attribute value refused: what is wrong with it and what to write instead."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


Parse = Callable[[str], object]


def _text(value: str) -> str:
    if not value:
        raise _Refused("is empty", "give a value after =")
    return value


def _integer(low: int, high: int) -> Parse:
    def parse(value: str) -> int:
        try:
            number = int(value, 0)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise _Refused(f"{value!r} is not an integer {low}-{high}", f"e.g. {low}")
        return number

    return parse


def _number(low: float, high: float, fix: str) -> Parse:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise _Refused(f"{value!r} is not a number {low:g}-{high:g}", fix)
        return number

    return parse


def _choice(choices: dict[str, object], fix: str) -> Parse:
    def parse(value: str) -> object:
        if value.lower() not in choices:
            raise _Refused(f"{value!r} is not {' or '.join(choices)}", fix)
        return choices[value.lower()]

    return parse


def _curves(value: str) -> tuple[str, ...]:
    names = []
    for word in filter(None, value.split(",")):
        curve = CURVE_ALIASES.get(word.strip().lower())
        if curve is None:
            raise _Refused(f"has an unknown curve {word!r}", "use p256 and/or bp256")
        names.append(curve)
    return tuple(dict.fromkeys(names)) or ("secp256r1",)


def _aid(value: str) -> bytes:
    try:
        aid = bytes.fromhex(value)
    except ValueError:
        aid = b""
    if not 5 <= len(aid) <= 16:
        raise _Refused(
            f"{value!r} is not 5-16 hex bytes", f"the GSMA IoT SAFE AID is {GSMA_AID.hex().upper()}"
        )
    return aid


@dataclass(frozen=True)
class Attribute:
    """One ``name=value`` of an ``iotsafe:`` spec: the field it sets and its rule."""

    field: str
    parse: Parse
    targets: frozenset[str] = ANY_TARGET


ATTRIBUTES: dict[str, Attribute] = {
    "profile": Attribute("profile", _text, EMULATED),
    "speed": Attribute(
        "speed",
        _number(0, 1e6, "use e.g. speed=1 (real time) or speed=0.01 (100x faster)"),
        EMULATED,
    ),
    "seed": Attribute("seed", _integer(0, 2**63), EMULATED),
    "card": Attribute("card", _text, EMULATED),
    "curves": Attribute("curves", _curves, EMULATED),
    "key": Attribute("key", _text),
    "object": Attribute("key", _text),
    "id": Attribute("key", _text),
    "aid": Attribute("aid", _aid),
    "cla": Attribute(
        "cla_class",
        _choice(
            {"80": PROPRIETARY, "0x80": PROPRIETARY, "00": ISO, "0x00": ISO},
            "cla=80 (proprietary, default) or cla=00 (ISO)",
        ),
    ),
    "session": Attribute("session", _integer(0, 255)),
    "channel": Attribute(
        "logical_channel",
        _choice({"0": False, "logical": True}, "channel=0 uses the basic channel"),
    ),
    "find": Attribute("find", _choice({"list": "list", "info": "info"}, "find=info: one key only")),
    "token-hash": Attribute(
        "token_hash",
        _choice(
            {"full": Mode.FULL_TEXT, "full-text": Mode.FULL_TEXT, "last-block": Mode.LAST_BLOCK},
            "full: the card hashes everything; last-block: the host hashes whole blocks",
        ),
    ),
    "login": Attribute(
        "login", _choice({"verify": True, "none": False}, "login=verify checks the SIM PIN")
    ),
    "reader": Attribute("reader", _text, frozenset({"pcsc"})),
    "port": Attribute("port", _text, frozenset({"modem"})),
    "mode": Attribute(
        "modem_mode",
        _choice(
            {"csim": "csim", "cgla": "cgla"},
            "csim: AT+CSIM (host opens channels); cgla: AT+CCHO/AT+CGLA",
        ),
        frozenset({"modem"}),
    ),
    "baud": Attribute("baud", _integer(300, 4_000_000), frozenset({"modem"})),
    "timeout": Attribute(
        "timeout_s",
        _number(0.1, 600, "slow SIM operations can take seconds: e.g. timeout=10"),
        frozenset({"modem"}),
    ),
}
"""Every ``name=value`` an ``iotsafe:`` spec takes (besides ``quirk-NAME=VALUE``)."""


# ------------------------------------------------------------------------------- the parser


def _bad(text: str, problem: str, fix: str) -> TokenError:
    return TokenError(f"token spec {text!r}: {problem}", fix)


def _split(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The target (first bare word, default ``emulated``) and the ``name=value`` pairs."""
    scheme, _, rest = text.partition(":")
    if scheme.strip().lower() != "iotsafe":
        raise _bad(
            text, f"scheme {scheme.strip()!r} is not iotsafe", "start the spec with iotsafe:"
        )
    parts = [part.strip() for part in rest.split(";") if part.strip()]
    target = "emulated"
    if parts and "=" not in parts[0]:
        target = unquote(parts.pop(0)).lower()
        if target not in TARGETS:
            raise _bad(
                text,
                f"unknown card target {target!r}",
                "use iotsafe:emulated, iotsafe:pcsc;reader=NAME or iotsafe:modem;port=DEV",
            )
    pairs = []
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep:
            raise _bad(
                text,
                f"{name!r} has no value; only the target may be a bare word, and only first",
                f"write iotsafe:{name};... for a target, or NAME={name} for an attribute",
            )
        pairs.append((unquote(name).strip().lower(), unquote(value)))
    return target, pairs


def _quirk(text: str, name: str, value: str) -> tuple[str, QuirkValue]:
    quirk = name[len("quirk-") :].replace("-", "_")
    try:
        return quirk, quirk_from_text(quirk, value)
    except QuirkValueError as exc:
        raise _bad(text, f"quirk {exc.key} {exc.problem}", exc.fix) from None


def _attribute(text: str, name: str, target: str) -> Attribute:
    rule = ATTRIBUTES.get(name)
    if rule is None:
        hint = " (the target is written first without a name: iotsafe:pcsc)" * (
            name in ("curve", "target")
        )
        raise _bad(
            text,
            f"unknown attribute {name!r}{hint}",
            f"use {', '.join(ATTRIBUTES)} or quirk-NAME",
        )
    if target not in rule.targets:
        where = " and ".join(_WHERE[t] for t in TARGETS if t in rule.targets)
        raise _bad(
            text, f"{name} only applies to {where}", f"drop it from the iotsafe:{target} spec"
        )
    return rule


def parse_options(text: str) -> IoTSafeOptions:
    """Check an ``iotsafe:`` spec and return its options (errors name the attribute)."""
    target, pairs = _split(text)
    # Any: each value comes from its field's rule in ATTRIBUTES, which returns that type.
    values: dict[str, Any] = {"target": target}
    given: dict[str, str] = {}
    quirks: dict[str, QuirkValue] = {}
    for name, value in pairs:
        if name.startswith(("quirk-", "quirk.")):
            if target != "emulated":
                raise _bad(
                    text,
                    f"{name} only applies to the emulated card",
                    f"drop it from the iotsafe:{target} spec",
                )
            quirk, typed = _quirk(text, name.replace("quirk.", "quirk-", 1), value)
            quirks[quirk] = typed
            continue
        rule = _attribute(text, name, target)
        if rule.field in given:
            raise _bad(
                text,
                f"{name} repeats {given[rule.field]} (both set the {rule.field.replace('_', ' ')})",
                "give it once",
            )
        given[rule.field] = name
        try:
            values[rule.field] = rule.parse(value)
        except _Refused as exc:
            raise _bad(text, f"{name} {exc.problem}", f"{exc.fix} ({name}=)") from None
    if target == "modem" and not values.get("port"):
        raise _bad(text, "a modem needs port=", "e.g. iotsafe:modem;port=/dev/ttyUSB2")
    values["quirks"] = quirks
    return dataclasses.replace(IoTSafeOptions(), **values)
