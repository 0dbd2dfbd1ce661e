"""Protocols: the paper's section 4 on the chosen token, one protocol × condition cell at a time.

The matrix has a row per protocol (VPN, MQTT, CoAP, HTTPS, JWT, each with the peer that would
answer it) and a column per condition (full handshake, resumed, keep-alive, JWT cache, fresh
token session). Enter runs the selected cell against its real peer on loopback as a
:class:`~drivers.runs.ProtocolRun` of the run service, in a thread worker; the service posts
frozen snapshots about every 150 ms (live histogram, phases, the cell's figures, the peer's
own identity) which the screen turns into messages; a stop keeps the partial run in the
store. ``t`` runs a :class:`~drivers.runs.Table6Run` (software key versus the chosen token)
and shows our means beside the paper's. Which cells apply is
:mod:`drivers.protocols.rules`' call. The screen only builds the spec, gives the PIN modal
as the PIN step and draws: it starts no peer, opens no token and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Label, Static

from drivers.bench.paper import TABLE6
from drivers.bench.stats import Histogram, StatsSnapshot, StreamingStats
from drivers.errors import PinCancelled, RunInterrupted, SafeLabError
from drivers.protocols.base import Condition
from drivers.runs import (
    ProtocolDetail,
    ProtocolRun,
    RunHandle,
    RunOutcome,
    RunSnapshot,
    RunState,
    Table6Result,
    Table6Run,
    table6_steps,
)
from drivers.tokens.base import Pin, Token
from screens.base import LabScreen, StatusLine, failure_text
from screens.lab import Lab, TokenChoice
from screens.pin import ask_pin
from screens.registry import ScreenSpec
from screens.run_owner import StopsRunOnUnmount
from screens.widgets.histogram import LatencyHistogram
from screens.widgets.progress import RunProgress
from screens.widgets.protocol_tables import (
    COLUMN_BY_KEY,
    COLUMNS,
    CellResult,
    ConditionColumn,
    cell_text,
    peer_for_protocol,
    row_label,
)
from screens.widgets.protocol_views import (
    CellInfo,
    ProtocolPhases,
    SelectedCell,
    Table6Shown,
    Table6View,
)
from screens.widgets.tokenline import TokenLine

if TYPE_CHECKING:
    from drivers.peers.select import PeerStatus
    from drivers.runs import Table6Row

__all__ = ["PROTOCOL_ROWS", "ProtocolsScreen", "parse_form", "table6_steps"]

MATRIX_LEGEND = "cell: mean/P50 ms, sig/conn · * partial · – not run yet · · does not apply"
"""What the matrix's cells and marks mean (one line under the matrix)."""

PROTOCOL_ROWS = ("vpn", "mqtt", "coap", "https", "jwt", "coap-psk")
"""The matrix's rows: the driver's ``PROTOCOLS`` (checked by a test), kept here so opening
the console does not import the protocol stack."""

THRESHOLD_MS = 1000.0
"""Only for the statistics object; protocol runs have no paper threshold column."""


# -- requests and messages ------------------------------------------------------------------


@dataclass(frozen=True)
class ProtoForm:
    """The validated form: trials, warm-up, JWT cache TTL and the Table 6 protocols."""

    n: int
    warmup: int
    jwt_ttl_s: float
    table6_protocols: tuple[str, ...]


def parse_form(n: str, warmup: str, ttl: str, protocols: str) -> ProtoForm:
    """Check the form; errors name the field and what to type (shown in the status line)."""
    try:
        trials = int(n)
        warm = int(warmup or "0")
    except ValueError:
        raise SafeLabError("n and warm-up must be whole numbers", "type digits only") from None
    if trials < 1 or warm < 0:
        raise SafeLabError("n must be at least 1 and warm-up at least 0", "e.g. n 30, warm-up 1")
    try:
        jwt_ttl = float(ttl)
    except ValueError:
        raise SafeLabError("the JWT cache TTL must be a number of seconds", "e.g. 60") from None
    if jwt_ttl <= 0:
        raise SafeLabError("the JWT cache TTL must be above 0 s", "e.g. 60 (0 is column full)")
    wanted = tuple(p.strip().lower() for p in protocols.split(",") if p.strip())
    unknown = [p for p in wanted if p not in TABLE6]
    if unknown or not wanted:
        raise SafeLabError(
            f"Table 6 has no protocol {unknown[0]!r}" if unknown else "no Table 6 protocol given",
            "list some of vpn,mqtt,coap,https",
        )
    return ProtoForm(trials, warm, jwt_ttl, wanted)


