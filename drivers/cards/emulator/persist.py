"""Emulated cards that survive a restart: keys, certificates and object state per card name.

A third-party stack trusts a card by its keys: a client certificate registered with a broker,
a pinned public key. If ``card serve`` provisioned new keys at every start, that trust would
break each time. So a named card is written to ``<data dir>/cards/NAME.json`` (directory 0700,
file 0600, like the lab's software keys in ``<data dir>/keys``) when it is first provisioned
and after every command that changes it, and read back on the next start; ``--fresh``
provisions it anew. The lab CA's private key is not kept: nothing re-issues certificates.
The PIN itself is never written (it is the lab's test PIN, chosen by the token spec); the
tries left are, as a SIM keeps them across power cycles.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.cards.emulator.store import CardStore, FileObject, PrivateKeyObject, PublicKeyObject
from drivers.cards.errors import CardError
from drivers.tokens.base import CURVES

FORMAT = 1


def cards_dir() -> Path:
    """``<data dir>/cards``: one JSON file per emulated card name."""
    from drivers.paths import data_dir

    return data_dir() / "cards"


def card_path(name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "default"
    return cards_dir() / f"{safe}.json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump_store(store: CardStore, curves: tuple[str, ...]) -> dict[str, Any]:
    """The card as JSON-able data (private keys as unencrypted PKCS#8 PEM: a lab card)."""
    with store.lock:
        return {
            "format": FORMAT,
            "curves": list(curves),
            "pin_tries": store.pin_tries,
            "ca_certificate": _b64(
                store.ca_certificate.public_bytes(serialization.Encoding.DER)
                if store.ca_certificate is not None
                else b""
            ),
            "private_keys": [
                {
                    "id": key.id.hex(),
                    "label": key.label,
                    "key": key.key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode("ascii"),
                    "functions": key.functions,
                    "usage": key.usage,
                    "state": key.state,
                }
                for key in store.private_keys.values()
            ],
            "public_keys": [
                {
                    "id": key.id.hex(),
                    "label": key.label,
                    "curve": key.curve,
                    "point": key.point.hex(),
                    "access": key.access,
                    "functions": key.functions,
                }
                for key in store.public_keys.values()
            ],
            "files": [
                {
                    "id": file.id.hex(),
                    "label": file.label,
                    "content": _b64(file.content),
                    "usage": file.usage,
                    "access": file.access,
                }
                for file in store.files.values()
            ],
        }


def load_store(data: dict[str, Any], *, pin: str | None) -> CardStore:
    """A :class:`CardStore` from :func:`dump_store` data; ``pin`` as the spec asks."""
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown card file format {data.get('format')!r}")
    store = CardStore(pin=pin, pin_tries=int(data.get("pin_tries", 3)))
    ca = base64.b64decode(data["ca_certificate"])
    store.ca_certificate = x509.load_der_x509_certificate(ca) if ca else None
    for item in data["private_keys"]:
        key = serialization.load_pem_private_key(item["key"].encode("ascii"), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("a private key of the card is not an EC key")
        ident = bytes.fromhex(item["id"])
        store.private_keys[ident] = PrivateKeyObject(
            ident, item["label"], key, item["functions"], item["usage"], item["state"]
        )
    for item in data["public_keys"]:
        ident = bytes.fromhex(item["id"])
        point = ec.EllipticCurvePublicKey.from_encoded_point(
            CURVES[item["curve"]], bytes.fromhex(item["point"])
        )
        store.public_keys[ident] = PublicKeyObject(
            ident, item["label"], point, item["access"], item["functions"]
        )
    for item in data["files"]:
        ident = bytes.fromhex(item["id"])
        store.files[ident] = FileObject(
            ident, item["label"], base64.b64decode(item["content"]), item["usage"], item["access"]
        )
    return store


def save_card(name: str, store: CardStore, curves: tuple[str, ...]) -> Path:
    """Write the card atomically (a crash never leaves half a card), mode 0600."""
    path = card_path(name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(dump_store(store, curves), indent=1)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_card(name: str, curves: tuple[str, ...], *, pin: str | None) -> CardStore | None:
    """The saved card ``name`` if there is one with the curves asked for; else ``None``.

    A file that cannot be read as a card is an error naming it (never silently replaced: it
    holds keys someone may trust).
    """
    path = card_path(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CardError(
            f"the emulated card file {path} cannot be read ({exc})",
            "remove it, or start the card with --fresh to provision new keys",
        ) from None
    if sorted(data.get("curves", [])) != sorted(curves):
        return None
    try:
        return load_store(data, pin=pin)
    except (KeyError, TypeError, ValueError) as exc:
        raise CardError(
            f"the emulated card file {path} is damaged ({exc})",
            "remove it, or start the card with --fresh to provision new keys",
        ) from None
