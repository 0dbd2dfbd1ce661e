"""Errors the driver layer raises on purpose.

Every error a user can cause (a wrong PIN, a missing module, a locked database) is a
:class:`SafeLabError` that carries two sentences: *what* is wrong and *what to do*. The CLI
prints them as one line and the console shows them in a notification, so nobody ever sees a
traceback for a mistake they can fix. Anything else that escapes is a bug in SAFE Lab.
"""

from __future__ import annotations


class SafeLabError(Exception):
    """A problem the user can fix; ``problem`` says what is wrong, ``fix`` what to do."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def one_line(self) -> str:
        """The problem and the fix as one line, as the CLI prints it."""
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


class TokenError(SafeLabError):
    """The token, its module, its slot or its key cannot be used as asked."""


class ModuleLoadError(TokenError):
    """A PKCS#11 module path that does not exist or is not a PKCS#11 module."""


class TokenNotFoundError(TokenError):
    """No token (or more than one) matches the URI."""


class KeyNotFoundError(TokenError):
    """No key (or more than one) matches the URI."""


class KeyUsageError(TokenError):
    """The key exists but cannot sign (CKA_SIGN false, wrong type, unsupported curve)."""


class PinError(TokenError):
    """A PIN was refused, is missing, or the token is locked. Never retried by SAFE Lab."""

    def __init__(self, problem: str, fix: str = "", tries_left: str = "unknown") -> None:
        super().__init__(problem, fix)
        self.tries_left = tries_left


class PinCancelled(PinError):
    """The user cancelled the PIN prompt (or the provider had no PIN to give): nothing ran."""


class StoreError(SafeLabError):
    """The results database cannot be opened, read or written."""


class RunInterrupted(SafeLabError):
    """A run stopped by the user (Ctrl-C or stop); what was measured is kept."""

    exit_code = 130