@dataclass(frozen=True)
class CellRequest:
    """One cell to run, with what the UI knew of its peer (the worker reports the real one)."""

    protocol: str
    column: str
    condition: Condition
    token: TokenChoice
    n: int
    warmup: int
    peer: str
    embedded: bool


@dataclass
class PeersChecked(Message):
    peers: tuple[PeerStatus, ...]


@dataclass
class CellProgressed(Message):
    result: CellResult
    bins: Histogram | None

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot makes a queued older one useless."""
        return isinstance(message, CellProgressed)


@dataclass
class CellEnded(Message):
    request: CellRequest
    result: CellResult | None
    bins: Histogram | None
    status: str
    """``complete``, ``incomplete`` (stopped), ``failed`` or ``cancelled``."""
    text: str


@dataclass
class Table6Step(Message):
    text: str
    step: int
    steps: int


@dataclass
class Table6Ended(Message):
    rows: tuple[Table6Row, ...] | None
    peers: Mapping[str, tuple[str, bool]]
    token_label: str
    emulated: bool
    n: int
    status: str
    text: str


def ended_status(outcome: RunOutcome) -> str:
    """``complete``, ``incomplete`` (stopped; what ran is kept), ``cancelled`` or ``failed``."""
    if outcome.error is not None and not isinstance(outcome.error, RunInterrupted | PinCancelled):
        return "failed"
    return outcome.state.value


# -- the screen -----------------------------------------------------------------------------


class ProtocolsScreen(StopsRunOnUnmount, LabScreen):
    """Protocol × condition matrix; run a cell live; run and view Table 6."""

    JOB = "protocols"

    CSS_PATH = Path(__file__).with_name("protocols.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "run_cell", "Run cell", key_display="s/F5", id="proto.run"),
        Binding("f7", "stop", "Stop", key_display="x/F7", id="proto.stop"),
        Binding("t", "table6", "Table 6", id="proto.table6"),
        Binding("v", "switch_view", "Matrix/Table 6", id="proto.view"),
        Binding("s", "run_cell", "Run cell", show=False, id="proto.run_letter"),
        Binding("x", "stop", "Stop", show=False, id="proto.stop_letter"),
        Binding("escape", "leave_form", "Leave form", show=False, id="proto.leave_form"),
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    """A cell or Table 6 runs: run keys wait, stop applies (the footer follows by itself)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.peers: tuple[PeerStatus, ...] | None = None
        self.results: dict[tuple[str, str, str], CellResult] = {}
        """Last result per ``(token URI, protocol, column)``: the matrix shows one token's."""
        self.bins: dict[tuple[str, str, str], Histogram | None] = {}
        """Each result's histogram, so selecting a finished cell shows its distribution."""
        self.handle: RunHandle | None = None
        self.running_cell: tuple[str, str] | None = None
        self.table6_running = False
        self.last_bins: Histogram | None = None
        self.live_stats: StatsSnapshot | None = None
        self.finished_run_id = 0
        self.table6_rows: tuple[Table6Row, ...] | None = None

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        yield TokenLine(id="token-line")
        with Horizontal(id="form"):
            yield Label("n")
            yield Input("30", type="integer", compact=True, id="n")
            yield Label("warm-up")
            yield Input("1", type="integer", compact=True, id="warmup")
            yield Label("jwt ttl s")
            yield Input("60", type="number", compact=True, id="ttl")
            yield Label("table 6")
            yield Input("vpn,mqtt,coap,https", compact=True, id="t6protocols")
        with ContentSwitcher(initial="matrix-view", id="views"):
            with Vertical(id="matrix-view"):
                yield DataTable(cursor_type="cell", zebra_stripes=False, id="matrix")
                yield Static(MATRIX_LEGEND, id="legend")
                yield CellInfo(id="cell-info")
                with Horizontal(id="live"):
                    yield LatencyHistogram(id="histogram")
                    yield ProtocolPhases(id="phases")
            yield Table6View(id="table6-view")
        yield RunProgress(id="progress")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Protocols"
        table = self.query_one("#matrix", DataTable)
        for column in COLUMNS:
            table.add_column(column.title, key=column.key, width=11)
        self._draw_matrix()
        table.focus()
        self._show_token()
        self._draw_live()
        self.query_one(RunProgress).say("no run yet")
        self.say("Enter runs the selected cell · t runs Table 6 · v shows it · Tab edits n")
        self._check_peers()

    def on_screen_resume(self) -> None:
        """The token picker may have chosen another token: show that token's matrix."""
        if not self.running:
            self._show_token()
            self._draw_matrix()

    # -- drawing ----------------------------------------------------------------------------

    @property
    def token(self) -> TokenChoice:
        return self.lab.token

    def _show_token(self) -> None:
        self.query_one(TokenLine).token = self.token

    def show_peers(self, peers: Sequence[PeerStatus]) -> None:
        """Label each row with its peer and mark protocols that cannot run (tests pin this)."""
        self.peers = tuple(peers)
        self._draw_matrix()
        missing = [s for s in self.peers if not s.available]
        if missing and not self.running:
            self.say("no peer for " + ", ".join(f"{s.protocol} ({s.install})" for s in missing))

    def _draw_matrix(self) -> None:
        """Rebuild the rows (labels change when the peers are known), keeping the cursor."""
        table = self.query_one("#matrix", DataTable)
        cursor = table.cursor_coordinate
        with self.app.batch_update():
            table.clear()
            for protocol in PROTOCOL_ROWS:
                table.add_row(
                    *(self._cell(protocol, column) for column in COLUMNS),
                    key=protocol,
                    label=row_label(protocol, peer_for_protocol(protocol, self.peers)),
                    height=2,
                )
            table.move_cursor(row=cursor.row, column=cursor.column, animate=False)
        self._show_cell_info()

    def _cell(self, protocol: str, column: ConditionColumn) -> Text:
        status = peer_for_protocol(protocol, self.peers)
        result = self.results.get((self.token.uri, protocol, column.key))
        return cell_text(protocol, column, status, result)

    def _draw_one(self, protocol: str, column_key: str) -> None:
        table = self.query_one("#matrix", DataTable)
        table.update_cell(protocol, column_key, self._cell(protocol, COLUMN_BY_KEY[column_key]))
        self._show_cell_info()

    def selected(self) -> tuple[str, ConditionColumn]:
        """The protocol and condition of the matrix's cursor."""
        coordinate = self.query_one("#matrix", DataTable).cursor_coordinate
        return PROTOCOL_ROWS[coordinate.row], COLUMNS[coordinate.column]

    def select(self, protocol: str, column_key: str) -> None:
        """Move the matrix's cursor to a cell (the keyboard does it with the arrows)."""
        table = self.query_one("#matrix", DataTable)
        table.move_cursor(
            row=PROTOCOL_ROWS.index(protocol),
            column=[c.key for c in COLUMNS].index(column_key),
        )
        self._show_cell_info()

    def _show_cell_info(self) -> None:
        protocol, column = self.selected()
        status = peer_for_protocol(protocol, self.peers)
        result = self.results.get((self.token.uri, protocol, column.key))
        self.query_one(CellInfo).cell = SelectedCell(protocol, column, status, result)

    def _draw_live(self) -> None:
        self.query_one(ProtocolPhases).stats = self.live_stats
        self.query_one(LatencyHistogram).bins = self.last_bins

    def show_result(self, result: CellResult, bins: Histogram | None) -> None:
        """Draw one cell's figures and the live view from a snapshot (worker or test)."""
        key = (result.token_uri, result.protocol, result.column)
        self.results[key] = result
        self.bins[key] = bins
        self.live_stats = result.stats
        self.last_bins = bins
        with self.app.batch_update():
            if result.token_uri == self.token.uri:
                self._draw_one(result.protocol, result.column)
            self._draw_live()
            self._show_progress(result)

    def _show_progress(self, result: CellResult) -> None:
        column = COLUMN_BY_KEY[result.column].title
        state = result.status + (f"  run {result.run_id}" if result.run_id else "")
        self.query_one(RunProgress).show(
            f"{result.protocol} {column}", result.done, result.planned, state
        )

    def show_table6(
        self,
        rows: Sequence[Table6Row],
        peers: Mapping[str, tuple[str, bool]],
        token_label: str,
        emulated: bool,
        n: int,
    ) -> None:
        """Fill the Table 6 view (from a finished worker, or fixed rows in tests)."""
        self.table6_rows = tuple(rows)
        self.query_one(Table6View).shown = Table6Shown(
            tuple(rows), dict(peers), token_label, emulated, n
        )

    # -- controls ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run_cell", "table6"):
            return True if not self.running else None
        if action == "stop":
            return True if self.running else None
        return True

    def action_leave_form(self) -> None:
        """Give the keys back to the screen (the matrix when it is shown)."""
        if self.query_one("#views", ContentSwitcher).current == "matrix-view":
            self.query_one("#matrix", DataTable).focus()
        else:
            self.set_focus(None)

    def action_switch_view(self) -> None:
        switcher = self.query_one("#views", ContentSwitcher)
        showing = switcher.current
        switcher.current = "table6-view" if showing == "matrix-view" else "matrix-view"
        self.action_leave_form()

    def show_view(self, view: str) -> None:
        """``matrix-view`` or ``table6-view``."""
        self.query_one("#views", ContentSwitcher).current = view

    def _form(self) -> ProtoForm | None:
        try:
            return parse_form(
                self.query_one("#n", Input).value,
                self.query_one("#warmup", Input).value,
                self.query_one("#ttl", Input).value,
                self.query_one("#t6protocols", Input).value,
            )
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return None

    @on(DataTable.CellSelected, "#matrix")
    def _cell_selected(self) -> None:
        self.action_run_cell()

    @on(DataTable.CellHighlighted, "#matrix")
    def _cell_highlighted(self) -> None:
        """Show the selected cell's provenance and, between runs, its last distribution."""
        self._show_cell_info()
        if self.running:
            return  # the live view belongs to the running cell
        protocol, column = self.selected()
        key = (self.token.uri, protocol, column.key)
        result = self.results.get(key)
        if result is not None:
            self.live_stats, self.last_bins = result.stats, self.bins.get(key)
            self._draw_live()
            self._show_progress(result)

    def action_run_cell(self) -> None:
        """Run the selected cell with the form's n and warm-up on the lab's token."""
        if self.running:
            return
        protocol, column = self.selected()
        why_not = column.why_not(protocol)
        if why_not is not None:
            self.fail(f"{column.title} does not apply: {why_not}")
            return
        status = peer_for_protocol(protocol, self.peers)
        if status is None:
            self.fail("still checking which peers are installed; try again in a moment")
            return
        if not status.available:
            self.fail(f"no {status.protocol} peer on this machine: install it ({status.install})")
            return
        form = self._form()
        if form is None:
            return
        request = CellRequest(
            protocol,
            column.key,
            column.condition(form.jwt_ttl_s),
            self.token,
            form.n,
            form.warmup,
            status.peer,
            status.embedded,
        )
        try:
            spec = ProtocolRun(
                protocol, request.token.uri, request.condition, n=form.n, warmup=form.warmup
            )
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return
        handle = RunHandle(
            spec,
            db_path=self.lab.db_path,
            pin_provider=self._ask_pin,
            on_snapshot=lambda snapshot: self._cell_snapshot(request, snapshot),
        )
        self.query_one("#matrix", DataTable).focus()
        self.show_view("matrix-view")
        self._start(handle, running_cell=(protocol, column.key))
        placeholder = self._result(request, StreamingStats(THRESHOLD_MS, phases=None).snapshot())
        self.show_result(placeholder, None)
        self.say(f"{protocol} {request.condition.name}: starting the peer…")
        self._run_cell(request, handle)

    def action_table6(self) -> None:
        """Run Table 6 for the lab's token against the software key, then show it."""
        if self.running:
            return
        form = self._form()
        if form is None:
            return
        missing = [
            (p, status)
            for p in form.table6_protocols
            if (status := peer_for_protocol(p, self.peers)) is not None and not status.available
        ]
        if missing:
            protocol, status = missing[0]
            self.fail(f"{protocol}: no {status.protocol} peer here: {status.install}")
            return
        try:
            spec = Table6Run(self.token.uri, form.table6_protocols, n=form.n, warmup=form.warmup)
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return
        token = self.token
        handle = RunHandle(spec, db_path=self.lab.db_path, pin_provider=self._ask_pin)
        handle.subscribe(self._table6_snapshot())
        self.show_view("table6-view")
        self.set_focus(None)  # leave the form, so job digits and letter keys work during the run
        self._start(handle, table6=True)
        steps = spec.steps()
        self._table6_progress(Table6Step("starting", 0, steps))
        self.say(f"Table 6 on {token.label}: {steps} runs of n={form.n} (x stops)")
        self._run_table6(token, form, handle)

    def _start(
        self,
        handle: RunHandle,
        *,
        running_cell: tuple[str, str] | None = None,
        table6: bool = False,
    ) -> None:
        self.handle = handle
        self.running_cell = running_cell
        self.table6_running = table6
        self.running = True

    def _finish(self) -> None:
        self.handle = None
        self.running_cell = None
        self.table6_running = False
        self.running = False

    def action_stop(self) -> None:
        if self.handle is None:
            return
        self.handle.stop()
        if self.table6_running:
            self.say("stopping Table 6 after the current run; finished runs stay in the store")
        else:
            self.say("stopping after the current trial; the partial run is kept")

    def stop_for_exit(self) -> None:
        """Stop a running experiment because the app is closing (what ran is kept)."""
        if self.handle is not None:
            self.handle.stop()

    # -- workers (threads: no widgets here, only messages) -----------------------------------

    @work(thread=True, exclusive=True, group="protocols-peers", exit_on_error=False)
    def _check_peers(self) -> None:
        def body() -> None:
            from drivers.peers.select import peer_status

            self.post_message(PeersChecked(tuple(peer_status())))

        self.guarded(body, "peer check")

    def _ask_pin(self, token: Token) -> Pin | None:
        """The run service's PIN step: the masked modal, once, from the run's worker thread."""
        return ask_pin(self.app, token)

    @staticmethod
    def _result(
        request: CellRequest,
        stats: StatsSnapshot,
        snapshot: RunSnapshot | None = None,
        status: str = "running",
    ) -> CellResult:
        """The cell's figures from a run snapshot; provenance from the run's metadata."""
        meta = snapshot.meta if snapshot is not None else None
        token = meta.token if meta is not None else None
        peer = meta.peer if meta is not None else None
        detail = snapshot.detail if snapshot is not None else None
        n_sign = detail.n_sign if isinstance(detail, ProtocolDetail) else ()
        return CellResult(
            protocol=request.protocol,
            column=request.column,
            condition=request.condition.name,
            token_uri=request.token.uri,
            token_label=token.label if token else request.token.label,
            emulated=token.emulated if token else request.token.emulated,
            peer=peer.name if peer else request.peer,
            embedded=peer.embedded if peer else request.embedded,
            stats=stats,
            planned=request.n,
            sig_per_conn=sum(n_sign) / len(n_sign) if n_sign else None,
            resumed=detail.resumed if isinstance(detail, ProtocolDetail) else 0,
            run_id=snapshot.run_id if snapshot is not None else 0,
            status=status,
        )

    def _cell_snapshot(self, request: CellRequest, snapshot: RunSnapshot) -> None:
        """In the run's thread: a running snapshot becomes a :class:`CellProgressed`."""
        if snapshot.state.finished or snapshot.stats is None:
            return
        result = self._result(request, snapshot.stats, snapshot)
        self.post_message(CellProgressed(result, snapshot.histogram))

    @work(thread=True, exclusive=True, group="protocols-run", exit_on_error=False)
    def _run_cell(self, request: CellRequest, handle: RunHandle) -> None:
        """Run the cell in this worker thread and post how it ended; never raise."""
        try:
            outcome = handle.run()
            last = outcome.last
            status = ended_status(outcome)
            final = None
            if last is not None and last.stats is not None and last.stats.count:
                shown = "incomplete" if status == "failed" else outcome.state.value
                final = self._result(request, last.stats, last, shown)
            bins = last.histogram if last is not None else None
            self.post_message(CellEnded(request, final, bins, status, outcome.text))
        except Exception as exc:  # the service kept what was measured; report, never crash
            self.post_message(CellEnded(request, None, None, "failed", failure_text(exc)))

    def _table6_snapshot(self):
        """A listener that posts a :class:`Table6Step` when the next run starts."""
        seen = [0]

        def listen(snapshot: RunSnapshot) -> None:
            if snapshot.step_index > seen[0]:
                seen[0] = snapshot.step_index
                self.post_message(Table6Step(snapshot.step, snapshot.step_index, snapshot.steps))

        return listen

    @work(thread=True, exclusive=True, group="protocols-run", exit_on_error=False)
    def _run_table6(self, choice: TokenChoice, form: ProtoForm, handle: RunHandle) -> None:
        """Table 6 in this worker thread; a stop ends it between runs (finished runs kept)."""
        try:
            outcome = handle.run()
            result = outcome.result if isinstance(outcome.result, Table6Result) else None
            meta = outcome.meta
            token = meta.token if meta is not None else None
            peers = {
                protocol: (identity.name, identity.embedded)
                for protocol, identity in (result.peers.items() if result else ())
            }
            self.post_message(
                Table6Ended(
                    result.rows
                    if result is not None and outcome.state is RunState.COMPLETE
                    else None,
                    peers,
                    token.label if token else choice.label,
                    token.emulated if token else choice.emulated,
                    form.n,
                    ended_status(outcome),
                    outcome.text,
                )
            )
        except Exception as exc:
            self.post_message(
                Table6Ended(
                    None, {}, choice.label, choice.emulated, form.n, "failed", failure_text(exc)
                )
            )

    # -- messages from the workers ----------------------------------------------------------

    @on(PeersChecked)
    def _peers_checked(self, message: PeersChecked) -> None:
        self.show_peers(message.peers)

    @on(CellProgressed)
    def _cell_progressed(self, message: CellProgressed) -> None:
        if self.running_cell is None:
            return
        if self.live_stats is None or self.live_stats.count == 0:
            self.say(f"{message.result.protocol} {message.result.condition} running (x stops)")
        self.show_result(message.result, message.bins)

    @on(CellEnded)
    def _cell_ended(self, message: CellEnded) -> None:
        self._finish()
        request = message.request
        key = (request.token.uri, request.protocol, request.column)
        if message.result is not None:
            self.show_result(message.result, message.bins)
            self.finished_run_id = message.result.run_id
        else:
            current = self.results.get(key)
            if current is not None and current.status == "running":
                del self.results[key]  # nothing measured: back to the cell's previous state
            self._draw_one(request.protocol, request.column)
            self.query_one(RunProgress).say(message.text)
        if message.status == "failed":
            self.fail(message.text)
        else:
            self.say(message.text)

    @on(Table6Step)
    def _table6_progress(self, message: Table6Step) -> None:
        progress = self.query_one(RunProgress)
        progress.show("Table 6", message.step, message.steps, f"runs · {message.text}")

    @on(Table6Ended)
    def _table6_ended(self, message: Table6Ended) -> None:
        self._finish()
        if message.rows is not None:
            self.show_table6(
                message.rows, message.peers, message.token_label, message.emulated, message.n
            )
            self.show_view("table6-view")
        self.query_one(RunProgress).say(message.text)
        if message.status == "failed":
            self.fail(message.text)
        else:
            self.say(message.text)


SCREEN = ScreenSpec(
    name="protocols",
    title="Protocols",
    description="Protocols: MQTT, HTTPS, CoAP, VPN, JWT with the token's key; Table 6",
    order=50,
    factory=ProtocolsScreen,
)
