"""Results store and experiment runner with real tokens: what is kept, and how it fails."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.bench.compare import compare_runs
from drivers.bench.export import export_text, run_document
from drivers.bench.runner import ExperimentRunner, Mode, Progress, RunConfig
from drivers.bench.store import ResultsStore
from drivers.errors import PinError, SafeLabError, StoreError, TokenError
from drivers.tokens.base import PHASES, Pin
from drivers.tokens.registry import open_token

from .conftest import SoftHsm


def run(spec: str, mode: Mode, n: int = 20, store: ResultsStore | None = None, **kw):
    store = store or ResultsStore()
    runner = ExperimentRunner(open_token(spec), RunConfig(mode=mode, n=n, warmup=1), store, **kw)
    return runner.run(), store


@pytest.mark.parametrize(
    "mode,phases",
    [
        (Mode.LOCAL_SW, {"sign_init", "sign"}),
        (Mode.SIGN_ONLY, {"sign_init", "sign"}),
        (Mode.TOTAL, set(PHASES)),
    ],
)
def test_software_modes_store_every_sample_with_phases(mode: Mode, phases: set[str]) -> None:
    result, store = run("software:p256", mode, n=25)
    assert result.status == "complete" and result.stats.count == 25
    samples = list(store.samples(result.run_id))
    assert [idx for idx, _, _ in samples] == list(range(25))
    assert all(set(p) == phases for _, _, p in samples)
    # The total time of a trial covers its phases.
    assert all(total >= sum(p.values()) for _, total, p in samples)
    record = store.get_run(result.run_id)
    assert record.mode == mode.value and record.n_samples == 25 and not record.emulated
    assert record.versions["python"] and "OpenSSL" in record.versions["openssl"]


def test_openssl_cli_mode_runs_one_process_per_trial() -> None:
    result, _ = run("openssl-cli:p256", Mode.OPENSSL_CLI, n=5)
    assert result.stats.count == 5
    # A process costs far more than an in-process signature: the sign phase holds it.
    assert result.stats.phases["sign"].mean_ms > result.stats.phases["sign_init"].mean_ms


def test_pkcs11_total_and_sign_only(softhsm: SoftHsm) -> None:
    for mode in (Mode.SIGN_ONLY, Mode.TOTAL):
        result, store = run(softhsm.uri(), mode, n=10, pin_provider=lambda: Pin(softhsm.pin))
        assert result.status == "complete" and result.stats.count == 10
        document = run_document(store, result.run_id)
        assert document["run"]["token"]["kind"] == "pkcs11"
        assert softhsm.pin not in json.dumps(document)


def test_baseline_modes_refuse_other_tokens(softhsm: SoftHsm) -> None:
    with pytest.raises(TokenError, match="measures the software baseline"):
        run(softhsm.uri(), Mode.LOCAL_SW)
    with pytest.raises(TokenError, match="measures the openssl-cli baseline"):
        run("software:p256", Mode.OPENSSL_CLI)


@pytest.mark.wrong_pin
def test_missing_pin_and_wrong_pin_stop_before_anything_is_stored(softhsm: SoftHsm) -> None:
    store = ResultsStore()
    with pytest.raises(PinError, match="needs a user PIN"):
        run(softhsm.uri(), Mode.TOTAL, store=store)
    calls = []

    def wrong() -> Pin:
        calls.append(1)
        return Pin("0000")

    with pytest.raises(PinError, match="wrong PIN"):
        run(softhsm.uri(), Mode.TOTAL, store=store, pin_provider=wrong)
    assert calls == [1]
    assert store.list_runs() == []


def test_stop_midway_keeps_the_partial_run() -> None:
    store = ResultsStore()
    runner: ExperimentRunner

    def stop_after_some(progress: Progress) -> None:
        if progress.done >= 50:
            runner.stop()

    runner = ExperimentRunner(
        open_token("software:p256"),
        RunConfig(n=100_000, warmup=0),
        store,
        on_progress=stop_after_some,
        progress_interval_s=0,
        flush_interval_s=0,
    )
    result = runner.run()
    assert result.status == "incomplete" and "stopped by the user" in (result.reason or "")
    record = store.get_run(result.run_id)
    assert record.status == "incomplete"
    assert 50 <= record.n_samples < 100_000 and record.n_samples == result.stats.count


def test_error_midway_keeps_the_partial_run(tmp_path: Path) -> None:
    """The openssl program disappears mid-run (a real failure): measured trials stay."""
    openssl = tmp_path / "openssl"
    real = subprocess.run(["which", "openssl"], capture_output=True, text=True).stdout.strip()
    openssl.write_text(f'#!/bin/sh\nexec {real} "$@"\n')
    openssl.chmod(0o755)
    store = ResultsStore()
    runner: ExperimentRunner

    def break_openssl(progress: Progress) -> None:
        if progress.done >= 3:
            openssl.write_text("#!/bin/sh\necho 'openssl: broken' >&2\nexit 7\n")

    runner = ExperimentRunner(
        open_token(f"openssl-cli:openssl={openssl}"),
        RunConfig(mode=Mode.OPENSSL_CLI, n=50, warmup=0),
        store,
        on_progress=break_openssl,
        progress_interval_s=0,
    )
    with pytest.raises(TokenError, match="exit 7") as info:
        runner.run()
    assert "kept 3 trials" in info.value.problem
    record = store.list_runs()[0]
    assert record.status == "incomplete" and record.n_samples == 3
    assert "exit 7" in (record.reason or "")


def test_export_json_and_csv_agree() -> None:
    result, store = run("software:p256", Mode.SIGN_ONLY, n=12)
    document = json.loads(export_text(store, result.run_id, "json"))
    lines = export_text(store, result.run_id, "csv").splitlines()
    assert lines[0].split(",")[:3] == ["run_id", "idx", "total_ms"]
    assert len(lines) == 13 and len(document["samples"]) == 12
    first = lines[1].split(",")
    assert float(first[2]) == pytest.approx(document["samples"][0]["total_ms"], abs=1e-6)
    assert document["summary"]["count"] == 12


def test_compare_reports_ratios_and_counts() -> None:
    fast, store = run("software:p256", Mode.SIGN_ONLY, n=30)
    slow, _ = run("openssl-cli:p256", Mode.OPENSSL_CLI, n=5, store=store)
    comparison = compare_runs(store, fast.run_id, slow.run_id)
    assert comparison.a_stats.count == 30 and comparison.b_stats.count == 5
    assert comparison.p50_ratio == pytest.approx(
        comparison.b_stats.p50_ms / comparison.a_stats.p50_ms
    )
    assert comparison.p50_ratio > 1


def test_unknown_run_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="there is no run 42"):
        ResultsStore().get_run(42)


def test_database_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable SAFE Lab results database") as info:
        ResultsStore(path)
    assert "--db PATH" in info.value.fix


def test_database_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        ResultsStore(tmp_path)


def test_locked_database_fails_before_measuring(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # Opening may already meet the lock (schema check); if not, creating the run does.
        with pytest.raises(StoreError, match="locked by another program") as info:
            store = ResultsStore(path, busy_timeout_s=0.2)
            run("software:p256", Mode.SIGN_ONLY, store=store)
        assert "wait for the other safelab run" in info.value.fix
    finally:
        holder.rollback()
        holder.close()


def test_a_run_whose_process_died_shows_as_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    code = (
        "import os\n"
        "from drivers.bench.store import ResultsStore\n"
        f"store = ResultsStore({str(path)!r})\n"
        "run_id = store.create_run(experiment='sign', mode='total', n_planned=5, warmup=0,"
        " data_len=32, hash_on='host', threshold_ms=1000.0, token={'kind': 'software'},"
        " versions={})\n"
        "store.add_samples(run_id, [(0, 1000, {'sign': 900})])\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    record = ResultsStore(path).list_runs()[0]
    assert record.status == "incomplete" and "ended without closing" in (record.reason or "")
    assert record.n_samples == 1


def test_bad_config_values_are_named() -> None:
    with pytest.raises(SafeLabError, match="n must be at least 1"):
        RunConfig(n=0).validate()
    with pytest.raises(SafeLabError, match="threshold must be positive"):
        RunConfig(threshold_ms=0).validate()


def test_stored_figures_are_exact_order_statistics() -> None:
    """Results, exports and `runs show` give exact nearest-rank percentiles of every sample."""
    result, store = run("software:p256", Mode.SIGN_ONLY, n=31)
    totals = sorted(total for _, total, _ in store.samples(result.run_id))
    exact_p50 = totals[15] / 1e6  # nearest rank: ceil(0.5 * 31) = 16th smallest
    exact_p90 = totals[27] / 1e6  # ceil(0.9 * 31) = 28th
    assert result.stats.p50_ms == exact_p50 and result.stats.p90_ms == exact_p90
    summary = json.loads(export_text(store, result.run_id, "json"))["summary"]
    assert summary["p50_ms"] == exact_p50 and summary["p90_ms"] == exact_p90
    assert summary["percentile_method"] == "nearest rank, exact over every sample"
