"""Signing lab: run the paper's signing experiment on the chosen token and watch it live.

The run is a :class:`~drivers.runs.SigningRun` of the run service, run in a thread worker
(one worker group per token, since a SIM does one thing at a time); the service opens the
token, asks the PIN through this screen's modal once, and stores every sample. This screen
only builds the spec and draws the snapshots it is sent. A stop keeps the partial run in the
results store, as the CLI's Ctrl-C does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Footer, Input, Label, Select

from drivers.bench.runner import (
    MODE_DEFAULT_TOKEN,
    MODE_TOKEN_KIND,
    PAPER_DATA,
    Mode,
    RunConfig,
)
from drivers.errors import PinCancelled, RunInterrupted, SafeLabError
from drivers.runs import RunHandle, RunSnapshot, SigningRun
from drivers.tokens.base import Pin, Token
from screens.base import LabScreen, StatusLine, failure_text
from screens.lab import DEFAULT_CHOICE, Lab, TokenChoice
from screens.pin import ask_pin
from screens.registry import ScreenSpec
from screens.run_control import RunUpdate, update_from
from screens.run_owner import StopsRunOnUnmount
from screens.widgets.histogram import LatencyHistogram
from screens.widgets.progress import RunProgress
from screens.widgets.signing_views import ApduView, PhasesView, Table3View
from screens.widgets.tokenline import TokenLine

PROGRESS_INTERVAL_S = 0.15
"""How often the runner's thread posts a snapshot: often enough to feel live, rare enough
that a 100k-trial software run costs the UI a few redraws per second."""


@dataclass
class RunStarted(Message):
    token_label: str
    emulated: bool
    mode: str


@dataclass
class RunProgressed(Message):
    update: RunUpdate

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot makes a queued older one useless."""
        return isinstance(message, RunProgressed)


@dataclass
class RunEnded(Message):
    run_id: int
    status: str
    """``complete``, ``incomplete`` (stopped), ``failed`` or ``cancelled``."""
    text: str
    update: RunUpdate | None = None


@dataclass(frozen=True)
class RunRequest:
    """A validated form: what to run and on which token."""

    token: TokenChoice
    config: RunConfig


def parse_form(
    token: TokenChoice, mode: str, n: str, warmup: str, threshold: str, data: str
) -> RunRequest:
    """Check the form's fields; errors say which field and what to type."""
    try:
        run_mode = Mode(mode)
    except ValueError:
        raise SafeLabError(f"unknown mode {mode!r}", "pick one in the mode list") from None
    try:
        trials = int(n)
        warm = int(warmup or "0")
    except ValueError:
        raise SafeLabError("n and warm-up must be whole numbers", "type digits only") from None
    try:
        threshold_ms = float(threshold)
    except ValueError:
        raise SafeLabError("the threshold must be a number of ms", "e.g. 1000") from None
    if data.startswith("hex:"):
        try:
            payload = bytes.fromhex(data[4:])
        except ValueError:
            raise SafeLabError("data after hex: is not hex", "give pairs of hex digits") from None
    else:
        payload = data.encode() if data else PAPER_DATA
    wanted_kind = MODE_TOKEN_KIND.get(run_mode)
    if wanted_kind and token.kind != wanted_kind:
        uri = MODE_DEFAULT_TOKEN[run_mode]
        token = TokenChoice(uri, uri, wanted_kind)
    config = RunConfig(
        mode=run_mode, n=trials, warmup=warm, data=payload, threshold_ms=threshold_ms
    )
    config.validate()
    return RunRequest(token, config)


