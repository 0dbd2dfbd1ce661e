"""``safelab ssdtf demo`` with a sensor key in a PIN-protected PKCS#11 token (SoftHSM2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..conftest import SoftHsm


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "console", "ssdtf", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_sensor_key_in_a_pin_token(softhsm: SoftHsm) -> None:
    result = demo(
        "--token",
        softhsm.uri("dev"),
        "--messages",
        "1",
        "--pin-env",
        "LAB_PIN",
        "--json",
        env={"LAB_PIN": softhsm.pin},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert softhsm.pin not in result.stdout
    assert data["ok"] is True and data["packets"] > 0
    missing = demo("--token", softhsm.uri("dev"), "--messages", "1")
    assert missing.returncode == 1 and "needs a PIN" in missing.stderr
