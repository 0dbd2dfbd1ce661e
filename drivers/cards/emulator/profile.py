"""Card profiles: the latency model of an emulated card, read from ``profiles/cards/*.toml``.

A profile says how long the link takes per APDU (a base distribution plus a cost per byte, so
extra APDUs and bigger payloads cost what they cost on a real link) and how long the card
works per command (a distribution per instruction, plus the crypto operation it performs,
plus on-card hashing per byte, so hashing on the card versus on the host changes the time).
Any distribution may carry a heavy ``tail``: with probability ``p`` an extra delay from a
second distribution is added (the paper's Table 3 shows 4 % of fresh sessions over 1 s).

Profiles are data so that one can be re-fitted from a real card's recorded run without code.
A broken profile raises :class:`ProfileError` naming the file and the field.

Distribution tables (all times in ms)::

    { dist = "constant", ms = 2.0 }
    { dist = "normal", mean_ms = 420.0, sigma_ms = 8.5 }           # truncated at min_ms (0)
    { dist = "lognormal", median_ms = 600.0, sigma = 0.6 }         # sigma: shape (log space)
    { dist = "uniform", low_ms = 1.0, high_ms = 3.0 }
    { dist = "exponential", mean_ms = 5.0 }
    ... , tail = { p = 0.045, dist = "lognormal", median_ms = 640.0, sigma = 0.6 }
"""

from __future__ import annotations

import dataclasses
import math
import random
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from drivers.cards.emulator.pqc import PqcModel
from drivers.cards.emulator.quirks import DEFAULT_QUIRKS, Quirks, QuirkValueError
from drivers.cards.errors import ProfileError

COMMAND_KEYS: tuple[str, ...] = (
    "manage_channel",
    "select",
    "get_response",
    "verify_pin",
    "get_data",
    "read_file",
    "compute_signature_init",
    "compute_signature_update",
    "verify_signature_init",
    "verify_signature_update",
    "put_public_key_init",
    "put_public_key_update",
    "generate_key_pair",
    "read_public_key",
    "compute_dh",
    "get_random",
)
"""Command names a profile may time in ``[card.commands]`` (others use ``card.default``)."""

CRYPTO_KEYS: tuple[str, ...] = ("ecdsa_sign", "ecdsa_verify", "keygen", "ecdh")

_PACKAGED = "profiles"


# ------------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class Dist:
    """A delay distribution in milliseconds, with an optional additive heavy tail."""

    kind: str
    params: dict[str, float]
    min_ms: float = 0.0
    tail_p: float = 0.0
    tail: Dist | None = None

    def sample(self, rng: random.Random) -> float:
        """One delay in ms (never below ``min_ms``), tail included."""
        p = self.params
        if self.kind == "constant":
            value = p["ms"]
        elif self.kind == "normal":
            value = rng.gauss(p["mean_ms"], p["sigma_ms"])
        elif self.kind == "lognormal":
            value = p["median_ms"] * math.exp(rng.gauss(0.0, p["sigma"]))
        elif self.kind == "uniform":
            value = rng.uniform(p["low_ms"], p["high_ms"])
        else:  # exponential
            value = rng.expovariate(1.0 / p["mean_ms"]) if p["mean_ms"] > 0 else 0.0
        value = max(self.min_ms, value)
        if self.tail is not None and self.tail_p > 0 and rng.random() < self.tail_p:
            value += self.tail.sample(rng)
        return value

    @property
    def mean_ms(self) -> float:
        """Expected value (ignoring truncation at ``min_ms``), tail included."""
        p = self.params
        base = {
            "constant": lambda: p["ms"],
            "normal": lambda: p["mean_ms"],
            "lognormal": lambda: p["median_ms"] * math.exp(p["sigma"] ** 2 / 2),
            "uniform": lambda: (p["low_ms"] + p["high_ms"]) / 2,
            "exponential": lambda: p["mean_ms"],
        }[self.kind]()
        if self.tail is not None:
            base += self.tail_p * self.tail.mean_ms
        return base


ZERO = Dist("constant", {"ms": 0.0})

_DIST_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("ms",),
    "normal": ("mean_ms", "sigma_ms"),
    "lognormal": ("median_ms", "sigma"),
    "uniform": ("low_ms", "high_ms"),
    "exponential": ("mean_ms",),
}


