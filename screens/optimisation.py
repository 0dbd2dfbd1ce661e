"""Optimisation: one of the paper's communication patterns running live on the lab's token,
every remedy a key that flips it while it runs, before/after measured side by side.

``s`` starts the chosen pattern (``profiles/patterns``) as a
:class:`~drivers.runs.PatternRun` ``until_stopped`` on the run service, in a thread worker;
``x`` stops it (what ran stays in the store, ``incomplete``). A toggle key calls the spec's
thread-safe :meth:`~drivers.runs.PatternRun.flip`: the rules check it at once (a refused
combination is shown with their reason and nothing changes) and the workload applies it at its
next event, which the samples mark with the flip's number. Before a run the same keys set the
toggles it starts with. The screen draws the run's frozen snapshots
(:class:`~drivers.runs.PatternDetail`): the request-path latency per event with the deadline
and the flips, the run's histogram, the A/B panel (the last two toggle combinations) and the
paper's metrics. It starts no peer, opens no token and writes nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Footer, Input, Label, ProgressBar, Select, Static

from drivers.bench.stats import Histogram
from drivers.errors import PinCancelled, RunInterrupted, SafeLabError
from drivers.patterns.profile import PatternProfile, all_patterns
from drivers.patterns.toggles import TOGGLE_HELP, Toggles, split_assignments
from drivers.protocols.rules import check_toggles, toggle_refusal
from drivers.runs import PatternDetail, PatternRun, RunHandle, RunSnapshot, RunState
from drivers.tokens.base import Pin, Token
from screens.base import LabScreen, StatusLine, failure_text
from screens.lab import Lab
from screens.pin import ask_pin
from screens.registry import ScreenSpec
from screens.run_owner import StopsRunOnUnmount
from screens.widgets.pattern_chart import DeadlineHistogram, LatencySeries, Series
from screens.widgets.pattern_panels import ab_table, metrics_table

TOGGLE_KEYS: tuple[tuple[str, str, tuple[str, str]], ...] = (
    ("k", "keepalive", ("off", "on")),
    ("r", "resume", ("off", "on")),
    ("t", "token-session", ("kept", "fresh")),
    ("a", "preauth", ("off", "on")),
    ("o", "backoff", ("off", "on")),
    ("n", "nodelay", ("off", "on")),
    ("j", "jwt-ttl", ("0", "60")),
    ("b", "jwt-batch", ("off", "on")),
    ("f", "jwt-refresh", ("off", "on")),
    ("h", "hash-on", ("host", "card")),
    ("p", "psk", ("off", "on")),
)
"""``(key, toggle, (its two values))``: a key flips its toggle between the two."""


FAULT_KEYS: tuple[tuple[str, str, str], ...] = (
    ("c", "card-outage", "fault: card outage (every card access fails for 5 s)"),
    ("d", "reset", "fault: reset the connection (TCP RST)"),
    ("e", "peer-restart", "fault: restart the real peer"),
)
"""``(key, fault, help)``: faults injected at the next event of a running pattern."""


def toggle_value(toggles: Toggles, name: str) -> str:
    """A toggle's value as the CLI spells it (``on``, ``kept``, ``60``)."""
    value = toggles.as_dict()[name]
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def flipped(toggles: Toggles, name: str) -> str:
    """The value a key press sets: the other of the toggle's two values."""
    values = next(v for _, n, v in TOGGLE_KEYS if n == name)
    return values[0] if toggle_value(toggles, name) == values[1] else values[1]


def toggles_line(toggles: Toggles, transport: str) -> Text:
    """``k keepalive off  r resume ON …`` for the toggles the pattern's transport takes (on in
    bold capitals), then the keys of those it does not (pressing them says why)."""
    text = Text()
    inapplicable = []
    for key, name, values in TOGGLE_KEYS:
        probe = Toggles(jwt_ttl=60.0) if name == "jwt-refresh" else Toggles()
        if toggle_refusal(transport, probe.set(name, values[1])) is not None:
            inapplicable.append(key)
            continue
        if text:
            text.append("  ")
        value = toggle_value(toggles, name)
        changed = value != values[0]
        text.append(key, style="bold reverse")
        text.append(f" {name} ")
        text.append(value.upper() if changed else value, style="bold" if changed else "dim")
    if inapplicable:
        text.append(f"  (not on {transport}: {' '.join(inapplicable)})", style="dim")
    return text


