"""PIN entry: a masked modal that returns a :class:`Pin` once and keeps nothing.

The runner asks for a PIN from its worker thread (a :data:`PinProvider`); :func:`ask_pin`
shows the modal on the UI thread and waits for the answer, so the PIN goes straight from the
input to the token's login. The modal shows what the token says about tries left, because a
SIM locks after a few wrong PINs and SAFE Lab never retries one by itself.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label
from textual.worker import NoActiveWorker, get_current_worker

from drivers.tokens.base import Pin, Token


class PinModal(ModalScreen[Pin | None]):
    """Asks for one token's user PIN; Enter logs in, Escape cancels."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="pin.cancel")]

    def __init__(self, token_label: str, pin_status: str) -> None:
        super().__init__()
        self.token_label = token_label
        self.pin_status = pin_status

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"User PIN for {self.token_label!r}", markup=False)
            yield Label(f"PIN status: {self.pin_status}", id="pin-status", markup=False)
            yield Input(password=True, placeholder="PIN", id="pin")
            yield Label(
                "Enter: log in   Esc: cancel\n"
                "The PIN is used once and never stored; a wrong PIN is never retried.",
                classes="hint",
            )

    @on(Input.Submitted, "#pin")
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value
        event.input.value = ""
        self.dismiss(Pin(value) if value else None)

    def action_cancel(self) -> None:
        self.query_one("#pin", Input).value = ""
        self.dismiss(None)


def ask_pin(app: App[object], token: Token) -> Pin | None:
    """Show :class:`PinModal` from a worker thread and wait for it; ``None``: cancelled.

    Must run in a thread worker (never on the UI thread). Returns ``None`` too if the worker is
    cancelled while the modal is open (the screen closed or the app quit).
    """
    status = token.pin_status()
    answer: Future[Pin | None] = Future()

    def show() -> None:
        app.push_screen(PinModal(token.info.label, status), callback=answer.set_result)

    app.call_from_thread(show)
    try:
        worker = get_current_worker()
    except NoActiveWorker:
        worker = None
    while True:
        try:
            return answer.result(timeout=0.1)
        except FutureTimeout:
            if worker is not None and worker.is_cancelled:
                return None
