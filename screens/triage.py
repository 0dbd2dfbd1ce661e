"""Triage: run a card's health checks and show each verdict as it completes.

The checks themselves belong to the driver layer (the IoT SAFE card stack); this screen takes
any :data:`~screens.lab.TriageProvider` and shows what it yields: name, PASS/WARN/FAIL, detail.
Until a provider exists the screen says so plainly instead of showing invented results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Select, Static

from drivers.errors import SafeLabError
from drivers.runs import RunSnapshot, RunState
from drivers.tokens.discovery import TokenEntry
from screens.base import LabScreen, StatusLine
from screens.dialogs import SavePathModal
from screens.lab import Lab
from screens.pin import ask_pin
from screens.registry import ScreenSpec
from screens.widgets.format import speed_words

PLACEHOLDER = (
    "Triage needs an IoT SAFE card (coming).\n\n"
    "The card checks (applet selection, PIN status, keys and certificates, a verified "
    "signature, APDU timing) arrive with the IoT SAFE card stack. Until then there is "
    "nothing to triage here: pick a token with 1 and measure it in the signing lab with 2."
)

VERDICT_STYLE = {"PASS": "bold", "WARN": "bold reverse", "FAIL": "bold reverse"}

VERDICT_ORDER = ("PASS", "SKIP", "WARN", "FAIL")
"""Best to worst, as the card triage ranks them; SKIP does not make the overall worse."""

IN_USE = "in-use"
"""The token choice's value for "the token picked on Tokens"."""


def overall_verdict(verdicts: Sequence[str]) -> str:
    """The worst verdict (SKIP counts as PASS); an unknown verdict counts as FAIL."""
    worst = max(
        (VERDICT_ORDER.index(v) if v in VERDICT_ORDER else len(VERDICT_ORDER) for v in verdicts),
        default=0,
    )
    if worst >= len(VERDICT_ORDER):
        return "FAIL"
    return "PASS" if VERDICT_ORDER[worst] == "SKIP" else VERDICT_ORDER[worst]


class OverallLine(Widget):
    """One line on top of triage: the worst verdict so far, the counts, and whether it runs.

    Reactive: the screen sets ``verdicts`` and ``running``; the line redraws itself.
    """

    DEFAULT_CSS = "OverallLine { height: 1; padding: 0 1; }"

    verdicts: reactive[tuple[str, ...]] = reactive(())
    """Every completed check's verdict, in order."""
    running: reactive[bool] = reactive(False)

    def render(self) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        if not self.verdicts and not self.running:
            line.append("overall: not run yet (r runs the checks)", style="dim")
            return line
        verdict = overall_verdict(self.verdicts)
        counts: dict[str, int] = {}
        for v in self.verdicts:
            counts[v] = counts.get(v, 0) + 1
        line.append("overall ")
        line.append(f" {verdict} ", style=VERDICT_STYLE.get(verdict, "bold"))
        if counts:
            line.append("  " + ", ".join(f"{n} {v}" for v, n in counts.items()))
        if self.running:
            line.append(f"  · checking ({len(self.verdicts)} done so far)", style="dim")
        return line


@dataclass(frozen=True)
class CheckRow:
    """A check result copied out of the provider's object, safe to keep on the UI thread."""

    name: str
    verdict: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail}


@dataclass
class CheckDone(Message):
    row: CheckRow


@dataclass
class TriageDone(Message):
    text: str


@dataclass
class TriageSaved(Message):
    text: str


@dataclass
class CardsFound(Message):
    cards: tuple[TokenEntry, ...]


