"""What-if accuracy: the model's predicted P50/P99 versus the same scenario measured for real.

For MQTT/TLS, HTTPS, CoAP/DTLS and OpenVPN at RTT 0 (plain loopback), 50 and 150 ms (the link
proxy), with the emulated paper SIM (``profile=paper-sim``) as the client's token, each cell
is one :class:`drivers.runs.WhatIfRun` with ``validate``: the prediction, then ``n`` real
handshakes against the real peer through the emulated link with the emulated card. Goal (issue
14): predicted P50 within ±10% and P99 within ±20% of measured.

The card runs at a speed factor (default 0.25: its 476 ms signature takes ~120 ms) to keep
the benchmark to a few minutes; the model is given the same factor. The calibration used is
the one ``load_calibration`` finds (the user's, else the packaged one), named in the output.
P99 of ``n`` trials is close to the largest trial, so it is noisy for small ``n``; the machine
may be shared, which shows in measured tails first.

``--extra`` adds rows outside the goal, for what the goal does not cover: jitter (HTTPS, CoAP
at ``rtt=50ms,jitter=20ms``) and loss (HTTPS at ``loss=5%``: TCP loss, modelled by the link
proxy and the model alike; a P99 of 20 trials with 5% loss is a matter of luck).

Run: ``.venv/bin/python benchmarks/whatif_accuracy.py [-n 20] [--speed 0.25]
[--protocols mqtt,https,coap,vpn] [--rtts 0,50,150] [--extra]``. Writes
benchmarks/results/whatif_accuracy.json; exits 1 if a cell of the goal misses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.runs import RunHandle, WhatIfRun
from drivers.whatif import Scenario, load_calibration

P50_GOAL = 0.10
P99_GOAL = 0.20


EXTRA = (
    ("https", "rtt=50ms,jitter=20ms"),
    ("coap", "rtt=50ms,jitter=20ms"),
    ("https", "rtt=50ms,loss=5%"),
)


def cell(
    protocol: str, rtt_ms: int, n: int, speed: float, db: Path, link: str | None = None
) -> dict[str, object]:
    scenario = Scenario(
        protocol=protocol,
        token=f"iotsafe:emulated;profile=paper-sim;speed={speed:g};card=whatif-bench",
        link=link or (f"rtt={rtt_ms}ms" if rtt_ms else None),
        n=2000,
    )
    outcome = RunHandle(WhatIfRun(scenario, validate=True, n=n), db_path=db).run()
    outcome.raise_for_error()
    result = outcome.result
    p, m = result.prediction, result.measured
    assert m is not None
    ratio = result.ratios()
    return {
        "protocol": protocol,
        "rtt_ms": rtt_ms,
        "link": scenario.link,
        "predicted_p90_ms": round(p.p90, 2),
        "measured_p90_ms": round(m.p90_ms, 2),
        "p90_ratio": round(ratio["p90"], 3),
        "predicted_p50_ms": round(p.p50, 2),
        "measured_p50_ms": round(m.p50_ms, 2),
        "p50_ratio": round(ratio["p50"], 3),
        "predicted_p99_ms": round(p.p99, 2),
        "measured_p99_ms": round(m.p99_ms, 2),
        "p99_ratio": round(ratio["p99"], 3),
        "p50_ok": abs(ratio["p50"] - 1) <= P50_GOAL,
        "p99_ok": abs(ratio["p99"] - 1) <= P99_GOAL,
        "measured_run": m.run_id,
        "n": m.n,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--speed", type=float, default=0.25)
    parser.add_argument("--protocols", default="mqtt,https,coap,vpn")
    parser.add_argument("--rtts", default="0,50,150")
    parser.add_argument("--extra", action="store_true", help="jitter and loss rows (no goal)")
    args = parser.parse_args()
    calibration = load_calibration()
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="safelab-whatif-bench-") as tmp:
        db = Path(tmp) / "results.sqlite"
        for protocol in args.protocols.split(","):
            for rtt in (int(r) for r in args.rtts.split(",")):
                row = cell(protocol, rtt, args.n, args.speed, db)
                rows.append(row)
                print(
                    f"{protocol:6} rtt {rtt:4} ms  P50 pred {row['predicted_p50_ms']:8.1f} "
                    f"meas {row['measured_p50_ms']:8.1f} ratio {row['p50_ratio']:.3f} "
                    f"{'ok' if row['p50_ok'] else 'MISS'}  P99 pred {row['predicted_p99_ms']:8.1f}"
                    f" meas {row['measured_p99_ms']:8.1f} ratio {row['p99_ratio']:.3f} "
                    f"{'ok' if row['p99_ok'] else 'MISS'}",
                    flush=True,
                )
        extra = []
        for protocol, link in EXTRA if args.extra else ():
            row = cell(protocol, 50, args.n, args.speed, db, link)
            extra.append(row)
            print(
                f"extra {protocol:6} {link:22} P50 {row['p50_ratio']:.3f} "
                f"(pred {row['predicted_p50_ms']:.1f} meas {row['measured_p50_ms']:.1f})  "
                f"P90 {row['p90_ratio']:.3f} (pred {row['predicted_p90_ms']:.1f} meas "
                f"{row['measured_p90_ms']:.1f})  P99 {row['p99_ratio']:.3f}",
                flush=True,
            )
    out = {
        "goal": {"p50": P50_GOAL, "p99": P99_GOAL},
        "n": args.n,
        "speed": args.speed,
        "calibration": calibration.source,
        "calibration_measured_at": calibration.provenance.get("measured_at"),
        "load_average": os.getloadavg(),
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
        "extra": extra,
    }
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "whatif_accuracy.json").write_text(json.dumps(out, indent=2) + "\n")
    missed = [r for r in rows if not (r["p50_ok"] and r["p99_ok"])]
    print(f"{len(rows) - len(missed)}/{len(rows)} cells within the goal; {out['seconds']} s")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
