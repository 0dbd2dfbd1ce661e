"""The emulated IoT SAFE card end to end: picked at a speed factor, triaged, measured."""

from __future__ import annotations

from textual.widgets import OptionList

from console.app import SafeLabApp, find_triage
from drivers.bench.store import ResultsStore
from screens.lab import Lab
from screens.signing import SigningLabScreen
from screens.tokens import TokenPickerScreen
from screens.triage import TriageScreen
from tests.console.conftest import run, text_of, wait_for

CARD = "iotsafe:emulated;profile=paper-sim"


def test_pick_emulated_card_triage_and_sign_with_apdus(lab: Lab) -> None:
    lab.triage = find_triage()

    async def body() -> None:
        app = SafeLabApp(lab)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TokenPickerScreen))
            picker = app.screen
            await wait_for(pilot, lambda: CARD in picker.entries, what="emulated card listed")
            option_list = picker.query_one("#token-list", OptionList)
            option_list.focus()
            await pilot.press("home")
            while option_list.highlighted_option.id != CARD:
                await pilot.press("down")
            details = text_of(picker.query_one("#details"))
            assert "EMULATED" in details and "×1 of the profile's time" in details
            await pilot.press("f", "f")  # real time → ×0.1 → ×0.01
            assert "×0.01 of the profile's time" in text_of(picker.query_one("#details"))
            await pilot.press("u")
            assert lab.token.uri == f"{CARD};speed=0.01" and lab.token.emulated

            await pilot.press("4")
            await wait_for(pilot, lambda: isinstance(app.screen, TriageScreen))
            triage = app.screen
            await pilot.press("r")
            await wait_for(pilot, lambda: not triage.running and triage.rows, timeout=60)
            names = [row.name for row in triage.rows]
            assert {"applet", "signature", "latency"} <= set(names)
            assert {row.name: row.verdict for row in triage.rows}["signature"] == "PASS"

            await pilot.press("2")
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            lab_screen = app.screen
            lab_screen.query_one("#n").value = "30"
            await pilot.press("f5")
            await wait_for(pilot, lambda: lab_screen.finished_run_id > 0, timeout=60)
            assert "complete" in str(lab_screen.status.render())
            assert "[EMULATED]" in text_of(lab_screen.query_one("#table3"))
            assert lab_screen.query_one("#apdus").display
            assert "COMPUTE SIG" in text_of(lab_screen.query_one("#apdus"))
            card_run = lab_screen.finished_run_id

            # local_sw measures the in-process software baseline: the run says which token it
            # uses, the picked card stays picked, and the card's APDUs do not linger.
            lab_screen.query_one("#mode").value = "local_sw"
            await pilot.press("f5")
            await wait_for(pilot, lambda: lab_screen.finished_run_id > card_run, timeout=60)
            status = str(lab_screen.status.render())
            assert "next runs use" in status and "IoT SAFE" in status, status
            assert lab.token.uri == f"{CARD};speed=0.01"
            assert not lab_screen.query_one("#apdus").display
        with ResultsStore(lab.db_path) as store:
            record = store.get_run(card_run)
        assert record.emulated and record.n_samples == 30

    run(body())
