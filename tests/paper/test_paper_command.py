"""`safelab paper` as a user runs it: figures judged beside the paper's, stored runs with their
provenance, the report, and a clear exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from drivers.bench.store import ResultsStore


def safelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "80"},
    )


def test_quick_paper_run_with_report(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = safelab("paper", "--quick", "--protocols", "https", "--json", "--report", str(report))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    figures = data["figures"]
    tables = {f["table"] for f in figures}
    assert tables == {"Table 3", "Table 6", "JWT"}
    # Table 3 rows as the paper timed them: local_sw is the openssl process baseline
    rows = {(f["table"], f["row"]) for f in figures}
    assert ("Table 3", "local_sw (openssl_cli)") in rows and ("Table 3", "total") in rows
    assert {("Table 6", "https paper"), ("Table 6", "https resumed")} <= rows
    # every figure carries the paper's value (or says there is none), a tolerance, a verdict
    for figure in figures:
        assert figure["verdict"] in ("pass", "fail", "info") and figure["tolerance"]
        if figure["paper"] and figure["measured"] is not None:
            assert figure["ratio"] == figure["measured"] / figure["paper"]
    # resumed handshakes make no token signature: judged exactly, even in --quick
    resumed = next(f for f in figures if f["row"] == "https resumed" and f["unit"] == "signatures")
    assert resumed["measured"] == 0 and resumed["verdict"] == "pass"
    # --quick judges nothing else: it is a demonstration at a speed factor
    assert data["verdicts"]["fail"] == 0 and data["passed"] is True
    card_figures = [
        f
        for f in figures
        if f["table"] == "Table 3" and f["row"] in ("sign_only", "total") and f["unit"] == "ms"
    ]
    assert len(card_figures) == 8 and all("quick" in f["tolerance"] for f in card_figures)
    # provenance: the emulated card, its speed, the real peer
    provenance = data["provenance"]
    assert provenance["token"]["emulated"] is True and provenance["token"]["speed"] == 0.1
    # the paper's total includes C_Login's PIN check: the emulated SIM verifies its PIN
    assert "login=verify" in provenance["token"]["uri"]
    assert "https" in provenance["peers"] and "jwt" in provenance["peers"]
    assert data["table7"] is None
    # the runs are in the store, labelled emulated, with the conditions in their metadata
    with ResultsStore() as store:
        token_runs = [store.get_run(row["token_run"]) for row in data["table6"]]
    assert all(run.emulated for run in token_runs)
    paper_row = next(r for r in data["table6"] if r["condition"] == "paper")
    with ResultsStore() as store:
        token_run = store.get_run(paper_row["token_run"])
    assert token_run.extra["token_session"] == "fresh"
    assert token_run.extra["interleaved_with"] == [paper_row["software_run"]]
    # the report: self-contained HTML (embedded PNGs), Markdown linking PNGs that exist
    html = (report / "paper-report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    markdown = (report / "paper-report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(linked) == 3 and all((report / name).stat().st_size > 1000 for name in linked)
    assert "| Table 6 | https paper | difference |" in markdown


def test_paper_refuses_an_unknown_protocol_in_one_line() -> None:
    result = safelab("paper", "--quick", "--protocols", "smtp")
    assert result.returncode != 0
    assert "unknown protocol 'smtp'" in result.stderr and "Traceback" not in result.stderr


def test_the_paper_run_is_kept_and_shown_by_runs_show() -> None:
    result = safelab("paper", "--quick", "--protocols", "https", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    record_id = data["record_id"]
    with ResultsStore() as store:
        record = store.get_run(record_id)
    assert record.experiment == "paper" and record.mode == "paper:quick"
    assert record.extra["paper"]["figures"] == data["figures"]
    shown = safelab("runs", "show", str(record_id))
    assert shown.returncode == 0, shown.stderr
    assert "Table 3" in shown.stdout and "Table 6" in shown.stdout and "JWT" in shown.stdout
    assert "REPRODUCED" in shown.stdout
