"""The paper's remedies as toggles: parsed from ``T=V`` text, checked by the rules module.

Every toggle is a real mechanism in :mod:`drivers.patterns.devices` (a kept connection, a TLS
session handed to the next handshake, a background thread keeping a session or a JWT ready,
retries spaced by exponential back-off with jitter), never a number changed in a model. Which
toggle applies to which transport is :func:`drivers.protocols.rules.toggle_refusal`'s call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace
from typing import Any

from drivers.errors import SafeLabError

_ON = {"on", "true", "yes", "1"}
_OFF = {"off", "false", "no", "0"}

TOGGLE_HELP = {
    "keepalive": "on: one connection kept between operations; off: connect per operation",
    "resume": "on: TLS session resumption (ticket / session ID) on each new connection",
    "token-session": "kept: token session open between signatures (sign_only); fresh: total",
    "jwt-ttl": "seconds a JWT is reused (0: a fresh JWT per request)",
    "jwt-batch": "on: one JWT per batch, reused by the batch's requests",
    "jwt-refresh": "on: a background task renews the cached JWT before it expires",
    "preauth": "on: a background task keeps an authenticated session (and JWTs) ready",
    "nodelay": "on: TCP_NODELAY on the MQTT socket",
    "psk": "on: CoAP over DTLS-PSK (no certificate, no token signature)",
    "backoff": "on: exponential back-off with jitter on SIM and network errors; off: retry at once",
    "hash-on": "host / card: who hashes a JWT's signing input",
}


@dataclass(frozen=True)
class Toggles:
    """One combination of remedies (the defaults are the paper's unremedied client)."""

    keepalive: bool = False
    resume: bool = False
    token_session: str = "kept"
    jwt_ttl: float = 0.0
    jwt_batch: bool = False
    jwt_refresh: bool = False
    preauth: bool = False
    nodelay: bool = False
    psk: bool = False
    backoff: bool = False
    hash_on: str = "host"

    def set(self, name: str, raw: str) -> Toggles:
        """A copy with toggle ``name`` (CLI spelling, ``token-session``) set from text."""
        attr = name.replace("-", "_")
        if name not in TOGGLE_HELP:
            raise SafeLabError(f"unknown toggle {name!r}", f"use one of {', '.join(TOGGLE_HELP)}")
        value: Any
        text = raw.strip().lower()
        if attr == "token_session":
            if text not in ("kept", "fresh"):
                raise SafeLabError(f"token-session={raw!r}", "use token-session=kept or fresh")
            value = text
        elif attr == "hash_on":
            if text not in ("host", "card"):
                raise SafeLabError(f"hash-on={raw!r}", "use hash-on=host or card")
            value = text
        elif attr == "jwt_ttl":
            try:
                value = float(text.rstrip("s"))
            except ValueError:
                raise SafeLabError(f"jwt-ttl={raw!r} is not seconds", "e.g. jwt-ttl=60") from None
            if value < 0:
                raise SafeLabError("the JWT TTL cannot be negative", "use jwt-ttl=0 or more")
        elif text in _ON:
            value = True
        elif text in _OFF:
            value = False
        else:
            raise SafeLabError(f"{name}={raw!r}", f"use {name}=on or {name}=off")
        return replace(self, **{attr: value})

    def changed(self) -> dict[str, Any]:
        """The toggles that differ from the defaults, CLI-spelled."""
        base = Toggles()
        return {
            f.name.replace("_", "-"): getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        }

    @property
    def label(self) -> str:
        parts = [f"{k}={_show(v)}" for k, v in self.changed().items()]
        return ",".join(parts) or "baseline"

    def as_dict(self) -> dict[str, Any]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def split_assignments(items: list[str] | tuple[str, ...] | str) -> list[tuple[str, str]]:
    """``['a=1', 'b=on,c=2']`` or ``'a=1,b=on'`` into ``[(a, 1), (b, on), (c, 2)]``."""
    if isinstance(items, str):
        items = [items]
    pairs = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise SafeLabError(f"{part!r} is not NAME=VALUE", "write e.g. keepalive=on")
            name, _, value = part.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def parse_settings(items: list[str] | tuple[str, ...] | str) -> tuple[Toggles, dict[str, str]]:
    """Toggles and pattern-parameter overrides from ``--set`` text (toggles by name)."""
    toggles, params = Toggles(), {}
    for name, value in split_assignments(items):
        if name in TOGGLE_HELP:
            toggles = toggles.set(name, value)
        else:
            params[name] = value
    return toggles, params


FAULTS = ("card-outage", "reset", "peer-restart")
"""Faults a running pattern can be given live (:meth:`ToggleBoard.inject`)."""


class ToggleBoard:
    """The toggles of a running pattern, flipped from any thread (the console's keys).

    A flip is checked by the rules first (refused with the reason, nothing changes); it takes
    effect at the next operation, which the run marks in its stored samples (``flip``).
    """

    def __init__(self, transport: str, toggles: Toggles) -> None:
        self.transport = transport
        self._toggles = toggles
        self._flips = 0
        self._log: list[tuple[int, str]] = []
        self._faults: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def flip(self, name: str, value: str) -> Toggles:
        from drivers.protocols.rules import check_toggles

        if name == "psk":
            raise SafeLabError(
                "psk cannot be flipped while a pattern runs: the CoAP peer is started either "
                "with a pre-shared key or with certificates",
                "start a run with psk=on, or compare psk=off and psk=on with `pattern compare`"
                " on separate runs",
            )
        with self._lock:
            wanted = self._toggles.set(name, value)
            check_toggles(self.transport, wanted)
            if wanted != self._toggles:
                self._toggles = wanted
                self._flips += 1
                self._log.append((self._flips, f"{name}={value}"))
            return wanted

    def inject(self, kind: str, seconds: float = 5.0) -> None:
        """Ask for a fault at the next event, from any thread (the console's keys):
        ``card-outage`` (every card access fails for ``seconds``), ``reset`` (the open
        connection gets a TCP RST) or ``peer-restart`` (the real peer is restarted)."""
        if kind not in FAULTS:
            raise SafeLabError(f"unknown fault {kind!r}", f"use one of {', '.join(FAULTS)}")
        if seconds <= 0:
            raise SafeLabError("a card outage lasts more than 0 s", "e.g. 5")
        with self._lock:
            self._faults.append((kind, seconds))

    def take_faults(self) -> list[tuple[str, float]]:
        """The faults asked for since the last call (the workload injects them)."""
        with self._lock:
            faults, self._faults = self._faults, []
            return faults

    def current(self) -> tuple[Toggles, int]:
        """The toggles now and how many flips led to them."""
        with self._lock:
            return self._toggles, self._flips

    def log(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._log)
