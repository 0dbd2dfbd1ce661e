"""No message breaks a role (issue 10): random and mutated frames of every message type, many
of them *validly signed* by an authenticated sender so they reach deep into each role, are fed
to every role over the real broker; afterwards each role still serves legitimate traffic (a
reading still goes end to end), every frame got the role's own verdict, and no exception
reached paho's network thread.

Senders: sensor-2 stands for a compromised registered device (its own auth, data and report
topics, signed with its real key); the gateway's and the DS's own connections stand for an
authenticated upstream (signed with sk_B / sk_DS) towards the DS, the data user and sensor-1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.attacks import closed_by_peer
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.mqttclient import connect_packet
from drivers.ssdtf.registry import build_reg
from drivers.ssdtf.replay import now_ms
from drivers.ssdtf.wire import MsgType, RegKind, T


@pytest.fixture(scope="module")
def dep() -> Any:
    cfg = FlowConfig(sensors=2, users=1, messages=1, capture=False, ack_timeout_s=0.3)
    deployment = Deployment(cfg)
    deployment.start()
    deployment.connect_sensors()
    deployment.send_readings(1)
    assert deployment.wait_delivered(2, 10)
    yield deployment
    deployment.stop()


def _verdicts(dep: Deployment, role: str) -> int:
    return sum(1 for v in dep.trace.verdicts if v.role == role)


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _legit_reading_still_delivered(dep: Deployment) -> None:
    user = dep.users["user-1"]
    before = len(user.readings)
    sensor = dep.sensors["sensor-1"]
    assert sensor.state == "ready" and dep.gateway.is_ready("sensor-1")
    sensor.send(b"legit after the fuzz")
    assert user.wait_for(before + 1, 10), "legitimate traffic no longer delivered"
    assert user.readings[-1].value == b"legit after the fuzz"
    for role in (dep.gateway, dep.ds, dep.ms, *dep.users.values(), *dep.sensors.values()):
        assert role.endpoint is not None and role.endpoint.errors == 0, role.name


# --- frames --------------------------------------------------------------------------
def _u64s() -> st.SearchStrategy[bytes]:
    return st.sampled_from([0, 1, 2, 63, 64, 65, 2**16, 2**32, 2**63, 2**64 - 1]).map(
        wire.u64
    ) | st.binary(min_size=8, max_size=8)


def _field(tag: int, good: dict[int, Callable[[], bytes]]) -> st.SearchStrategy[bytes]:
    """A value for ``tag``: a plausible one (right length / meaning) or arbitrary bytes."""
    plausible: st.SearchStrategy[bytes]
    if tag in good:
        plausible = st.builds(good[tag])
    elif tag in (T.SEQ, T.TS):
        plausible = _u64s()
    elif tag in wire.FIXED_LEN:
        plausible = st.binary(min_size=wire.FIXED_LEN[tag], max_size=wire.FIXED_LEN[tag])
    elif tag == T.CAPSULE:
        plausible = st.binary(min_size=105, max_size=105)
    elif tag == T.CFRAG:
        plausible = st.binary(min_size=381, max_size=381)
    else:
        plausible = st.binary(min_size=1, max_size=64)
    return plausible | st.binary(max_size=120)


@st.composite
def frames(
    draw: Any,
    types: list[MsgType],
    sign: Callable[[bytes], bytes],
    topic: str,
    good: dict[int, Callable[[], bytes]],
) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))  # pure noise
    msg_type = draw(st.sampled_from(types))
    tags = set(wire.REQUIRED[msg_type] | wire.OPTIONAL.get(msg_type, frozenset())) - {T.SIG}
    fields: dict[int, bytes] = {}
    cfrags: list[bytes] = []
    for tag in sorted(tags):
        if draw(st.integers(0, 11)) == 0:
            continue  # a field left out
        if tag == T.CFRAG:
            cfrags = draw(st.lists(_field(tag, good), max_size=3))
        else:
            fields[tag] = draw(_field(tag, good))
    flags = draw(st.sampled_from([0, 1, 2, 5, 9, 0x10]))
    signer = sign if msg_type in wire.SIGNED_TYPES else None
    raw = wire.encode(msg_type, fields, flags=flags, cfrags=cfrags, sign=signer, topic=topic)
    mutation = draw(st.integers(0, 5))
    if mutation == 0 and raw:
        pos = draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + bytes([raw[pos] ^ draw(st.integers(1, 255))]) + raw[pos + 1 :]
    elif mutation == 1:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == 2:
        raw = raw + draw(st.binary(min_size=1, max_size=8))
    return raw


def _targets(dep: Deployment) -> dict[str, tuple[str, Any, str, list[MsgType], Any, dict]]:
    """target -> (role, sending endpoint, topic, message types, signer, plausible values)."""
    s2 = dep.sensors["sensor-2"]
    sid2 = s2.sid
    sid1 = dep.sensors["sensor-1"].sid
    every = list(MsgType)
    sensor2 = {
        T.CID: lambda: b"sensor-2",
        T.SID: lambda: sid2,
        T.TS: lambda: wire.u64(now_ms()),
        T.KID: lambda: s2.signer.public().kid,
        T.ALG: lambda: bytes([s2.signer.alg]),
        T.ND: lambda: os.urandom(16),
        T.BROKER_ID: lambda: b"ssdtf-broker-1",
    }
    broker = {
        T.KID: lambda: dep.sk_b.public().kid,
        T.ALG: lambda: bytes([dep.sk_b.alg]),
        T.TS: lambda: wire.u64(now_ms()),
        T.BROKER_ID: lambda: b"ssdtf-broker-1",
        T.SUB: lambda: b"user-1",
        T.CID: lambda: b"sensor-1",
        T.SID: lambda: sid1,
        T.INNER: lambda: _inner(s2),
    }
    ds = {
        T.KID: lambda: dep.sk_ds.public().kid,
        T.ALG: lambda: bytes([dep.sk_ds.alg]),
        T.TS: lambda: wire.u64(now_ms()),
        T.EPOCH: lambda: wire.u32(1),
    }
    u1 = dep.users["user-1"]
    user1 = {
        T.KID: lambda: u1.signer.public().kid,
        T.ALG: lambda: bytes([u1.signer.alg]),
        T.TS: lambda: wire.u64(now_ms()),
        T.ND: lambda: os.urandom(16),
        T.KIND: lambda: bytes([os.urandom(1)[0] % 5]),
        T.CID: lambda: b"sensor-1",
        T.SUB: lambda: b"user-1",
        T.KEYALG: lambda: bytes([wire.Alg.ED25519]),
    }
    ms = {
        T.KID: lambda: dep.sk_ms.public().kid,
        T.ALG: lambda: bytes([dep.sk_ms.alg]),
        T.TS: lambda: wire.u64(now_ms()),
        T.SUB: lambda: b"ms",
        T.INNER: lambda: build_reg(
            u1.signer,
            "ms",
            RegKind.DEVICE,
            {T.CID: b"sensor-9", T.PUBKEY: os.urandom(32), T.KEYALG: bytes([wire.Alg.ED25519])},
        ),
    }
    g, d = dep.gateway.endpoint, dep.ds.endpoint
    return {
        "gateway-auth": (
            "gateway",
            s2.endpoint,
            topics.auth_up("sensor-2"),
            every,
            s2.signer.sign,
            sensor2,
        ),
        "gateway-data": (
            "gateway",
            s2.endpoint,
            topics.data_topic("sensor-2"),
            every,
            s2.signer.sign,
            sensor2,
        ),
        "ms": ("ms", s2.endpoint, topics.report_topic("sensor-2"), every, s2.signer.sign, sensor2),
        "ds": ("ds", g, topics.int_topic("user-1"), every, dep.sk_b.sign, broker),
        "user": ("user-1", d, topics.out_topic("user-1", "fuzz"), every, dep.sk_ds.sign, ds),
        "ds-resend": (
            "ds",
            dep.users["user-1"].endpoint,
            topics.resend_topic("user-1"),
            every,
            dep.users["user-1"].signer.sign,
            {
                T.SUB: lambda: b"user-1",
                T.KID: lambda: dep.users["user-1"].signer.public().kid,
                T.ALG: lambda: bytes([dep.users["user-1"].signer.alg]),
                T.TS: lambda: wire.u64(now_ms()),
            },
        ),
        # registrations: a data user (validly signed, not the registrar in model 1) to the MS;
        # the MS's own connection (signed with sk_MS) to the gateway and the DS
        "ms-reg": ("ms", u1.endpoint, topics.reg_topic("user-1"), every, u1.signer.sign, user1),
        "gateway-prov": (
            "gateway",
            dep.ms.endpoint,
            topics.prov_topic("gateway"),
            every,
            dep.sk_ms.sign,
            ms,
        ),
        "ds-prov": ("ds", dep.ms.endpoint, topics.prov_topic("ds"), every, dep.sk_ms.sign, ms),
        "sensor-auth": ("sensor-1", g, topics.auth_down("sensor-1"), every, dep.sk_b.sign, broker),
        "sensor-ack": ("sensor-1", g, topics.ack_topic("sensor-1"), every, dep.sk_b.sign, broker),
    }


def _inner(sensor: Any) -> bytes:
    """A DATA envelope as a FWD carries it, with a random capsule (signed by the device)."""
    fields = {
        T.CID: b"sensor-2",
        T.SID: sensor.sid or os.urandom(16),
        T.SEQ: wire.u64(1),
        T.TS: wire.u64(now_ms()),
        T.KID: sensor.signer.public().kid,
        T.ALG: bytes([sensor.signer.alg]),
        T.CAPSULE: os.urandom(105),
        T.CT: os.urandom(40),
    }
    topic = topics.data_topic("sensor-2")
    return wire.encode(MsgType.DATA, fields, flags=1, sign=sensor.signer.sign, topic=topic)


TARGETS = [
    "gateway-auth",
    "gateway-data",
    "ms",
    "ds",
    "ds-resend",
    "user",
    "ms-reg",
    "gateway-prov",
    "ds-prov",
    "sensor-auth",
    "sensor-ack",
]


@pytest.mark.parametrize("target", TARGETS)
def test_role_survives_random_and_mutated_frames(dep: Deployment, target: str) -> None:
    role, endpoint, topic, types, sign, good = _targets(dep)[target]
    before = _verdicts(dep, role)
    sent = [0]

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=False,
    )
    @given(frame=frames(types, sign, topic, good))
    def feed(frame: bytes) -> None:
        endpoint.publish(topic, frame, qos=1)
        sent[0] += 1

    feed()
    # every frame got this role's own verdict (a drop with its reason, or an accept)
    assert _wait(lambda: _verdicts(dep, role) - before >= sent[0], 20), (
        f"{role}: {_verdicts(dep, role) - before} verdicts for {sent[0]} frames"
    )
    _legit_reading_still_delivered(dep)


def test_issue_cases_huge_seq_and_random_capsule(dep: Deployment) -> None:
    """The two messages that killed the gateway: a DATA with seq 2^64-1 and a DATA with a
    random capsule, both validly signed by a registered device in a READY session."""
    s2 = dep.sensors["sensor-2"]
    topic = topics.data_topic("sensor-2")
    forwarded = dep.gateway.forwarded

    def data(seq: int, capsule: bytes) -> bytes:
        fields = {
            T.CID: b"sensor-2",
            T.SID: s2.sid,
            T.SEQ: wire.u64(seq),
            T.TS: wire.u64(now_ms()),
            T.KID: s2.signer.public().kid,
            T.ALG: bytes([s2.signer.alg]),
            T.CAPSULE: capsule,
            T.CT: b"x" * 32,
        }
        return wire.encode(MsgType.DATA, fields, flags=1, sign=s2.signer.sign, topic=topic)

    before = len(dep.trace.verdicts)
    s2.endpoint.publish(topic, data(2**64 - 1, os.urandom(105)), qos=1)
    s2.endpoint.publish(topic, data(s2.seq + 1000, os.urandom(105)), qos=1)
    assert _wait(lambda: sum(1 for v in dep.trace.verdicts[before:] if v.role == "gateway") >= 2)
    reasons = [v.reason for v in dep.trace.verdicts[before:] if v.role == "gateway"]
    assert any("too far ahead" in r for r in reasons), reasons
    assert any("capsule refused" in r for r in reasons), reasons
    assert dep.gateway.forwarded == forwarded  # nothing of either was forwarded
    window = dep.gateway.sessions["sensor-2"].window
    assert window.high < 2**20 and window.bits < 2**window.size
    _legit_reading_still_delivered(dep)


# --- bounded state, unit level -------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-5, max_value=2**70), max_size=60))
def test_seq_window_stays_bounded_whatever_the_numbers(seqs: list[int]) -> None:
    from drivers.ssdtf.replay import SeqWindow

    window = SeqWindow(64, max_jump=1000)
    for seq in seqs:
        outcome = window.accept(seq, seq.to_bytes(10, "big", signed=True))
        assert outcome in {"new", "duplicate", "replay", "too old", "too far ahead"}
        assert window.bits < 2**64 and len(window.hashes) <= 64
        assert window.high <= 1000 * (len(seqs) + 1)


def test_seq_window_rules() -> None:
    from drivers.ssdtf.replay import SeqWindow

    window = SeqWindow(8, max_jump=100)
    assert window.accept(5, b"a") == "new"
    assert window.accept(5, b"a") == "duplicate" and window.accept(5, b"b") == "replay"
    assert window.accept(106, b"c") == "too far ahead" and window.high == 5
    assert window.accept(105, b"c") == "new" and window.accept(97, b"d") == "too old"
    assert window.accept(2**64 - 1, b"e") == "too far ahead"
    assert window.accept(100, b"f") == "new" and window.check(100) == "replay"


def test_scheduler_one_thread_survives_errors_and_cancels() -> None:
    import threading

    from drivers.ssdtf.scheduler import Scheduler

    errors: list[str] = []
    ran: list[int] = []
    sched = Scheduler("test-sched", lambda what, e: errors.append(str(e)))
    threads = threading.active_count()
    handles = [sched.call_later(0.01, ran.append, i) for i in range(200)]
    sched.call_later(0.0, lambda: 1 / 0)
    sched.cancel(handles[0])
    assert _wait(lambda: len(ran) == 199, 5)
    assert 0 not in ran and errors == ["division by zero"]
    assert threading.active_count() <= threads + 1
    sched.stop()


@pytest.mark.parametrize("capture", [False, True])
def test_connections_ended_before_connect_leave_no_socket_behind(capture: bool) -> None:
    """300 clients connect and hang up before any CONNECT (some after one byte of it). amqtt
    0.12 left each server-side socket open until the garbage collector found it, so such a
    flood ran the process out of file descriptors; with the collector off here, the count
    must come back to where it was by itself (embedded broker, with and without the tap)."""
    import gc
    import socket

    deployment = Deployment(FlowConfig(sensors=1, users=1, messages=1, capture=capture))
    deployment.start()
    gc.disable()
    try:
        deployment.connect_sensors()
        descriptors = len(os.listdir("/proc/self/fd"))
        for index in range(300):
            with socket.create_connection((deployment.host, deployment.port), timeout=5) as sock:
                if index % 3 == 0:
                    sock.sendall(b"\x10")
        assert _wait(lambda: len(os.listdir("/proc/self/fd")) <= descriptors + 5, 10.0), (
            len(os.listdir("/proc/self/fd")) - descriptors
        )
        if deployment.tap is not None:  # and the tap keeps no record of the closed ones
            open_before = 10  # the roles' own connections
            assert _wait(lambda: len(deployment.tap.connections) <= open_before, 5.0)
        _legit_reading_still_delivered(deployment)
    finally:
        gc.enable()
        deployment.stop()


@pytest.mark.parametrize("capture", [False, True])
def test_waiting_connections_are_bounded_and_the_oldest_closed(capture: bool) -> None:
    """300 clients connect, send nothing and stay (well inside the CONNECT deadline). At most
    ``max_unconnected`` may wait: each newcomer past it closes the oldest, so what this process
    holds stays bounded (the tap keeps no closed connection either), a newcomer is still
    served, and the verdict is the broker's own."""
    import socket

    bound = 16
    deployment = Deployment(
        FlowConfig(
            sensors=1,
            users=1,
            messages=1,
            capture=capture,
            max_unconnected=bound,
            connect_deadline_s=60.0,
        )
    )
    deployment.start()
    flood: list[socket.socket] = []
    try:
        deployment.connect_sensors()
        descriptors = len(os.listdir("/proc/self/fd"))
        for _ in range(300):
            flood.append(socket.create_connection((deployment.host, deployment.port), timeout=5))

        assert _wait(lambda: sum(closed_by_peer(s) for s in flood) >= len(flood) - bound)
        if not capture:  # through the tap the broker sees connections in the tap's own order
            assert not any(closed_by_peer(s) for s in flood[-bound // 2 :])  # the newest still wait
        # a newcomer that sends its CONNECT at once is answered (here: refused, wrong password)
        with socket.create_connection((deployment.host, deployment.port), timeout=5) as sock:
            sock.sendall(connect_packet("ssdtf-probe", "nobody", "wrong", True, 30))
            assert sock.recv(1) == b"\x20"  # CONNACK

        def held() -> int:  # this process's own descriptors, less the attacker's sockets
            return len(os.listdir("/proc/self/fd")) - descriptors - len(flood)

        # a closed socket's descriptor goes on the loop's next turn: wait for it to settle
        assert _wait(lambda: held() <= 3 * bound + 16, 5.0), held()
        if deployment.tap is not None:
            assert len(deployment.tap.connections) <= 2 * bound + 8  # roles' + waiting
        assert any(
            v.role == "broker" and "connections without a CONNECT" in v.reason
            for v in deployment.trace.verdicts
        )
        _legit_reading_still_delivered(deployment)
    finally:
        for sock in flood:
            sock.close()
        deployment.stop()
