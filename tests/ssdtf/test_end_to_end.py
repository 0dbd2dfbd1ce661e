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


def test_worker_processes_deliver_and_the_roles_still_judge() -> None:
    """With the PRE work in worker processes (cfg.workers) every reading still arrives once,
    each DELIVER and FWD gets its role's own verdict, and a DELIVER whose sender binding
    fails is refused by the data user itself."""
    from drivers.ssdtf.attacks import run_attack
    from drivers.ssdtf.config import FlowConfig

    dep = run(sensors=2, messages=3, users=2, workers=1)
    assert dep.last_result.ok, dep.last_result.as_dict()
    for user in dep.users.values():
        assert sorted(r.value for r in user.readings) == sorted(_expected(dep))
    for role, count in (("ds", 12), ("user-1", 6), ("user-2", 6)):  # the DS: 6 per user
        judged = [v for v in dep.trace.verdicts if v.role == role and v.stage != "registration"]
        assert len(judged) == count and all(v.ok for v in judged), role
    outcome = run_attack("resigned-ciphertext", FlowConfig(workers=1))
    assert outcome.rejected and outcome.role == "user-1", outcome.as_dict()
