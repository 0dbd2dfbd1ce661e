"""Per-role broker credentials and least privilege, enforced by the broker itself (both the
embedded amqtt broker and Mosquitto): one test per denial, each asserting the denial and that
it had no effect (issue 10, class 4)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.endpoint import Endpoint, MqttError
from drivers.ssdtf.replay import now_ms
from drivers.ssdtf.wire import MsgType, T


@pytest.fixture(scope="module", params=["embedded", "mosquitto"])
def dep(request) -> Iterator[Deployment]:
    if request.param == "mosquitto" and not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    deployment = Deployment(
        FlowConfig(broker=request.param, sensors=2, users=2, messages=1, capture=False)
    )
    deployment.start()
    deployment.connect_sensors()
    deployment.send_readings(1)
    assert deployment.wait_delivered(2, 10)
    yield deployment
    deployment.stop()


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _count(dep: Deployment, role: str, stage: str | None = None) -> int:
    return sum(1 for v in dep.trace.verdicts if v.role == role and stage in (None, v.stage))


def _one_more_reading(dep: Deployment) -> None:
    """Legit traffic still flows: every user gets sensor-1's next reading."""
    before = {n: len(u.readings) for n, u in dep.users.items()}
    dep.sensors["sensor-1"].send(os.urandom(8).hex().encode())
    for name, user in dep.users.items():
        assert user.wait_for(before[name] + 1, 10), name


def _broker_denied(dep: Deployment, text: str) -> bool:
    if dep.broker.kind != "embedded":  # Mosquitto logs publish/connect refusals only
        return True
    return _wait(lambda: any(v.role == "broker" and text in v.reason for v in dep.trace.verdicts))


def _snoop(dep: Deployment, user: str, topic_filter: str) -> list[bytes]:
    """Make ``user``'s own connection subscribe to ``topic_filter``; collect what arrives."""
    got: list[bytes] = []
    endpoint = dep.users[user].endpoint
    assert endpoint is not None
    endpoint.handlers.insert(0, (topic_filter, lambda t, p, m: got.append(p)))
    endpoint.subscribe([(topic_filter, 1)], 10)
    return got


def test_data_user_cannot_read_uplinks(dep: Deployment) -> None:
    got = _snoop(dep, "user-1", "ssdtf/v1/up/+")
    assert _broker_denied(dep, "SUBSCRIBE to ssdtf/v1/up/+ refused")
    _one_more_reading(dep)
    time.sleep(0.3)
    assert got == []  # no capsule to match pseudonyms against devices


def test_data_user_cannot_read_another_users_deliveries(dep: Deployment) -> None:
    got = _snoop(dep, "user-1", "ssdtf/v1/out/user-2/+")
    assert _broker_denied(dep, "SUBSCRIBE to ssdtf/v1/out/user-2/+ refused")
    _one_more_reading(dep)  # user-2 did get one
    time.sleep(0.3)
    assert got == []


def test_data_user_cannot_publish_to_the_distribution_server(dep: Deployment) -> None:
    before = _count(dep, "ds")
    endpoint = dep.users["user-1"].endpoint
    assert endpoint is not None
    endpoint.publish(topics.int_topic("user-1"), b"SD\x01\x13\x01forged", qos=1)
    assert _broker_denied(dep, f"PUBLISH to {topics.int_topic('user-1')} refused")
    _one_more_reading(dep)
    assert _count(dep, "ds") == before + len(dep.users)  # only the legit reading's FWDs


def test_data_user_cannot_send_a_challenge(dep: Deployment) -> None:
    before = _count(dep, "sensor-1", "handshake")
    endpoint = dep.users["user-1"].endpoint
    assert endpoint is not None
    endpoint.publish(topics.auth_down("sensor-1"), b"SD\x01\x01\x01forged", qos=1)
    assert _broker_denied(dep, f"PUBLISH to {topics.auth_down('sensor-1')} refused")
    time.sleep(0.3)
    assert _count(dep, "sensor-1", "handshake") == before  # the sensor never saw it
    assert dep.sensors["sensor-1"].state == "ready"


def test_sensor_writes_only_its_own_uplink(dep: Deployment) -> None:
    s2 = dep.sensors["sensor-2"]
    before = _count(dep, "gateway")
    topic = topics.data_topic("sensor-1")
    fields = {
        T.CID: b"sensor-2",
        T.SID: s2.sid,
        T.SEQ: wire.u64(10_000),
        T.TS: wire.u64(now_ms()),
        T.KID: s2.signer.public().kid,
        T.ALG: bytes([s2.signer.alg]),
        T.CAPSULE: os.urandom(105),
        T.CT: b"x",
    }
    data = wire.encode(MsgType.DATA, fields, flags=1, sign=s2.signer.sign, topic=topic)
    assert s2.endpoint is not None
    s2.endpoint.publish(topic, data, qos=1)
    assert _broker_denied(dep, f"PUBLISH to {topic} refused")
    _one_more_reading(dep)
    # the gateway saw the legit reading only (one verdict), never the misplaced DATA
    assert _count(dep, "gateway") == before + 1


