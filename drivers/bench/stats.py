"""Streaming latency statistics in bounded memory, as trials arrive.

Mean and standard deviation are exact (Welford's update); min and max are exact; percentiles come
from an HdrHistogram (the ``hdrhistogram`` package) at 3 significant digits, so a percentile is
within 0.1% of the exact nearest-rank value whatever the number of trials, and memory stays
constant (about 270 kB per histogram). Percentiles use the nearest-rank definition (the value
below which ``p`` percent of the samples lie, rounded up to a sample): the same as
``numpy.percentile(..., method="inverted_cdf")``, and what the tests compare against.

Those histogram percentiles are for the *live* view. Final figures (a run's result, ``runs
show``, exports, compare, the paper tables) are exact order statistics over every sample: a run
made with ``keep_samples=True`` (or recomputed from the store, which holds every sample) gives
them through :meth:`StreamingStats.final_snapshot`, and every snapshot says which method made
its percentiles (:attr:`StatsSnapshot.percentile_method`).

σ is the sample standard deviation (n − 1), the usual choice for measured latencies.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from hdrh.histogram import HdrHistogram

from drivers.tokens.base import PHASES

_LOWEST_NS = 1
_HIGHEST_NS = 3_600_000_000_000  # one hour: a trial longer than that is clamped
_SIGNIFICANT_DIGITS = 3

HDR_METHOD = "nearest rank, HdrHistogram (3 significant digits)"
"""Percentiles of a live snapshot: within 0.1% of the exact value, in constant memory."""
EXACT_METHOD = "nearest rank, exact over every sample"
"""Percentiles of a final snapshot: ``numpy.percentile(..., method="inverted_cdf")``."""


def _ms(ns: float) -> float:
    return ns / 1e6


@dataclass(frozen=True)
class PhaseSummary:
    """Per-phase figures in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Histogram:
    """An immutable histogram of total times: equal-width bins, plus the slower tail."""

    edges_ms: tuple[float, ...]
    """``len(counts) + 1`` bin edges from the fastest trial to the top of the body."""
    counts: tuple[int, ...]
    overflow: int
    """Trials slower than the last edge."""
    total: int


@dataclass(frozen=True)
class StatsSnapshot:
    """An immutable view of the statistics at one moment, safe to hand to another thread."""

    count: int
    mean_ms: float
    stdev_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    over_threshold: int
    threshold_ms: float
    phases: Mapping[str, PhaseSummary] = field(default_factory=dict)
    percentile_method: str = HDR_METHOD

    def as_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "mean_ms": self.mean_ms,
            "stdev_ms": self.stdev_ms,
            "min_ms": self.min_ms,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "over_threshold": self.over_threshold,
            "threshold_ms": self.threshold_ms,
            "phases": {name: vars(summary) for name, summary in self.phases.items()},
            "percentile_method": self.percentile_method,
        }


def exact_percentiles_ms(values_ns: Iterable[int], ps: tuple[float, ...]) -> list[float]:
    """Nearest-rank percentiles (ms) of every value: the smallest sample with at least ``p``
    percent of the samples at or below it (``numpy``'s ``inverted_cdf``)."""
    data = np.asarray(values_ns, dtype=np.int64)
    if not data.size:
        return [math.nan for _ in ps]
    return [_ms(float(v)) for v in np.percentile(data, ps, method="inverted_cdf")]


class _Series:
    """One stream of durations (ns): exact moments, exact extremes, histogram percentiles."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(_LOWEST_NS, _HIGHEST_NS, _SIGNIFICANT_DIGITS)
        self.count = 0
        self._mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, ns: int) -> None:
        self.count += 1
        delta = ns - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (ns - self._mean)
        self.min = min(self.min, ns)
        self.max = max(self.max, ns)
        self.histogram.record_value(min(max(ns, _LOWEST_NS), _HIGHEST_NS))

    @property
    def mean(self) -> float:
        return self._mean if self.count else math.nan

    @property
    def stdev(self) -> float:
        return math.sqrt(self._m2 / (self.count - 1)) if self.count > 1 else math.nan

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile in ns."""
        return self.percentiles((p,))[0]

    def percentiles(self, ps: tuple[float, ...]) -> list[float]:
        """Nearest-rank percentiles in ns, from a cumulative sum over the histogram's counts.

        hdrh's own ``get_value_at_percentile`` rounds the target rank to nearest, which is not
        the nearest-rank definition (it can report a lower sample), and its Python iterators
        are too slow for live redraws; numpy over the counts array takes well under 1 ms.
        """
        if not self.count:
            return [math.nan for _ in ps]
        cumulative = np.cumsum(np.ctypeslib.as_array(self.histogram.counts))
        results = []
        for p in ps:
            rank = max(1, math.ceil(p / 100 * self.count - 1e-9))
            index = int(np.searchsorted(cumulative, rank))
            value = self.histogram.get_value_from_index(index)
            top = float(self.histogram.get_highest_equivalent_value(value))
            # A bucket stands for a range of values; never report beyond the real extremes.
            results.append(min(max(top, float(self.min)), float(self.max)))
        return results


