"""Help, focus and keys: `?`/F1 help for every job, digits only outside text fields, `q`
asks while a run is going (the partial run is kept either way), a typed token spec."""

from __future__ import annotations

from click.testing import CliRunner
from textual.widgets import Input

from console.app import SafeLabApp
from console.cli import main
from drivers.bench.store import ResultsStore
from screens.dialogs import ConfirmQuit, HelpScreen, screen_bindings
from screens.lab import Lab
from screens.results import ResultsScreen
from screens.signing import SigningLabScreen
from screens.tokens import TokenPickerScreen
from tests.console.conftest import builtin_only, run, text_of, wait_for


def _help_text(app: SafeLabApp) -> str:
    help_screen = app.screen
    assert isinstance(help_screen, HelpScreen)
    markdown = help_screen.query_one("#help-text")
    return markdown.source + "\n" + text_of(help_screen.query_one("#help-keys"))


def test_question_mark_and_f1_open_the_jobs_own_help(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
            text = _help_text(app)
            assert "B/A ratios of P50" in text  # what the figures mean, from ResultsScreen.HELP
            assert "Mark A" in text and "Export" in text  # its keys
            assert "switch job" in text  # and the keys every job shares
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is results, what="help closed")
            await pilot.press("f1")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="F1")
            await pilot.press("f1")
            await wait_for(pilot, lambda: app.screen is results, what="F1 closes")

    run(body())


def test_a_screen_without_help_text_gets_its_keys_and_docstring(lab: Lab) -> None:
    """The generic fallback: a job with no HELP still lists every key it answers to."""
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            signing = app.screen
            app.set_focus(None)
            await pilot.press("f1")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            text = _help_text(app)
            for keys, description in screen_bindings(signing):
                assert keys in text and description in text
            assert any("F5" in keys for keys, _ in screen_bindings(signing))

    run(body())


def test_digits_and_question_mark_type_into_a_text_field(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            picker = app.screen
            await wait_for(pilot, lambda: bool(picker.entries))
            field = picker.query_one("#token-spec", Input)
            field.focus()
            await pilot.press("3", "question_mark", "2")
            await pilot.pause(0.2)
            assert app.screen is picker and field.value == "3?2"
            await pilot.press("escape")  # leaves the field...
            picker.query_one("#token-list").focus()
            await pilot.press("3")  # ...and digits switch jobs again
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), what="job 3")

    run(body())


def test_q_during_a_run_asks_and_the_partial_run_is_kept(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> int:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            signing = app.screen
            field = signing.query_one("#n", Input)
            field.value = "1000000"
            await pilot.press("f5")
            await wait_for(pilot, lambda: signing.last_update is not None, what="run going")
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirm")
            assert app.screen.running == ["Signing lab"]
            await pilot.press("n")  # stay: the run goes on
            await wait_for(pilot, lambda: app.screen is signing)
            done = signing.last_update.done
            await wait_for(pilot, lambda: signing.last_update.done > done, what="still running")
            assert signing.running
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit))
            await pilot.press("y")
            await wait_for(pilot, lambda: app._exit, what="exit")
        return signing.last_update.run_id

    async def quit_without_a_run() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            await pilot.press("q")  # nothing runs: no question
            await wait_for(pilot, lambda: app._exit, what="exit")

    import asyncio

    run_id = asyncio.run(body())
    with ResultsStore(lab.db_path) as store:
        record = store.get_run(run_id)
    assert record.status == "incomplete" and 0 < record.n_samples < 1_000_000
    run(quit_without_a_run())


def test_a_typed_token_spec_is_used(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            picker = app.screen
            await wait_for(pilot, lambda: bool(picker.entries))
            await pilot.press("t")
            field = picker.query_one("#token-spec", Input)
            assert app.focused is field
            field.value = "nope:thing"
            await pilot.press("enter")
            await wait_for(pilot, lambda: picker.status.has_class("-error"), what="bad spec")
            assert "unknown token scheme 'nope'" in str(picker.status.render())
            assert lab.token.uri != "nope:thing"
            spec = "iotsafe:emulated;profile=paper-sim;speed=0.05"
            field.value = spec
            await pilot.press("enter")
            await wait_for(pilot, lambda: lab.token.uri == spec, what="spec used")
            assert lab.token.emulated and "speed 0.05" in lab.token.label
            await pilot.press("2")  # the signing lab shows it
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            assert "speed 0.05" in text_of(app.screen.query_one("#token-line"))

    run(body())


def test_console_token_option_rejects_a_bad_spec_in_one_line() -> None:
    result = CliRunner().invoke(main, ["console", "--token", "pkcs11:token=x"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("safelab: error:")
