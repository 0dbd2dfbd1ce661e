"""Compare two stored runs: ratios of medians and of P99, with the sample counts behind them."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.bench.export import run_stats
from drivers.bench.stats import StatsSnapshot
from drivers.bench.store import ResultsStore, RunRecord
from drivers.errors import StoreError


@dataclass(frozen=True)
class Comparison:
    a: RunRecord
    b: RunRecord
    a_stats: StatsSnapshot
    b_stats: StatsSnapshot

    @property
    def p50_ratio(self) -> float:
        """B's median over A's: 2.0 means B is twice as slow."""
        return self.b_stats.p50_ms / self.a_stats.p50_ms

    @property
    def p99_ratio(self) -> float:
        return self.b_stats.p99_ms / self.a_stats.p99_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "a": {
                "run": self.a.id,
                "mode": self.a.mode,
                "token": self.a.token_uri,
                "n": self.a_stats.count,
                "p50_ms": self.a_stats.p50_ms,
                "p99_ms": self.a_stats.p99_ms,
                "emulated": self.a.emulated,
            },
            "b": {
                "run": self.b.id,
                "mode": self.b.mode,
                "token": self.b.token_uri,
                "n": self.b_stats.count,
                "p50_ms": self.b_stats.p50_ms,
                "p99_ms": self.b_stats.p99_ms,
                "emulated": self.b.emulated,
            },
            "p50_ratio_b_over_a": self.p50_ratio,
            "p99_ratio_b_over_a": self.p99_ratio,
        }


def compare_runs(store: ResultsStore, a_id: int, b_id: int) -> Comparison:
    a, b = store.get_run(a_id), store.get_run(b_id)
    a_stats, b_stats = run_stats(store, a).final_snapshot(), run_stats(store, b).final_snapshot()
    for record, stats in ((a, a_stats), (b, b_stats)):
        if stats.count == 0:
            raise StoreError(
                f"run {record.id} has no samples to compare",
                "pick runs with samples (see `safelab runs list`)",
            )
    return Comparison(a, b, a_stats, b_stats)
