"""The handshake-bytes model, the solver and the ``safelab algs`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from drivers.algorithms.handshake import certificate_bytes, client_flight, flight_over_link
from drivers.algorithms.solver import solve
from drivers.errors import SafeLabError

SAFELAB = [sys.executable, "-m", "console"]


def test_ml_dsa_certificates_are_built_and_far_bigger_than_p256() -> None:
    p256, how_p256 = certificate_bytes("p256")
    mldsa, how_mldsa = certificate_bytes("ml-dsa-44")
    assert how_p256 == how_mldsa == "built"
    assert mldsa > p256 + 1312 + 2420 - 200  # key and signature dominate
    falcon, how = certificate_bytes("fn-dsa-512")
    assert how == "modelled" and p256 < falcon < mldsa


def test_dtls_flight_fragments_with_the_mtu_and_loss_grows_with_datagrams() -> None:
    small = client_flight("p256", mtu=1280, loss=0.01)
    big = client_flight("ml-dsa-44", mtu=1280, loss=0.01)
    tiny_mtu = client_flight("ml-dsa-44", mtu=576, loss=0.01)
    assert big.datagrams > small.datagrams
    assert tiny_mtu.datagrams > big.datagrams
    assert big.p_flight_lost == pytest.approx(1 - 0.99**big.datagrams)
    assert "model" in big.label


def test_flight_over_a_link_uses_its_up_rate() -> None:
    flight = flight_over_link("ml-dsa-44", "rtt=100ms,rate=100kbit")
    assert flight.serialisation_ms == pytest.approx(flight.flight_bytes * 8 / 100.0)


def test_solver_real_time_control_needs_a_much_faster_card() -> None:
    answer = solve("real-time-control")
    assert answer.signature_on_p99
    assert answer.required_sign_ms is not None and answer.required_sign_ms < 100
    assert answer.speedup is not None and answer.speedup > 1
    assert "misses" in answer.answer and answer.label == "model"


def test_solver_with_preauth_takes_the_signature_off_the_p99_path() -> None:
    answer = solve("event-driven", settings=("preauth=on", "keepalive=on"))
    assert not answer.signature_on_p99 and answer.required_sign_ms is None
    assert "any card speed" in answer.answer


def test_solver_says_when_the_link_alone_breaks_the_budget() -> None:
    answer = solve("event-driven", link="rtt=400ms")
    assert answer.required_sign_ms is None and "impossible" in answer.answer


def test_solver_refuses_an_unknown_pattern() -> None:
    with pytest.raises(SafeLabError):
        solve("no-such-pattern")


def test_cli_algs_sign_and_table() -> None:
    out = subprocess.run(
        [*SAFELAB, "algs", "sign", "--alg", "ml-dsa-44", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["verified"] and doc["get_responses"] == 10
    table = subprocess.run(
        [*SAFELAB, "algs", "--no-measure", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {row["algorithm"]: row for row in json.loads(table.stdout)["algorithms"]}
    assert rows["ml-dsa-44"]["card"]["fits"] and not rows["fn-dsa-512"]["card"]["fits"]
    refused = subprocess.run(
        [*SAFELAB, "algs", "sign", "--alg", "ml-dsa-44", "--profile", "paper-sim"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "4,096 B" in refused.stderr and "Traceback" not in refused.stderr
