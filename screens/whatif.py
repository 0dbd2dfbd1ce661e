"""What-if: change the link, the algorithm, the card's speed or a remedy and see the predicted
latency distribution redraw; one key runs the same scenario for real beside it.

The screen has no model of its own: each change builds a :class:`~drivers.whatif.Scenario`
and a thread worker (exclusive, so only the latest change's prediction lands) runs
:class:`~drivers.runs.WhatIfRun` on the run service; ``v`` runs the validation (the real peer
through the emulated link with the emulated card) in another worker and shows measured
beside predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Checkbox, Footer, Input, Label, Select

from drivers.errors import SafeLabError
from drivers.runs import RunHandle, RunState, WhatIfResult, WhatIfRun
from drivers.whatif import ALGORITHMS, Prediction, Scenario
from screens.base import LabScreen, StatusLine
from screens.lab import Lab
from screens.pin import ask_pin
from screens.registry import ScreenSpec

PROTOCOLS = ("mqtt", "https", "coap", "vpn", "coap-psk")
TOKENS = (
    ("paper SIM (emulated)", "iotsafe:emulated;profile=paper-sim"),
    ("discrete SE (emulated)", "iotsafe:emulated;profile=discrete-se"),
    ("software P-256", "software:p256"),
)
NO_PATTERN = "none"
MODEL_TRIALS = 1000
VALIDATION_TRIALS = 10


def _patterns() -> list[str]:
    from drivers.patterns.profile import all_patterns

    return [p.name for p in all_patterns() if p.workload != "bulk"]


@dataclass(frozen=True)
class Form:
    """The fields as typed."""

    protocol: str = "mqtt"
    token: str = TOKENS[0][1]
    rtt: str = "0"
    jitter: str = "0"
    loss: str = "0"
    rate: str = ""
    alg: str = "p256"
    speed: str = "1"
    pattern: str = NO_PATTERN
    deadline: str = ""
    resume: bool = False
    keepalive: bool = False
    fresh: bool = False
    preauth: bool = False


def _number(text: str, field: str, unit: str, *, high: float = 1e9) -> float:
    try:
        value = float(text.strip() or "0")
    except ValueError:
        raise SafeLabError(f"{field} {text!r} is not a number", f"type {field} in {unit}") from None
    if not 0 <= value <= high:
        raise SafeLabError(f"{field} {value:g} is out of range", f"give 0 to {high:g} {unit}")
    return value


def scenario_of(form: Form) -> Scenario:
    """The scenario the fields describe; a bad field raises naming it."""
    rtt = _number(form.rtt, "RTT", "ms", high=60000)
    jitter = _number(form.jitter, "jitter", "ms", high=60000)
    loss = _number(form.loss, "loss", "%", high=50)
    parts = [f"rtt={rtt:g}ms"]
    if jitter:
        parts.append(f"jitter={jitter:g}ms")
    if loss:
        parts.append(f"loss={loss:g}%")
    if form.rate.strip():
        parts.append(f"rate={_number(form.rate, 'rate', 'kbit/s'):g}kbit")
    link = ",".join(parts) if (rtt or jitter or loss or form.rate.strip()) else None
    speed = _number(form.speed, "card speed", "(1 = real time)", high=100)
    pattern = None if form.pattern == NO_PATTERN else form.pattern
    deadline = _number(form.deadline, "deadline", "ms") if form.deadline.strip() else None
    toggles: list[tuple[str, str]] = []
    if pattern:
        for name, on_ in (
            ("keepalive", form.keepalive),
            ("resume", form.resume),
            ("preauth", form.preauth),
        ):
            if on_:
                toggles.append((name, "on"))
        if form.fresh:
            toggles.append(("token-session", "fresh"))
    return Scenario(
        protocol=form.protocol,
        token=form.token,
        link=link,
        alg=form.alg,
        resume=form.resume and not pattern and form.protocol in ("mqtt", "https"),
        keepalive=form.keepalive and not pattern and form.protocol == "https",
        session="fresh" if form.fresh else "kept",
        speed=speed if form.token.startswith("iotsafe:") else None,
        pattern=pattern,
        toggles=tuple(toggles),
        deadline_ms=deadline,
        n=MODEL_TRIALS,
    )


@dataclass
class Predicted(Message):
    prediction: Prediction
    serial: int


@dataclass
class Validated(Message):
    result: WhatIfResult | None
    text: str


class Distribution(Widget):
    """The predicted latency distribution as bars, with P50/P90/P99 marked, and the
    measured run's figures beside it once a validation ran."""

    DEFAULT_CSS = "Distribution { height: 1fr; }"

    prediction: reactive[Prediction | None] = reactive(None)
    measured: reactive[WhatIfResult | None] = reactive(None)
    busy: reactive[str] = reactive("")

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        p = self.prediction
        if p is None:
            text.append("predicting…" if self.busy else "no prediction yet", style="dim")
            return text
        width = max(10, self.size.width - 20)
        bins = p.histogram(bins=max(4, min(20, self.size.height - 8)))
        top = max(c for _, _, c in bins) or 1
        text.append(f"P50 {p.p50:.1f}  P90 {p.p90:.1f}  P99 {p.p99:.1f} ms\n", style="bold")
        miss = "–" if p.miss_rate is None else f"{p.miss_rate:.1%}"
        deadline = f" (>{p.deadline_ms:g} ms)" if p.deadline_ms else ""
        text.append(
            f"miss {miss}{deadline}  card {p.card_utilisation:.0%}  RTs {p.round_trips:.1f}\n"
        )
        for low, high, count in bins:
            mark = ""
            for name, value in (("50", p.p50), ("90", p.p90), ("99", p.p99)):
                if low <= value < high or (value == high and high == bins[-1][1]):
                    mark = f" P{name}"
            bar = "█" * max(0, round(count / top * width))
            text.append(f"{low:8.1f} ", style="dim")
            text.append(bar)
            text.append(mark + "\n", style="bold")
        result = self.measured
        if result is not None and result.measured is not None:
            m, r = result.measured, result.ratios()
            text.append(
                f"measured (run {m.run_id}, n={m.n}): P50 {m.p50_ms:.1f}  P99 {m.p99_ms:.1f}\n",
                style="bold",
            )
            text.append(f"predicted/measured: P50 {r['p50']:.2f}  P99 {r['p99']:.2f}\n")
        elif self.busy:
            text.append(self.busy + "\n", style="dim")
        s = p.scenario
        token = "software" if s.token.startswith("software:") else s.token
        for part in s.token.split(";"):
            if part.startswith("profile="):
                token = part.removeprefix("profile=")
        text.append(
            f"{s.pattern or s.protocol} · {token} · {s.link or 'no link'}",
            style="dim",
        )
        return text


