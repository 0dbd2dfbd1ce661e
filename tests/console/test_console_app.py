"""The app shell: jobs by key and palette, the registry, the CLI entry point."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner

from console.app import SafeLabApp, find_triage
from console.cli import main
from drivers.bench.store import ResultsStore
from screens.dialogs import ConfirmQuit
from screens.lab import Lab
from screens.registry import discover_specs
from screens.results import ResultsScreen
from screens.signing import SigningLabScreen
from screens.tokens import TokenPickerScreen
from screens.triage import TriageScreen
from tests.console.conftest import builtin_only, run, wait_for


def test_registry_finds_every_job_in_order() -> None:
    names = [spec.name for spec in discover_specs()]
    assert names == [
        "tokens", "signing", "results", "triage", "protocols", "ssdtf", "optimisation",
    ]  # fmt: skip


def test_triage_driver_found_by_name() -> None:
    from drivers.cards.triage import run_triage

    assert find_triage() is run_triage


def test_digits_and_palette_reach_every_job(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            for key, kind in (
                ("2", SigningLabScreen),
                ("3", ResultsScreen),
                ("4", TriageScreen),
                ("1", TokenPickerScreen),
            ):
                await pilot.press(key)
                await wait_for(pilot, lambda kind=kind: isinstance(app.screen, kind), what=key)
            await pilot.press("ctrl+p")
            await pilot.pause(0.2)
            await pilot.press(*"open results")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), what="palette")

    run(body())


def test_palette_offers_screen_actions(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            titles = [command.title for command in app.get_system_commands(app.screen)]
            assert "Open Results" in titles
            assert "Signing lab: Start" in titles
            assert "Signing lab: Stop" not in titles  # nothing runs: stop is not offered

    run(body())


def test_safelab_without_a_terminal_prints_help() -> None:
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0
    assert "console" in result.output and "Usage" in result.output


def test_quit_stops_a_run_in_a_job_that_is_not_shown(lab: Lab) -> None:
    """q from another job stops the signing run (kept, incomplete) instead of leaving its
    worker signing behind a closed console."""
    lab.discover = builtin_only

    async def body() -> SigningLabScreen:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = app.screen
            assert isinstance(screen, SigningLabScreen)
            screen.query_one("#n").value = "1000000"
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.last_update is not None, what="first update")
            await pilot.press("3")
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), what="results")
            await pilot.press("q")  # a run is going: the console asks first
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="ask")
            await pilot.press("y")
            await wait_for(pilot, lambda: not screen.running, what="the run to stop")
        return screen

    screen = asyncio.run(body())
    with ResultsStore(lab.db_path) as store:
        records = store.list_runs()
    assert len(records) == 1 and records[0].status == "incomplete", records
    assert 0 < records[0].n_samples < 1_000_000
    assert screen.finished_run_id == records[0].id
