"""Virtual reader overhead: the same emulated card in-process versus through pcscd + vpcd.

The emulator runs with no modelled delays (``speed=0``), so what is left is the link: the
in-process call, or pyscard → pcscd → vpcd → TCP → the card thread and back. Both links serve
the same applet, interleaved round by round. Reported: median per-APDU time of each link and
their difference (goal: the virtual reader costs at most 1 ms per APDU more; a naive card
showed ~44 ms, see drivers/cards/vpcd.py for why and the fix).

Run (needs pcscd + vsmartcard-vpcd; starts pcscd if none runs, which needs root):
``.venv/bin/python benchmarks/virtual_reader_overhead.py [--rounds 5] [--n 500]``.
Writes benchmarks/results/virtual_reader_overhead.json; exits 1 if the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.cards.apdu import ObjectRef
from drivers.cards.atr import EMULATOR_ATR
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import (
    INSTANT,
    InProcessTransport,
    IoTSafeApplet,
    provision_lab_card,
)
from drivers.cards.pcsc import PcscTransport, ensure_pcscd, list_readers
from drivers.cards.vpcd import VirtualCard

GOAL_MS = 1.0
DIGEST = bytes(32)


def per_apdu_ms(client: IoTSafeClient, n: int) -> list[float]:
    """Time a realistic mix: sign init + final-hash update + GET RESPONSE, per APDU."""
    times = []
    mark = client.trace.mark()
    for _ in range(n // 3):
        client.sign_init(ObjectRef.of(1))
        client.sign_final_hash(DIGEST)
    for entry in client.trace.since(mark):
        times.append(entry.duration_ns / 1e6)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=600, help="APDUs per round and link")
    args = parser.parse_args()
    started = ensure_pcscd()
    store = provision_lab_card()
    applet = IoTSafeApplet(store, INSTANT, speed=0)
    card = VirtualCard(applet.process_apdu, EMULATOR_ATR, on_reset=applet.reset).insert()
    try:
        deadline = time.monotonic() + 10
        reader = None
        while reader is None and time.monotonic() < deadline:
            reader = next((r.name for r in list_readers() if r.atr == EMULATOR_ATR), None)
            time.sleep(0.1)
        if reader is None:
            print("no reader shows the emulated card", file=sys.stderr)
            return 2
        local = IoTSafeClient(InProcessTransport(applet))
        remote = IoTSafeClient(PcscTransport(reader))
        local.open()
        remote.open()
        local_ms: list[float] = []
        remote_ms: list[float] = []
        for _ in range(args.rounds):
            local_ms += per_apdu_ms(local, args.n)
            remote_ms += per_apdu_ms(remote, args.n)
        local.close()
        remote.close()
    finally:
        card.remove()
        if started is not None:
            started.terminate()
    local_median = statistics.median(local_ms)
    remote_median = statistics.median(remote_ms)
    overhead = remote_median - local_median
    report = {
        "apdus_per_link": len(local_ms),
        "in_process_median_ms": local_median,
        "virtual_reader_median_ms": remote_median,
        "virtual_reader_p99_ms": sorted(remote_ms)[int(0.99 * len(remote_ms))],
        "overhead_per_apdu_ms": overhead,
        "goal_ms": GOAL_MS,
    }
    out = Path(__file__).resolve().parent / "results" / "virtual_reader_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"in-process APDU, median        {local_median:8.3f} ms")
    print(
        f"virtual reader APDU, median    {remote_median:8.3f} ms "
        f"(P99 {report['virtual_reader_p99_ms']:.3f})"
    )
    print(f"overhead per APDU              {overhead:8.3f} ms  (goal ≤ {GOAL_MS} ms)")
    print(f"written to {out}")
    return 0 if overhead <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
