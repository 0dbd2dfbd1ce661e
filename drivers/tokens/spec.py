"""Parsing of the short token specs of the built-in tokens: ``software:p256;key=/path.pem``.

PKCS#11 tokens use RFC 7512 URIs (see :mod:`drivers.tokens.pkcs11_uri`); the built-in tokens use
the same ``scheme:attr=value;attr=value`` shape so one ``--token`` option names all of them. A
bare word in the attribute list (``software:brainpoolP256r1``) is the curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from drivers.errors import TokenError
from drivers.tokens.base import CURVE_ALIASES


@dataclass(frozen=True)
class TokenSpec:
    scheme: str
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def curve(self) -> str:
        name = self.attrs.get("curve", "p256")
        try:
            return CURVE_ALIASES[name.lower()]
        except KeyError:
            known = ", ".join(sorted({"p256", "brainpoolP256r1"}))
            raise TokenError(
                f"unknown curve {name!r} in token spec {self.scheme}:",
                f"use one of {known}",
            ) from None


def parse_spec(text: str) -> TokenSpec:
    """Split ``scheme:a=b;c`` into a :class:`TokenSpec` (percent-escapes decoded)."""
    scheme, _, rest = text.partition(":")
    attrs: dict[str, str] = {}
    for part in filter(None, rest.split(";")):
        name, sep, value = part.partition("=")
        if sep:
            attrs[unquote(name).strip()] = unquote(value)
        else:
            attrs["curve"] = unquote(name).strip()
    return TokenSpec(scheme=scheme.strip().lower(), attrs=attrs)
