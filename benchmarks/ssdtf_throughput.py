"""SSDTF throughput and cost: what authenticity + re-encryption + pseudonyms cost per message.

Reported, all in one run on this machine:

- end-to-end readings/s of SSDTF (sensor → gateway → DS → data user, all checks on) on the
  embedded amqtt broker and on Mosquitto, with the tap off (the tap adds a hop), with the
  PRE work in worker processes (``--workers``, default 2 per gateway, DS and data user) and,
  for comparison, on Mosquitto with everything in one process; each with the CPU one reading
  costs over all processes (this one, the workers, Mosquitto) and the rate that cost allows on
  two idle cores: the machine is shared, so the wall-clock rate depends on the others' load
  (the load average is recorded at start and end);
- the same count of QoS 1 messages, publisher → subscriber, as plain MQTT over TLS on
  Mosquitto (self-signed server certificate made here; TLS 1.2+ as Mosquitto and OpenSSL
  negotiate), and as plain MQTT without TLS: the baselines SSDTF replaces or adds to;
- the per-message cost breakdown (median ms): sign (device key through the token interface),
  encrypt, verify at the gateway, re-encrypt at the gateway (share #1) and at the DS (share
  #2), the DS's per-destination re-wrap (X25519 + ChaCha20-Poly1305) and the user's unwrap,
  decrypt at the data user (two cfrag proofs checked, then decryption);
- per SSDTF run, the CPU per reading split by process: this one (sensor, gateway, DS and
  data user threads, paho), each role's worker processes, the broker;
- the handshake time (CONNECT to READY) with the device key on the emulated paper SIM
  (``iotsafe:emulated;profile=paper-sim``, real-time speed) versus the software key.

Each run also records ``decrypt_probe_ms``: the data user's opening primitive timed in this
process just before it, because this VM's speed drifts by tens of per cent within minutes.

Run: ``python benchmarks/ssdtf_throughput.py [--messages 600] [--repeat 3] [--workers 2]
[--max-pending 64]``. Writes
``benchmarks/results/ssdtf_throughput.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAPER_CARD = "iotsafe:emulated;profile=paper-sim;speed=1.0"
GOAL = 250.0
"""Issue 10's goal: readings/s end to end on 2 cores."""
SSDTF_RUNS = ("ssdtf_embedded", "ssdtf_mosquitto", "ssdtf_mosquitto_one_process")


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), e.g. the Mosquitto we started."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers_cpu_s(dep: object) -> dict[str, float]:
    """CPU seconds of each role's worker processes, by role name."""
    out: dict[str, float] = {}
    for role in (dep.gateway, dep.ds, *dep.users.values()):  # type: ignore[attr-defined]
        workers = getattr(role, "workers", None)
        if workers is not None:
            out[role.name] = workers.cpu_seconds()
    return out


_PROBE: dict[str, object] = {}


