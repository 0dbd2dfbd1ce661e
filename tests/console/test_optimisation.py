"""The Optimisation job: a pattern live on the emulated paper SIM against the real broker,
toggles flipped from the keyboard while it runs, the flip's effect on the mechanism (the
signature count stops growing with keep-alive on), the A/B panel, refusals, the store."""

from __future__ import annotations

import math

import numpy as np
import pytest
from textual.widgets import Input, ProgressBar

from console.app import SafeLabApp
from drivers.bench.stats import StreamingStats
from drivers.bench.store import ResultsStore
from drivers.patterns.engine import Segment
from drivers.patterns.metrics import PatternSummary
from drivers.runs import PatternDetail
from screens.dialogs import HelpScreen
from screens.lab import Lab, TokenChoice
from screens.optimisation import OptimisationScreen, toggles_line
from screens.widgets.pattern_chart import LatencySeries, series_lines
from tests.console.conftest import builtin_only, run, text_of, wait_for

CARD = TokenChoice(
    "iotsafe:emulated;profile=paper-sim;speed=0.02",
    "emulated IoT SAFE card, profile paper-sim",
    "iotsafe",
    emulated=True,
)
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]


@pytest.fixture
def card_lab(lab: Lab) -> Lab:
    lab.discover = builtin_only
    lab.token = CARD
    return lab


def _segments(screen: OptimisationScreen) -> tuple[Segment, ...]:
    return screen.detail.segments if screen.detail is not None else ()


def test_a_flip_while_running_changes_the_mechanism_and_is_kept(card_lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(card_lab, start="optimisation")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, OptimisationScreen))
            screen = app.screen
            assert isinstance(screen, OptimisationScreen)
            screen.query_one("#settings", Input).value = "period_s=0.05"
            screen.set_focus(None)
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.done >= 4, 60, "events before the flip")
            assert screen.running and screen.planned == 0  # until stopped: no bound
            assert not screen.query_one("#bar", ProgressBar).display
            (before,) = _segments(screen)
            assert before.toggles == "baseline"
            assert before.signatures >= before.events >= 4  # a handshake per reading

            await pilot.press("k")  # keepalive on, while it runs
            await wait_for(
                pilot,
                lambda: len(_segments(screen)) == 2 and _segments(screen)[1].events >= 3,
                60,
                "events after the flip",
            )
            signatures = screen.detail.summary.signatures
            events = screen.done
            await wait_for(pilot, lambda: screen.done >= events + 4, 60, "more events")
            # the mechanism changed: one more connection after the flip, then none
            assert screen.detail.summary.signatures == signatures
            a, b = _segments(screen)
            assert b.toggles == "keepalive=on" and b.signatures == 1
            assert b.events >= 7 and a.events >= before.events
            ab = text_of(screen.query_one("#ab"))
            assert "A baseline → B keepalive=on" in ab and "B/A" in ab and "samples" in ab
            series = screen.query_one(LatencySeries).series
            assert series is not None and {flip for _, _, flip in series.points} == {0, 1}
            drawn = "\n".join(line.plain for line in series_lines(series, 60, 8))
            assert "┊" in drawn or "1" in drawn.splitlines()[0]  # the flip is marked
            assert "keepalive ON" in text_of(screen.query_one("#toggles"))
            metrics = text_of(screen.query_one("#metrics"))
            for label in ("signing success", "mean signing", "session reuse", "SIM access",
                          "auth time-outs", "deadline misses"):  # fmt: skip
                assert label in metrics

            await pilot.press("j")  # jwt-ttl on MQTT: refused with the rule's reason
            await wait_for(pilot, lambda: "refused" in text_of(screen.status))
            assert "jwt-ttl does not apply to mqtt" in text_of(screen.status)
            assert screen.spec is not None and screen.spec.board.current()[1] == 1  # unchanged

            await pilot.press("x")
            await wait_for(pilot, lambda: not screen.running, 30, "the stop")
            run_id = screen.run_id
        with ResultsStore(card_lab.db_path) as store:
            record = store.get_run(run_id)
            samples = store.sample_figures(run_id)
        assert record.status == "incomplete" and record.experiment == "pattern"
        flips = [figures["flip"] for _, _, figures in samples]
        first = flips.index(1)
        assert set(flips[:first]) == {0} and set(flips[first:]) == {1}
        signs = [figures["n_sign"] for _, _, figures in samples]
        assert signs[first] == 1 and set(signs[first + 1 :]) == {0}
        assert record.extra["flips"] == [[1, "keepalive=on"]]

    run(body())


