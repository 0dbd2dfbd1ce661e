"""The attack cases of the research report (§7), each run against a real deployment.

An attack is a normal run plus an attacker: usually the tap acting as a man in the middle
(drop, rewrite or inject packets on the wire), sometimes a misbehaving sensor (wrong key,
skewed clock, plaintext) or a curious subscriber. Each attack names where it must be
rejected (role and reason); :func:`run_attack` runs it and checks the trace for exactly that
verdict. Positive controls (``control-*``) are legitimate broker behaviour that must still
verify.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import SafeLabError
from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.brokers import OVERSIZE_REASON, sensor_password
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.endpoint import Endpoint, MqttError
from drivers.ssdtf.mqttclient import connect_packet
from drivers.ssdtf.mqttcodec import encode_length, encode_publish
from drivers.ssdtf.pseudonyms import TraceDenied
from drivers.ssdtf.registry import build_reg
from drivers.ssdtf.replay import now_ms
from drivers.ssdtf.roles.sensor import HandshakeFailed
from drivers.ssdtf.signing import Ed25519Signer
from drivers.ssdtf.tap import Forward, Hop
from drivers.ssdtf.trace import Trace, Verdict
from drivers.ssdtf.wire import Alg, MsgType, RegKind, T

FAST = {
    "auth_deadline_s": 1.0,
    "ack_timeout_s": 0.15,
    "backoff": 1.5,
    "max_attempts": 3,
    "connect_timeout_s": 10.0,  # a loaded 2-core CI machine can be slow to SUBACK
}


@dataclass
class AttackOutcome:
    name: str
    title: str
    rejected: bool
    """Attack: rejected at the expected point. Control: everything verified."""
    role: str = ""
    reason: str = ""
    packet: int | None = None
    expected: list[tuple[str, str]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    control: bool = False
    trace: Trace | None = None

    def as_dict(self) -> dict[str, Any]:
        """The verdict fields for ``--json`` and test messages, without the trace.

        Not ``dataclasses.asdict``: it deep-copies every field first, and the trace holds a
        lock (``RLock`` cannot be copied), so it raised for every attack.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "trace"}
        out["expected"] = [f"{role}: {text}" for role, text in self.expected]
        out["evidence"] = dict(self.evidence)
        return out


@dataclass
class Attack:
    name: str
    title: str
    expect: list[tuple[str, str]]
    scenario: Callable[[FlowConfig], tuple[Deployment, dict[str, Any]]]
    control: bool = False


# --- helpers --------------------------------------------------------------------------
def _is(hop: Hop, lane: str, direction: str, msg_type: MsgType | None = None) -> bool:
    if hop.conn.lane != lane or hop.direction != direction or hop.packet.payload is None:
        return False
    if msg_type is None:
        return True
    try:
        return wire.decode(hop.packet.payload).type == msg_type
    except wire.WireError:
        return False


def _republish(hop: Hop, payload: bytes, **changes: Any) -> bytes:
    p = hop.packet
    topic = changes.pop("topic", p.topic or "")
    args: dict[str, Any] = {
        "qos": p.qos,
        "retain": p.retain,
        "dup": p.dup,
        "packet_id": p.packet_id,
    }
    args.update(changes)
    return encode_publish(topic, payload, **args)


def _resign(payload: bytes, topic: str, signer: Ed25519Signer, kid: bytes | None = None) -> bytes:
    env = wire.decode(payload)
    fields = {t: v for t, v in env.fields.items() if t != T.SIG}
    if kid is not None:
        fields[T.KID] = kid
    return wire.encode(
        env.type, fields, flags=env.flags, cfrags=env.cfrags, sign=signer.sign, topic=topic
    )


class Once:
    """An interceptor that rewrites the first matching packet only."""

    def __init__(self, match: Callable[[Hop], bool], rewrite: Callable[[Hop], Forward]):
        self.match = match
        self.rewrite = rewrite
        self.done = False

    def __call__(self, hop: Hop) -> Forward | None:
        if self.done or not self.match(hop):
            return None
        self.done = True
        return self.rewrite(hop)


_LIVE = threading.local()
"""Deployments the running scenario created (per thread), so :func:`run_attack` stops every
one of them in ``finally`` even when the scenario raises half-way."""


def _deploy(cfg: FlowConfig, interceptor: Any = None, **changes: Any) -> Deployment:
    dep = Deployment(dataclasses.replace(cfg, **{**FAST, **changes}), interceptor=interceptor)
    getattr(_LIVE, "deployments", []).append(dep)
    return dep


def _standard(dep: Deployment, messages: int = 2, settle: float = 3.0) -> dict[str, Any]:
    """Start, handshake, send, wait; the usual body of an attack run."""
    evidence: dict[str, Any] = {}
    dep.start()
    try:
        dep.connect_sensors()
    except HandshakeFailed as error:
        evidence["handshake"] = error.problem
    dep.send_readings(messages)
    dep.wait_delivered(messages * len(dep.sensors), settle)
    evidence["received"] = {n: len(u.readings) for n, u in dep.users.items()}
    return evidence


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _data_published(dep: Deployment, cid: str) -> int:
    return sum(
        1
        for p in dep.trace.packets
        if p.lane == cid and p.direction == "c2b" and p.topic == topics.data_topic(cid)
    )


def _reconnect(dep: Deployment, cid: str) -> str:
    sensor = dep.sensors[cid]
    sensor.disconnect()
    # a device waits out the gateway's per-client HELLO interval before it says HELLO again
    # (a HELLO sooner is refused by the rate limit, and the sensor does not retry it)
    time.sleep(dep.cfg.hello_interval_s * 2)
    try:
        sensor.connect(dep.host, dep.port)
    except HandshakeFailed as error:
        return error.problem
    return "ready"


# --- scenarios ------------------------------------------------------------------------
def replay_same_session(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def dup(hop: Hop) -> Forward:
        replay = _republish(hop, hop.packet.payload or b"", qos=0, dup=False)
        return Forward([hop.raw, replay], "replayed by the attacker")

    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), dup))
    return dep, _standard(dep)


def _two_sessions(
    cfg: FlowConfig, first: Callable[[Hop], None], second: Callable[[Hop, dict[str, Any]], Any]
) -> tuple[Deployment, dict[str, Any]]:
    state: dict[str, Any] = {"session": 1}

    def interceptor(hop: Hop) -> Forward | None:
        if state["session"] == 1:
            first(hop)
            return None
        return second(hop, state)

    dep = _deploy(cfg, interceptor)
    evidence = _standard(dep, messages=1)
    state["session"] = 2
    evidence["second_session"] = _reconnect(dep, "sensor-1")
    return dep, evidence


