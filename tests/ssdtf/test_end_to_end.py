"""End to end over real brokers: every service model, embedded amqtt and Mosquitto, a sensor
whose key is the emulated IoT SAFE card, and the plain fallback that says so."""

from __future__ import annotations

import pytest

from tests.ssdtf.conftest import MARKER, run


def _expected(dep) -> set[bytes]:
    return {dep.reading(cid, i) for cid in dep.sensors for i in range(dep.cfg.messages)}


@pytest.mark.parametrize("model", [1, 2, 3])
def test_embedded_broker_every_model(model: int) -> None:
    dep = run(model=model, users=2)
    result = dep.last_result
    assert result.ok, result.as_dict()
    assert result.rejections == []
    for user in dep.users.values():
        assert {r.value for r in user.readings} == _expected(dep)
        assert all(r.value.startswith(MARKER.encode()) for r in user.readings)
    assert all(s["acked"] == 3 for s in result.sensors.values())


@pytest.mark.parametrize("model", [1, 2, 3])
def test_mosquitto_every_model(model: int, mosquitto_available: None) -> None:
    dep = run(model=model, broker="mosquitto")
    assert dep.last_result.ok, dep.last_result.as_dict()
    assert dep.last_result.broker == "mosquitto"
    assert {r.value for r in dep.users["user-1"].readings} == _expected(dep)


def test_any_broker_by_url(mosquitto_available: None) -> None:
    from drivers.ssdtf.brokers import MosquittoBroker

    broker = MosquittoBroker()
    broker.start()
    try:
        dep = run(broker=f"mqtt://127.0.0.1:{broker.port}", sensors=1, messages=2)
    finally:
        broker.stop()
    assert dep.last_result.ok and dep.last_result.broker == "external"


def test_sensor_key_on_emulated_iot_safe_card() -> None:
    dep = run(token="iotsafe:emulated;profile=paper-sim;speed=0.01", sensors=1, messages=2)
    result = dep.last_result
    assert result.ok, result.as_dict()
    sensor = result.sensors["sensor-1"]
    assert sensor["emulated"] and sensor["token"].startswith("iotsafe:")
    # the card's signing latency is in the flow: slower than the software key
    assert sensor["sign_ms_median"] > 1.0


def test_without_pre_library_plain_is_said_plainly() -> None:
    dep = run(pre="plain", sensors=1, messages=2)
    assert dep.last_result.ok and dep.last_result.pre == "plain"
    assert any("NO CONFIDENTIALITY" in n["text"] for n in dep.trace.notes)
    verdicts = [v.reason for v in dep.trace.verdicts if v.role == "user-1" and v.ok]
    assert verdicts and all("no confidentiality" in r for r in verdicts)
