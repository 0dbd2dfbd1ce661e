"""Where SAFE Lab keeps its files: results database, lab keys.

The user's data directory comes from ``platformdirs`` (``~/.local/share/safelab`` on Linux);
``SAFELAB_DATA_DIR`` overrides it, which tests and scripted runs use to stay self-contained.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """The directory for the results store and lab keys (not created here)."""
    override = os.environ.get("SAFELAB_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("safelab", appauthor=False))


def lab_keys_dir() -> Path:
    """Private directory (mode 0700) for the lab's software keys; created on first use."""
    path = data_dir() / "keys"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
