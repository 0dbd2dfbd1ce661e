"""Token picker: every token the driver layer finds, its details, and a PIN check.

Discovery loads PKCS#11 modules and opens sessions, so it runs in a thread worker; the list
shows built-in keys first, then each module with its tokens, load errors and empty slots
(greyed, not selectable), so a missing token is explained rather than hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from drivers.tokens.base import KeyInfo
from drivers.tokens.discovery import Discovery, TokenEntry
from drivers.tokens.registry import open_token
from screens.base import LabScreen, StatusLine
from screens.lab import Lab, TokenChoice
from screens.pin import ask_pin
from screens.registry import ScreenSpec


@dataclass
class TokensFound(Message):
    discovery: Discovery


@dataclass
class PinChecked(Message):
    text: str


@dataclass
class DetailsRead(Message):
    """What opening a token told us that discovery does not list (keys, the certificate)."""

    uri: str
    keys: tuple[KeyInfo, ...] | None
    cert_lines: tuple[str, ...]


@dataclass
class SpecChecked(Message):
    """A typed token spec opened: the choice to use (``None``: the error was reported)."""

    choice: TokenChoice


SPEEDS = (1.0, 0.1, 0.01)
"""Time factors offered for emulated cards (``speed=`` in an ``iotsafe:emulated`` URI)."""


def _is_emulated_card(entry: TokenEntry) -> bool:
    return entry.uri.startswith("iotsafe:emulated")


def _line(text: str, style: str) -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _kind_text(entry: TokenEntry) -> str:
    if entry.emulated:
        return "EMULATED card: timing from a profile, not hardware"
    if entry.kind == "pkcs11":
        return "real PKCS#11 token"
    return (
        f"real key ({entry.kind}, in-process)"
        if entry.kind == "software"
        else (f"real key ({entry.kind})")
    )


def pin_text(status: str) -> str:
    """The PIN row in words: ``no PIN`` reads as "not needed", not as a PIN called "no PIN"."""
    if not status or status == "no PIN":
        return "not needed"
    return status


def no_keys_text(entry: TokenEntry) -> str:
    """Why the key list is empty, consistent with the PIN row."""
    if entry.pin_status and entry.pin_status not in ("no PIN", "not applicable"):
        return "none visible without a PIN (l checks the PIN)"
    if entry.kind == "iotsafe" and not entry.note.startswith("no card"):
        return "read from the card…"
    return "none found"


def details_renderable(
    entry: TokenEntry,
    module: str,
    cert_lines: tuple[str, ...],
    keys: tuple[KeyInfo, ...] | None = None,
    speed: float | None = None,
) -> Group:
    """The details pane: identity, emulated or real, PIN status, keys, certificates.

    ``keys`` are the keys read by opening the token (cards list none at discovery);
    ``speed`` is the time factor for an emulated card, shown near the top so the ``f`` hint
    stays visible at 80×24.
    """
    info = Table.grid(padding=(0, 1))
    info.add_column(style="bold", no_wrap=True)
    info.add_column(overflow="fold")
    identity = " ".join(filter(None, (entry.manufacturer, entry.model, entry.serial)))
    rows = [
        ("label", entry.label),
        ("URI", entry.uri),
        ("kind", _kind_text(entry)),
    ]
    if speed is not None:
        rows.append(("speed", f"×{speed:g} of the profile's time (f: ×1, ×0.1, ×0.01)"))
    rows += [
        ("identity", identity or "–"),
        ("module", module or "–"),
        ("slot", entry.slot or "–"),
        ("PIN", pin_text(entry.pin_status)),
    ]
    if entry.note:
        rows.append(("note", entry.note))
    for name, value in rows:
        info.add_row(name, Text(value))
    keys_table = Table(
        title="Keys", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    for name in ("label", "id", "curve", "sign", "cert"):
        keys_table.add_column(name, no_wrap=name != "label")
    shown = entry.keys or keys or ()
    for key in shown:
        keys_table.add_row(
            key.label or "–",
            key.key_id or "–",
            key.curve,
            "yes" if key.can_sign else "no",
            "yes" if key.has_certificate else "–",
        )
    if not shown:
        empty = no_keys_text(entry) if keys is None else "none found"
        keys_table.add_row(Text(empty, style="dim"), "", "", "", "")
    parts: list[object] = [info, Text(""), keys_table]
    if cert_lines:
        parts += [Text(""), Text("Certificate", style="bold"), *map(Text, cert_lines)]
    return Group(*parts)  # type: ignore[arg-type]


class TokenPickerScreen(LabScreen):
    """Pick the token the signing lab and triage use; check its PIN without running anything."""

    JOB = "tokens"
    CSS_PATH = Path(__file__).with_name("tokens.tcss")  # absolute: subclasses may live anywhere
    HELP = """\
