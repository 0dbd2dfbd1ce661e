"""The signing lab's figures as widgets bound to the screen's reactive state.

The screen holds what a run is (``live``: the latest :class:`~screens.run_control.RunUpdate`,
``run_token``, ``run_mode``, ``threshold_ms``) as reactive attributes; these widgets are
``data_bind``-ed to them in ``compose`` and redraw themselves when any changes, so the screen
draws by assigning one attribute instead of updating each figure by id.
"""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from screens.lab import DEFAULT_CHOICE, TokenChoice
from screens.run_control import RunUpdate
from screens.widgets.tables import apdu_table, phase_table, run_label, table3


class Table3View(Static):
    """Table 3 of the run shown, with the paper's row under it."""

    live: reactive[RunUpdate | None] = reactive(None, always_update=True)
    run_token: reactive[TokenChoice] = reactive(DEFAULT_CHOICE)
    run_mode: reactive[str] = reactive("sign_only")
    threshold_ms: reactive[float] = reactive(1000.0)

    def on_mount(self) -> None:
        self._redraw()

    def watch_live(self) -> None:
        self._redraw()

    def watch_run_token(self) -> None:
        self._redraw()

    def watch_run_mode(self) -> None:
        self._redraw()

    def watch_threshold_ms(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        stats = self.live.stats if self.live is not None else None
        label = run_label(self.run_token.label, self.run_token.emulated)
        self.update(table3(stats, label, self.run_mode, self.threshold_ms))


class PhasesView(Static):
    """Each phase's mean, P50, P99 and share of the trial."""

    live: reactive[RunUpdate | None] = reactive(None, always_update=True)

    def watch_live(self, live: RunUpdate | None) -> None:
        self.update(phase_table(live.stats if live is not None else None))


class ApduView(Static):
    """A card's last APDUs. Shown only for a run whose token keeps an APDU trace: a later
    software run hides a card's panel; between runs (``live`` is None) it stays as it was."""

    live: reactive[RunUpdate | None] = reactive(None, always_update=True)

    def on_mount(self) -> None:
        self.display = False

    def watch_live(self, live: RunUpdate | None) -> None:
        if live is None:
            return
        self.display = live.apdus is not None
        if live.apdus is not None:
            self.update(apdu_table(live.apdus))
