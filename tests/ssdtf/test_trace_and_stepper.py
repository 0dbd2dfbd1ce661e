"""The capture the packet stepper shows: packets with decoded fields and verdicts, keys per
role over time, step control, and exports (JSON, pcap) that hold no secrets."""

from __future__ import annotations

import json

from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import FlowRun
from drivers.ssdtf.mqttcodec import decode_packet
from drivers.ssdtf.pcap import read_pcap
from tests.ssdtf.conftest import MARKER, run


def test_trace_rows_have_what_the_stepper_shows() -> None:
    dep = run(sensors=1, messages=2)
    packets = dep.trace.packets
    lanes = set(dep.trace.lanes())
    assert {"sensor-1", "gateway", "ds", "ms", "user-1"} <= lanes
    kinds = {(p.ssdtf or {}).get("type") for p in packets}
    assert {"HELLO", "CHAL", "RESP", "OK", "DATA", "ACK", "FWD", "DELIVER"} <= kinds
    data = next(p for p in packets if (p.ssdtf or {}).get("type") == "DATA")
    assert {"seq", "capsule", "ct", "sig", "sid"} <= set(data.ssdtf)
    assert data.direction == "c2b" and data.mqtt_type == "PUBLISH" and data.hexdump()
    verdict_rows = [p for p in packets if p.verdicts]
    assert verdict_rows and all(v.ok for p in verdict_rows for v in p.verdicts)
    assert [p.t_ms for p in packets] == sorted(p.t_ms for p in packets)


def test_keys_per_role_change_along_the_flow() -> None:
    dep = run(sensors=1, messages=1)
    start = dep.trace.keys_at(0)
    first_data = next(p.index for p in dep.trace.packets if (p.ssdtf or {}).get("type") == "DATA")
    end = dep.trace.keys_at(first_data)
    assert "sid[sensor-1]" not in {k.name for k in start["sensor-1"]}
    assert "sid[sensor-1]" in {k.name for k in end["sensor-1"]}
    # registrations arrive over MQTT: the device key and the conversion-key share are not
    # held at the first packet, and are by the first DATA
    registered = {"pk_D[sensor-1]", "kfrag#1[user-1]"}
    assert "sk_B" in {k.name for k in start["gateway"]}
    assert not registered & {k.name for k in start["gateway"]}
    assert {k.name for k in end["gateway"]} >= registered


def test_exports_hold_no_secrets(tmp_path) -> None:
    dep = run(sensors=1, messages=2)
    json_path = dep.trace.export_json(tmp_path / "t.json")
    pcap_path = dep.trace.export_pcap(tmp_path / "t.pcap")
    text = json_path.read_text()
    document = json.loads(text)
    assert document["format"] == "safelab-ssdtf-trace/1" and document["packets"]
    secrets = [c.encode() for c in dep.credentials.values()]
    secrets += [s.encode() for s in dep.policy.sensor_secrets.values()]
    for signer in (dep.sk_b, dep.sk_ds, dep.sk_ms):
        key = signer._Ed25519Signer__key  # the test may look; the trace must not
        secrets.append(bytes(key))  # the 32-byte Ed25519 seed (libsodium's SigningKey)
    blob = pcap_path.read_bytes()
    for secret in secrets:
        assert secret.hex() not in text and secret not in blob
    assert "PRIVATE KEY" not in text and MARKER not in text
    frames = read_pcap(pcap_path)
    payloads = b"".join(frame[40:] for _, frame in frames)
    assert b"ssdtf/v1/up/sensor-1" in payloads
    first_mqtt = next(frame[40:] for _, frame in frames if len(frame) > 40)
    assert decode_packet(first_mqtt).name == "CONNECT"


def test_step_through_a_live_run() -> None:
    flow = FlowRun(FlowConfig(sensors=1, messages=1).for_stepping()).start()
    stepper = flow.stepper
    first = stepper.wait_pending(5)
    assert first is not None and first.status == "held" and first.mqtt_type == "CONNECT"
    seen = [first.index]
    for _ in range(10):
        stepper.step()
        held = stepper.wait_pending(5, after=seen[-1])
        assert held is not None
        seen.append(held.index)
    assert len(seen) >= 5 and seen == sorted(seen)
    assert flow.trace.packets[seen[0]].status == "forwarded"
    stepper.run_to_end()
    result = flow.wait(20)
    assert result is not None and result.ok
