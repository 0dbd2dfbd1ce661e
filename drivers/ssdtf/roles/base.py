"""What every SSDTF role shares: its key inventory (shown per packet), verdicts, signed
registration records.

Key inventory: a role holds keys only through :meth:`Role.hold`, which also records a key
event in the trace, so the stepper's "keys per role" panel is the roles' real state and the
key-table test can assert that each role holds exactly what the seed's key table gives it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivers.errors import SafeLabError
from drivers.ssdtf import wire
from drivers.ssdtf.signing import PublicKeyRef, Signer

if TYPE_CHECKING:
    from drivers.ssdtf.registry import ProvisionCheck
from drivers.ssdtf.trace import KeyView, Trace, Verdict
from drivers.ssdtf.wire import T

Handler = Callable[[str, bytes, Any], None]

REGISTRATION_LABEL = b"SSDTF/1 register\x00"


class RegistrationError(SafeLabError):
    """A registration record whose signature does not verify under the pinned registrar key."""


def key_view(name: str, kind: str, ref: PublicKeyRef | None = None, note: str = "") -> KeyView:
    """A :class:`KeyView` for a signing key (its public half identifies it)."""
    if ref is None:
        return KeyView(name, kind, note=note)
    return KeyView(name, kind, ref.alg.name, ref.fingerprint(), note)


def pre_view(name: str, kind: str, public: bytes, note: str = "") -> KeyView:
    import hashlib

    return KeyView(name, kind, "umbral", hashlib.sha256(public).hexdigest()[:16], note)


def wrap_view(name: str, kind: str, public: bytes, note: str = "") -> KeyView:
    """A :class:`KeyView` for an X25519 re-wrap key (:mod:`drivers.ssdtf.rewrap`)."""
    import hashlib

    return KeyView(name, kind, "X25519", hashlib.sha256(public).hexdigest()[:16], note)


class Role:
    """A named participant with a key inventory and a trace to report to."""

    def __init__(self, name: str, trace: Trace) -> None:
        self.name = name
        self.trace = trace
        self.inventory: dict[str, KeyView] = {}

    def stop(self) -> None:
        """Close the role's broker connection and timers (each role with one overrides it)."""

    def hold(self, key: KeyView) -> None:
        self.inventory[key.name] = key
        self.trace.key(self.name, "add", key)

    def drop(self, name: str) -> None:
        key = self.inventory.pop(name, None)
        if key is not None:
            self.trace.key(self.name, "remove", key)

    def verdict(
        self, payload: bytes | None, ok: bool, reason: str, stage: str, **detail: Any
    ) -> Verdict:
        return self.trace.verdict(self.name, payload, ok, reason, stage, **detail)

    def guarded(self, stage: str, handler: Handler) -> Handler:
        """``handler`` as an MQTT callback that cannot die: any exception it raises becomes
        this role's verdict (a drop, with the reason) instead of ending the connection's reader
        thread, which would stop the role from receiving anything ever again (issue 10)."""

        def callback(topic: str, payload: bytes, msg: Any) -> None:
            try:
                handler(topic, payload, msg)
            except Exception as error:
                self.verdict(
                    payload,
                    False,
                    f"dropped: {describe_error(error)}",
                    stage,
                    error=type(error).__name__,
                )

        return callback

    def on_dropped(self, topic: str, reason: str) -> None:
        """For the role's MQTT connection: a message it dropped before any handler (too
        large to read) is this role's verdict, like any other refusal."""
        self.verdict(None, False, reason, "mqtt", topic=topic)

    def on_internal_error(self, what: str, error: BaseException) -> None:
        """For the role's scheduler and worker threads: an error there is a verdict too."""
        self.verdict(None, False, f"{what} failed: {describe_error(error)}", "internal")


def describe_error(error: BaseException) -> str:
    """One line naming what went wrong (never a traceback, never secret material)."""
    if isinstance(error, SafeLabError):
        return error.problem
    text = str(error).splitlines()[0][:160] if str(error) else ""
    return f"{type(error).__name__}{': ' + text if text else ''}"


