"""What a link does, as data: ``LinkSpec`` parsed from ``'rtt=100ms,loss=1%'`` or a profile name.

Why a small grammar of our own rather than tc/netem's: netem is not available on the kernels
SAFE Lab runs on (see the package docstring), and both emulation modes need the same typed
figures. The grammar borrows tc's spellings where they are unambiguous and refuses the ones that
are not (tc's ``kbps`` means kilo*bytes* per second, so only ``bit`` units are accepted).

Grammar (comma-separated, whitespace ignored)::

    [PROFILE,] key=value[, key=value ...]

    rtt=100ms        round-trip time; each direction gets half as its one-way delay
    delay=20ms       one-way delay in both directions (instead of rtt)
    jitter=10ms      each crossing's delay varies uniformly within ±jitter (never below 0);
                     packets are never reordered (like a radio bearer's in-order delivery)
    loss=1%          probability that a packet (datagram, TCP segment) is lost, per direction
    rate=256kbit     serialisation rate: bit, kbit, mbit, gbit (1k = 1000)
    queue=1000       packets a direction may hold before it drops (a router buffer)
    seed=7           seed of the loss/jitter random draws (reproducible runs)

``up.`` (client to server) and ``down.`` (server to client) prefixes set one direction:
``up.rate=64kbit,down.rate=256kbit,down.loss=2%``. ``up.delay``/``down.delay`` make an
asymmetric path; ``up.rtt`` is refused (a round trip has no direction). A profile name first
(``lte-m,loss=3%``) takes the profile and overrides what follows.

Time units: ``us``, ``ms``, ``s``. Loss takes ``%``. Every mistake is a :class:`LinkSpecError`
naming the field and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from drivers.errors import SafeLabError

Direction = Literal["up", "down"]

_TIME_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_TIME_RE = re.compile(_NUMBER + r"\s*(us|µs|ms|s)")
_RATE_RE = re.compile(_NUMBER + r"\s*(bit|kbit|mbit|gbit)")
_LOSS_RE = re.compile(_NUMBER + r"\s*%")
_MAX_DELAY = 60.0
"""One-way delays above a minute are certainly a unit mistake (``rtt=100s``?)."""
_KEYS = ("rtt", "delay", "jitter", "loss", "rate", "queue", "seed")
_DIRECTED = ("delay", "jitter", "loss", "rate", "queue")


class LinkSpecError(SafeLabError):
    """A link spec or profile that cannot be understood; names the field and the fix."""


@dataclass(frozen=True)
class DirectionSpec:
    """One direction of a link: what a packet crossing it experiences."""

    delay: float = 0.0
    """One-way delay in seconds."""
    jitter: float = 0.0
    """Half-width of the uniform variation of ``delay``, seconds."""
    loss: float = 0.0
    """Loss probability per packet or segment, 0 <= loss < 1."""
    rate: float | None = None
    """Bits per second; ``None`` = not rate-limited."""
    queue: int = 1000
    """Packets held before drop-tail (UDP, kernel mode); TCP proxies apply back-pressure."""

    def serialisation(self, size: int) -> float:
        """Seconds to put ``size`` bytes on the wire at ``rate`` (0 without a rate)."""
        return size * 8.0 / self.rate if self.rate else 0.0

    @property
    def is_identity(self) -> bool:
        return self.delay == 0 and self.jitter == 0 and self.loss == 0 and self.rate is None


@dataclass(frozen=True)
class LinkSpec:
    """Both directions of an emulated link, plus where it came from (for results metadata)."""

    up: DirectionSpec = field(default_factory=DirectionSpec)
    """Client to server."""
    down: DirectionSpec = field(default_factory=DirectionSpec)
    """Server to client."""
    seed: int = 1
    source: str = ""
    """The text or profile name this spec was made from."""

    @property
    def rtt(self) -> float:
        """Round-trip propagation delay configured (seconds, without jitter or serialisation)."""
        return self.up.delay + self.down.delay

    @property
    def is_identity(self) -> bool:
        return self.up.is_identity and self.down.is_identity

    @property
    def has_loss(self) -> bool:
        return self.up.loss > 0 or self.down.loss > 0

    def direction(self, which: Direction) -> DirectionSpec:
        return self.up if which == "up" else self.down

    def describe(self) -> str:
        """A canonical, re-parsable text of this spec (what results record)."""
        parts: list[str] = []
        for key in _DIRECTED:
            up, down = getattr(self.up, key), getattr(self.down, key)
            if key == "queue" and up == down == DirectionSpec.queue:
                continue
            if up == down:
                if key == "delay" and up:
                    parts.append(f"rtt={_fmt_time(up * 2)}")
                elif _meaningful(key, up):
                    parts.append(f"{key}={_fmt(key, up)}")
            else:
                for name, value in (("up", up), ("down", down)):
                    if _meaningful(key, value) or key == "delay":
                        parts.append(f"{name}.{key}={_fmt(key, value)}")
        if self.has_loss or self.up.jitter or self.down.jitter:
            parts.append(f"seed={self.seed}")
        return ",".join(parts) or "rtt=0ms"


def _meaningful(key: str, value: object) -> bool:
    return value is not None and value != 0


def _fmt_time(seconds: float) -> str:
    if seconds and seconds < 1e-3:
        return f"{seconds * 1e6:g}us"
    return f"{seconds * 1e3:g}ms"


def _fmt(key: str, value: object) -> str:
    if key in ("delay", "jitter"):
        assert isinstance(value, float | int)
        return _fmt_time(float(value))
    if key == "loss":
        assert isinstance(value, float | int)
        return f"{value * 100:g}%"
    if key == "rate":
        assert isinstance(value, float | int)
        for unit, factor in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
            if value >= factor:
                return f"{value / factor:g}{unit}"
        return f"{value:g}bit"
    return str(value)


# -- parsing of single values -----------------------------------------------------------------
def parse_time(name: str, text: str) -> float:
    """``'100ms'`` -> 0.1; refuses a bare number (which unit?) and negative or huge values."""
    match = _TIME_RE.fullmatch(text.strip().lower())
    if not match:
        raise LinkSpecError(
            f"link field {name}={text!r} is not a time",
            f"write a number with a unit: {name}=100ms (units us, ms, s)",
        )
    seconds = float(match.group(1)) * _TIME_UNITS[match.group(2)]
    if seconds > _MAX_DELAY:
        raise LinkSpecError(
            f"link field {name}={text} is longer than a minute",
            f"check the unit: {name}=100ms is 100 milliseconds",
        )
    return seconds


def parse_rate(name: str, text: str) -> float:
    """``'256kbit'`` -> 256000.0 bits per second."""
    cleaned = text.strip().lower()
    if re.fullmatch(_NUMBER + r"\s*[kmg]?(bps|b/s|byte|bytes)", cleaned):
        raise LinkSpecError(
            f"link field {name}={text} is ambiguous (tc's 'kbps' means kilobytes/s)",
            f"write bits per second: {name}=256kbit (units bit, kbit, mbit, gbit)",
        )
    match = _RATE_RE.fullmatch(cleaned)
    if not match:
        raise LinkSpecError(
            f"link field {name}={text!r} is not a rate",
            f"write bits per second with a unit: {name}=256kbit (bit, kbit, mbit, gbit)",
        )
    rate = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if rate < 100:
        raise LinkSpecError(
            f"link field {name}={text} is below 100 bit/s",
            f"use a rate of at least 100bit, e.g. {name}=9600bit",
        )
    return rate


def parse_loss(name: str, text: str) -> float:
    """``'1%'`` -> 0.01; refuses a bare number (is ``1`` 1% or 100%?) and 100% or more."""
    match = _LOSS_RE.fullmatch(text.strip())
    if not match:
        raise LinkSpecError(
            f"link field {name}={text!r} is not a percentage",
            f"write the loss with a percent sign: {name}=1%",
        )
    percent = float(match.group(1))
    if percent >= 100:
        raise LinkSpecError(
            f"link field {name}={text} loses every packet",
            f"use a loss below 100%, e.g. {name}=5%",
        )
    return percent / 100.0


def parse_int(name: str, text: str, minimum: int) -> int:
    cleaned = text.strip()
    if not re.fullmatch(r"[0-9]+", cleaned) or int(cleaned) < minimum:
        raise LinkSpecError(
            f"link field {name}={text!r} is not a whole number >= {minimum}",
            f"write e.g. {name}={max(minimum, 1) if name != 'queue' else 1000}",
        )
    return int(cleaned)


def _parse_value(key: str, name: str, text: str) -> float | int:
    if key in ("delay", "jitter", "rtt"):
        return parse_time(name, text)
    if key == "loss":
        return parse_loss(name, text)
    if key == "rate":
        return parse_rate(name, text)
    if key == "queue":
        return parse_int(name, text, 1)
    return parse_int(name, text, 0)  # seed


# -- parsing of whole specs -------------------------------------------------------------------
def parse_fields(items: list[tuple[str, str]], base: LinkSpec, source: str) -> LinkSpec:
    """Apply ``key=value`` items over ``base``; shared by the text grammar and TOML profiles."""
    both: dict[str, float | int] = {}
    per: dict[Direction, dict[str, float | int]] = {"up": {}, "down": {}}
    seed = base.seed
    for raw_key, raw_value in items:
        key = raw_key.strip().lower()
        direction: Direction | None = None
        if "." in key:
            prefix, _, key = key.partition(".")
            if prefix not in ("up", "down"):
                raise LinkSpecError(
                    f"link field {raw_key!r} has an unknown direction {prefix!r}",
                    "use up.FIELD (client to server) or down.FIELD (server to client)",
                )
            direction = "up" if prefix == "up" else "down"
            if key not in _DIRECTED:
                raise LinkSpecError(
                    f"link field {raw_key!r} cannot be set per direction",
                    f"per-direction fields are {', '.join(_DIRECTED)} (use up.delay for rtt)",
                )
        elif key not in _KEYS:
            raise LinkSpecError(
                f"unknown link field {raw_key!r}",
                f"use {', '.join(_KEYS)}, optionally with up./down. (e.g. rtt=100ms,loss=1%)",
            )
        value = _parse_value(key, raw_key.strip(), raw_value)
        if key == "seed":
            seed = int(value)
        elif key == "rtt":
            both["delay"] = float(value) / 2.0
        elif direction is None:
            both[key] = value
        else:
            per[direction][key] = value
    up = replace(base.up, **{**both, **per["up"]})  # type: ignore[arg-type]
    down = replace(base.down, **{**both, **per["down"]})  # type: ignore[arg-type]
    for name, spec in (("up", up), ("down", down)):
        if spec.delay + spec.jitter > _MAX_DELAY:
            raise LinkSpecError(
                f"link {name} delay plus jitter exceeds a minute",
                "check the units of delay, rtt and jitter",
            )
    return LinkSpec(up=up, down=down, seed=seed, source=source)


def split_items(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """``'lte-m, loss=2%'`` -> ``('lte-m', [('loss', '2%')])``; a profile only comes first."""
    profile: str | None = None
    items: list[tuple[str, str]] = []
    for position, chunk in enumerate(part.strip() for part in text.split(",")):
        if not chunk:
            continue
        if "=" not in chunk:
            if position != 0 or profile is not None:
                raise LinkSpecError(
                    f"link field {chunk!r} has no value",
                    "write key=value (e.g. loss=1%); a profile name may only come first",
                )
            profile = chunk
            continue
        key, _, value = chunk.partition("=")
        if not value.strip():
            raise LinkSpecError(f"link field {key.strip()!r} has no value", f"write {key}=...")
        items.append((key, value))
    return profile, items


def parse_link(text: str) -> LinkSpec:
    """A :class:`LinkSpec` from ``--link`` text: fields, a profile name, or a name + overrides."""
    from drivers.links.profiles import load_profile

    if not text or not text.strip():
        raise LinkSpecError("the link spec is empty", "write e.g. rtt=100ms,loss=1% or lte-m")
    profile, items = split_items(text)
    base = load_profile(profile) if profile else LinkSpec()
    return parse_fields(items, base, source=text.strip())
