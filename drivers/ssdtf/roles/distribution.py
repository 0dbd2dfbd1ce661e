"""The distribution server (DS): second re-encryption, pseudonyms, signed DELIVER.

It trusts the broker gateway's signature on FWD (the seed's key table gives it the broker's
public key, not the devices'), re-encrypts with conversion-key share #2, replaces the internal
device ID by a keyed external ID (scope: the destination), records the mapping for the
operator, and signs DELIVER with its own key — so subscribers never see the device's key or
signature, which would identify the device. Like the gateway it holds no PRE secret key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from drivers.ssdtf import binding, rewrap, wire
from drivers.ssdtf import config as topics
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.endpoint import Endpoint
from drivers.ssdtf.pre import PlainBackend, PreError, UmbralBackend
from drivers.ssdtf.pseudonyms import MappingStore, Pseudonymizer
from drivers.ssdtf.registry import ProvisionCheck, key_of
from drivers.ssdtf.replay import SeqWindow, now_ms, ts_ok
from drivers.ssdtf.roles.base import (
    ProxyRole,
    describe_error,
    key_view,
    pre_view,
    signature_problem,
    wrap_view,
)
from drivers.ssdtf.signing import Ed25519Signer, PublicKeyRef
from drivers.ssdtf.trace import KeyView, Trace
from drivers.ssdtf.wire import MsgType, RegKind, T
from drivers.ssdtf.workers import OpenWorkers


@dataclass
class Recipient:
    name: str
    receiver_pre: bytes
    kfrag: bytes
    wrap_public: bytes = b""
    """The destination's X25519 wrap key (:mod:`drivers.ssdtf.rewrap`)."""
    window: SeqWindow = field(default_factory=SeqWindow)
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    signing: PublicKeyRef | None = None
    """The destination's signing key: verifies its re-send requests."""
    sent: OrderedDict[int, Sent] = field(default_factory=OrderedDict)
    """The last :data:`KEPT_FOR_RESEND` DELIVERs (by seq), for re-send requests."""


@dataclass
class Sent:
    topic: str
    fields: wire.FieldMap
    flags: int
    qos: int
    retain: bool
    resent: int = 0


KEPT_FOR_RESEND = 256


