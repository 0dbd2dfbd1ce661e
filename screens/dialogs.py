"""The console's small dialogs: help for the current job, confirm quitting a run, save where.

Each is a typed :class:`~textual.screen.ModalScreen` that returns through ``dismiss``; none
does I/O. Their look lives in ``dialogs.tcss``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, Markdown, Static

KEY_NAMES = {
    "question_mark": "?",
    "escape": "Esc",
    "enter": "Enter",
    "ctrl+p": "Ctrl+P",
    "ctrl+z": "Ctrl+Z",
    "space": "Space",
    "tab": "Tab",
}


def key_label(keys: str) -> str:
    """``f5`` → ``F5``, ``escape,q`` → ``Esc/q``: how a binding's keys read in the help."""
    names = []
    for key in keys.split(","):
        key = key.strip()
        name = KEY_NAMES.get(key, key)
        if len(name) in (2, 3) and name[0] == "f" and name[1:].isdigit():
            name = name.upper()
        names.append(name)
    return "/".join(names)


def screen_bindings(screen: Screen) -> list[tuple[str, str]]:
    """``(keys, description)`` of every described binding of ``screen``'s class and bases.

    Hidden bindings count too (letter twins of F-keys, Esc): help lists what works, not only
    what the footer has room for. Keys for the same action are merged (``F5/s Start``).
    """
    by_action: dict[str, tuple[list[str], str]] = {}
    for cls in type(screen).__mro__:
        for binding in getattr(cls, "BINDINGS", ()) if "BINDINGS" in vars(cls) else ():
            if not isinstance(binding, Binding) or not binding.description:
                continue
            keys, _ = by_action.setdefault(binding.action, ([], binding.description))
            label = key_label(binding.key_display or binding.key)
            if label not in keys:
                keys.append(label)
    return [("/".join(keys), description) for keys, description in by_action.values()]


def screen_help(screen: Screen) -> str:
    """The job's own help text (``HELP`` attribute or ``help_text()``), else its docstring.

    A screen that says nothing about its figures still gets its keys listed by the help
    screen, so every job has a useful ``?``.
    """
    method = getattr(screen, "help_text", None)
    if callable(method):
        return str(method())
    text = getattr(screen, "HELP", None)
    if isinstance(text, str) and text.strip():
        return text
    doc = (type(screen).__doc__ or "").strip()
    title = screen.sub_title or type(screen).__name__
    return f"**{title}**: {doc}" if doc else f"**{title}**"


COMMON_KEYS = (
    ("1–9", "switch job (only when no text field has focus)"),
    ("Tab/Shift+Tab", "move the focus (the focused pane has a thick left edge)"),
    ("Esc", "leave a text field, close a dialog"),
    ("?/F1", "this help"),
    ("Ctrl+P", "command palette: every job and this screen's actions"),
    ("q", "quit (asks first while a run is going; the partial run is kept)"),
    ("Ctrl+Z", "suspend"),
)


def keys_table(screen: Screen) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, description in screen_bindings(screen):
        table.add_row(keys, description)
    table.add_row("", "")
    for keys, description in COMMON_KEYS:
        table.add_row(Text(keys), Text(description, style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    """Help for the job on screen: what its figures mean, then every key it answers to."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="help.close"),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = f"Help: {self.for_screen.sub_title or 'SAFE Lab'}"
            body.border_subtitle = "Esc closes · ↑↓ PgUp PgDn scroll"
            yield Markdown(screen_help(self.for_screen), id="help-text")
            yield Label("Keys", classes="heading")
            yield Static(keys_table(self.for_screen), id="help-keys")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmQuit(ModalScreen[bool]):
    """Quitting while a run is going: ``y`` quits (the partial run is kept), ``n``/Esc stays."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Quit", id="quit.yes"),
        Binding("n,escape", "answer(False)", "Stay", id="quit.no"),
    ]

    def __init__(self, running: list[str]) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(f"A run is going in {', '.join(self.running)}.", markup=False)
            yield Label(
                "Quit now? It stops after the current trial; the partial run is kept "
                "in Results either way.",
                markup=False,
            )
            yield Label("y: quit   n/Esc: stay", classes="hint")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class SavePathModal(ModalScreen[Path | None]):
    """Where to save a file: an editable full path (default in the data directory)."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="save.cancel"),
    ]

    def __init__(self, what: str, default: Path) -> None:
        super().__init__()
        self.what = what
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="save"):
            yield Label(f"Save {self.what} to", markup=False)
            yield Input(str(self.default), compact=True, id="save-path")
            # The field scrolls a long path; this line wraps, so the whole path is always read.
            yield Label(self._full(str(self.default)), id="save-full", markup=False)
            yield Label("Enter: save   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#save-path", Input).focus()

    @staticmethod
    def _full(value: str) -> str:
        """The path as it will be written, whole (the one-row field scrolls a long one)."""
        return f"full path: {Path(value.strip() or '.').expanduser().absolute()}"

    @on(Input.Changed, "#save-path")
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#save-full", Label).update(self._full(event.value))

    @on(Input.Submitted, "#save-path")
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            self.dismiss(Path(value).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
