"""Find every token SAFE Lab can use: built-in software keys and every PKCS#11 module's slots.

Modules come from three places: the ``--module`` paths a user gives, ``SAFELAB_PKCS11_MODULES``
(colon-separated paths) and well-known install locations (SoftHSM2, OpenSC, p11-kit's proxy,
vendor IoT SAFE libraries). A module that fails to load is listed with its error rather than
hiding the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import TokenFlag
from pkcs11.exceptions import PKCS11Error

from drivers.errors import SafeLabError
from drivers.tokens.base import KeyInfo
from drivers.tokens.pkcs11_token import load_module, pin_status_of
from drivers.tokens.pkcs11_uri import Pkcs11Uri
from drivers.tokens.provenance import emulated_reader_for_slot
from drivers.tokens.registry import open_token

WELL_KNOWN_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so",
    "/usr/lib/libpkcs11_iotsafe.so",
    "/usr/local/lib/libpkcs11_iotsafe.so",
)

BUILTIN_SPECS = ("software:p256", "software:brainpoolP256r1", "openssl-cli:p256")


@dataclass(frozen=True)
class TokenEntry:
    uri: str
    kind: str
    label: str
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    slot: str = ""
    flags: tuple[str, ...] = ()
    pin_status: str = ""
    emulated: bool = False
    keys: tuple[KeyInfo, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "uri": self.uri,
            "kind": self.kind,
            "label": self.label,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "slot": self.slot,
            "flags": list(self.flags),
            "pin_status": self.pin_status,
            "emulated": self.emulated,
            "keys": [
                {
                    "label": k.label,
                    "id": k.key_id,
                    "curve": k.curve,
                    "can_sign": k.can_sign,
                    "certificate": k.has_certificate,
                }
                for k in self.keys
            ],
            "note": self.note,
        }


@dataclass(frozen=True)
class ModuleEntry:
    path: str
    description: str = ""
    error: str = ""
    tokens: tuple[TokenEntry, ...] = ()
    empty_slots: tuple[str, ...] = ()
    emulated_slots: tuple[str, ...] = ()
    """Slots whose PC/SC reader holds SAFE Lab's emulated card (token or not recognised)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "description": self.description,
            "error": self.error,
            "tokens": [t.as_dict() for t in self.tokens],
            "empty_slots": list(self.empty_slots),
            "emulated_slots": list(self.emulated_slots),
        }


@dataclass(frozen=True)
class Discovery:
    builtin: tuple[TokenEntry, ...] = ()
    modules: tuple[ModuleEntry, ...] = field(default_factory=tuple)
    cards: tuple[TokenEntry, ...] = ()
    """IoT SAFE cards: cards in PC/SC readers, then the emulated card of every profile."""

    def as_dict(self) -> dict[str, object]:
        return {
            "builtin": [t.as_dict() for t in self.builtin],
            "modules": [m.as_dict() for m in self.modules],
            "cards": [t.as_dict() for t in self.cards],
        }


def candidate_modules(extra: list[str] | None = None) -> list[str]:
    """Module paths to look at: given ones first, then the environment, then known places."""
    paths: list[str] = list(extra or [])
    paths += [p for p in os.environ.get("SAFELAB_PKCS11_MODULES", "").split(":") if p]
    paths += [p for p in WELL_KNOWN_MODULES if Path(p).exists()]
    seen: set[str] = set()
    unique = []
    for path in paths:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def discover_builtin() -> list[TokenEntry]:
    entries = []
    for spec in BUILTIN_SPECS:
        try:
            token = open_token(spec)
        except SafeLabError as exc:
            entries.append(
                TokenEntry(uri=spec, kind=spec.split(":")[0], label=spec, note=exc.one_line())
            )
            continue
        info = token.info
        entries.append(
            TokenEntry(
                uri=info.uri,
                kind=info.kind,
                label=info.label,
                manufacturer=info.manufacturer,
                model=info.model,
                emulated=info.emulated,
                keys=tuple(token.keys()),
                pin_status="no PIN",
            )
        )
    return entries


def discover_module(path: str) -> ModuleEntry:
    try:
        lib = load_module(Path(path))
    except SafeLabError as exc:
        return ModuleEntry(path=path, error=exc.one_line())
    description = f"{lib.library_description.strip()} {'.'.join(map(str, lib.library_version))}"
    tokens: list[TokenEntry] = []
    empty: list[str] = []
    try:
        slots = lib.get_slots(token_present=False)
    except PKCS11Error as exc:
        return ModuleEntry(
            path=path, description=description, error=f"cannot list slots ({type(exc).__name__})"
        )
    emulated: list[str] = []
    for slot in slots:
        slot_name = f"{slot.slot_id} ({slot.slot_description.strip()})"
        emulated_in = emulated_reader_for_slot(str(slot.slot_description))
        if emulated_in is not None:
            emulated.append(slot_name)
        try:
            p11_token = slot.get_token()
        except PKCS11Error:
            why = " [emulated card, not recognised by this module]" if emulated_in else ""
            empty.append(slot_name + why)
            continue
        if not p11_token.flags & TokenFlag.TOKEN_INITIALIZED:
            empty.append(f"{slot_name}, uninitialised token")
            continue
        tokens.append(_token_entry(path, slot_name, p11_token, emulated=emulated_in is not None))
    return ModuleEntry(
        path=path,
        description=description,
        tokens=tuple(tokens),
        empty_slots=tuple(empty),
        emulated_slots=tuple(emulated),
    )