**Tokens**: every token discovery finds, grouped: built-in keys, IoT SAFE cards (readers and
emulated profiles), then each PKCS#11 module with its tokens, errors and empty slots (dim,
not selectable: they explain why a token is missing).

- **●** marks the token in use (Sign and Triage use it); **[EMULATED]** is a card emulator
  whose timing comes from a profile, not hardware; **(PIN)** needs a user PIN.
- details: identity, URI, PIN status, keys (label, id, curve, can sign, has certificate)
  and the certificate's subject, issuer and expiry.
- **speed** (emulated cards, `f`): ×1 the profile's real time, ×0.1 or ×0.01 faster.
- **token spec**: type any spec and press Enter to use it, e.g.
  `iotsafe:emulated;profile=paper-sim;speed=0.05` or
  `pkcs11:token=LABEL;object=KEY?module-path=/path/to/module.so`
  (the same as `safelab console --token SPEC` and the CLI's `--token`).
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u", "use", "Use token", id="tokens.use"),
        Binding("l", "check_pin", "Check PIN", id="tokens.check_pin"),
        Binding("f", "speed", "Card speed", id="tokens.speed"),
        Binding("r", "rescan", "Rescan", id="tokens.rescan"),
        Binding("t", "type_spec", "Type spec", id="tokens.type_spec"),
    ]

    speed: reactive[float] = reactive(SPEEDS[0])
    """Time factor for emulated cards (1 = the profile's real time)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.entries: dict[str, tuple[TokenEntry, str]] = {}
        self.certificates: dict[str, tuple[str, ...]] = {}
        self.opened_keys: dict[str, tuple[KeyInfo, ...]] = {}

    def compose(self) -> ComposeResult:
        yield self.job_bar()
        with Horizontal(id="token-panes"):
            with Vertical(id="token-left"):
                yield OptionList(id="token-list")
                yield Input(
                    placeholder="token spec, Enter uses it (t)",
                    compact=True,
                    id="token-spec",
                )
            with VerticalScroll(id="token-details"):
                yield Static("looking for tokens…", id="details")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Tokens"
        self.say("looking for tokens…")
        self._scan()

    def action_rescan(self) -> None:
        self.say("looking for tokens…")
        self._scan()

    @work(thread=True, exclusive=True, exit_on_error=False, group="discovery")
    def _scan(self) -> None:
        self.guarded(lambda: self.post_message(TokensFound(self.lab.discover())))

    @on(TokensFound)
    def _found(self, message: TokensFound) -> None:
        found = message.discovery
        self.entries.clear()
        options: list[Option | None] = [Option(Text("Built-in", style="bold"), disabled=True)]
        for entry in found.builtin:
            self.entries[entry.uri] = (entry, "")
            options.append(self._option(entry))
        if found.cards:
            options.append(None)
            options.append(Option(_line("IoT SAFE cards", "bold"), disabled=True))
            for entry in found.cards:
                self.entries[entry.uri] = (entry, "")
                options.append(self._option(entry))
        for module in found.modules:
            options.append(None)
            name = Path(module.path).name
            options.append(Option(_line(f"PKCS#11 {name}", "bold"), disabled=True))
            if module.error:
                options.append(Option(_line(f"  {module.error}", "dim"), disabled=True))
            elif not module.tokens and not module.empty_slots:
                # A module with no slot at all (OpenSC without a reader): say so, not a blank.
                options.append(
                    Option(_line("  no slots: no reader or no card for it", "dim"), disabled=True)
                )
            for entry in module.tokens:
                self.entries[entry.uri] = (entry, f"{module.path} ({module.description})")
                options.append(self._option(entry))
            for slot in module.empty_slots:
                state = "uninitialised token" if "uninitialised" in slot else "no token"
                slot_id = slot.split(" ", 1)[0]
                options.append(Option(_line(f"  slot {slot_id}: {state}", "dim"), disabled=True))
        option_list = self.query_one("#token-list", OptionList)
        option_list.clear_options()
        option_list.add_options(options)
        current = self.lab.token.uri
        if current in self.entries:
            option_list.highlighted = option_list.get_option_index(current)
        else:
            option_list.action_first()
        if not isinstance(self.focused, Input):
            option_list.focus()
        count = len(self.entries)
        self.say(f"{count} tokens found; Enter or u uses the highlighted one, l checks its PIN")

    def _option(self, entry: TokenEntry) -> Option:
        mark = "●" if self._uri_for(entry) == self.lab.token.uri else " "
        text = Text(f"{mark} ", no_wrap=True, overflow="ellipsis")
        if entry.emulated:
            text.append("[EMULATED] ", style="bold")
        text.append(entry.label.replace("emulated IoT SAFE card, profile", "card"))
        if entry.pin_status and entry.pin_status not in ("no PIN", "see triage"):
            text.append(" (PIN)", style="dim")
        return Option(text, id=entry.uri)

    @on(OptionList.OptionHighlighted, "#token-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        uri = event.option_id
        if uri is None or uri not in self.entries:
            return
        self._show(uri)
        entry, _ = self.entries[uri]
        wants_keys = not entry.keys and _is_emulated_card(entry)
        wants_cert = any(k.has_certificate for k in entry.keys) and uri not in self.certificates
        if (wants_keys and uri not in self.opened_keys) or wants_cert:
            self._read_details(uri, wants_keys)

    def _show(self, uri: str) -> None:
        entry, module = self.entries[uri]
        details = details_renderable(
            entry,
            module,
            self.certificates.get(uri, ()),
            self.opened_keys.get(uri),
            self.speed if _is_emulated_card(entry) else None,
        )
        self.query_one("#details", Static).update(details)

    @work(thread=True, exclusive=True, exit_on_error=False, group="token-details")
    def _read_details(self, uri: str, with_keys: bool) -> None:
        def body() -> None:
            with open_token(uri) as token:
                keys = tuple(token.keys()) if with_keys else None
                certificate = token.certificate()
            lines: tuple[str, ...] = ()
            if certificate is not None:
                lines = (
                    f"subject {certificate.subject.rfc4514_string()}",
                    f"issuer  {certificate.issuer.rfc4514_string()}",
                    f"valid   until {certificate.not_valid_after_utc:%Y-%m-%d}",
                )
            self.post_message(DetailsRead(uri, keys, lines))

        self.guarded(body)

    @on(DetailsRead)
    def _details_read(self, message: DetailsRead) -> None:
        self.certificates[message.uri] = message.cert_lines
        if message.keys is not None:
            self.opened_keys[message.uri] = message.keys
        highlighted = self.query_one("#token-list", OptionList).highlighted_option
        if highlighted is not None and highlighted.id == message.uri:
            self._show(message.uri)

    def _highlighted_entry(self) -> TokenEntry | None:
        option = self.query_one("#token-list", OptionList).highlighted_option
        if option is None or option.id not in self.entries:
            return None
        return self.entries[option.id][0]

    @on(OptionList.OptionSelected, "#token-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_use()

    def action_use(self) -> None:
        entry = self._highlighted_entry()
        if entry is None:
            self.fail("no token highlighted: pick one in the list first")
            return
        uri = self._uri_for(entry)
        self._use(TokenChoice(uri, entry.label, entry.kind, entry.emulated))

    def _use(self, choice: TokenChoice) -> None:
        self.lab.token = choice
        option_list = self.query_one("#token-list", OptionList)
        for known_uri, (known, _) in self.entries.items():
            option_list.replace_option_prompt(known_uri, self._option(known).prompt)
        self.say(f"using {choice.label} ({choice.uri}); 2 opens the signing lab")

    # -- a typed token spec -----------------------------------------------------------------

    def action_type_spec(self) -> None:
        spec = self.query_one("#token-spec", Input)
        if not spec.value:
            spec.value = self.lab.token.uri
        spec.focus()

    @on(Input.Submitted, "#token-spec")
    def _spec_submitted(self, event: Input.Submitted) -> None:
        spec = event.value.strip()
        if not spec:
            self.fail("no token spec typed: e.g. iotsafe:emulated;profile=paper-sim;speed=0.05")
            return
        self.say(f"opening {spec}…")
        self._check_spec(spec)

    @work(thread=True, exclusive=True, exit_on_error=False, group="token-spec")
    def _check_spec(self, spec: str) -> None:
        self.guarded(lambda: self.post_message(SpecChecked(choice_for_spec(spec))))

    @on(SpecChecked)
    def _spec_checked(self, message: SpecChecked) -> None:
        self._use(message.choice)
        self.query_one("#token-list", OptionList).focus()

    def _uri_for(self, entry: TokenEntry) -> str:
        """The URI to use: an emulated card's carries the chosen speed factor."""
        if _is_emulated_card(entry) and self.speed != 1:
            return f"{entry.uri};speed={self.speed:g}"
        return entry.uri

    def action_speed(self) -> None:
        """Cycle the emulated cards' time factor: real time, 10× and 100× faster."""
        self.speed = SPEEDS[(SPEEDS.index(self.speed) + 1) % len(SPEEDS)]
        self.say(f"emulated cards: ×{self.speed:g} of the profile's time (u uses it)")

    def watch_speed(self) -> None:
        entry = self._highlighted_entry() if self.is_mounted else None
        if entry is not None:
            self._show(entry.uri)

    def action_check_pin(self) -> None:
        entry = self._highlighted_entry()
        if entry is None:
            self.fail("no token highlighted: pick one in the list first")
            return
        self._check_pin(self._uri_for(entry), entry.label)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pin-check")
    def _check_pin(self, uri: str, label: str) -> None:
        def body() -> None:
            with open_token(uri) as token:
                if not token.needs_login:
                    self.post_message(PinChecked(f"{label} needs no PIN"))
                    return
                pin = ask_pin(self.app, token)
                if pin is None:
                    self.post_message(PinChecked("PIN entry cancelled; nothing sent to the token"))
                    return
                with token.open() as session:
                    session.login(pin)
                del pin
                self.post_message(
                    PinChecked(f"PIN accepted by {label}; PIN status: {token.pin_status()}")
                )

        self.guarded(body)

    @on(PinChecked)
    def _pin_checked(self, message: PinChecked) -> None:
        self.say(message.text)


def choice_for_spec(spec: str) -> TokenChoice:
    """Open a typed token spec once (blocking) to check it and label it honestly.

    A malformed spec or a missing module raises the driver's one-line SafeLabError; nothing
    is signed and no PIN is asked.
    """
    with open_token(spec) as token:
        info = token.info
    return TokenChoice(spec, info.label, info.kind, info.emulated)


SCREEN = ScreenSpec(
    name="tokens",
    title="Tokens",
    description="Pick a token: software keys, PKCS#11 tokens, cards; check its PIN",
    order=10,
    factory=TokenPickerScreen,
)
