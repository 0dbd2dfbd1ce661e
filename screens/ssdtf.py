"""SSDTF packet stepper: the real MQTT packets of an SSDTF run, one row each, explained.

``s`` starts a :class:`~drivers.ssdtf.deployment.FlowRun` in live mode: the tap between the
clients and the broker holds every packet before forwarding it, the row shows ``HELD`` and
``n`` (or Enter) forwards it. ``b`` moves the selection back through what was captured (the
trace keeps every packet, so going back never replays anything), ``e`` stops pausing and runs
to the end, ``p`` pauses again. ``a`` runs one of the driver's attacks on a fresh deployment
and shows its trace with the rejecting packet highlighted; ``w`` writes the trace as JSON and
pcap.

Teaching: the details pane says what the selected packet is for, which SSDTF goal it serves,
who checks it with which key and what a failed check does, for the run's service model (the
texts are data, :mod:`drivers.ssdtf.explain`). ``l`` is the lesson: a guided walk through one
flow (hello, challenge, response, session, data, re-encryption, delivery, acknowledgement,
trace-back), one explained step per ``n``, then the attack menu. ``f`` toggles the noise
filter (on by default): plain MQTT control packets (CONNACK, SUBSCRIBE, SUBACK, PUBACK, …) are
hidden, counted in the info line, and live stepping skips over them. The keys pane puts what
changed at the selected packet first, then every role's keys, then the legend of lanes (the
column header is each role's initial) and role names (B broker, ds distribution server, ms
management server). ``t ms`` does not count the time a packet was held for you.

Runs: the screen builds a spec (:class:`~drivers.runs.SsdtfFlowRun`,
:class:`~drivers.runs.SsdtfAttackRun`), gives the run service the masked PIN modal as its one
PIN step and runs the handle in a thread worker. The run posts frozen snapshots (trace rows
at most every ~100 ms); the screen only draws them and calls the flow's controls
(``detail.controls``), whose methods are thread-safe and return at once. Leaving or
restarting stops the handle, which releases a held flow to run to its end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.events import Resize
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Input, Label

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
from drivers.ssdtf.explain import TRY_ATTACK, LessonStep
from screens.base import LabScreen, StatusLine, failure_text
from screens.lab import Lab
from screens.pin import ask_pin
from screens.registry import ScreenSpec
from screens.run_owner import StopsRunOnUnmount
from screens.ssdtf_dialogs import AttackMenu, TracePathModal, attack_names, export_paths
from screens.widgets.lesson import lesson_plan, lesson_text, visible_rows
from screens.widgets.packets import COLUMNS, PacketRow, cells, lanes_title, verdict_width
from screens.widgets.stepper import InfoLine, KeysPanel, KeysView, LegendPanel, PacketDetails
from screens.widgets.tokenline import TokenLine

if TYPE_CHECKING:
    from drivers.ssdtf.trace import Trace

__all__ = [
    "AttackMenu",
    "SsdtfScreen",
    "TracePathModal",
    "attack_names",
    "export_paths",
    "lesson_plan",
    "parse_form",
    "visible_rows",
]


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
    paths: str = ""
    """Both full paths, one a line (the notification shows them whole at 80 columns)."""


# -- the screen ---------------------------------------------------------------------------


class SsdtfScreen(StopsRunOnUnmount, LabScreen):
    """Lanes of packets, what each means, keys at the selected packet, lessons, attacks."""

    JOB = "ssdtf"
    CSS_PATH = Path(__file__).with_name("ssdtf.tcss")  # absolute: subclasses may live anywhere
    HELP = """\
**SSDTF packet stepper**: the real MQTT packets of an SSDTF run between sensors, broker,
gateway, distribution server (ds), management server (ms) and data users, one row each.

- **#** packet number · **t ms** since the start, *without* the time a packet was held for
  you · **lanes** one cell per role (header: each role's initial; ▲ the role sends to the
  broker, ▼ the broker delivers to it) · **st** `HELD` waits for `n`, `fwd` forwarded,
  `DROP` an attack ate it · **hop** `sensor-1→B` to the broker (B), `B→gateway` from it ·
  **packet** the SSDTF message (or MQTT type) · **verdict** what the receiving role decided.
- **Details** (left): the verdicts first, then what the packet is for, which SSDTF goal it
  serves (device authenticity, data integrity, confidentiality, anonymity with
  traceability), who checks it with which key and what a failed check does, worded for the
  service model of the run; then MQTT flags, decoded fields and the hex dump.
- **Keys** (right): what changed at the selected packet first (`+` gained, `−` dropped), then
  every role's keys after it, then the legend.
