"""A whole SSDTF system in one process: broker, tap, the five roles, keys per service model.

This is the API the CLI, the tests, the benchmark and the console's packet stepper share::

    dep = Deployment(FlowConfig(model=2, sensors=2, messages=3))
    result = dep.run_all()            # start, handshakes, readings, wait, stop
    dep.trace.packets / dep.trace.keys_at(i) / dep.trace.export_json(p) / export_pcap(p)

For the stepper (live mode), run it in the background and step the tap::

    run = FlowRun(FlowConfig(...).for_stepping())
    run.start()
    record = run.stepper.wait_pending()    # the packet about to be forwarded
    run.stepper.step()                     # forward it; run.stepper.run_to_end()

Service models (``docs/ssdtf.md`` has the key table):

1. the management server (MS) owns the data key, registers sensors, topics, destinations and
   issues the conversion keys;
2. the first data user owns the data key and registers everything (MQTT as a Service);
3. the MS, run by the device operator, owns the data key and registers sensors and topics;
   the data user registers its destinations and the conversion keys the MS issued for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from drivers.errors import SafeLabError
from drivers.ssdtf import config as topics
from drivers.ssdtf.brokers import BrokerPolicy, make_broker
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.fdlimit import raise_open_files_limit
from drivers.ssdtf.netloop import NetLoop
from drivers.ssdtf.pre import UmbralBackend, backend
from drivers.ssdtf.pseudonyms import MappingStore
from drivers.ssdtf.registry import Registrar
from drivers.ssdtf.roles.base import sign_record
from drivers.ssdtf.roles.datauser import DataUser
from drivers.ssdtf.roles.distribution import DistributionServer
from drivers.ssdtf.roles.gateway import Gateway
from drivers.ssdtf.roles.management import ManagementServer
from drivers.ssdtf.roles.sensor import Enrolment, HandshakeFailed, Sensor
from drivers.ssdtf.signing import Ed25519Signer, TokenSigner
from drivers.ssdtf.tap import Interceptor, Stepper, Tap
from drivers.ssdtf.trace import Trace
from drivers.ssdtf.wire import FieldMap, RegKind, T
from drivers.tokens.registry import open_token

BROKER_ID = "ssdtf-broker-1"

SIMULATED = [
    "conversion-key shares (kfrags) are handed to the gateway and the DS in process, standing "
    "for an encrypted provisioning channel; the destination registration that binds them "
    "(their SHA-256) travels over MQTT, signed, and each proxy refuses a share that differs",
    "a sensor's enrolment (pinned broker key, registrar key, data key) and its broker secret "
    "are installed in process, standing for factory provisioning",
    "the out-of-band REPORT channel (used after the broker failed authentication) is "
    "simulated by a direct call to the management server",
]
"""The shortcuts against the seed (issue 10, class 9), said wherever a run is shown: the CLI
output, the JSON result, and the key notes the stepper's key panel shows."""


