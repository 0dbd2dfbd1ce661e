"""Streaming statistics against a plain reference computation (numpy, statistics)."""

from __future__ import annotations

import math
import statistics

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.bench.stats import EXACT_METHOD, HDR_METHOD, StreamingStats

durations = st.lists(
    st.integers(min_value=1_000, max_value=5_000_000_000), min_size=2, max_size=400
)


def reference_percentile(values: list[int], p: float) -> float:
    return float(np.percentile(values, p, method="inverted_cdf"))


@settings(max_examples=150, deadline=None)
@given(durations)
def test_streaming_matches_reference(values: list[int]) -> None:
    stats = StreamingStats(threshold_ms=1000)
    for value in values:
        stats.add(value, {"sign": value // 2})
    snap = stats.snapshot()
    assert snap.count == len(values)
    assert math.isclose(snap.mean_ms, statistics.fmean(values) / 1e6, rel_tol=1e-9)
    assert math.isclose(snap.stdev_ms, statistics.stdev(values) / 1e6, rel_tol=1e-6)
    assert snap.min_ms == min(values) / 1e6 and snap.max_ms == max(values) / 1e6
    for p, got in ((50, snap.p50_ms), (90, snap.p90_ms), (99, snap.p99_ms)):
        want = reference_percentile(values, p) / 1e6
        assert math.isclose(got, want, rel_tol=1e-3), (p, got, want)
    assert snap.over_threshold == sum(v > 1_000_000_000 for v in values)
    sign = snap.phases["sign"]
    assert sign.count == len(values)
    assert math.isclose(
        sign.p50_ms, reference_percentile([v // 2 for v in values], 50) / 1e6, rel_tol=1e-3
    )


def test_paper_like_heavy_tail_percentiles() -> None:
    rng = np.random.default_rng(7)
    body = rng.normal(640e6, 15e6, 960).astype(int).tolist()
    tail = rng.uniform(1.2e9, 1.8e9, 40).astype(int).tolist()
    stats = StreamingStats()
    for value in body + tail:
        stats.add(value)
    snap = stats.snapshot()
    assert snap.over_threshold == 40
    assert math.isclose(snap.p99_ms, reference_percentile(body + tail, 99) / 1e6, rel_tol=1e-3)


def test_histogram_bins_hold_every_sample() -> None:
    stats = StreamingStats()
    for value in range(1_000_000, 2_000_000, 1_000):
        stats.add(value)
    histogram = stats.histogram(10, high_ms=2.0)
    assert len(histogram.counts) == 10 and len(histogram.edges_ms) == 11
    assert sum(histogram.counts) == 1000 and histogram.overflow == 0
    assert max(histogram.counts) - min(histogram.counts) <= 5
    assert histogram.edges_ms[0] == 1.0


def test_histogram_body_keeps_the_tail_apart() -> None:
    stats = StreamingStats()
    for value in [10_000_000] * 95 + [11_000_000] * 3 + [900_000_000] * 2:
        stats.add(value)
    histogram = stats.histogram(4)
    assert histogram.overflow == 2 and sum(histogram.counts) == 98
    # P99 is in the tail here, so the body ends at 3 × P90 (10 ms), not at P99 (900 ms).
    assert math.isclose(histogram.edges_ms[-1], 30.0, rel_tol=1e-2)


def test_empty_and_single_sample() -> None:
    stats = StreamingStats()
    assert stats.snapshot().count == 0 and math.isnan(stats.snapshot().p50_ms)
    assert stats.histogram() is None
    stats.add(5_000_000)
    snap = stats.snapshot()
    assert snap.p50_ms == snap.p99_ms == 5.0 and math.isnan(snap.stdev_ms)


def nearest_rank(values: list[int], p: float) -> int:
    """The textbook nearest-rank percentile: the ceil(p/100·n)-th smallest sample."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered) - 1e-9)) - 1]


@settings(max_examples=150, deadline=None)
@given(durations)
def test_final_snapshot_is_exact_when_samples_are_kept(values: list[int]) -> None:
    stats = StreamingStats(threshold_ms=1000, keep_samples=True)
    for value in values:
        stats.add(value, {"sign": value // 3})
    final = stats.final_snapshot()
    assert final.percentile_method == EXACT_METHOD
    for p, got in ((50, final.p50_ms), (90, final.p90_ms), (99, final.p99_ms)):
        assert got == nearest_rank(values, p) / 1e6, p
    sign = final.phases["sign"]
    assert sign.p50_ms == nearest_rank([v // 3 for v in values], 50) / 1e6
    assert sign.p99_ms == nearest_rank([v // 3 for v in values], 99) / 1e6
    # Everything that was already exact is the live snapshot's.
    live = stats.snapshot()
    assert (final.count, final.mean_ms, final.stdev_ms) == (live.count, live.mean_ms, live.stdev_ms)
    assert live.percentile_method == HDR_METHOD


def test_histogram_percentile_can_differ_from_the_exact_one() -> None:
    """Why final figures are exact: a bucket top is not a sample (the issue's P50 479.99 vs
    479.81 ms)."""
    values = [479_810_000 + i for i in range(0, 101, 2)]
    stats = StreamingStats(keep_samples=True)
    for value in values:
        stats.add(value)
    exact = nearest_rank(values, 50) / 1e6
    assert stats.final_snapshot().p50_ms == exact
    assert stats.snapshot().p50_ms != exact


def test_final_snapshot_without_kept_samples_says_it_is_the_histogram() -> None:
    stats = StreamingStats()
    stats.add(1_000_000)
    assert stats.final_snapshot().percentile_method == HDR_METHOD