- **Noise filter** (`f`, on by default): hides CONNACK, SUBSCRIBE, SUBACK, PUBACK, PINGs; the
  info line counts them; live stepping skips them. Rejected packets always show.
- **Lesson** (`l`): runs a flow to its end if needed, then one explained step per `n`:
  hello, challenge, response, session, data, re-encrypt, deliver, ack, trace-back; `b` goes
  back, Esc leaves; after the last step the attack menu opens.
"""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start", id="ssdtf.start"),
        Binding("n", "step", "Step", id="ssdtf.step"),
        Binding("b", "back", "Back", id="ssdtf.back"),
        Binding("e", "run_to_end", "To end", id="ssdtf.end"),
        Binding("p", "pause", "Pause", show=False, id="ssdtf.pause"),
        Binding("l", "lesson", "Lesson", id="ssdtf.lesson"),
        Binding("a", "attacks", "Attacks", id="ssdtf.attacks"),
        Binding("f", "noise", "Noise", id="ssdtf.noise"),
        Binding("w", "export", "Export", id="ssdtf.export"),
        Binding("f5", "start", "Start", show=False, id="ssdtf.start_f5"),
        Binding("escape", "leave", "Leave", show=False, id="ssdtf.leave"),
    ]

    attack_running: reactive[bool] = reactive(False, bindings=True)
    """An attack runs: start, attacks, lesson and export wait for it."""
    has_trace: reactive[bool] = reactive(False, bindings=True)
    hide_noise: reactive[bool] = reactive(True, bindings=True)
    """The teaching filter: MQTT control packets hidden (``f`` toggles)."""
    lesson_step: reactive[int] = reactive(-1, bindings=True)
    """The lesson step shown (index into :attr:`lesson_steps`), -1 outside a lesson."""

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
        """Every captured packet."""
        self.shown: tuple[PacketRow, ...] = ()
        """The packets in the table (the noise filter applied)."""
        self.lanes: tuple[str, ...] = ()
        self.follow = True
        """The selection stays on the newest packet until the user moves it back."""
        self.done = True
        self.model = 1
        """The service model of the shown trace (the explanations are worded for it)."""
        self.highlight: int | None = None
        """The packet an attack was rejected at (drawn reversed in red)."""
        self.highlight_reason = ""
        self.source = ""
        """What the shown trace is: ``model 1`` or ``attack replay`` (names the export)."""
        self.lesson_pending = False
        """``l`` was pressed before a finished flow existed: the lesson starts when it ends."""
        self.lesson_steps: list[tuple[LessonStep, PacketRow]] = []
        self.auto_stepped = -1
        """The last held packet the filter forwarded by itself (each is stepped once)."""

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
            yield TokenLine(id="token")
        yield InfoLine(id="info")
        yield DataTable(cursor_type="row", zebra_stripes=False, id="packets")
        with Horizontal(id="panes"):
            with VerticalScroll(id="details-pane"):
                yield PacketDetails(id="details")
            with VerticalScroll(id="keys-pane"):
                yield KeysPanel(id="keys")
                yield LegendPanel(id="legend")
        yield StatusLine()
        yield Footer()

    @property
    def table(self) -> DataTable[object]:
        return self.query_one("#packets", DataTable)

    @property
    def details(self) -> PacketDetails:
        return self.query_one(PacketDetails)

    @property
    def info(self) -> InfoLine:
        return self.query_one(InfoLine)

    def on_mount(self) -> None:
        self.sub_title = "SSDTF"
        for key, title, width in COLUMNS:
            self.table.add_column(title, key=key, width=width)
        self.table.focus()
        self._show_token()
        self.info.text = Text("no flow yet · embedded broker, live stepping", style="dim")
        self._show_selected()
        self.say("s starts a live flow · l a lesson · a attacks · Shift+Tab: the form")

    def on_screen_resume(self) -> None:
        """The token picker may have chosen another token."""
        self._show_token()

    def on_resize(self, event: Resize) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """The verdict column takes the table's width left over (80 and 120 columns fit)."""
        table = self.table
        width = table.size.width or self.size.width
        column = table.columns.get("verdict")  # type: ignore[call-overload]
        if column is None or not width:
            return
        column.width = verdict_width(width, len(self.lanes))
        column.auto_width = False
        table.refresh(layout=True)

    def _show_token(self) -> None:
        line = self.query_one(TokenLine)
        line.note, line.token = "sensor-1's key", self.lab.token

    # -- drawing ----------------------------------------------------------------------------

    def _draw(self, rows: tuple[PacketRow, ...], lanes: tuple[str, ...]) -> None:
        """Redraw only the rows that changed (all when lanes or the filter changed)."""
        table = self.table
        shown = visible_rows(rows, self.hide_noise, self.highlight)
        old, relane = self.shown, lanes != self.lanes
        self.rows, self.shown, self.lanes = rows, shown, lanes
        if relane:
            self.query_one(LegendPanel).lanes = lanes
            table.columns["lanes"].label = Text(lanes_title(lanes))  # type: ignore[index]
            self._fit_columns()
        keys = [key for key, _, _ in COLUMNS]
        with self.app.batch_update():
            if len(shown) < len(old) or any(
                a.index != b.index for a, b in zip(old, shown, strict=False)
            ):
                table.clear()
                old = ()
            for i, row in enumerate(shown):
                mark = row.index == self.highlight
                if i < len(old):
                    if relane or old[i] != row:
                        for key, value in zip(keys, cells(row, lanes, mark), strict=True):
                            table.update_cell(str(row.index), key, value)
                else:
                    table.add_row(*cells(row, lanes, mark), key=str(row.index))
            if self.follow and shown:
                table.move_cursor(row=len(shown) - 1, animate=False)
        self._show_selected()

    def selected_row(self) -> PacketRow | None:
        cursor = self.table.cursor_row
        if not self.shown or not 0 <= cursor < len(self.shown):
            return None
        return self.shown[cursor]

    def _select(self, index: int) -> None:
        """Put the cursor on packet ``index`` (shown even when the filter would hide it)."""
        position = next((i for i, r in enumerate(self.shown) if r.index == index), None)
        if position is not None:
            self.table.move_cursor(row=position, animate=False)

    def _show_selected(self) -> None:
        row = self.selected_row()
        details = self.details
        details.model = self.model
        details.highlight_reason = self.highlight_reason
        details.lesson = self._lesson_banner(row)
        details.row = row
        keys = self.query_one(KeysPanel)
        if self.trace is None:
            keys.view = KeysView(lanes=self.lanes)
            return
        # Keys after this packet (up to the next shown one, so what the hidden packets
        # after it changed is counted here), against keys just before it.
        position = self.table.cursor_row
        after = (
            self.shown[position + 1].index
            if row is not None and position + 1 < len(self.shown)
            else None
        )
        before = self.trace.keys_at(row.index) if row is not None else None
        at = row.index if row is not None else None
        keys.view = KeysView(self.trace.keys_at(after), before, at, self.lanes)

    def _lesson_banner(self, row: PacketRow | None) -> Text | None:
        if self.lesson_step < 0 or not self.lesson_steps:
            return None
        step, target = self.lesson_steps[self.lesson_step]
        if row is None or row.index != target.index:
            return Text(
                f"Lesson paused at step {self.lesson_step + 1} ({step.name}): n goes on, "
                "Esc leaves the lesson.\n\n",
                style="bold",
            )
        return lesson_text(self.lesson_step + 1, len(self.lesson_steps), step, target, self.model)

    def keys_shown(self) -> str:
        """The keys panel's text (tests compare it between packets)."""
        return str(self.query_one(KeysPanel).render())

    @on(DataTable.RowHighlighted, "#packets")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.follow = event.cursor_row >= len(self.shown) - 1
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
        text.append_text(self._filter_words())
        self.info.text = text

    def _filter_words(self) -> Text:
        hidden = len(self.rows) - len(self.shown)
        if self.hide_noise:
            return Text(f" · {hidden} MQTT control packets hidden (f shows)", style="dim")
        return Text(" · all packets (f hides MQTT control packets)", style="dim")

    # -- controls ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("start", "attacks", "lesson"):
            return True if not self.attack_running else None
        if action == "export":
            return True if self.has_trace and not self.attack_running else None
        return True

    def action_leave(self) -> None:
        """Escape: out of the lesson, else out of the form."""
        if self.lesson_step >= 0 or self.lesson_pending:
            self._end_lesson("lesson left · l starts it again")
        self.table.focus()

    def action_leave_form(self) -> None:
        self.table.focus()

    @on(Input.Submitted)
    def _form_submitted(self) -> None:
        self.action_leave_form()

    def action_noise(self) -> None:
        """Toggle the filter of MQTT control packets; the selection stays on its packet."""
        selected = self.selected_row()
        self.hide_noise = not self.hide_noise
        follow, self.follow = self.follow, False
        self._draw(self.rows, self.lanes)
        self.follow = follow
        if selected is not None:
            self._select(selected.index)
        if self.trace is not None:
            self._live_info(self.done)
        hidden = len(self.rows) - len(self.shown)
        self.say(
            f"noise filter on: {hidden} MQTT control packets hidden"
            if self.hide_noise
            else "noise filter off: every MQTT packet shown"
        )

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

    def _reset(self, source: str, model: int) -> int:
        """Forget the shown trace and let a previous live flow run out; a new generation."""
        self._release()
        self.generation += 1
        self.handle, self.controls, self.trace, self.source = None, None, None, source
        self.highlight, self.highlight_reason, self.follow = None, "", True
        self.model, self.has_trace, self.auto_stepped = model, False, -1
        self.lesson_step, self.lesson_steps = -1, []
        self.remove_class("-lesson")
        self.table.clear()
        self.rows, self.shown, self.lanes = (), (), ()
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
        lesson = self.lesson_pending
        generation = self._reset(f"model {form.model}", form.model)
        self.lesson_pending = lesson
        self.done = False
        self.action_leave_form()
        self.info.text = Text(f"model {form.model}: building the deployment…")
        self.say(f"starting model {form.model}, {form.sensors} sensor(s), {form.messages} msg")
        self.handle = self._handle(SsdtfFlowRun(cfg), generation)
        self._run(self.handle)

    def action_step(self) -> None:
        """Forward through the capture; at its end, release the held packet (in a lesson:
        the next lesson step)."""
        if self.lesson_step >= 0:
            self._lesson_go(self.lesson_step + 1)
            return
        table = self.table
        if self.shown and table.cursor_row < len(self.shown) - 1:
            table.move_cursor(row=table.cursor_row + 1)
            return
        held = self.rows[-1] if self.rows and self.rows[-1].status == "held" else None
        if self.controls is not None and held is not None:
            self.follow = True
            self.controls.step()
            return
        if self.controls is None and not self.rows:
            self.say("no flow: s starts one, l a lesson, a runs an attack")
        elif self.done:
            self.say("end of the capture")

    def action_back(self) -> None:
        if self.lesson_step >= 0:
            self._lesson_go(max(0, self.lesson_step - 1))
            return
        table = self.table
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

    # -- the lesson -------------------------------------------------------------------------

    def action_lesson(self) -> None:
        """Walk through a finished flow step by step; run one to its end first if needed."""
        if self.attack_running:
            return
        if self.lesson_step >= 0:
            self._lesson_go(0)
            return
        if self.done and self.rows and self.source.startswith("model"):
            self._begin_lesson()
            return
        self.lesson_pending = True
        if self.controls is not None and not self.done:
            self.controls.run_to_end()
        elif self.handle is None or self.done:
            self.action_start()
            if self.handle is None:  # the form was wrong; the status line says why
                self.lesson_pending = False
                return
        self.say("lesson: running the flow to its end first; the walk starts when it is done")

    def _begin_lesson(self) -> None:
        self.lesson_pending = False
        self.lesson_steps = lesson_plan(self.rows)
        if not self.lesson_steps:
            self.fail("this capture has no SSDTF messages to walk through: s starts a flow")
            return
        self.add_class("-lesson")
        self._lesson_go(0)

    def _lesson_go(self, step: int) -> None:
        """Show lesson step ``step``; past the last one, end and open the attack menu."""
        if step >= len(self.lesson_steps):
            self._end_lesson("lesson done: now try an attack (Esc closes the menu)")
            self.action_attacks(intro=TRY_ATTACK)
            return
        self.lesson_step = step
        self.follow = False
        lesson, row = self.lesson_steps[step]
        self._select(row.index)
        self._show_selected()
        self.query_one("#details-pane", VerticalScroll).scroll_home(animate=False)
        self.say(
            f"lesson {step + 1}/{len(self.lesson_steps)}: {lesson.name} · n next · b back · "
            "Esc leaves"
        )

    def _end_lesson(self, words: str) -> None:
        self.lesson_pending = False
        self.lesson_step = -1
        self.remove_class("-lesson")
        self._show_selected()
        self.say(words)

    # -- attacks and export -----------------------------------------------------------------

    def action_attacks(self, intro: str = "") -> None:
        if self.attack_running:
            return

        def chosen(name: str | None) -> None:
            if name:
                self.start_attack(name)

        self.app.push_screen(AttackMenu(intro), callback=chosen)

    def start_attack(self, name: str) -> None:
        """Run one attack on a fresh deployment in a worker; its trace replaces the view."""
        form = self._form()
        if form is None:
            return
        from drivers.ssdtf.config import FlowConfig

        cfg = FlowConfig(
            model=form.model, sensors=form.sensors, messages=form.messages, token=self.lab.token.uri
        )
        generation = self._reset(f"attack {name}", form.model)
        self.attack_running = True
        self.info.text = Text(f"attack {name}: running…")
        self.say(f"running attack {name} on a fresh deployment")
        try:
            spec = SsdtfAttackRun(name, cfg)
        except SafeLabError as exc:
            self.attack_running = False
            self.fail(exc.one_line())
            return
        self.handle = self._handle(spec, generation)
        self._run(self.handle)

    def action_export(self) -> None:
        trace = self.trace
        if trace is None:
            self.say("nothing to export yet")
            return
        name = "ssdtf-" + self.source.replace(" ", "-")
        default = self.lab.export_dir / "ssdtf" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._export(trace, path)

        self.app.push_screen(TracePathModal(default), callback=chosen)

    @property
    def running(self) -> bool:
        """A flow (held or running) or an attack is going: the console asks before quitting."""
        return self.attack_running or (self.handle is not None and not self.done)

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

    @work(thread=True, exclusive=True, group="ssdtf-run", exit_on_error=False)
    def _run(self, handle: RunHandle) -> None:
        """The run's thread: everything it says comes back as :class:`RunSnapshotted`.
        (A previous run was stopped by :meth:`_reset` and ends on its own.)"""
        handle.run()

    @work(thread=True, exclusive=True, group="ssdtf-export", exit_on_error=False)
    def _export(self, trace: Trace, base: Path) -> None:
        json_path, pcap_path = export_paths(base)
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            trace.export_json(json_path)
            trace.export_pcap(pcap_path)
        except Exception as exc:
            self.post_message(Exported(f"export failed: {failure_text(exc)}", False))
            return
        self.post_message(
            Exported(
                f"wrote {json_path.name} + .pcap in {json_path.parent}",
                True,
                f"JSON {json_path}\npcap {pcap_path}",
            )
        )

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
                if self.lesson_pending:
                    detail.controls.run_to_end()
                else:
                    self.say("live: each packet is held before it is sent; n forwards it")
            self.controls, self.trace, self.has_trace = detail.controls, detail.trace, True
            self._draw(detail.rows, detail.lanes)
            self._skip_hidden_held()
        if snapshot.state in (RunState.PENDING, RunState.RUNNING, RunState.PAUSED):
            if detail is not None:
                self._live_info(False)
            return
        self.done = True
        error = "" if snapshot.state is RunState.COMPLETE else snapshot.text
        self._live_info(True, error)
        if error:
            self.lesson_pending = False
            self.fail(error)
        elif self.lesson_pending:
            self._begin_lesson()
        else:
            rejected = sum(1 for r in self.rows if r.rejected)
            full = " · trace full" if self.trace is not None and self.trace.not_recorded else ""
            self.say(
                f"flow finished: {len(self.rows)} packets, {rejected} rejected{full} · w exports"
            )

    def _skip_hidden_held(self) -> None:
        """A held packet the filter hides is forwarded at once (once): ``n`` then always
        moves to a packet you can see."""
        held = self.rows[-1] if self.rows and self.rows[-1].status == "held" else None
        if (
            held is not None
            and self.controls is not None
            and held.index > self.auto_stepped
            and held not in self.shown
        ):
            self.auto_stepped = held.index
            self.controls.step()

    def _attack_ended(self, snapshot: RunSnapshot) -> None:
        name = self.source.removeprefix("attack ")
        self.attack_running = False
        self.done = True
        detail = snapshot.detail
        if not isinstance(detail, AttackDetail) or snapshot.state is not RunState.COMPLETE:
            self.info.text = Text(f"attack {name}: failed", style="bold red")
            self.fail(snapshot.text)
            return
        outcome = detail.outcome
        self.trace, self.has_trace = detail.trace, detail.trace is not None
        target = outcome.packet
        if target is None and not outcome.control:
            target = next((r.index for r in detail.rows if r.rejected), None)
        self.highlight = target if not outcome.control else None
        self.highlight_reason = outcome.reason if not outcome.control else ""
        self.follow = False
        self._draw(detail.rows, detail.lanes)
        if target is not None:
            self._select(target)
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
        self.info.text = text
        self.say(text.plain)

    @on(Exported)
    def _exported(self, message: Exported) -> None:
        if message.ok:
            self.say(message.text)
            self.notify(message.paths, title="trace exported", markup=False, timeout=10)
        else:
            self.fail(message.text)


SCREEN = ScreenSpec(
    name="ssdtf",
    title="SSDTF",
    description="SSDTF packet stepper: every packet explained, lesson, attacks, trace export",
    order=60,
    factory=SsdtfScreen,
)
