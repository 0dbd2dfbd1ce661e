"""The data user (subscriber): verifies the distribution server's DELIVER, checks the cfrags,
decrypts. It sees external IDs only; re-identifying a device is the operator's business.

In model 2 the first data user is also the key owner and registrar (it holds the PRE key the
sensors encrypt to and issues the conversion keys for its destinations); in model 3 each data
user registers its own destination and the conversion keys the device operator issued for it.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, cast

from drivers.ssdtf import binding, rewrap, wire
from drivers.ssdtf import config as topics
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.endpoint import Endpoint
from drivers.ssdtf.pre import PlainBackend, PreError, PreKeyPair, UmbralBackend
from drivers.ssdtf.registry import build_reg
from drivers.ssdtf.replay import SeqWindow, now_ms, ts_ok
from drivers.ssdtf.roles.base import (
    Role,
    describe_error,
    key_view,
    pre_view,
    signature_problem,
    wrap_view,
)
from drivers.ssdtf.scheduler import Scheduler
from drivers.ssdtf.signing import Ed25519Signer, PublicKeyRef
from drivers.ssdtf.trace import Trace
from drivers.ssdtf.wire import MsgType, RegKind, Status, T
from drivers.ssdtf.workers import OpenWorkers

MAX_CHASED = 64
"""At most this many missing DELIVERs are chased at once (bounded state)."""


@dataclass
class Reading:
    ext_id: str
    epoch: int
    seq: int
    value: bytes
    retain: bool
    qos: int


class DataUser(Role):
    def __init__(
        self,
        name: str,
        signer: Ed25519Signer,
        pre_keys: PreKeyPair | None,
        ds_pin: PublicKeyRef,
        pre: UmbralBackend | PlainBackend,
        cfg: FlowConfig,
        trace: Trace,
        service_token: str,
    ) -> None:
        super().__init__(name, trace)
        self.signer = signer
        self.pre_keys = pre_keys
        self.ds_pin = ds_pin
        self.pre = pre
        self.cfg = cfg
        self.token = service_token
        self.owner_pre = b""
        self.owner_verifying = b""
        self.hold(key_view(f"sk_U[{name}]", "signing private", signer.public()))
        if pre_keys is not None:
            self.hold(pre_view(f"sk_U[{name}].pre", "pre private (decrypts)", pre_keys.public))
        self.wrap_keys = rewrap.keygen(name) if pre_keys is not None else None
        """X25519 key the DS re-wraps this user's DELIVERs to (:mod:`drivers.ssdtf.rewrap`)."""
        if self.wrap_keys is not None:
            self.hold(
                wrap_view(
                    f"sk_U[{name}].wrap", "wrap private (opens DELIVERs)", self.wrap_keys.public
                )
            )
        self.hold(key_view("pk_DS", "public (pinned)", ds_pin))
        self.readings: list[Reading] = []
        self.window = SeqWindow(cfg.window, cfg.max_jump)
        self.arrived = threading.Condition()
        self.endpoint: Endpoint | None = None
        self.chasing: dict[int, int] = {}
        """Missing DELIVER seq -> re-send requests sent for it (bounded: ``MAX_CHASED``)."""
        self.scheduler = Scheduler(f"ssdtf-{name}-resend", self.on_internal_error)
        self.workers: OpenWorkers | None = None
        """Worker processes that open DELIVERs (``cfg.workers`` > 0; see workers.py)."""
        self.commit_lock = threading.Lock()

    def set_owner(self, owner: str, public: bytes, verifying: bytes) -> None:
        self.owner_pre = public
        self.owner_verifying = verifying
        if owner != f"U[{self.name}]":  # model 2: its own key, already held
            self.hold(pre_view(f"pk_{owner}.pre", "pre public (key owner)", public))
        self.hold(pre_view(f"vk_{owner}.kfrag", "public (kfrag verifying)", verifying))

    def start(self, host: str, port: int) -> None:
        if (
            self.cfg.workers > 0
            and isinstance(self.pre, UmbralBackend)
            and self.pre_keys
            and self.wrap_keys
        ):
            secret = self.pre_keys._secret().to_be_bytes()
            self.workers = OpenWorkers(
                self.cfg.workers, secret, self.pre_keys.public, self.wrap_keys.secret_bytes()
            )
        endpoint = Endpoint(
            f"ssdtf-{self.name}", host, port, username=self.name, password=self.token
        )
        pattern = f"ssdtf/v1/out/{self.name}/+"
        endpoint.on(pattern, self.guarded("deliver", self._on_deliver))
        endpoint.on("ssdtf/v1/out/#", self.guarded("deliver", self._on_deliver))
        endpoint.on_error = self.on_internal_error
        endpoint.on_dropped = self.on_dropped
        endpoint.connect(self.cfg.connect_timeout_s)
        endpoint.subscribe(
            [(pattern, int(cast(int, self.cfg.extras.get("user_qos", 1))))],
            self.cfg.connect_timeout_s,
        )
        self.endpoint = endpoint

    def stop(self) -> None:
        self.scheduler.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def _on_deliver(self, topic: str, payload: bytes, msg: Any) -> None:
        self.handle(topic, payload, int(msg.qos), bool(msg.retain))

    def handle(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        try:
            env = wire.decode(payload)
            if env.type != MsgType.DELIVER:
                raise wire.MsgTypeError(f"{env.type.name} on a delivery topic")
        except wire.WireError as error:
            self.verdict(payload, False, f"malformed: {error.problem}", "deliver")
            return
        problem = signature_problem(self.ds_pin, topic, env, "distribution server")
        if problem:
            self.verdict(payload, False, problem, "deliver")
            return
        if not ts_ok(env.int(T.TS), self.cfg.ts_window_s):
            why = f"DELIVER timestamp outside ±{self.cfg.ts_window_s:g} s (held back or stale)"
            self.verdict(payload, False, why, "deliver")
            return
        seq = env.int(T.SEQ)
        ahead = self.window.check(seq)
        if ahead != SeqWindow.NEW:
            self.verdict(payload, False, f"DELIVER seq={seq} {ahead}: ignored", "deliver")
            return
        if env.plain:
            if self.pre.available:
                self.verdict(payload, False, "downgrade: plaintext DELIVER refused", "deliver")
                return
            value = env.get(T.CT)
        else:
            if not isinstance(self.pre, UmbralBackend) or not self.pre_keys or not self.wrap_keys:
                self.verdict(payload, False, "encrypted DELIVER but no PRE key here", "deliver")
                return
            if self.workers is not None:  # pipelined: the role continues when it is opened
                self.workers.open(
                    lambda done: self._opened(payload, env, seq, qos, retain, done),
                    self.owner_pre,
                    self.owner_verifying,
                    env.get(T.CAPSULE),
                    env.get(T.CT),
                )
                return
            try:
                value = self._open(env)
            except PreError as error:
                self.verdict(payload, False, error.problem, "deliver")
                return
        self._commit(payload, env, seq, value, qos, retain)

    def _opened(
        self, payload: bytes, env: wire.Envelope, seq: int, qos: int, retain: bool, done: Any
    ) -> None:
        """A worker opened the bundle: the sender binding and the commit are the role's."""
        try:
            ok, plaintext, expected, problem = done.result()
            if not ok:
                self.verdict(payload, False, problem, "deliver")
                return
            try:
                value = binding.open_plaintext(plaintext, expected)
            except PreError as error:
                self.verdict(payload, False, error.problem, "deliver")
                return
            self._commit(payload, env, seq, value, qos, retain)
        except Exception as error:  # like Role.guarded: a verdict, never a dead thread
            self.verdict(payload, False, f"dropped: {describe_error(error)}", "deliver")

    def _commit(
        self, payload: bytes, env: wire.Envelope, seq: int, value: bytes, qos: int, retain: bool
    ) -> None:
        # Committed only now: a DELIVER that fails the cfrag check must not burn its seq.
        with self.commit_lock:
            high_before = self.window.high
            outcome = self.window.accept(seq, hashlib.sha256(payload).digest())
            if outcome == SeqWindow.NEW:
                self._note_gap(high_before, seq)
        if outcome != SeqWindow.NEW:
            self.verdict(payload, False, f"DELIVER seq={seq} {outcome}: ignored", "deliver")
            return
        reading = Reading(env.text(T.EXT_ID), env.int(T.EPOCH), seq, value, retain, qos)
        with self.arrived:
            self.readings.append(reading)
            self.arrived.notify_all()
        self.verdict(
            payload,
            True,
            "DS signature valid; cfrags verified; decrypted; sender binding holds"
            if not env.plain
            else "DS signature valid; PLAIN (no PRE library): no confidentiality",
            "deliver",
            ext_id=reading.ext_id,
            size=len(value),
            qos=qos,
            retain=retain,
        )

    # --- the subscriber leg: re-send requests and reports -------------------------------
    def _note_gap(self, high_before: int, seq: int) -> None:
        """DELIVERs between the old high-water mark and ``seq`` are missing: ask the DS again
        after ``ack_timeout_s`` (with back-off), then report to the MS (the seed's two legs)."""
        if seq <= high_before + 1:
            return
        for missing in range(max(high_before + 1, seq - MAX_CHASED), seq):
            if missing not in self.chasing and len(self.chasing) < MAX_CHASED:
                self.chasing[missing] = 0
                self.scheduler.call_later(self.cfg.ack_timeout_s, self._chase, missing)

    def _chase(self, seq: int) -> None:
        attempts = self.chasing.get(seq)
        if attempts is None:
            return
        if self.window.seen(seq):
            del self.chasing[seq]
            return
        if attempts >= self.cfg.max_attempts:
            del self.chasing[seq]
            self._report(seq, f"DELIVER seq={seq} never arrived after {attempts} re-send requests")
            return
        self.chasing[seq] = attempts + 1
        self._publish_signed(
            MsgType.RESEND,
            {T.SEQ: wire.u64(seq), T.TS: wire.u64(now_ms()), T.SUB: self.name.encode()},
            topics.resend_topic(self.name),
        )
        self.trace.note(f"{self.name}: asks the DS to re-send seq={seq}", lane=self.name)
        delay = self.cfg.ack_timeout_s * self.cfg.backoff ** (attempts + 1)
        self.scheduler.call_later(delay, self._chase, seq)

    def _report(self, seq: int, reason: str) -> None:
        fields = {
            T.CID: self.name.encode(),
            T.SEQ: wire.u64(seq),
            T.TS: wire.u64(now_ms()),
            T.HASH: hashlib.sha256(reason.encode()).digest(),
            T.STATUS: bytes([Status.MALFORMED]),
            T.REASON: reason.encode()[:200],
        }
        self.trace.note(f"{self.name}: reports to the management server: {reason}", lane=self.name)
        self._publish_signed(MsgType.REPORT, fields, topics.report_topic(self.name))

    def register(self, kind: RegKind, fields: wire.FieldMap) -> None:
        """Publish a registration as this user (the registrar in model 2, and for its
        destinations in model 3); the MS decides whether this user may register it."""
        payload = build_reg(self.signer, self.name, kind, fields)
        if self.endpoint is not None:
            self.endpoint.publish(topics.reg_topic(self.name), payload, qos=1)

    def _publish_signed(self, msg_type: MsgType, fields: wire.FieldMap, topic: str) -> None:
        fields = fields | {T.KID: self.signer.public().kid, T.ALG: bytes([self.signer.alg])}
        payload = wire.encode(msg_type, fields, flags=1, sign=self.signer.sign, topic=topic)
        if self.endpoint is not None:
            self.endpoint.publish(topic, payload, qos=1)

    def _open(self, env: wire.Envelope) -> bytes:
        """Unwrap the bundle (encrypted to this user), verify both cfrags, decrypt, and check
        the sender binding against the tag the DS computed from the verified sender."""
        assert isinstance(self.pre, UmbralBackend) and self.pre_keys and self.wrap_keys
        bundle = rewrap.unwrap(self.wrap_keys, env.get(T.CAPSULE), env.get(T.CT))
        capsule, ct, cfrags, expected = binding.decode_bundle(bundle)
        plaintext = self.pre.decrypt(
            self.pre_keys,
            owner_public=self.owner_pre,
            owner_verifying=self.owner_verifying,
            capsule=capsule,
            cfrags=cfrags,
            ciphertext=ct,
        )
        return binding.open_plaintext(plaintext, expected)

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.readings) >= count, timeout)
