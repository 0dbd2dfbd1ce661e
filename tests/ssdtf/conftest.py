"""Fixtures of the SSDTF tests: Mosquitto availability, a finished demo deployment."""

from __future__ import annotations

import shutil

import pytest

from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment

MARKER = "MARKER-7f3a9c"
"""A known plaintext marker: every reading starts with it, so a search finds any leak."""


@pytest.fixture
def mosquitto_available() -> None:
    if shutil.which("mosquitto") is None and not shutil.which("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


def run(**changes: object) -> Deployment:
    """A finished deployment (stopped) whose trace and roles the test inspects."""
    cfg = FlowConfig(**{"sensors": 2, "messages": 3, "reading_prefix": MARKER, **changes})
    dep = Deployment(cfg)
    dep.last_result = dep.run_all(timeout=15)  # type: ignore[attr-defined]
    return dep
