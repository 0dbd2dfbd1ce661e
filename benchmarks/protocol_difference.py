"""The paper's main finding, measured: token − software = the token's signing time.

For every protocol, the emulated paper SIM at speed 1 (``iotsafe:emulated;profile=paper-sim``)
and the software key connect to the same real peer, interleaved by condition, and the
difference of their mean connection times is compared with the mean time the card spent
signing inside those handshakes (goal: within ±5%). With session resumption (MQTT, HTTPS) the
difference must be under 5 ms (no signature at all). Runs go to a temporary results store.

Run: ``.venv/bin/python benchmarks/protocol_difference.py [-n 30] [--protocols ...]``
(~8 minutes at n=30: the paper SIM takes ~0.5 s per signature and OpenVPN ~1.2 s per
connection). Writes benchmarks/results/protocol_difference.json; exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--protocols", default="vpn,mqtt,coap,https")
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["SAFELAB_DATA_DIR"] = data_dir
        from drivers.bench.store import ResultsStore
        from drivers.protocols.experiment import table6

        rows = table6(
            f"iotsafe:emulated;profile=paper-sim;speed={args.speed:g}",
            ResultsStore(),
            n=args.n,
            protocols=tuple(args.protocols.split(",")),
            progress=lambda text: print(f"  running {text}", file=sys.stderr),
        )
    report = []
    ok = True
    for row in rows:
        ratio = row.difference_ms / row.token_sign_ms if row.token_sign_ms else float("nan")
        resumed_diff = (
            row.resumed_token_ms - row.resumed_software_ms
            if row.resumed_token_ms is not None
            else None
        )
        within = abs(ratio - 1) <= 0.05
        resumed_ok = resumed_diff is None or resumed_diff < 5.0
        ok &= within and resumed_ok
        report.append(
            {**row.as_dict(), "difference_over_sign": ratio, "resumed_difference_ms": resumed_diff}
        )
        resumed = f"{resumed_diff:+.2f} ms" if resumed_diff is not None else "n/a"
        print(
            f"{row.protocol:6} software {row.software_ms:8.1f}  token {row.token_ms:8.1f}  "
            f"diff {row.difference_ms:7.1f}  token sign {row.token_sign_ms:7.1f}  "
            f"diff/sign {ratio:.3f} ({'ok' if within else 'MISSED'})  resumed diff "
            f"{resumed} ({'ok' if resumed_ok else 'MISSED'})"
        )
    out = Path(__file__).resolve().parent / "results" / "protocol_difference.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