def _token_entry(
    module: str, slot_name: str, p11_token: pkcs11.Token, *, emulated: bool = False
) -> TokenEntry:
    label = str(p11_token.label).strip()
    serial = p11_token.serial
    serial_text = (
        serial.decode(errors="replace") if isinstance(serial, bytes) else str(serial)
    ).strip()
    uri = Pkcs11Uri(path={"token": label}, query={"module-path": module}).public_text()
    flags = int(p11_token.flags)
    keys: tuple[KeyInfo, ...] = ()
    note = ""
    try:
        keys = tuple(open_token(uri).keys())
    except SafeLabError as exc:
        note = exc.one_line()
    except PKCS11Error as exc:
        note = f"cannot list objects ({type(exc).__name__})"
    if not keys and not note and flags & TokenFlag.LOGIN_REQUIRED:
        note = "no public objects; private keys show after login"
    return TokenEntry(
        uri=uri,
        kind="pkcs11",
        label=label,
        manufacturer=str(p11_token.manufacturer_id).strip(),
        model=str(p11_token.model).strip(),
        serial=serial_text,
        slot=slot_name,
        flags=tuple(f.name for f in TokenFlag if flags & f and f.name),
        pin_status=pin_status_of(flags) if flags & TokenFlag.LOGIN_REQUIRED else "no PIN",
        emulated=emulated,
        keys=keys,
        note=note,
    )


def discover_cards() -> list[TokenEntry]:
    """Cards in PC/SC readers (not selected: triage does that) and the emulated profiles.

    A reader's card is listed with its ATR; whether it holds an IoT SAFE applet is for
    ``safelab triage`` to say. pcscd not running is a note, not an error: a lab without
    readers still has the emulated cards.
    """
    from drivers.cards.atr import is_emulator_atr
    from drivers.cards.emulator import list_profiles, load_profile
    from drivers.cards.pcsc import list_readers

    entries: list[TokenEntry] = []
    try:
        readers = list_readers()
    except SafeLabError as exc:
        entries.append(
            TokenEntry(
                uri="iotsafe:pcsc", kind="iotsafe", label="PC/SC readers", note=exc.one_line()
            )
        )
        readers = []
    for reader in readers:
        if not reader.card_present:
            entries.append(
                TokenEntry(
                    uri=f"iotsafe:pcsc;reader={reader.name}",
                    kind="iotsafe",
                    label=f"reader {reader.name}",
                    slot=reader.name,
                    note="no card in the reader",
                )
            )
            continue
        emulated = is_emulator_atr(reader.atr)
        entries.append(
            TokenEntry(
                uri=f"iotsafe:pcsc;reader={reader.name}",
                kind="iotsafe",
                label=f"card in {reader.name}" + (" [emulated card]" if emulated else ""),
                serial=reader.atr.hex().upper(),
                slot=reader.name,
                emulated=emulated,
                pin_status="see triage",
                note=f"ATR {reader.atr.hex().upper()}",
            )
        )
    for name in list_profiles():
        profile = load_profile(name)
        entries.append(
            TokenEntry(
                uri=f"iotsafe:emulated;profile={name}",
                kind="iotsafe",
                label=f"emulated IoT SAFE card, profile {name}",
                manufacturer="SAFE Lab",
                model=profile.description,
                emulated=True,
                pin_status="no PIN",
                note="emulated: timing from a profile, not hardware",
            )
        )
    return entries


MODULE_TIMEOUT_S = 30.0
"""How long one module may take to list its slots and tokens (``SAFELAB_MODULE_TIMEOUT``)."""


def discover_module_isolated(path: str, timeout_s: float | None = None) -> ModuleEntry:
    """:func:`discover_module` in a child process, so a module cannot hang or kill SAFE Lab.

    Third-party modules run their own code in our process: a vendor IoT SAFE provider
    aborted the whole process when its card was reset (exit 134), and OpenSC blocks for
    minutes in SCardControl on a vpcd reader whose card went away. In a child, a crash or a
    hang becomes this module's error line and every other token is still listed.
    """
    import json
    import subprocess
    import sys

    limit = timeout_s or float(os.environ.get("SAFELAB_MODULE_TIMEOUT", MODULE_TIMEOUT_S))
    try:
        child = subprocess.run(
            [sys.executable, "-m", "drivers.tokens.discovery", path],
            capture_output=True,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        return ModuleEntry(
            path=path,
            error=f"the module did not answer within {limit:g} s (a reader or card it waits "
            "for may be stuck; set SAFELAB_MODULE_TIMEOUT to wait longer)",
        )
    if child.returncode != 0:
        why = child.stderr.strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
        return ModuleEntry(path=path, error=f"the module crashed while listing: {why[0]}")
    return _module_from_dict(json.loads(child.stdout))


def _module_from_dict(data: dict[str, Any]) -> ModuleEntry:
    def token(item: dict[str, Any]) -> TokenEntry:
        keys = tuple(
            KeyInfo(
                label=k["label"],
                key_id=k["id"],
                curve=k["curve"],
                can_sign=k["can_sign"],
                has_certificate=k["certificate"],
            )
            for k in item["keys"]
        )
        fields = {k: v for k, v in item.items() if k not in ("keys", "flags")}
        return TokenEntry(**fields, flags=tuple(item["flags"]), keys=keys)

    return ModuleEntry(
        path=data["path"],
        description=data["description"],
        error=data["error"],
        tokens=tuple(token(t) for t in data["tokens"]),
        empty_slots=tuple(data["empty_slots"]),
        emulated_slots=tuple(data["emulated_slots"]),
    )


def discover(modules: list[str] | None = None) -> Discovery:
    return Discovery(
        builtin=tuple(discover_builtin()),
        modules=tuple(discover_module_isolated(path) for path in candidate_modules(modules)),
        cards=tuple(discover_cards()),
    )


if __name__ == "__main__":  # the child of discover_module_isolated
    import json
    import sys

    print(json.dumps(discover_module(sys.argv[1]).as_dict()))
