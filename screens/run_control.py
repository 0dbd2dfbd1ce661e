"""The bridge between the signing lab and a runner in a worker thread: controls and snapshots.

The UI never holds the runner itself: it holds a :class:`RunHandle` made before the worker
starts, so a stop or pause pressed during the pre-flight (or while the PIN modal is open) is
not lost. Updates flow the other way as frozen :class:`RunUpdate` snapshots, built in the
runner's thread (where its statistics may be read) and posted about every 150 ms.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from drivers.bench.runner import ExperimentRunner
from drivers.bench.stats import StatsSnapshot
from drivers.tokens.base import Token
from screens.widgets.histogram import LatencyBins


@dataclass(frozen=True)
class RunUpdate:
    """Everything the signing lab redraws, frozen so the UI thread can keep it."""

    run_id: int
    done: int
    planned: int
    stats: StatsSnapshot
    bins: LatencyBins | None
    paused: bool = False
    apdus: tuple[object, ...] | None = None
    """The token's last APDUs, or ``None`` when the token keeps no APDU trace."""


class RunHandle:
    """Thread-safe stop/pause for a run whose runner may not exist yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runner: ExperimentRunner | None = None
        self._stopped = False
        self._paused = False

    def attach(self, runner: ExperimentRunner) -> None:
        """Called by the worker once the runner exists; applies controls pressed before."""
        with self._lock:
            self._runner = runner
            if self._stopped:
                runner.stop()
            elif self._paused:
                runner.pause()

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._runner is not None:
                self._runner.stop()

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            if self._runner is not None:
                self._runner.pause()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            if self._runner is not None:
                self._runner.resume()


def apdu_entries(token: Token, count: int = 6) -> tuple[object, ...] | None:
    """The last ``count`` APDUs of ``token``, or ``None`` if it keeps no trace (not a card)."""
    return tuple(token.last_trace(count)) if token.keeps_trace else None
