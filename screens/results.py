"""Results: browse stored runs, open one (Table 3, phases, histogram), compare two, export.

Every read goes through a thread worker with its own :class:`ResultsStore` (one per thread),
and export uses the same writers as ``safelab runs export``, so the files are identical.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from drivers.bench.compare import Comparison, compare_runs
from drivers.bench.export import run_stats, write_csv, write_json
from drivers.bench.stats import StatsSnapshot, StreamingStats
from drivers.bench.store import ResultsStore, RunRecord
from drivers.errors import SafeLabError
from screens.base import LabScreen, StatusLine
from screens.dialogs import SavePathModal
from screens.lab import Lab
from screens.registry import ScreenSpec
from screens.widgets.histogram import LatencyBins, LatencyHistogram, latency_bins
from screens.widgets.protocol_tables import protocol_phase_table
from screens.widgets.tables import (
    comparison_table,
    paper_figures_table,
    paper_verdict_line,
    phase_table,
    run_label,
    table3,
)


@dataclass
class RunsListed(Message):
    records: tuple[RunRecord, ...]


@dataclass
class RunLoaded(Message):
    record: RunRecord
    stats: StatsSnapshot
    bins: LatencyBins | None


@dataclass
class Exported(Message):
    text: str


@dataclass
class CopyReady(Message):
    text: str
    what: str


RUN_COLUMNS = ("id", "started", "mode", "token", "n", "status")
"""The list's columns; every one but ``token`` is as wide as its widest cell."""


def column_widths(rows: list[tuple[str, ...]], available: int) -> dict[str, int]:
    """Widths that show every id, mode, count and status whole; the token gets the rest.

    ``available`` is the table's inner width; each column also takes two cells of padding.
    A count like ``156248/300000`` or a mode like ``https:resumed`` is never cut; only the
    token label is shortened (with an ellipsis) when the terminal is narrow.
    """
    widths = {
        name: max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(RUN_COLUMNS)
    }
    fixed = sum(width for name, width in widths.items() if name != "token")
    padding = 2 * len(RUN_COLUMNS)
    widths["token"] = max(8, min(widths["token"], available - fixed - padding))
    return widths


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def shared_bins(
    a: StreamingStats, b: StreamingStats, bins: int = 120
) -> tuple[LatencyBins | None, LatencyBins | None]:
    """Both runs' histograms over one range (both fastest trials up to the higher body top)."""
    own = [stats.histogram(bins) for stats in (a, b)]
    if own[0] is None or own[1] is None:
        return own[0], own[1]
    low = min(own[0].edges_ms[0], own[1].edges_ms[0])
    high = max(own[0].edges_ms[-1], own[1].edges_ms[-1])
    return a.histogram(bins, high, low), b.histogram(bins, high, low)


def load_run(db_path: Path | None, run_id: int) -> RunLoaded:
    """Read one run and recompute its statistics and histogram (blocking; worker only)."""
    with ResultsStore(db_path) as store:
        record = store.get_run(run_id)
        stats = run_stats(store, record)
        return RunLoaded(record, stats.final_snapshot(), latency_bins(stats))


