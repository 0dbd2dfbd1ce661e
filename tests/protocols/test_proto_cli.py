"""``safelab proto`` as a user runs it: one protocol, Table 6, and errors as one line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest


def safelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_proto_mqtt_resumed_json() -> None:
    result = safelab("proto", "mqtt", "--token", "software:p256", "-n", "3", "--resume", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["signatures_per_trial"] == [0, 0, 0] and data["resumed_trials"] == 3
    assert data["run"]["mode"] == "mqtt:resumed"
    assert data["run"]["extra"]["established_at"] == "MQTT CONNACK received"


def test_table6_with_the_emulated_card() -> None:
    result = safelab(
        "proto",
        "table6",
        "--token",
        "iotsafe:emulated;profile=discrete-se;speed=0.05",
        "-n",
        "2",
        "--protocols",
        "https,coap",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    rows = {row["protocol"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["https"]["paper_iot_safe_ms"] == 678
    assert rows["https"]["difference_ms"] > 0 and rows["https"]["token_sign_ms"] > 0
    assert rows["https"]["resumed_token_signatures"] == 0
    assert rows["coap"]["resumed_token_ms"] is None and "no resumption" in rows["coap"]["note"]
    assert "+653" in rows["coap"]["paper_note"] and not rows["https"]["paper_note"]
    document = json.loads(result.stdout)
    assert document["condition"] == "paper" and document["interleaved"] is True
    jwt = document["jwt"]
    assert jwt["paper_iot_safe_sign_ms"] == 650 and jwt["token_sign_ms"] > 0
    listing = json.loads(safelab("runs", "list", "--json").stdout)
    # the paper's condition: a token session per handshake, for both keys, interleaved
    modes = {r["mode"] for r in listing}
    assert {
        "https:fresh-token-session",
        "https:resumed+fresh-token-session",
        "coap:fresh-token-session",
    } <= modes
    by_mode = {r["mode"]: r for r in listing if r["mode"] == "https:fresh-token-session"}
    assert by_mode  # both runs share the mode; each names the other
    pairs = [r for r in listing if r["mode"] == "https:fresh-token-session"]
    assert len(pairs) == 2
    assert pairs[0]["extra"]["interleaved_with"] == [pairs[1]["id"]]


def test_table6_session_kept_is_a_visible_condition() -> None:
    result = safelab(
        "proto",
        "table6",
        "--token",
        "iotsafe:emulated;speed=0",
        "-n",
        "1",
        "--protocols",
        "https",
        "--condition",
        "session-kept",
        "--no-jwt",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["condition"] == "session-kept" and document["jwt"] is None
    listing = json.loads(safelab("runs", "list", "--json").stdout)
    assert {r["mode"] for r in listing} == {"https:full", "https:resumed"}


def test_jwt_resume_is_refused_with_the_rules_reason() -> None:
    """The CLI refuses what the console's matrix refuses, in the same words."""
    from drivers.protocols.base import Condition
    from drivers.protocols.rules import refusal

    result = safelab("proto", "jwt", "--token", "software:p256", "--resume", "-n", "1")
    reason = refusal("jwt", Condition(resume=True))
    assert result.returncode == 1 and reason is not None
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0]
    assert json.loads(safelab("runs", "list", "--json").stdout) == []  # nothing ran


def test_proto_errors_are_one_line() -> None:
    result = safelab("proto", "vpn", "--resume")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OpenVPN disables TLS resumption" in lines[0]
    result = safelab("proto", "table6", "--token", "software:p256", "--protocols", "smtp")
    assert result.returncode == 1 and "unknown protocol 'smtp'" in result.stderr


def test_proto_over_an_emulated_link_pays_its_round_trips() -> None:
    """HTTPS over a 60 ms link: TCP connect, the TLS 1.3 handshake and the request are three
    round trips, so every trial is at least ~2.5 RTT; the link is recorded in the run."""
    result = safelab(
        "proto", "https", "--token", "software:p256", "-n", "2", "--link", "rtt=60ms", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["summary"]["min_ms"] >= 2.5 * 60
    link = data["run"]["extra"]["link"]
    assert link["link"] == "rtt=60ms" and link["mode"] == "proxy"
    assert link["stats"]["connections"] >= 3  # warm-up + two trials, each a new connection


def test_a_bad_link_is_refused_in_one_line_before_anything_runs() -> None:
    result = safelab("proto", "https", "--token", "software:p256", "--link", "rtt=fast")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "rtt" in result.stderr
    listing = json.loads(safelab("runs", "list", "--json").stdout)
    assert listing == []


def test_stored_protocol_run_shows_and_exports_its_phases(tmp_path) -> None:
    """``runs show``/``export`` read back what a protocol run stored: connect, handshake,
    ready times and the signature/resumption counts (they used to be dropped)."""
    db = str(tmp_path / "results.sqlite")
    result = safelab("--db", db, "proto", "mqtt", "--token", "software:p256", "-n", "3", "--json")
    assert result.returncode == 0, result.stderr
    run_id = str(json.loads(result.stdout)["run"]["id"])

    shown = safelab("--db", db, "runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    samples = document["samples"]
    assert [s["idx"] for s in samples] == [0, 1, 2]
    for sample in samples:
        assert {"connect_ms", "handshake_ms", "sign_ms", "ready_ms"} <= sample.keys()
        assert sample["handshake_ms"] > sample["sign_ms"] > 0 and sample["ready_ms"] > 0
        assert sample["n_sign"] == 1 and sample["n_resumed"] == 0
    phases = document["summary"]["phases"]
    assert {"connect", "handshake", "ready"} <= phases.keys()
    assert not any(name.startswith("n_") for name in phases)  # counts are not times

    exported = safelab("--db", db, "runs", "export", run_id, "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 3
    for row, sample in zip(rows, samples, strict=True):
        assert float(row["handshake_ms"]) == pytest.approx(sample["handshake_ms"], abs=1e-6)
        assert float(row["connect_ms"]) == pytest.approx(sample["connect_ms"], abs=1e-6)
        assert float(row["ready_ms"]) == pytest.approx(sample["ready_ms"], abs=1e-6)
        assert (row["n_sign"], row["n_resumed"]) == ("1", "0")

    human = safelab("--db", db, "runs", "show", run_id)
    assert human.returncode == 0, human.stderr
    assert "handshake" in human.stdout and "connect" in human.stdout
