"""RFC 7512 PKCS#11 URIs: ``pkcs11:token=lab;object=dev?module-path=/usr/lib/...so``.

Written by hand because no maintained Python package parses RFC 7512 (p11-kit does it in C;
python-pkcs11 leaves URIs to the caller). Only what SAFE Lab needs: the path attributes that
select a token and a key, and the query attributes that select the module. ``pin-value`` and
``pin-source`` are accepted (they are part of the RFC) but are never kept in
:meth:`Pkcs11Uri.public_text`, which is what results store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from drivers.errors import TokenError

PATH_ATTRIBUTES = {
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
    "object",
    "id",
    "type",
}
QUERY_ATTRIBUTES = {"module-path", "module-name", "pin-value", "pin-source"}
SECRET_ATTRIBUTES = {"pin-value", "pin-source"}


@dataclass(frozen=True)
class Pkcs11Uri:
    path: dict[str, str] = field(default_factory=dict)
    """Path attributes, percent-decoded; ``id`` is in :attr:`key_id` instead."""
    query: dict[str, str] = field(default_factory=dict, repr=False)
    key_id: bytes | None = None
    """The ``id=`` attribute (CKA_ID) as bytes; RFC 7512 percent-encodes every byte."""

    def public_text(self) -> str:
        """The URI without PIN attributes, safe to show, log and store."""
        parts = [f"{name}={_quote(value)}" for name, value in self.path.items()]
        if self.key_id is not None:
            parts.append("id=" + "".join(f"%{byte:02x}" for byte in self.key_id))
        text = "pkcs11:" + ";".join(parts)
        query = [
            f"{name}={_quote(value, safe='/')}"
            for name, value in self.query.items()
            if name not in SECRET_ATTRIBUTES
        ]
        return text + ("?" + "&".join(query) if query else "")


def _quote(value: str, safe: str = "") -> str:
    return quote(value, safe=safe + "-._~")


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse ``text``; an unknown or malformed attribute is an error that names it."""
    if not text.lower().startswith("pkcs11:"):
        raise TokenError(
            f"{text!r} is not a PKCS#11 URI",
            "write pkcs11:token=LABEL;object=KEY?module-path=/path/to/module.so",
        )
    body = text[len("pkcs11:") :]
    path_text, _, query_text = body.partition("?")
    path: dict[str, str] = {}
    key_id: bytes | None = None
    for part in filter(None, path_text.split(";")):
        name, value = _split_attribute(part, text)
        if name not in PATH_ATTRIBUTES:
            raise TokenError(
                f"unknown PKCS#11 URI attribute {name!r} in {text!r}",
                f"use {', '.join(sorted(PATH_ATTRIBUTES))}",
            )
        if name == "id":
            key_id = unquote(value, encoding="latin-1").encode("latin-1")
        else:
            path[name] = unquote(value)
    query: dict[str, str] = {}
    for part in filter(None, query_text.split("&")):
        name, value = _split_attribute(part, text)
        if name not in QUERY_ATTRIBUTES:
            raise TokenError(
                f"unknown PKCS#11 URI query attribute {name!r}",
                f"use {', '.join(sorted(QUERY_ATTRIBUTES))}",
            )
        query[name] = unquote(value)
    return Pkcs11Uri(path=path, query=query, key_id=key_id)


def _split_attribute(part: str, text: str) -> tuple[str, str]:
    name, sep, value = part.partition("=")
    if not sep:
        raise TokenError(
            f"PKCS#11 URI attribute {part!r} has no value in {text!r}",
            "write attributes as name=value separated by ';' (path) or '&' (query)",
        )
    return name.strip().lower(), value
