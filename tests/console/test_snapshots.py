"""Snapshots of every screen at 80×24 and 120×36, with fixed data (no clocks, no timings).

Runs come from a store seeded with fixed samples and fixed timestamps (shown in UTC), the
token list from the built-in keys only, and the live signing view from statistics of a fixed
sample set drawn through the same code path a running experiment uses.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Input

from console.app import SafeLabApp
from drivers.bench.runner import RunConfig
from drivers.bench.stats import StreamingStats
from drivers.bench.store import ResultsStore
from drivers.runs import RunHandle, SigningRun
from screens.dialogs import HelpScreen, SavePathModal
from screens.lab import Lab
from screens.pin import PinModal
from screens.results import CompareScreen, ExportModal, ResultsScreen
from screens.run_control import RunUpdate
from screens.signing import SigningLabScreen
from screens.tokens import TokenPickerScreen
from screens.triage import TriageScreen
from screens.widgets.histogram import latency_bins
from tests.console.conftest import builtin_only, emulated_cards, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]
FIXED_TIME = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
TOKEN = {
    "kind": "pkcs11",
    "uri": "pkcs11:token=lab;object=dev?module-path=/usr/lib/softhsm/libsofthsm2.so",
    "label": "lab",
    "manufacturer": "SoftHSM project",
    "model": "SoftHSM v2",
    "serial": "0123456789abcdef",
    "module": "/usr/lib/softhsm/libsofthsm2.so",
    "emulated": False,
    "flags": [],
}


def fixed_samples(seed: int, n: int, median_ms: float) -> list[tuple[int, int, dict[str, int]]]:
    """Log-normal latencies with a tail, as ``(idx, total_ns, phase_ns)`` rows."""
    rng = np.random.default_rng(seed)
    totals = rng.lognormal(np.log(median_ms * 1e6), 0.08, n)
    totals[:: max(n // 20, 1)] *= 2.5
    rows = []
    for idx, total in enumerate(totals.astype(int)):
        init = int(total * 0.02)
        rows.append((idx, int(total), {"sign_init": init, "sign": int(total) - init}))
    return rows


@pytest.fixture
def fixed_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """A lab whose store holds two runs with fixed samples and start times, shown in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    db = tmp_path / "results.sqlite"
    with ResultsStore(db) as store:
        for seed, (mode, n, median, status) in enumerate(
            (("sign_only", 100, 0.1, "complete"), ("total", 60, 1.4, "incomplete"))
        ):
            run_id = store.create_run(
                experiment="sign",
                mode=mode,
                n_planned=100,
                warmup=3,
                data_len=32,
                hash_on="host",
                threshold_ms=1000.0,
                token=TOKEN,
                versions={"python": "3.11"},
                extra={"times": f"{mode} timing", "key": "dev", "curve": "secp256r1"},
            )
            store.add_samples(run_id, fixed_samples(seed, n, median))
            reason = None if status == "complete" else "stopped by the user after 60 trials"
            store.finish_run(run_id, status, reason)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE runs SET started_at = ? + id * 60, finished_at = ? + id * 60 + 5, host = 'lab'",
            (FIXED_TIME, FIXED_TIME),
        )
    yield Lab(db_path=db, discover=builtin_only, export_dir=Path("/exports"), cards=emulated_cards)
    monkeypatch.delenv("TZ")
    time.tzset()


def _no_blink(app: SafeLabApp) -> None:
    for field in app.screen.query(Input):
        field.cursor_blink = False


@pytest.mark.parametrize("size", SIZES)
def test_tokens(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TokenPickerScreen))
        await wait_for(pilot, lambda: bool(pilot.app.screen.entries))
        await pilot.pause(0.2)

    assert snap_compare(SafeLabApp(fixed_lab), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_pin_modal(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TokenPickerScreen))
        await wait_for(pilot, lambda: bool(pilot.app.screen.entries))
        pilot.app.push_screen(PinModal("lab", "count low (a wrong PIN was entered)"))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PinModal))
        _no_blink(pilot.app)
        await pilot.pause(0.2)

    assert snap_compare(SafeLabApp(fixed_lab), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_signing_idle(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SigningLabScreen))
        pilot.app.screen.set_focus(None)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="signing")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_signing_live(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    """The live view drawn from a fixed snapshot, as the runner's thread would post it."""
    stats = StreamingStats(1000.0)
    for _, total, phases in fixed_samples(7, 5000, 476.5):
        stats.add(total, phases)
    update = RunUpdate(5, 5000, 10000, stats.snapshot(), latency_bins(stats))

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SigningLabScreen))
        screen = pilot.app.screen
        screen.set_focus(None)
        screen.handle = RunHandle(SigningRun(RunConfig()))  # drawn as running
        screen.running = True
        screen._draw(update)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="signing")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_results(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen))
        await wait_for(pilot, lambda: pilot.app.screen.shown == 2)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="results")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_export_modal(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen))
        await wait_for(pilot, lambda: pilot.app.screen.shown == 2)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExportModal))
        _no_blink(pilot.app)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="results")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_compare(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen))
        await wait_for(pilot, lambda: pilot.app.screen.shown == 2)
        await pilot.press("down")
        await wait_for(pilot, lambda: pilot.app.screen.shown == 1)
        await pilot.press("m", "up", "c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        await wait_for(pilot, lambda: "B/A" in str(pilot.app.screen.status.render()))
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="results")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_triage_placeholder(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TriageScreen))
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="triage")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen))
        await wait_for(pilot, lambda: pilot.app.screen.shown == 2)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        await pilot.pause(0.3)

    app = SafeLabApp(fixed_lab, start="results")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_triage_ready(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    """Triage with the card checks available: its own card choice and the overall line."""
    from drivers.cards.triage import run_triage

    fixed_lab.triage = run_triage

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TriageScreen))
        await wait_for(pilot, lambda: bool(pilot.app.screen.cards))
        pilot.app.screen.set_focus(None)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="triage")
    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES)
def test_save_dialog(snap_compare, fixed_lab: Lab, size: tuple[int, int]) -> None:
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TriageScreen))
        pilot.app.push_screen(
            SavePathModal(
                "the triage report (JSON)",
                Path("/home/engineer/.local/share/safelab/safelab-triage-IoT-SAFE-card.json"),
            )
        )
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SavePathModal))
        _no_blink(pilot.app)
        await pilot.pause(0.2)

    app = SafeLabApp(fixed_lab, start="triage")
    assert snap_compare(app, terminal_size=size, run_before=ready)