def replay_old_session(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    store: dict[str, bytes] = {}

    def first(hop: Hop) -> None:
        if _is(hop, "sensor-1", "c2b", MsgType.DATA):
            store.setdefault("data", hop.packet.payload or b"")

    dep, evidence = _two_sessions(cfg, first, lambda hop, state: None)
    if dep.tap is not None and "data" in store:
        frame = encode_publish(topics.data_topic("sensor-1"), store["data"], qos=0)
        dep.tap.inject("sensor-1", "c2b", frame, "old session's DATA replayed")
        dep.wait_delivered(10**6, 0.5)
    return dep, evidence


def replay_old_resp(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    store: dict[str, bytes] = {}

    def first(hop: Hop) -> None:
        if _is(hop, "sensor-1", "c2b", MsgType.RESP):
            store.setdefault("resp", hop.packet.payload or b"")

    def second(hop: Hop, state: dict[str, Any]) -> Forward | None:
        if _is(hop, "sensor-1", "c2b", MsgType.RESP) and "resp" in store:
            return Forward([_republish(hop, store["resp"])], "old RESP replayed")
        return None

    return _two_sessions(cfg, first, second)


def replay_old_chal(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    store: dict[str, bytes] = {}

    def first(hop: Hop) -> None:
        if _is(hop, "sensor-1", "b2c", MsgType.CHAL):
            store.setdefault("chal", hop.packet.payload or b"")

    def second(hop: Hop, state: dict[str, Any]) -> Forward | None:
        if _is(hop, "sensor-1", "b2c", MsgType.CHAL) and "chal" in store:
            return Forward([_republish(hop, store["chal"])], "fake broker replays an old CHAL")
        return None

    return _two_sessions(cfg, first, second)


def broker_impersonation(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    attacker = Ed25519Signer("attacker")
    holder: dict[str, Deployment] = {}

    def forge(hop: Hop) -> Forward | None:
        if _is(hop, "sensor-1", "b2c", MsgType.CHAL) or _is(hop, "sensor-1", "b2c", MsgType.OK):
            kid = holder["dep"].sk_b.public().kid
            forged = _resign(hop.packet.payload or b"", hop.packet.topic or "", attacker, kid)
            return Forward([_republish(hop, forged)], "signed by an impostor broker key")
        return None

    dep = _deploy(cfg, forge)
    holder["dep"] = dep
    evidence = _standard(dep)
    evidence["data_publishes_by_sensor_1"] = _data_published(dep, "sensor-1")
    evidence["reports_to_ms"] = len(dep.ms.reports)
    evidence["check"] = evidence["data_publishes_by_sensor_1"] == 0
    return dep, evidence


def wrong_device_key(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, sensors=1)
    victim = dep.sensors["sensor-1"]
    attacker = dep.add_sensor("sensor-1", None, register=False)
    victim.signer.close()
    evidence = _standard(dep)
    evidence["data_publishes_by_sensor_1"] = _data_published(dep, "sensor-1")
    evidence["check"] = evidence["data_publishes_by_sensor_1"] == 0 and attacker.state != "ready"
    return dep, evidence


def _flip_ct(hop: Hop) -> Forward:
    payload = bytearray(hop.packet.payload or b"")
    payload[-68] ^= 0x01  # last byte of CT, which sits just before the SIG TLV
    return Forward([_republish(hop, bytes(payload))], "one bit of the ciphertext flipped")


def tampered_payload(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), _flip_ct))
    evidence = _standard(dep)
    evidence["check"] = all(n >= 2 for n in evidence["received"].values())
    evidence["note"] = "the sensor re-sent the untouched original after the error ACK"
    return dep, evidence


def tampered_topic(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def move(hop: Hop) -> Forward:
        frame = _republish(hop, hop.packet.payload or b"", topic=topics.data_topic("sensor-2"))
        return Forward([frame], "moved to another device's topic")

    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), move), sensors=2)
    return dep, _standard(dep)


def _strip_sig(hop: Hop) -> Forward:
    return Forward([_republish(hop, (hop.packet.payload or b"")[:-67])], "SIG TLV stripped")


def stripped_signature(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), _strip_sig))
    return dep, _standard(dep)


def downgrade_plain(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None)
    dep.sensors["sensor-1"].force_plain = True
    return dep, _standard(dep, messages=1)


def _patch_byte(
    offset_of: Callable[[bytes], int], value: int, note: str
) -> Callable[[Hop], Forward]:
    def rewrite(hop: Hop) -> Forward:
        payload = bytearray(hop.packet.payload or b"")
        payload[offset_of(bytes(payload))] = value
        return Forward([_republish(hop, bytes(payload))], note)

    return rewrite


def downgrade_version(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    rewrite = _patch_byte(lambda p: 2, 0, "version byte set to 0")
    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), rewrite))
    return dep, _standard(dep)


def downgrade_alg(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def alg_offset(payload: bytes) -> int:
        env = wire.decode(payload)
        pos = 5
        while payload[pos] != T.ALG:
            pos += 3 + int.from_bytes(payload[pos + 1 : pos + 3], "big")
        del env
        return pos + 3

    rewrite = _patch_byte(alg_offset, 0, "ALG set to 0 (none)")
    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), rewrite))
    return dep, _standard(dep)


def stale_nonce(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, auth_deadline_s=0.3, extras={"resp_delay_s": 0.6})
    return dep, _standard(dep, messages=1, settle=1.0)


def slow_loris(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, auth_deadline_s=0.3)
    dep.sensors["sensor-1"].answer_challenge = False
    return dep, _standard(dep, messages=1, settle=1.0)


def stale_timestamp(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None)
    dep.sensors["sensor-1"].clock_offset_s = -120.0
    evidence = _standard(dep, messages=1, settle=2.0)
    _wait(lambda: bool(dep.ms.reports), 3.0)
    evidence["reports_to_ms"] = len(dep.ms.reports)
    return dep, evidence


def forged_ack(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    attacker = Ed25519Signer("attacker")
    holder: dict[str, Deployment] = {}

    def forge(hop: Hop) -> Forward | None:
        if _is(hop, "sensor-1", "b2c", MsgType.ACK):
            kid = holder["dep"].sk_b.public().kid
            forged = _resign(hop.packet.payload or b"", hop.packet.topic or "", attacker, kid)
            return Forward([_republish(hop, forged)], "real ACK replaced by a forged one")
        return None

    dep = _deploy(cfg, forge)
    holder["dep"] = dep
    evidence = _standard(dep, messages=1, settle=2.5)
    _wait(lambda: bool(dep.ms.reports), 3.0)  # the REPORT is still on its way over MQTT
    evidence["reports_to_ms"] = len(dep.ms.reports)
    evidence["check"] = evidence["reports_to_ms"] >= 1
    return dep, evidence


def malformed_tlv(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def trail(hop: Hop) -> Forward:
        return Forward(
            [_republish(hop, (hop.packet.payload or b"") + b"\x00")], "a byte appended after SIG"
        )

    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), trail))
    return dep, _standard(dep)


def plain_client(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None)
    evidence = _standard(dep, messages=1)
    intruder = Endpoint("sensor-1", dep.host, dep.port)
    try:
        intruder.connect(2.0)
        intruder.publish(topics.data_topic("sensor-1"), b"temperature=99", qos=1)
        dep.wait_delivered(10**6, 0.5)
        evidence["connected"] = True
    except MqttError as error:
        evidence["connected"] = False
        evidence["refused"] = error.problem
        # Mosquitto reports its refusal in its log, read on another thread
        _wait(lambda: any(v.role == "broker" for v in dep.trace.verdicts), 3.0)
    finally:
        intruder.stop()
    return dep, evidence


