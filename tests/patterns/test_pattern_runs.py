"""Pattern runs on the run service and ``safelab pattern`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from drivers.bench.store import ResultsStore
from drivers.runs import PatternRun, RunHandle, RunSnapshot

CARD = "iotsafe:emulated;speed=0.02"


def safelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_live_flip_takes_effect_at_the_next_event_and_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    spec = PatternRun("periodic", CARD, ("period_s=0.05",), events=8)
    flipped: list[int] = []

    def flip_after_three(snapshot: RunSnapshot) -> None:
        if snapshot.done >= 3 and not flipped:
            flipped.append(snapshot.done)
            spec.flip("keepalive", "on")

    handle = RunHandle(spec, db_path=db, on_snapshot=flip_after_three)
    outcome = handle.run()
    outcome.raise_for_error()
    result = outcome.result
    assert flipped and result.flips == ((1, "keepalive=on"),)
    with ResultsStore(db) as store:
        samples = store.sample_figures(result.run_id)
        record = store.get_run(result.run_id)
    assert len(samples) == 8
    flips = [figures["flip"] for _, _, figures in samples]
    first = flips.index(1)
    assert flips[:first] == [0] * first and set(flips[first:]) == {1}
    # before the flip every event signed (connect per event); after it, only the first one
    signs = [figures["n_sign"] for _, _, figures in samples]
    assert signs[:first] == [1] * first
    assert signs[first] == 1 and signs[first + 1 :] == [0] * (len(signs) - first - 1)
    assert record.extra["pattern"] == "periodic" and record.extra["flips"] == [[1, "keepalive=on"]]
    assert record.extra["summary"]["signatures"] == first + 1
    assert record.status == "complete" and record.experiment == "pattern"
    before, after = result.segments  # the A/B panel's two sides
    assert (before.toggles, after.toggles) == ("baseline", "keepalive=on")
    assert (before.events, after.events) == (first, 8 - first)
    assert (before.signatures, after.signatures) == (first, 1)
    assert record.extra["segments"][1]["signatures"] == 1


def test_compare_json_has_both_sides_and_the_deltas() -> None:
    result = safelab(
        "pattern",
        "compare",
        "periodic",
        "--token",
        CARD,
        "--set",
        "period_s=0.05",
        "--a",
        "keepalive=off",
        "--b",
        "keepalive=on,resume=on",
        "--events",
        "4",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("p50_ms", "p99_ms", "deadline_miss_rate", "signatures"):
        assert key in data["a"] and key in data["b"] and key in data["delta"]
    assert data["a"]["signatures"] == 4 and data["b"]["signatures"] == 1
    assert data["delta"]["signatures"] == -3
    assert data["a"]["toggles"] == "baseline" and data["b"]["toggles"] == "keepalive=on,resume=on"
    assert data["a"]["run_id"] != data["b"]["run_id"]


def test_run_json_and_a_refused_toggle_as_one_line() -> None:
    result = safelab(
        "pattern", "run", "batch", "--token", CARD, "--set", "period_s=0.05,batch_size=2",
        "--set", "jwt-ttl=60", "--events", "3", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # a TLS handshake per batch (no keep-alive) and one JWT reused by all 6 requests
    assert data["summary"]["operations"] == 3 and data["summary"]["signatures"] == 3 + 1
    assert data["toggles"]["jwt-ttl"] == 60.0
    refused = safelab("pattern", "run", "periodic", "--token", CARD, "--set", "psk=on")
    assert refused.returncode != 0
    assert "psk does not apply to mqtt" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_list_names_the_six_patterns() -> None:
    result = safelab("pattern", "list", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = {p["name"] for p in data["patterns"]}
    assert names == {
        "periodic",
        "event-driven",
        "real-time-control",
        "remote-management",
        "bulk-transfer",
        "batch",
    }
    assert all(p["table7"] for p in data["patterns"])
    assert {"preauth", "backoff", "keepalive"} <= set(data["toggles"])


def test_psk_makes_no_card_signature_on_coap(tmp_path: Path) -> None:
    import pytest

    from drivers.errors import SafeLabError
    from drivers.protocols.coap_psk import psk_transport_available

    if not psk_transport_available():
        pytest.skip("aiocoap's tinyDTLS transport (DTLSSocket) is not installed")
    signatures = {}
    for value in ("off", "on"):
        spec = PatternRun(
            "periodic", CARD, ("transport=coap", "period_s=0.05", f"psk={value}"), events=2
        )
        outcome = RunHandle(spec, db_path=tmp_path / "runs.db").run()
        outcome.raise_for_error()
        assert outcome.result.summary.failed == 0
        signatures[value] = outcome.result.summary.signatures
        with pytest.raises(SafeLabError, match="psk cannot be flipped"):
            spec.flip("psk", "off" if value == "on" else "on")
    assert signatures == {"off": 2, "on": 0}
