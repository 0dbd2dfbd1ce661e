"""Open any token from the text a user types: ``--token URI``.

Schemes register a factory here, so later key holders (``iotsafe:``, ``pcsc:``...) plug in
without touching the runner, the CLI or the console. The default token (no ``--token``) is the
embedded software key; later work may change :data:`DEFAULT_TOKEN` to the emulated card.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.errors import TokenError
from drivers.tokens.base import Token
from drivers.tokens.spec import parse_spec

TokenFactory = Callable[[str], Token]

DEFAULT_TOKEN = "software:p256"

_FACTORIES: dict[str, TokenFactory] = {}


def register_scheme(scheme: str, factory: TokenFactory) -> None:
    """Make ``scheme:...`` open with ``factory(full_text)``."""
    _FACTORIES[scheme] = factory


def schemes() -> list[str]:
    return sorted(_FACTORIES)


def open_token(text: str | None = None) -> Token:
    """The token named by ``text`` (default :data:`DEFAULT_TOKEN`), opened for discovery."""
    text = (text or DEFAULT_TOKEN).strip()
    scheme = text.partition(":")[0].lower()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise TokenError(
            f"unknown token scheme {scheme!r} in {text!r}",
            f"use one of {', '.join(s + ':' for s in schemes())} (see `safelab tokens`)",
        )
    return factory(text)


def _software(text: str) -> Token:
    from drivers.tokens.software import SoftwareToken

    return SoftwareToken(parse_spec(text))


def _openssl_cli(text: str) -> Token:
    from drivers.tokens.openssl_cli import OpensslCliToken

    return OpensslCliToken(parse_spec(text))


def _pkcs11(text: str) -> Token:
    from drivers.tokens.pkcs11_token import Pkcs11Token

    return Pkcs11Token.from_uri(text)


def _iotsafe(text: str) -> Token:
    from drivers.cards.iotsafe_token import open_iotsafe

    return open_iotsafe(text)


register_scheme("software", _software)
register_scheme("iotsafe", _iotsafe)
register_scheme("openssl-cli", _openssl_cli)
register_scheme("pkcs11", _pkcs11)
