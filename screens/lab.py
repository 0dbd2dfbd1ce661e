"""State the console's screens share: which token is chosen, where results go, what can triage.

One :class:`Lab` is made by the App and handed to every screen's factory, so a screen never
reaches into the App (imports run ``console → screens → drivers``) and tests can build a lab
with a temp database, a fixed discovery function or a triage callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from drivers.paths import data_dir
from drivers.tokens.base import Token
from drivers.tokens.discovery import Discovery, TokenEntry, discover, discover_cards
from drivers.tokens.registry import DEFAULT_TOKEN


class CheckResult(Protocol):
    """One triage check as the triage screen shows it; any object with these attributes works."""

    @property
    def name(self) -> str: ...

    @property
    def verdict(self) -> str:
        """``PASS``, ``WARN`` or ``FAIL`` (anything else is shown as given)."""
        ...

    @property
    def detail(self) -> str: ...


TriageProvider = Callable[[Token], Iterable[CheckResult]]
"""Runs the checks on an opened token, yielding each result as it completes (blocking I/O)."""


@dataclass(frozen=True)
class TokenChoice:
    """The token the user picked: enough to open it again and to label results honestly."""

    uri: str
    label: str
    kind: str
    emulated: bool = False


DEFAULT_CHOICE = TokenChoice(DEFAULT_TOKEN, "software secp256r1", "software")


@dataclass
class Lab:
    """What the screens share. Mutable on purpose: the token picker changes ``token``."""

    db_path: Path | None = None
    """Results database (``None``: the user's data directory, as the CLI does)."""
    discover: Callable[[], Discovery] = discover
    """How the token picker finds tokens; tests pass a fixed one for stable snapshots."""
    triage: TriageProvider | None = None
    """The card triage checks, once a driver provides them; ``None`` shows a placeholder."""
    token: TokenChoice = DEFAULT_CHOICE
    """The token the signing lab and triage use."""
    export_dir: Path = field(default_factory=data_dir)
    """Where exports and saved reports are proposed by default (the data directory, next to
    the results store; every save dialog shows the full path and lets the user change it)."""
    cards: Callable[[], Iterable[TokenEntry]] = discover_cards
    """The cards triage offers (readers' cards and emulated profiles); tests pin it."""
    jobs: tuple[tuple[str, str], ...] = ()
    """``(mode name, title)`` of every job, in key order; the App fills it from the registry."""