def export_run(db_path: Path | None, run_id: int, fmt: str, path: Path) -> str:
    """Write a run as JSON or CSV through the CLI's writers; returns what to tell the user."""
    with ResultsStore(db_path) as store:
        store.get_run(run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the data directory on first use
            with path.open("w", encoding="utf-8", newline="") as out:
                (write_json if fmt == "json" else write_csv)(store, run_id, out)
        except OSError as exc:
            raise SafeLabError(
                f"cannot write {path} ({exc.strerror})", "choose a writable path"
            ) from None
    return f"run {run_id} written to {path.resolve()} ({fmt.upper()})"


class ExportModal(ModalScreen[tuple[str, Path] | None]):
    """Asks for a format and a path; Enter exports, Escape cancels."""

    CSS_PATH = Path(__file__).with_name("results.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="export.cancel")
    ]

    def __init__(self, run_id: int, directory: Path) -> None:
        super().__init__()
        self.run_id = run_id
        self.directory = directory

    def _path_for(self, fmt: str) -> str:
        return str(self.directory / f"safelab-run-{self.run_id}.{fmt}")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export run {self.run_id}")
            with Horizontal():
                yield Select(
                    [("JSON", "json"), ("CSV", "csv")],
                    value="json",
                    allow_blank=False,
                    compact=True,
                    id="format",
                )
                yield Input(self._path_for("json"), compact=True, id="path")
            yield Label(SavePathModal._full(self._path_for("json")), id="full", markup=False)
            yield Label(
                "JSON: metadata, summary, every sample. CSV: one row per sample.\n"
                "Enter: export   Esc: cancel",
                classes="hint",
            )

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Select.Changed, "#format")
    def _format_changed(self, event: Select.Changed) -> None:
        path = self.query_one("#path", Input)
        stem, _, _ = path.value.rpartition(".")
        path.value = f"{stem}.{event.value}" if stem else self._path_for(str(event.value))

    @on(Input.Changed, "#path")
    def _path_changed(self, event: Input.Changed) -> None:
        self.query_one("#full", Label).update(SavePathModal._full(event.value))

    @on(Input.Submitted, "#path")
    def _submitted(self, event: Input.Submitted) -> None:
        fmt = str(self.query_one("#format", Select).value)
        if not event.value.strip():
            return
        self.dismiss((fmt, Path(event.value.strip()).expanduser()))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ResultsScreen(LabScreen):
    """Stored runs, newest first; the highlighted one is shown below the list."""

    JOB = "results"

    CSS_PATH = Path(__file__).with_name("results.tcss")  # absolute: subclasses may live anywhere
    HELP = """\
**Results**: every stored run, newest first; the highlighted one is shown below the list.

- **n** trials done / planned; **status** `complete`, `incomplete` (stopped: the trials done
  are kept) or `failed`.
- **Table 3** row: mean, σ, P50/P90/P99 in ms and the trials slower than the threshold,
  with the paper's row for the same mode (dim).
- **phases**: each phase's mean, P50, P99 and share of the summed means.
- **histogram**: the body of the distribution up to P99 (or 3×P90); the last row counts
  the slower trials.
- **compare** (`m` on run A, then `c` on run B): A and B side by side, B/A ratios of P50 and
  P99 (2.00× means B is twice as slow), both histograms over the same bins.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "export", "Export", id="results.export"),
        Binding("m", "mark", "Mark A", id="results.mark"),
        Binding("c", "compare", "Compare", id="results.compare"),
        Binding("y", "copy", "Copy summary", id="results.copy"),
        Binding("r", "refresh", "Refresh", id="results.refresh"),
    ]

    marked: reactive[int | None] = reactive(None)
    """Run A for a comparison (``m``); the list marks it ``A``."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.records: dict[int, RunRecord] = {}
        self.shown: int | None = None
        self._rows: list[tuple[str, ...]] = []

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=False)
        yield Static(id="run-info")
        yield Static(id="run-table3")
        with Horizontal(id="run-bottom"):
            yield Static(id="run-phases")
            yield LatencyHistogram(id="run-histogram")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Results"
        self.query_one("#run-info", Static).update(Text("no run open", style="dim"))

    def on_screen_resume(self) -> None:
        self._list()

    def action_refresh(self) -> None:
        self._list()

    @work(thread=True, exclusive=True, exit_on_error=False, group="results-list")
    def _list(self) -> None:
        def body() -> None:
            with ResultsStore(self.lab.db_path) as store:
                self.post_message(RunsListed(tuple(store.list_runs(500))))

        self.guarded(body)

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        previous = self._current_id()
        changed = message.records != tuple(self.records.values())
        self.records = {record.id: record for record in message.records}
        self._rows = [self._row(record) for record in message.records]
        self._fill()
        if not message.records:
            self.say("no runs stored yet: run one in the signing lab (2)")
            return
        table = self.query_one("#runs", DataTable)
        if previous in self.records:
            table.move_cursor(row=table.get_row_index(str(previous)))
        if changed:  # coming back from a modal keeps the message it left (export written...)
            self.say(f"{len(message.records)} runs; m marks A, c compares, e exports")
        current = self._current_id()
        if current is not None and current != self.shown:
            self._load(current)

    def _row(self, record: RunRecord) -> tuple[str, ...]:
        token = str(record.token.get("label") or record.token_uri)
        if record.emulated:
            token += " [EMULATED]"
        mark = "A " if record.id == self.marked else ""
        return (
            f"{mark}{record.id}",
            _when(record.started_at),
            record.mode,
            token,
            f"{record.n_samples}/{record.n_planned}",
            record.status,
        )

    def _fill(self) -> None:
        """(Re)draw the list with column widths for the table's current width."""
        table = self.query_one("#runs", DataTable)
        cursor = table.cursor_row
        available = (table.size.width or self.app.size.width) - 1  # the scrollbar
        widths = column_widths(self._rows, available)
        table.clear(columns=True)
        for name in RUN_COLUMNS:
            table.add_column(name, key=name, width=widths[name])
        for row in self._rows:
            cells = [
                Text(cell, overflow="ellipsis", no_wrap=True) if name == "token" else cell
                for name, cell in zip(RUN_COLUMNS, row, strict=True)
            ]
            table.add_row(*cells, key=row[0].removeprefix("A "))
        if self._rows:
            table.move_cursor(row=min(cursor, len(self._rows) - 1))

    def on_resize(self) -> None:
        if self._rows:
            self._fill()

    def watch_marked(self) -> None:
        if self._rows:
            self._rows = [self._row(record) for record in self.records.values()]
            self._fill()

    def _current_id(self) -> int | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(row_key.value) if row_key.value is not None else None

    @on(DataTable.RowHighlighted, "#runs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._load(int(event.row_key.value))

    @on(DataTable.RowSelected, "#runs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self._load(int(event.row_key.value))

    @work(thread=True, exclusive=True, exit_on_error=False, group="results-load")
    def _load(self, run_id: int) -> None:
        self.guarded(lambda: self.post_message(load_run(self.lab.db_path, run_id)))

    @on(RunLoaded)
    def _loaded(self, message: RunLoaded) -> None:
        record = message.record
        self.shown = record.id
        info = Text(f"run {record.id} {record.mode} {record.status}", style="bold")
        if record.reason:
            info.append(f" ({record.reason})", style="")
        info.append(f"  {record.extra.get('times', '')}", style="dim")
        info.no_wrap = True
        info.overflow = "ellipsis"
        self.query_one("#run-info", Static).update(info)
        if record.experiment == "paper":
            self._show_paper(record.extra.get("paper", {}))
            return
        label = run_label(str(record.token.get("label", "")), record.emulated)
        self.query_one("#run-table3", Static).update(
            table3(message.stats, label, record.mode, record.threshold_ms)
        )
        phases = (
            protocol_phase_table(message.stats)
            if record.experiment == "proto"
            else phase_table(message.stats)
        )
        self.query_one("#run-phases", Static).update(phases)
        self.query_one("#run-histogram", LatencyHistogram).bins = message.bins

    def _show_paper(self, document: dict[str, object]) -> None:
        """A stored `safelab paper` run: its judged figures per paper table, the verdict."""
        figures = document.get("figures") or []
        assert isinstance(figures, list)
        sections = [
            paper_figures_table(
                name, [f for f in figures if f["table"] == name], with_tolerance=False
            )
            for name in dict.fromkeys(f["table"] for f in figures)
        ]
        self.query_one("#run-table3", Static).update(Group(paper_verdict_line(document), *sections))
        notes = document.get("notes") or []
        assert isinstance(notes, list)
        self.query_one("#run-phases", Static).update(
            Text("\n".join(str(n) for n in notes), style="dim")
        )
        self.query_one("#run-histogram", LatencyHistogram).bins = None

    # -- actions ----------------------------------------------------------------------------

    def action_mark(self) -> None:
        run_id = self._current_id()
        if run_id is None:
            self.fail("no run to mark")
            return
        self.marked = run_id
        self.say(f"run {run_id} is A; highlight another run and press c to compare")

    def action_compare(self) -> None:
        run_id = self._current_id()
        if self.marked is None or run_id is None:
            self.fail("mark run A with m first, then highlight run B and press c")
            return
        if run_id == self.marked:
            self.fail("highlight a different run than A to compare")
            return
        self.app.push_screen(CompareScreen(self.lab, self.marked, run_id))

    def action_export(self) -> None:
        run_id = self._current_id()
        if run_id is None:
            self.fail("no run to export")
            return

        def chosen(answer: tuple[str, Path] | None) -> None:
            if answer is None:
                self.say("export cancelled")
                return
            self._export(run_id, *answer)

        self.app.push_screen(ExportModal(run_id, self.lab.export_dir), callback=chosen)

    @work(thread=True, exit_on_error=False, group="results-export")
    def _export(self, run_id: int, fmt: str, path: Path) -> None:
        self.guarded(
            lambda: self.post_message(Exported(export_run(self.lab.db_path, run_id, fmt, path)))
        )

    @on(Exported)
    def _exported(self, message: Exported) -> None:
        # The status line is one row; the notification wraps, so a long path is read whole.
        self.say(message.text)
        self.notify(message.text, title="exported", markup=False)

    def action_copy(self) -> None:
        run_id = self._current_id()
        if run_id is None:
            self.fail("no run to copy")
            return
        self._copy(run_id)

    @work(thread=True, exit_on_error=False, group="results-copy")
    def _copy(self, run_id: int) -> None:
        def body() -> None:
            loaded = load_run(self.lab.db_path, run_id)
            document = {"run": loaded.record.as_dict(), "summary": loaded.stats.as_dict()}
            text = json.dumps(document, indent=2, allow_nan=False, default=str)
            self.post_message(CopyReady(text, f"run {run_id} summary"))

        self.guarded(body)

    @on(CopyReady)
    def _copy_ready(self, message: CopyReady) -> None:
        self.app.copy_to_clipboard(message.text)
        self.say(f"{message.what} copied as JSON (OSC 52 clipboard)")


@dataclass
class Compared(Message):
    comparison: Comparison
    a_bins: LatencyBins | None
    b_bins: LatencyBins | None


class CompareScreen(LabScreen):
    """Two runs side by side: Table 3 figures with B/A ratios of P50 and P99, two histograms."""

    JOB = "results"
    CSS_PATH = Path(__file__).with_name("results.tcss")  # absolute: subclasses may live anywhere
    HELP = """\
**Compare**: run B (the highlighted one) against run A (marked with `m`).

- rows: mode, token, trials, mean, P50, P90, P99 of each run, in ms.
- **B / A**: B's P50 and P99 over A's; above 1.00× B is slower, below it faster.
- the two histograms share their bins (same range, same width), so the bars compare
  directly; the last row counts trials slower than the shared range.
"""
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "back", "Back", id="compare.back")]

    def __init__(self, lab: Lab, a_id: int, b_id: int) -> None:
        super().__init__(lab)
        self.a_id = a_id
        self.b_id = b_id

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        yield Static(Text("comparing…", style="dim"), id="comparison")
        with Horizontal(id="histograms"):
            yield LatencyHistogram(id="a-histogram")
            yield LatencyHistogram(id="b-histogram")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Compare run {self.b_id} with run {self.a_id}"
        self.query_one("#a-histogram").border_title = f"A #{self.a_id} (ms)"
        self.query_one("#b-histogram").border_title = f"B #{self.b_id} (ms)"
        self._compare()

    @work(thread=True, exclusive=True, exit_on_error=False, group="results-compare")
    def _compare(self) -> None:
        def body() -> None:
            with ResultsStore(self.lab.db_path) as store:
                comparison = compare_runs(store, self.a_id, self.b_id)
                a_stats, b_stats = (run_stats(store, r) for r in (comparison.a, comparison.b))
                a_bins, b_bins = shared_bins(a_stats, b_stats)
            self.post_message(Compared(comparison, a_bins, b_bins))

        self.guarded(body)

    @on(Compared)
    def _compared(self, message: Compared) -> None:
        self.query_one("#comparison", Static).update(comparison_table(message.comparison))
        self.query_one("#a-histogram", LatencyHistogram).bins = message.a_bins
        self.query_one("#b-histogram", LatencyHistogram).bins = message.b_bins
        c = message.comparison
        self.say(f"B/A: P50 {c.p50_ratio:.2f}×, P99 {c.p99_ratio:.2f}× (Esc goes back)")

    def action_back(self) -> None:
        self.app.pop_screen()


SCREEN = ScreenSpec(
    name="results",
    title="Results",
    description="Stored runs: open one, compare two (P50/P99 ratios), export JSON or CSV",
    order=30,
    factory=ResultsScreen,
)