def decrypt_probe_ms(rounds: int = 20) -> float:
    """Median ms of the data user's opening primitive (capsule check, two cfrag proofs,
    decryption) measured in this process just before a run: how fast the VM is *now*. Its
    speed drifts (the same primitive took 2.25 to 3.81 ms on one night), and a run's rate
    moves with it; recorded per run so a slow run can be told from slower code."""
    from drivers.ssdtf.pre import UmbralBackend

    if not _PROBE:
        pre = UmbralBackend()
        owner, receiver = pre.keygen("MS"), pre.keygen("U")
        k1, k2 = pre.conversion_keys(owner, receiver.public)
        capsule, ct = pre.encrypt(owner.public, b"probe")
        keys = {
            "owner_public": owner.public,
            "owner_verifying": owner.verifying,
            "receiver_public": receiver.public,
        }
        cfrags = [pre.reencrypt(capsule, k, **keys) for k in (k1, k2)]
        _PROBE.update(pre=pre, receiver=receiver, owner=owner, capsule=capsule, ct=ct)
        _PROBE["cfrags"] = cfrags
    pre, receiver, owner = _PROBE["pre"], _PROBE["receiver"], _PROBE["owner"]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        pre.decrypt(  # type: ignore[attr-defined]
            receiver,
            owner_public=owner.public,  # type: ignore[attr-defined]
            owner_verifying=owner.verifying,  # type: ignore[attr-defined]
            capsule=_PROBE["capsule"],
            cfrags=_PROBE["cfrags"],
            ciphertext=_PROBE["ct"],
        )
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def ssdtf_rate(
    broker: str, messages: int, workers: int, max_pending: int | None = None
) -> dict[str, object]:
    """End-to-end readings/s, and the CPU one reading costs over *all* processes (this one,
    the roles' worker processes, Mosquitto): ``cpu_ms_per_reading``. From it,
    ``ceiling_per_s_2_cores`` = min(2 cores / that cost, 1 core / the main process's share):
    the rate this code could reach with both cores to itself, which a machine shared with
    other jobs does not give it."""
    from drivers.ssdtf.config import FlowConfig
    from drivers.ssdtf.deployment import Deployment

    dep = Deployment(
        FlowConfig(
            broker=broker,
            sensors=1,
            messages=messages,
            capture=False,
            ack_timeout_s=5.0,
            workers=workers,
            **({} if max_pending is None else {"max_pending": max_pending}),
        )
    )
    probe_ms = decrypt_probe_ms()
    try:
        dep.start()
        dep.connect_sensors()
        process = getattr(dep.broker, "process", None)
        pid = process.pid if process is not None else None
        main0 = time.process_time()
        workers0 = _workers_cpu_s(dep)
        broker0 = _proc_cpu_s(pid) if pid else 0.0
        start = time.perf_counter()
        dep.send_readings()
        dep.wait_delivered(messages, 120)
        elapsed = time.perf_counter() - start
        main_cpu = time.process_time()
        workers1 = _workers_cpu_s(dep)
        broker1 = _proc_cpu_s(pid) if pid else 0.0
        received = len(dep.users["user-1"].readings)
    finally:
        dep.stop()
    per = 1000 / max(received, 1)
    main_ms = (main_cpu - main0) * per
    workers_ms = {name: round((workers1[name] - workers0[name]) * per, 3) for name in workers1}
    broker_ms = (broker1 - broker0) * per
    cpu_ms = main_ms + sum(workers_ms.values()) + broker_ms
    return {
        "workers": workers,
        "max_pending": dep.cfg.max_pending,
        "decrypt_probe_ms": probe_ms,
        "messages": received,
        "seconds": elapsed,
        "per_s": received / elapsed,
        "cpu_ms_per_reading": cpu_ms,
        "main_process_cpu_ms_per_reading": main_ms,
        "workers_cpu_ms_per_reading": workers_ms,
        "broker_process_cpu_ms_per_reading": broker_ms,
        # two cores for the whole cost, but never more than one core for the main process
        "ceiling_per_s_2_cores": min(2000 / cpu_ms, 1000 / main_ms) if main_ms else 0.0,
    }


