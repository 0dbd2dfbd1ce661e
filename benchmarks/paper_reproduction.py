"""`safelab paper` on the emulated paper SIM at speed 1: every figure's ratio to the paper.

Goals (issue 12): Table 3 within ±2 % (sign_only) and ±5 % (total), every Table 6 difference
(the paper's condition: a token session per handshake) within ±10 % of the paper's printed
figure, and the whole command in under 5 minutes on the 2-core machine. The ratios are what
`safelab paper` itself judges; this script runs the real command in a temporary data
directory, prints the table with the elapsed time against the budget, writes
benchmarks/results/paper_reproduction.json, and exits 1 if a goal is missed.

Run: ``.venv/bin/python benchmarks/paper_reproduction.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = {"full": 300.0, "quick": 60.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "console", "paper", "--json"]
            + (["--quick"] if args.quick else []),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "SAFELAB_DATA_DIR": data_dir},
            check=False,
        )
        elapsed = time.monotonic() - started
    if not done.stdout.strip():
        print(done.stderr, file=sys.stderr)
        return 1
    data = json.loads(done.stdout)
    budget = BUDGET_S["quick" if args.quick else "full"]
    print(f"{'figure':52} {'ours':>9} {'paper':>9} {'ratio':>7}  tolerance   verdict")
    for figure in data["figures"]:
        name = f"{figure['table']} {figure['row']} {figure['quantity']}"
        ours = figure["measured"]
        paper = figure["paper"]
        ratio = figure["ratio"]
        print(
            f"{name[:52]:52} {('–' if ours is None else f'{ours:.1f}'):>9} "
            f"{('–' if paper is None else f'{paper:g}'):>9} "
            f"{('–' if ratio is None else f'{ratio:.3f}'):>7}  "
            f"{figure['tolerance'].split(' (')[0]:11} {figure['verdict']}"
        )
    within = elapsed <= budget
    print(
        f"verdicts: {data['verdicts']}; elapsed {elapsed:.0f} s (budget {budget:.0f} s: "
        f"{'met' if within else 'MISSED'}); command exit code {done.returncode}"
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"paper_reproduction{'_quick' if args.quick else ''}.json").write_text(
        json.dumps({"elapsed_s": elapsed, "budget_s": budget, **data}, indent=2, default=str)
    )
    return 0 if (data["passed"] and within) else 1


if __name__ == "__main__":
    sys.exit(main())