def wrong_subscriber(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def copy(hop: Hop) -> Forward | None:
        if _is(hop, "user-1", "b2c", MsgType.DELIVER):
            hop.tap.inject("user-2", "b2c", hop.raw, "user-1's DELIVER handed to user-2")
        return None

    dep = _deploy(cfg, copy, users=2)
    return dep, _standard(dep, messages=1)


def revoked_subscriber(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """user-2 is revoked and pseudonyms rotate; then a FWD for user-2 captured before the
    revocation is replayed to the DS, which must refuse it itself (no conversion key)."""
    store: dict[str, bytes] = {}

    def keep(hop: Hop) -> None:
        if _is(hop, "gateway", "c2b", MsgType.FWD) and hop.packet.topic == topics.int_topic(
            "user-2"
        ):
            store.setdefault("fwd", hop.raw)

    dep = _deploy(cfg, lambda hop: keep(hop), users=2)
    evidence = _standard(dep, messages=1)
    before = {n: len(u.readings) for n, u in dep.users.items()}
    old_ids = {r.ext_id for r in dep.users["user-1"].readings}
    dep.revoke_destination("user-2")
    dep.ds.rotate_pseudonyms()
    if dep.tap is not None and "fwd" in store:
        dep.tap.inject("gateway", "c2b", store["fwd"], "FWD for the revoked user-2 replayed")
    dep.send_readings(1)
    dep.users["user-1"].wait_for(before["user-1"] + 1, 2.0)
    dep.users["user-2"].wait_for(before["user-2"] + 1, 0.5)
    after = {n: len(u.readings) for n, u in dep.users.items()}
    new_ids = {r.ext_id for r in dep.users["user-1"].readings[before["user-1"] :]}
    evidence.update(before=before, after=after, ids_rotated=not (old_ids & new_ids))
    ok = after["user-2"] == before["user-2"] and after["user-1"] > before["user-1"]
    evidence["check"] = ok and evidence["ids_rotated"]
    return dep, evidence


def subscriber_trace(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """A curious subscriber tries to resolve its external ID: over MQTT (its only channel;
    the broker's ACL gives it no topic to write) and at the mapping store without the
    operator credential (refused; the audit records what the store established)."""
    dep = _deploy(cfg, None)
    evidence = _standard(dep, messages=1)
    ext_id = dep.users["user-1"].readings[0].ext_id if dep.users["user-1"].readings else "00"
    user = dep.users["user-1"].endpoint
    if user is not None:
        user.publish(f"{topics.PREFIX}/trace/{ext_id}", ext_id.encode(), qos=1)
    _wait(lambda: any(v.role == "broker" for v in dep.trace.verdicts), 3.0)
    try:
        dep.store.lookup(ext_id, None)
        evidence["denied"] = False
    except TraceDenied:
        evidence["denied"] = True
    audit = dep.store.audit()
    evidence["audit"] = [{k: str(v) for k, v in a.items()} for a in audit[-1:]]
    delivers = [
        p.ssdtf or {}
        for p in dep.trace.packets
        if p.lane == "user-1" and (p.ssdtf or {}).get("type") == "DELIVER"
    ]
    evidence["deliver_fields"] = sorted(delivers[0]) if delivers else []
    evidence["deliver_names_device"] = any("sensor-" in str(d) for d in delivers)
    evidence["check"] = (
        evidence["denied"]
        and not evidence["deliver_names_device"]
        and not any(a["outcome"] == "found" for a in audit)
    )
    return dep, evidence


# --- issue 10 classes: crash, flood, handshake state, credentials, linkability --------
def _signed_data(dep: Deployment, cid: str, over: dict[int, bytes] | None = None) -> bytes:
    """A DATA validly signed by ``cid``'s own key (a compromised device)."""
    sensor = dep.sensors[cid]
    fields = {
        T.CID: cid.encode(),
        T.SID: sensor.sid,
        T.SEQ: wire.u64(sensor.seq + 1),
        T.TS: wire.u64(now_ms()),
        T.KID: sensor.signer.public().kid,
        T.ALG: bytes([sensor.signer.alg]),
        T.CAPSULE: os.urandom(105),
        T.CT: os.urandom(32),
        T.BIND: os.urandom(16),
    } | (over or {})
    topic = topics.data_topic(cid)
    return wire.encode(MsgType.DATA, fields, flags=1, sign=sensor.signer.sign, topic=topic)


def _compromised_publish(dep: Deployment, cid: str, topic: str, payload: bytes) -> None:
    endpoint = dep.sensors[cid].endpoint
    if endpoint is not None:
        endpoint.publish(topic, payload, qos=1)


def _legit_after(dep: Deployment, cid: str = "sensor-1") -> bool:
    """The effect check of every crash/flood attack: a legit reading still arrives."""
    user = dep.users["user-1"]
    before = len(user.readings)
    sensor = dep.sensors[cid]
    if sensor.state != "ready":
        return False
    sensor.send(dep.reading(cid, 99))
    return user.wait_for(before + 1, 5.0)


def huge_seq(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, sensors=2)
    evidence = _standard(dep, messages=1)
    forwarded = dep.gateway.forwarded
    _compromised_publish(
        dep,
        "sensor-2",
        topics.data_topic("sensor-2"),
        _signed_data(dep, "sensor-2", {T.SEQ: wire.u64(2**64 - 1)}),
    )
    _wait(lambda: any("too far ahead" in v.reason for v in dep.trace.verdicts), 3.0)
    window = dep.gateway.sessions.get("sensor-2")
    evidence["window_high"] = window.window.high if window else None
    evidence["check"] = (
        dep.gateway.forwarded == forwarded
        and window is not None
        and window.window.high < 2**20
        and _legit_after(dep)
        and _legit_after(dep, "sensor-2")  # even the sender's own stream is not poisoned
    )
    return dep, evidence


def oversized_publish(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """A registered, READY device publishes 4 MiB on its own uplink (MQTT allows 256 MiB).
    The broker closes its connection on the fixed header, before reading the body; the tap
    passes the bytes through without holding them; nothing reaches the gateway."""
    dep = _deploy(cfg, None, sensors=2)
    evidence = _standard(dep, messages=1)
    forwarded = dep.gateway.forwarded
    attacker = dep.sensors["sensor-2"].endpoint
    _compromised_publish(dep, "sensor-2", topics.data_topic("sensor-2"), os.urandom(4 << 20))
    _wait(lambda: any(OVERSIZE_REASON in v.reason for v in dep.trace.verdicts), 5.0)
    evidence["attacker_closed"] = attacker is not None and attacker.closed.wait(5.0)
    evidence["gateway_saw_it"] = any(
        v.role == "gateway" and "sensor-2" in str(v.detail.get("topic", ""))
        for v in dep.trace.verdicts
    )
    evidence["check"] = (
        evidence["attacker_closed"]
        and not evidence["gateway_saw_it"]
        and dep.gateway.forwarded == forwarded
        and _legit_after(dep)
    )
    return dep, evidence


def oversized_connect(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """Anyone opens a TCP connection and announces a 200 MiB CONNECT, then keeps sending:
    the broker closes the connection without reading (or holding) it."""
    dep = _deploy(cfg, None)
    evidence = _standard(dep, messages=1)
    closed = False
    with socket.create_connection((dep.host, dep.port), timeout=5.0) as sock:
        try:
            sock.sendall(b"\x10" + encode_length(200 << 20) + b"\x00\x04MQTT\x04\x02\x00\x3c")
            for _ in range(256):  # 1 MiB more of the announced body, or until refused
                sock.sendall(os.urandom(4096))
            closed = sock.recv(1) == b""
        except OSError:  # reset by the broker while sending or reading: closed
            closed = True
    _wait(lambda: any(OVERSIZE_REASON in v.reason for v in dep.trace.verdicts), 5.0)
    evidence["closed"] = closed
    evidence["check"] = closed and _legit_after(dep)
    return dep, evidence


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other side closed ``sock`` (EOF or reset); never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def idle_connections(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """Anyone opens 100 TCP connections and sends no CONNECT (half of them one byte of it):
    each would hold sockets of the SSDTF process for ever. The broker closes every one at
    its CONNECT deadline and the process's descriptors come back to where they were."""
    dep = _deploy(cfg, None, connect_deadline_s=1.0)
    evidence = _standard(dep, messages=1)
    descriptors = len(os.listdir("/proc/self/fd"))
    idle = [socket.create_connection((dep.host, dep.port), timeout=5.0) for _ in range(100)]
    for sock in idle[::2]:
        sock.sendall(b"\x10")  # the first byte of a CONNECT, and nothing after it
    _wait(lambda: all(closed_by_peer(s) for s in idle), 8.0)
    evidence["closed_by_peer"] = sum(closed_by_peer(s) for s in idle)
    for sock in idle:
        sock.close()
    _wait(lambda: len(os.listdir("/proc/self/fd")) <= descriptors, 3.0)
    evidence["descriptors_left"] = len(os.listdir("/proc/self/fd")) - descriptors
    evidence["check"] = (
        evidence["closed_by_peer"] == len(idle)
        and evidence["descriptors_left"] <= 0
        and _legit_after(dep)
    )
    return dep, evidence


def _answers_new_connection(dep: Deployment) -> bool:
    """A new TCP connection gets its CONNECT answered (a CONNACK, here a refusal: wrong
    password), so the broker still serves newcomers while a flood holds connections."""
    try:
        with socket.create_connection((dep.host, dep.port), timeout=5.0) as sock:
            sock.sendall(connect_packet("ssdtf-probe", "nobody", "wrong", True, 30))
            return sock.recv(1) == b"\x20"
    except OSError:
        return False


def connection_flood(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """Anyone opens 400 TCP connections, sends no CONNECT and keeps them all open (within
    the CONNECT deadline, which alone would let them stand). The broker keeps at most
    ``max_unconnected`` waiting and closes the oldest for each new one: the process's
    descriptors stay bounded, a newcomer is still answered, a legit reading still arrives."""
    bound = 32
    dep = _deploy(cfg, None, max_unconnected=bound, connect_deadline_s=60.0)
    evidence = _standard(dep, messages=1)
    descriptors = len(os.listdir("/proc/self/fd"))
    flood: list[socket.socket] = []
    try:
        for _ in range(400):
            flood.append(socket.create_connection((dep.host, dep.port), timeout=5.0))
        # every connection but the newest ``bound`` is closed by the other side
        _wait(lambda: sum(closed_by_peer(s) for s in flood) >= len(flood) - bound, 8.0)
        evidence["closed_by_peer"] = sum(closed_by_peer(s) for s in flood)
        limit = 3 * bound + 16  # broker side, and two more per connection via the tap

        def held() -> int:
            """This process's own descriptors, less the attacker's sockets (in it here)."""
            return len(os.listdir("/proc/self/fd")) - descriptors - len(flood)

        _wait(lambda: held() <= limit, 5.0)  # closing a socket finishes on the loop's next turn
        evidence["descriptors_held"] = held()
        evidence["newcomer_answered"] = _answers_new_connection(dep)
        evidence["check"] = (
            evidence["closed_by_peer"] >= len(flood) - bound
            and evidence["descriptors_held"] <= limit
            and evidence["newcomer_answered"]
            and _legit_after(dep)
        )
    finally:
        for sock in flood:
            sock.close()
    return dep, evidence


def _replay_downstream(
    cfg: FlowConfig, lane: str, msg_type: MsgType, refused: str
) -> tuple[Deployment, dict[str, Any]]:
    """A man in the middle keeps the first ``msg_type`` delivered to ``lane`` and hands it to
    that role again, twice, after the flow: the receiver must refuse it (``refused`` in its
    verdict) and nothing is delivered again."""
    store: dict[str, bytes] = {}

    def keep(hop: Hop) -> None:
        if _is(hop, lane, "b2c", msg_type):
            store.setdefault("message", hop.raw)

    dep = _deploy(cfg, keep)
    evidence = _standard(dep, messages=1)
    got = {name: len(user.readings) for name, user in dep.users.items()}
    if dep.tap is not None and "message" in store:
        for _ in range(2):
            dep.tap.inject(lane, "b2c", store["message"], f"captured {msg_type.name} replayed")
    _wait(lambda: sum(refused in v.reason for v in dep.trace.verdicts) >= 2, 3.0)
    evidence["captured"] = "message" in store
    evidence["check"] = (
        evidence["captured"]
        and {name: len(user.readings) for name, user in dep.users.items()} == got
        and _legit_after(dep)
    )
    return dep, evidence


def replayed_deliver(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    return _replay_downstream(cfg, "user-1", MsgType.DELIVER, "replay: ignored")


def replayed_fwd(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    return _replay_downstream(cfg, "ds", MsgType.FWD, "replay: not delivered again")


def random_capsule(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, sensors=2)
    evidence = _standard(dep, messages=1)
    forwarded = dep.gateway.forwarded
    _compromised_publish(
        dep, "sensor-2", topics.data_topic("sensor-2"), _signed_data(dep, "sensor-2")
    )
    _wait(lambda: any("capsule refused" in v.reason for v in dep.trace.verdicts), 3.0)
    evidence["check"] = dep.gateway.forwarded == forwarded and _legit_after(dep)
    return dep, evidence


def replay_hello(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    store: dict[str, bytes] = {}

    def keep(hop: Hop) -> None:
        if _is(hop, "sensor-1", "c2b", MsgType.HELLO):
            store.setdefault("hello", hop.raw)

    dep = _deploy(cfg, lambda hop: keep(hop))
    evidence = _standard(dep, messages=1)
    session = dep.gateway.sessions.get("sensor-1")
    sid = session.sid if session else b""
    if dep.tap is not None and "hello" in store:
        dep.tap.inject("sensor-1", "c2b", store["hello"], "the sensor's HELLO replayed")
    _wait(lambda: any("HELLO replayed" in v.reason for v in dep.trace.verdicts), 3.0)
    after = dep.gateway.sessions.get("sensor-1")
    evidence["check"] = after is not None and after.sid == sid and _legit_after(dep)
    return dep, evidence


def hello_flood_attack(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    from drivers.ssdtf.flood import hello_flood

    dep = _deploy(cfg, None, sensors=2, auth_deadline_s=5.0, capture=False)
    evidence = _standard(dep, messages=1)
    threads = threading.active_count()
    report = hello_flood(dep, 300, "sensor-2", timeout=10)
    evidence["flood"] = report.as_dict()
    sizes = report.sizes_peak
    evidence["check"] = (
        report.challenges <= 2
        and report.threads_peak <= threads + 4
        and max(sizes.get("pending", 0), sizes.get("timers", 0)) <= 2
        and report.survivors == {"sensor-1": True}
        and _legit_after(dep)
    )
    return dep, evidence


def resigned_ciphertext(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """sensor-2 (compromised) re-signs sensor-1's captured capsule and ciphertext as its own
    DATA: every signature holds, the sender binding inside the plaintext does not."""
    store: dict[str, bytes] = {}

    def keep(hop: Hop) -> None:
        if _is(hop, "sensor-1", "c2b", MsgType.DATA):
            store.setdefault("data", hop.packet.payload or b"")

    dep = _deploy(cfg, lambda hop: keep(hop), sensors=2)
    evidence = _standard(dep, messages=1)
    before = len(dep.users["user-1"].readings)
    if "data" in store:
        stolen = wire.decode(store["data"])
        forged = _signed_data(
            dep,
            "sensor-2",
            {T.CAPSULE: stolen.get(T.CAPSULE), T.CT: stolen.get(T.CT), T.BIND: os.urandom(16)},
        )
        _compromised_publish(dep, "sensor-2", topics.data_topic("sensor-2"), forged)
    _wait(lambda: any("sender binding failed" in v.reason for v in dep.trace.verdicts), 3.0)
    evidence["check"] = len(dep.users["user-1"].readings) == before and _legit_after(dep)
    return dep, evidence


def held_back_deliver(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    held: dict[str, bytes] = {}

    def hold(hop: Hop) -> Forward | None:
        if "deliver" not in held and _is(hop, "user-1", "b2c", MsgType.DELIVER):
            held["deliver"] = hop.raw
            return Forward([], "DELIVER held back by the attacker")
        return None

    dep = _deploy(cfg, hold, ts_window_s=1.0)
    evidence = _standard(dep, messages=1, settle=1.0)
    before = len(dep.users["user-1"].readings)
    time.sleep(1.3)
    if dep.tap is not None and "deliver" in held:
        dep.tap.inject("user-1", "b2c", held["deliver"], "held-back DELIVER released late")
    _wait(lambda: any("held back" in v.reason for v in dep.trace.verdicts), 3.0)
    evidence["check"] = len(dep.users["user-1"].readings) == before
    return dep, evidence


def replayed_report(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    attacker = Ed25519Signer("attacker")
    holder: dict[str, Deployment] = {}

    def act(hop: Hop) -> Forward | None:
        if _is(hop, "sensor-1", "b2c", MsgType.ACK):
            kid = holder["dep"].sk_b.public().kid
            forged = _resign(hop.packet.payload or b"", hop.packet.topic or "", attacker, kid)
            return Forward([_republish(hop, forged)], "ACK forged (to provoke a REPORT)")
        if _is(hop, "sensor-1", "c2b", MsgType.REPORT):
            return Forward([hop.raw, hop.raw, hop.raw], "REPORT replayed twice")
        return None

    dep = _deploy(cfg, act)
    holder["dep"] = dep
    evidence = _standard(dep, messages=1, settle=2.5)
    _wait(lambda: any("duplicate report" in v.reason for v in dep.trace.verdicts), 3.0)
    evidence["reports_to_ms"] = len(dep.ms.reports)
    evidence["check"] = len(dep.ms.reports) == 1  # counted once
    return dep, evidence


def _try_connect(dep: Deployment, cid: str, username: str, password: str) -> bool:
    intruder = Endpoint(cid, dep.host, dep.port, username=username, password=password)
    try:
        intruder.connect(5.0)
        return True
    except MqttError:
        return False
    finally:
        intruder.stop()


def gateway_identity_theft(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, users=2)
    evidence = _standard(dep, messages=1)
    evidence["connected"] = _try_connect(dep, "ssdtf-gateway", "gateway", dep.credentials["user-2"])
    _wait(lambda: any(v.role == "broker" for v in dep.trace.verdicts), 3.0)
    gw = dep.gateway.endpoint
    evidence["check"] = (
        not evidence["connected"] and gw is not None and gw.connected.is_set() and _legit_after(dep)
    )
    return dep, evidence


def sensor_identity_theft(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, sensors=2)
    evidence = _standard(dep, messages=1)
    user = os.urandom(16).hex() if dep.cfg.broker == "embedded" else "sensor-1"
    stolen = sensor_password(dep.policy.sensor_secrets["sensor-2"])  # another device's secret
    evidence["connected"] = _try_connect(dep, "sensor-1", user, stolen)
    _wait(lambda: any(v.role == "broker" for v in dep.trace.verdicts), 3.0)
    evidence["check"] = (
        not evidence["connected"] and dep.gateway.is_ready("sensor-1") and _legit_after(dep)
    )
    return dep, evidence


def uplink_snoop(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None)
    dep.start()
    got: list[bytes] = []
    user = dep.users["user-1"].endpoint
    assert user is not None
    user.handlers.insert(0, ("ssdtf/v1/up/+", lambda t, p, m: got.append(p)))
    evidence: dict[str, Any] = {"granted": user.subscribe([("ssdtf/v1/up/+", 1)], 10)}
    dep.connect_sensors()
    dep.send_readings(2)
    dep.wait_delivered(2, 3.0)
    evidence["received"] = {n: len(u.readings) for n, u in dep.users.items()}
    evidence["uplinks_seen"] = len(got)
    evidence["check"] = not got and evidence["received"]["user-1"] >= 2
    return dep, evidence


def chal_injection(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """A MITM injects junk and a replayed CHAL on a READY sensor's auth topic: dropped, the
    session stays up (before issue 10 a malformed frame ended the session)."""
    store: dict[str, bytes] = {}

    def keep(hop: Hop) -> None:
        if _is(hop, "sensor-1", "b2c", MsgType.CHAL):
            store.setdefault("chal", hop.packet.payload or b"")

    dep = _deploy(cfg, lambda hop: keep(hop))
    evidence = _standard(dep, messages=1)
    down = topics.auth_down("sensor-1")
    if dep.tap is not None:
        dep.tap.inject("sensor-1", "b2c", encode_publish(down, b"SD\x01junk", qos=0), "junk")
        if "chal" in store:
            frame = encode_publish(down, store["chal"], qos=0)
            dep.tap.inject("sensor-1", "b2c", frame, "old CHAL replayed to a READY sensor")
    _wait(lambda: any("outside a pending handshake" in v.reason for v in dep.trace.verdicts), 3)
    evidence["check"] = dep.sensors["sensor-1"].state == "ready" and _legit_after(dep)
    return dep, evidence


# --- registrations over MQTT (REG to the MS, PROV to gateway and DS) -------------------
def _registry_state(dep: Deployment) -> tuple[Any, ...]:
    """Everything a registration can change, at the MS and at both proxies."""
    return (
        dep.ms.registry.snapshot(),
        {cid: ref.public_bytes for cid, ref in dep.gateway.devices.items()},
        dict(dep.gateway.topics),
        {n: d.receiver_pre for n, d in dep.gateway.destinations.items()},
        {n: r.receiver_pre for n, r in dep.ds.recipients.items()},
        {n: ref.public_bytes for n, ref in dep.ms.devices.items()},
    )


def _refused_registration(dep: Deployment, role: str) -> bool:
    return any(
        v.role == role and v.stage == "registration" and not v.ok for v in dep.trace.verdicts
    )


def _device_fields(cid: str, public: bytes) -> dict[int, bytes]:
    return {T.CID: cid.encode(), T.PUBKEY: public, T.KEYALG: bytes([Alg.ED25519])}


def _inject_reg(dep: Deployment, payload: bytes, note: str) -> None:
    """Inject ``payload`` on the devices' registrar's own connection (a MITM on its link)."""
    name = dep.device_reg.name
    if dep.tap is not None:
        frame = encode_publish(topics.reg_topic(name), payload, qos=0)
        dep.tap.inject(name, "c2b", frame, note)


def forged_registration(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """A MITM on the registrar's link registers a device sensor-9 with its own key, claiming
    the registrar's key ID; it cannot make the registrar's signature."""
    dep = _deploy(cfg, None)
    evidence = _standard(dep, messages=1)
    before = _registry_state(dep)
    attacker = Ed25519Signer("attacker")
    fields = _device_fields("sensor-9", attacker.public().public_bytes) | {
        T.TS: wire.u64(now_ms()),
        T.ND: os.urandom(16),
        T.KIND: bytes([RegKind.DEVICE]),
        T.KID: dep.device_reg.key.kid,
        T.ALG: bytes([dep.device_reg.key.alg]),
    }
    topic = topics.reg_topic(dep.device_reg.name)
    forged = wire.encode(MsgType.REG, fields, flags=1, sign=attacker.sign, topic=topic)
    _inject_reg(dep, forged, "REG forged with the attacker's key")
    _wait(lambda: _refused_registration(dep, "ms"), 3.0)
    evidence["check"] = _registry_state(dep) == before and _legit_after(dep)
    return dep, evidence


def unsigned_registration(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None)
    evidence = _standard(dep, messages=1)
    before = _registry_state(dep)
    attacker = Ed25519Signer("attacker")
    fields = _device_fields("sensor-9", attacker.public().public_bytes) | {
        T.TS: wire.u64(now_ms()),
        T.ND: os.urandom(16),
        T.KIND: bytes([RegKind.DEVICE]),
        T.KID: dep.device_reg.key.kid,
        T.ALG: bytes([dep.device_reg.key.alg]),
    }
    _inject_reg(dep, wire.encode(MsgType.REG, fields, flags=1), "REG without a signature")
    _wait(lambda: _refused_registration(dep, "ms"), 3.0)
    evidence["check"] = _registry_state(dep) == before and _legit_after(dep)
    return dep, evidence


def _keep_user2_destination(store: dict[str, bytes]) -> Callable[[Hop], None]:
    """Keep user-2's destination REG (registrar -> MS) and its PROV to the gateway."""

    def keep(hop: Hop) -> None:
        payload = hop.packet.payload
        if payload is None or not hop.packet.topic:
            return
        try:
            env = wire.decode(payload)
            reg = wire.decode(env.get(T.INNER)) if env.type == MsgType.PROV else env
        except wire.WireError:
            return
        if reg.type != MsgType.REG or reg.fields.get(T.SUB) != b"user-2":
            return
        if env.type == MsgType.REG and hop.direction == "c2b":
            store.setdefault("reg", hop.raw)
        if env.type == MsgType.PROV and hop.conn.lane == "gateway" and hop.direction == "b2c":
            store.setdefault("prov", hop.raw)

    return keep


def _replay_after_revocation(
    cfg: FlowConfig, which: str
) -> tuple[Deployment, dict[str, Any], dict[str, bytes]]:
    store: dict[str, bytes] = {}
    dep = _deploy(cfg, _keep_user2_destination(store), users=2)
    evidence = _standard(dep, messages=1)
    dep.revoke_destination("user-2")
    before = _registry_state(dep)
    got = len(dep.users["user-2"].readings)
    if dep.tap is not None and which in store:
        lane, direction = (dep.dest_reg.name, "c2b") if which == "reg" else ("gateway", "b2c")
        dep.tap.inject(lane, direction, store[which], f"old {which.upper()} for user-2 replayed")
    role = "ms" if which == "reg" else "gateway"
    _wait(lambda: _refused_registration(dep, role), 3.0)
    dep.send_readings(1)
    dep.users["user-1"].wait_for(2 * len(dep.sensors), 3.0)
    evidence["captured"] = which in store
    evidence["check"] = (
        which in store
        and _registry_state(dep) == before
        and "user-2" not in dep.gateway.destinations
        and "user-2" not in dep.ds.recipients
        and len(dep.users["user-2"].readings) == got
    )
    return dep, evidence, store


def replayed_registration(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """user-2 is revoked; its old destination REG is replayed to the MS to re-instate it."""
    dep, evidence, _ = _replay_after_revocation(cfg, "reg")
    return dep, evidence


def replayed_provisioning(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """user-2 is revoked; the MS's old PROV for it is replayed straight to the gateway."""
    dep, evidence, _ = _replay_after_revocation(cfg, "prov")
    return dep, evidence


def registration_identity_theft(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """user-2 publishes a registration on user-1's registration topic (speaking as user-1)."""
    dep = _deploy(cfg, None, users=2)
    evidence = _standard(dep, messages=1)
    before = _registry_state(dep)
    thief = dep.users["user-2"]
    fields = {T.SUB: b"user-2"} | {
        T.PUBKEY: thief.signer.public().public_bytes,
        T.KEYALG: bytes([thief.signer.alg]),
        T.HASH: os.urandom(32),
        T.HASH2: os.urandom(32),
    }
    payload = build_reg(thief.signer, "user-1", RegKind.DESTINATION, fields)
    if thief.endpoint is not None:
        thief.endpoint.publish(topics.reg_topic("user-1"), payload, qos=1)
    _wait(lambda: any(v.role == "broker" for v in dep.trace.verdicts), 3.0)
    evidence["check"] = _registry_state(dep) == before and _legit_after(dep)
    return dep, evidence


def device_identity_takeover(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """The registrar's own link is used to register sensor-1 again with another key, and a
    device under the gateway's client ID: an identity is never taken over by registering."""
    dep = _deploy(cfg, None)
    evidence = _standard(dep, messages=1)
    before = _registry_state(dep)
    registrar = dep.registrar_role(dep.device_reg.name)
    other = Ed25519Signer("attacker").public().public_bytes
    registrar.register(RegKind.DEVICE, _device_fields("sensor-1", other))
    registrar.register(RegKind.DEVICE, _device_fields("ssdtf-gateway", other))
    registrar.register(RegKind.DEVICE, _device_fields("user-9", other))  # users' namespace
    _wait(lambda: sum("belongs to a service" in v.reason for v in dep.trace.verdicts) >= 2, 3.0)
    evidence["check"] = _registry_state(dep) == before and _legit_after(dep)
    return dep, evidence


def destination_takeover(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """user-2 registers "user-1" as a destination with its own keys (to get user-1's data)."""
    dep = _deploy(cfg, None, users=2)
    evidence = _standard(dep, messages=1)
    before = _registry_state(dep)
    thief = dep.users["user-2"]
    fields = {
        T.SUB: b"user-1",
        T.PUBKEY: thief.signer.public().public_bytes,
        T.KEYALG: bytes([thief.signer.alg]),
        T.HASH: os.urandom(32),
        T.HASH2: os.urandom(32),
    }
    if thief.pre_keys is not None:
        fields[T.PREKEY] = thief.pre_keys.public
    if thief.wrap_keys is not None:
        fields[T.WRAPKEY] = thief.wrap_keys.public
    thief.register(RegKind.DESTINATION, fields)
    _wait(lambda: _refused_registration(dep, "ms"), 3.0)
    evidence["check"] = _registry_state(dep) == before and _legit_after(dep)
    return dep, evidence


def topic_hijack(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    """user-2 registers sensor-1's uplink topic, which the devices' registrar owns."""
    dep = _deploy(cfg, None, users=2)
    evidence = _standard(dep, messages=1)
    before = _registry_state(dep)
    topic = topics.data_topic("sensor-1").encode()
    dep.users["user-2"].register(RegKind.TOPIC, {T.CID: b"sensor-1", T.TOPIC: topic})
    _wait(lambda: _refused_registration(dep, "ms"), 3.0)
    evidence["check"] = _registry_state(dep) == before and _legit_after(dep)
    return dep, evidence


def control_qos(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    dep = _deploy(cfg, None, gateway_qos=0, extras={"user_qos": 0})
    return dep, _standard(dep)


def control_dup(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def dup(hop: Hop) -> Forward:
        again = _republish(hop, hop.packet.payload or b"", dup=True)
        return Forward([hop.raw, again], "re-sent with DUP=1 (QoS 1 retransmission)")

    dep = _deploy(cfg, Once(lambda h: _is(h, "sensor-1", "c2b", MsgType.DATA), dup))
    return dep, _standard(dep)


def control_retain(cfg: FlowConfig) -> tuple[Deployment, dict[str, Any]]:
    def flip(hop: Hop) -> Forward:
        return Forward(
            [_republish(hop, hop.packet.payload or b"", retain=True)],
            "RETAIN set on delivery (as for a new subscription)",
        )

    dep = _deploy(cfg, Once(lambda h: _is(h, "gateway", "b2c", MsgType.DATA), flip), retain=True)
    return dep, _standard(dep)


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in [
        Attack(
            "replay",
            "Replay a captured DATA envelope in the same session",
            [("gateway", "duplicate seq=")],
            replay_same_session,
        ),
        Attack(
            "replay-old-session",
            "Replay DATA from an old session into a new one",
            [("gateway", "sid mismatch")],
            replay_old_session,
        ),
        Attack(
            "replay-resp",
            "Replay an old RESP into a new handshake",
            [("gateway", "nonce Nb unknown")],
            replay_old_resp,
        ),
        Attack(
            "replay-chal",
            "Fake broker replays an old CHAL",
            [("sensor-1", "Nd echo mismatch")],
            replay_old_chal,
        ),
        Attack(
            "broker-impersonation",
            "Impostor broker without sk_B",
            [("sensor-1", "broker signature invalid")],
            broker_impersonation,
        ),
        Attack(
            "wrong-device-key",
            "Device impersonation: victim's client ID, attacker's key",
            [("gateway", "device signature invalid")],
            wrong_device_key,
        ),
        Attack(
            "tampered-payload",
            "One bit of the ciphertext flipped on the wire",
            [("gateway", "device signature invalid")],
            tampered_payload,
        ),
        Attack(
            "tampered-topic",
            "DATA moved to another device's topic",
            [("broker", "not this client's topic"), ("gateway", "signature invalid")],
            tampered_topic,
        ),
        Attack(
            "stripped-signature",
            "Signature TLV removed",
            [("gateway", "missing field: SIG")],
            stripped_signature,
        ),
        Attack(
            "downgrade",
            "Plaintext DATA where re-encryption is required",
            [("gateway", "downgrade: plaintext")],
            downgrade_plain,
        ),
        Attack(
            "downgrade-version",
            "Envelope version set to 0",
            [("gateway", "unsupported version")],
            downgrade_version,
        ),
        Attack("downgrade-alg", "ALG set to 0 (none)", [("gateway", "ALG 0x00")], downgrade_alg),
        Attack(
            "stale-nonce",
            "RESP sent after the nonce deadline",
            [("gateway", "expired")],
            stale_nonce,
        ),
        Attack(
            "slow-loris",
            "Handshake never completed",
            [("gateway", "handshake deadline passed")],
            slow_loris,
        ),
        Attack(
            "stale-timestamp",
            "Device clock 120 s behind",
            [("gateway", "timestamp outside")],
            stale_timestamp,
        ),
        Attack(
            "forged-ack",
            "Forged ACKs to suppress retransmission",
            [("sensor-1", "broker signature invalid")],
            forged_ack,
        ),
        Attack(
            "malformed-tlv",
            "Trailing byte after SIG",
            [("gateway", "trailing bytes after SIG")],
            malformed_tlv,
        ),
        Attack(
            "plain-client",
            "Plain MQTT client on the SSDTF listener",
            [("broker", "not an SSDTF client"), ("gateway", "malformed")],
            plain_client,
        ),
        Attack(
            "wrong-subscriber",
            "Subscriber uses another subscriber's DELIVER",
            [("user-2", "not for this receiver")],
            wrong_subscriber,
        ),
        Attack(
            "revoked-subscriber",
            "Revoked subscriber's old FWD replayed; pseudonyms rotated",
            [("ds", "no conversion key for user-2")],
            revoked_subscriber,
        ),
        Attack(
            "subscriber-trace",
            "Subscriber tries to resolve an external ID",
            [("broker", "refused")],
            subscriber_trace,
        ),
        Attack(
            "huge-seq",
            "Compromised device: signed DATA with seq 2^64-1 (crashed the gateway before)",
            [("gateway", "too far ahead")],
            huge_seq,
        ),
        Attack(
            "oversized-publish",
            "Compromised device: a 4 MiB PUBLISH on its own uplink (MQTT allows 256 MiB)",
            [("broker", OVERSIZE_REASON)],
            oversized_publish,
        ),
        Attack(
            "oversized-connect",
            "Anyone: a CONNECT announcing 200 MiB, then 1 MiB of it",
            [("broker", OVERSIZE_REASON)],
            oversized_connect,
        ),
        Attack(
            "idle-connections",
            "Anyone: 100 TCP connections that never send a CONNECT (half send one byte)",
            [("broker", "no CONNECT within")],
            idle_connections,
        ),
        Attack(
            "connection-flood",
            "Anyone: 400 TCP connections without a CONNECT, all held open",
            [("broker", "connections without a CONNECT: the oldest closed")],
            connection_flood,
        ),
        Attack(
            "replayed-deliver",
            "A captured DELIVER handed to its data user again (within the time window)",
            [("user-1", "replay: ignored")],
            replayed_deliver,
        ),
        Attack(
            "replayed-fwd",
            "A captured FWD handed to the DS again (within the time window)",
            [("ds", "replay: not delivered again")],
            replayed_fwd,
        ),
        Attack(
            "random-capsule",
            "Compromised device: signed DATA with a random capsule (PreError before)",
            [("gateway", "capsule refused")],
            random_capsule,
        ),
        Attack(
            "replay-hello",
            "The sensor's own HELLO replayed into its READY session",
            [("gateway", "HELLO replayed")],
            replay_hello,
        ),
        Attack(
            "hello-flood",
            "300 HELLOs under a registered client ID",
            [
                ("gateway", "HELLO nonce differs"),
                ("gateway", "already pending"),
                ("gateway", "rate limit"),
            ],
            hello_flood_attack,
        ),
        Attack(
            "resigned-ciphertext",
            "Compromised device re-signs another device's ciphertext as its own",
            [("user-1", "sender binding failed")],
            resigned_ciphertext,
        ),
        Attack(
            "held-back-deliver",
            "DELIVER held back past the timestamp window, then released",
            [("user-1", "held back")],
            held_back_deliver,
        ),
        Attack(
            "replayed-report",
            "REPORT replayed to the management server",
            [("ms", "duplicate report")],
            replayed_report,
        ),
        Attack(
            "gateway-identity-theft",
            "A data user logs in as the gateway with its own password",
            [("broker", "wrong credential for service gateway"), ("broker", "CONNECT refused")],
            gateway_identity_theft,
        ),
        Attack(
            "sensor-identity-theft",
            "Connect under sensor-1's client ID with another device's secret",
            [("broker", "wrong device credential"), ("broker", "CONNECT refused")],
            sensor_identity_theft,
        ),
        Attack(
            "uplink-snoop",
            "A data user subscribes to every uplink (to map pseudonyms to devices)",
            [("broker", "SUBSCRIBE to ssdtf/v1/up/+ refused")],
            uplink_snoop,
        ),
        Attack(
            "chal-injection",
            "Junk and an old CHAL injected towards a READY sensor",
            [("sensor-1", "outside a pending handshake")],
            chal_injection,
        ),
        Attack(
            "forged-registration",
            "MITM on the registrar's link: a device REG signed with the attacker's key",
            [("ms", "registrar ms signature invalid"), ("ms", "signature invalid")],
            forged_registration,
        ),
        Attack(
            "unsigned-registration",
            "A device REG without a signature",
            [("ms", "missing field: SIG")],
            unsigned_registration,
        ),
        Attack(
            "replayed-registration",
            "A revoked destination's old REG replayed to the MS",
            [("ms", "replayed")],
            replayed_registration,
        ),
        Attack(
            "replayed-provisioning",
            "A revoked destination's old PROV replayed to the gateway",
            [("gateway", "replayed")],
            replayed_provisioning,
        ),
        Attack(
            "registration-identity-theft",
            "user-2 publishes a registration on user-1's registration topic",
            [("broker", "reg/user-1 refused")],
            registration_identity_theft,
        ),
        Attack(
            "device-identity-takeover",
            "Re-register sensor-1 with another key, and a device as the gateway",
            [("ms", "already registered to another key"), ("ms", "belongs to a service")],
            device_identity_takeover,
        ),
        Attack(
            "destination-takeover",
            "user-2 registers destination user-1 with its own keys",
            [("ms", "is not the registrar of destinations")],
            destination_takeover,
        ),
        Attack(
            "topic-hijack",
            "user-2 registers sensor-1's uplink topic (owned by the devices' registrar)",
            [("ms", "does not own it")],
            topic_hijack,
        ),
        Attack(
            "control-qos",
            "Positive control: QoS downgraded 1→0 on delivery",
            [],
            control_qos,
            control=True,
        ),
        Attack("control-dup", "Positive control: DUP re-send", [], control_dup, control=True),
        Attack(
            "control-retain",
            "Positive control: RETAIN published and changed on delivery",
            [],
            control_retain,
            control=True,
        ),
    ]
}


def _match(verdicts: list[Verdict], expect: list[tuple[str, str]]) -> Verdict | None:
    for verdict in verdicts:
        if verdict.ok:
            continue
        for role, text in expect:
            if verdict.role == role and text in verdict.reason:
                return verdict
    return None


def run_attack(name: str, cfg: FlowConfig | None = None) -> AttackOutcome:
    """Run one attack (or control) on a fresh deployment and judge the trace."""
    attack = ATTACKS.get(name)
    if attack is None:
        raise SafeLabError(f"unknown attack {name!r}", f"choose one of {', '.join(ATTACKS)}")
    cfg = cfg or FlowConfig()
    created: list[Deployment] = []
    _LIVE.deployments = created
    try:
        dep, evidence = attack.scenario(cfg)
    finally:
        _LIVE.deployments = []
        for live in created:
            with contextlib.suppress(Exception):  # stopping must not hide the real error
                live.stop()
    outcome = AttackOutcome(
        attack.name,
        attack.title,
        False,
        expected=attack.expect,
        evidence=evidence,
        control=attack.control,
        trace=dep.trace,
    )
    verdicts = list(dep.trace.verdicts)
    if attack.control:
        bad = [v for v in verdicts if not v.ok and not v.detail.get("benign")]
        expected = 2 * len(dep.sensors)  # _standard sends two readings per sensor
        delivered = all(n >= expected for n in evidence.get("received", {}).values())
        outcome.rejected = not bad and delivered
        outcome.reason = bad[0].reason if bad else "all messages verified and delivered"
        outcome.role = bad[0].role if bad else ""
        return outcome
    hit = _match(verdicts, attack.expect)
    if hit is not None:
        outcome.role, outcome.reason, outcome.packet = hit.role, hit.reason, hit.packet
    evidence["no_effect"] = _no_extra_delivery(dep)
    outcome.rejected = (
        hit is not None and evidence["no_effect"] and bool(evidence.get("check", True))
    )
    return outcome


def _no_extra_delivery(dep: Deployment) -> bool:
    """The effect check every attack shares: no data user got more readings than the
    sensors sent, nor any value a sensor did not send (a replayed, tampered or foreign
    message delivered would break one of the two). Attack-specific effects (victim's session
    still up, state bounded, nothing forwarded, counted once) are in ``evidence["check"]``."""
    sent = sum(s.seq for s in dep.sensors.values())
    legit = {dep.reading(c, i) for c in dep.sensors for i in (*range(dep.cfg.messages + 2), 99)}
    return all(
        len(user.readings) <= sent and all(r.value in legit for r in user.readings)
        for user in dep.users.values()
    )
