"""Console benchmarks: start-up time to the first screen, and UI responsiveness under load.

1. Start-up: a fresh ``python`` process imports the console, builds the App and runs it
   headless until the first screen (the token picker) is mounted, then until discovery has
   filled its list. Timed from the parent (process start included) and inside the child.
2. Streaming: a software sign_only run of 100k trials through the signing lab, headless at
   80×24. Reported: redraws per second of the live view, event-loop lag (a 50 ms timer's
   lateness: what a keypress would wait), samples dropped (planned − stored), and the
   process's RSS over the run (flat memory means the UI keeps snapshots, not samples).

Numbers are reported, not asserted. Run:
``python benchmarks/console_startup.py [--rounds 3] [--n 100000]``; results go to
``benchmarks/results/console_startup.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def child_startup() -> None:
    """Runs in a fresh process: print when the first screen mounts and when tokens are listed."""
    t0 = time.perf_counter()
    from console.app import SafeLabApp
    from screens.tokens import TokenPickerScreen

    t_import = time.perf_counter()

    async def body() -> dict[str, float]:
        app = SafeLabApp()
        async with app.run_test(size=(80, 24)) as pilot:
            while not isinstance(app.screen, TokenPickerScreen):
                await pilot.pause(0.005)
            t_screen = time.perf_counter()
            while not app.screen.entries:
                await pilot.pause(0.005)
            t_tokens = time.perf_counter()
        return {
            "import_s": t_import - t0,
            "first_screen_s": t_screen - t0,
            "tokens_listed_s": t_tokens - t0,
        }

    print(json.dumps(asyncio.run(body())))


def startup(rounds: int) -> dict[str, object]:
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - start
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["process_wall_s"] = wall
        runs.append(result)
    keys = runs[0].keys()
    return {key: statistics.median(r[key] for r in runs) for key in keys} | {"rounds": rounds}


TICK_S = 0.05
"""The lag probe: a 50 ms timer whose lateness is what a keypress would wait."""


def lag_summary(lags: list[float]) -> dict[str, object]:
    """P50/max event-loop lag in ms, or None with the reason when there is no sample.

    Why a run can have none: a short run (``--n 20000`` on a fast machine) is finished before
    the first 50 ms tick, so nothing was measured; that is a result to report, not a crash.
    """
    if not lags:
        return {
            "lag_samples": 0,
            "loop_lag_ms_p50": None,
            "loop_lag_ms_max": None,
            "lag_note": f"no lag samples: the run ended before the first {TICK_S * 1000:.0f} ms "
            "tick; use a larger --n to measure responsiveness",
        }
    return {
        "lag_samples": len(lags),
        "loop_lag_ms_p50": statistics.median(lags) * 1000,
        "loop_lag_ms_max": max(lags) * 1000,
    }


def streaming_line(r: dict[str, object]) -> str:
    """One line for the streaming results, saying so when a measure has no samples."""
    if r["lag_samples"]:
        lag = f"event-loop lag P50 {r['loop_lag_ms_p50']:.1f} ms max {r['loop_lag_ms_max']:.1f} ms"
    else:
        lag = str(r["lag_note"])
    rss = (
        f"RSS {r['rss_mb_first']:.0f} → {r['rss_mb_last']:.0f} MB"
        if r["rss_mb_first"] is not None
        else "RSS not sampled (run shorter than 1 s)"
    )
    return (
        f"streaming {r['trials']} software trials in {r['elapsed_s']:.1f} s: "
        f"{r['redraws_per_s']:.1f} redraws/s, {lag}, samples dropped {r['samples_dropped']}, "
        f"{rss}"
    )


def streaming(n: int) -> dict[str, object]:
    from console.app import SafeLabApp
    from drivers.bench.store import ResultsStore
    from screens.lab import Lab
    from screens.signing import SigningLabScreen

    draws: list[float] = []

    class CountingLab(SigningLabScreen):
        """The real signing lab, counting how often the live view is redrawn."""

        def _draw(self, update):  # type: ignore[no-untyped-def]
            draws.append(time.perf_counter())
            super()._draw(update)

    db = Path(tempfile.mkdtemp()) / "results.sqlite"
    lab = Lab(db_path=db)

    async def body() -> dict[str, object]:
        from screens.registry import ScreenSpec, discover_specs

        specs = [
            ScreenSpec(s.name, s.title, s.description, s.order, CountingLab)
            if s.name == "signing"
            else s
            for s in discover_specs()
        ]
        app = SafeLabApp(lab, specs, start="signing")
        lags: list[float] = []
        rss: list[tuple[int, float]] = []
        async with app.run_test(size=(80, 24)) as pilot:
            while not isinstance(app.screen, SigningLabScreen):
                await pilot.pause(0.01)
            screen = app.screen
            screen.query_one("#n").value = str(n)
            draws.clear()
            running = True

            async def probe() -> None:
                # Runs beside the key press: pilot.press() itself waits while the app is
                # busy, so a probe started after it would miss the run (and find no lag).
                next_tick = time.perf_counter() + TICK_S
                last_rss = 0.0
                while running:
                    await asyncio.sleep(max(next_tick - time.perf_counter(), 0))
                    now = time.perf_counter()
                    lags.append(now - next_tick)
                    next_tick = now + TICK_S
                    if now - last_rss >= 1.0:
                        done = screen.last_update.done if screen.last_update else 0
                        rss.append((done, _rss_mb()))
                        last_rss = now

            start = time.perf_counter()
            prober = asyncio.create_task(probe())
            await pilot.press("f5")
            while screen.finished_run_id == 0:
                await asyncio.sleep(0.005)
            running = False
            await prober
            elapsed = time.perf_counter() - start
            stats_count = screen.last_update.stats.count
            run_id = screen.finished_run_id
        with ResultsStore(db) as store:
            stored = store.get_run(run_id).n_samples
        live = [t for t in draws if t >= start]
        return {
            "trials": n,
            "elapsed_s": elapsed,
            "redraws": len(live),
            "redraws_per_s": len(live) / elapsed,
            **lag_summary(lags),
            "samples_stored": stored,
            "samples_in_final_snapshot": stats_count,
            "samples_dropped": n - stored,
            "rss_mb_first": rss[0][1] if rss else None,
            "rss_mb_last": rss[-1][1] if rss else None,
            "rss_mb_samples": rss,
        }

    os.environ.setdefault("SAFELAB_DATA_DIR", str(db.parent))
    return asyncio.run(body())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_startup()
        return
    os.environ.setdefault("SAFELAB_DATA_DIR", tempfile.mkdtemp())
    results = {"startup": startup(args.rounds), "streaming": streaming(args.n)}
    out = ROOT / "benchmarks" / "results" / "console_startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    s, r = results["startup"], results["streaming"]
    print(
        f"start-up: first screen {s['first_screen_s'] * 1000:.0f} ms after process start "
        f"(imports {s['import_s'] * 1000:.0f} ms), tokens listed {s['tokens_listed_s'] * 1000:.0f}"
        f" ms; whole process {s['process_wall_s'] * 1000:.0f} ms (median of {s['rounds']})"
    )
    print(streaming_line(r))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