class _Reader:
    """Reads one profile table with errors that name the file and the dotted field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str, fix: str = "") -> ProfileError:
        return ProfileError(
            f"card profile {self.source}: field {where} {problem}",
            fix or "fix the field (see profiles/cards/paper-sim.toml for a complete example)",
        )

    def quirk_error(self, exc: QuirkValueError) -> ProfileError:
        return self.fail(f"quirks.{exc.key}", exc.problem, exc.fix)

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, got {type(value).__name__}")
        return value

    def number(self, value: Any, where: str, *, low: float = 0.0, high: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"must be a number, got {value!r}")
        if not low <= float(value) <= high or math.isnan(float(value)):
            raise self.fail(where, f"must be between {low} and {high}, got {value}")
        return float(value)

    def dist(self, value: Any, where: str) -> Dist:
        table = self.table(value, where)
        kind = table.get("dist")
        if kind not in _DIST_PARAMS:
            raise self.fail(
                f"{where}.dist", f"must be one of {', '.join(_DIST_PARAMS)}, got {kind!r}"
            )
        wanted = _DIST_PARAMS[kind]
        allowed = {"dist", "min_ms", "tail", *wanted}
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}",
                f"is not a parameter of a {kind} distribution",
                f"use {', '.join(wanted)} (and optionally min_ms, tail)",
            )
        params = {}
        for name in wanted:
            if name not in table:
                raise self.fail(f"{where}.{name}", "is missing", f"a {kind} needs {name}")
            params[name] = self.number(table[name], f"{where}.{name}")
        if kind == "uniform" and params["low_ms"] > params["high_ms"]:
            raise self.fail(f"{where}.low_ms", "is above high_ms")
        min_ms = self.number(table.get("min_ms", 0.0), f"{where}.min_ms")
        tail = None
        tail_p = 0.0
        if "tail" in table:
            tail_table = dict(self.table(table["tail"], f"{where}.tail"))
            if "p" not in tail_table:
                raise self.fail(f"{where}.tail.p", "is missing", "give the tail probability p")
            tail_p = self.number(tail_table.pop("p"), f"{where}.tail.p", high=1.0)
            if "tail" in tail_table:
                raise self.fail(f"{where}.tail.tail", "is not allowed (one tail per delay)")
            tail = self.dist(tail_table, f"{where}.tail")
        return Dist(kind, params, min_ms, tail_p, tail)


# ------------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class CardProfile:
    """A card's latency model and quirks, as loaded from a profile TOML."""

    name: str
    source: str
    description: str = ""
    transport_base: Dist = ZERO
    transport_per_byte_us: float = 0.0
    card_default: Dist = ZERO
    commands: dict[str, Dist] = field(default_factory=dict)
    crypto: dict[str, Dist] = field(default_factory=dict)
    hash_per_byte_us: float = 0.0
    curve_factor: dict[str, float] = field(default_factory=dict)
    quirks: Quirks = DEFAULT_QUIRKS
    pqc: PqcModel | None = None
    """How the card signs with PQC algorithms (``[card.pqc]``); ``None``: it cannot."""

    # --- tail placement ([tail] section; see TAIL_PLACEMENTS) --------------------------------
    tail_on: str = ""
    """Where the ``[tail]`` delay goes: ``link``, ``link:COMMAND`` or ``COMMAND``."""
    tail: Dist = field(default_factory=lambda: ZERO)
    """0 ms, or with probability p the tail's delay (a :class:`Dist` with only a tail)."""

    def _tail_ms(self, where: str, rng: random.Random) -> float:
        return self.tail.sample(rng) if self.tail_on and self.tail_on == where else 0.0

    def transport_ms(
        self, bytes_moved: int, rng: random.Random, command: str | None = None
    ) -> float:
        """Link time of one APDU exchange that moved ``bytes_moved`` bytes both ways.

        ``command`` (the APDU's command name) places a ``link:COMMAND`` tail.
        """
        value = self.transport_base.sample(rng) + bytes_moved * self.transport_per_byte_us / 1000
        if self.tail_on == "link":
            value += self._tail_ms("link", rng)
        elif command is not None:
            value += self._tail_ms(f"link:{command}", rng)
        return value

    def card_ms(
        self,
        command: str,
        rng: random.Random,
        *,
        crypto: str | None = None,
        curve: str = "secp256r1",
        hashed_bytes: int = 0,
    ) -> float:
        """Card time of one command: its own time, its crypto operation, its hashing."""
        value = self.commands.get(command, self.card_default).sample(rng)
        value += self._tail_ms(command, rng)
        if crypto is not None and crypto.startswith("pqc_sign:") and self.pqc is not None:
            from drivers.algorithms.registry import ALGORITHMS

            value += self.pqc.sample_sign_ms(ALGORITHMS[crypto[len("pqc_sign:") :]], rng)
        elif crypto is not None:
            value += self.crypto.get(crypto, ZERO).sample(rng) * self.curve_factor.get(curve, 1.0)
        return value + hashed_bytes * self.hash_per_byte_us / 1000

    def with_quirks(self, **overrides: object) -> CardProfile:
        """A copy with some quirks changed (checked like the file's ``[quirks]``)."""
        try:
            quirks = self.quirks.replace(**overrides)
        except QuirkValueError as exc:
            raise _Reader(self.source).quirk_error(exc) from None
        return dataclasses.replace(self, quirks=quirks)