class SigningLabScreen(StopsRunOnUnmount, LabScreen):
    """Mode, n, data, threshold; start, pause, stop; live histogram, Table 3 and phases."""

    JOB = "signing"

    CSS_PATH = Path(__file__).with_name("signing.tcss")  # absolute: subclasses may live anywhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start", "Start", key_display="s/F5", id="sign.start"),
        Binding("f6", "pause", "Pause", key_display="p/F6", id="sign.pause"),
        Binding("f7", "stop", "Stop", key_display="x/F7", id="sign.stop"),
        Binding("s", "start", "Start", show=False, id="sign.start_letter"),
        Binding("p", "pause", "Pause/resume", show=False, id="sign.pause_letter"),
        Binding("x", "stop", "Stop", show=False, id="sign.stop_letter"),
        Binding("escape", "leave_form", "Leave form", show=False, id="sign.leave_form"),
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    """A run goes: start waits, pause and stop apply (the footer follows by itself)."""
    run_token: reactive[TokenChoice] = reactive(DEFAULT_CHOICE)
    """The token of the run shown (the lab's choice between runs)."""
    live: reactive[RunUpdate | None] = reactive(None, always_update=True)
    """The latest figures of the run shown; the figures are bound to it and redraw."""
    run_mode: reactive[str] = reactive(Mode.SIGN_ONLY.value)
    threshold_ms: reactive[float] = reactive(1000.0)

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.handle: RunHandle | None = None
        self.last_update: RunUpdate | None = None
        self.set_reactive(SigningLabScreen.run_token, lab.token)
        self.finished_run_id = 0

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        yield TokenLine(id="token-line").data_bind(token=SigningLabScreen.run_token)
        with Horizontal(id="form"):
            yield Select(
                [(m.value, m.value) for m in Mode],
                value=Mode.SIGN_ONLY.value,
                allow_blank=False,
                compact=True,
                id="mode",
            )
            yield Label("n")
            yield Input("100", type="integer", compact=True, id="n")
            yield Label("warm-up")
            yield Input("3", type="integer", compact=True, id="warmup")
            yield Label("over ms")
            yield Input("1000", type="number", compact=True, id="threshold")
            yield Label("data")
            yield Input(PAPER_DATA.decode(), compact=True, id="data")
        yield RunProgress(id="progress")
        yield Table3View(id="table3").data_bind(
            SigningLabScreen.live,
            SigningLabScreen.run_token,
            SigningLabScreen.run_mode,
            SigningLabScreen.threshold_ms,
        )
        with Horizontal(id="live"):
            yield LatencyHistogram(id="histogram")
            with Vertical(id="side"):
                yield PhasesView(id="phases").data_bind(SigningLabScreen.live)
                yield ApduView(id="apdus").data_bind(SigningLabScreen.live)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Signing lab"
        self._draw(None)
        self.say("s (F5) starts a run on the token above (1 picks another token)")

    def on_screen_resume(self) -> None:
        if not self.running:
            self.run_token = self.lab.token

    # -- drawing ----------------------------------------------------------------------------

    def _draw(self, update: RunUpdate | None) -> None:
        """Show ``update`` (``None``: a run that has not measured yet): the bound figures
        redraw themselves."""
        self.live = update
        self.query_one(LatencyHistogram).bins = update.bins if update else None
        self._show_progress(update)

    def _show_progress(self, update: RunUpdate | None) -> None:
        progress = self.query_one(RunProgress)
        if update is None:
            progress.say("no run yet")
            return
        if self.running:
            state = "paused" if update.paused or (self.handle and self.handle.paused) else "running"
        else:
            state = "finished" if update.done >= update.planned else "stopped"
        progress.show(f"run {update.run_id}", update.done, update.planned, state)

    # -- controls ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return True if not self.running else None
        if action in ("pause", "stop"):
            return True if self.running else None
        return True

    def action_leave_form(self) -> None:
        self.set_focus(None)

    def action_start(self) -> None:
        if self.running:
            return
        try:
            request = parse_form(
                self.lab.token,
                str(self.query_one("#mode", Select).value),
                self.query_one("#n", Input).value,
                self.query_one("#warmup", Input).value,
                self.query_one("#threshold", Input).value,
                self.query_one("#data", Input).value,
            )
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return
        self.set_focus(None)  # leave the form, so job digits and letter keys work during the run
        self.handle = RunHandle(
            SigningRun(request.config, request.token.uri, progress_interval_s=PROGRESS_INTERVAL_S),
            db_path=self.lab.db_path,
            pin_provider=self._ask_pin,
            on_snapshot=self._snapshot_listener(request.config.mode.value),
        )
        self.run_mode = request.config.mode.value
        self.run_token = request.token
        self.threshold_ms = request.config.threshold_ms
        self.last_update = None
        self._draw(None)
        self.running = True
        swapped = request.token.uri != self.lab.token.uri
        self.say(
            f"{self.run_mode} measures the {request.token.kind} baseline: this run uses "
            f"{request.token.label}; {self.lab.token.label} stays picked for the other modes"
            if swapped
            else f"starting {self.run_mode} on {request.token.label}: pre-flight…"
        )
        self._run(self.handle)

    def action_pause(self) -> None:
        if self.handle is None:
            return
        if self.handle.paused:
            self.handle.resume()
            self.say("resumed")
        else:
            self.handle.pause()
            self.say("pausing after the current trial… (p resumes)")
        if self.last_update is not None:
            self._show_progress(self.last_update)

    def action_stop(self) -> None:
        if self.handle is None:
            return
        self.handle.stop()
        self.say("stopping after the current trial; the partial run is kept")

    def stop_for_exit(self) -> None:
        """Stop a running experiment because the app is closing (the run is kept)."""
        if self.handle is not None:
            self.handle.stop()

    # -- the worker (runs in a thread: no widgets here) -------------------------------------

    def _ask_pin(self, token: Token) -> Pin | None:
        """The run service's PIN step: the masked modal, once, from the run's worker thread."""
        return ask_pin(self.app, token)

    def _snapshot_listener(self, mode: str):
        """In the run's thread: snapshots become messages (the token's own words once)."""
        started = [False]

        def listen(snapshot: RunSnapshot) -> None:
            token = snapshot.meta.token if snapshot.meta is not None else None
            if token is not None and not started[0]:
                started[0] = True
                self.post_message(RunStarted(token.label, token.emulated, mode))
            update = update_from(snapshot)
            if update is not None and not snapshot.state.finished:
                self.post_message(RunProgressed(update))

        return listen

    @work(thread=True, exclusive=True, group="signing-run", exit_on_error=False)
    def _run(self, handle: RunHandle) -> None:
        """Run in this worker thread and post how it ended; never raise."""
        try:
            outcome = handle.run()
            error = outcome.error
            status = outcome.state.value
            if error is not None and not isinstance(error, PinCancelled | RunInterrupted):
                status = "failed"
            final = update_from(outcome.last) if outcome.last is not None else None
            self.post_message(RunEnded(outcome.run_id, status, outcome.text, final))
        except Exception as exc:  # the service saved the partial run; report, never crash
            self.post_message(RunEnded(handle.snapshot.run_id, "failed", failure_text(exc)))

    # -- messages from the worker -----------------------------------------------------------

    @on(RunStarted)
    def _started(self, message: RunStarted) -> None:
        self.run_token = TokenChoice(
            self.run_token.uri, message.token_label, self.run_token.kind, message.emulated
        )

    @on(RunProgressed)
    def _progressed(self, message: RunProgressed) -> None:
        if self.handle is None:
            return
        if self.last_update is None:
            self.say(f"run {message.update.run_id} running (p pauses, x stops)")
        elif message.update.paused and self.handle.paused and not self.last_update.paused:
            self.say(f"paused after trial {message.update.done} (p resumes, x stops)")
        self.last_update = message.update
        with self.app.batch_update():
            self._draw(message.update)

    @on(RunEnded)
    def _ended(self, message: RunEnded) -> None:
        self.handle = None
        self.running = False
        if message.update is not None:
            self.last_update = message.update
        self._draw(self.last_update)
        self.finished_run_id = message.run_id
        text = message.text
        if self.run_token.uri != self.lab.token.uri:
            text += f" ({self.run_token.label}); next runs use {self.lab.token.label} again"
        if message.status == "failed":
            self.fail(text)
        else:
            self.say(text)


SCREEN = ScreenSpec(
    name="signing",
    title="Sign",
    description="Signing lab: run an experiment and watch its histogram and Table 3 live",
    order=20,
    factory=SigningLabScreen,
)