class DistributionServer(ProxyRole):
    def __init__(
        self,
        signer: Ed25519Signer,
        broker_pin: PublicKeyRef,
        pre: UmbralBackend | PlainBackend,
        cfg: FlowConfig,
        trace: Trace,
        service_token: str,
        store: MappingStore,
    ) -> None:
        super().__init__("ds", trace)
        self.signer = signer
        self.broker_pin = broker_pin
        self.pre = pre
        self.cfg = cfg
        self.token = service_token
        self.store = store
        self.pseudonyms = Pseudonymizer()
        self.hold(key_view("sk_DS", "signing private", signer.public()))
        self.hold(key_view("pk_B", "public (pinned)", broker_pin))
        self.hold(
            KeyView(
                "K_ps",
                "pseudonym key",
                "HMAC-SHA256",
                self.pseudonyms.fingerprint(),
                f"epoch {self.pseudonyms.epoch}",
            )
        )
        self.registrars: dict[str, PublicKeyRef] = {}
        self.owner_pre = b""
        self.owner_verifying = b""
        self.recipients: dict[str, Recipient] = {}
        self.workers: OpenWorkers | None = None
        """Worker processes for re-encryption and re-wrap (``cfg.workers`` > 0)."""
        self.offered: dict[str, bytes] = {}
        self.provision_check = ProvisionCheck("ds", window_s=cfg.ts_window_s)
        self.delivered = 0
        self._lock = threading.RLock()
        self.endpoint: Endpoint | None = None

    def apply_registration(self, reg: wire.Envelope) -> str:
        """Destinations and revocations (the DS holds no device keys: those are refused)."""
        kind = RegKind(reg.get(T.KIND)[0])
        if kind == RegKind.REVOKE:
            self.revoke_destination(reg.text(T.SUB))
            return ""
        if kind != RegKind.DESTINATION:
            return f"{kind.name.lower()} registrations are not for the DS"
        name = reg.text(T.SUB)
        kfrag = self.offered.get(name, b"")
        if hashlib.sha256(kfrag).digest() != reg.get(T.HASH2):
            return f"conversion-key share 2 for {name} missing or not the registered one"
        receiver = reg.fields.get(T.PREKEY, b"")
        wrap_public = reg.fields.get(T.WRAPKEY, b"")
        if self.pre.available and not (receiver and wrap_public):
            return f"destination {name} registered without a PRE key and a wrap key"
        signing = key_of(reg, name)
        self.hold(key_view(f"pk_U[{name}]", "public (re-send requests)", signing))
        with self._lock:
            self.recipients[name] = Recipient(
                name,
                receiver,
                kfrag,
                wrap_public,
                SeqWindow(self.cfg.window, self.cfg.max_jump),
                signing=signing,
            )
        self.hold(pre_view(f"pk_U[{name}].pre", "pre public (destination)", receiver))
        if wrap_public:
            self.hold(wrap_view(f"pk_U[{name}].wrap", "wrap public (re-wrap)", wrap_public))
        self.hold(
            KeyView(
                f"kfrag#2[{name}]",
                "conversion key",
                "umbral",
                "",
                "share 2 of 2; share handed over in process (simulated), its registration "
                "signed over MQTT",
            )
        )
        return ""

    def revoke_destination(self, name: str) -> None:
        with self._lock:
            self.recipients.pop(name, None)
        self.drop(f"kfrag#2[{name}]")
        self.drop(f"pk_U[{name}].pre")
        self.drop(f"pk_U[{name}].wrap")

    def rotate_pseudonyms(self) -> int:
        epoch = self.pseudonyms.rotate()
        self.hold(
            KeyView(
                "K_ps",
                "pseudonym key",
                "HMAC-SHA256",
                self.pseudonyms.fingerprint(),
                f"epoch {epoch}",
            )
        )
        return epoch

    def start(self, host: str, port: int) -> None:
        if self.cfg.workers > 0 and isinstance(self.pre, UmbralBackend):
            self.workers = OpenWorkers(self.cfg.workers)
        endpoint = Endpoint("ssdtf-ds", host, port, username="ds", password=self.token)
        endpoint.on("ssdtf/v1/int/+", self.guarded("forward", self._on_fwd))
        endpoint.on("ssdtf/v1/resend/+", self.guarded("resend", self._on_resend))
        prov = topics.prov_topic("ds")
        endpoint.on(prov, self.guarded("registration", self._on_prov))
        endpoint.on_error = self.on_internal_error
        endpoint.on_dropped = self.on_dropped
        endpoint.connect(self.cfg.connect_timeout_s)
        endpoint.subscribe(
            [("ssdtf/v1/int/+", 1), ("ssdtf/v1/resend/+", 1), (prov, 1)],
            self.cfg.connect_timeout_s,
        )
        self.endpoint = endpoint

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def _on_fwd(self, topic: str, payload: bytes, msg: Any) -> None:
        sub = topics.topic_part(topic, 1)
        try:
            env = wire.decode(payload)
            if env.type != MsgType.FWD:
                raise wire.MsgTypeError(f"{env.type.name} on a forwarding topic")
        except wire.WireError as error:
            self.verdict(payload, False, f"malformed: {error.problem}", "forward")
            return
        problem = signature_problem(self.broker_pin, topic, env, "broker")
        if problem:
            self.verdict(payload, False, f"{problem} on FWD", "forward")
            return
        if env.text(T.SUB) != sub:
            self.verdict(payload, False, "FWD for another destination than its topic", "forward")
            return
        with self._lock:
            recipient = self.recipients.get(sub)
        if recipient is None:
            self.verdict(
                payload, False, f"no conversion key for {sub} (revoked or unknown)", "forward"
            )
            return
        if not ts_ok(env.int(T.TS), self.cfg.ts_window_s):
            self.verdict(payload, False, "FWD timestamp outside the window", "forward")
            return
        try:
            inner = wire.decode(env.get(T.INNER))
            if inner.type != MsgType.DATA:
                raise wire.MsgTypeError(f"{inner.type.name} inside a FWD")
        except wire.WireError as error:
            self.verdict(payload, False, f"malformed inner DATA: {error.problem}", "forward")
            return
        if inner.plain and self.pre.available:  # the gateway refuses these too; so do we
            self.verdict(payload, False, "downgrade: plaintext DATA inside a FWD", "forward")
            return
        if not inner.plain and T.BIND not in inner.fields:
            self.verdict(payload, False, "DATA without a sender binding refused", "forward")
            return
        outcome = recipient.window.check(env.int(T.SEQ))
        if outcome != SeqWindow.NEW:
            self.verdict(payload, False, f"FWD seq {outcome}: not delivered again", "forward")
            return
        encrypted = isinstance(self.pre, UmbralBackend) and not inner.plain
        if encrypted and self.workers is not None:  # pipelined: continues when transformed
            cid = inner.text(T.CID)
            self.workers.transform(
                lambda done: self._transformed(payload, env, inner, recipient, done),
                inner.get(T.CAPSULE),
                inner.get(T.CT),
                list(env.cfrags),
                recipient.kfrag,
                (self.owner_pre, self.owner_verifying, recipient.receiver_pre),
                binding.sender_tag(cid, inner.get(T.BIND)),
                recipient.wrap_public,
            )
            return
        wrapped: tuple[bytes, bytes] | None = None
        if encrypted:
            try:
                wrapped = self._transform(env, inner, recipient)
            except PreError as error:
                self.verdict(payload, False, error.problem, "forward")
                return
        self._deliver(payload, env, inner, recipient, wrapped)

    def _transform(
        self, env: wire.Envelope, inner: wire.Envelope, recipient: Recipient
    ) -> tuple[bytes, bytes]:
        """Share-2 cfrag, then the re-wrap for this destination: nothing of the DATA's bytes
        is repeated, and the expected sender tag travels where only the destination can
        read it. Raises :class:`PreError` for a capsule PRE refuses."""
        assert isinstance(self.pre, UmbralBackend)
        cfrag = self.pre.reencrypt(
            inner.get(T.CAPSULE),
            recipient.kfrag,
            owner_public=self.owner_pre,
            owner_verifying=self.owner_verifying,
            receiver_public=recipient.receiver_pre,
        )
        bundle = binding.encode_bundle(
            inner.get(T.CAPSULE),
            inner.get(T.CT),
            [*env.cfrags, cfrag],
            binding.sender_tag(inner.text(T.CID), inner.get(T.BIND)),
        )
        return rewrap.wrap(recipient.wrap_public, bundle)

    def _transformed(
        self,
        payload: bytes,
        env: wire.Envelope,
        inner: wire.Envelope,
        recipient: Recipient,
        done: Any,
    ) -> None:
        try:
            ok, capsule, ct, problem = done.result()
            if not ok:
                self.verdict(payload, False, problem, "forward")
                return
            self._deliver(payload, env, inner, recipient, (capsule, ct))
        except Exception as error:  # like Role.guarded: a verdict, never a dead thread
            self.verdict(payload, False, f"dropped: {describe_error(error)}", "forward")

    def _deliver(
        self,
        payload: bytes,
        env: wire.Envelope,
        inner: wire.Envelope,
        recipient: Recipient,
        wrapped: tuple[bytes, bytes] | None,
    ) -> None:
        sub = recipient.name
        # committed only now: a FWD whose capsule PRE refuses must not burn its seq
        outcome = recipient.window.accept(env.int(T.SEQ), hashlib.sha256(payload).digest())
        if outcome != SeqWindow.NEW:
            self.verdict(payload, False, f"FWD seq {outcome}: not delivered again", "forward")
            return
        cid = inner.text(T.CID)
        ext_id = self.pseudonyms.external_id(cid, sub)
        epoch = self.pseudonyms.epoch
        self.store.record(ext_id, epoch, sub, cid)
        with recipient.lock:
            recipient.seq += 1
            seq = recipient.seq
        out_topic = topics.out_topic(sub, ext_id)
        fields = {
            T.SEQ: wire.u64(seq),
            T.TS: wire.u64(now_ms()),
            T.EXT_ID: ext_id.encode(),
            T.EPOCH: wire.u32(epoch),
            T.KID: self.signer.public().kid,
            T.ALG: bytes([self.signer.alg]),
        }
        if wrapped is not None:
            fields[T.CAPSULE], fields[T.CT] = wrapped
        else:
            fields[T.CT] = inner.get(T.CT)
        deliver = wire.encode(
            MsgType.DELIVER,
            fields,
            flags=inner.flags,
            sign=self.signer.sign,
            topic=out_topic,
        )
        assert self.endpoint is not None
        qos = max(1, inner.qos_pub)
        self.endpoint.publish(out_topic, deliver, qos=qos, retain=inner.retain_pub)
        with recipient.lock:
            recipient.sent[seq] = Sent(out_topic, fields, inner.flags, qos, inner.retain_pub)
            while len(recipient.sent) > KEPT_FOR_RESEND:
                recipient.sent.popitem(last=False)
        self.delivered += 1
        self.verdict(
            payload,
            True,
            f"broker signature valid; delivered to {sub} as {ext_id}",
            "forward",
            ext_id=ext_id,
        )

    # --- the subscriber leg: signed re-send requests ---------------------------------
    def _on_resend(self, topic: str, payload: bytes, msg: Any) -> None:
        """A destination asks again for a DELIVER it never got (a gap in its sequence). The
        DELIVER is re-signed with a fresh TS (same wrapped bundle); each seq is re-sent at
        most ``max_attempts`` times, and only to the destination that signed the request."""
        sub = topics.topic_part(topic, 1)
        try:
            env = wire.decode(payload)
            if env.type != MsgType.RESEND:
                raise wire.MsgTypeError(f"{env.type.name} on a re-send topic")
        except wire.WireError as error:
            self.verdict(payload, False, f"malformed re-send request: {error.problem}", "resend")
            return
        with self._lock:
            recipient = self.recipients.get(sub)
        if recipient is None or env.text(T.SUB) != sub:
            self.verdict(payload, False, f"re-send request for unknown {sub}", "resend")
            return
        problem = signature_problem(recipient.signing, topic, env, f"data user {sub}")
        if problem:
            self.verdict(payload, False, f"re-send request refused: {problem}", "resend")
            return
        if not ts_ok(env.int(T.TS), self.cfg.ts_window_s):
            self.verdict(payload, False, "re-send request outside the TS window", "resend")
            return
        seq = env.int(T.SEQ)
        with recipient.lock:
            sent = recipient.sent.get(seq)
            if sent is not None and sent.resent < self.cfg.max_attempts:
                sent.resent += 1
            else:
                sent = None
        if sent is None:
            why = f"re-send of seq={seq} refused: not kept or re-sent too often"
            self.verdict(payload, False, why, "resend")
            return
        fields = sent.fields | {T.TS: wire.u64(now_ms())}
        again = wire.encode(
            MsgType.DELIVER, fields, flags=sent.flags, sign=self.signer.sign, topic=sent.topic
        )
        assert self.endpoint is not None
        self.endpoint.publish(sent.topic, again, qos=sent.qos, retain=sent.retain)
        self.verdict(
            payload, True, f"re-send request from {sub} verified: seq={seq} re-sent", "resend"
        )
