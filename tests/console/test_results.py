"""Results: stored runs listed, opened, compared and exported through the CLI's writers."""

from __future__ import annotations

import csv
import json

from textual.widgets import DataTable

from console.app import SafeLabApp
from drivers.bench.export import CSV_COLUMNS, export_text
from drivers.bench.store import ResultsStore
from screens.lab import Lab
from screens.results import CompareScreen, ExportModal, ResultsScreen, column_widths
from screens.signing import SigningLabScreen
from tests.console.conftest import run, seed_run, text_of, wait_for


async def _sign(pilot, n: int, mode: str = "sign_only") -> int:
    """Run one experiment through the signing lab; returns its run id."""
    app = pilot.app
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
    screen = app.screen
    previous = screen.finished_run_id
    screen.query_one("#mode").value = mode
    field = screen.query_one("#n")
    field.value = str(n)
    await pilot.press("f5")
    await wait_for(pilot, lambda: screen.finished_run_id != previous and not screen.running)
    return screen.finished_run_id


def test_partial_run_in_results_export_json_and_csv(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SigningLabScreen))
            lab_screen = app.screen
            lab_screen.query_one("#n").value = "1000000"
            await pilot.press("f5")
            await wait_for(pilot, lambda: lab_screen.last_update is not None)
            await wait_for(pilot, lambda: lab_screen.last_update.done > 200)
            await pilot.press("f7")
            await wait_for(pilot, lambda: not lab_screen.running)
            run_id = lab_screen.finished_run_id

            await pilot.press("3")
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: results.shown == run_id, what="run opened")
            table = results.query_one("#runs", DataTable)
            row = table.get_row(str(run_id))
            assert "incomplete" in row and "1000000" in row[4]
            assert "stopped by the user" in text_of(results.query_one("#run-info"))
            assert "paper sign_only" in text_of(results.query_one("#run-table3"))
            assert results.query_one("#run-histogram").bins is not None

            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
            await pilot.press("enter")
            json_path = lab.export_dir / f"safelab-run-{run_id}.json"
            await wait_for(pilot, lambda: "written to" in str(results.status.render()))
            document = json.loads(json_path.read_text())
            assert document["run"]["status"] == "incomplete"
            assert len(document["samples"]) == document["summary"]["count"] > 200

            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
            await pilot.press("shift+tab", "enter", "down", "enter")  # format list: CSV
            await pilot.pause(0.1)
            assert app.screen.query_one("#path").value.endswith(".csv")
            app.screen.query_one("#path").focus()
            await pilot.press("enter")
            csv_path = lab.export_dir / f"safelab-run-{run_id}.csv"
            await wait_for(pilot, lambda: "(CSV)" in str(results.status.render()))
            rows = list(csv.reader(csv_path.open()))
            assert tuple(rows[0]) == CSV_COLUMNS
            assert len(rows) - 1 == len(document["samples"])
            with ResultsStore(lab.db_path) as store:
                assert csv_path.read_text() == export_text(store, run_id, "csv")

            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
            await pilot.press("escape")
            await wait_for(pilot, lambda: "export cancelled" in str(results.status.render()))

            await pilot.press("y")
            await wait_for(pilot, lambda: "copied" in str(results.status.render()))
            assert json.loads(app.clipboard)["run"]["id"] == run_id

    run(body())


def test_compare_two_runs_side_by_side(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="signing")
        async with app.run_test(size=(100, 30)) as pilot:
            first = await _sign(pilot, 60)
            second = await _sign(pilot, 60, mode="total")
            await pilot.press("3")
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: results.shown == second)
            await pilot.press("c")
            assert "mark run A" in str(results.status.render())
            results.query_one("#runs").focus()
            await pilot.press("down")
            await wait_for(pilot, lambda: results.shown == first)
            await pilot.press("m", "up")
            await wait_for(pilot, lambda: results.shown == second)
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            compare = app.screen
            await wait_for(pilot, lambda: "×" in text_of(compare.query_one("#comparison")))
            text = text_of(compare.query_one("#comparison"))
            assert f"A #{first}" in text and f"B #{second}" in text
            assert "P50" in text and "P99" in text
            assert "P50" in str(compare.status.render())
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is results)

    run(body())


def test_empty_store_says_what_to_do(lab: Lab) -> None:
    async def body() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: "no runs stored yet" in str(results.status.render()))
            await pilot.press("e")
            assert "no run to export" in str(results.status.render())

    run(body())