class StreamingStats:
    """Statistics of a run's trials (total time and each phase), updated one trial at a time.

    :meth:`add` only queues the trial (a list append): recording into the histograms costs a
    few µs per value in Python, and doing that between two trials would disturb the next
    one's timing (caches, branch predictors). The queue is folded in when a snapshot is taken
    (every ~200 ms in a live run) or when it reaches :data:`PENDING_LIMIT`, so memory stays
    bounded.
    """

    PENDING_LIMIT = 4096

    def __init__(
        self,
        threshold_ms: float = 1000.0,
        phases: Iterable[str] | None = PHASES,
        *,
        keep_samples: bool = False,
    ) -> None:
        """``phases=None`` accepts any phase name (protocol runs: connect, handshake...).

        Names starting with ``n_`` are counts (``n_sign``: token signatures), not durations,
        and are not summarised here. ``keep_samples`` also keeps every value (8 bytes each, in
        ``array('q')``) so that :meth:`final_snapshot` can give exact order statistics.
        """
        self.threshold_ms = threshold_ms
        self._threshold_ns = threshold_ms * 1e6
        self.total = _Series()
        self._open_phases = phases is None
        self.phases = {name: _Series() for name in (phases or ())}
        self.over_threshold = 0
        self.count = 0
        self._pending: list[tuple[int, Mapping[str, int] | None]] = []
        self.keep_samples = keep_samples
        self._kept_total: array[int] = array("q")
        self._kept_phases: dict[str, array[int]] = {}

    def add(self, total_ns: int, phase_ns: Mapping[str, int] | None = None) -> None:
        self.count += 1
        if total_ns > self._threshold_ns:
            self.over_threshold += 1
        self._pending.append((total_ns, phase_ns))
        if len(self._pending) >= self.PENDING_LIMIT:
            self._fold()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        for total_ns, phase_ns in pending:
            self.total.add(total_ns)
            if self.keep_samples:
                self._kept_total.append(total_ns)
            for name, ns in (phase_ns or {}).items():
                if ns is None or name.startswith("n_"):
                    continue
                if name not in self.phases:
                    if not self._open_phases:
                        continue
                    self.phases[name] = _Series()
                self.phases[name].add(ns)
                if self.keep_samples:
                    self._kept_phases.setdefault(name, array("q")).append(ns)

    def snapshot(self) -> StatsSnapshot:
        self._fold()
        total = self.total
        phases = {
            name: PhaseSummary(
                series.count, _ms(series.mean), *map(_ms, series.percentiles((50, 99)))
            )
            for name, series in self.phases.items()
            if series.count
        }
        p50, p90, p99 = map(_ms, total.percentiles((50, 90, 99)))
        return StatsSnapshot(
            count=total.count,
            mean_ms=_ms(total.mean),
            stdev_ms=_ms(total.stdev),
            min_ms=_ms(total.min) if total.count else math.nan,
            p50_ms=p50,
            p90_ms=p90,
            p99_ms=p99,
            max_ms=_ms(total.max) if total.count else math.nan,
            over_threshold=self.over_threshold,
            threshold_ms=self.threshold_ms,
            phases=phases,
        )

    def final_snapshot(self) -> StatsSnapshot:
        """The snapshot to report once a run is over: exact percentiles where samples were
        kept (``keep_samples=True``), the histogram's otherwise (the method is named in it).

        Mean, σ, min, max and the count over the threshold are exact either way.
        """
        live = self.snapshot()
        if not self.keep_samples or not live.count:
            return live
        p50, p90, p99 = exact_percentiles_ms(self._kept_total, (50, 90, 99))
        phases = {}
        for name, summary in live.phases.items():
            phase_p50, phase_p99 = exact_percentiles_ms(self._kept_phases[name], (50, 99))
            phases[name] = PhaseSummary(summary.count, summary.mean_ms, phase_p50, phase_p99)
        return replace(
            live,
            p50_ms=p50,
            p90_ms=p90,
            p99_ms=p99,
            phases=phases,
            percentile_method=EXACT_METHOD,
        )

    def histogram(
        self, bins: int = 120, high_ms: float | None = None, low_ms: float | None = None
    ) -> Histogram | None:
        """Equal-width bins of the total time from the fastest trial (or ``low_ms``) up.

        Latency has long tails (one collection pause or card retry can be 100× the median),
        so bins from min to max would put every trial in the first bin. By default the body
        ends at P99 or 3×P90, whichever is lower (never above the max), and
        :attr:`Histogram.overflow` counts everything slower. Call it from the thread that
        adds trials (the runner's ``on_progress`` runs there). Under a millisecond whatever n.
        ``low_ms`` and ``high_ms`` together give two runs the same bins, so they compare.
        """
        self._fold()
        total = self.total
        if not total.count:
            return None
        counts = np.ctypeslib.as_array(total.histogram.counts)
        nonzero = np.flatnonzero(counts)
        values = np.array(
            [total.histogram.get_value_from_index(int(i)) for i in nonzero], dtype=float
        )
        low = float(total.min) if low_ms is None else min(low_ms * 1e6, float(total.min))
        if high_ms is None:
            p90, p99 = total.percentiles((90, 99))
            high = min(float(total.max), p99, 3 * p90)
        else:
            high = high_ms * 1e6
        width = (high - low) / bins if high > low else 1.0
        weights = counts[nonzero]
        inside = values <= high
        index = np.clip(((values[inside] - low) // width).astype(int), 0, bins - 1)
        binned = np.bincount(index, weights=weights[inside], minlength=bins)
        return Histogram(
            edges_ms=tuple(_ms(low + i * width) for i in range(bins + 1)),
            counts=tuple(int(c) for c in binned),
            overflow=int(weights[~inside].sum()),
            total=int(total.count),
        )
