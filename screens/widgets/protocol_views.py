"""The protocols screen's Table 6 view and live phases as widgets with reactive attributes.

The screen assigns what to show (``Table6View.shown``, ``ProtocolPhases.stats``); the widgets
redraw themselves with the text of :mod:`screens.widgets.protocol_tables`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from screens.widgets.protocol_tables import (
    CellResult,
    ConditionColumn,
    cell_info,
    protocol_phase_table,
    table6_heading,
    table6_notes,
    table6_table,
)

if TYPE_CHECKING:
    from drivers.bench.stats import StatsSnapshot
    from drivers.peers.select import PeerStatus
    from drivers.runs import Table6Row

NOT_RUN = (
    "t runs every protocol listed in 'table 6' with the software key and with the token, full "
    "and resumed, n trials each, against the real peers; the paper's figures (a real IoT SAFE "
    "SIM) stand beside ours."
)


@dataclass(frozen=True)
class Table6Shown:
    """One finished Table 6: its rows and whose figures they are."""

    rows: tuple[Table6Row, ...]
    peers: Mapping[str, tuple[str, bool]] = field(default_factory=dict)
    token_label: str = ""
    emulated: bool = False
    n: int = 0


class Table6View(Vertical):
    """Heading (provenance first), our means beside the paper's, then the notes."""

    shown: reactive[Table6Shown | None] = reactive(None)

    def compose(self) -> ComposeResult:
        yield Static(id="table6-heading")
        yield Static(id="table6")
        yield Static(id="table6-notes")

    def on_mount(self) -> None:
        self.watch_shown(self.shown)

    def watch_shown(self, shown: Table6Shown | None) -> None:
        heading = self.query_one("#table6-heading", Static)
        table = self.query_one("#table6", Static)
        notes = self.query_one("#table6-notes", Static)
        if shown is None:
            heading.update(Text("Table 6 · not run yet: t runs it for the token above", "bold"))
            table.update(table6_table(()))
            notes.update(Text(NOT_RUN, style="dim"))
            return
        heading.update(table6_heading(shown.token_label, shown.emulated, shown.n))
        table.update(table6_table(shown.rows))
        notes.update(table6_notes(shown.rows, shown.peers))


class ProtocolPhases(Static):
    """The live (or selected cell's) phases: connect, handshake and the token's signing."""

    stats: reactive[StatsSnapshot | None] = reactive(None, always_update=True)

    def on_mount(self) -> None:
        self.watch_stats(self.stats)

    def watch_stats(self, stats: StatsSnapshot | None) -> None:
        self.update(protocol_phase_table(stats))


@dataclass(frozen=True)
class SelectedCell:
    """The matrix cell under the cursor, with what is known of it."""

    protocol: str
    column: ConditionColumn
    status: PeerStatus | None = None
    result: CellResult | None = None


class CellInfo(Static):
    """One line about the selected cell: its figures' provenance, or why it cannot run."""

    cell: reactive[SelectedCell | None] = reactive(None)

    def watch_cell(self, cell: SelectedCell | None) -> None:
        if cell is None:
            self.update("")
            return
        self.update(cell_info(cell.protocol, cell.column, cell.status, cell.result))