def _refused(client_id: str, dep: Deployment, username: str, password: str) -> str:
    intruder = Endpoint(client_id, dep.host, dep.port, username=username, password=password)
    try:
        intruder.connect(5)
    except MqttError as error:
        return error.problem
    finally:
        intruder.stop()
    return ""


def test_no_role_can_take_the_gateways_identity(dep: Deployment) -> None:
    user_pw = dep.credentials["user-1"]
    # another role's password under the gateway's user name, and (embedded, where client ID
    # and user name are separate) the data user's own login with the gateway's client ID
    assert _refused("ssdtf-gateway", dep, "gateway", user_pw)
    if dep.broker.kind == "embedded":
        assert _refused("ssdtf-gateway", dep, "user-1", user_pw)
        assert _broker_denied(dep, "user-1 may not use client ID 'ssdtf-gateway'")
    time.sleep(0.2)
    assert dep.gateway.endpoint is not None and dep.gateway.endpoint.connected.is_set()
    _one_more_reading(dep)


def test_nobody_takes_a_sensors_client_id_without_its_secret(dep: Deployment) -> None:
    user = os.urandom(16).hex() if dep.broker.kind == "embedded" else "sensor-1"
    assert _refused("sensor-1", dep, user, "SSDTF/1")
    assert _refused("sensor-1", dep, user, "SSDTF/1 " + dep.policy.sensor_secrets["sensor-2"])
    assert _broker_denied(dep, "wrong device credential for sensor-1")
    time.sleep(0.2)
    assert dep.sensors["sensor-1"].state == "ready" and dep.gateway.is_ready("sensor-1")
    _one_more_reading(dep)


def test_a_will_cannot_reach_another_clients_topic(dep: Deployment) -> None:
    """A Will is published by the broker itself: it must not bypass the ACL (sensor-2, with
    its own valid credential, tries to leave a junk CHAL for sensor-1)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    before = _count(dep, "sensor-1", "handshake")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sensor-2", protocol=mqtt.MQTTv311)
    user = os.urandom(16).hex() if dep.broker.kind == "embedded" else "sensor-2"
    client.username_pw_set(user, "SSDTF/1 " + dep.policy.sensor_secrets["sensor-2"])
    client.will_set(topics.auth_down("sensor-1"), b"SD\x01\x01\x01junk", qos=1)
    codes: list[int] = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(int(getattr(rc, "value", rc)))
    client.connect(dep.host, dep.port)
    client.loop_start()
    assert _wait(lambda: bool(codes))
    client.socket().close() if client.socket() else None  # die without DISCONNECT: Will fires
    time.sleep(0.5)
    client.loop_stop()
    if dep.broker.kind == "embedded":
        assert codes[0] != 0
        assert _broker_denied(dep, "Will topic")
    assert _count(dep, "sensor-1", "handshake") == before  # no junk reached sensor-1
    assert dep.sensors["sensor-1"].state == "ready"


def test_roles_have_distinct_credentials(dep: Deployment) -> None:
    secrets: list[Any] = list(dep.credentials.values()) + list(dep.policy.sensor_secrets.values())
    assert len(set(secrets)) == len(secrets) == 5 + 2  # gateway, ds, ms, 2 users; 2 sensors


@pytest.mark.parametrize("role", ["gateway", "ds"])
def test_only_the_ms_hands_registrations_to_the_proxies(dep: Deployment, role: str) -> None:
    """A data user (or a sensor) publishing on a proxy's provisioning topic is refused by the
    broker: the proxy never sees it, so it gets no registration verdict and nothing changes."""
    before = _count(dep, role, "registration")
    devices, recipients = dict(dep.gateway.devices), set(dep.ds.recipients)
    for sender in (dep.users["user-1"].endpoint, dep.sensors["sensor-2"].endpoint):
        assert sender is not None
        sender.publish(topics.prov_topic(role), b"SD\x01\x31\x01forged", qos=1)
    assert _broker_denied(dep, f"PUBLISH to {topics.prov_topic(role)} refused")
    _one_more_reading(dep)
    assert _count(dep, role, "registration") == before
    assert dep.gateway.devices == devices and set(dep.ds.recipients) == recipients


def test_data_user_registers_only_as_itself(dep: Deployment) -> None:
    """user-2 publishes registrations on its own topic only: the MS never sees one on user-1's
    or on its own (which would let user-2 speak as the registrar of models 2 and 1)."""
    before = _count(dep, "ms", "registration")
    endpoint = dep.users["user-2"].endpoint
    assert endpoint is not None
    endpoint.publish(topics.reg_topic("user-1"), b"SD\x01\x30\x01forged", qos=1)
    endpoint.publish(topics.reg_topic("ms"), b"SD\x01\x30\x01forged", qos=1)
    assert _broker_denied(dep, f"PUBLISH to {topics.reg_topic('user-1')} refused")
    _one_more_reading(dep)
    assert _count(dep, "ms", "registration") == before
