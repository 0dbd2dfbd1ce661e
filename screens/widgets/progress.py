"""A run's progress line: what runs, Textual's own ProgressBar, and where the run stands.

The signing lab and the protocols screen used to draw their bars with block characters in a
Static; Textual's :class:`~textual.widgets.ProgressBar` already draws a bar that reads in 16
colours and without colour, shows the percentage, and animates between updates. A screen
sets :attr:`RunProgress.label`, :attr:`done`, :attr:`total` and :attr:`state` (or calls
:meth:`show`/:meth:`say`); the widget redraws itself.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, ProgressBar


class RunProgress(Horizontal):
    """``run 12  [bar] 40%  40/100 running`` on one line; before a run, one dim sentence."""

    DEFAULT_CSS = """
    RunProgress { height: 1; padding: 0 1; }
    RunProgress #run-label { width: auto; text-style: bold; padding: 0 1 0 0; }
    RunProgress ProgressBar { width: auto; }
    RunProgress ProgressBar Bar { width: 20; }
    RunProgress #run-state { width: 1fr; padding: 0 0 0 1; text-wrap: nowrap;
        text-overflow: ellipsis; }
    RunProgress.-idle #run-label, RunProgress.-idle ProgressBar { display: none; }
    RunProgress.-idle #run-state { color: $text-muted; padding: 0; }
    """

    label: reactive[str] = reactive("")
    done: reactive[int] = reactive(0)
    total: reactive[int] = reactive(1)
    state: reactive[str] = reactive("")

    def compose(self) -> ComposeResult:
        yield Label(id="run-label")
        yield ProgressBar(total=1, show_eta=False, id="bar")
        yield Label(id="run-state")

    def on_mount(self) -> None:
        self.add_class("-idle")

    def show(self, label: str, done: int, total: int, state: str) -> None:
        """A run's figures: the bar appears (it is hidden while there is only a sentence)."""
        self.remove_class("-idle")
        self.label, self.total, self.done, self.state = label, max(total, 1), done, state
        self._figures()

    def say(self, sentence: str) -> None:
        """No bar, one sentence (no run yet, or how the last one ended)."""
        self.add_class("-idle")
        self.label, self.state = "", sentence
        self._figures()

    @property
    def figures(self) -> str:
        """``40/100  running`` (or the sentence when there is no bar)."""
        if self.has_class("-idle"):
            return self.state
        return f"{self.done}/{self.total}  {self.state}".strip()

    @property
    def summary(self) -> str:
        """The line as plain text (what tests read)."""
        return f"{self.label}  {self.figures}".strip()

    def watch_label(self, label: str) -> None:
        self.query_one("#run-label", Label).update(label)

    def watch_done(self, done: int) -> None:
        self.query_one(ProgressBar).update(progress=done)
        self._figures()

    def watch_total(self, total: int) -> None:
        self.query_one(ProgressBar).update(total=total)
        self._figures()

    def watch_state(self) -> None:
        self._figures()

    def _figures(self) -> None:
        self.query_one("#run-state", Label).update(self.figures)
