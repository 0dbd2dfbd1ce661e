"""The SSDTF stepper's dialogs: the attack menu and where to export a trace.

Kept apart from the screen (:mod:`screens.ssdtf`) so each module has one job; styles are in
``ssdtf.tcss`` with the screen's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from drivers.runs.ssdtf import expected_text


def attack_names() -> list[tuple[str, str, str, bool]]:
    """``(name, title, expected rejection, control)`` of every attack the driver knows."""
    from drivers.ssdtf.attacks import ATTACKS

    return [(a.name, a.title, expected_text(a.expect), a.control) for a in ATTACKS.values()]


class AttackMenu(ModalScreen[str | None]):
    """The driver's attacks and positive controls; Enter runs one, Escape cancels."""

    CSS_PATH = Path(__file__).with_name("ssdtf.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="attack.cancel")
    ]

    def __init__(self, intro: str = "") -> None:
        super().__init__()
        self.intro = intro

    def compose(self) -> ComposeResult:
        options = []
        for name, title, expected, control in attack_names():
            prompt = Text(f"{name:<21}", style="bold", no_wrap=True, overflow="ellipsis")
            prompt.append(title)
            prompt.append(f"\n{'':<21}", style="dim")
            prompt.append(("control: " if control else "rejected by ") + expected, style="dim")
            options.append(Option(prompt, id=name))
        with Vertical():
            if self.intro:
                yield Label(self.intro, id="intro")
            yield Label("Run an attack on a fresh deployment (model, token from the form)")
            yield OptionList(*options, id="attacks")
            yield Label("Enter: run   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        menu.highlighted = 0
        menu.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TracePathModal(ModalScreen[Path | None]):
    """Asks where to write the trace; ``.json`` and ``.pcap`` are written next to the path."""

    CSS_PATH = Path(__file__).with_name("ssdtf.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="trace_path.cancel")
    ]

    def __init__(self, default: Path) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Export the trace: PATH.json (the record) and PATH.pcap (Wireshark)")
            yield Input(str(self.default), compact=True, id="path")
            yield Label("Enter: write both   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(Path(event.value.strip()).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)


def export_paths(base: Path) -> tuple[Path, Path]:
    """``base.json`` and ``base.pcap`` (a typed ``.json``/``.pcap`` suffix is not doubled)."""
    if base.suffix in (".json", ".pcap"):
        base = base.with_suffix("")
    return base.parent / f"{base.name}.json", base.parent / f"{base.name}.pcap"
