"""Registrations travel as signed MQTT messages (REG to the MS, PROV to gateway and DS),
visible in the capture, judged by the roles' own code; what remains simulated says so."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from drivers.errors import SafeLabError
from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import SIMULATED, Deployment
from drivers.ssdtf.registry import build_reg
from drivers.ssdtf.replay import now_ms
from drivers.ssdtf.signing import Ed25519Signer
from drivers.ssdtf.wire import Alg, MsgType, RegKind, T
from tests.ssdtf.conftest import run

SIGNER = Ed25519Signer("registrar")


def reg(kind: RegKind, fields: dict[int, bytes], registrar: str = "ms") -> bytes:
    return build_reg(SIGNER, registrar, kind, fields)


@pytest.mark.parametrize("model", [1, 2, 3])
def test_registrations_are_packets_judged_by_the_roles(model: int) -> None:
    dep = run(model=model, sensors=2, messages=1, users=2)
    registrar = {1: "ms", 2: "user-1", 3: "ms"}[model]
    dest_registrar = {1: "ms", 2: "user-1", 3: "user-1"}[model]
    regs = [p for p in dep.trace.packets if (p.ssdtf or {}).get("type") == "REG"]
    provs = [p for p in dep.trace.packets if (p.ssdtf or {}).get("type") == "PROV"]
    # two destinations, two devices and their two topics: each one REG, published once
    sent = [p for p in regs if p.direction == "c2b"]
    kinds = sorted((p.lane, p.ssdtf["kind"]) for p in sent)  # type: ignore[index]
    assert kinds == sorted(
        [(dest_registrar, "DESTINATION")] * 2
        + [(registrar, "DEVICE")] * 2
        + [(registrar, "TOPIC")] * 2
    )
    assert all(p.topic == topics.reg_topic(p.lane) for p in sent)
    to_gw = [p for p in provs if p.lane == "gateway" and p.direction == "b2c"]
    to_ds = [p for p in provs if p.lane == "ds" and p.direction == "b2c"]
    assert len(to_gw) == 6 and len(to_ds) == 2  # the DS gets destinations only
    judged = [v for v in dep.trace.verdicts if v.stage == "registration"]
    assert {v.role for v in judged} == {"ms", "gateway", "ds"} and all(v.ok for v in judged)
    assert sum(v.role == "ms" for v in judged) == 6
    assert dep.last_result.ok  # type: ignore[attr-defined]
    # the key notes no longer claim an in-process registration, but say what is simulated
    notes = [k.note for keys in dep.trace.keys_at(len(dep.trace.packets)).values() for k in keys]
    assert not any("registration simulated" in n for n in notes)
    assert any("handed over in process (simulated)" in n for n in notes)
    assert dep.last_result.simulated == SIMULATED  # type: ignore[attr-defined]
    assert not any("registration (devices" in s for s in SIMULATED)


def test_the_ms_alone_cannot_register_a_device_in_model_2() -> None:
    """In model 2 the data user is the registrar: a PROV the MS signs around a REG that it
    (not the registrar) signed is refused by the gateway, and nothing is registered."""
    dep = Deployment(FlowConfig(model=2, sensors=1, messages=0, capture=False))
    try:
        dep.start()
        before = dict(dep.gateway.devices)
        inner = build_reg(
            dep.sk_ms,
            "user-1",
            RegKind.DEVICE,
            {T.CID: b"sensor-7", T.PUBKEY: os.urandom(32), T.KEYALG: bytes([Alg.ED25519])},
        )
        topic = topics.prov_topic("gateway")
        fields = {
            T.TS: wire.u64(now_ms()),
            T.INNER: inner,
            T.SUB: b"user-1",
            T.KID: dep.sk_ms.public().kid,
            T.ALG: bytes([dep.sk_ms.alg]),
        }
        prov = wire.encode(MsgType.PROV, fields, flags=1, sign=dep.sk_ms.sign, topic=topic)
        assert dep.ms.endpoint is not None
        dep.ms.endpoint.publish(topic, prov, qos=1)
        end = time.monotonic() + 5
        refused: list[str] = []
        while not refused and time.monotonic() < end:
            refused = [
                v.reason
                for v in dep.trace.verdicts
                if v.role == "gateway" and v.stage == "registration" and not v.ok
            ]
            time.sleep(0.02)
        assert refused and "registrar signature invalid" in refused[0]
        assert dep.gateway.devices == before and "sensor-7" not in dep.gateway.devices
    finally:
        dep.stop()


def test_a_conversion_key_share_that_differs_is_refused() -> None:
    """The shares are handed over in process (simulated); the signed registration over MQTT
    binds their hash, and each proxy refuses a share that does not match it."""
    cfg = FlowConfig(model=1, sensors=1, messages=0, users=2, capture=False, connect_timeout_s=3)
    dep = Deployment(cfg)
    try:
        dep.start()
        dep.revoke_destination("user-2")
        dep.gateway.offer_kfrag("user-2", b"not the registered share 1")
        dep.ds.offer_kfrag("user-2", b"not the registered share 2")
        user = dep.users["user-2"]
        assert dep.owner_keys is not None and user.pre_keys is not None
        kfrags = dep.pre.conversion_keys(dep.owner_keys, user.pre_keys.public)  # type: ignore[union-attr]
        fields = {
            T.SUB: b"user-2",
            T.PUBKEY: user.signer.public().public_bytes,
            T.KEYALG: bytes([Alg.ED25519]),
            T.HASH: hashlib.sha256(kfrags[0]).digest(),
            T.HASH2: hashlib.sha256(kfrags[1]).digest(),
            T.PREKEY: user.pre_keys.public,
            T.WRAPKEY: user.wrap_keys.public,  # type: ignore[union-attr]
        }
        with pytest.raises(SafeLabError):
            dep._register(dep.dest_reg, RegKind.DESTINATION, fields)
        reasons = [v.reason for v in dep.trace.rejections() if v.stage == "registration"]
        assert any("share 1 for user-2 missing or not the registered one" in r for r in reasons)
        assert any("share 2 for user-2 missing or not the registered one" in r for r in reasons)
        assert "user-2" not in dep.gateway.destinations and "user-2" not in dep.ds.recipients
    finally:
        dep.stop()


def test_reg_wire_rules() -> None:
    device = {T.CID: b"sensor-1", T.PUBKEY: b"\x01" * 32, T.KEYALG: bytes([Alg.ED25519])}
    env = wire.decode(reg(RegKind.DEVICE, device))
    assert env.type == MsgType.REG and env.summary()["kind"] == "DEVICE"
    assert SIGNER.public().verify(env.get(T.SIG), env.tbs(topics.reg_topic("ms")))
    assert not SIGNER.public().verify(env.get(T.SIG), env.tbs(topics.reg_topic("user-2")))
    with pytest.raises(wire.MissingError):  # a device REG needs its key
        wire.decode(reg(RegKind.DEVICE, {T.CID: b"sensor-1"}))
    with pytest.raises(wire.UnexpectedError):  # a field of another kind
        wire.decode(reg(RegKind.DEVICE, device | {T.TOPIC: b"ssdtf/v1/up/sensor-1"}))
    with pytest.raises(wire.FieldValueError):  # wildcards are never a topic
        wire.decode(reg(RegKind.TOPIC, {T.CID: b"sensor-1", T.TOPIC: b"ssdtf/v1/up/+"}))
    with pytest.raises(wire.FieldValueError):  # "none" is not a key algorithm
        wire.decode(reg(RegKind.DEVICE, device | {T.KEYALG: b"\x00"}))
    header = {T.TS: wire.u64(1), T.ND: b"n" * 16, T.KID: b"k" * 8, T.ALG: bytes([Alg.ED25519])}
    unknown = wire.encode(MsgType.REG, device | header | {T.KIND: b"\x09"}, sign=SIGNER.sign)
    with pytest.raises(wire.FieldValueError):  # an unknown kind
        wire.decode(unknown)
    with pytest.raises(wire.MissingError):  # unsigned
        raw = reg(RegKind.DEVICE, device)
        wire.decode(raw[: wire.decode(raw).sig_offset])


def test_a_destination_without_a_wrap_key_is_refused_by_the_ds() -> None:
    """The DS re-wraps every DELIVER to the destination's registered X25519 key; a
    destination registered without one gets nothing delivered in the clear or under another
    key: the DS refuses the registration and holds no share for it."""
    cfg = FlowConfig(model=1, sensors=1, messages=0, users=2, capture=False, connect_timeout_s=3)
    dep = Deployment(cfg)
    try:
        dep.start()
        dep.revoke_destination("user-2")
        user = dep.users["user-2"]
        assert dep.owner_keys is not None and user.pre_keys is not None
        kfrags = dep.pre.conversion_keys(dep.owner_keys, user.pre_keys.public)  # type: ignore[union-attr]
        dep.gateway.offer_kfrag("user-2", kfrags[0])
        dep.ds.offer_kfrag("user-2", kfrags[1])
        fields = {
            T.SUB: b"user-2",
            T.PUBKEY: user.signer.public().public_bytes,
            T.KEYALG: bytes([Alg.ED25519]),
            T.HASH: hashlib.sha256(kfrags[0]).digest(),
            T.HASH2: hashlib.sha256(kfrags[1]).digest(),
            T.PREKEY: user.pre_keys.public,
        }
        with pytest.raises(SafeLabError):
            dep._register(dep.dest_reg, RegKind.DESTINATION, fields)
        reasons = [v.reason for v in dep.trace.rejections() if v.stage == "registration"]
        assert any("user-2 registered without a PRE key and a wrap key" in r for r in reasons)
        assert "user-2" not in dep.ds.recipients
        assert "pk_U[user-2].wrap" not in dep.ds.inventory
    finally:
        dep.stop()