def parse_profile(data: dict[str, Any], source: str) -> CardProfile:
    """Build a :class:`CardProfile` from a decoded TOML document."""
    reader = _Reader(source)
    allowed = {"profile", "transport", "card", "quirks", "tail"}
    for key in data:
        if key not in allowed:
            raise reader.fail(key, "is not a profile section", f"use {', '.join(sorted(allowed))}")
    head = reader.table(data.get("profile", {}), "profile")
    name = head.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise reader.fail("profile.name", "must be a non-empty string")
    description = head.get("description", "")
    if not isinstance(description, str):
        raise reader.fail("profile.description", "must be a string")

    link = reader.table(data.get("transport", {}), "transport")
    base = reader.dist(link["base"], "transport.base") if "base" in link else ZERO
    per_byte = reader.number(link.get("per_byte_us", 0.0), "transport.per_byte_us")
    for key in link:
        if key not in ("base", "per_byte_us"):
            raise reader.fail(
                f"transport.{key}", "is not a transport field", "use base and per_byte_us"
            )

    card = reader.table(data.get("card", {}), "card")
    for key in card:
        if key not in ("default", "commands", "crypto", "hash_per_byte_us", "curve_factor", "pqc"):
            raise reader.fail(
                f"card.{key}",
                "is not a card field",
                "use default, commands, crypto, hash_per_byte_us, curve_factor, pqc",
            )
    default = reader.dist(card["default"], "card.default") if "default" in card else ZERO
    commands = {}
    for key, value in reader.table(card.get("commands", {}), "card.commands").items():
        if key not in COMMAND_KEYS:
            raise reader.fail(
                f"card.commands.{key}", "is not a command name", f"use {', '.join(COMMAND_KEYS)}"
            )
        commands[key] = reader.dist(value, f"card.commands.{key}")
    crypto = {}
    for key, value in reader.table(card.get("crypto", {}), "card.crypto").items():
        if key not in CRYPTO_KEYS:
            raise reader.fail(
                f"card.crypto.{key}", "is not a crypto operation", f"use {', '.join(CRYPTO_KEYS)}"
            )
        crypto[key] = reader.dist(value, f"card.crypto.{key}")
    hash_per_byte = reader.number(card.get("hash_per_byte_us", 0.0), "card.hash_per_byte_us")
    factors = {
        str(curve): reader.number(value, f"card.curve_factor.{curve}", high=100.0)
        for curve, value in reader.table(card.get("curve_factor", {}), "card.curve_factor").items()
    }
    try:
        quirks = Quirks.from_table(reader.table(data.get("quirks", {}), "quirks"))
    except QuirkValueError as exc:
        raise reader.quirk_error(exc) from None
    tail_on, tail = _parse_tail(reader, data.get("tail"))
    pqc = _parse_pqc(reader, card["pqc"]) if "pqc" in card else None
    return CardProfile(
        pqc=pqc,
        tail_on=tail_on,
        tail=tail,
        name=name,
        source=source,
        description=description,
        transport_base=base,
        transport_per_byte_us=per_byte,
        card_default=default,
        commands=commands,
        crypto=crypto,
        hash_per_byte_us=hash_per_byte,
        curve_factor=factors,
        quirks=quirks,
    )


