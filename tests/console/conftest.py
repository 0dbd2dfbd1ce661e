"""Fixtures for the console tests: a lab on a temp results store, and pilot helpers.

The console is driven for real: real tokens (software keys, the SoftHSM2 token from
``tests/conftest.py``), a real SQLite store, real workers. Helpers wait for conditions
instead of sleeping a fixed time, so tests stay fast and stable on slow machines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from drivers.tokens.discovery import Discovery, TokenEntry, discover_builtin
from screens.lab import Lab


def builtin_only() -> Discovery:
    """Discovery limited to the built-in keys: what snapshots show on every machine."""
    return Discovery(builtin=tuple(discover_builtin()))


@pytest.fixture(autouse=True)
def _softhsm_before_discovery(softhsm: object) -> None:
    """Create the SoftHSM2 token (and set SOFTHSM2_CONF) before any console test loads modules.

    Discovery loads SoftHSM2 from its well-known path, and python-pkcs11 initialises a module
    once per process: loaded first without SOFTHSM2_CONF, it would never see the test token.
    """


def emulated_cards() -> list[TokenEntry]:
    """The cards triage offers, limited to the emulated profiles (no PC/SC readers): the same
    on every machine, and never waiting on a reader."""
    from drivers.cards.emulator import list_profiles

    return [
        TokenEntry(
            uri=f"iotsafe:emulated;profile={name}",
            kind="iotsafe",
            label=f"emulated IoT SAFE card, profile {name}",
            emulated=True,
        )
        for name in list_profiles()
    ]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    exports = tmp_path / "exports"
    exports.mkdir()
    return Lab(db_path=tmp_path / "results.sqlite", export_dir=exports, cards=emulated_cards)


async def wait_for(
    pilot: Pilot[object], condition: Callable[[], bool], timeout: float = 20.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` holds; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


def run(coroutine: object) -> None:
    """Run an async test body (the suite does not depend on an asyncio pytest plugin)."""
    asyncio.run(coroutine)  # type: ignore[arg-type]


def text_of(widget: object, width: int = 160) -> str:
    """What a Static shows, as plain text (its Rich renderable rendered without styles)."""
    import io

    from rich.console import Console

    content = getattr(widget, "content", widget)
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(content)
    return console.export_text()


def seed_run(
    db: Path,
    mode: str,
    n: int,
    planned: int,
    median_ms: float,
    *,
    label: str = "lab",
    emulated: bool = False,
    status: str = "incomplete",
    seed: int = 0,
) -> int:
    """Store one run of ``n`` log-normal trials (of ``planned``) through the real store."""
    import numpy as np

    from drivers.bench.store import ResultsStore

    rng = np.random.default_rng(seed)
    totals = rng.lognormal(np.log(median_ms * 1e6), 0.1, n).astype(int)
    with ResultsStore(db) as store:
        run_id = store.create_run(
            experiment="sign",
            mode=mode,
            n_planned=planned,
            warmup=0,
            data_len=32,
            hash_on="host",
            threshold_ms=1000.0,
            token={
                "kind": "iotsafe" if emulated else "pkcs11",
                "label": label,
                "emulated": emulated,
                "uri": f"x:{label}",
            },
            versions={},
            extra={},
        )
        store.add_samples(run_id, [(i, int(t), {"sign": int(t)}) for i, t in enumerate(totals)])
        store.finish_run(run_id, status, None if status == "complete" else "stopped by the user")
    return run_id
