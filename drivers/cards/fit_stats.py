"""The statistics of a profile fit: Table 3 rows, the heavy-tail split, a distribution's σ.

Pure functions of trial times (ms); :mod:`drivers.cards.fit` decides what they are applied to.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drivers.cards.emulator.profile import Dist

TAIL_K = 6.0
"""Tail threshold in robust σ (1.4826·MAD) above the median of the trial totals."""

MAD_TO_SIGMA = 1.4826
"""MAD of a normal distribution times this is its σ."""

THRESHOLD_MS = 1000.0
"""The paper's ">1 s" column."""


@dataclass(frozen=True)
class ModeStats:
    """The paper's Table 3 row for a list of trial times (ms)."""

    n: int
    mean_ms: float
    stdev_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    over_1s: float
    """Share of trials above 1 s (0..1)."""

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> ModeStats:
        """Mean, sample σ (n−1), nearest-rank percentiles as in ``drivers.bench.stats``."""
        values = np.asarray(values_ms, dtype=float)
        p50, p90, p99 = np.percentile(values, [50, 90, 99], method="inverted_cdf")
        return cls(
            n=len(values),
            mean_ms=float(values.mean()),
            stdev_ms=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            over_1s=float((values > THRESHOLD_MS).mean()),
        )

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


STAT_FIELDS = ("mean_ms", "stdev_ms", "p50_ms", "p90_ms", "p99_ms", "over_1s")


@dataclass(frozen=True)
class ModeComparison:
    """A mode's recorded statistics next to what the fitted profile models for it."""

    mode: str
    run_ids: tuple[int, ...]
    run: ModeStats
    model: ModeStats

    def rel_diff(self, stat: str) -> float:
        """(model − run) / run for one of :data:`STAT_FIELDS` (``inf`` if run is 0 and not model).

        For ``over_1s`` (a share) this is relative too; use the two values for small shares.
        """
        run, model = getattr(self.run, stat), getattr(self.model, stat)
        if run == 0:
            return 0.0 if model == 0 else math.inf
        return (model - run) / run

    def rows(self) -> list[tuple[str, float, float]]:
        """``(stat, run, model)`` rows for a table."""
        return [(s, getattr(self.run, s), getattr(self.model, s)) for s in STAT_FIELDS]


@dataclass(frozen=True)
class PhaseMoments:
    """A phase's body statistics from the run, and the card time left after the kept parts."""

    run_mean: float
    run_var: float
    fixed_mean: float
    fixed_var: float
    card_mean: float
    card_var: float
    body_trials: int


@dataclass(frozen=True)
class Tail:
    """A phase's heavy tail: probability, size distribution, and the excesses it came from."""

    p: float
    dist: Dist
    count: int
    excess_ms: tuple[float, ...]


def robust_threshold(values: np.ndarray) -> float:
    """Median + :data:`TAIL_K` robust σ (:data:`MAD_TO_SIGMA`·MAD) of ``values``."""
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    scale = MAD_TO_SIGMA * mad if mad > 0 else 0.01 * abs(median)
    return median + TAIL_K * scale


def split_tail(
    totals_ms: Sequence[float], phases_ms: dict[str, list[float]]
) -> tuple[np.ndarray, dict[str, Tail]]:
    """Body mask of the trials, and a tail per phase that carried tail trials.

    A trial is a tail trial when its total is above :func:`robust_threshold`; its phase is the
    one furthest above its own body median, and the tail's size is that excess.
    """
    totals = np.asarray(totals_ms)
    body = totals <= robust_threshold(totals)
    phases = {p: np.asarray(v) for p, v in phases_ms.items()}
    medians = {p: float(np.median(v[body])) for p, v in phases.items()}
    excess: dict[str, list[float]] = {}
    for idx in np.flatnonzero(~body):
        over = {p: phases[p][idx] - medians[p] for p in phases}
        culprit = max(over, key=lambda p: over[p])
        excess.setdefault(culprit, []).append(float(over[culprit]))
    tails: dict[str, Tail] = {}
    for phase, values in excess.items():
        if len(values) == 1:
            dist = Dist("constant", {"ms": values[0]})
        else:
            dist = Dist(
                "normal",
                {"mean_ms": float(np.mean(values)), "sigma_ms": float(np.std(values, ddof=1))},
            )
        tails[phase] = Tail(len(values) / len(totals), dist, len(values), tuple(values))
    return body, tails


def body_sd(dist: Dist) -> float:
    """σ of a base distribution's body (what the variance split weighs by)."""
    p = dist.params
    if dist.kind == "normal":
        return p["sigma_ms"]
    if dist.kind == "lognormal":
        return dist.mean_ms * math.sqrt(math.exp(p["sigma"] ** 2) - 1)
    if dist.kind == "uniform":
        return (p["high_ms"] - p["low_ms"]) / math.sqrt(12)
    if dist.kind == "exponential":
        return p["mean_ms"]
    return 0.0
