"""SSDTF packet stepper: the real MQTT packets of an SSDTF run, one row each, stepped by hand.

``s`` starts a :class:`~drivers.ssdtf.deployment.FlowRun` in live mode: the tap between the
clients and the broker holds every packet before forwarding it, the row shows ``HELD`` and
``n`` (or Enter) forwards it. ``b`` moves the selection back through what was captured (the
trace keeps every packet, so going back never replays anything), ``e`` stops pausing and runs
to the end, ``p`` pauses again. The details pane shows the selected packet's decoded SSDTF
fields, verdicts and hex dump; the keys panel what every role holds at that packet
(``trace.keys_at``). ``a`` runs one of the driver's attacks on a fresh deployment and shows its
trace here with the rejecting packet highlighted; ``w`` writes the trace as JSON and pcap.

Runs: the screen builds a spec (:class:`~drivers.runs.SsdtfFlowRun`,
:class:`~drivers.runs.SsdtfAttackRun`), gives the run service the masked PIN modal as its one
PIN step and runs the handle in a thread worker. The run opens the token once, builds and
stops the deployments, stores the run and posts frozen snapshots (trace rows at most every
~100 ms); the screen only draws them and calls the flow's controls (``detail.controls``),
whose methods are thread-safe and return at once. Leaving or restarting stops the handle,
which releases a held flow to run to its end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from drivers.errors import SafeLabError
from drivers.runs import (
    AttackDetail,
    FlowControls,
    FlowDetail,
    RunHandle,
    RunSnapshot,
    RunState,
    SsdtfAttackRun,
    SsdtfFlowRun,
)
from drivers.runs.ssdtf import expected_text
from screens.base import LabScreen, StatusLine, failure_text
from screens.lab import Lab
from screens.pin import ask_pin
from screens.registry import ScreenSpec
from screens.widgets.format import speed_words
from screens.widgets.packets import COLUMNS, PacketRow, cells, detail_text, keys_text

if TYPE_CHECKING:
    from drivers.ssdtf.trace import Trace


@dataclass(frozen=True)
class FlowForm:
    """The validated form: service model, sensors, messages."""

    model: int
    sensors: int
    messages: int


def parse_form(model: str, sensors: str, messages: str) -> FlowForm:
    """Check the form; errors name the field and what to type (shown in the status line)."""
    try:
        values = int(model), int(sensors), int(messages)
    except ValueError:
        raise SafeLabError("model, sensors and messages must be whole numbers", "") from None
    if values[0] not in (1, 2, 3):
        raise SafeLabError(f"service model {values[0]} does not exist", "use 1, 2 or 3")
    if values[1] < 1 or values[1] > 8 or values[2] < 1 or values[2] > 100:
        raise SafeLabError("sensors must be 1–8 and messages 1–100", "e.g. 1 sensor, 3 messages")
    return FlowForm(*values)


def attack_names() -> list[tuple[str, str, str, bool]]:
    """``(name, title, expected rejection, control)`` of every attack the driver knows."""
    from drivers.ssdtf.attacks import ATTACKS

    return [(a.name, a.title, expected_text(a.expect), a.control) for a in ATTACKS.values()]


# -- messages from the workers ------------------------------------------------------------


@dataclass
class RunSnapshotted(Message):
    """A snapshot of the screen's run (flow or attack), posted from the run's thread."""

    generation: int
    snapshot: RunSnapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot of the same run makes a queued older one useless."""
        return isinstance(message, RunSnapshotted) and message.generation == self.generation


@dataclass
class Exported(Message):
    text: str
    ok: bool


# -- modals -------------------------------------------------------------------------------


