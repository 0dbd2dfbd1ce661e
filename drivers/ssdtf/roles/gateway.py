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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.endpoint import Endpoint, MqttError
from drivers.ssdtf.pre import PlainBackend, PreError, UmbralBackend
from drivers.ssdtf.registry import ProvisionCheck, key_of
from drivers.ssdtf.replay import SeqWindow, now_ms, ts_ok
from drivers.ssdtf.roles.base import (
    ProxyRole,
    describe_error,
    key_view,
    pre_view,
    signature_problem,
)
from drivers.ssdtf.roles.sensor import session_id
from drivers.ssdtf.scheduler import Scheduler, SerialWorker
from drivers.ssdtf.signing import Ed25519Signer, PublicKeyRef
from drivers.ssdtf.trace import KeyView, Trace
from drivers.ssdtf.wire import MsgType, RegKind, Status, T
from drivers.ssdtf.workers import OpenWorkers

EXPIRED_KEPT = 256
"""How many expired challenge nonces are remembered (only to name the reason better)."""
RECENT_ND_KEPT = 1024
"""How many recent device nonces Nd are remembered to refuse a replayed HELLO."""


@dataclass
class PendingAuth:
    nd: bytes
    nb: bytes
    chal_digest: bytes
    deadline: float
    timer: int = 0


@dataclass
class Session:
    sid: bytes
    window: SeqWindow
    nd: bytes = b""


@dataclass
class HelloLimit:
    """Per client ID: when the next HELLO may get a challenge, and how many handshakes in a
    row did not reach READY (the back-off exponent)."""

    next_allowed: float = 0.0
    strikes: int = 0


