"""Triage: run a card's health checks and show each verdict as it completes.

The checks themselves belong to the driver layer (the IoT SAFE card stack); this screen takes
any :data:`~screens.lab.TriageProvider` and shows what it yields: name, PASS/WARN/FAIL, detail.
Until a provider exists the screen says so plainly instead of showing invented results.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from drivers.errors import SafeLabError
from drivers.tokens.registry import open_token
from screens.base import LabScreen, StatusLine, failure_text
from screens.lab import Lab
from screens.pin import ask_pin
from screens.registry import ScreenSpec

PLACEHOLDER = (
    "Triage needs an IoT SAFE card (coming).\n\n"
    "The card checks (applet selection, PIN status, keys and certificates, a verified "
    "signature, APDU timing) arrive with the IoT SAFE card stack. Until then there is "
    "nothing to triage here: pick a token with 1 and measure it in the signing lab with 2."
)

VERDICT_STYLE = {"PASS": "bold", "WARN": "bold reverse", "FAIL": "bold reverse"}


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


class TriageScreen(LabScreen):
    """The checks of the chosen token, one row each as they complete; re-run, copy, save."""

    JOB = "triage"

    DEFAULT_CSS = """
    TriageScreen #triage-token { height: 1; padding: 0 1; }
    TriageScreen #checks { height: 1fr; }
    TriageScreen #placeholder { height: 1fr; padding: 1 2; }
    TriageScreen #check-detail { height: auto; max-height: 5; padding: 0 1;
        border-top: hkey $primary-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run checks", id="triage.run"),
        Binding("y", "copy", "Copy JSON", id="triage.copy"),
        Binding("w", "save", "Save JSON", id="triage.save"),
    ]

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.rows: list[CheckRow] = []
        self.running = False
        self.checked_uri = ""

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        yield Static(id="triage-token")
        yield DataTable(id="checks", cursor_type="row")
        yield Static(PLACEHOLDER, id="placeholder", markup=False)
        yield Static(id="check-detail", markup=False)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Triage"
        table = self.query_one("#checks", DataTable)
        for name in ("check", "verdict", "detail"):
            table.add_column(name, key=name)
        available = self.lab.triage is not None
        table.display = available
        self.query_one("#check-detail").display = available
        self.query_one("#placeholder").display = not available
        self._show_token()
        self.say("r runs the checks" if available else "triage needs an IoT SAFE card (coming)")

    def on_screen_resume(self) -> None:
        self._show_token()

    def _show_token(self) -> None:
        line = Text("token ", style="dim")
        line.append(self.lab.token.label, style="bold")
        line.append(f"  {self.lab.token.uri}", style="dim")
        self.query_one("#triage-token", Static).update(line)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run":
            return True if self.lab.triage is not None and not self.running else None
        if action in ("copy", "save"):
            return True if self.rows and not self.running else None
        return True

    def verdict_counts(self) -> dict[str, int]:
        """How many checks ended in each verdict (PASS, WARN, FAIL...)."""
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.verdict] = counts.get(row.verdict, 0) + 1
        return counts

    def report(self) -> dict[str, object]:
        """The JSON report: token, every check, and a count per verdict."""
        counts = self.verdict_counts()
        return {
            "token": self.checked_uri,
            "checks": [row.as_dict() for row in self.rows],
            "summary": counts,
        }

    def action_run(self) -> None:
        if self.lab.triage is None or self.running:
            return
        self.rows.clear()
        self.query_one("#checks", DataTable).clear()
        self.query_one("#check-detail", Static).update("")
        self.running = True
        self.checked_uri = self.lab.token.uri
        self.refresh_bindings()
        self.say(f"checking {self.lab.token.label}…")
        uri = self.checked_uri
        self.run_worker(
            lambda: self._run(uri),
            name="triage",
            group=f"token:{uri}",
            thread=True,
            exit_on_error=False,
        )

    def _run(self, uri: str) -> None:
        provider = self.lab.triage
        assert provider is not None
        count = 0
        try:
            with open_token(uri) as token:
                checks = provider
                if token.needs_login:  # a SIM with login=verify: ask once, never retried
                    pin = ask_pin(self.app, token)
                    if pin is None:
                        self.post_message(TriageDone("PIN entry cancelled; no checks run"))
                        return
                    checks = functools.partial(provider, pin=pin)  # type: ignore[call-arg]
                for result in checks(token):
                    count += 1
                    row = CheckRow(
                        str(getattr(result, "name", "?")),
                        str(getattr(result, "verdict", "?")).upper(),
                        str(getattr(result, "detail", "")),
                    )
                    self.post_message(CheckDone(row))
        except Exception as exc:  # a check that crashes is reported, never a traceback
            self.post_message(
                TriageDone(f"triage stopped after {count} checks: {failure_text(exc)}")
            )
            return
        self.post_message(TriageDone(f"{count} checks done"))

    @on(CheckDone)
    def _check_done(self, message: CheckDone) -> None:
        row = message.row
        self.rows.append(row)
        self.query_one("#checks", DataTable).add_row(
            row.name, Text(row.verdict, style=VERDICT_STYLE.get(row.verdict, "")), row.detail
        )

    @on(DataTable.RowHighlighted, "#checks")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The whole detail of the highlighted check: the table cuts long ones."""
        if 0 <= event.cursor_row < len(self.rows):
            row = self.rows[event.cursor_row]
            self.query_one("#check-detail", Static).update(f"{row.name}: {row.detail}")

    @on(TriageDone)
    def _triage_done(self, message: TriageDone) -> None:
        self.running = False
        self.refresh_bindings()
        counts = ", ".join(f"{v} {n}" for v, n in self.verdict_counts().items())
        text = f"{message.text}; {counts}" if counts else message.text
        if "stopped" in message.text:
            self.fail(text)
        else:
            self.say(text + "  (y copies the JSON report, w saves it)")

    def action_copy(self) -> None:
        if not self.rows:
            return
        self.app.copy_to_clipboard(json.dumps(self.report(), indent=2))
        self.say("triage report copied as JSON (OSC 52 clipboard)")

    def action_save(self) -> None:
        if not self.rows:
            return
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.lab.token.label).strip("-") or "token"
        self._save(self.lab.export_dir / f"safelab-triage-{name}.json", self.report())

    @work(thread=True, exit_on_error=False, group="triage-save")
    def _save(self, path: Path, report: dict[str, object]) -> None:
        def body() -> None:
            try:
                path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise SafeLabError(
                    f"cannot write {path} ({exc.strerror})", "start safelab in a writable directory"
                ) from None
            self.post_message(TriageSaved(f"triage report saved to {path}"))

        self.guarded(body)

    @on(TriageSaved)
    def _saved(self, message: TriageSaved) -> None:
        self.say(message.text)


SCREEN = ScreenSpec(
    name="triage",
    title="Triage",
    description="Card triage: each check with PASS/WARN/FAIL as it completes",
    order=40,
    factory=TriageScreen,
)
