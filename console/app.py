"""The SAFE Lab console: one Textual App whose jobs are modes, found in ``screens/``.

Each job (token picker, signing lab, results, triage, and later protocols, the SSDTF stepper,
optimisation) is a :class:`~screens.registry.ScreenSpec` in its own module; the App gives every
one a mode, a digit key shown in the job bar at the top, and command-palette entries (Ctrl+P),
so adding a job touches no existing file. Everything is reachable from the keyboard with keys
terminals and tmux pass through (digits, letters, F5–F7, Ctrl+P), and the palette offers every
screen action.

Colour: Textual honours ``NO_COLOR`` (monochrome) and ``TEXTUAL_COLOR_SYSTEM``; ``--ansi`` keeps
the terminal's own 16-colour palette. Meaning never rests on colour alone ("[EMULATED]",
"PASS"/"FAIL" are words).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from screens.lab import Lab, TriageProvider
from screens.registry import ScreenSpec, discover_specs

TRIAGE_MODULE = "drivers.cards.triage"
"""Where the card stack is expected to provide ``run_triage(token) -> Iterable[CheckResult]``."""


def find_triage() -> TriageProvider | None:
    """The card triage checks, if the driver layer has them yet (duck-typed, no hard import)."""
    try:
        module = importlib.import_module(TRIAGE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and TRIAGE_MODULE.startswith(exc.name):
            return None
        raise
    provider = getattr(module, "run_triage", None)
    return provider if callable(provider) else None


class SafeLabApp(App[None]):
    """The console. ``lab`` and ``specs`` are parameters so tests and benchmarks pin them."""

    TITLE = "SAFE Lab"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses may live anywhere
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", show=False, id="app.quit_letter"),
        Binding("ctrl+z", "suspend_process", "Suspend", show=False, id="app.suspend"),
        Binding("f1,question_mark", "help", "Help", show=False, id="app.help"),
    ]

    def __init__(
        self,
        lab: Lab | None = None,
        specs: Sequence[ScreenSpec] | None = None,
        *,
        start: str | None = None,
        ansi_color: bool = False,
    ) -> None:
        super().__init__(ansi_color=ansi_color)
        self.lab = lab if lab is not None else Lab(triage=find_triage())
        self.specs = list(specs) if specs is not None else discover_specs()
        if not self.specs:
            raise ValueError("the console needs at least one screen")
        self.start = start or self.specs[0].name
        self.lab.jobs = tuple((spec.name, spec.title) for spec in self.specs)
        for number, spec in enumerate(self.specs, start=1):
            self.add_mode(spec.name, partial(spec.factory, self.lab))
            if number <= 9:
                # The job bar at the top shows these keys; the footer keeps room for the screen's.
                self.bind(str(number), f"open('{spec.name}')", description=spec.title, show=False)
        if ansi_color:
            self.theme = "ansi-dark"

    def on_mount(self) -> None:
        self.switch_mode(self.start)

    def action_open(self, name: str) -> None:
        """Switch to a job's mode (its screen keeps its state while another job is shown)."""
        self.switch_mode(name)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: the built-in commands, every job, and the current screen's actions."""
        yield from super().get_system_commands(screen)
        for spec in self.specs:
            yield SystemCommand(
                f"Open {spec.title}", spec.description, partial(self.action_open, spec.name)
            )
        seen: set[str] = set()
        for binding in getattr(type(screen), "BINDINGS", []):
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action in seen or screen.check_action(binding.action, ()) is not True:
                continue
            seen.add(binding.action)
            title = f"{screen.sub_title or screen.title}: {binding.description}"
            key = binding.key.split(",")[0]
            yield SystemCommand(title, f"key {key}", partial(screen.run_action, binding.action))

    def action_help(self) -> None:
        """``?``/F1: the current job's help (its figures and keys); a text field keeps ``?``."""
        from screens.dialogs import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def job_screens(self) -> list[Screen]:
        """Every screen of every job that has been opened (each mode keeps its own stack)."""
        screens: list[Screen] = []
        for spec in self.specs:
            try:
                screens.extend(self.get_screen_stack(spec.name))
            except KeyError:
                continue
        return screens

    def running_jobs(self) -> list[str]:
        """Titles of the jobs running an experiment that quitting would stop.

        A screen takes part by having ``running`` (true while a run goes) and
        ``stop_for_exit()`` (stops it, keeping what ran).
        """
        return [
            str(screen.sub_title or type(screen).__name__)
            for screen in self.job_screens()
            if getattr(screen, "running", False) is True and hasattr(screen, "stop_for_exit")
        ]

    async def action_quit(self) -> None:
        """Quit; while a run is going ask first. Either way a stopped run keeps its trials."""
        from screens.dialogs import ConfirmQuit

        running = self.running_jobs()
        if not running:
            self._stop_and_exit()
            return
        if isinstance(self.screen, ConfirmQuit):
            return

        def answered(quit_now: bool | None) -> None:
            if quit_now:
                self._stop_and_exit()

        self.push_screen(ConfirmQuit(running), callback=answered)

    def _stop_and_exit(self) -> None:
        """Stop running experiments (their partial runs are kept), then leave."""
        for screen in self.job_screens():
            stop = getattr(screen, "stop_for_exit", None)
            if callable(stop):
                stop()
        self.exit()


def run_console(lab: Lab | None = None, ansi_color: bool = False) -> None:
    """Start the console in this terminal (what ``safelab`` with no subcommand does)."""
    SafeLabApp(lab, ansi_color=ansi_color).run()