def test_keys_before_a_start_choose_its_toggles_and_bounded_runs_show_progress(
    card_lab: Lab,
) -> None:
    async def body() -> None:
        app = SafeLabApp(card_lab, start="optimisation")
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, OptimisationScreen))
            screen = app.screen
            assert isinstance(screen, OptimisationScreen)
            await pilot.press("p")  # psk on MQTT: refused, with the reason
            await wait_for(pilot, lambda: "refused" in text_of(screen.status))
            assert "psk does not apply to mqtt" in text_of(screen.status)
            assert screen.toggles.psk is False
            await pilot.press("k")
            assert screen.toggles.keepalive is True
            screen.query_one("#settings", Input).value = "period_s=0.05"
            screen.query_one("#events", Input).value = "5"
            screen.set_focus(None)
            await pilot.press("s")
            await wait_for(pilot, lambda: not screen.running and screen.run_id > 0, 60, "end")
            bar = screen.query_one("#bar", ProgressBar)
            assert bar.display and bar.total == 5 and bar.progress == 5
            summary = screen.detail.summary
            assert summary.operations == 5 and summary.signatures == 1  # kept from the start
            assert summary.connections == 1 and summary.session_reuse_rate == pytest.approx(0.8)
            assert "complete" in text_of(screen.query_one("#progress"))

    run(body())


@pytest.mark.parametrize("backoff", ["on", "off"])
def test_a_card_outage_key_shows_backoff_against_the_retry_storm(
    card_lab: Lab, backoff: str
) -> None:
    async def body() -> None:
        app = SafeLabApp(card_lab, start="optimisation")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, OptimisationScreen))
            screen = app.screen
            assert isinstance(screen, OptimisationScreen)
            screen.outage_s = 1.0
            screen.query_one("#settings", Input).value = "period_s=0.05"
            screen.set_focus(None)
            if backoff == "on":
                await pilot.press("o")
            await pilot.press("c")  # not running yet: refused, says why
            assert "start a run first" in text_of(screen.status)
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.done >= 2, 60, "events before the outage")
            await pilot.press("c")
            await wait_for(
                pilot,
                lambda: (
                    bool(screen.detail and screen.detail.faults)
                    and screen.done >= screen.detail.faults[0][0] + 3
                ),
                60,
                "events after the outage",
            )
            ((at, kind),) = screen.detail.faults
            summary = screen.detail.summary
            await pilot.press("x")
            await wait_for(pilot, lambda: not screen.running, 30, "the stop")
            run_id = screen.run_id
        assert kind == "card-outage" and summary.failed == 0  # recovered either way
        assert summary.sim_errors > 0
        retries = summary.attempts - summary.operations
        if backoff == "on":
            assert 1 <= retries <= 20  # spaced: 50 ms, 100 ms, 200 ms... with jitter
        else:
            assert retries > 30  # at once, again and again: the storm
        with ResultsStore(card_lab.db_path) as store:
            record = store.get_run(run_id)
        assert record.extra["faults_injected"] == [[at, "card-outage"]]

    run(body())


def test_help_lists_the_toggle_keys_and_what_the_figures_mean(card_lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(card_lab, start="optimisation")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, OptimisationScreen))
            app.set_focus(None)
            await pilot.press("f1")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
            help_screen = app.screen
            text = help_screen.query_one("#help-text").source  # type: ignore[attr-defined]
            keys = text_of(help_screen.query_one("#help-keys"))
            assert "Request-path latency" in text and "B/A" in text and "deadline" in text
            for toggle in ("keepalive", "preauth", "backoff", "jwt-refresh", "psk"):
                assert f"flip {toggle}" in keys
            assert "Start" in keys and "Stop" in keys

    run(body())


