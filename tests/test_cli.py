"""The ``safelab`` command as a user runs it: real processes, real tokens, real exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import SoftHsm


def safelab(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kw,
    )


def test_sign_default_token_prints_table3_and_paper_row() -> None:
    result = safelab("sign", "-n", "20", "--paper")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for column in ("mean", "σ", "P50", "P90", "P99", ">1 s"):
        assert column in out
    assert "sign_only" in out and "paper sign_only" in out and "476.5" in out
    assert "run 1 stored" in out


def test_sign_json_csv_and_runs_commands(softhsm: SoftHsm, tmp_path: Path) -> None:
    result = safelab(
        "sign",
        "--token",
        softhsm.uri(),
        "--mode",
        "total",
        "-n",
        "8",
        "--pin-env",
        "LAB_PIN",
        "--json",
        env={"LAB_PIN": softhsm.pin},
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["run"]["mode"] == "total" and len(document["samples"]) == 8
    assert set(document["samples"][0]) >= {
        "open_ms",
        "login_ms",
        "find_ms",
        "sign_init_ms",
        "sign_ms",
    }
    assert softhsm.pin not in result.stdout
    run_id = str(document["run"]["id"])

    result = safelab("sign", "--mode", "local_sw", "-n", "5", "--csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 5 and float(rows[0]["total_ms"]) > 0

    listing = safelab("runs", "list", "--json")
    assert [r["mode"] for r in json.loads(listing.stdout)] == ["local_sw", "total"]
    shown = safelab("runs", "show", run_id, "--paper")
    assert shown.returncode == 0 and "Per phase" in shown.stdout and "login" in shown.stdout
    out = tmp_path / "run.csv"
    exported = safelab("runs", "export", run_id, "--format", "csv", "-o", str(out))
    assert exported.returncode == 0 and len(out.read_text().splitlines()) == 9
    compared = safelab("runs", "compare", "2", run_id, "--json")
    comparison = json.loads(compared.stdout)
    assert comparison["a"]["n"] == 5 and comparison["b"]["n"] == 8
    assert comparison["p50_ratio_b_over_a"] > 0


def test_pin_from_file_descriptor(softhsm: SoftHsm, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    with pin_file.open() as handle:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "console",
                "sign",
                "--token",
                softhsm.uri(),
                "-n",
                "3",
                "--pin-fd",
                str(handle.fileno()),
            ],
            capture_output=True,
            text=True,
            pass_fds=(handle.fileno(),),
            timeout=60,
        )
    assert result.returncode == 0, result.stderr


def test_tokens_json_lists_softhsm(softhsm: SoftHsm) -> None:
    result = safelab("tokens", "--json", "--module", softhsm.module)
    data = json.loads(result.stdout)
    labels = [t["label"] for m in data["modules"] for t in m["tokens"]]
    assert softhsm.label in labels
    assert {t["kind"] for t in data["builtin"]} == {"software", "openssl-cli"}


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("safelab: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,env,expect",
    [
        (["--pin-env", "LAB_PIN"], {"LAB_PIN": "0000"}, "wrong PIN"),
        (["--pin-env", "UNSET_PIN_VAR"], {}, "UNSET_PIN_VAR"),
        ([], {}, "needs a user PIN"),
    ],
)
def test_pin_problems_are_one_line(softhsm: SoftHsm, args, env, expect) -> None:
    result = safelab("sign", "--token", softhsm.uri(), *args, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert expect in one_error_line(result)


@pytest.mark.parametrize(
    "token,expect",
    [
        ("pkcs11:token=x?module-path=/nonexistent/module.so", "does not exist"),
        ("pkcs11:token=x?module-path=/lib/x86_64-linux-gnu/libz.so.1", "not a PKCS#11 module"),
        ("pkcs11:token=nope?module-path=/usr/lib/softhsm/libsofthsm2.so", "no token matching"),
    ],
)
def test_module_and_token_problems_are_one_line(softhsm: SoftHsm, token: str, expect: str) -> None:
    result = safelab("sign", "--token", token)
    assert result.returncode == 1
    assert expect in one_error_line(result)


@pytest.mark.parametrize(
    "key,expect", [("missing", "no private key"), ("nosign", "not allowed to sign")]
)
def test_key_problems_are_one_line(softhsm: SoftHsm, key: str, expect: str) -> None:
    result = safelab(
        "sign", "--token", softhsm.uri(key), "--pin-env", "LAB_PIN", env={"LAB_PIN": softhsm.pin}
    )
    assert result.returncode == 1
    assert expect in one_error_line(result)


def test_broken_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "broken.sqlite"
    db.write_bytes(b"garbage" * 1000)
    result = safelab("--db", str(db), "sign", "-n", "2")
    assert result.returncode == 1
    assert "not a readable SAFE Lab results database" in one_error_line(result)


def test_locked_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    safelab("--db", str(db), "runs", "list")
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = safelab("--db", str(db), "sign", "-n", "2")
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 1
    assert "locked by another program" in one_error_line(result)


def test_sigint_mid_run_keeps_what_was_measured(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "console",
            "--db",
            str(db),
            "sign",
            "--mode",
            "openssl_cli",
            "-n",
            "100000",
            "--warmup",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C in a terminal reaches a foreground command with SIGINT's default action; a
        # suite started as a background job (`cmd &` in a script) inherits SIGINT ignored,
        # and Python then installs no KeyboardInterrupt handler: give the run what a
        # terminal gives it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        samples = 0
        while time.monotonic() < deadline and samples < 5:
            time.sleep(0.2)
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as conn:
                        samples = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
                except sqlite3.OperationalError:
                    continue
        assert samples >= 5, "the run never stored samples"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:  # a failure here must not leave a 100,000-trial run burning a core
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "interrupted: kept" in stderr and "marked incomplete" in stderr
    with sqlite3.connect(db) as conn:
        status, n = conn.execute(
            "SELECT status, (SELECT COUNT(*) FROM samples) FROM runs"
        ).fetchone()
    assert status == "incomplete" and n >= samples


def test_pin_prompt_on_a_terminal(softhsm: SoftHsm) -> None:
    """A masked prompt shows the PIN status; a wrong PIN is not asked for again."""
    import pexpect

    command = f"{sys.executable} -m console sign --token '{softhsm.uri()}' -n 3"
    child = pexpect.spawn(
        "/bin/sh", ["-c", command], env=dict(os.environ), timeout=60, encoding="utf-8"
    )
    child.expect("PIN for 'safelab-test' \\(PIN status: ")
    child.sendline(softhsm.pin)
    child.expect("run \\d+ stored")
    child.expect(pexpect.EOF)

    child = pexpect.spawn(
        "/bin/sh", ["-c", command], env=dict(os.environ), timeout=60, encoding="utf-8"
    )
    child.expect("PIN for ")
    child.sendline("0000")
    child.expect("safelab: error: wrong PIN")
    child.expect(pexpect.EOF)
    assert "PIN for" not in (child.before or "")
    child.close()
    assert child.exitstatus == 1