def _parse_pqc(reader: _Reader, value: Any) -> PqcModel:
    """``[card.pqc]``: the card's core, RAM and per-algorithm overrides (see :mod:`.pqc`)."""
    from drivers.algorithms.registry import ALGORITHMS

    table = reader.table(value, "card.pqc")
    allowed = ("cpu_mhz", "core_factor", "ram_bytes", "sigma", "sign")
    for key in table:
        if key not in allowed:
            raise reader.fail(f"card.pqc.{key}", "is not a PQC field", f"use {', '.join(allowed)}")
    for key in ("cpu_mhz", "ram_bytes"):
        if key not in table:
            raise reader.fail(f"card.pqc.{key}", "is missing", "give the card's core clock and RAM")
    sign = {}
    for name, dist in reader.table(table.get("sign", {}), "card.pqc.sign").items():
        if name not in ALGORITHMS or not ALGORITHMS[name].post_quantum:
            pqc_names = ", ".join(n for n, a in ALGORITHMS.items() if a.post_quantum)
            raise reader.fail(f"card.pqc.sign.{name}", "is not a PQC algorithm", f"use {pqc_names}")
        sign[name] = reader.dist(dist, f"card.pqc.sign.{name}")
    return PqcModel(
        cpu_mhz=reader.number(table["cpu_mhz"], "card.pqc.cpu_mhz", low=0.1, high=10_000),
        core_factor=reader.number(
            table.get("core_factor", 1.0), "card.pqc.core_factor", low=0.01, high=1000
        ),
        ram_bytes=int(reader.number(table["ram_bytes"], "card.pqc.ram_bytes", high=2**32)),
        sigma=reader.number(table.get("sigma", 0.1), "card.pqc.sigma", high=1.0),
        sign=sign,
    )


# ------------------------------------------------------------------------------- tail placement

TAIL_PLACEMENTS = "link, link:COMMAND or COMMAND"
"""``[tail] on``: every APDU's link time (``link``), the link time of one command's APDUs
(``link:select``: sporadic delays talking to the card when a session starts), or one command's
card time (``select``: the card OS busy). ``p`` is per APDU where it is placed."""


def _parse_tail(reader: _Reader, value: Any) -> tuple[str, Dist]:
    """The ``[tail]`` section: ``on`` plus ``p`` and a distribution (the extra delay)."""
    if value is None:
        return "", ZERO
    table = dict(reader.table(value, "tail"))
    on = table.pop("on", None)
    target = on.removeprefix("link:") if isinstance(on, str) else ""
    if not isinstance(on, str) or (on != "link" and target not in COMMAND_KEYS):
        raise reader.fail(
            "tail.on",
            f"must be {TAIL_PLACEMENTS}, got {on!r}",
            f"commands: {', '.join(COMMAND_KEYS)}",
        )
    if "p" not in table:
        raise reader.fail("tail.p", "is missing", "give the tail probability p")
    p = reader.number(table.pop("p"), "tail.p", high=1.0)
    extra = reader.dist(table, "tail")
    return on, Dist("constant", {"ms": 0.0}, tail_p=p, tail=extra)


def profiles_dir() -> Path:
    """The directory of the packaged card profiles (``profiles/cards``)."""
    return Path(str(resources.files(_PACKAGED).joinpath("cards")))


def user_profiles_dir() -> Path:
    """Where ``safelab card fit`` saves fitted profiles: ``<data dir>/profiles``."""
    from drivers.paths import data_dir

    return data_dir() / "profiles"


def list_profiles() -> list[str]:
    """Names of the packaged profiles (``paper-sim``...), then the user's fitted ones."""
    packaged = sorted(path.stem for path in profiles_dir().glob("*.toml"))
    user = sorted(p.stem for p in user_profiles_dir().glob("*.toml") if p.stem not in packaged)
    return packaged + user


def _named_profile_path(name: str) -> Path | None:
    for directory in (profiles_dir(), user_profiles_dir()):
        path = directory / f"{name}.toml"
        if path.exists():
            return path
    return None


def load_profile(name_or_path: str | Path) -> CardProfile:
    """Load a profile by name (packaged, then the user's fitted ones) or by TOML path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text:
        path = Path(text).expanduser()
    else:
        found = _named_profile_path(text)
        if found is None:
            known = ", ".join(list_profiles()) or "none"
            raise ProfileError(
                f"no card profile named {text!r}",
                f"use one of {known}, or give the path of a profile .toml file",
            )
        path = found
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(
            f"cannot read card profile {path} ({exc.strerror})", "check the path"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(
            f"card profile {path} is not valid TOML ({exc})", "fix the TOML syntax"
        ) from None
    return parse_profile(data, str(path))


INSTANT = CardProfile(name="instant", source="(built in)", description="no delays at all")
"""A profile with no delays, for functional tests."""