def test_key_7_opens_the_job_and_the_job_bar_keeps_every_key_at_80_columns(lab: Lab) -> None:
    lab.discover = builtin_only

    async def body() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            app.set_focus(None)
            await pilot.press("7")
            await wait_for(pilot, lambda: isinstance(app.screen, OptimisationScreen), what="7")
            bar = app.screen.query_one("JobBar").render().plain  # type: ignore[attr-defined]
            assert "[7 Optimise]" in bar  # the current job whole
            keys = [word for word in bar.replace("[", " ").split() if word.isdigit()]
            assert keys == [str(n) for n in range(1, 9)]  # every job's key, in order
            assert len(bar) <= 80  # the bar drops its brand, then shortens the other titles

    run(body())


def test_the_toggle_line_names_only_what_the_transport_takes() -> None:
    from drivers.patterns.toggles import Toggles

    mqtt = toggles_line(Toggles(keepalive=True), "mqtt").plain
    assert "keepalive ON" in mqtt and "resume off" in mqtt and "jwt-ttl" not in mqtt
    assert "(not on mqtt: j b f h p)" in mqtt
    jwt = toggles_line(Toggles(), "https-jwt").plain
    assert "jwt-refresh off" in jwt and "nodelay" not in jwt


# -- snapshots (fixed figures through the screen's own drawing path) ------------------------


def _fixed_detail() -> tuple[PatternDetail, object]:
    rng = np.random.default_rng(7)
    before = rng.lognormal(np.log(240.0), 0.15, 40)
    after = rng.lognormal(np.log(18.0), 0.3, 40)
    after[5] = 1300.0  # one late event after the flip
    values = [*before, *after]
    points = tuple((i, float(ms), 0 if i < 40 else 1) for i, ms in enumerate(values))
    stats = StreamingStats(1000.0)
    for ms in values:
        stats.add(int(ms * 1e6))
    segments = (
        Segment(0, "baseline", 40, 238.1, 341.7, 0, 0.0, 40, 240.0, 18.4, 10.0),
        Segment(1, "keepalive=on", 40, 17.6, 1003.2, 1, 0.025, 1, 6.0, 0.5, 10.0),
    )
    summary = PatternSummary(
        operations=80, failed=0, p50_ms=120.4, p99_ms=402.0, mean_ms=131.0,
        deadline_miss_rate=0.0125, signatures=41, signatures_request_path=41,
        signatures_background=0, signatures_per_min=123.0, signing_success_rate=1.0,
        mean_sign_ms=9.4, card_busy_ms=1840.0, card_busy_background_ms=0.0, card_busy_pct=9.2,
        connections=41, resumed_handshakes=0, session_reuse_rate=0.4875, attempts=80,
        card_accesses=410, sim_errors=0, sim_error_rate=0.0, network_errors=0,
        auth_timeouts=0, auth_timeout_rate=0.0, duplicate_signatures=0, elapsed_s=20.0,
    )  # fmt: skip
    flips = ((1, "keepalive=on"),)
    detail = PatternDetail(summary, points, flips, 1000.0, "", segments, ((62, "reset"),))
    return detail, stats.histogram()


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_live(snap_compare, card_lab: Lab, size: tuple[int, int]) -> None:
    detail, bins = _fixed_detail()
    assert not math.isnan(detail.segments[1].p99_ms)
    app = SafeLabApp(card_lab, start="optimisation")

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, OptimisationScreen))
        screen = app.screen
        for field in screen.query(Input):
            field.cursor_blink = False
        screen.toggles = screen.toggles.set("keepalive", "on")
        screen.run_id = 12
        screen.show(detail, bins, 80, 0)  # type: ignore[arg-type]
        screen.set_focus(None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_the_deadline_row_falls_between_the_bins_below_and_above_it() -> None:
    from screens.widgets.pattern_chart import histogram_lines

    stats = StreamingStats(50.0)
    for ms in range(10, 101):
        stats.add(ms * 1_000_000)
    lines = [line.plain for line in histogram_lines(stats.histogram(), 50.0, 40, 8, late=50)]
    at = next(i for i, line in enumerate(lines) if "deadline 50.00 ms, 50 late" in line)
    lows = [float(line.split("–")[0]) for line in lines if "–" in line and "deadline" not in line]
    above = [float(line.split("–")[0]) for line in lines[at + 1 :] if "–" in line]
    assert 0 < at < len(lines) - 1 and len(lines) == 8
    assert all(low >= 50.0 for low in above) and min(lows) < 50.0 <= min(above)
