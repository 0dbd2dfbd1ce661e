"""Typed provenance of a run: which token signed, which peer answered, what was measured.

Front ends show these words beside every figure ("[EMULATED]", "embedded peer amqtt 0.12.1")
instead of guessing them from class names; the run kinds fill them in from the objects
themselves (:attr:`drivers.tokens.base.Token.info`, :attr:`drivers.peers.base.Peer.identity`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.peers.base import PeerIdentity
from drivers.tokens.base import Token


@dataclass(frozen=True)
class TokenProvenance:
    """The key holder of a run, as its own info says (never what the UI thought it was)."""

    label: str
    uri: str
    kind: str
    emulated: bool

    @classmethod
    def of(cls, token: Token, uri: str) -> TokenProvenance:
        return cls(token.info.label, uri, token.info.kind, token.info.emulated)

    @property
    def words(self) -> str:
        """``"IoT SAFE card [EMULATED]"`` / ``"SoftHSM (real)"``: how figures are labelled."""
        return f"{self.label} {'[EMULATED]' if self.emulated else '(real)'}"


@dataclass(frozen=True)
class RunMeta:
    """What a run measured and against what; every field is known before its first trial."""

    kind: str
    """The run kind's name (``sign``, ``proto``, ``table6``...)."""
    token: TokenProvenance | None = None
    peer: PeerIdentity | None = None
    established_at: str = ""
    """Where a protocol trial stops the clock (``CONNACK received``); ``""`` for signing."""
    condition: str = ""
    """The signing mode or the protocol condition (``sign_only``, ``resumed``...)."""

    def with_(self, **changes: object) -> RunMeta:
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "token": None if self.token is None else vars(self.token).copy(),
            "peer": None if self.peer is None else self.peer.as_dict(),
            "established_at": self.established_at,
            "condition": self.condition,
        }