class AttackMenu(ModalScreen[str | None]):
    """The driver's attacks and positive controls; Enter runs one, Escape cancels."""

    DEFAULT_CSS = """
    AttackMenu { align: center middle; }
    AttackMenu > Vertical { width: 78; max-width: 100%; height: 90%; padding: 0 1;
        border: thick $accent; background: $surface; }
    AttackMenu OptionList { height: 1fr; }
    AttackMenu .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="attack.cancel")
    ]

    def compose(self) -> ComposeResult:
        options = []
        for name, title, expected, control in attack_names():
            prompt = Text(f"{name:<21}", style="bold", no_wrap=True, overflow="ellipsis")
            prompt.append(title)
            prompt.append(f"\n{'':<21}", style="dim")
            prompt.append(("control: " if control else "rejected by ") + expected, style="dim")
            options.append(Option(prompt, id=name))
        with Vertical():
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

    DEFAULT_CSS = """
    TracePathModal { align: center middle; }
    TracePathModal > Vertical { width: 76; max-width: 100%; height: auto; padding: 1 2;
        border: thick $accent; background: $surface; }
    TracePathModal Input { width: 1fr; margin: 1 0 0 0; }
    TracePathModal .hint { color: $text-muted; }
    """
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


# -- the screen ---------------------------------------------------------------------------


class SsdtfScreen(LabScreen):
    """Lanes of packets, details and keys at the selected packet, live stepping, attacks."""

    JOB = "ssdtf"

    DEFAULT_CSS = """
    SsdtfScreen #form { height: 1; padding: 0 1; }
    SsdtfScreen #form Label { padding: 0 1 0 0; }
    SsdtfScreen #form Input { margin: 0 1 0 0; }
    SsdtfScreen #model { width: 3; }
    SsdtfScreen #sensors { width: 3; }
    SsdtfScreen #messages { width: 5; }
    SsdtfScreen #token { width: 1fr; }
    SsdtfScreen #info { height: 1; padding: 0 1; background: $boost; }
    SsdtfScreen #packets { height: 1fr; }
    SsdtfScreen #panes { height: 1fr; }
    SsdtfScreen #details-pane { width: 1fr; padding: 0 1; border-top: solid $panel; }
    SsdtfScreen #keys-pane { width: 40%; padding: 0 1; border-top: solid $panel;
        border-left: solid $panel; }
    SsdtfScreen #details, SsdtfScreen #keys { width: 1fr; }
    SsdtfScreen #keys { text-wrap: nowrap; text-overflow: ellipsis; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start", id="ssdtf.start"),
        Binding("n", "step", "Step", id="ssdtf.step"),
        Binding("b", "back", "Back", id="ssdtf.back"),
        Binding("e", "run_to_end", "To end", id="ssdtf.end"),
        Binding("p", "pause", "Pause", show=False, id="ssdtf.pause"),
        Binding("a", "attacks", "Attacks", id="ssdtf.attacks"),
        Binding("w", "export", "Export", id="ssdtf.export"),
        Binding("f5", "start", "Start", show=False, id="ssdtf.start_f5"),
        Binding("escape", "leave_form", "Leave form", show=False, id="ssdtf.leave_form"),
    ]

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.generation = 0
        """Counts runs; a worker's messages about an older run are ignored."""
        self.handle: RunHandle | None = None
        """The run shown (or being started); stopped when another starts or the app quits."""
        self.controls: FlowControls | None = None
        """The live flow's stepper, once its deployment exists."""
        self.trace: Trace | None = None
        self.rows: tuple[PacketRow, ...] = ()
        self.lanes: tuple[str, ...] = ()
        self.follow = True
        """The selection stays on the newest packet until the user moves it back."""
        self.done = True
        self.attack_running = False
        self.highlight: int | None = None
        """The packet an attack was rejected at (drawn reversed in red)."""
        self.highlight_reason = ""
        self.source = ""
        """What the shown trace is: ``model 1`` or ``attack replay`` (names the export)."""

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        with Horizontal(id="form"):
            yield Label("model")
            yield Input("1", type="integer", compact=True, id="model")
            yield Label("sensors")
            yield Input("1", type="integer", compact=True, id="sensors")
            yield Label("messages")
            yield Input("3", type="integer", compact=True, id="messages")
            yield Static(id="token")
        yield Static(id="info")
        yield DataTable(cursor_type="row", zebra_stripes=False, id="packets")
        with Horizontal(id="panes"):
            with VerticalScroll(id="details-pane"):
                yield Static(id="details")
            with VerticalScroll(id="keys-pane"):
                yield Static(id="keys")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "SSDTF"
        table = self.query_one("#packets", DataTable)
        for key, title, width in COLUMNS:
            table.add_column(title, key=key, width=width)
        table.focus()
        self._show_token()
        self._info(Text("no flow yet · embedded broker, live stepping", style="dim"))
        self._show_selected()
        self.say("s starts a live flow · n/Enter steps · a attacks · Tab edits the form")

    def on_screen_resume(self) -> None:
        """The token picker may have chosen another token."""
        self._show_token()

    def _show_token(self) -> None:
        token = self.lab.token
        line = Text("token ", style="dim", no_wrap=True, overflow="ellipsis")
        line.append("[EMULATED] " if token.emulated else "", style="bold")
        line.append(token.label, style="bold")
        line.append(speed_words(token.uri, token.label), style="bold")
        line.append(" (sensor-1's key)", style="dim")
        self.query_one("#token", Static).update(line)

    def _info(self, text: Text) -> None:
        text.no_wrap, text.overflow = True, "ellipsis"
        self.query_one("#info", Static).update(text)

    # -- drawing ----------------------------------------------------------------------------

    def _draw(self, rows: tuple[PacketRow, ...], lanes: tuple[str, ...]) -> None:
        """Redraw only the rows that changed (all when the lanes changed), keep the cursor."""
        table = self.query_one("#packets", DataTable)
        old, relane = self.rows, lanes != self.lanes
        self.rows, self.lanes = rows, lanes
        keys = [key for key, _, _ in COLUMNS]
        with self.app.batch_update():
            if len(rows) < len(old):
                table.clear()
                old = ()
            for i, row in enumerate(rows):
                mark = row.index == self.highlight
                if i < len(old):
                    if relane or old[i] != row:
                        for key, value in zip(keys, cells(row, lanes, mark), strict=True):
                            table.update_cell(str(row.index), key, value)
                else:
                    table.add_row(*cells(row, lanes, mark), key=str(row.index))
            if self.follow and rows:
                table.move_cursor(row=len(rows) - 1, animate=False)
        self._show_selected()

    def selected_row(self) -> PacketRow | None:
        table = self.query_one("#packets", DataTable)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def _show_selected(self) -> None:
        row = self.selected_row()
        self.query_one("#details", Static).update(detail_text(row, self.highlight_reason))
        keys = Text(no_wrap=True, overflow="ellipsis")
        if self.trace is not None:
            index = row.index if row is not None else None
            now = self.trace.keys_at(index)
            before = self.trace.keys_at(index - 1) if index else None
            if self.lanes:
                keys.append("lanes ", style="dim")
                keys.append(" ".join(self.lanes) + "\n", style="dim")
            keys.append_text(keys_text(now, before, index))
        else:
            keys = keys_text({})
        self.query_one("#keys", Static).update(keys)

    def keys_shown(self) -> str:
        """The keys panel's text (tests compare it between packets)."""
        return str(self.query_one("#keys", Static).render())

    @on(DataTable.RowHighlighted, "#packets")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.follow = event.cursor_row >= len(self.rows) - 1
        self._show_selected()

    @on(DataTable.RowSelected, "#packets")
    def _row_selected(self) -> None:
        self.action_step()

    def _live_info(self, done: bool, error: str = "") -> None:
        held = self.rows[-1] if self.rows and self.rows[-1].status == "held" else None
        text = Text(f"{self.source}: ", style="bold")
        text.append(f"{len(self.rows)} packets")
        rejected = sum(1 for r in self.rows if r.rejected)
        if rejected:
            text.append(f", {rejected} rejected", style="bold red")
        if error:
            text.append(f" · failed: {error}", style="bold red")
        elif done:
            text.append(" · finished")
        elif held is not None:
            text.append(f" · #{held.index} HELD: n forwards it, e runs to the end")
        else:
            text.append(" · running")
        self._info(text)

    # -- controls ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("start", "attacks"):
            return True if not self.attack_running else None
        if action == "export":
            return True if self.trace is not None and not self.attack_running else None
        return True

    def action_leave_form(self) -> None:
        self.query_one("#packets", DataTable).focus()

    @on(Input.Submitted)
    def _form_submitted(self) -> None:
        self.action_leave_form()

    def _form(self) -> FlowForm | None:
        try:
            return parse_form(
                self.query_one("#model", Input).value,
                self.query_one("#sensors", Input).value,
                self.query_one("#messages", Input).value,
            )
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return None

    def _reset(self, source: str) -> int:
        """Forget the shown trace and let a previous live flow run out; a new generation."""
        self._release()
        self.generation += 1
        self.handle, self.controls, self.trace, self.source = None, None, None, source
        self.highlight, self.highlight_reason, self.follow = None, "", True
        self.query_one("#packets", DataTable).clear()
        self.rows, self.lanes = (), ()
        self._show_selected()
        return self.generation

    def _release(self) -> None:
        """A held flow would wait for an hour: stopping its run lets it run to its end."""
        if self.handle is not None:
            self.handle.stop()

    def action_start(self) -> None:
        """Start a live flow with the form's values on the lab's token (paused at packet 0)."""
        if self.attack_running:
            return
        form = self._form()
        if form is None:
            return
        from drivers.ssdtf.config import FlowConfig

        cfg = FlowConfig(
            model=form.model,
            sensors=form.sensors,
            messages=form.messages,
            token=self.lab.token.uri,
            broker="embedded",
        ).for_stepping()
        generation = self._reset(f"model {form.model}")
        self.done = False
        self.action_leave_form()
        self._info(Text(f"model {form.model}: building the deployment…"))
        self.say(f"starting model {form.model}, {form.sensors} sensor(s), {form.messages} msg")
        self.handle = self._handle(SsdtfFlowRun(cfg), generation)
        self.run_worker(
            self.handle.run,
            name="ssdtf flow",
            group=f"token:{self.lab.token.uri}",
            description=f"SSDTF model {form.model} on {self.lab.token.uri}",
            thread=True,
            exit_on_error=False,
        )

    def action_step(self) -> None:
        """Forward through the capture; at its end, release the held packet."""
        table = self.query_one("#packets", DataTable)
        if self.rows and table.cursor_row < len(self.rows) - 1:
            table.move_cursor(row=table.cursor_row + 1)
            return
        held = self.rows[-1] if self.rows and self.rows[-1].status == "held" else None
        if self.controls is not None and held is not None:
            self.follow = True
            self.controls.step()
            return
        if self.controls is None and not self.rows:
            self.say("no flow: s starts one, a runs an attack")
        elif self.done:
            self.say("end of the capture")

    def action_back(self) -> None:
        table = self.query_one("#packets", DataTable)
        if table.cursor_row > 0:
            self.follow = False
            table.move_cursor(row=table.cursor_row - 1)

    def action_run_to_end(self) -> None:
        if self.controls is None or self.done:
            self.say("no live flow to run")
            return
        self.follow = True
        self.controls.run_to_end()
        self.say("running to the end (p pauses again)")

    def action_pause(self) -> None:
        if self.controls is None or self.done:
            return
        self.controls.pause()
        self.say("live mode: pausing before the next packet")

    def action_attacks(self) -> None:
        if self.attack_running:
            return

        def chosen(name: str | None) -> None:
            if name:
                self.start_attack(name)

        self.app.push_screen(AttackMenu(), callback=chosen)

    def start_attack(self, name: str) -> None:
        """Run one attack on a fresh deployment in a worker; its trace replaces the view."""
        form = self._form()
        if form is None:
            return
        from drivers.ssdtf.config import FlowConfig

        cfg = FlowConfig(
            model=form.model, sensors=form.sensors, messages=form.messages, token=self.lab.token.uri
        )
        generation = self._reset(f"attack {name}")
        self.attack_running = True
        self.refresh_bindings()
        self._info(Text(f"attack {name}: running…"))
        self.say(f"running attack {name} on a fresh deployment")
        try:
            spec = SsdtfAttackRun(name, cfg)
        except SafeLabError as exc:
            self.attack_running = False
            self.refresh_bindings()
            self.fail(exc.one_line())
            return
        self.handle = self._handle(spec, generation)
        self.run_worker(
            self.handle.run,
            name="ssdtf attack",
            group=f"token:{self.lab.token.uri}",
            description=f"SSDTF attack {name}",
            thread=True,
            exit_on_error=False,
        )

    def action_export(self) -> None:
        trace = self.trace
        if trace is None:
            self.say("nothing to export yet")
            return
        from drivers.paths import data_dir

        name = "ssdtf-" + self.source.replace(" ", "-")
        default = data_dir() / "ssdtf" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.run_worker(
                    lambda: self._export(trace, path),
                    name="ssdtf export",
                    thread=True,
                    exit_on_error=False,
                )

        self.app.push_screen(TracePathModal(default), callback=chosen)

    def stop_for_exit(self) -> None:
        """The app is closing: let a held flow finish instead of waiting an hour."""
        self._release()

    # -- workers (threads: no widgets here, only messages) -----------------------------------

    def _handle(self, spec: SsdtfFlowRun | SsdtfAttackRun, generation: int) -> RunHandle:
        """A run of ``spec`` on the lab's store: the modal is its PIN step, snapshots come
        back as messages tagged with ``generation`` (a newer run's make these stale)."""

        def post(snapshot: RunSnapshot) -> None:
            self.post_message(RunSnapshotted(generation, snapshot))

        return RunHandle(
            spec,
            db_path=self.lab.db_path,
            pin_provider=lambda token: ask_pin(self.app, token),
            on_snapshot=post,
        )

    def _export(self, trace: Trace, base: Path) -> None:
        json_path, pcap_path = export_paths(base)
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            trace.export_json(json_path)
            trace.export_pcap(pcap_path)
        except Exception as exc:
            self.post_message(Exported(f"export failed: {failure_text(exc)}", False))
            return
        self.post_message(Exported(f"wrote {json_path} and {pcap_path.name}", True))

    # -- messages from the workers ----------------------------------------------------------

    @on(RunSnapshotted)
    def _snapshotted(self, message: RunSnapshotted) -> None:
        if message.generation != self.generation:
            return
        snapshot = message.snapshot
        if snapshot.kind == SsdtfAttackRun.name:
            if snapshot.state.finished:
                self._attack_ended(snapshot)
            return
        detail = snapshot.detail
        if isinstance(detail, FlowDetail):
            if self.controls is None:
                self.say("live: each packet is held before it is sent; n forwards it")
            self.controls, self.trace = detail.controls, detail.trace
            self._draw(detail.rows, detail.lanes)
        if snapshot.state in (RunState.PENDING, RunState.RUNNING, RunState.PAUSED):
            if detail is not None:
                self._live_info(False)
            return
        self.done = True
        error = "" if snapshot.state is RunState.COMPLETE else snapshot.text
        self._live_info(True, error)
        if error:
            self.fail(error)
        else:
            rejected = sum(1 for r in self.rows if r.rejected)
            self.say(f"flow finished: {len(self.rows)} packets, {rejected} rejected · w exports")

    def _attack_ended(self, snapshot: RunSnapshot) -> None:
        name = self.source.removeprefix("attack ")
        self.attack_running = False
        self.done = True
        self.refresh_bindings()
        detail = snapshot.detail
        if not isinstance(detail, AttackDetail) or snapshot.state is not RunState.COMPLETE:
            self._info(Text(f"attack {name}: failed", style="bold red"))
            self.fail(snapshot.text)
            return
        outcome = detail.outcome
        self.trace = detail.trace
        target = outcome.packet
        if target is None and not outcome.control:
            target = next((r.index for r in detail.rows if r.rejected), None)
        self.highlight = target if not outcome.control else None
        self.highlight_reason = outcome.reason if not outcome.control else ""
        self.follow = False
        self._draw(detail.rows, detail.lanes)
        if target is not None:
            position = next((i for i, r in enumerate(self.rows) if r.index == target), None)
            if position is not None:
                self.query_one("#packets", DataTable).move_cursor(row=position, animate=False)
        self._show_selected()
        text = Text(f"attack {name}: ", style="bold")
        if outcome.control:
            verdict = "control verified" if outcome.rejected else "CONTROL FAILED"
            text.append(verdict, style="bold green" if outcome.rejected else "bold red")
            text.append(f": {outcome.reason}")
        elif outcome.rejected:
            where = f" at #{target}" if target is not None else ""
            text.append(f"REJECTED{where} by {outcome.role}", style="bold red reverse")
            text.append(f": {outcome.reason}")
        else:
            text.append("NOT rejected as expected", style="bold red")
            text.append(f" (expected {expected_text(outcome.expected)})")
        self._info(text)
        self.say(text.plain)

    @on(Exported)
    def _exported(self, message: Exported) -> None:
        if message.ok:
            self.say(message.text)
        else:
            self.fail(message.text)


SCREEN = ScreenSpec(
    name="ssdtf",
    title="SSDTF",
    description="SSDTF packet stepper: real MQTT packets, keys per role, attacks, trace export",
    order=60,
    factory=SsdtfScreen,
)
