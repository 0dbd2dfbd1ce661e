"""``safelab ssdtf``: demo, attack, attacks, trace (registered on a copy of the group)."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from console import cli_ssdtf
from console.cli import SafeLabGroup


def cli() -> click.Group:
    @click.group(cls=SafeLabGroup)
    def main() -> None:
        pass

    cli_ssdtf.register(main)
    return main


def test_demo_json_then_operator_trace(tmp_path) -> None:
    runner = CliRunner()
    trace = tmp_path / "run.json"
    result = runner.invoke(
        cli(),
        [
            "ssdtf",
            "demo",
            "--model",
            "3",
            "--sensors",
            "1",
            "--messages",
            "2",
            "--json",
            "--trace",
            str(trace),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] and doc["users"]["user-1"]["received"] == 2
    assert trace.exists() and trace.with_suffix(".pcap").exists()
    ext_id = doc["users"]["user-1"]["external_ids"][0]
    traced = runner.invoke(cli(), ["ssdtf", "trace", ext_id, "--json"])
    assert traced.exit_code == 0, traced.output
    assert json.loads(traced.output)[0]["internal_id"] == "sensor-1"


def test_attack_human_output_and_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(cli(), ["ssdtf", "attack", "stripped-signature"])
    assert result.exit_code == 0 and "rejected by gateway" in result.output
    unknown = runner.invoke(cli(), ["ssdtf", "attack", "nope"])
    assert unknown.exit_code == 1 and "unknown attack" in unknown.output
    missing = runner.invoke(cli(), ["ssdtf", "trace", "00"])
    assert missing.exit_code == 1
    as_json = runner.invoke(cli(), ["ssdtf", "attack", "replay", "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["rejected"] is True and doc["role"] == "gateway" and doc["run_id"] > 0
    assert "trace" not in doc  # exported on its own (--trace), never inlined
    listed = runner.invoke(cli(), ["ssdtf", "attacks", "--json"])
    assert {"replay", "downgrade", "control-qos"} <= {a["name"] for a in json.loads(listed.output)}


def test_attack_json_carries_the_verdict() -> None:
    """``--json`` used to crash for every attack (asdict deep-copied the trace's lock)."""
    result = CliRunner().invoke(cli(), ["ssdtf", "attack", "tampered-payload", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["name"] == "tampered-payload" and data["control"] is False
    assert data["rejected"] is True
    assert data["role"] and data["reason"]
    expected = [entry.split(": ", 1) for entry in data["expected"]]
    assert any(data["role"] == role and text in data["reason"] for role, text in expected)
    assert isinstance(data["evidence"], dict)
    assert "trace" not in data and data["trace_files"] == []
