"""The trace is the one record a deployment keeps of everything anyone sends it, so it is
bounded: past its bound a record is counted, not kept, and the flow itself is unaffected."""

from __future__ import annotations

import json
from pathlib import Path

from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.mqttcodec import encode_publish
from drivers.ssdtf.trace import Trace


def test_a_full_trace_counts_records_and_the_flow_still_delivers(tmp_path: Path) -> None:
    trace = Trace("bounded", max_records=40)
    deployment = Deployment(FlowConfig(sensors=1, users=1, messages=6), trace=trace)
    result = deployment.run_all()
    assert result.ok and result.users["user-1"]["received"] == 6  # unaffected by the bound
    assert len(trace.packets) == 40 and result.packets == 40
    assert [p.index for p in trace.packets] == list(range(40))  # index = position
    assert trace.not_recorded["packets"] > 0
    assert len(trace.verdicts) <= 40 and len(trace.notes) <= 40
    assert 0 < result.not_recorded["packets"] <= trace.not_recorded["packets"]  # DISCONNECTs after
    document = json.loads(trace.export_json(tmp_path / "t.json").read_text())
    assert document["not_recorded"]["packets"] == trace.not_recorded["packets"]
    assert len(document["packets"]) == 40


def test_the_byte_bound_stops_recording_and_indices_keep_counting() -> None:
    trace = Trace("bytes", max_raw_bytes=1_000)
    big = encode_publish("ssdtf/x", b"\x00" * 600)
    small = encode_publish("ssdtf/x", b"\x00")
    first = trace.add_packet(1, "sensor-1", "c2b", big, "forwarded")
    second = trace.add_packet(1, "sensor-1", "c2b", big, "forwarded")  # over 1,000 bytes
    third = trace.add_packet(1, "sensor-1", "c2b", small, "forwarded")  # would fit: still not
    assert [p.index for p in trace.packets] == [first.index] == [0]
    assert (second.index, third.index) == (1, 2)  # a stepper still sees them in order
    assert trace.not_recorded["packets"] == 2
