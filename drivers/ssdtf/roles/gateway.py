"""The broker gateway: the broker's SSDTF half, as a trusted MQTT client beside the broker.

Why beside and not inside: the same gateway then enforces SSDTF on the embedded amqtt broker,
on Mosquitto and on any broker reachable by URL. A standard broker does not tell other clients
a CONNECT's user name, so the sensor repeats its nonce Nd in a HELLO on its auth topic; on the
embedded broker the SSDTF plugin also reports the CONNECT user name and the gateway checks the
two agree. Closing a sensor's connection is a standard MQTT take-over: the gateway connects
with the sensor's client ID (clean session off), which makes any broker drop the old
connection [MQTT-3.1.4-2], then disconnects.

Holds: its signing key sk_B, each registered device's public key (pinned with its algorithm),
conversion-key share #1 per destination, and the public keys needed to check registrations
and conversion keys (registrar's, key owner's PRE and kfrag-verifying keys, destinations'
PRE keys). It never holds a PRE secret key, so it cannot decrypt.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.endpoint import Endpoint, MqttError
from drivers.ssdtf.pre import PlainBackend, PreError, UmbralBackend
from drivers.ssdtf.replay import SeqWindow, now_ms, ts_ok
from drivers.ssdtf.roles.base import ProxyRole, key_view, pre_view, verify_record
from drivers.ssdtf.roles.sensor import session_id
from drivers.ssdtf.signing import Ed25519Signer, PublicKeyRef
from drivers.ssdtf.trace import KeyView, Trace
from drivers.ssdtf.wire import Alg, MsgType, Status, T


@dataclass
class PendingAuth:
    nd: bytes
    nb: bytes
    chal_digest: bytes
    deadline: float


@dataclass
class Session:
    sid: bytes
    window: SeqWindow


@dataclass
class Destination:
    """A subscriber the gateway re-encrypts for (registered with its conversion-key share)."""

    name: str
    receiver_pre: bytes
    kfrag: bytes
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Gateway(ProxyRole):
    def __init__(
        self,
        signer: Ed25519Signer,
        broker_id: str,
        pre: UmbralBackend | PlainBackend,
        cfg: FlowConfig,
        trace: Trace,
        service_token: str,
        connect_nonces: dict[str, str] | None = None,
    ) -> None:
        super().__init__("gateway", trace)
        self.signer = signer
        self.broker_id = broker_id
        self.pre = pre
        self.cfg = cfg
        self.token = service_token
        self.connect_nonces = connect_nonces
        self.hold(key_view("sk_B", "signing private", signer.public()))
        self.devices: dict[str, PublicKeyRef] = {}
        self.registrars: dict[str, PublicKeyRef] = {}
        self.owner_pre = b""
        self.owner_verifying = b""
        self.destinations: dict[str, Destination] = {}
        self.pending: dict[str, PendingAuth] = {}
        self.expired: dict[bytes, str] = {}
        self.sessions: dict[str, Session] = {}
        self.forwarded = 0
        self._lock = threading.RLock()
        self.endpoint: Endpoint | None = None
        self._timers: list[threading.Timer] = []

    # --- provisioning ------------------------------------------------------------
    def register_device(self, body: bytes, signature: bytes) -> None:
        record = verify_record(self.registrars["devices"], body, signature)
        ref = PublicKeyRef(Alg(record["alg"]), bytes.fromhex(record["public"]), record["cid"])
        self.devices[record["cid"]] = ref
        self.hold(key_view(f"pk_D[{record['cid']}]", "public (device)", ref))

    def register_destination(self, body: bytes, signature: bytes, kfrag: bytes) -> None:
        record = verify_record(self.registrars["destinations"], body, signature)
        if hashlib.sha256(kfrag).hexdigest() != record["kfrag1_sha256"]:
            raise PreError("conversion key differs from the registered one", "re-register")
        name = record["sub"]
        receiver = bytes.fromhex(record["receiver_pre"])
        self.destinations[name] = Destination(name, receiver, kfrag)
        self.hold(pre_view(f"pk_U[{name}].pre", "pre public (destination)", receiver))
        self.hold(KeyView(f"kfrag#1[{name}]", "conversion key", "umbral", "", "share 1 of 2"))

    def revoke_destination(self, name: str) -> None:
        with self._lock:
            self.destinations.pop(name, None)
        self.drop(f"kfrag#1[{name}]")
        self.drop(f"pk_U[{name}].pre")

    # --- MQTT --------------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        endpoint = Endpoint("ssdtf-gateway", host, port, username="gateway", password=self.token)
        endpoint.on("ssdtf/v1/auth/+/up", self._on_auth_up)
        endpoint.on("ssdtf/v1/up/+", self._on_data)
        endpoint.connect(self.cfg.connect_timeout_s)
        endpoint.subscribe(
            [("ssdtf/v1/auth/+/up", 1), ("ssdtf/v1/up/+", self.cfg.gateway_qos)],
            self.cfg.connect_timeout_s,
        )
        self.endpoint = endpoint

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self.endpoint is not None:
            self.endpoint.stop()

    def is_ready(self, cid: str) -> bool:
        return cid in self.sessions

    def _sign_publish(
        self, msg_type: MsgType, fields: dict[int, bytes], topic: str, flags: int = 1
    ) -> bytes:
        fields = fields | {
            T.KID: self.signer.public().kid,
            T.ALG: bytes([self.signer.alg]),
            T.BROKER_ID: self.broker_id.encode(),
        }
        payload = wire.encode(msg_type, fields, flags=flags, sign=self.signer.sign, topic=topic)
        assert self.endpoint is not None
        self.endpoint.publish(topic, payload, qos=1)
        return payload

    # --- handshake ---------------------------------------------------------------
    def _on_auth_up(self, topic: str, payload: bytes, msg: Any) -> None:
        cid = topics.topic_part(topic, 1)
        try:
            env = wire.decode(payload)
        except wire.WireError as error:
            self.evict(cid, payload, f"malformed handshake message: {error.problem}")
            return
        if env.type == MsgType.HELLO:
            self._on_hello(cid, payload, env)
        elif env.type == MsgType.RESP:
            self._on_resp(cid, topic, payload, env)
        else:
            self.evict(cid, payload, f"unexpected {env.type.name} on the auth topic")

    def _on_hello(self, cid: str, payload: bytes, env: wire.Envelope) -> None:
        if env.text(T.CID) != cid or cid not in self.devices:
            self.verdict(payload, False, f"unknown client ID {cid!r}: no challenge", "handshake")
            return
        nd = env.get(T.ND)
        if self.connect_nonces is not None and self.connect_nonces.get(cid) != nd.hex():
            self.evict(cid, payload, "HELLO nonce differs from the CONNECT user name")
            return
        nb = os.urandom(16)
        topic = topics.auth_down(cid)
        fields = {T.CID: cid.encode(), T.TS: wire.u64(now_ms()), T.ND: nd, T.NB: nb}
        with self._lock:
            self.sessions.pop(cid, None)
            chal = self._sign_publish(MsgType.CHAL, fields, topic)
            deadline = time.monotonic() + self.cfg.auth_deadline_s
            self.pending[cid] = PendingAuth(nd, nb, hashlib.sha256(chal).digest(), deadline)
        self.verdict(
            payload, True, "HELLO from a registered client ID: challenge sent", "handshake"
        )
        timer = threading.Timer(self.cfg.auth_deadline_s, self._deadline, (cid, nb))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _deadline(self, cid: str, nb: bytes) -> None:
        with self._lock:
            pending = self.pending.get(cid)
            if pending is None or pending.nb != nb:
                return
            del self.pending[cid]
            self.expired[nb] = cid
        self.evict(cid, None, "handshake deadline passed: nonce Nb expired, connection closed")

    def _on_resp(self, cid: str, topic: str, payload: bytes, env: wire.Envelope) -> None:
        nb = env.get(T.NB)
        with self._lock:
            pending = self.pending.get(cid)
            if pending is None or pending.nb != nb:
                why = (
                    "nonce Nb expired (deadline passed)"
                    if nb in self.expired
                    else "nonce Nb unknown or already used (replayed RESP)"
                )
                self.pending.pop(cid, None)
                pending = None
            else:
                del self.pending[cid]  # single use, whatever the outcome
                why = ""
        if pending is None:
            self.evict(cid, payload, why)
            return
        if time.monotonic() > pending.deadline:
            self.evict(cid, payload, "nonce Nb expired (deadline passed)")
            return
        key = self.devices.get(cid)
        problem = self._check_device_sig(key, topic, env)
        if not problem and env.text(T.CID) != cid:
            problem = "client ID differs from the topic"
        if not problem and env.get(T.HASH) != pending.chal_digest:
            problem = "RESP answers a different challenge (hash differs)"
        if not problem and (env.get(T.ND) != pending.nd or env.text(T.BROKER_ID) != self.broker_id):
            problem = "RESP nonces or broker ID differ"
        if problem:
            self.evict(cid, payload, problem)
            return
        sid = session_id(pending.nd, pending.nb, cid)
        with self._lock:
            self.sessions[cid] = Session(sid, SeqWindow(self.cfg.window))
        fields = {T.CID: cid.encode(), T.SID: sid, T.TS: wire.u64(now_ms())}
        self._sign_publish(MsgType.OK, fields, topics.auth_down(cid))
        self.verdict(
            payload, True, "device signature valid: session READY", "handshake", sid=sid.hex()
        )

    def _check_device_sig(self, key: PublicKeyRef | None, topic: str, env: wire.Envelope) -> str:
        if key is None:
            return "unknown client ID"
        if env.get(T.ALG)[0] != key.alg:
            return "ALG differs from the device key's pinned algorithm (downgrade)"
        if env.get(T.KID) != key.kid:
            return "device signature invalid (key ID differs from the registered key)"
        if not key.verify(env.get(T.SIG), env.tbs(topic)):
            return "device signature invalid"
        return ""

    def evict(self, cid: str, payload: bytes | None, reason: str) -> None:
        """Refuse and close the sensor's connection (take-over with its client ID)."""
        with self._lock:
            self.sessions.pop(cid, None)
        self.verdict(payload, False, reason, "handshake", cid=cid)
        threading.Thread(target=self._take_over, args=(cid,), daemon=True).start()

    def _take_over(self, cid: str) -> None:
        kicker = Endpoint(
            cid, self.host, self.port, username="gateway", password=self.token, clean_session=False
        )
        try:
            kicker.connect(self.cfg.connect_timeout_s)
        except MqttError:
            return
        finally:
            kicker.stop()
        self.trace.note(f"gateway closed {cid}'s connection (take-over)", lane="gateway")

    # --- data path ---------------------------------------------------------------
    def _on_data(self, topic: str, payload: bytes, msg: Any) -> None:
        cid_topic = topics.topic_part(topic, 1)
        try:
            env = wire.decode(payload)
            if env.type != MsgType.DATA:
                raise wire.MsgTypeError(f"{env.type.name} on a data topic")
        except wire.WireError as error:
            self._refuse(cid_topic, payload, 0, Status.MALFORMED, f"malformed: {error.problem}")
            return
        cid = env.text(T.CID)
        seq = env.int(T.SEQ)
        problem = self._check_device_sig(self.devices.get(cid), topic, env)
        if problem:
            status = Status.POLICY if "ALG" in problem else Status.BAD_SIGNATURE
            self._refuse(cid_topic, payload, seq, status, problem)
            return
        if cid != cid_topic:
            self._refuse(cid_topic, payload, seq, Status.POLICY, "client ID differs from topic")
            return
        with self._lock:
            session = self.sessions.get(cid)
        if session is None:
            self.verdict(payload, False, "session not ready (no completed handshake)", "data")
            return
        if env.get(T.SID) != session.sid:
            self.verdict(payload, False, "sid mismatch: DATA from another session (replay)", "data")
            return
        if env.plain and self.pre.available:
            self._refuse(
                cid,
                payload,
                seq,
                Status.POLICY,
                "downgrade: plaintext DATA refused (re-encryption is required)",
            )
            return
        if not ts_ok(env.int(T.TS), self.cfg.ts_window_s):
            self._refuse(
                cid,
                payload,
                seq,
                Status.STALE,
                f"timestamp outside ±{self.cfg.ts_window_s:g} s (stale or future)",
            )
            return
        digest = hashlib.sha256(payload).digest()
        outcome = session.window.accept(seq, digest)
        if outcome == SeqWindow.DUPLICATE:
            self._ack(cid, session.sid, seq, digest, Status.DUPLICATE)
            self.verdict(
                payload,
                False,
                f"duplicate seq={seq}: re-ACKed, not delivered again",
                "data",
                benign=True,
                dup=bool(msg.dup),
                qos=msg.qos,
            )
            return
        if outcome != SeqWindow.NEW:
            self.verdict(payload, False, f"replay: seq={seq} {outcome} (sequence window)", "data")
            return
        self._forward(cid, env, payload)
        self._ack(cid, session.sid, seq, digest, Status.OK)
        self.verdict(
            payload,
            True,
            f"device signature valid; seq={seq} accepted and forwarded",
            "data",
            qos=msg.qos,
            retain=bool(msg.retain),
            dup=bool(msg.dup),
            qos_pub=env.qos_pub,
            retain_pub=env.retain_pub,
        )

    def _refuse(self, cid: str, payload: bytes, seq: int, status: Status, reason: str) -> None:
        with self._lock:
            session = self.sessions.get(cid)
        if session is not None:
            self._ack(cid, session.sid, seq, hashlib.sha256(payload).digest(), status)
        self.verdict(payload, False, reason, "data", status=status.name)

    def _ack(self, cid: str, sid: bytes, seq: int, digest: bytes, status: Status) -> None:
        fields = {
            T.CID: cid.encode(),
            T.SID: sid,
            T.SEQ: wire.u64(seq),
            T.TS: wire.u64(now_ms()),
            T.HASH: digest,
            T.STATUS: bytes([status]),
        }
        self._sign_publish(MsgType.ACK, fields, topics.ack_topic(cid))

    def _forward(self, cid: str, env: wire.Envelope, payload: bytes) -> None:
        with self._lock:
            destinations = list(self.destinations.values())
        for dest in destinations:
            cfrags: list[bytes] = []
            if isinstance(self.pre, UmbralBackend) and not env.plain:
                cfrags = [
                    self.pre.reencrypt(
                        env.get(T.CAPSULE),
                        dest.kfrag,
                        owner_public=self.owner_pre,
                        owner_verifying=self.owner_verifying,
                        receiver_public=dest.receiver_pre,
                    )
                ]
            with dest.lock:
                dest.seq += 1
                seq = dest.seq
            topic = topics.int_topic(dest.name)
            fields = {
                T.SEQ: wire.u64(seq),
                T.TS: wire.u64(now_ms()),
                T.INNER: payload,
                T.SUB: dest.name.encode(),
                T.KID: self.signer.public().kid,
                T.ALG: bytes([self.signer.alg]),
                T.BROKER_ID: self.broker_id.encode(),
            }
            out = wire.encode(
                MsgType.FWD, fields, flags=1, cfrags=cfrags, sign=self.signer.sign, topic=topic
            )
            assert self.endpoint is not None
            self.endpoint.publish(topic, out, qos=1)
            self.forwarded += 1
