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

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from drivers.bench.compare import Comparison, compare_runs
from drivers.bench.export import run_stats, write_csv, write_json
from drivers.bench.stats import StatsSnapshot
from drivers.bench.store import ResultsStore, RunRecord
from drivers.errors import SafeLabError
from screens.base import LabScreen, StatusLine
from screens.lab import Lab
from screens.registry import ScreenSpec
from screens.widgets.histogram import LatencyBins, LatencyHistogram, latency_bins
from screens.widgets.protocol_tables import protocol_phase_table
from screens.widgets.tables import comparison_table, phase_table, run_label, table3


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


RUN_COLUMNS = (
    ("id", 4),
    ("started", 16),
    ("mode", 9),
    ("token", 16),
    ("n", 11),
    ("status", 10),
)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def load_run(db_path: Path | None, run_id: int) -> RunLoaded:
    """Read one run and recompute its statistics and histogram (blocking; worker only)."""
    with ResultsStore(db_path) as store:
        record = store.get_run(run_id)
        stats = run_stats(store, record)
        return RunLoaded(record, stats.snapshot(), latency_bins(stats))


def export_run(db_path: Path | None, run_id: int, fmt: str, path: Path) -> str:
    """Write a run as JSON or CSV through the CLI's writers; returns what to tell the user."""
    with ResultsStore(db_path) as store:
        store.get_run(run_id)
        try:
            with path.open("w", encoding="utf-8", newline="") as out:
                (write_json if fmt == "json" else write_csv)(store, run_id, out)
        except OSError as exc:
            raise SafeLabError(
                f"cannot write {path} ({exc.strerror})", "choose a writable path"
            ) from None
    return f"run {run_id} written to {path} ({fmt.upper()})"


class ExportModal(ModalScreen[tuple[str, Path] | None]):
    """Asks for a format and a path; Enter exports, Escape cancels."""

    DEFAULT_CSS = """
    ExportModal { align: center middle; }
    ExportModal > Vertical { width: 70; max-width: 100%; height: auto; padding: 1 2;
        border: thick $accent; background: $surface; }
    ExportModal Horizontal { height: auto; margin: 1 0 0 0; }
    ExportModal Select { width: 12; }
    ExportModal Input { width: 1fr; }
    ExportModal .hint { color: $text-muted; }
    """
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

    DEFAULT_CSS = """
    ResultsScreen #runs { height: 6; }
    ResultsScreen #run-info { height: 1; padding: 0 1; }
    ResultsScreen #run-table3 { height: auto; padding: 0 1; }
    ResultsScreen #run-bottom { height: 1fr; }
    ResultsScreen #run-phases { width: 40; padding: 0 1; }
    ResultsScreen #run-histogram { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "export", "Export", id="results.export"),
        Binding("m", "mark", "Mark A", id="results.mark"),
        Binding("c", "compare", "Compare", id="results.compare"),
        Binding("y", "copy", "Copy summary", id="results.copy"),
        Binding("r", "refresh", "Refresh", id="results.refresh"),
    ]

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.records: dict[int, RunRecord] = {}
        self.marked: int | None = None
        self.shown: int | None = None

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
        table = self.query_one("#runs", DataTable)
        previous = self._current_id()
        changed = message.records != tuple(self.records.values())
        self.records = {record.id: record for record in message.records}
        table.clear(columns=True)
        for name, width in RUN_COLUMNS:  # fixed widths: stable however the rows arrive
            table.add_column(name, key=name, width=width)
        for record in message.records:
            token = str(record.token.get("label") or record.token_uri)
            if record.emulated:
                token += " [EMULATED]"
            mark = "A " if record.id == self.marked else ""
            table.add_row(
                f"{mark}{record.id}",
                _when(record.started_at),
                record.mode,
                Text(token, overflow="ellipsis", no_wrap=True),
                f"{record.n_samples}/{record.n_planned}",
                record.status,
                key=str(record.id),
            )
        if not message.records:
            self.say("no runs stored yet: run one in the signing lab (2)")
            return
        if previous in self.records:
            table.move_cursor(row=table.get_row_index(str(previous)))
        if changed:  # coming back from a modal keeps the message it left (export written...)
            self.say(f"{len(message.records)} runs; m marks A, c compares, e exports")
        current = self._current_id()
        if current is not None and current != self.shown:
            self._load(current)

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

    # -- actions ----------------------------------------------------------------------------

    def action_mark(self) -> None:
        run_id = self._current_id()
        if run_id is None:
            self.fail("no run to mark")
            return
        self.marked = run_id
        self.say(f"run {run_id} is A; highlight another run and press c to compare")
        self._list()

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
        self.say(message.text)

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

    DEFAULT_CSS = """
    CompareScreen #comparison { height: auto; padding: 0 1; }
    CompareScreen #histograms { height: 1fr; }
    CompareScreen #histograms LatencyHistogram { width: 1fr; }
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
                bins = [latency_bins(run_stats(store, r)) for r in (comparison.a, comparison.b)]
            self.post_message(Compared(comparison, *bins))

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
