"""Where a PIN comes from: an environment variable, a file descriptor, or a prompt.

The PIN is read once, when the token first needs it, wrapped in :class:`Pin` (which never shows
itself) and handed to the token's login. It is never written anywhere: not to results, not to
logs, not to exports. The prompt itself belongs to the caller (CLI: ``getpass``; console: a
masked modal) and is passed in as a function, so this module has no UI.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from drivers.errors import PinError
from drivers.tokens.base import Pin, PinProvider, Token


def pin_from_env(variable: str) -> Pin:
    value = os.environ.get(variable)
    if value is None:
        raise PinError(
            f"the environment variable {variable} that should hold the PIN is not set",
            f"export {variable}=... before running, or use --pin-fd N",
        )
    return Pin(value)


def pin_from_fd(fd: int) -> Pin:
    """Read the PIN from an open file descriptor (first line), e.g. ``--pin-fd 3 3<pinfile``."""
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            line = handle.readline()
    except OSError as exc:
        raise PinError(
            f"cannot read the PIN from file descriptor {fd} ({exc.strerror})",
            f"open it for the command, e.g. `safelab sign --pin-fd {fd} {fd}<pinfile`",
        ) from None
    value = line.decode().rstrip("\r\n")
    if not value:
        raise PinError(f"file descriptor {fd} gave an empty PIN", "put the PIN on its first line")
    return Pin(value)


def make_pin_provider(
    env: str | None = None,
    fd: int | None = None,
    prompt: Callable[[], str | None] | None = None,
) -> PinProvider:
    """A provider that reads the PIN from the first source given, at most once per call."""

    def provide() -> Pin | None:
        if env:
            return pin_from_env(env)
        if fd is not None:
            return pin_from_fd(fd)
        if prompt is not None:
            value = prompt()
            return Pin(value) if value else None
        return None

    return provide


def required_pin(token: Token, env: str | None = None, fd: int | None = None) -> Pin | None:
    """The PIN ``token`` needs, from ``--pin-env``/``--pin-fd``; ``None`` if it needs none.

    For commands that cannot prompt (they run peers or whole deployments): a token that needs
    a PIN and was given none is a clear error, never a silent login failure later.
    """
    if not token.needs_login:
        return None
    pin = make_pin_provider(env, fd)()
    if pin is None:
        raise PinError(
            f"token {token.info.label!r} needs a PIN",
            "give it with --pin-env VAR or --pin-fd N",
        )
    return pin


def run_pin_provider(
    env: str | None = None,
    fd: int | None = None,
    prompt: Callable[[Token], str | None] | None = None,
) -> Callable[[Token], Pin | None]:
    """The CLI's PIN step for :mod:`drivers.runs`: ``--pin-env``, ``--pin-fd``, else a prompt.

    The service calls it once per token that needs a PIN; ``prompt(token)`` may show the
    token's tries left. With no source at all it is a clear error, never a silent login
    failure later; an empty answer to the prompt is a cancel.
    """

    def provide(token: Token) -> Pin | None:
        if env:
            return pin_from_env(env)
        if fd is not None:
            return pin_from_fd(fd)
        if prompt is not None:
            value = prompt(token)
            return Pin(value) if value else None
        raise PinError(
            f"token {token.info.label!r} needs a PIN",
            "give it with --pin-env VAR or --pin-fd N",
        )

    return provide


def with_emulator_lab_pin(
    provider: Callable[[Token], Pin | None],
) -> Callable[[Token], Pin | None]:
    """``provider``, except that the in-process emulated card (``iotsafe:emulated``) gets its
    provisioned lab PIN without asking: `safelab paper` measures the paper's total, whose
    C_Login includes the SIM's PIN check (``login=verify``), on a card whose PIN is a
    published lab value, not a secret. Any other token goes to ``provider``."""

    def provide(token: Token) -> Pin | None:
        if token.info.emulated and token.info.uri.startswith("iotsafe:emulated"):
            from drivers.cards.emulator.store import LAB_PIN

            return Pin(LAB_PIN)
        return provider(token)

    return provide