class WhatIfScreen(LabScreen):
    """Fields on the left, the predicted distribution (and a validation) on the right."""

    JOB = "whatif"
    CSS_PATH = Path(__file__).with_name("whatif.tcss")  # absolute: subclasses may live anywhere
    HELP = """\
**What-if**: the model's prediction of a handshake (or a pattern's events) redraws as the
fields change; nothing is measured until you press **v**.

- **protocol**, **token** (an emulated card's profile, or the software key), **alg** (the
  signature algorithm), **speed** (the card's speed factor, 1 = real time).
- **link**: RTT, jitter (ms), loss (%), rate (kbit/s, empty = unlimited). TCP loss is
  *modelled* (a retransmission timeout), as the link proxy does.
- **pattern**: a communication pattern instead of one handshake; the toggles are its
  remedies (keep-alive, resume, pre-authentication, **fresh**: the token opened per
  signature). **deadline** (ms) sets the miss rate's limit (default: the pattern's budget).
  Without a pattern, resume (MQTT, HTTPS) and keep-alive (HTTPS) choose the handshake path.
- the distribution: P50/P90/P99, the deadline-miss rate (a pattern's budget), the card's
  utilisation and the round trips; bars from the 0.5th to the 99.5th percentile.
- **v** runs the scenario for real (the real peer through the emulated link, the emulated
  card) and shows measured beside predicted with the ratio; **i** shows where every input
  came from (calibration, card profile, link) in the status line and a notification.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "validate", "Validate", id="whatif.validate"),
        Binding("i", "provenance", "Inputs", id="whatif.provenance"),
    ]

    form: reactive[Form] = reactive(Form, init=False, always_update=True)
    validating: reactive[bool] = reactive(False, bindings=True)
    prediction: reactive[Prediction | None] = reactive(None, bindings=True)
    """The last prediction; ``v`` and ``i`` need one, so the footer follows it."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self._serial = 0

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        with Horizontal(id="whatif-body"):
            with Vertical(id="whatif-form"):
                yield from self._row(
                    "protocol",
                    Select(
                        [(p, p) for p in PROTOCOLS],
                        value="mqtt",
                        allow_blank=False,
                        compact=True,
                        id="protocol",
                    ),
                )
                yield from self._row(
                    "token",
                    Select(
                        list(TOKENS),
                        value=TOKENS[0][1],
                        allow_blank=False,
                        compact=True,
                        id="token",
                    ),
                )
                yield from self._row(
                    "alg",
                    Select(
                        [(a, a) for a in ALGORITHMS],
                        value="p256",
                        allow_blank=False,
                        compact=True,
                        id="alg",
                    ),
                )
                yield from self._row("speed", Input("1", compact=True, id="speed"))
                yield from self._row("RTT ms", Input("0", compact=True, id="rtt"))
                yield from self._row("jitter ms", Input("0", compact=True, id="jitter"))
                yield from self._row("loss %", Input("0", compact=True, id="loss"))
                yield from self._row(
                    "rate kbit", Input("", compact=True, id="rate", placeholder="unlimited")
                )
                yield from self._row(
                    "pattern",
                    Select(
                        [(NO_PATTERN, NO_PATTERN)] + [(p, p) for p in _patterns()],
                        value=NO_PATTERN,
                        allow_blank=False,
                        compact=True,
                        id="pattern",
                    ),
                )
                yield from self._row(
                    "deadline", Input("", compact=True, id="deadline", placeholder="pattern's")
                )
                with Horizontal(classes="toggles"):
                    yield Checkbox("resume", compact=True, id="resume")
                    yield Checkbox("keep-alive", compact=True, id="keepalive")
                with Horizontal(classes="toggles"):
                    yield Checkbox("preauth", compact=True, id="preauth")
                    yield Checkbox("fresh", compact=True, id="fresh")
            yield Distribution(id="distribution")
        yield StatusLine()
        yield Footer()

    @staticmethod
    def _row(label: str, widget: Widget) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label, classes="field-label")
            yield widget

    def on_mount(self) -> None:
        self.sub_title = "What-if"
        self.form = self._read_form()

    # -- fields -> form -> prediction ---------------------------------------------------------

    def _read_form(self) -> Form:
        def value(widget_id: str) -> str:
            widget = self.query_one(f"#{widget_id}")
            return str(getattr(widget, "value", "") or "")

        def checked(widget_id: str) -> bool:
            return self.query_one(f"#{widget_id}", Checkbox).value

        return Form(
            protocol=value("protocol"),
            token=value("token"),
            rtt=value("rtt"),
            jitter=value("jitter"),
            loss=value("loss"),
            rate=value("rate"),
            alg=value("alg"),
            speed=value("speed"),
            pattern=value("pattern"),
            deadline=value("deadline"),
            resume=checked("resume"),
            keepalive=checked("keepalive"),
            fresh=checked("fresh"),
            preauth=checked("preauth"),
        )

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _field_changed(self) -> None:
        if self.is_mounted:
            self.form = self._read_form()

    def watch_form(self, form: Form) -> None:
        try:
            scenario = scenario_of(form)
        except SafeLabError as exc:
            self.fail(exc.one_line())
            return
        self._serial += 1
        self.query_one(Distribution).busy = "predicting…"
        self._predict(scenario, self._serial)

    @work(thread=True, exclusive=True, exit_on_error=False, group="whatif-predict")
    def _predict(self, scenario: Scenario, serial: int) -> None:
        def body() -> None:
            outcome = RunHandle(WhatIfRun(scenario, keep=False), db_path=self.lab.db_path).run()
            outcome.raise_for_error()
            self.post_message(Predicted(outcome.result.prediction, serial))

        self.guarded(body)

    @on(Predicted)
    def _predicted(self, message: Predicted) -> None:
        if message.serial != self._serial:
            return  # an older change's prediction: a newer one is on its way
        self.prediction = message.prediction
        view = self.query_one(Distribution)
        view.busy = ""
        view.measured = None
        view.prediction = message.prediction
        p = message.prediction
        self.say(
            f"predicted P50 {p.p50:.1f} ms, P99 {p.p99:.1f} ms"
            + ("  (v validates it for real)" if not p.scenario.pattern else "")
        )

    # -- validation --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "validate":
            return True if not self.validating and self.prediction is not None else None
        if action == "provenance":
            return True if self.prediction is not None else None
        return True

    def action_validate(self) -> None:
        if self.validating or self.prediction is None:
            return
        scenario = self.prediction.scenario
        self.validating = True
        self.query_one(Distribution).busy = f"measuring {VALIDATION_TRIALS} trials for real…"
        self.query_one(Distribution).refresh()
        self.say("validating: the real peer through the emulated link…")
        self._validate(scenario)

    @work(thread=True, exclusive=True, exit_on_error=False, group="whatif-validate")
    def _validate(self, scenario: Scenario) -> None:
        handle = RunHandle(
            WhatIfRun(scenario, validate=True, n=VALIDATION_TRIALS),
            db_path=self.lab.db_path,
            pin_provider=lambda token: ask_pin(self.app, token),
        )
        outcome = handle.run()
        if outcome.state is RunState.CANCELLED:
            self.post_message(Validated(None, "PIN entry cancelled; nothing measured"))
        elif outcome.error is not None:
            self.post_message(Validated(None, f"validation failed: {outcome.text}"))
        else:
            self.post_message(Validated(outcome.result, outcome.text))

    @on(Validated)
    def _validated(self, message: Validated) -> None:
        self.validating = False
        view = self.query_one(Distribution)
        view.busy = ""
        if message.result is None:
            self.fail(message.text)
            return
        view.measured = message.result
        self.say(message.text)

    def action_provenance(self) -> None:
        if self.prediction is None:
            return
        lines = [f"{k}: {v}" for k, v in self.prediction.provenance.items()]
        lines += [f"note: {n}" for n in self.prediction.notes]
        self.notify("\n".join(lines), title="inputs of the prediction", markup=False, timeout=20)


SCREEN = ScreenSpec(
    name="whatif",
    title="What-if",
    description="What-if lab: predicted latency as the link, card and remedies change",
    order=80,
    factory=WhatIfScreen,
)