@dataclass
class RunResult:
    """What a demo run did, for the CLI and the tests (no secrets, no plaintext)."""

    model: int
    broker: str
    pre: str
    sensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    packets: int = 0
    not_recorded: dict[str, int] = field(default_factory=dict)
    """Trace records past the trace's bound (counted, not kept: drivers/ssdtf/trace.py)."""
    elapsed_s: float = 0.0
    messages_per_s: float = 0.0
    ok: bool = False
    simulated: list[str] = field(default_factory=lambda: list(SIMULATED))

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Deployment:
    """Build with a config; :meth:`start`, :meth:`connect_sensors`, :meth:`send_readings`,
    :meth:`wait_delivered`, :meth:`stop` — or :meth:`run_all` for all of them."""

    def __init__(
        self,
        cfg: FlowConfig,
        *,
        trace: Trace | None = None,
        interceptor: Interceptor | None = None,
    ) -> None:
        if cfg.model not in (1, 2, 3):
            raise SafeLabError(f"service model {cfg.model} does not exist", "use 1, 2 or 3")
        if cfg.sensors < 1 or cfg.users < 1:
            raise SafeLabError("a deployment needs at least one sensor and one user", "")
        self.cfg = cfg
        self.trace = trace or Trace(f"ssdtf model {cfg.model}")
        self.net = NetLoop()
        self.user_names = [f"user-{i + 1}" for i in range(cfg.users)]
        # one credential and one client ID per role (least privilege, drivers/ssdtf/acl.py)
        services = ["gateway", "ds", "ms", *self.user_names]
        self.credentials = {name: secrets.token_hex(16) for name in services}
        self.token = self.credentials["gateway"]
        self.policy = BrokerPolicy(
            dict(self.credentials),
            {name: f"ssdtf-{name}" for name in services},
            registered=lambda cid: cid in self.gateway.devices,
            ready=lambda cid: self.gateway.is_ready(cid),
            on_deny=self._broker_denied,
            connect_deadline_s=cfg.connect_deadline_s,
            max_unconnected=cfg.max_unconnected,
        )
        self.pre = backend(cfg.pre)
        self.store = MappingStore()
        self.broker = make_broker(cfg.broker, self.net, self.policy)
        self.tap: Tap | None = None
        if cfg.capture:
            self.tap = Tap(
                ("127.0.0.1", 0),
                self.trace,
                stepping=cfg.stepping,
                interceptor=interceptor,
                connect_deadline_s=cfg.connect_deadline_s + 1.0,  # the broker's verdict first
                max_unconnected=2 * cfg.max_unconnected,  # the broker's bound (and verdict) first
            )
        self._keys_dir = tempfile.TemporaryDirectory(prefix="safelab-ssdtf-keys-")
        self.sensors: dict[str, Sensor] = {}
        self.users: dict[str, DataUser] = {}
        self.host = "127.0.0.1"
        self.port = 0
        self.started = False
        self._t_start = 0.0
        self._regs: list[tuple[Registrar, RegKind, FieldMap]] = []
        """Registrations not yet published (before :meth:`start`, the roles are offline)."""
        try:
            self._build_roles()
        except BaseException:
            self.net.stop()  # a bad token URI must not leave the loop thread and store open
            self.store.close()
            self._keys_dir.cleanup()
            raise

    @property
    def stepper(self) -> Stepper | None:
        return self.tap.stepper if self.tap is not None else None

    # --- keys and registrations, per service model ---------------------------------
    def _build_roles(self) -> None:
        cfg, trace, pre = self.cfg, self.trace, self.pre
        self.sk_b = Ed25519Signer("B")
        self.sk_ds = Ed25519Signer("DS")
        self.sk_ms = Ed25519Signer("MS")
        user_signers = {n: Ed25519Signer(f"U[{n}]") for n in self.user_names}
        umbral = pre if isinstance(pre, UmbralBackend) else None
        ms_pre = umbral.keygen("MS") if umbral and cfg.model in (1, 3) else None
        user_pre = {n: umbral.keygen(f"U[{n}]") if umbral else None for n in self.user_names}
        connect_nonces = self.policy.connect_nonces if cfg.broker == "embedded" else None
        creds = self.credentials
        self.gateway = Gateway(
            self.sk_b, BROKER_ID, pre, cfg, trace, creds["gateway"], connect_nonces
        )
        # Mosquitto binds client ID = user name, so a take-over would close the gateway's own
        # connection: there "closing" a sensor is dropping its session (nothing from it counts)
        self.gateway.can_take_over = cfg.broker != "mosquitto"
        self.ds = DistributionServer(
            self.sk_ds, self.sk_b.public(), pre, cfg, trace, creds["ds"], self.store
        )
        self.ms = ManagementServer(self.sk_ms, ms_pre, cfg, trace, creds["ms"])
        for name in self.user_names:
            self.users[name] = DataUser(
                name,
                user_signers[name],
                user_pre[name],
                self.sk_ds.public(),
                pre,
                cfg,
                trace,
                creds[name],
            )
        first = self.user_names[0]
        if cfg.model == 2:
            self.device_registrar = user_signers[first]
            self.dest_registrar = user_signers[first]
            self.owner_name, self.owner_keys = f"U[{first}]", user_pre[first]
        else:
            self.device_registrar = self.sk_ms
            self.dest_registrar = self.sk_ms if cfg.model == 1 else user_signers[first]
            self.owner_name, self.owner_keys = "MS", ms_pre
        self.device_reg = Registrar(
            "ms" if cfg.model != 2 else first, self.device_registrar.public()
        )
        self.dest_reg = Registrar("ms" if cfg.model == 1 else first, self.dest_registrar.public())
        services = {*self.policy.client_ids.values(), *self.credentials}
        self.ms.set_registrar("devices", self.device_reg.name, self.device_reg.key, services)
        self.ms.set_registrar("destinations", self.dest_reg.name, self.dest_reg.key, services)
        for role in (self.gateway, self.ds):
            role.pin_registry(self.sk_ms.public())
            role.pin_registrar(self.device_reg.key, "devices", self.device_reg.name)
            role.pin_registrar(self.dest_reg.key, "destinations", self.dest_reg.name)
        if self.owner_keys is not None:
            owner = (self.owner_name, self.owner_keys.public, self.owner_keys.verifying)
            self.gateway.set_owner(*owner)
            self.ds.set_owner(*owner)
            for user in self.users.values():
                user.set_owner(*owner)
        for name in self.user_names:
            self.register_destination(name)
        for index in range(cfg.sensors):
            self.add_sensor(f"sensor-{index + 1}", cfg.token if index == 0 else None)

    def register_destination(self, name: str) -> None:
        """Conversion keys for ``name`` (issued by the key owner) registered at gateway and DS
        by the destinations' registrar of the model."""
        user = self.users[name]
        kfrags = [b"", b""]
        if isinstance(self.pre, UmbralBackend) and self.owner_keys and user.pre_keys:
            kfrags = self.pre.conversion_keys(self.owner_keys, user.pre_keys.public)
            self.trace.note(
                f"{self.owner_name} issues conversion keys for {name}",
                lane="ms" if self.owner_name == "MS" else self.user_names[0],
            )
        self.gateway.offer_kfrag(name, kfrags[0])  # simulated: the shares' hand-over
        self.ds.offer_kfrag(name, kfrags[1])
        signing = user.signer.public()
        fields: FieldMap = {
            T.SUB: name.encode(),
            T.PUBKEY: signing.public_bytes,
            T.KEYALG: bytes([signing.alg]),
            T.HASH: hashlib.sha256(kfrags[0]).digest(),
            T.HASH2: hashlib.sha256(kfrags[1]).digest(),
        }
        if user.pre_keys:
            fields[T.PREKEY] = user.pre_keys.public
        if user.wrap_keys:
            fields[T.WRAPKEY] = user.wrap_keys.public
        self._register(self.dest_reg, RegKind.DESTINATION, fields)

    def revoke_destination(self, name: str) -> None:
        """A signed revocation over MQTT (REG kind REVOKE); returns once gateway and DS have
        deleted the conversion-key shares."""
        self._register(self.dest_reg, RegKind.REVOKE, {T.SUB: name.encode()})
        self.trace.note(f"{name} revoked: conversion keys deleted at gateway and DS")

    # --- registrations over MQTT (drivers/ssdtf/registry.py) ---------------------------
    def _register(self, registrar: Registrar, kind: RegKind, fields: FieldMap) -> None:
        self._regs.append((registrar, kind, fields))
        if self.started:
            self.flush_registrations()

    def registrar_role(self, name: str) -> ManagementServer | DataUser:
        return self.ms if name == "ms" else self.users[name]

    def flush_registrations(self, timeout: float | None = None) -> None:
        """Publish the queued registrations (each by its registrar, over the broker) and wait
        until the gateway and the DS have applied them (their own verdicts decide)."""
        queued, self._regs = self._regs, []
        for registrar, kind, fields in queued:
            self.registrar_role(registrar.name).register(kind, fields)
        end = time.monotonic() + (timeout or self.cfg.connect_timeout_s)
        while not all(self._applied(kind, fields) for _, kind, fields in queued):
            if time.monotonic() > end:
                refused = [v.reason for v in self.trace.rejections() if v.stage == "registration"]
                raise SafeLabError(
                    "registrations over MQTT did not complete"
                    + (f": {refused[-1]}" if refused else ""),
                    "check the broker and the registrar of the service model",
                )
            time.sleep(0.01)

    def _applied(self, kind: RegKind, fields: FieldMap) -> bool:
        if kind == RegKind.DEVICE:
            ref = self.gateway.devices.get(fields[T.CID].decode())
            return ref is not None and ref.public_bytes == fields[T.PUBKEY]
        if kind == RegKind.TOPIC:
            return self.gateway.topics.get(fields[T.TOPIC].decode()) == fields[T.CID].decode()
        name = fields[T.SUB].decode()
        gateway, ds = self.gateway.destinations.get(name), self.ds.recipients.get(name)
        if kind == RegKind.REVOKE:
            return gateway is None and ds is None
        return (
            gateway is not None
            and ds is not None
            and hashlib.sha256(gateway.kfrag).digest() == fields[T.HASH]
            and hashlib.sha256(ds.kfrag).digest() == fields[T.HASH2]
        )

    def _new_key_uri(self, cid: str) -> str:
        path = Path(self._keys_dir.name) / f"{cid}.pem"
        key = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return f"software:key={path}"

    def add_sensor(
        self, cid: str, token_uri: str | None = None, *, register: bool = True, **options: Any
    ) -> Sensor:
        """A sensor whose key lives in ``token_uri`` (a fresh software key if None)."""
        pin = self.cfg.token_pin if token_uri and token_uri == self.cfg.token else None
        lent = self.cfg.token_lent if token_uri and token_uri == self.cfg.token else None
        token = lent if lent is not None else open_token(token_uri or self._new_key_uri(cid))
        signer = TokenSigner(cid, token, pin, owns_token=lent is None)
        if register:
            self.register_device(cid, signer)
        enc = self.owner_keys.public.hex() if self.owner_keys else ""
        body, sig = sign_record(
            self.device_registrar,
            "enrolment",
            {
                "cid": cid,
                "pk_b": self.sk_b.public().public_bytes.hex(),
                "broker_alg": int(self.sk_b.public().alg),
                "broker_id": BROKER_ID,
                "enc_key": enc,
                "enc_owner": self.owner_name,
            },
        )
        if cid in self.policy.client_ids or cid in self.credentials:
            raise SafeLabError(f"client ID {cid!r} belongs to a service", "choose another")
        # the device's broker credential (re-used by an attacker given the same client ID:
        # the attacks assume a stolen broker password, never the device key)
        secret = self.policy.sensor_secrets.setdefault(cid, secrets.token_hex(16))
        sensor = Sensor(
            cid,
            signer,
            Enrolment(body, sig, self.device_registrar.public()),
            self.pre,
            self.cfg,
            self.trace,
            self._report_out_of_band,
            broker_secret=secret,
            **options,
        )
        if self.started and hasattr(self.broker, "refresh"):
            self.broker.refresh()
        self.sensors[cid] = sensor
        return sensor

    def register_device(self, cid: str, signer: TokenSigner) -> None:
        """The device and its uplink topic, registered by the devices' registrar."""
        public = signer.public()
        fields: FieldMap = {
            T.CID: cid.encode(),
            T.PUBKEY: public.public_bytes,
            T.KEYALG: bytes([public.alg]),
        }
        self._register(self.device_reg, RegKind.DEVICE, fields)
        topic = {T.CID: cid.encode(), T.TOPIC: topics.data_topic(cid).encode()}
        self._register(self.device_reg, RegKind.TOPIC, topic)

    def _report_out_of_band(self, payload: bytes, topic: str) -> bool:
        self.trace.note(
            "REPORT out of band (simulated: a direct call to the management server)", lane="ms"
        )
        return self.ms.receive_report(payload, topic)

    def _broker_denied(self, cid: str, why: str) -> None:
        self.trace.verdict("broker", None, False, why, "policy", cid=cid)

    # --- life cycle ----------------------------------------------------------------
    def start(self) -> None:
        self._t_start = time.perf_counter()
        raise_open_files_limit()  # before the broker, so Mosquitto inherits it too
        self.broker.start()
        self.host, self.port = self.broker.host, self.broker.port
        if self.tap is not None:
            self.tap.upstream = (self.broker.host, self.broker.port)
            self.port = self.net.run(self.tap.start())
            self.host = "127.0.0.1"
        self.trace.note(
            f"broker {self.broker.kind} at {self.broker.host}:{self.broker.port}"
            + (f", tap at {self.port}" if self.tap else "")
        )
        if not self.pre.available:
            self.trace.note(f"NO CONFIDENTIALITY: {self.pre.reason}")
        self.started = True
        self.gateway.start(self.host, self.port)
        self.ds.start(self.host, self.port)
        self.ms.start(self.host, self.port)
        for user in self.users.values():
            user.start(self.host, self.port)
        self.flush_registrations()

    def connect_sensors(self) -> dict[str, float]:
        """Handshake every sensor; returns handshake time per sensor in ms."""
        times = {}
        for cid, sensor in self.sensors.items():
            start = time.perf_counter()
            sensor.connect(self.host, self.port)
            times[cid] = (time.perf_counter() - start) * 1000
        self.handshake_ms = times
        return times

    def reading(self, cid: str, index: int) -> bytes:
        return f"{self.cfg.reading_prefix}:{cid}:{index}:t={20 + index % 7}.5C".encode()

    def send_readings(self, messages: int | None = None) -> int:
        count = 0
        for index in range(messages if messages is not None else self.cfg.messages):
            for cid, sensor in self.sensors.items():
                if sensor.state == "ready":
                    sensor.send(self.reading(cid, index))
                    count += 1
        return count

    def wait_delivered(self, per_user: int, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        ok = all(s.wait_settled(max(0.0, end - time.monotonic())) for s in self.sensors.values())
        # Once the sensors are settled, deliveries keep arriving while the pipeline drains; a
        # user that makes no progress for a second will not get more (refused messages).
        for user in self.users.values():
            last = -1
            while len(user.readings) != last and time.monotonic() < end:
                last = len(user.readings)
                if user.wait_for(per_user, min(1.0, max(0.0, end - time.monotonic()))):
                    break
            ok = len(user.readings) >= per_user and ok
        return ok

    def result(self) -> RunResult:
        elapsed = time.perf_counter() - self._t_start if self._t_start else 0.0
        delivered = sum(len(u.readings) for u in self.users.values())
        result = RunResult(self.cfg.model, self.broker.kind, self.pre.name)
        for cid, sensor in self.sensors.items():
            result.sensors[cid] = {
                "token": (
                    "software (fresh P-256 key)"
                    if self._keys_dir.name in sensor.signer.token.info.uri
                    else sensor.signer.token.info.uri
                ),
                "emulated": sensor.signer.token.info.emulated,
                "state": sensor.state,
                "failure": sensor.failure,
                "sent": sensor.seq,
                "acked": len(sensor.acked),
                "reported": len(sensor.reported),
                "handshake_ms": getattr(self, "handshake_ms", {}).get(cid),
                "sign_ms_median": statistics.median(sensor.sign_ms) if sensor.sign_ms else None,
            }
        for name, user in self.users.items():
            result.users[name] = {
                "received": len(user.readings),
                "external_ids": sorted({r.ext_id for r in user.readings}),
            }
        result.rejections = [
            {"role": v.role, "reason": v.reason, "stage": v.stage, "packet": v.packet}
            for v in self.trace.rejections()
        ]
        result.reports = list(self.ms.reports)
        result.packets = len(self.trace.packets)
        result.not_recorded = dict(self.trace.not_recorded)
        result.elapsed_s = elapsed
        result.messages_per_s = delivered / elapsed if elapsed else 0.0
        expected = self.cfg.messages * len(self.sensors)
        result.ok = all(len(u.readings) >= expected for u in self.users.values())
        return result

    def run_all(self, timeout: float = 20.0) -> RunResult:
        try:
            self.start()
            self.connect_sensors()
            self.send_readings()
            self.wait_delivered(self.cfg.messages * len(self.sensors), timeout)
            return self.result()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop everything; safe to call twice (an attack's ``finally`` may stop it again)."""
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        for sensor in self.sensors.values():
            sensor.close()
        for role in (*self.users.values(), self.ms, self.ds, self.gateway):
            role.stop()
        if self.tap is not None and self.tap.loop is not None:
            with contextlib.suppress(Exception):
                self.net.run(self.tap.stop(), timeout=5)
        if self.started:
            self.broker.stop()
        for sensor in self.sensors.values():
            sensor.signer.close()
        self.net.stop()
        self.store.close()
        self._keys_dir.cleanup()
        self.started = False


class FlowRun:
    """A deployment run in a background thread, for a UI that steps the packets."""

    def __init__(self, cfg: FlowConfig, interceptor: Interceptor | None = None) -> None:
        self.deployment = Deployment(cfg, interceptor=interceptor)
        self.trace = self.deployment.trace
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="ssdtf-flow", daemon=True)

    @property
    def stepper(self) -> Stepper | None:
        return self.deployment.stepper

    def start(self) -> FlowRun:
        self.thread.start()
        return self

    def _main(self) -> None:
        try:
            self.result = self.deployment.run_all(timeout=self.deployment.cfg.connect_timeout_s)
        except (SafeLabError, HandshakeFailed) as error:
            self.error = error

    def wait(self, timeout: float | None = None) -> RunResult | None:
        self.thread.join(timeout)
        return self.result

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()
