"""Broker gateway and distribution server transform ciphertexts but never hold plaintext and
cannot decrypt: searched in the captured traffic and in their reachable state."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from drivers.ssdtf import binding, rewrap, wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.pre import PreError
from drivers.ssdtf.trace import Trace
from drivers.ssdtf.wire import MsgType, T
from tests.ssdtf.conftest import MARKER

SKIP_TYPES = (Trace, threading.Thread, type, FlowConfig)
"""Not searched: the shared trace (it holds the data user's verdicts too), threads, classes,
and the run's settings (whose ``reading_prefix`` *is* the marker, by construction)."""


def reachable_bytes(root: Any, limit: int = 200_000) -> list[bytes]:
    """Every bytes/str reachable from ``root`` through attributes and containers
    (not through functions, threads or the shared trace), as bytes."""
    seen: set[int] = set()
    out: list[bytes] = []
    stack = [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or (callable(obj) and not hasattr(obj, "__dict__")):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray | memoryview):
            out.append(bytes(obj))
        elif isinstance(obj, str):
            out.append(obj.encode(errors="ignore"))
        elif isinstance(obj, SKIP_TYPES):
            continue
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(v for v in vars(obj).values() if not callable(v) or hasattr(v, "__dict__"))
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, s, None) for s in obj.__slots__)
    return out


@pytest.fixture(scope="module")
def deployment():
    """A live deployment after its readings arrived (stopped after the module)."""
    dep = Deployment(
        FlowConfig(model=1, sensors=2, messages=3, users=2, retain=True, reading_prefix=MARKER)
    )
    try:
        dep.start()
        dep.connect_sensors()
        dep.send_readings()
        dep.wait_delivered(6, 10)
        dep.last_result = dep.result()
        yield dep
    finally:
        dep.stop()


def test_marker_never_on_the_wire(deployment) -> None:
    assert deployment.last_result.ok
    raw = b"".join(p.raw for p in deployment.trace.packets)
    assert len(deployment.trace.packets) > 50
    assert MARKER.encode() not in raw
    # the data user did get it, so the marker is real
    assert all(r.value.startswith(MARKER.encode()) for r in deployment.users["user-1"].readings)


def test_marker_never_in_gateway_ds_or_broker_state(deployment) -> None:
    """Gateway, DS and the embedded amqtt broker itself (sessions, queues, retained
    messages: the run publishes with RETAIN, so the broker keeps DATA and DELIVER)."""
    marker = MARKER.encode()
    amqtt_broker = deployment.broker._broker
    assert amqtt_broker.retained_messages  # it did keep messages
    for name, root in (
        ("gateway", deployment.gateway),
        ("ds", deployment.ds),
        ("amqtt broker", amqtt_broker),
    ):
        blobs = reachable_bytes(root)
        assert len(blobs) > 20
        assert any(b"SD\x01" in blob for blob in blobs) or name != "amqtt broker"
        assert not any(marker in blob for blob in blobs), name


def test_proxies_hold_no_pre_secret(deployment) -> None:
    for role in (deployment.gateway, deployment.ds):
        kinds = {k.kind for k in role.inventory.values()}
        assert not any("pre private" in kind for kind in kinds), kinds
        assert any(k.kind == "conversion key" for k in role.inventory.values())


def test_proxies_cannot_decrypt_even_together(deployment) -> None:
    pre = deployment.pre
    deliver = next(
        wire.decode(p.raw[p.raw.index(b"SD\x01") :])
        for p in deployment.trace.packets
        if (p.ssdtf or {}).get("type") == "DELIVER" and p.lane == "user-1"
    )
    user = deployment.users["user-1"]
    curious = pre.keygen("curious proxy")  # any key the proxies could make for themselves
    # the DELIVER is wrapped for user-1: nobody else can even open the bundle
    with pytest.raises(PreError):
        rewrap.unwrap(rewrap.keygen("curious"), deliver.get(T.CAPSULE), deliver.get(T.CT))
    bundle = rewrap.unwrap(user.wrap_keys, deliver.get(T.CAPSULE), deliver.get(T.CT))
    capsule, ct, cfrags, tag = binding.decode_bundle(bundle)
    owner = deployment.owner_keys
    kwargs = dict(
        owner_public=owner.public, owner_verifying=owner.verifying, capsule=capsule, ciphertext=ct
    )
    with pytest.raises(PreError):
        pre.decrypt(curious, cfrags=cfrags, **kwargs)  # both cfrags, no receiver key
    with pytest.raises(PreError):
        pre.decrypt(curious, cfrags=cfrags[:1], **kwargs)  # the broker's share alone
    with pytest.raises(PreError):
        pre.decrypt_original(curious, capsule, ct)
    # while the real receiver can, with both shares and only with both
    plaintext = pre.decrypt(user.pre_keys, cfrags=cfrags, **kwargs)
    assert binding.open_plaintext(plaintext, tag).startswith(MARKER.encode())
    with pytest.raises(PreError):
        pre.decrypt(user.pre_keys, cfrags=cfrags[:1], **kwargs)
    assert deliver.type == MsgType.DELIVER


def test_deliver_bytes_unlinkable_to_data_and_between_destinations(deployment) -> None:
    """Colluding data users cannot link pseudonyms by matching bytes: no DELIVER repeats the
    capsule or ciphertext of any DATA, and the two destinations' DELIVERs share nothing."""

    def fields(kind: str, lane: str | None = None) -> list[wire.Envelope]:
        return [
            wire.decode(p.raw[p.raw.index(b"SD\x01") :])
            for p in deployment.trace.packets
            if (p.ssdtf or {}).get("type") == kind
            and p.direction == ("b2c" if kind == "DELIVER" else "c2b")
            and (lane is None or p.lane == lane)
        ]

    datas = fields("DATA")
    one, two = fields("DELIVER", "user-1"), fields("DELIVER", "user-2")
    assert datas and one and two
    data_parts = {e.get(T.CAPSULE) for e in datas} | {e.get(T.CT) for e in datas}
    for env in one + two:
        assert env.get(T.CAPSULE) not in data_parts and env.get(T.CT) not in data_parts
        assert not env.cfrags  # the cfrags travel inside the wrapped bundle
        for part in data_parts:
            assert part[:32] not in env.raw
    parts_one = {e.get(T.CAPSULE) for e in one} | {e.get(T.CT) for e in one}
    parts_two = {e.get(T.CAPSULE) for e in two} | {e.get(T.CT) for e in two}
    assert not parts_one & parts_two
