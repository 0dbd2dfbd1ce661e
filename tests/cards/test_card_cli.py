"""``safelab card serve`` and ``safelab triage`` as a field engineer runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.cards.conftest import serving

SAFELAB = [sys.executable, "-m", "console"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SAFELAB, *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def served(pcscd: str):
    """`safelab card serve` in the background, with the token specs it printed."""
    process = subprocess.Popen(
        [*SAFELAB, "card", "serve", "--profile", "discrete-se", "--speed", "0.01", "--modem"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    uris: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"--token '(.+)'", line)
        if match:
            uris.append(match.group(1))
        if "Ctrl-C" in line:
            break
    assert len(uris) == 3, process.stderr.read() if process.poll() is not None else uris
    yield uris, process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(10)


def test_serve_then_sign_and_triage_through_every_link(served) -> None:
    uris, process = served
    pcsc, csim, cgla = uris
    assert pcsc.startswith("iotsafe:pcsc;reader=Virtual PCD")
    for uri in (pcsc, csim, cgla):
        result = run(
            "sign", "--token", uri, "--mode", "total", "-n", "3", "--warmup", "0", "--json"
        )
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["run"]["emulated"] is True
        assert len(document["samples"]) == 3
    report = run("triage", "--token", pcsc, "-n", "3", "--json")
    assert report.returncode == 0, report.stdout + report.stderr
    data = json.loads(report.stdout)
    verdicts = {c["name"]: c["verdict"] for c in data["checks"]}
    assert verdicts == {
        "link": "PASS",
        "atr": "PASS",
        "applet": "PASS",
        "objects": "PASS",
        "certificates": "PASS",
        "signature": "PASS",
        "latency": "PASS",
    }
    atr = next(c for c in data["checks"] if c["name"] == "atr")
    assert atr["data"]["emulated"] and "T=1" in atr["data"]["protocols"]
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=10)
    assert process.returncode == 0 and "card removed after" in out


def test_triage_without_a_card_fails_with_exit_2(pcscd: str) -> None:
    report = run("triage", "--token", "iotsafe:pcsc")
    assert report.returncode == 2
    assert "FAIL link" in report.stdout and "safelab card serve" in report.stdout


def test_triage_of_a_wrong_aid_fails_at_the_applet(pcscd: str) -> None:
    with serving("--profile", "discrete-se", "--speed", "0") as served:
        report = run("triage", "--token", f"{served.uris[0]};aid=A0000005591234", "--json")
    assert report.returncode == 2
    checks = json.loads(report.stdout)["checks"]
    assert [c["name"] for c in checks] == ["link", "atr", "applet"]
    assert checks[-1]["verdict"] == "FAIL" and "6A82" in checks[-1]["detail"]


def test_card_fit_from_a_stored_run(tmp_path) -> None:
    made = run(
        "sign",
        "--token",
        "iotsafe:emulated;profile=discrete-se;speed=1;seed=4",
        "--mode",
        "total",
        "-n",
        "25",
        "--warmup",
        "0",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    run_id = str(json.loads(made.stdout)["run"]["id"])
    refused = run("card", "fit", run_id, "--name", "mine")
    assert refused.returncode == 1 and "--allow-emulated" in refused.stderr
    fitted = run(
        "card",
        "fit",
        run_id,
        "--name",
        "mine",
        "--base",
        "discrete-se",
        "--allow-emulated",
        "--trials",
        "300",
    )
    assert fitted.returncode == 0, fitted.stderr
    assert "profile 'mine' written to" in fitted.stdout
    assert "mine" in run("card", "profiles").stdout
    again = run("sign", "--token", "iotsafe:emulated;profile=mine;speed=0.1", "-n", "3", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["run"]["token"]["emulated"] is True


def test_tokens_lists_the_emulated_card_profiles() -> None:
    listing = json.loads(run("tokens", "--json").stdout)
    uris = {card["uri"]: card for card in listing["cards"]}
    assert uris["iotsafe:emulated;profile=paper-sim"]["emulated"] is True
    assert "iotsafe:emulated;profile=discrete-se" in uris


def test_triage_reports_time_to_verdict_and_per_check_durations() -> None:
    report = run("triage", "--token", "iotsafe:emulated;speed=0.01;card=timed", "-n", "3", "--json")
    assert report.returncode == 0, report.stdout + report.stderr
    data = json.loads(report.stdout)
    assert data["verdict"] == "PASS"
    assert data["summary"].startswith("PASS in ") and "7 checks" in data["summary"]
    durations = [c["duration_ms"] for c in data["checks"]]
    assert len(durations) == 7 and all(d is not None and d >= 0 for d in durations)
    assert 0 < sum(durations) <= data["elapsed_ms"]
    human = run(
        "triage",
        "--token",
        "iotsafe:emulated;speed=0;card=timed",
        "-n",
        "2",
        env={**os.environ, "COLUMNS": "400"},
    )
    lines = human.stdout.strip().splitlines()
    assert human.returncode == 0
    assert lines[-1].startswith("verdict: PASS in ")
    assert sum(line.startswith("verdict:") for line in lines) == 1
    assert len(lines) == 8 and all(re.search(r"\(\d+ ms\)$", line) for line in lines[:-1])
