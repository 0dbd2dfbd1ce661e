"""Table 3 beside Table 6: on the in-process emulated card, `safelab paper` runs Table 3 on a
second instance of the card in a process of its own while Table 6 runs; with any other token,
or `--sequential`, Table 3 runs first in the same process. Real child processes, the real
results store, the real peers."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from drivers.bench.runner import Mode
from drivers.bench.store import ResultsStore
from drivers.errors import SafeLabError
from drivers.paper.table3_process import Table3Beside, Table3Spec, can_run_beside
from drivers.runs import RunHandle
from drivers.runs.paper import PAPER_TOKEN, PaperRun
from drivers.tokens.pin import with_emulator_lab_pin
from tests.paper.test_paper_command import safelab


def _runs(data: dict) -> tuple[list, list]:
    """(Table 3's stored runs, Table 6's stored runs) of one `paper --json` document."""
    with ResultsStore() as store:
        table3 = [store.get_run(run_id) for run_id in data["table3_runs"].values()]
        table6 = [
            store.get_run(row[which])
            for row in data["table6"]
            for which in ("software_run", "token_run")
        ]
    return table3, table6


def test_only_the_in_process_emulated_card_runs_table3_beside() -> None:
    assert can_run_beside(PAPER_TOKEN) and can_run_beside("iotsafe:emulated")
    for uri in ("software:p256", "pkcs11:token=x", "iotsafe:pcsc;reader=vpcd", "iotsafe:"):
        assert not can_run_beside(uri)
    beside, sequential = PaperRun.make(), PaperRun.make(sequential=True)
    assert beside.table3_beside() and not sequential.table3_beside()
    assert not PaperRun.make("software:p256").table3_beside()
    # Table 3's three steps leave the main line when they run beside it
    assert sequential.steps() == beside.steps() + 3


def test_table3_runs_in_its_own_process_at_the_same_time_as_table6() -> None:
    result = safelab("paper", "--quick", "--protocols", "https", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["table3_runs"]) == {"openssl_cli", "sign_only", "total"}
    table3, table6 = _runs(data)
    assert all(run.status == "complete" and run.n_samples == run.n_planned for run in table3)
    # another process wrote Table 3: its runs carry another pid than Table 6's
    assert {run.pid for run in table3}.isdisjoint({run.pid for run in table6})
    # ... while Table 6 ran: the intervals overlap
    first6 = min(run.started_at for run in table6)
    last3 = max(run.finished_at or 0.0 for run in table3)
    assert last3 > first6
    assert "second instance of the emulated card" in data["provenance"]["conditions"]["table3"]
    # the figures come first, in the paper's order, as in a sequential run
    rows = [f["row"] for f in data["figures"] if f["table"] == "Table 3"]
    assert rows[0] == "local_sw (openssl_cli)" and rows[-1] == "total"
    assert [f["table"] for f in data["figures"]][: len(rows)] == ["Table 3"] * len(rows)


def test_sequential_runs_table3_first_in_the_same_process() -> None:
    result = safelab("paper", "--quick", "--protocols", "https", "--json", "--sequential")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    table3, table6 = _runs(data)
    assert {run.pid for run in table3} == {run.pid for run in table6}
    assert max(run.finished_at or 0.0 for run in table3) <= min(run.started_at for run in table6)
    assert "before Table 6" in data["provenance"]["conditions"]["table3"]


def test_stopping_the_paper_run_stops_table3_beside_and_keeps_its_partial_run(
    tmp_path: Path,
) -> None:
    spec = PaperRun.make(quick=True, protocols=("https",))
    seen_sign_only = threading.Event()

    def watch(snapshot: object) -> None:
        if "sign_only: 0/" in getattr(getattr(snapshot, "detail", None), "beside", ""):
            seen_sign_only.set()

    db = tmp_path / "results.sqlite"
    handle = RunHandle(
        spec,
        db_path=db,
        pin_provider=with_emulator_lab_pin(lambda token: None),
        on_snapshot=watch,
    ).start()
    assert seen_sign_only.wait(120), "Table 3 never reached sign_only"
    handle.stop()
    outcome = handle.wait(120)
    assert outcome is not None
    assert outcome.result is not None and outcome.result.status == "incomplete"
    with ResultsStore(db) as store:
        sign_runs = [run for run in store.list_runs() if run.experiment == "sign"]
    modes = {run.mode: run for run in sign_runs}
    assert modes["openssl_cli"].status == "complete"
    assert modes["sign_only"].status == "incomplete"  # kept, marked, not lost
    assert modes["sign_only"].n_samples < modes["sign_only"].n_planned
    assert Mode.TOTAL.value not in modes  # never started
    assert not [p for p in multiprocessing.active_children() if p.name == "safelab-table3"]


def test_an_error_in_table3s_process_reaches_the_parent_as_one_clear_error(
    tmp_path: Path,
) -> None:
    beside = Table3Beside(
        Table3Spec(
            token_uri="iotsafe:emulated;profile=no-such-profile",
            openssl_uri="openssl-cli:p256",
            db_path=str(tmp_path / "results.sqlite"),
            n=3,
        )
    ).start()
    try:
        with pytest.raises(SafeLabError) as caught:
            beside.wait()
    finally:
        beside.close()
    assert "no-such-profile" in caught.value.one_line()
    assert "Traceback" not in caught.value.one_line()