class TokenBucket:
    """The global HELLO rate limit: ``rate`` challenges per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = max(rate, 0.001)
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


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
        self.topics: dict[str, str] = {}
        """Registered uplink topic -> the device that owns it (DATA only on these)."""
        self.offered: dict[str, bytes] = {}
        self.provision_check = ProvisionCheck("gateway", window_s=cfg.ts_window_s)
        self.pending: dict[str, PendingAuth] = {}
        self.expired: OrderedDict[bytes, str] = OrderedDict()
        self.recent_nd: OrderedDict[bytes, str] = OrderedDict()
        self.limits: dict[str, HelloLimit] = {}
        self.bucket = TokenBucket(cfg.hello_rate_per_s, cfg.hello_burst)
        self.sessions: dict[str, Session] = {}
        self.forwarded = 0
        self._lock = threading.RLock()
        self.endpoint: Endpoint | None = None
        self.host, self.port = "", 0
        self.can_take_over = True
        # one timer thread for every handshake deadline, one worker for every take-over
        self.scheduler = Scheduler("ssdtf-gateway-timers", self.on_internal_error)
        self.workers: OpenWorkers | None = None
        """Worker processes for the share-1 re-encryption (``cfg.workers`` > 0)."""
        self.closer = SerialWorker("ssdtf-gateway-closer", 64, self.on_internal_error)

    def state_sizes(self) -> dict[str, int]:
        """Sizes of every per-client table (the flood test asserts they stay bounded)."""
        with self._lock:
            return {
                "pending": len(self.pending),
                "sessions": len(self.sessions),
                "expired": len(self.expired),
                "recent_nd": len(self.recent_nd),
                "limits": len(self.limits),
                "timers": len(self.scheduler),
                "closer_queue": len(self.closer),
            }

    # --- provisioning (registrations over MQTT, from the MS: drivers/ssdtf/registry.py) --
    def apply_registration(self, reg: wire.Envelope) -> str:
        kind = RegKind(reg.get(T.KIND)[0])
        if kind == RegKind.DEVICE:
            cid = reg.text(T.CID)
            ref = key_of(reg, cid)
            with self._lock:
                self.devices[cid] = ref
            self.hold(key_view(f"pk_D[{cid}]", "public (device)", ref, "registered over MQTT"))
        elif kind == RegKind.TOPIC:
            if reg.text(T.CID) not in self.devices:
                return f"topic for {reg.text(T.CID)}, which is not registered here"
            with self._lock:
                self.topics[reg.text(T.TOPIC)] = reg.text(T.CID)
        elif kind == RegKind.DESTINATION:
            name = reg.text(T.SUB)
            kfrag = self.offered.get(name, b"")
            if hashlib.sha256(kfrag).digest() != reg.get(T.HASH):
                return f"conversion-key share 1 for {name} missing or not the registered one"
            receiver = reg.fields.get(T.PREKEY, b"")
            with self._lock:
                self.destinations[name] = Destination(name, receiver, kfrag)
            self.hold(pre_view(f"pk_U[{name}].pre", "pre public (destination)", receiver))
            self.hold(
                KeyView(
                    f"kfrag#1[{name}]",
                    "conversion key",
                    "umbral",
                    "",
                    "share 1 of 2; share handed over in process (simulated), its "
                    "registration signed over MQTT",
                )
            )
        else:
            self.revoke_destination(reg.text(T.SUB))
        return ""

    def revoke_destination(self, name: str) -> None:
        with self._lock:
            self.destinations.pop(name, None)
        self.drop(f"kfrag#1[{name}]")
        self.drop(f"pk_U[{name}].pre")

    # --- MQTT --------------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        if self.cfg.workers > 0 and isinstance(self.pre, UmbralBackend):
            self.workers = OpenWorkers(self.cfg.workers)
        self.host, self.port = host, port
        endpoint = Endpoint("ssdtf-gateway", host, port, username="gateway", password=self.token)
        endpoint.on("ssdtf/v1/auth/+/up", self.guarded("handshake", self._on_auth_up))
        endpoint.on("ssdtf/v1/up/+", self.guarded("data", self._on_data))
        prov = topics.prov_topic("gateway")
        endpoint.on(prov, self.guarded("registration", self._on_prov))
        endpoint.on_error = self.on_internal_error
        endpoint.on_dropped = self.on_dropped
        endpoint.connect(self.cfg.connect_timeout_s)
        endpoint.subscribe(
            [("ssdtf/v1/auth/+/up", 1), ("ssdtf/v1/up/+", self.cfg.gateway_qos), (prov, 1)],
            self.cfg.connect_timeout_s,
        )
        self.endpoint = endpoint

    def stop(self) -> None:
        self.scheduler.stop()
        self.closer.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def is_ready(self, cid: str) -> bool:
        return cid in self.sessions

    def _sign_publish(
        self, msg_type: MsgType, fields: wire.FieldMap, topic: str, flags: int = 1
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
    # The state machine per client ID: IDLE -> PENDING (one challenge) -> READY. A HELLO
    # never touches a READY session (a new session replaces it only once the device's RESP
    # verifies); a failure of a *pending* handshake closes the connection; anything else is
    # a verdict and a drop. HELLOs are rate limited per client ID (with back-off) and
    # globally, and every table is bounded (registered IDs, or a fixed size).
    def _on_auth_up(self, topic: str, payload: bytes, msg: Any) -> None:
        cid = topics.topic_part(topic, 1)
        try:
            env = wire.decode(payload)
        except wire.WireError as error:
            self._auth_failure(cid, payload, f"malformed handshake message: {error.problem}")
            return
        if env.type == MsgType.HELLO:
            self._on_hello(cid, payload, env)
        elif env.type == MsgType.RESP:
            self._on_resp(cid, topic, payload, env)
        else:
            self._auth_failure(cid, payload, f"unexpected {env.type.name} on the auth topic")

    def _auth_failure(self, cid: str, payload: bytes, reason: str) -> None:
        """A bad message on the auth topic: closes the connection only while a handshake is
        pending for ``cid`` (that handshake has failed); a READY session is never touched."""
        with self._lock:
            pending = self.pending.pop(cid, None)
        if pending is not None:
            self.scheduler.cancel(pending.timer)
            self._remember_expired(pending.nb, cid)
            self.evict(cid, payload, reason)
        else:
            self.verdict(payload, False, f"{reason}; dropped", "handshake", cid=cid)

    def _remember_expired(self, nb: bytes, cid: str) -> None:
        self.expired[nb] = cid
        while len(self.expired) > EXPIRED_KEPT:
            self.expired.popitem(last=False)

    def _refuse_hello(self, payload: bytes, reason: str, cid: str) -> None:
        self.verdict(payload, False, reason, "handshake", cid=cid)

    def _on_hello(self, cid: str, payload: bytes, env: wire.Envelope) -> None:
        if env.text(T.CID) != cid or cid not in self.devices:
            self._refuse_hello(payload, f"unknown client ID {cid!r}: no challenge", cid)
            return
        nd = env.get(T.ND)
        if self.connect_nonces is not None and self.connect_nonces.get(cid) != nd.hex():
            self._refuse_hello(payload, "HELLO nonce differs from the CONNECT user name", cid)
            return
        now = time.monotonic()
        with self._lock:
            if nd in self.recent_nd:
                session = self.sessions.get(cid)
                where = "READY session untouched" if session else "no challenge"
                reason = f"HELLO replayed: nonce Nd already used; {where}"
            elif cid in self.pending:
                reason = "a challenge is already pending for this client ID: HELLO dropped"
            else:
                limit = self.limits.setdefault(cid, HelloLimit())
                if now < limit.next_allowed:
                    wait = limit.next_allowed - now
                    reason = f"HELLO rate limit for {cid}: back-off, retry in {wait:.2f} s"
                elif not self.bucket.take():
                    reason = "global HELLO rate limit reached: no challenge"
                else:
                    reason = ""
                    limit.strikes += 1
                    step = self.cfg.hello_interval_s * 2 ** min(limit.strikes - 1, 20)
                    limit.next_allowed = now + min(self.cfg.hello_backoff_max_s, step)
                    self.recent_nd[nd] = cid
                    while len(self.recent_nd) > RECENT_ND_KEPT:
                        self.recent_nd.popitem(last=False)
            if reason:
                self._refuse_hello(payload, reason, cid)
                return
            nb = os.urandom(16)
            fields = {T.CID: cid.encode(), T.TS: wire.u64(now_ms()), T.ND: nd, T.NB: nb}
            chal = self._sign_publish(MsgType.CHAL, fields, topics.auth_down(cid))
            pending = PendingAuth(
                nd, nb, hashlib.sha256(chal).digest(), now + self.cfg.auth_deadline_s
            )
            pending.timer = self.scheduler.call_later(
                self.cfg.auth_deadline_s, self._deadline, cid, nb
            )
            self.pending[cid] = pending
        self.verdict(
            payload, True, "HELLO from a registered client ID: challenge sent", "handshake"
        )

    def _deadline(self, cid: str, nb: bytes) -> None:
        with self._lock:
            pending = self.pending.get(cid)
            if pending is None or pending.nb != nb:
                return
            del self.pending[cid]
            self._remember_expired(nb, cid)
            ready = cid in self.sessions
        if ready:
            self.verdict(
                None,
                False,
                "handshake deadline passed: nonce Nb expired; the READY session is untouched",
                "handshake",
                cid=cid,
            )
            return
        self.evict(cid, None, "handshake deadline passed: nonce Nb expired, connection closed")

    def _on_resp(self, cid: str, topic: str, payload: bytes, env: wire.Envelope) -> None:
        nb = env.get(T.NB)
        with self._lock:
            pending = self.pending.get(cid)
            if pending is not None and pending.nb == nb:
                del self.pending[cid]  # single use, whatever the outcome
                self.scheduler.cancel(pending.timer)
            else:
                pending = None
                why = (
                    "nonce Nb expired (deadline passed)"
                    if nb in self.expired
                    else "nonce Nb unknown or already used (replayed RESP)"
                )
        if pending is None:
            self._auth_failure(cid, payload, why)
            return
        if time.monotonic() > pending.deadline:
            self.evict(cid, payload, "nonce Nb expired (deadline passed)")
            return
        problem = signature_problem(self.devices.get(cid), topic, env, "device")
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
            self.sessions[cid] = Session(
                sid, SeqWindow(self.cfg.window, self.cfg.max_jump), pending.nd
            )
            limit = self.limits.get(cid)
            if limit is not None:
                limit.strikes = 0
        fields = {T.CID: cid.encode(), T.SID: sid, T.TS: wire.u64(now_ms())}
        self._sign_publish(MsgType.OK, fields, topics.auth_down(cid))
        self.verdict(
            payload, True, "device signature valid: session READY", "handshake", sid=sid.hex()
        )

    def evict(self, cid: str, payload: bytes | None, reason: str) -> None:
        """Refuse and close the sensor's connection (take-over with its client ID), on the
        one closer thread: at most one queued take-over per client ID."""
        with self._lock:
            self.sessions.pop(cid, None)
        self.verdict(payload, False, reason, "handshake", cid=cid)
        if not self.can_take_over:
            return  # session dropped: nothing from this connection counts until a handshake
        if self.host and not self.closer.submit(cid, self._take_over, cid):
            self.trace.note(f"gateway: take-over queue full, {cid} not closed", lane="gateway")

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
        problem = signature_problem(self.devices.get(cid), topic, env, "device")
        if problem:
            status = Status.POLICY if "ALG" in problem else Status.BAD_SIGNATURE
            self._refuse(cid_topic, payload, seq, status, problem)
            return
        if cid != cid_topic:
            self._refuse(cid_topic, payload, seq, Status.POLICY, "client ID differs from topic")
            return
        with self._lock:
            owner = self.topics.get(topic)
        if owner != cid:
            why = f"topic {topic} not registered for {cid}"
            self._refuse(cid, payload, seq, Status.POLICY, why)
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
        outcome = session.window.check(seq)
        if outcome == SeqWindow.TOO_FAR:
            self._refuse(
                cid,
                payload,
                seq,
                Status.POLICY,
                f"seq={seq} too far ahead of the window (more than {session.window.max_jump})",
            )
            return
        cfrags: dict[str, list[bytes]] = {}
        if outcome == SeqWindow.NEW:
            if self.workers is not None and not env.plain and self.destinations:
                jobs = self._jobs(env)
                names = [name for name, _ in jobs]
                self.workers.reencrypt(
                    lambda done: self._reencrypted(
                        cid, session, env, payload, seq, digest, msg, names, done
                    ),
                    env.get(T.CAPSULE),
                    [job for _, job in jobs],
                )
                return
            try:  # before the window commits: a capsule PRE refuses must not burn its seq
                cfrags = self._reencrypt_all(env)
            except PreError as error:
                why = f"capsule refused: {error.problem}"
                self._refuse(cid, payload, seq, Status.MALFORMED, why)
                return
        self._commit(cid, session, env, payload, seq, digest, msg, cfrags)

    def _jobs(self, env: wire.Envelope) -> list[tuple[str, tuple[bytes, bytes, bytes, bytes]]]:
        with self._lock:
            destinations = list(self.destinations.values())
        return [
            (d.name, (d.kfrag, self.owner_pre, self.owner_verifying, d.receiver_pre))
            for d in destinations
        ]

    def _reencrypted(
        self,
        cid: str,
        session: Session,
        env: wire.Envelope,
        payload: bytes,
        seq: int,
        digest: bytes,
        msg: Any,
        names: list[str],
        done: Any,
    ) -> None:
        """A worker re-encrypted the capsule: the window, FWD, ACK and verdict are ours."""
        try:
            ok, cfrags, problem = done.result()
            if not ok:
                self._refuse(cid, payload, seq, Status.MALFORMED, f"capsule refused: {problem}")
                return
            by_name = {name: [cfrag] for name, cfrag in zip(names, cfrags, strict=True)}
            self._commit(cid, session, env, payload, seq, digest, msg, by_name)
        except Exception as error:  # like Role.guarded: a verdict, never a dead thread
            self.verdict(payload, False, f"dropped: {describe_error(error)}", "data")

    def _commit(
        self,
        cid: str,
        session: Session,
        env: wire.Envelope,
        payload: bytes,
        seq: int,
        digest: bytes,
        msg: Any,
        cfrags: dict[str, list[bytes]],
    ) -> None:
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
        self._forward(env, payload, cfrags)
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

    def _reencrypt_all(self, env: wire.Envelope) -> dict[str, list[bytes]]:
        """Share-1 cfrag per destination; raises :class:`PreError` for a capsule that PRE
        refuses (a signed but nonsensical capsule from a compromised device)."""
        jobs = self._jobs(env)
        if not isinstance(self.pre, UmbralBackend) or env.plain:
            return {name: [] for name, _ in jobs}
        cfrags = self.pre.reencrypt_all(env.get(T.CAPSULE), [job for _, job in jobs])
        return {name: [cfrag] for (name, _), cfrag in zip(jobs, cfrags, strict=True)}

    def _forward(self, env: wire.Envelope, payload: bytes, cfrags: dict[str, list[bytes]]) -> None:
        with self._lock:
            destinations = [d for d in self.destinations.values() if d.name in cfrags]
        for dest in destinations:
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
                MsgType.FWD,
                fields,
                flags=1,
                cfrags=cfrags[dest.name],
                sign=self.signer.sign,
                topic=topic,
            )
            assert self.endpoint is not None
            self.endpoint.publish(topic, out, qos=1)
            self.forwarded += 1
