"""``benchmarks/console_startup.py`` reports what it measured, including "nothing" for a run
too short to sample (``--n 20000`` used to crash with StatisticsError on an empty lag list)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "console_startup_bench", ROOT / "benchmarks" / "console_startup.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_lag_samples_is_reported_not_a_crash() -> None:
    module = bench()
    summary = module.lag_summary([])
    assert summary["lag_samples"] == 0 and summary["loop_lag_ms_p50"] is None
    result = {
        "trials": 20,
        "elapsed_s": 0.04,
        "redraws_per_s": 25.0,
        "samples_dropped": 0,
        "rss_mb_first": None,
        "rss_mb_last": None,
        **summary,
    }
    line = module.streaming_line(result)
    assert "no lag samples: the run ended before the first 50 ms tick" in line
    assert "use a larger --n" in line and "RSS not sampled" in line


def test_lag_summary_of_samples() -> None:
    summary = bench().lag_summary([0.001, 0.003, 0.010])
    assert summary["lag_samples"] == 3
    assert summary["loop_lag_ms_p50"] == pytest.approx(3.0)
    assert summary["loop_lag_ms_max"] == pytest.approx(10.0)


def test_short_streaming_run_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real (headless) 20-trial run: every sample stored, the lag probe ran beside the run
    (it used to start only after the F5 key press returned, i.e. after the run)."""
    monkeypatch.setenv("SAFELAB_DATA_DIR", str(tmp_path))
    module = bench()
    result = module.streaming(20)
    assert result["samples_stored"] == 20 and result["samples_dropped"] == 0
    assert result["lag_samples"] >= 1, result
    line = module.streaming_line(result)
    assert line.startswith("streaming 20 software trials") and "event-loop lag P50" in line
