"""Registration over MQTT: REG messages to the management server, PROV messages from it.

The seed's registrar (the MS in models 1 and 3, the data user in model 2, and the data user for
its destinations in model 3) registers sensors, topics, destinations and conversion keys. Here
every registration is a signed SSDTF message through the broker, with the wire format's
strictness and the same protections as the data path:

1. the registrar publishes ``REG{TS, ND, KIND, <kind's fields>, KID, ALG, SIG}`` on
   ``ssdtf/v1/reg/{registrar}`` (the broker's ACL lets each principal write only its own
   registration topic; the topic is in the signed pseudo-header, domain label ``reg``);
2. the MS (:class:`Registry`) checks: strict decode, the sender is the model's registrar *for
   this kind*, its signature under the pinned key, TS within the window, the nonce ND unused,
   the subject's last registration older (a replay cannot undo a later revocation), and the
   ownership rules (a client ID or destination already registered to another key is not taken
   over; a topic is registered by its owner for its own device only). Its verdict is the MS's;
3. the MS records it and publishes ``PROV{TS, SUB=registrar, INNER=REG, KID, ALG, SIG_MS}`` on
   ``ssdtf/v1/prov/gateway`` (every kind) and ``ssdtf/v1/prov/ds`` (destinations and
   revocations); each proxy checks the MS's signature, TS, *and* the registrar's inner
   signature under its own pinned registrar key, and the inner nonce: the MS alone cannot
   register a device in model 2, and a replayed PROV is refused.

Still simulated (said in every output): the conversion-key shares themselves are handed to the
gateway and the DS in process (their SHA-256 is in the signed destination REG and each proxy
refuses a share that differs), and a sensor's enrolment (pinned keys) is installed in process
like a factory provisioning step.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from drivers.ssdtf import config as topics
from drivers.ssdtf import wire
from drivers.ssdtf.replay import DigestWindow, now_ms, ts_ok
from drivers.ssdtf.roles.base import signature_problem
from drivers.ssdtf.signing import PublicKeyRef, Signer
from drivers.ssdtf.wire import Alg, MsgType, RegKind, T

NONCES_KEPT = 4096
"""Recent registration nonces remembered (within the TS window); older REGs fail on TS and on
the subject's last-registration time."""

KIND_GROUP = {
    RegKind.DEVICE: "devices",
    RegKind.TOPIC: "devices",  # the seed: whoever registers sensors registers their topics
    RegKind.DESTINATION: "destinations",
    RegKind.REVOKE: "destinations",
}


def subject(env: wire.Envelope) -> str:
    """What a registration is about (one current registration per subject)."""
    kind = RegKind(env.get(T.KIND)[0])
    if kind == RegKind.DEVICE:
        return f"device:{env.text(T.CID)}"
    if kind == RegKind.TOPIC:
        return f"topic:{env.text(T.TOPIC)}"
    return f"destination:{env.text(T.SUB)}"


def build_reg(signer: Signer, registrar: str, kind: RegKind, fields: wire.FieldMap) -> bytes:
    """A signed REG from ``registrar`` (its topic is part of what is signed)."""
    public = signer.public()
    body = fields | {
        T.TS: wire.u64(now_ms()),
        T.ND: os.urandom(16),
        T.KIND: bytes([kind]),
        T.KID: public.kid,
        T.ALG: bytes([public.alg]),
    }
    return wire.encode(
        MsgType.REG, body, flags=1, sign=signer.sign, topic=topics.reg_topic(registrar)
    )


def key_of(env: wire.Envelope, owner: str) -> PublicKeyRef:
    return PublicKeyRef(Alg(env.get(T.KEYALG)[0]), env.get(T.PUBKEY), owner)


@dataclass
class Registrar:
    name: str
    """The principal (broker user name) whose ``reg/{name}`` topic it publishes on."""
    key: PublicKeyRef


@dataclass
class Entry:
    kind: RegKind
    owner: str
    ts: int
    key: PublicKeyRef | None = None
    cid: str = ""
    revoked: bool = False