@dataclass
class PatternSnapshotted(Message):
    """A snapshot of the screen's run, posted from the run's thread."""

    generation: int
    snapshot: RunSnapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot of the same run makes a queued older one useless."""
        return isinstance(message, PatternSnapshotted) and message.generation == self.generation


@dataclass
class PatternEnded(Message):
    generation: int
    status: str
    """``complete``, ``incomplete`` (stopped; kept), ``failed`` or ``cancelled``."""
    text: str
    run_id: int


class OptimisationScreen(StopsRunOnUnmount, LabScreen):
    """Run a communication pattern live, flip remedies while it runs, compare before/after."""

    JOB = "optimisation"
    CSS_PATH = Path(__file__).with_name(
        "optimisation.tcss"
    )  # absolute: subclasses may live anywhere
    HELP = """\
**Optimise**: one of the paper's communication patterns (Table 7) runs on the lab's token
against its real peer, until `x`; each remedy is a key that flips it **while it runs**.

- **pattern**: `periodic`, `event-driven`, `real-time-control`, `remote-management`,
  `bulk-transfer`, `batch` (`profiles/patterns/*.toml`); **set**: parameter overrides such as
  `period_s=0.05` (comma-separated); **events**: blank runs until stopped, a number stops there.
- **Request-path latency**: from the moment the event occurs (its due time) to its
  acknowledgement (PUBACK/PUBCOMP, the last HTTPS response, the CoAP ACK). One bar per event,
  newest at the right; the dashed row is the pattern's deadline, bars above it are late; a
  dotted column topped by a digit marks a flip (the flip's number).
- **Toggles**: a flip takes effect at the next event. A refused combination (psk on MQTT,
  jwt-refresh without a JWT TTL) is shown with the rule's reason and changes nothing. Before a
  run the keys choose the toggles it starts with. psk is set at start only (the CoAP peer is
  started with a key or with certificates).
- **A/B**: the events before (A) and after (B) the last flip: P50, P99 (ms), deadline misses
  (late or failed), signatures per minute, card busy % (the card's time over the wall time),
  samples (events); B−A and B/A (below 1.00× B is lower).
- **Metrics** (the paper's, whole run): signing success rate, mean signing time, session
  reuse (events served without a handshake on the request path), SIM access error rate,
  authentication time-out rate, deadline-miss rate; events, signatures (background), card
  busy % (and the background's card time: what preauth costs), attempts, connections.
- **Faults** (while it runs, at the next event): `c` a card outage (every card access fails
  for 5 s, as when the card stops answering), `d` the connection reset (TCP RST), `e` the
  real peer restarted (its session cache lost too); `!` marks them on the chart. With
  `backoff` off the retries come at once (attempts climb: the storm), with it on they back
  off with jitter.
- Stopping keeps the run in Results (experiment `pattern`, status `incomplete`), every event
  with its flip number.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5,s", "start", "Start", id="opt.start"),
        Binding("f7,x", "stop", "Stop", id="opt.stop"),
        Binding("escape", "leave_form", "Leave form", show=False, id="opt.leave_form"),
        *(
            Binding(key, f"flip('{name}')", f"flip {name}", show=False, id=f"opt.flip.{name}")
            for key, name, _ in TOGGLE_KEYS
        ),
        *(
            Binding(key, f"inject('{fault}')", words, show=False, id=f"opt.fault.{fault}")
            for key, fault, words in FAULT_KEYS
        ),
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    """True while a pattern runs (the App asks before quitting)."""
    toggles: reactive[Toggles] = reactive(Toggles)
    """The toggles in force (or to start with, before a run)."""
    detail: reactive[PatternDetail | None] = reactive(None)
    """The run's last frozen figures (chart, A/B, metrics)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.patterns: dict[str, PatternProfile] = {p.name: p for p in all_patterns()}
        self.handle: RunHandle | None = None
        self.spec: PatternRun | None = None
        self.generation = 0
        self.run_id = 0
        self.done = 0
        self.planned = 0
        self.bins: Histogram | None = None
        self.outage_s = 5.0
        """How long the ``c`` key's card outage lasts (the issue's 5 s)."""

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        with Horizontal(id="opt-form"):
            yield Label("pattern")
            yield Select(
                [(name, name) for name in self.patterns],
                value="periodic" if "periodic" in self.patterns else next(iter(self.patterns)),
                allow_blank=False,
                compact=True,
                id="pattern",
            )
            yield Label("set")
            yield Input(placeholder="period_s=0.5", compact=True, id="settings")
            yield Label("events")
            yield Input(placeholder="∞", type="integer", compact=True, id="events")
            yield Static(id="opt-token")
        yield Static(id="toggles")
        with Horizontal(id="opt-top"):
            yield LatencySeries(id="series")
            yield Static(id="ab")
        with Horizontal(id="opt-bottom"):
            yield DeadlineHistogram(id="histogram")
            yield Static(id="metrics")
        with Horizontal(id="opt-progress"):
            yield ProgressBar(show_eta=False, id="bar")
            yield Static(id="progress")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Optimise"
        self._show_token()
        self.query_one("#bar", ProgressBar).display = False
        self.query_one("#progress", Static).update(Text("no run yet", style="dim"))
        self._draw()
        self.say("s starts the pattern until x · letters flip toggles (? lists them)")

    def on_screen_resume(self) -> None:
        if not self.running:
            self._show_token()

    # -- state ------------------------------------------------------------------------------

    @property
    def pattern(self) -> PatternProfile:
        name = self.query_one("#pattern", Select).value
        return self.patterns[str(name)]

    def watch_toggles(self) -> None:
        if self.is_mounted:
            self.query_one("#toggles", Static).update(
                toggles_line(self.toggles, self.pattern.transport)
            )

    def watch_running(self, running: bool) -> None:
        if self.is_mounted:
            for selector in ("#pattern", "#settings", "#events"):
                self.query_one(selector).disabled = running

    def watch_detail(self) -> None:
        if self.is_mounted:
            self._draw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return not self.running
        if action == "stop":
            return self.running
        return True

    @on(Select.Changed, "#pattern")
    def _pattern_changed(self) -> None:
        """Another pattern: keep the toggles it takes, say which were dropped."""
        transport = self.pattern.transport
        kept = Toggles()
        dropped = []
        for name, value in self.toggles.changed().items():
            try:
                candidate = kept.set(name, _text(value))
                check_toggles(transport, candidate)
                kept = candidate
            except SafeLabError:
                dropped.append(name)
        self.toggles = kept
        self.watch_toggles()
        profile = self.pattern
        self.say(
            f"{profile.title}: {profile.workload} over {transport}, deadline "
            f"{profile.budget_ms:g} ms"
            + (f" (dropped {', '.join(dropped)}: not for {transport})" if dropped else "")
            + " · s starts"
        )

    # -- drawing ----------------------------------------------------------------------------

    def _show_token(self) -> None:
        token = self.lab.token
        line = Text("token ", style="dim", no_wrap=True, overflow="ellipsis")
        line.append("[EMULATED] " if token.emulated else "", style="bold")
        line.append(token.label, style="bold")
        self.query_one("#opt-token", Static).update(line)

    def _draw(self) -> None:
        detail = self.detail
        self.watch_toggles()
        series = self.query_one(LatencySeries)
        histogram = self.query_one(DeadlineHistogram)
        if detail is None:
            series.series = None
            histogram.bins = None
            self.query_one("#ab", Static).update(ab_table(()))
            self.query_one("#metrics", Static).update(metrics_table(None))
            return
        series.series = Series(detail.recent, detail.budget_ms, tuple(i for i, _ in detail.faults))
        histogram.budget_ms = detail.budget_ms
        summary = detail.summary
        histogram.late = (
            round(summary.deadline_miss_rate * summary.operations) if summary is not None else None
        )
        histogram.bins = self.bins
        self.query_one("#ab", Static).update(ab_table(detail.segments))
        self.query_one("#metrics", Static).update(metrics_table(detail.summary))

    def show(self, detail: PatternDetail, bins: Histogram | None, done: int, planned: int) -> None:
        """Draw one snapshot's figures (from the run, or fixed ones in the snapshot tests)."""
        self.bins = bins
        self.done, self.planned = done, planned
        self.detail = detail
        self._progress()

    def _progress(self, state: str = "running") -> None:
        bar = self.query_one("#bar", ProgressBar)
        bar.display = self.planned > 0
        if self.planned:
            bar.update(total=self.planned, progress=self.done)
        text = Text(no_wrap=True, overflow="ellipsis")
        name = self.spec.pattern if self.spec is not None else self.pattern.name
        text.append(f"{name} ", style="bold")
        count = f"{self.done}/{self.planned}" if self.planned else f"{self.done}"
        text.append(f"{count} events  {state}")
        if self.run_id:
            text.append(f"  run {self.run_id}")
        if self.detail is not None and self.detail.flips:
            text.append(f"  flips: {', '.join(f for _, f in self.detail.flips[-3:])}")
        if self.detail is not None and self.detail.faults:
            faults = ", ".join(f"{kind}@{i}" for i, kind in self.detail.faults[-2:])
            text.append(f"  faults: {faults}")
        self.query_one("#progress", Static).update(text)

    # -- controls ---------------------------------------------------------------------------

    def action_leave_form(self) -> None:
        self.set_focus(None)

    def _settings(self) -> tuple[tuple[str, ...], int | None]:
        """The run's ``--set`` text (toggles, then the form's parameters) and its events."""
        text = self.query_one("#settings", Input).value
        params = tuple(f"{n}={v}" for n, v in split_assignments(text))
        events_text = self.query_one("#events", Input).value.strip()
        try:
            events = int(events_text) if events_text else None
        except ValueError:
            raise SafeLabError("events must be a whole number", "or blank: until stopped") from None
        toggles = tuple(f"{n}={_text(v)}" for n, v in self.toggles.changed().items())
        return toggles + params, events

    def action_start(self) -> None:
        if self.running:
            return
        try:
            settings, events = self._settings()
            spec = PatternRun(
                self.pattern.name,
                self.lab.token.uri,
                settings,
                events=events,
                until_stopped=events is None,
            )
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return
        self.generation += 1
        generation = self.generation
        self.spec = spec
        self.handle = RunHandle(
            spec,
            db_path=self.lab.db_path,
            pin_provider=self._ask_pin,
            on_snapshot=lambda s: self._post_snapshot(generation, s),
        )
        self.run_id, self.done, self.planned, self.bins = 0, 0, events or 0, None
        self.detail = None
        self.running = True
        self.set_focus(None)  # the letters are toggles now, not text
        self._progress("starting the peer…")
        self.say(f"{spec.pattern} on {self.lab.token.label}: starting (x stops)")
        self._run(self.handle, generation)

    def action_stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.say("stopping after the current event; the partial run is kept")

    def stop_for_exit(self) -> None:
        """The App is closing: stop the run (what ran is kept)."""
        if self.handle is not None:
            self.handle.stop()

    def action_flip(self, name: str) -> None:
        """Flip a toggle: live through the run's board, or for the next start."""
        value = flipped(self.toggles, name)
        try:
            if self.running and self.spec is not None:
                self.toggles = self.spec.flip(name, value)
                self.say(f"{name}={value}: takes effect at the next event")
            else:
                wanted = self.toggles.set(name, value)
                check_toggles(self.pattern.transport, wanted)
                self.toggles = wanted
                self.say(f"{name}={value} for the next start")
        except SafeLabError as exc:
            self.fail(f"{name}={value} refused: {exc.one_line()}")

    def action_inject(self, fault: str) -> None:
        """Inject a fault at the next event (exercises backoff, reconnection, resumption)."""
        if not self.running or self.spec is None:
            self.fail(f"{fault}: start a run first (s), faults hit a running pattern")
            return
        try:
            self.spec.inject(fault, self.outage_s)
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return
        lasting = f" for {self.outage_s:g} s" if fault == "card-outage" else ""
        self.say(f"{fault}{lasting} at the next event (attempts and errors in the metrics)")

    # -- the worker (a thread: no widgets here, only messages) -------------------------------

    def _ask_pin(self, token: Token) -> Pin | None:
        return ask_pin(self.app, token)

    def _post_snapshot(self, generation: int, snapshot: RunSnapshot) -> None:
        """In the run's thread: the snapshot becomes a message (drawn in the UI thread)."""
        self.post_message(PatternSnapshotted(generation, snapshot))

    @work(thread=True, exclusive=True, group="optimisation-run", exit_on_error=False)
    def _run(self, handle: RunHandle, generation: int) -> None:
        """Run the pattern in this worker thread; post how it ended, never raise."""
        try:
            outcome = handle.run()
            error = outcome.error
            failed = error is not None and not isinstance(error, RunInterrupted | PinCancelled)
            status = "failed" if failed else outcome.state.value
            self.post_message(PatternEnded(generation, status, outcome.text, outcome.run_id))
        except Exception as exc:  # the service kept what was measured; report, never crash
            self.post_message(PatternEnded(generation, "failed", failure_text(exc), 0))

    # -- messages from the run ---------------------------------------------------------------

    @on(PatternSnapshotted)
    def _snapshotted(self, message: PatternSnapshotted) -> None:
        if message.generation != self.generation:
            return
        snapshot = message.snapshot
        if snapshot.run_id:
            self.run_id = snapshot.run_id
        if snapshot.state is RunState.RUNNING and snapshot.meta is not None and not self.done:
            self._progress("running")
        detail = snapshot.detail
        if isinstance(detail, PatternDetail):
            if self.spec is not None:
                self.toggles = self.spec.board.current()[0]
            self.show(detail, snapshot.histogram, snapshot.done, snapshot.planned)

    @on(PatternEnded)
    def _ended(self, message: PatternEnded) -> None:
        if message.generation != self.generation:
            return
        self.handle = None
        self.running = False
        self._show_token()  # the token picker may have chosen another one meanwhile
        if message.run_id:
            self.run_id = message.run_id
        self._progress(message.status)
        if message.status == "failed":
            self.fail(message.text)
        else:
            self.say(message.text)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


SCREEN = ScreenSpec(
    name="optimisation",
    title="Optimise",
    description="Optimise: a communication pattern live, remedies flipped while it runs, A/B",
    order=70,
    factory=OptimisationScreen,
)

__all__ = ["SCREEN", "TOGGLE_HELP", "OptimisationScreen", "flipped", "toggles_line"]
