"""What the signing lab draws of a run: a frozen :class:`RunUpdate` made from a run snapshot.

The run itself (controls, PIN step, store writes) belongs to :mod:`drivers.runs`; the screen
holds its :class:`~drivers.runs.RunHandle`, made before the worker starts, so a stop or pause
pressed during the pre-flight (or while the PIN modal is open) is not lost. Snapshots flow
the other way, posted from the run's thread about every 150 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.bench.stats import StatsSnapshot
from drivers.runs import RunSnapshot, RunState, SignDetail
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


def update_from(snapshot: RunSnapshot) -> RunUpdate | None:
    """The signing lab's view of a snapshot; ``None`` before the first measured state."""
    if snapshot.stats is None or not snapshot.run_id:
        return None
    detail = snapshot.detail if isinstance(snapshot.detail, SignDetail) else None
    return RunUpdate(
        run_id=snapshot.run_id,
        done=snapshot.done,
        planned=snapshot.planned,
        stats=snapshot.stats,
        bins=snapshot.histogram,
        paused=snapshot.state is RunState.PAUSED,
        apdus=detail.apdus if detail is not None else None,
    )
