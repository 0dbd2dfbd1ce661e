"""The broker -> subscriber leg as the seed has it: a data user that misses a DELIVER asks the
DS to re-send it (signed RESEND), and reports to the management server (signed REPORT) when
it never comes."""

from __future__ import annotations

import time

from drivers.ssdtf import wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.tap import Forward, Hop
from drivers.ssdtf.wire import MsgType, T


def _deliver_seq(hop: Hop, lane: str) -> int | None:
    if hop.conn.lane != lane or hop.direction != "b2c" or hop.packet.payload is None:
        return None
    try:
        env = wire.decode(hop.packet.payload)
    except wire.WireError:
        return None
    return env.int(T.SEQ) if env.type == MsgType.DELIVER else None


def _run(drop: callable, messages: int = 3) -> Deployment:
    cfg = FlowConfig(sensors=1, messages=messages, ack_timeout_s=0.2, backoff=1.5)
    dep = Deployment(cfg, interceptor=drop)
    dep.start()
    dep.connect_sensors()
    dep.send_readings()
    return dep


def test_a_lost_deliver_is_requested_again_and_arrives() -> None:
    dropped: list[int] = []

    def drop_first(hop: Hop) -> Forward | None:
        if _deliver_seq(hop, "user-1") == 1 and not dropped:
            dropped.append(1)
            return Forward([], "DELIVER seq=1 lost")
        return None

    dep = _run(drop_first)
    try:
        user = dep.users["user-1"]
        assert user.wait_for(3, 10), [v.reason for v in dep.trace.verdicts if not v.ok]
        assert dropped == [1]
        assert sorted(r.seq for r in user.readings) == [1, 2, 3]  # once each
        resends = [v for v in dep.trace.verdicts if v.role == "ds" and v.stage == "resend"]
        assert resends and all(v.ok for v in resends)
        kinds = [(p.ssdtf or {}).get("type") for p in dep.trace.packets if p.lane == "user-1"]
        assert "RESEND" in kinds  # a real signed MQTT message on the wire
        assert not dep.ms.reports
    finally:
        dep.stop()


def test_a_deliver_that_never_comes_is_reported_to_the_ms() -> None:
    def drop_every_copy(hop: Hop) -> Forward | None:
        if _deliver_seq(hop, "user-1") == 1:
            return Forward([], "every copy of DELIVER seq=1 lost")
        return None

    dep = _run(drop_every_copy)
    try:
        assert dep.users["user-1"].wait_for(2, 10)
        end = time.monotonic() + 10
        while not dep.ms.reports and time.monotonic() < end:
            time.sleep(0.05)
        assert [r["cid"] for r in dep.ms.reports] == ["user-1"]
        assert "seq=1 never arrived" in dep.ms.reports[0]["reason"]
        assert dep.ms.reports[0]["via"] == "mqtt"
        assert [r.seq for r in dep.users["user-1"].readings] == [2, 3]
        # bounded: the DS re-sent seq 1 at most max_attempts times
        resent = [v for v in dep.trace.verdicts if v.role == "ds" and "seq=1 re-sent" in v.reason]
        assert 1 <= len(resent) <= dep.cfg.max_attempts
    finally:
        dep.stop()


def test_a_forged_resend_request_is_refused() -> None:
    from drivers.ssdtf import config as topics
    from drivers.ssdtf.replay import now_ms
    from drivers.ssdtf.signing import Ed25519Signer

    dep = _run(lambda hop: None, messages=1)
    try:
        assert dep.users["user-1"].wait_for(1, 10)
        attacker = Ed25519Signer("attacker")
        topic = topics.resend_topic("user-1")
        fields = {
            T.SEQ: wire.u64(1),
            T.TS: wire.u64(now_ms()),
            T.SUB: b"user-1",
            T.KID: dep.users["user-1"].signer.public().kid,
            T.ALG: bytes([attacker.alg]),
        }
        forged = wire.encode(MsgType.RESEND, fields, flags=1, sign=attacker.sign, topic=topic)
        endpoint = dep.users["user-1"].endpoint  # on its own, allowed topic
        endpoint.publish(topic, forged, qos=1)
        end = time.monotonic() + 5
        while time.monotonic() < end and not any(
            v.role == "ds" and v.stage == "resend" for v in dep.trace.verdicts
        ):
            time.sleep(0.05)
        verdicts = [v for v in dep.trace.verdicts if v.role == "ds" and v.stage == "resend"]
        assert verdicts and not verdicts[0].ok and "signature invalid" in verdicts[0].reason
        time.sleep(0.3)
        assert len(dep.users["user-1"].readings) == 1  # nothing re-sent
    finally:
        dep.stop()
