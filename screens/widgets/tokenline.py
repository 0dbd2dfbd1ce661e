"""The token a screen runs on, in one line: ``token [EMULATED] label ×0.01 speed  uri``.

Signing, Protocols and SSDTF each said this in their own words, and two of them forgot the
speed factor; one widget with a reactive :attr:`TokenLine.token` says it the same way
everywhere (the screen sets the attribute, the line redraws).
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from screens.lab import DEFAULT_CHOICE, TokenChoice
from screens.widgets.format import speed_words


def token_text(token: TokenChoice, note: str = "", show_uri: bool = True) -> Text:
    """The line's text; ``note`` (dim) follows, e.g. what the cells of a table mean."""
    line = Text("token ", style="dim", no_wrap=True, overflow="ellipsis")
    line.append("[EMULATED] " if token.emulated else "real ", style="bold")
    line.append(token.label, style="bold")
    line.append(speed_words(token.uri, token.label), style="bold")
    if show_uri and token.uri != token.label:
        line.append(f"  {token.uri}", style="dim")
    if note:
        line.append(f"  · {note}", style="dim")
    return line


class TokenLine(Static):
    """One line naming the token in use; set :attr:`token` (and :attr:`note`)."""

    DEFAULT_CSS = "TokenLine { height: 1; padding: 0 1; }"

    token: reactive[TokenChoice] = reactive(DEFAULT_CHOICE)
    note: reactive[str] = reactive("")

    def watch_token(self) -> None:
        self.update(token_text(self.token, self.note))

    def watch_note(self) -> None:
        self.update(token_text(self.token, self.note))