@dataclass
class Registry:
    """The MS's registry and its rules; :meth:`judge` never writes state, :meth:`apply` does."""

    registrars: dict[str, Registrar] = field(default_factory=dict)
    """By kind group (``devices``, ``destinations``)."""
    service_ids: frozenset[str] = frozenset()
    """Client IDs and principals of the services: never registrable as a device."""
    window_s: float = 30.0
    entries: dict[str, Entry] = field(default_factory=dict)
    nonces: DigestWindow = field(default_factory=lambda: DigestWindow(NONCES_KEPT))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, tuple[str, str, str, bool]]:
        """The registry's content (for tests: an attack leaves it unchanged)."""
        with self.lock:
            return {
                name: (e.owner, e.key.fingerprint() if e.key else "", e.cid, e.revoked)
                for name, e in self.entries.items()
            }

    def judge(self, topic: str, env: wire.Envelope) -> str:
        """ "" if the REG on ``topic`` may be applied, else the reason (the MS's verdict)."""
        sender = topics.topic_part(topic, 1)
        kind = RegKind(env.get(T.KIND)[0])
        group = KIND_GROUP[kind]
        registrar = self.registrars.get(group)
        with self.lock:
            entry = self.entries.get(subject(env))
        if kind == RegKind.TOPIC and entry is not None and entry.owner != sender:
            name = env.text(T.TOPIC)
            return f"topic {name} is owned by {entry.owner}: {sender} does not own it"
        if registrar is None or registrar.name != sender:
            who = registrar.name if registrar else "nobody"
            return f"{sender} is not the registrar of {group} ({who} is)"
        problem = signature_problem(registrar.key, topic, env, f"registrar {sender}")
        if problem:
            return problem
        if not ts_ok(env.int(T.TS), self.window_s):
            return f"registration timestamp outside ±{self.window_s:g} s (stale or replayed)"
        if entry is not None and env.int(T.TS) <= entry.ts:
            return "registration older than the current one for this subject (replayed)"
        return self._ownership(kind, env, entry)

    def _ownership(self, kind: RegKind, env: wire.Envelope, entry: Entry | None) -> str:
        if kind == RegKind.DEVICE:
            cid = env.text(T.CID)
            if cid in self.service_ids or cid.startswith(("ssdtf-", "user-")):
                # user-N is the data users' namespace (their ACL rules and report keys)
                return f"client ID {cid} belongs to a service: not registrable as a device"
            taken = entry is not None and entry.key is not None
            if taken and entry.key.public_bytes != env.get(T.PUBKEY):  # type: ignore[union-attr]
                return f"{cid} is already registered to another key: identity not taken over"
        if kind == RegKind.TOPIC:
            cid = env.text(T.CID)
            device = self.entries.get(f"device:{cid}")
            if device is None:
                return f"topic for {cid}, which is not a registered device"
            if env.text(T.TOPIC) != topics.data_topic(cid):
                return f"topic {env.text(T.TOPIC)} is not {cid}'s: it does not own it"
        if kind == RegKind.DESTINATION:
            sub = env.text(T.SUB)
            if not sub.startswith("user-"):
                return f"destination {sub} is not a data user"
            live = entry is not None and not entry.revoked and entry.key is not None
            if live and entry.key.public_bytes != env.get(T.PUBKEY):  # type: ignore[union-attr]
                return f"{sub} is already registered to another key: identity not taken over"
        if kind == RegKind.REVOKE and (entry is None or entry.revoked):
            return f"{env.text(T.SUB)} is not a registered destination"
        return ""

    def fresh_nonce(self, env: wire.Envelope) -> bool:
        """Remember ND; False if seen before (checked last, so a refused REG burns nothing)."""
        return self.nonces.add(env.get(T.ND))

    def apply(self, topic: str, env: wire.Envelope) -> Entry:
        sender = topics.topic_part(topic, 1)
        kind = RegKind(env.get(T.KIND)[0])
        entry = Entry(kind, sender, env.int(T.TS))
        if kind in (RegKind.DEVICE, RegKind.DESTINATION):
            owner = env.text(T.CID) if kind == RegKind.DEVICE else env.text(T.SUB)
            entry.key = key_of(env, owner)
        if kind in (RegKind.DEVICE, RegKind.TOPIC):
            entry.cid = env.text(T.CID)
        if kind == RegKind.REVOKE:
            entry.revoked = True
        with self.lock:
            self.entries[subject(env)] = entry
        return entry


@dataclass
class ProvisionCheck:
    """What a proxy (gateway, DS) checks on a PROV before using the registration inside."""

    role: str
    ms_key: PublicKeyRef | None = None
    registrars: dict[str, Registrar] = field(default_factory=dict)
    window_s: float = 30.0
    nonces: DigestWindow = field(default_factory=lambda: DigestWindow(NONCES_KEPT))
    last: dict[str, int] = field(default_factory=dict)

    def open(self, topic: str, payload: bytes) -> tuple[str, wire.Envelope | None]:
        """(problem, inner REG): problem "" and the REG when every check holds."""
        try:
            env = wire.decode(payload)
            if env.type != MsgType.PROV:
                raise wire.MsgTypeError(f"{env.type.name} on a provisioning topic")
        except wire.WireError as error:
            return f"malformed provisioning: {error.problem}", None
        if topic != topics.prov_topic(self.role):
            return "provisioning for another role", None
        problem = signature_problem(self.ms_key, topic, env, "management server")
        if problem:
            return problem, None
        if not ts_ok(env.int(T.TS), self.window_s):
            return f"provisioning timestamp outside ±{self.window_s:g} s (replayed)", None
        try:
            inner = wire.decode(env.get(T.INNER))
            if inner.type != MsgType.REG:
                raise wire.MsgTypeError(f"{inner.type.name} inside PROV")
        except wire.WireError as error:
            return f"malformed registration inside PROV: {error.problem}", None
        sender = env.text(T.SUB)
        group = KIND_GROUP[RegKind(inner.get(T.KIND)[0])]
        registrar = self.registrars.get(group)
        if registrar is None or registrar.name != sender:
            return f"{sender} is not the registrar of {group}", None
        problem = signature_problem(registrar.key, topics.reg_topic(sender), inner, "registrar")
        if problem:
            return f"registration inside PROV: {problem}", None
        if inner.int(T.TS) <= self.last.get(subject(inner), 0):
            return "registration replayed (older than the current one)", None
        if not self.nonces.add(inner.get(T.ND)):
            return "registration replayed (nonce ND already used)", None
        self.last[subject(inner)] = inner.int(T.TS)
        return "", inner