class TriageScreen(LabScreen):
    """The checks of the chosen card, one row each as they complete; re-run, copy, save."""

    JOB = "triage"
    CSS_PATH = Path(__file__).with_name("triage.tcss")  # absolute: subclasses may live anywhere
    HELP = """\
**Triage**: health checks of an IoT SAFE card, each shown as it completes.

- **card**: which card to check: the token in use (picked on Tokens) or any card found
  (readers' cards, emulated profiles). Tab reaches the choice; Enter opens it.
- **overall**: the worst verdict so far (SKIP counts as PASS), with the count per verdict.
- **▸ running**: the check in progress (they run in order: link, ATR, applet, objects,
  certificates, signature, latency).
- **PASS** the card does what IoT SAFE expects; **WARN** works but is unusual (slow, a
  missing certificate); **FAIL** broken for signing; **SKIP** not applicable.
- the pane under the table shows the highlighted check's whole detail.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run checks", id="triage.run"),
        Binding("y", "copy", "Copy JSON", id="triage.copy"),
        Binding("w", "save", "Save JSON", id="triage.save"),
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    """A triage is going (its key hints change with it)."""
    choice: reactive[str] = reactive(IN_USE)
    """The card to check: :data:`IN_USE` or a card's URI."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.rows: list[CheckRow] = []
        self.checked_uri = ""
        self.cards: tuple[TokenEntry, ...] = ()

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        yield Select(
            [(self._in_use_label(), IN_USE)],
            value=IN_USE,
            allow_blank=False,
            compact=True,
            id="triage-token",
        )
        yield OverallLine(id="overall")
        yield DataTable(id="checks", cursor_type="row")
        yield Static(PLACEHOLDER, id="placeholder", markup=False)
        yield Static(id="check-detail", markup=False)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Triage"
        table = self.query_one("#checks", DataTable)
        table.add_column("check", key="check", width=14)
        table.add_column("verdict", key="verdict", width=9)
        table.add_column("detail", key="detail", width=self._detail_width())
        available = self.lab.triage is not None
        for widget_id in ("#checks", "#overall", "#triage-token"):
            self.query_one(widget_id).display = available
        self.query_one("#check-detail").display = False  # until there is a detail to show
        self.query_one("#placeholder").display = not available
        self._show_overall()
        self.say("r runs the checks" if available else "triage needs an IoT SAFE card (coming)")
        if available:
            self._find_cards()

    def on_screen_resume(self) -> None:
        self._set_options()

    def _detail_width(self) -> int:
        """The detail column fills the rest of the width (cut with …; the pane shows it all)."""
        return max(10, self.app.size.width - 14 - 9 - 3 * 2 - 4)  # edge and scrollbar

    def on_resize(self) -> None:
        table = self.query_one("#checks", DataTable)
        column = table.columns.get("detail")  # type: ignore[call-overload]
        if column is not None:
            column.width = self._detail_width()
            table.refresh()

    # -- the card to check ------------------------------------------------------------------

    def _in_use_label(self) -> str:
        token = self.lab.token
        return f"token in use: {token.label}{speed_words(token.uri, token.label)}"

    @work(thread=True, exclusive=True, exit_on_error=False, group="triage-cards")
    def _find_cards(self) -> None:
        self.guarded(lambda: self.post_message(CardsFound(tuple(self.lab.cards()))))

    @on(CardsFound)
    def _cards_found(self, message: CardsFound) -> None:
        self.cards = tuple(
            card for card in message.cards if not card.note.startswith("no card") and card.kind
        )
        self._set_options()

    def _set_options(self) -> None:
        select = self.query_one("#triage-token", Select)
        options: list[tuple[str, str]] = [(self._in_use_label(), IN_USE)]
        for card in self.cards:
            if card.uri != self.lab.token.uri:
                options.append((card.label, card.uri))
        keep = self.choice if any(value == self.choice for _, value in options) else IN_USE
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = keep
        self.choice = keep

    @on(Select.Changed, "#triage-token")
    def _token_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.choice = event.value

    def target(self) -> tuple[str, str]:
        """``(uri, label)`` of the card the next run checks."""
        if self.choice == IN_USE:
            return self.lab.token.uri, self.lab.token.label
        for card in self.cards:
            if card.uri == self.choice:
                return card.uri, card.label
        return self.lab.token.uri, self.lab.token.label

    # -- state ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run":
            return True if self.lab.triage is not None and not self.running else None
        if action in ("copy", "save"):
            return True if self.rows and not self.running else None
        return True

    def report(self) -> dict[str, object]:
        """The JSON report: token, overall verdict, every check, and a count per verdict."""
        return {
            "token": self.checked_uri,
            "overall": overall_verdict([row.verdict for row in self.rows]),
            "checks": [row.as_dict() for row in self.rows],
            "summary": self._counts(),
        }

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.verdict] = counts.get(row.verdict, 0) + 1
        return counts

    def _show_overall(self) -> None:
        overall = self.query_one(OverallLine)
        overall.verdicts = tuple(row.verdict for row in self.rows)
        overall.running = self.running

    def watch_running(self) -> None:
        if self.is_mounted:
            self._show_overall()

    # -- running ----------------------------------------------------------------------------

    def action_run(self) -> None:
        if self.lab.triage is None or self.running:
            return
        uri, label = self.target()
        self.rows.clear()
        table = self.query_one("#checks", DataTable)
        table.clear()
        self.query_one("#check-detail", Static).display = False
        self.checked_uri = uri
        self.running = True
        self._mark_in_progress()
        self.say(f"checking {label}…")
        self._run(uri)

    def _mark_in_progress(self) -> None:
        """The row of the check in progress: last in the table, replaced by its result."""
        table = self.query_one("#checks", DataTable)
        if "running" in table.rows:
            table.remove_row("running")
        if self.running:
            table.add_row(
                Text("▸ next check", style="bold"),
                Text("running", style="bold"),
                Text("in progress…", style="dim"),
                key="running",
            )

    @work(thread=True, exclusive=True, exit_on_error=False, group="triage")
    def _run(self, uri: str) -> None:
        """Triage through the run service: token opened once, PIN asked once, closed after."""
        from drivers.runs import RunHandle
        from drivers.runs.triage import TriageDetail, TriageRun

        shown = 0

        def on_snapshot(snapshot: RunSnapshot) -> None:
            nonlocal shown
            detail = snapshot.detail
            if isinstance(detail, TriageDetail):
                for check in detail.checks[shown:]:
                    self.post_message(CheckDone(CheckRow(check.name, check.verdict, check.detail)))
                shown = len(detail.checks)

        handle = RunHandle(
            TriageRun(uri, self.lab.triage),
            db_path=self.lab.db_path,
            pin_provider=lambda token: ask_pin(self.app, token),
            on_snapshot=on_snapshot,
        )
        outcome = handle.run()
        if outcome.state is RunState.CANCELLED:
            self.post_message(TriageDone("PIN entry cancelled; no checks run"))
        elif outcome.error is not None:
            self.post_message(TriageDone(f"triage stopped after {shown} checks: {outcome.text}"))
        else:
            self.post_message(TriageDone(f"{shown} checks done"))

    @on(CheckDone)
    def _check_done(self, message: CheckDone) -> None:
        row = message.row
        self.rows.append(row)
        table = self.query_one("#checks", DataTable)
        if "running" in table.rows:
            table.remove_row("running")
        table.add_row(
            row.name,
            Text(row.verdict, style=VERDICT_STYLE.get(row.verdict, "")),
            Text(row.detail, no_wrap=True, overflow="ellipsis"),
            key=str(len(self.rows) - 1),
        )
        self._mark_in_progress()
        self._show_overall()
        if len(self.rows) == 1:
            self._show_detail(0)

    @on(DataTable.RowHighlighted, "#checks")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The whole detail of the highlighted check: the table cuts long ones."""
        self._show_detail(event.cursor_row)

    def _show_detail(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            row = self.rows[index]
            detail = Text()
            detail.append(f"{row.name} ", style="bold")
            detail.append(row.verdict, style=VERDICT_STYLE.get(row.verdict, ""))
            detail.append(f"  {row.detail}")
            pane = self.query_one("#check-detail", Static)
            pane.update(detail)
            pane.display = True

    @on(TriageDone)
    def _triage_done(self, message: TriageDone) -> None:
        self.running = False
        self._mark_in_progress()
        self._show_overall()
        if "stopped" in message.text:
            self.fail(message.text)
        else:
            self.say(message.text + "  (y copies the JSON report, w saves it)")
        self.query_one("#checks", DataTable).focus()

    def action_copy(self) -> None:
        if not self.rows:
            return
        self.app.copy_to_clipboard(json.dumps(self.report(), indent=2))
        self.say("triage report copied as JSON (OSC 52 clipboard)")

    def action_save(self) -> None:
        if not self.rows:
            return
        _, label = self.target()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "token"
        default = self.lab.export_dir / f"safelab-triage-{name}.json"
        report = self.report()

        def chosen(path: Path | None) -> None:
            if path is None:
                self.say("save cancelled")
                return
            self._save(path, report)

        self.app.push_screen(SavePathModal("the triage report (JSON)", default), callback=chosen)

    @work(thread=True, exit_on_error=False, group="triage-save")
    def _save(self, path: Path, report: dict[str, object]) -> None:
        def body() -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise SafeLabError(
                    f"cannot write {path} ({exc.strerror})", "choose a writable path"
                ) from None
            self.post_message(TriageSaved(str(path.resolve())))

        self.guarded(body)

    @on(TriageSaved)
    def _saved(self, message: TriageSaved) -> None:
        # The full path goes in the detail pane (it wraps) as well as the status line, so it
        # is readable however long it is at 80 columns.
        self.say("triage report saved (full path below)")
        pane = self.query_one("#check-detail", Static)
        pane.update(Text.assemble(("saved to ", "bold"), message.text))
        pane.display = True
        self.notify(message.text, title="triage report saved", markup=False)


SCREEN = ScreenSpec(
    name="triage",
    title="Triage",
    description="Card triage: each check with PASS/WARN/FAIL as it completes",
    order=40,
    factory=TriageScreen,
)
