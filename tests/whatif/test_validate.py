"""Predictions against measured runs on the real peers, the calibration, and the CLI.

The real runs use the emulated paper SIM at a speed factor (its 476 ms signature at x0.1 is
~48 ms) through the link proxy, against Mosquitto, nginx and libcoap on loopback. Tolerances
are wide (±35% on the median of a handful of trials) because the machine is shared: these
tests check that prediction and measurement describe the same scenario; the accuracy claim is
the benchmark's (``benchmarks/whatif_accuracy.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.bench.store import ResultsStore
from drivers.runs import RunHandle, WhatIfCalibrationRun, WhatIfRun
from drivers.whatif import Scenario, load_calibration

CARD = "iotsafe:emulated;profile=paper-sim;speed=0.1;card=whatif-test"


def _validate(tmp_path: Path, scenario: Scenario, n: int) -> tuple[object, Path]:
    db = tmp_path / "results.sqlite"
    outcome = RunHandle(WhatIfRun(scenario, validate=True, n=n), db_path=db).run()
    outcome.raise_for_error()
    return outcome.result, db


@pytest.mark.parametrize("protocol", ["mqtt", "https", "coap"])
def test_prediction_matches_a_real_run_through_the_link(protocol: str, tmp_path: Path) -> None:
    scenario = Scenario(protocol, CARD, link="rtt=40ms", n=500)
    result, db = _validate(tmp_path, scenario, n=6)
    measured = result.measured  # type: ignore[attr-defined]
    assert measured is not None and measured.n == 6
    ratio = result.ratios()  # type: ignore[attr-defined]
    assert 0.65 <= ratio["p50"] <= 1.35, (result.prediction.p50, measured.p50_ms)  # type: ignore[attr-defined]
    # both are in the store: the prediction (experiment whatif) and the measured run through
    # the link, which holds the link's metadata
    with ResultsStore(db) as store:
        stored = store.get_run(result.run_id)  # type: ignore[attr-defined]
        real = store.get_run(measured.run_id)
    assert stored.experiment == "whatif" and stored.status == "complete"
    assert stored.extra["prediction"]["p50_ms"] == pytest.approx(result.prediction.p50)  # type: ignore[attr-defined]
    assert stored.extra["validation"]["run_id"] == measured.run_id
    assert real.experiment == "proto" and real.extra["link"]["link"] == "rtt=40ms"
    assert real.token["emulated"] is True


def test_a_slower_link_is_slower_in_both(tmp_path: Path) -> None:
    """The model's structure holds on the real peer: +100 ms of RTT adds ~3 round trips."""
    near, _ = _validate(tmp_path, Scenario("https", CARD, link="rtt=10ms", n=300), n=5)
    far, _ = _validate(tmp_path, Scenario("https", CARD, link="rtt=110ms", n=300), n=5)
    predicted = far.prediction.p50 - near.prediction.p50  # type: ignore[attr-defined]
    measured = far.measured.p50_ms - near.measured.p50_ms  # type: ignore[attr-defined]
    assert predicted == pytest.approx(300, abs=15)
    assert measured == pytest.approx(predicted, rel=0.25)


def test_pattern_validation_runs_the_pattern_engine(tmp_path: Path) -> None:
    scenario = Scenario(
        token=CARD,
        link="rtt=30ms",
        pattern="periodic",
        toggles=(("period_s", "0.3"), ("keepalive", "on")),
        n=200,
    )
    result, db = _validate(tmp_path, scenario, n=6)
    measured = result.measured  # type: ignore[attr-defined]
    assert measured is not None and measured.n == 6
    assert measured.card_utilisation is not None
    # kept connection: most events are one PUBLISH/PUBACK round trip, predicted and measured
    assert 0.6 <= result.ratios()["p50"] <= 1.6  # type: ignore[attr-defined]
    with ResultsStore(db) as store:
        assert store.get_run(measured.run_id).experiment == "pattern"


def test_calibration_measures_the_structural_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    outcome = RunHandle(
        WhatIfCalibrationRun(("https",), n=4, save_to=str(path)), db_path=tmp_path / "r.sqlite"
    ).run()
    outcome.raise_for_error()
    calibration = load_calibration(path)
    https = calibration.protocol("https")
    # TLS 1.3 with a client certificate over TCP: connect, hello, client flight + request
    assert 2.6 <= https.measured_round_trips <= 3.5
    assert https.bytes_up > 1000 and https.bytes_down > 1000
    assert calibration.card_host_ms > 0
    assert "NginxPeer" in calibration.provenance["peers"]["https"] or calibration.provenance[
        "peers"
    ]["https"].startswith("Embedded")


def _safelab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_prediction_json_and_errors() -> None:
    result = _safelab("whatif", "--protocol", "https", "--link", "rtt=50ms", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["prediction"]["p50_ms"] > 150  # three round trips of 50 ms at least
    assert data["prediction"]["round_trips"] == 3
    assert data["run_id"] >= 1 and "measured" not in data
    bad = _safelab("whatif", "--alg", "nope")
    assert bad.returncode == 1
    assert "unknown signature algorithm 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_validate_prints_predicted_beside_measured() -> None:
    result = _safelab(
        "whatif",
        "--protocol",
        "https",
        "--token",
        CARD,
        "--link",
        "rtt=20ms",
        "--validate",
        "-n",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "predicted / measured" in result.stdout and "measured (run" in result.stdout


def test_pattern_compare_crosses_the_link(tmp_path: Path) -> None:
    """``safelab pattern compare --link``: both sides pay the link's round trips."""
    from drivers.runs import PatternCompareRun

    db = tmp_path / "r.sqlite"
    spec = PatternCompareRun(
        "periodic",
        "iotsafe:emulated;speed=0.02",
        ("keepalive=off",),
        ("keepalive=on",),
        events=3,
        settings=("period_s=0.4",),
        link="rtt=60ms",
    )
    outcome = RunHandle(spec, db_path=db).run()
    outcome.raise_for_error()
    a, b = outcome.result.a, outcome.result.b
    assert a.summary.p50_ms >= 3 * 60  # connect, TLS, client flight + CONNECT, PUBLISH...
    assert b.summary.p50_ms >= 60  # a PUBLISH/PUBACK round trip on the kept connection
    assert b.summary.p50_ms < a.summary.p50_ms
    with ResultsStore(db) as store:
        assert store.get_run(a.run_id).extra["link"] == "rtt=60ms"
        assert store.get_run(b.run_id).extra["link"] == "rtt=60ms"
