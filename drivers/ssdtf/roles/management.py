"""The management server (MS): the registry (every model), registrar (models 1 and 3), key
owner of the data (models 1 and 3, where it is the device operator's server), and receiver of
failure reports.

Registrations arrive as signed REG messages on ``ssdtf/v1/reg/{registrar}`` (its own too, in
models 1 and 3: the same checks for everyone); the MS judges them (:mod:`drivers.ssdtf.registry`)
and passes the accepted ones on to the gateway and the DS as PROV messages it signs.

Reports come over MQTT (``ssdtf/v1/report/{cid}``) when the sensor still trusts its broker,
or out of band (:meth:`ManagementServer.receive_report` called directly, standing for a
separate channel) when the broker itself failed authentication; either way the MS verifies
the device's signature before believing a report.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from typing import Any

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.endpoint import Endpoint
from drivers.ssdtf.pre import PreKeyPair
from drivers.ssdtf.registry import Registrar, Registry, build_reg
from drivers.ssdtf.replay import DigestWindow, now_ms, ts_ok
from drivers.ssdtf.roles.base import (
    Role,
    describe_error,
    key_view,
    pre_view,
    signature_problem,
)
from drivers.ssdtf.signing import Ed25519Signer, PublicKeyRef
from drivers.ssdtf.trace import Trace
from drivers.ssdtf.wire import MsgType, RegKind, T

MAX_REPORTS = 10_000


class ManagementServer(Role):
    def __init__(
        self,
        signer: Ed25519Signer,
        pre_keys: PreKeyPair | None,
        cfg: FlowConfig,
        trace: Trace,
        service_token: str,
    ) -> None:
        super().__init__("ms", trace)
        self.signer = signer
        self.pre_keys = pre_keys
        self.cfg = cfg
        self.token = service_token
        self.hold(key_view("sk_MS", "signing private", signer.public()))
        if pre_keys is not None:
            self.hold(pre_view("sk_MS.pre", "pre private (key owner)", pre_keys.public))
            self.hold(pre_view("sk_MS.kfrag", "kfrag signing private", pre_keys.verifying))
        self.devices: dict[str, PublicKeyRef] = {}
        self.reports: deque[dict[str, Any]] = deque(maxlen=MAX_REPORTS)
        """The verified reports, newest last (bounded: a compromised device can sign as many
        distinct reports as it likes)."""
        self.seen_reports = DigestWindow(4096)
        self._lock = threading.Lock()
        self.endpoint: Endpoint | None = None
        self.registry = Registry(window_s=cfg.ts_window_s)
        self.provisioned = 0
        """PROV messages published (registrations passed on to gateway and DS)."""

    def set_registrar(self, group: str, name: str, ref: PublicKeyRef, services: set[str]) -> None:
        """Pin the model's registrar of ``group`` (``devices`` or ``destinations``)."""
        self.registry.registrars[group] = Registrar(name, ref)
        self.registry.service_ids = frozenset(services)
        if name != "ms" and f"pk_U[{name}]" not in self.inventory:
            self.hold(key_view(f"pk_U[{name}]", f"public (registrar of {group})", ref))

    def register(self, kind: RegKind, fields: wire.FieldMap) -> None:
        """Publish the MS's own registration (models 1 and 3) like any registrar's."""
        payload = build_reg(self.signer, "ms", kind, fields)
        assert self.endpoint is not None
        self.endpoint.publish(topics.reg_topic("ms"), payload, qos=1)

    def know_device(self, cid: str, ref: PublicKeyRef) -> None:
        self.devices[cid] = ref
        self.hold(key_view(f"pk_D[{cid}]", "public (device)", ref))

    def know_user(self, name: str, ref: PublicKeyRef) -> None:
        """A data user's signing key: it reports DELIVERs that never arrived (subscriber leg)."""
        self.devices[name] = ref
        self.hold(key_view(f"pk_U[{name}]", "public (data user reports)", ref))

    def start(self, host: str, port: int) -> None:
        endpoint = Endpoint("ssdtf-ms", host, port, username="ms", password=self.token)
        endpoint.on("ssdtf/v1/report/+", self.guarded("report", self._on_report))
        endpoint.on("ssdtf/v1/reg/+", self.guarded("registration", self._on_reg))
        endpoint.on_error = self.on_internal_error
        endpoint.on_dropped = self.on_dropped
        endpoint.connect(self.cfg.connect_timeout_s)
        endpoint.subscribe(
            [("ssdtf/v1/report/+", 1), ("ssdtf/v1/reg/+", 1)], self.cfg.connect_timeout_s
        )
        self.endpoint = endpoint

    # --- registrations -----------------------------------------------------------------
    def _on_reg(self, topic: str, payload: bytes, msg: Any) -> None:
        try:
            env = wire.decode(payload)
            if env.type != MsgType.REG:
                raise wire.MsgTypeError(f"{env.type.name} on a registration topic")
        except wire.WireError as error:
            self.verdict(payload, False, f"registration refused: {error.problem}", "registration")
            return
        problem = self.registry.judge(topic, env)
        if not problem and not self.registry.fresh_nonce(env):
            problem = "registration replayed (nonce ND already used)"
        if problem:
            self.verdict(payload, False, f"registration refused: {problem}", "registration")
            return
        entry = self.registry.apply(topic, env)
        kind = entry.kind
        if kind == RegKind.DEVICE and entry.key is not None:
            self.know_device(entry.cid, entry.key)
        if kind == RegKind.DESTINATION and entry.key is not None:
            self.know_user(env.text(T.SUB), entry.key)
        sender = topics.topic_part(topic, 1)
        targets = ["gateway"] if kind in (RegKind.DEVICE, RegKind.TOPIC) else ["gateway", "ds"]
        for role in targets:
            self._provision(role, sender, payload)
        what = f"{kind.name.lower()} {env.text(T.CID) if T.CID in env.fields else env.text(T.SUB)}"
        self.verdict(
            payload,
            True,
            f"registration by {sender} accepted ({what}); passed on to {', '.join(targets)}",
            "registration",
        )

    def _provision(self, role: str, registrar: str, reg: bytes) -> None:
        topic = topics.prov_topic(role)
        fields = {
            T.TS: wire.u64(now_ms()),
            T.INNER: reg,
            T.SUB: registrar.encode(),
            T.KID: self.signer.public().kid,
            T.ALG: bytes([self.signer.alg]),
        }
        payload = wire.encode(MsgType.PROV, fields, flags=1, sign=self.signer.sign, topic=topic)
        assert self.endpoint is not None
        self.endpoint.publish(topic, payload, qos=1)
        self.provisioned += 1

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()

    def _on_report(self, topic: str, payload: bytes, msg: Any) -> None:
        self.receive_report(payload, topic)

    @property
    def report_window_s(self) -> float:
        """Freshness window for REPORTs: wider than the data path's (a report may be about
        the device's own clock, or wait for a way out of band), still finite, so the digest
        window that suppresses duplicates only has to remember this long."""
        return self.cfg.ts_window_s * 10

    def receive_report(self, payload: bytes, topic: str = "") -> bool:
        """Verify and store a sensor's REPORT (MQTT or out of band); never raises."""
        try:
            return self._receive(payload, topic)
        except Exception as error:
            self.verdict(payload, False, f"dropped: {describe_error(error)}", "report")
            return False

    def _receive(self, payload: bytes, topic: str) -> bool:
        try:
            env = wire.decode(payload)
            if env.type != MsgType.REPORT:
                raise wire.MsgTypeError(env.type.name)
        except wire.WireError as error:
            self.verdict(payload, False, f"malformed report: {error.problem}", "report")
            return False
        cid = env.text(T.CID)
        signed_topic = topics.report_topic(cid)
        if topic and topic != signed_topic:
            self.verdict(payload, False, "report for another device than its topic", "report")
            return False
        problem = signature_problem(self.devices.get(cid), signed_topic, env, "device")
        if problem:
            self.verdict(payload, False, f"report signature invalid ({problem})", "report")
            return False
        if not ts_ok(env.int(T.TS), self.report_window_s):
            why = f"report timestamp outside ±{self.report_window_s:g} s (stale or held back)"
            self.verdict(payload, False, why, "report")
            return False
        if not self.seen_reports.add(hashlib.sha256(payload).digest()):
            self.verdict(payload, False, "duplicate report: already counted", "report")
            return False
        entry = {
            "cid": cid,
            "seq": env.int(T.SEQ),
            "reason": env.text(T.REASON),
            "via": "mqtt" if topic else "out of band",
        }
        with self._lock:
            self.reports.append(entry)
        self.trace.note(f"ms: report from {cid}: {entry['reason']}", lane="ms", **entry)
        self.verdict(payload, True, f"report from {cid} verified: {entry['reason']}", "report")
        return True
