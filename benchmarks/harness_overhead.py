"""Harness overhead: a software sign_only run through the runner versus a raw signing loop.

Both sign the paper's 32-byte message with the same P-256 key in the same process and run,
interleaved round by round so that CPU frequency and load drift hit both alike. Reported:

- ratio of medians, runner's timed trial / raw ``cryptography`` signature (goal ≤ 1.15): how
  much the token layer's per-phase timing adds to what a trial measures;
- the runner's own cost per trial: its wall-clock time per trial (statistics, batching, store)
  minus the raw signature's median, in µs.

Run: ``.venv/bin/python benchmarks/harness_overhead.py [--rounds 5] [--n 2000]``. It writes
``benchmarks/results/harness_overhead.json`` and exits 1 if the ratio misses the goal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.15


def raw_loop(key, data: bytes, n: int) -> list[int]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        key.sign(hashlib.sha256(data).digest(), algorithm)
        samples.append(time.perf_counter_ns() - start)
    return samples


def runner_round(n: int) -> tuple[list[int], float]:
    from drivers.bench.runner import ExperimentRunner, RunConfig
    from drivers.bench.store import ResultsStore
    from drivers.tokens.registry import open_token

    store = ResultsStore()
    runner = ExperimentRunner(open_token("software:p256"), RunConfig(n=n, warmup=10), store)
    start = time.perf_counter()
    result = runner.run()
    wall = time.perf_counter() - start
    samples = [total for _, total, _ in store.samples(result.run_id)]
    store.close()
    return samples, wall / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["SAFELAB_DATA_DIR"] = data_dir
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from drivers.bench.runner import PAPER_DATA
        from drivers.tokens.registry import open_token

        key = open_token("software:p256").private_key
        raw_all: list[int] = []
        runner_all: list[int] = []
        wall_per_trial: list[float] = []
        raw_loop(key, PAPER_DATA, 200)  # warm caches
        for _ in range(args.rounds):
            raw_all += raw_loop(key, PAPER_DATA, args.n)
            samples, wall = runner_round(args.n)
            runner_all += samples
            wall_per_trial.append(wall)
    raw_median = statistics.median(raw_all)
    runner_median = statistics.median(runner_all)
    ratio = runner_median / raw_median
    own_cost_us = (statistics.median(wall_per_trial) * 1e9 - raw_median) / 1e3
    report = {
        "rounds": args.rounds,
        "n_per_round": args.n,
        "raw_median_us": raw_median / 1e3,
        "runner_median_us": runner_median / 1e3,
        "ratio_of_medians": ratio,
        "goal": GOAL,
        "runner_own_cost_per_trial_us": own_cost_us,
    }
    out = Path(__file__).resolve().parent / "results" / "harness_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"raw cryptography sign, median      {raw_median / 1e3:8.1f} µs")
    print(f"runner sign_only trial, median     {runner_median / 1e3:8.1f} µs")
    print(f"ratio of medians                   {ratio:8.3f}  (goal ≤ {GOAL})")
    print(f"runner's own cost per trial        {own_cost_us:8.1f} µs (stats, store, loop)")
    print(f"written to {out}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
