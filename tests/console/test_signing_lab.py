"""The signing lab end to end: real tokens, real runner, real store; stop keeps the run."""

from __future__ import annotations

import pytest

from console.app import SafeLabApp
from drivers.bench.store import ResultsStore
from screens.lab import Lab, TokenChoice
from screens.pin import PinModal
from screens.signing import SigningLabScreen
from screens.widgets.histogram import LatencyHistogram
from tests.console.conftest import builtin_only, run, text_of, wait_for


def _lab_screen(app: SafeLabApp) -> SigningLabScreen:
    screen = app.screen
    assert isinstance(screen, SigningLabScreen)
    return screen


async def _type_into(pilot, selector: str, text: str) -> None:
    screen = pilot.app.screen
    field = screen.query_one(selector)
    field.focus()
    field.value = ""
    await pilot.press(*text)


def test_software_run_updates_live_and_stop_keeps_partial_run(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            await _type_into(pilot, "#n", "1000000")
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.last_update is not None, what="first update")
            first = screen.last_update.done
            histogram = screen.query_one(LatencyHistogram)
            await wait_for(
                pilot,
                lambda: screen.last_update.done > first and histogram.bins is not None,
                what="live updates",
            )
            table = text_of(screen.query_one("#table3"))
            assert "software secp256r1" in table and "paper sign_only" in table
            assert "476.5" in table  # the paper's row beside the measured one
            assert f"{screen.last_update.stats.count}" in table
            assert "sign" in text_of(screen.query_one("#phases"))
            assert not screen.query_one("#apdus").display  # a software key keeps no APDU trace
            await pilot.press("f7")
            await wait_for(pilot, lambda: not screen.running, what="stop")
            status = str(screen.status.render())
            assert "incomplete" in status and "stopped by the user" in status
            run_id = screen.finished_run_id
        with ResultsStore(lab.db_path) as store:
            record = store.get_run(run_id)
        assert record.status == "incomplete"
        assert 0 < record.n_samples < 1_000_000
        assert record.n_samples == screen.last_update.done

    run(body())


def test_pause_and_resume(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            await _type_into(pilot, "#n", "1000000")
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.last_update is not None)
            await pilot.press("f6")
            await wait_for(pilot, lambda: screen.last_update.paused, what="paused snapshot")
            done = screen.last_update.done
            await pilot.pause(0.5)
            assert screen.last_update.done == done
            assert "paused" in screen.query_one("#progress").summary
            await pilot.press("f6")
            await wait_for(pilot, lambda: screen.last_update.done > done, what="resumed")
            await pilot.press("f7")
            await wait_for(pilot, lambda: not screen.running)

    run(body())


def test_complete_run_and_form_errors(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            await _type_into(pilot, "#n", "0")
            await pilot.press("f5")
            assert "n must be at least 1" in str(screen.status.render())
            assert not screen.running
            await _type_into(pilot, "#n", "50")
            await _type_into(pilot, "#threshold", "0.01")
            await pilot.press("escape", "s")  # leave the form; the letter key also starts
            await wait_for(pilot, lambda: not screen.running and screen.finished_run_id > 0)
            assert "complete" in str(screen.status.render())
            table = text_of(screen.query_one("#table3"))
            assert ">10 µs" not in table and ">0.01 ms" in table
            assert screen.last_update.stats.count == 50

    run(body())


def test_driver_error_becomes_one_line_not_a_crash(lab: Lab) -> None:
    lab.token = TokenChoice("pkcs11:token=x?module-path=/nonexistent/module.so", "x", "pkcs11")

    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            await pilot.press("f5")
            await wait_for(
                pilot, lambda: not screen.running and "error" in str(screen.status.render())
            )
            status = str(screen.status.render())
            assert "/nonexistent/module.so" in status
            assert "Traceback" not in status
            assert app.is_running

    run(body())


@pytest.mark.softhsm
def test_softhsm_total_run_with_pin_modal(lab: Lab, softhsm) -> None:
    lab.token = TokenChoice(softhsm.uri(), softhsm.label, "pkcs11")

    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            screen.query_one("#mode").value = "total"
            await _type_into(pilot, "#n", "40")
            await pilot.press("f5")
            await wait_for(pilot, lambda: isinstance(app.screen, PinModal), what="PIN modal")
            assert "PIN status" in str(app.screen.query_one("#pin-status").render())
            await pilot.press(*softhsm.pin, "enter")
            await wait_for(pilot, lambda: screen.finished_run_id > 0, what="run end")
            assert "complete" in str(screen.status.render())
            phases = text_of(screen.query_one("#phases"))
            for phase in ("open", "login", "find", "sign_init", "sign"):
                assert phase in phases
            assert screen.last_update.stats.phases["login"].count == 40
            assert softhsm.label in text_of(screen.query_one("#table3"))

    run(body())


@pytest.mark.softhsm
def test_pin_cancel_in_signing_lab_returns_cleanly(lab: Lab, softhsm) -> None:
    lab.token = TokenChoice(softhsm.uri(), softhsm.label, "pkcs11")

    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            await pilot.press("f5")
            await wait_for(pilot, lambda: isinstance(app.screen, PinModal))
            await pilot.press("escape")
            await wait_for(pilot, lambda: not screen.running)
            assert "PIN entry cancelled" in str(screen.status.render())
            assert not screen.status.has_class("-error")
        with ResultsStore(lab.db_path) as store:
            assert store.list_runs() == []

    run(body())


def test_speed_words_say_an_emulated_card_is_not_real_time() -> None:
    from screens.widgets.format import speed_words

    assert speed_words("iotsafe:emulated;speed=0.01", "IoT SAFE card") == " ×0.01 speed"
    assert speed_words("iotsafe:emulated;speed=1", "IoT SAFE card") == ""
    assert speed_words("iotsafe:emulated;speed=0.1", "card (paper-sim, speed 0.1)") == ""
    assert speed_words("software:p256", "software") == ""


def test_pause_is_said_once_it_took_effect_and_a_stopped_run_says_stopped(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            screen = _lab_screen(app)
            screen.query_one("#n").value = "1000000"
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.last_update is not None, what="first update")
            await pilot.press("f6")
            await wait_for(
                pilot, lambda: "paused after trial" in str(screen.status.render()), what="paused"
            )
            await pilot.press("f7")
            await wait_for(pilot, lambda: not screen.running, what="stop")
            assert "stopped" in screen.query_one("#progress").summary
            assert "finished" not in screen.query_one("#progress").summary

    run(body())