def signature_problem(pin: PublicKeyRef | None, topic: str, env: wire.Envelope, who: str) -> str:
    """The one pinned-signature check every SSDTF receiver runs: "" when ``env`` is signed by
    ``pin`` (same key ID, the pinned algorithm, a valid signature over its TBS for
    ``topic``), else the reason naming ``who`` (the expected signer).

    Why one helper: it is security code that was written out three times in the roles; an
    ALG or KID check forgotten in one copy is a downgrade.
    """
    if pin is None:
        return f"{who}: no key registered"
    if env.get(T.ALG)[0] != pin.alg:
        return f"{who} signature invalid (ALG differs from the pinned key's algorithm: downgrade)"
    if env.get(T.KID) != pin.kid:
        return f"{who} signature invalid (key ID differs from the pinned key)"
    if not pin.verify(env.get(T.SIG), env.tbs(topic)):
        return f"{who} signature invalid"
    return ""


class ProxyRole(Role):
    """The two proxies (broker gateway, distribution server): they pin the registrars' keys
    and the key owner's public keys, and transform ciphertexts without ever decrypting."""

    registrars: dict[str, PublicKeyRef]
    owner_pre: bytes
    owner_verifying: bytes
    provision_check: ProvisionCheck
    offered: dict[str, bytes]
    """Conversion-key shares handed over in process (simulated), by destination; used only
    once a signed destination registration with the same SHA-256 arrives over MQTT."""

    def pin_registrar(self, ref: PublicKeyRef, what: str, name: str = "") -> None:
        from drivers.ssdtf.registry import Registrar

        self.registrars[what] = ref
        self.provision_check.registrars[what] = Registrar(name, ref)
        self.hold(key_view(f"pk_{ref.owner}", f"public (registrar of {what})", ref))

    def pin_registry(self, ref: PublicKeyRef) -> None:
        """The MS's public key: it signs the PROV messages that carry registrations."""
        self.provision_check.ms_key = ref
        self.hold(key_view("pk_MS", "public (registry: signs PROV)", ref))

    def offer_kfrag(self, name: str, kfrag: bytes) -> None:
        self.offered[name] = kfrag

    def _on_prov(self, topic: str, payload: bytes, msg: Any) -> None:
        problem, inner = self.provision_check.open(topic, payload)
        if inner is None:
            self.verdict(payload, False, f"registration refused: {problem}", "registration")
            return
        problem = self.apply_registration(inner)
        if problem:
            self.verdict(payload, False, f"registration refused: {problem}", "registration")
            return
        kind = wire.RegKind(inner.get(T.KIND)[0]).name.lower()
        who = inner.text(T.CID) if T.CID in inner.fields else inner.text(T.SUB)
        self.verdict(
            payload,
            True,
            f"registration applied ({kind} {who}): MS and registrar signatures valid",
            "registration",
        )

    def apply_registration(self, reg: wire.Envelope) -> str:
        """Use a verified registration; "" or why it cannot be used (each proxy's own)."""
        raise NotImplementedError

    def set_owner(self, owner: str, public: bytes, verifying: bytes) -> None:
        self.owner_pre = public
        self.owner_verifying = verifying
        self.hold(pre_view(f"pk_{owner}.pre", "pre public (key owner)", public))
        self.hold(pre_view(f"vk_{owner}.kfrag", "public (kfrag verifying)", verifying))


def sign_record(signer: Signer, kind: str, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """A registration (device, topic, destination, conversion key) signed by its registrar."""
    body = json.dumps({"kind": kind, **record}, sort_keys=True, separators=(",", ":")).encode()
    return body, signer.sign(REGISTRATION_LABEL + body)


def verify_record(registrar: PublicKeyRef, body: bytes, signature: bytes) -> dict[str, Any]:
    if not registrar.verify(signature, REGISTRATION_LABEL + body):
        raise RegistrationError(
            f"registration not signed by the pinned registrar {registrar.owner}",
            "only the registrar of this service model may register",
        )
    return json.loads(body)
