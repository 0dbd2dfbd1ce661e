"""SSDTF handshake under a HELLO flood: threads, gateway tables and challenges stay flat.

One MQTT client connects under a registered client ID and sends ``--hellos`` (10,000) HELLOs
with fresh nonces, every fourth for an unregistered client ID, while sensor-1 holds a READY
session. Reported per broker (embedded amqtt with SSDTF admission, Mosquitto): the time to
send them, verdicts the gateway reached, challenges it signed, live threads before / at peak /
after, the peak size of every gateway table, and whether sensor-1's session survived and still
delivers a reading. Before issue 10 each HELLO cost a signature and a ``threading.Timer``.

Run: ``python benchmarks/ssdtf_hello_flood.py [--hellos 10000]``. Writes
``benchmarks/results/ssdtf_hello_flood.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def flood(broker: str, hellos: int) -> dict[str, object]:
    from drivers.ssdtf.config import FlowConfig
    from drivers.ssdtf.deployment import Deployment
    from drivers.ssdtf.flood import hello_flood

    dep = Deployment(
        FlowConfig(broker=broker, sensors=2, messages=1, capture=False, auth_deadline_s=30.0)
    )
    try:
        dep.start()
        dep.connect_sensors()
        report = hello_flood(dep, hellos, "sensor-2", timeout=120).as_dict()
        user = dep.users["user-1"]
        before = len(user.readings)
        dep.sensors["sensor-1"].send(b"after the flood")
        report["legit_reading_delivered"] = user.wait_for(before + 1, 10)
        return report
    finally:
        dep.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hellos", type=int, default=10_000)
    args = parser.parse_args()
    brokers = ["embedded"] + (["mosquitto"] if shutil.which("mosquitto") else [])
    results = {b: flood(b, args.hellos) for b in brokers}
    out = {
        "benchmark": "ssdtf_hello_flood",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hellos": args.hellos,
        "results": results,
    }
    path = Path(__file__).resolve().parent / "results" / "ssdtf_hello_flood.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    for broker, r in results.items():
        print(
            f"{broker:10} {r['hellos']} HELLOs in {r['seconds']:.2f} s: {r['verdicts']} verdicts, "
            f"{r['challenges']} challenges, threads {r['threads_before']}→{r['threads_peak']}"
            f"→{r['threads_after']}, tables {r['sizes_peak']}, "
            f"legit session {r['survivors']} delivers: {r['legit_reading_delivered']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
