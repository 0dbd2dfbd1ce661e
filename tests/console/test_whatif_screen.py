"""The What-if job end to end: fields redraw the prediction (the real model, the packaged
calibration), a bad field is named, ``v`` validates against the real peer through the link.
The snapshot uses a fixed scenario whose prediction is deterministic (seeded model, packaged
calibration)."""

from __future__ import annotations

import pytest
from textual.widgets import Checkbox, Input, Select

from console.app import SafeLabApp
from drivers.bench.store import ResultsStore
from screens.lab import Lab
from screens.whatif import Distribution, WhatIfScreen
from tests.console.conftest import run, wait_for
from tests.console.test_snapshots import SIZES, fixed_lab  # noqa: F401 - fixture


async def _open(pilot) -> WhatIfScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, WhatIfScreen))
    screen = pilot.app.screen
    assert isinstance(screen, WhatIfScreen)
    await wait_for(pilot, lambda: screen.prediction is not None, timeout=60, what="prediction")
    return screen


async def _predicted_after(pilot, screen: WhatIfScreen, change) -> float:
    before = screen.prediction
    change()
    await wait_for(
        pilot,
        lambda: screen.prediction is not None and screen.prediction is not before,
        timeout=60,
        what="new prediction",
    )
    assert screen.prediction is not None
    return screen.prediction.p50


def test_fields_redraw_the_prediction(lab: Lab) -> None:
    run(_test_fields_redraw_the_prediction(lab))


async def _test_fields_redraw_the_prediction(lab: Lab) -> None:
    app = SafeLabApp(lab, start="whatif")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot)
        assert screen.prediction is not None
        loopback = screen.prediction.p50
        screen.query_one("#token", Select).value = "software:p256"
        await wait_for(
            pilot,
            lambda: (
                screen.prediction is not None
                and screen.prediction.scenario.token == "software:p256"
            ),
            timeout=60,
        )
        assert screen.prediction is not None
        software = screen.prediction.p50
        assert software < loopback - 300  # no 476 ms card signature any more
        rtt = screen.query_one("#rtt", Input)
        far = await _predicted_after(pilot, screen, lambda: setattr(rtt, "value", "100"))
        assert screen.prediction is not None
        assert screen.prediction.scenario.link == "rtt=100ms"
        assert far - software >= 3 * 100 - 60  # MQTT: 3 round trips (its loopback stall goes)
        view = screen.query_one(Distribution)
        assert view.prediction is screen.prediction
        # a pattern with its remedy: the kept connection makes events cheap
        screen.query_one("#pattern", Select).value = "periodic"
        await wait_for(
            pilot,
            lambda: (
                screen.prediction is not None and screen.prediction.scenario.pattern == "periodic"
            ),
            timeout=60,
        )
        plain = screen.prediction.p50
        keep = screen.query_one("#keepalive", Checkbox)
        kept = await _predicted_after(pilot, screen, lambda: setattr(keep, "value", True))
        assert kept < plain / 2
    # live redraws are not stored: only a validation adds runs to the results store
    if lab.db_path is not None and lab.db_path.exists():
        with ResultsStore(lab.db_path) as store:
            assert [r for r in store.list_runs() if r.experiment == "whatif"] == []


def test_a_bad_field_is_named_and_nothing_is_predicted(lab: Lab) -> None:
    run(_test_a_bad_field_is_named_and_nothing_is_predicted(lab))


async def _test_a_bad_field_is_named_and_nothing_is_predicted(lab: Lab) -> None:
    app = SafeLabApp(lab, start="whatif")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot)
        before = screen.prediction
        screen.query_one("#loss", Input).value = "lots"
        await wait_for(pilot, lambda: "loss 'lots' is not a number" in str(screen.status.render()))
        await pilot.pause(0.3)
        assert screen.prediction is before


def test_validate_runs_the_scenario_for_real(lab: Lab) -> None:
    run(_test_validate_runs_the_scenario_for_real(lab))


async def _test_validate_runs_the_scenario_for_real(lab: Lab) -> None:
    app = SafeLabApp(lab, start="whatif")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot)
        screen.query_one("#protocol", Select).value = "https"
        screen.query_one("#speed", Input).value = "0.05"
        screen.query_one("#rtt", Input).value = "20"
        await wait_for(
            pilot,
            lambda: (
                screen.prediction is not None
                and screen.prediction.scenario.link == "rtt=20ms"
                and screen.prediction.scenario.protocol == "https"
                and screen.prediction.scenario.speed == 0.05
            ),
            timeout=60,
        )
        await pilot.press("v")
        view = screen.query_one(Distribution)
        await wait_for(pilot, lambda: view.measured is not None, timeout=120, what="validation")
        assert view.measured is not None and view.measured.measured is not None
        assert view.measured.measured.n == 10
        assert 0.5 <= view.measured.ratios()["p50"] <= 1.5
        assert "measured (run" in str(view.render())
    assert lab.db_path is not None
    with ResultsStore(lab.db_path) as store:
        kinds = sorted(r.experiment for r in store.list_runs())
    assert kinds == ["proto", "whatif"]  # the validated prediction and the measured run


@pytest.mark.parametrize("size", SIZES)
def test_snapshot(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:  # noqa: F811
    async def ready(pilot) -> None:
        screen = await _open(pilot)
        screen.query_one("#rtt", Input).value = "50"
        screen.query_one("#jitter", Input).value = "5"
        await wait_for(
            pilot,
            lambda: (
                screen.prediction is not None
                and screen.prediction.scenario.link == "rtt=50ms,jitter=5ms"
            ),
            timeout=60,
        )
        await pilot.pause(0.3)

    from drivers.whatif.calibration import PACKAGED

    assert PACKAGED.is_file()
    app = SafeLabApp(fixed_lab, start="whatif")
    assert snap_compare(app, terminal_size=size, run_before=ready)