def make_tls_files(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # Mosquitto started as root drops to its own user, which must read these throw-away files.
    directory.chmod(0o755)
    cert_path.chmod(0o644)
    key_path.chmod(0o644)
    return cert_path, key_path


def plain_mqtt_rate(messages: int, tls: bool) -> dict[str, float]:
    """QoS 1 publisher → subscriber through Mosquitto, with or without TLS."""
    import subprocess

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from drivers.ssdtf.brokers import _wait_port
    from drivers.ssdtf.netloop import free_port

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = Path(tmp) / "m.conf"
        text = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        if tls:
            cert, key = make_tls_files(Path(tmp))
            text += f"certfile {cert}\nkeyfile {key}\n"
        conf.write_text(text + "log_dest none\n")
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            _wait_port("127.0.0.1", port, 5)
            got = threading.Event()
            count = [0]

            def on_message(client, userdata, msg) -> None:
                count[0] += 1
                if count[0] >= messages:
                    got.set()

            clients = []
            for role in ("sub", "pub"):
                client = mqtt.Client(
                    CallbackAPIVersion.VERSION2, client_id=f"bench-{role}", protocol=mqtt.MQTTv311
                )
                if tls:
                    client.tls_set(ca_certs=str(cert))
                client.connect("localhost", port)
                client.loop_start()
                clients.append(client)
            sub, pub = clients
            sub.on_message = on_message
            subscribed = threading.Event()
            sub.on_subscribe = lambda *a: subscribed.set()
            sub.subscribe("bench/data", 1)
            subscribed.wait(5)
            payload = os.urandom(40)
            start = time.perf_counter()
            for _ in range(messages):
                pub.publish("bench/data", payload, qos=1)
            got.wait(60)
            elapsed = time.perf_counter() - start
            for client in clients:
                client.disconnect()
                client.loop_stop()
        finally:
            proc.terminate()
            proc.wait(5)
    return {"messages": count[0], "seconds": elapsed, "per_s": count[0] / elapsed}


def cost_breakdown(rounds: int) -> dict[str, float]:
    """Median ms of each per-message operation, on the real role code paths' primitives."""
    import hashlib

    from drivers.ssdtf import binding, rewrap, wire
    from drivers.ssdtf.pre import UmbralBackend
    from drivers.ssdtf.signing import TokenSigner
    from drivers.ssdtf.wire import MsgType, T
    from drivers.tokens.registry import open_token

    pre = UmbralBackend()
    owner, receiver = pre.keygen("MS"), pre.keygen("U")
    wrap_keys = rewrap.keygen("U")
    k1, k2 = pre.conversion_keys(owner, receiver.public)
    signer = TokenSigner("sensor-1", open_token("software:p256"))
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "sign",
            "encrypt",
            "verify",
            "reencrypt_gateway",
            "reencrypt_ds",
            "rewrap_ds",
            "unwrap_user",
            "decrypt",
        )
    }
    topic = "ssdtf/v1/up/sensor-1"

    def timed(name: str, call, *args, **kwargs):
        start = time.perf_counter_ns()
        out = call(*args, **kwargs)
        samples[name].append((time.perf_counter_ns() - start) / 1e6)
        return out

    keys = {
        "owner_public": owner.public,
        "owner_verifying": owner.verifying,
        "receiver_public": receiver.public,
    }
    for index in range(rounds):
        capsule, ct = timed("encrypt", pre.encrypt, owner.public, b"reading %d" % index)
        fields = {
            T.CID: b"sensor-1",
            T.SID: b"\0" * 16,
            T.SEQ: wire.u64(index + 1),
            T.TS: wire.u64(0),
            T.KID: signer.public().kid,
            T.ALG: bytes([signer.alg]),
            T.CAPSULE: capsule,
            T.CT: ct,
        }
        env_bytes = wire.encode(
            MsgType.DATA,
            fields,
            flags=1,
            sign=lambda tbs: timed("sign", signer.sign, tbs),
            topic=topic,
        )
        env = wire.decode(env_bytes)
        assert timed("verify", signer.public().verify, env.get(T.SIG), env.tbs(topic))
        c1 = timed("reencrypt_gateway", pre.reencrypt, capsule, k1, **keys)
        c2 = timed("reencrypt_ds", pre.reencrypt, capsule, k2, **keys)
        bundle = binding.encode_bundle(capsule, ct, [c1, c2], bytes(32))
        epk, sealed = timed("rewrap_ds", rewrap.wrap, wrap_keys.public, bundle)
        timed("unwrap_user", rewrap.unwrap, wrap_keys, epk, sealed)
        timed(
            "decrypt",
            pre.decrypt,
            receiver,
            owner_public=owner.public,
            owner_verifying=owner.verifying,
            capsule=capsule,
            cfrags=[c1, c2],
            ciphertext=ct,
        )
        hashlib.sha256(env_bytes)
    signer.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def handshake_times(token: str | None, count: int) -> list[float]:
    from drivers.ssdtf.config import FlowConfig
    from drivers.ssdtf.deployment import Deployment

    dep = Deployment(
        FlowConfig(
            sensors=1,
            messages=0,
            capture=False,
            token=token,
            auth_deadline_s=30,
            connect_timeout_s=30,
        )
    )
    times = []
    try:
        dep.start()
        sensor = dep.sensors["sensor-1"]
        for _ in range(count):
            start = time.perf_counter()
            sensor.connect(dep.host, dep.port)
            times.append((time.perf_counter() - start) * 1000)
            sensor.disconnect()
            time.sleep(0.05)
    finally:
        dep.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=600,
        help="readings per run (the sensor's flow control keeps long runs from stalling)",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=None,
        help="the sensor's window of readings awaiting an ACK (default FlowConfig's; 0: none)",
    )
    parser.add_argument("--rounds", type=int, default=200, help="cost-breakdown rounds")
    parser.add_argument("--handshakes", type=int, default=5)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        # two: the data user's opening (~2.7 ms) is the longest stage; with one worker its
        # backlog drains on one core at the end of a run while the other core idles
        help="worker processes per gateway, DS and data user",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each SSDTF configuration (the machine is shared: the median is reported)",
    )
    args = parser.parse_args()
    os.environ.setdefault("SAFELAB_DATA_DIR", tempfile.mkdtemp(prefix="safelab-bench-"))

    out: dict[str, object] = {
        "messages": args.messages,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "goal_per_s": GOAL,
    }
    configs = {
        "ssdtf_embedded": ("embedded", args.workers),
        "ssdtf_mosquitto": ("mosquitto", args.workers),
        "ssdtf_mosquitto_one_process": ("mosquitto", 0),
    }
    for _ in range(args.repeat):  # interleaved, so a burst of others' load hits every config
        for name, (broker, workers) in configs.items():
            runs = out.setdefault(f"{name}_runs", [])
            runs.append(ssdtf_rate(broker, args.messages, workers, args.max_pending))  # type: ignore[union-attr]
    for name in configs:
        runs = sorted(out[f"{name}_runs"], key=lambda r: r["per_s"])  # type: ignore[arg-type, index]
        out[name] = runs[len(runs) // 2]  # the median run by rate; all runs are kept
    out["plain_mqtt_tls_mosquitto"] = plain_mqtt_rate(args.messages, tls=True)
    out["plain_mqtt_mosquitto"] = plain_mqtt_rate(args.messages, tls=False)
    out["cost_ms_median"] = cost_breakdown(args.rounds)
    soft = handshake_times(None, args.handshakes)
    card = handshake_times(PAPER_CARD, args.handshakes)
    out["handshake_ms"] = {
        "software_p256": {"median": statistics.median(soft), "samples": soft},
        "emulated_paper_sim": {"median": statistics.median(card), "samples": card},
    }
    out["load_average_at_end"] = os.getloadavg()
    best = max(out[n]["per_s"] for n in SSDTF_RUNS)  # type: ignore[index]
    out["goal_met"] = best >= GOAL  # measured: a configuration's median run reached it
    # the CPU one reading costs (median run) would allow the goal on two idle cores
    out["goal_ceiling_met"] = any(
        out[n]["ceiling_per_s_2_cores"] >= GOAL  # type: ignore[index]
        for n in SSDTF_RUNS
    )
    print(json.dumps(out, indent=1))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "ssdtf_throughput.json").write_text(json.dumps(out, indent=1))
    for name in (*SSDTF_RUNS, "plain_mqtt_tls_mosquitto", "plain_mqtt_mosquitto"):
        run = out[name]
        line = f"{name:28s} {run['per_s']:9.1f} msg/s"  # type: ignore[index]
        if name in SSDTF_RUNS:
            line += (
                f"  {run['cpu_ms_per_reading']:5.2f} ms CPU/reading over all processes"  # type: ignore[index]
                f" (ceiling on 2 idle cores {run['ceiling_per_s_2_cores']:.0f}/s)"  # type: ignore[index]
                f"; main {run['main_process_cpu_ms_per_reading']:.2f}"  # type: ignore[index]
                f", workers {run['workers_cpu_ms_per_reading']}"  # type: ignore[index]
                f", broker {run['broker_process_cpu_ms_per_reading']:.2f}"  # type: ignore[index]
                f"; all runs /s: "
                + ", ".join(f"{r['per_s']:.0f}" for r in out[f"{name}_runs"])  # type: ignore[union-attr, index]
                + "; decrypt probe ms: "
                + ", ".join(f"{r['decrypt_probe_ms']:.2f}" for r in out[f"{name}_runs"])  # type: ignore[union-attr, index]
            )
        print(line, file=sys.stderr)
    print(
        f"goal {GOAL}/s {'met' if out['goal_met'] else 'NOT met'} (measured), "
        f"{'within' if out['goal_ceiling_met'] else 'beyond'} what the CPU per reading allows "
        f"on 2 idle cores; load average "
        f"{out['load_average_at_start']} -> {out['load_average_at_end']} on {out['cpus']} CPUs",
        file=sys.stderr,
    )
    for name, value in out["cost_ms_median"].items():  # type: ignore[union-attr]
        print(f"  {name:20s} {value:7.3f} ms", file=sys.stderr)
    print(
        f"handshake: software {statistics.median(soft):.1f} ms, emulated paper SIM "
        f"{statistics.median(card):.1f} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
