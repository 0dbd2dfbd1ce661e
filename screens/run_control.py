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


def apdu_entries(token: object, count: int = 6) -> tuple[object, ...] | None:
    """The last ``count`` APDUs if ``token`` keeps a trace (``token.apdu_trace``), else None.

    Duck-typed so card tokens plug in without this module knowing them: ``last_trace(count)``
    (the IoT SAFE token), a ``trace`` or ``apdu_trace`` offering ``last(count)`` (like
    ``drivers.cards.trace.TraceLog``), a callable returning such an object, or any sequence.
    """
    last_trace = getattr(token, "last_trace", None)
    if callable(last_trace):
        return tuple(last_trace(count))
    trace = getattr(token, "apdu_trace", None)
    if trace is None:
        candidate = getattr(token, "trace", None)
        trace = candidate if callable(getattr(candidate, "last", None)) else None
    if trace is None:
        return None
    if callable(trace) and not hasattr(trace, "last"):
        trace = trace()
        if trace is None:
            return None
    last = getattr(trace, "last", None)
    if callable(last):
        return tuple(last(count))
    return tuple(list(trace)[-count:])
