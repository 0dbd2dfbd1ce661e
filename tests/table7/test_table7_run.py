"""Table 7 runs: measured cells on the real peers, predicted and unmeasured cells, storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from drivers.bench.store import ResultsStore
from drivers.errors import SafeLabError
from drivers.paper.result import PaperResult
from drivers.runs import RunHandle
from drivers.runs.paper import PaperRun
from drivers.runs.table7 import Table7Run
from drivers.table7.verdicts import judge
from drivers.tokens.pin import with_emulator_lab_pin

FAST_SIM = "iotsafe:emulated;profile=paper-sim;login=verify;speed=0.05"


def _run(spec: Table7Run, db: Path):  # type: ignore[no-untyped-def]
    handle = RunHandle(spec, db_path=db, pin_provider=with_emulator_lab_pin(lambda t: None))
    outcome = handle.run()
    outcome.raise_for_error()
    return outcome.result


def test_measured_cells_are_judged_from_their_stored_pattern_runs(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    spec = Table7Run(FAST_SIM, patterns=("periodic",), events=4, max_interval_s=0.2)
    result = _run(spec, db)
    before, after = result.cells
    assert (before.side, after.side) == ("before", "after")
    assert before.settings == () and after.settings == ("keepalive=on", "resume=on")
    with ResultsStore(db) as store:
        for cell in result.cells:
            assert cell.source == "measured" and cell.run_id
            record = store.get_run(cell.run_id)
            assert record.experiment == "pattern" and record.status == "complete"
            assert record.extra["params"]["period_s"] == pytest.approx(1.0)  # floor 2 x budget
            latencies = [total / 1e6 for _, total, _ in store.sample_figures(cell.run_id)]
            assert len(latencies) == cell.events == 4
            p50, p99 = np.percentile(latencies, [50, 99])
            missed = sum(ms > cell.budget_ms for ms in latencies) / len(latencies)
            assert cell.p99_ms == pytest.approx(p99)
            assert (cell.verdict, cell.decided_by) == judge(p50, p99, missed, cell.budget_ms)
            assert cell.paper in ("△", "○") and cell.agrees == (cell.verdict == cell.paper)
        # connect per event before, one connection after: the remedy really ran
        assert before.signatures == 4 and after.signatures == 1
        table = store.get_run(result.record_id)
    assert table.experiment == "table7"
    stored = table.extra["table7"]["rows"][0]
    assert stored["before"]["run_id"] == before.run_id and stored["paper"]["after"] == "○"


def test_without_measuring_or_an_engine_a_cell_is_not_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "drivers.whatif", None)  # no engine installed
    result = _run(Table7Run(FAST_SIM, patterns=("batch",), measure=False), tmp_path / "r.db")
    for cell in result.cells:
        assert cell.source == "not measured" and cell.verdict is None
        assert cell.p99_ms is None and cell.agrees is None
        assert "--no-measure" in cell.reason and "not installed" in cell.reason


def test_the_engine_hook_fills_predicted_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for drivers.whatif (built by another part of the lab) through the hook."""
    asked: list[tuple[str, tuple[str, ...]]] = []

    def predict_pattern(pattern: str, settings: tuple[str, ...], token: str, link: object):
        asked.append((pattern, settings))
        return {
            "p50_ms": 400.0,
            "p99_ms": 1500.0 if not settings else 600.0,
            "deadline_miss_rate": 0.1 if not settings else 0.0,
            "events": 1000,
        }

    engine = types.ModuleType("drivers.whatif")
    engine.predict_pattern = predict_pattern  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "drivers.whatif", engine)
    result = _run(Table7Run(FAST_SIM, patterns=("periodic",), measure=False), tmp_path / "r.db")
    before, after = result.cells
    assert asked == [("periodic", ()), ("periodic", ("keepalive=on", "resume=on"))]
    assert before.source == after.source == "predicted"
    assert (before.verdict, after.verdict) == ("△", "○")
    assert before.agrees and after.agrees and before.run_id is None


def test_unknown_patterns_and_bad_event_counts_are_refused() -> None:
    with pytest.raises(SafeLabError, match="unknown pattern"):
        Table7Run(patterns=("nope",))
    with pytest.raises(SafeLabError, match="events"):
        Table7Run(events=0)


def test_cli_table7_json_without_measuring(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "console",
            "--db",
            str(tmp_path / "r.db"),
            "table7",
            "--no-measure",
            "--pattern",
            "event-driven",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["rules"]["good"].startswith("P99 <= budget")
    row = doc["rows"][0]
    assert row["pattern"] == "event-driven" and row["paper"]["before"] == "△"
    assert row["before"]["source"] in ("not measured", "predicted")
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "console",
            "--db",
            str(tmp_path / "r.db"),
            "runs",
            "show",
            str(doc["record_id"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "Table 7, computed" in shown.stdout and "event-driven" in shown.stdout


def test_paper_carries_table7_only_when_asked() -> None:
    assert not PaperRun.make().table7
    assert PaperRun.make(table7=True).steps() == PaperRun.make().steps() + 1
    empty = PaperResult((), {}, (), {})
    assert empty.as_dict()["table7"] is None
    doc = {"rows": []}
    assert PaperResult((), {}, (), {}, table7=doc).as_dict()["table7"] is doc