def test_unreadable_store_is_a_message(lab: Lab) -> None:
    lab.db_path.write_text("this is not a database")

    async def body() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: results.status.has_class("-error"))
            assert "not a readable SAFE Lab results database" in str(results.status.render())
            assert app.is_running

    run(body())


def test_counts_and_modes_are_never_cut() -> None:
    """``156248/300000`` and ``https:resumed`` whole at 80 columns; only the token shrinks."""
    rows = [
        (
            "12",
            "2026-12-03 16:19",
            "https:resumed",
            "a long token label " * 3,
            "156248/300000",
            "incomplete",
        ),
        ("3", "2026-12-03 16:19", "mqtt:resumed", "lab", "100/100", "complete"),
    ]
    widths = column_widths(rows, 78)
    assert widths["n"] >= len("156248/300000") and widths["mode"] >= len("https:resumed")
    assert sum(widths.values()) + 2 * len(widths) <= 78
    assert widths["token"] < len(rows[0][3])


def test_list_shows_long_counts_and_grows_with_the_terminal(lab: Lab) -> None:
    for i in range(14):
        seed_run(lab.db_path, "https:resumed", 40, 300000, 2.0, seed=i)

    async def visible_rows(size: tuple[int, int]) -> tuple[int, tuple[str, ...]]:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: results.shown is not None)
            await pilot.pause(0.2)
            table = results.query_one("#runs", DataTable)
            row = tuple(str(cell) for cell in table.get_row_at(0))
            return table.scrollable_content_region.height - 1, row  # less the header

    async def body() -> None:
        small, row = await visible_rows((80, 24))
        large, _ = await visible_rows((120, 36))
        assert "40/300000" in row and "https:resumed" in row
        assert small >= 5 and large >= small + 5

    run(body())


def test_compare_at_80x24_shows_both_runs_with_the_same_bins(lab: Lab) -> None:
    a = seed_run(lab.db_path, "sign_only", 200, 200, 50.0, status="complete")
    b = seed_run(
        lab.db_path,
        "sign_only",
        200,
        200,
        480.0,
        label="IoT SAFE emulated card 'default' (paper-sim, speed 0.1)",
        emulated=True,
        status="complete",
        seed=1,
    )

    async def body() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: results.shown == b)
            await pilot.press("down")
            await wait_for(pilot, lambda: results.shown == a)
            await pilot.press("m", "up", "c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            compare = app.screen
            await wait_for(pilot, lambda: "B/A" in str(compare.status.render()))
            shown = compare.query_one("#comparison")
            lines = text_of(shown, width=shown.content_size.width).splitlines()
            p50 = next(line for line in lines if line.startswith("P50"))
            assert p50.rstrip().endswith("×")  # the ratio column is on screen
            assert len(p50.split()) == 4  # label, A, B, ratio
            assert any("[EMULATED]" in line for line in lines)
            a_bins = compare.query_one("#a-histogram").bins
            b_bins = compare.query_one("#b-histogram").bins
            assert a_bins.edges_ms == b_bins.edges_ms
            assert sum(a_bins.counts) + a_bins.overflow == 200
            assert sum(b_bins.counts) + b_bins.overflow == 200

    run(body())


def test_the_last_paper_run_shows_its_judged_figures(lab: Lab) -> None:
    """A `safelab paper` run (here a quick one, on the real peers) opens in Results as the
    paper's tables with ours beside them and the verdict per figure, not as a signing run."""
    from drivers.runs import RunHandle
    from drivers.runs.paper import PaperRun
    from drivers.tokens.pin import with_emulator_lab_pin

    spec = PaperRun.make(quick=True, protocols=("https",))
    pins = with_emulator_lab_pin(lambda token: None)  # the emulated SIM's lab PIN, not asked
    outcome = RunHandle(spec, db_path=lab.db_path, pin_provider=pins).run()
    outcome.raise_for_error()
    record_id = outcome.result.record_id

    async def body() -> None:
        app = SafeLabApp(lab, start="results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            await wait_for(pilot, lambda: results.shown == record_id, what="paper run opened")
            shown = text_of(results.query_one("#run-table3"))
            assert "REPRODUCED" in shown
            for section in ("Table 3", "Table 6", "JWT"):
                assert section in shown
            assert "PASS" in shown and "INFO" in shown
            assert "quick" in text_of(results.query_one("#run-phases"))
            assert results.query_one("#run-histogram").bins is None

    run(body())
