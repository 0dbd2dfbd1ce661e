"""The sensor (MQTT client): handshake with the broker gateway, encrypted and signed DATA,
retransmission until a signed ACK, reports to the management server.

Its signing key is a :class:`drivers.ssdtf.signing.TokenSigner`, so with an IoT SAFE card
(emulated or real) every RESP and DATA signature is a card operation and its latency shows in
the trace (``sign_ms`` in the verdicts). The sensor holds exactly: its key pair (in the token),
the broker's pinned public key, the registrar's public key (checks its enrolment record) and
the key owner's PRE public key (what it encrypts to; the management server's in models 1, 3).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from drivers.errors import SafeLabError
from drivers.ssdtf import binding, wire
from drivers.ssdtf import config as topics
from drivers.ssdtf.brokers import sensor_password
from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.endpoint import Endpoint
from drivers.ssdtf.pre import PlainBackend, UmbralBackend
from drivers.ssdtf.replay import now_ms, ts_ok
from drivers.ssdtf.roles.base import Role, key_view, pre_view, signature_problem, verify_record
from drivers.ssdtf.signing import PublicKeyRef, TokenSigner
from drivers.ssdtf.trace import KeyView, Trace
from drivers.ssdtf.wire import Alg, MsgType, Status, T


class HandshakeFailed(SafeLabError):
    """The sensor did not reach READY (it says why; it has disconnected and reported)."""


@dataclass
class Pending:
    seq: int
    envelope: bytes
    digest: bytes
    attempts: int
    due: float
    sent_at: float = 0.0
    """When it was first published (``time.monotonic``): the ACK's round trip."""


INITIAL_WINDOW = 4
"""Readings a sensor may have unacknowledged right after connecting (see :meth:`Sensor.send`)."""
MAX_RTO_S = 60.0


@dataclass
class Enrolment:
    """What the registrar gives a sensor, signed: broker pin, key owner's PRE key."""

    body: bytes
    signature: bytes
    registrar: PublicKeyRef


class Sensor(Role):
    def __init__(
        self,
        cid: str,
        signer: TokenSigner,
        enrolment: Enrolment,
        pre: UmbralBackend | PlainBackend,
        cfg: FlowConfig,
        trace: Trace,
        report_oob: Callable[[bytes, str], object],
        *,
        clock_offset_s: float = 0.0,
        answer_challenge: bool = True,
        force_plain: bool = False,
        broker_secret: str = "",
    ) -> None:
        super().__init__(cid, trace)
        self.cid = cid
        self.signer = signer
        self.pre = pre
        self.cfg = cfg
        self.report_oob = report_oob
        self.clock_offset_s = clock_offset_s
        self.answer_challenge = answer_challenge
        self.force_plain = force_plain
        self.broker_secret = broker_secret
        record = verify_record(enrolment.registrar, enrolment.body, enrolment.signature)
        self.broker_pin = PublicKeyRef(
            Alg(record["broker_alg"]), bytes.fromhex(record["pk_b"]), "B"
        )
        self.broker_id = record["broker_id"]
        self.enc_key = bytes.fromhex(record["enc_key"]) if record.get("enc_key") else None
        self.enc_owner = record.get("enc_owner", "")
        self.hold(
            KeyView(
                f"sk_D[{cid}]",
                "signing private",
                "ES256",
                signer.public().fingerprint(),
                f"in token {signer.token.info.uri}",
            )
        )
        enrolled = "enrolment installed in process (simulated factory provisioning)"
        self.hold(key_view("pk_B", "public (pinned)", self.broker_pin, enrolled))
        self.hold(
            key_view(
                f"pk_{enrolment.registrar.owner}",
                "public (registrar)",
                enrolment.registrar,
                enrolled,
            )
        )
        if self.enc_key is not None:
            self.hold(pre_view(f"pk_{self.enc_owner}.pre", "pre public (encrypt to)", self.enc_key))
        self.seq = 0
        self.state = "new"
        self.failure = ""
        self.sid = b""
        self.nd = b""
        self.nb = b""
        self._chal_seen = False
        self._ready = threading.Event()
        self._done = threading.Event()
        self.pending: dict[int, Pending] = {}
        self.acked: list[int] = []
        self.acked_digests: dict[int, bytes] = {}
        self.reported: list[int] = []
        self.sign_ms: list[float] = []
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        """Notified whenever a reading leaves :attr:`pending` (``cfg.max_pending``)."""
        self.window = float(min(INITIAL_WINDOW, cfg.max_pending) if cfg.max_pending else 0)
        """How many readings may wait for their ACK now (0: no limit); see :meth:`send`."""
        self.srtt: float | None = None
        """Smoothed ACK round trip in s (RFC 6298), from readings ACKed at the first attempt."""
        self.rttvar = 0.0
        self.resends = 0
        self.endpoint: Endpoint | None = None
        self._resender: threading.Thread | None = None
        self._stop = threading.Event()

    # --- connection and handshake -------------------------------------------------
    def connect(self, host: str, port: int) -> None:
        """CONNECT with a fresh nonce as user name, run the handshake; READY or raise."""
        self.nd = os.urandom(16)
        self._chal_seen = False
        self._ready.clear()
        self._done.clear()
        self.state = "connecting"
        self.failure = ""
        # The seed's CONNECT: user name = hex(Nd), password = the SSDTF/1 marker (here
        # followed by the device's broker secret, so nobody else can take its client ID). On
        # brokers without SSDTF admission the user name is the client ID (Mosquitto binds the
        # two) and Nd travels in the HELLO only.
        username = self.nd.hex() if self.cfg.broker == "embedded" else self.cid
        password = sensor_password(self.broker_secret) if self.broker_secret else "SSDTF/1"
        endpoint = Endpoint(
            self.cid, host, port, username=username, password=password, clean_session=True
        )
        self.endpoint = endpoint
        endpoint.on(topics.auth_down(self.cid), self.guarded("handshake", self._on_down))
        endpoint.on(topics.ack_topic(self.cid), self.guarded("ack", self._on_ack))
        endpoint.on_error = self.on_internal_error
        endpoint.on_dropped = self.on_dropped
        endpoint.on_closed = self._on_closed
        endpoint.connect(self.cfg.connect_timeout_s)
        endpoint.subscribe(
            [(topics.auth_down(self.cid), 1), (topics.ack_topic(self.cid), 1)],
            self.cfg.connect_timeout_s,
        )
        self.state = "pending"
        hello = wire.encode(MsgType.HELLO, {T.CID: self.cid.encode(), T.ND: self.nd})
        endpoint.publish(topics.auth_up(self.cid), hello, qos=1)
        self._done.wait(self.cfg.auth_deadline_s + self.cfg.connect_timeout_s)
        if self.state != "ready":
            reason = self.failure or "no answer from the broker gateway before the deadline"
            if self.state != "failed":
                self._fail(None, reason, report=False)
            raise HandshakeFailed(f"{self.cid}: handshake failed: {reason}", "see the trace")
        if self._resender is None:
            self._resender = threading.Thread(
                target=self._resend_loop, name=f"{self.cid}-resend", daemon=True
            )
            self._resender.start()

    def _on_closed(self) -> None:
        if self.state in ("pending", "ready"):
            self.state = "closed"
            self.failure = self.failure or "connection closed by the broker side"
            self.trace.note(f"{self.cid}: connection closed", lane=self.cid)
            self._done.set()

    def _on_down(self, topic: str, payload: bytes, msg: Any) -> None:
        try:
            env = wire.decode(payload)
        except wire.WireError as error:
            # unsigned garbage proves nothing about the broker: a drop, not a failed handshake
            # (else anyone who can inject a packet could end a session)
            self.verdict(payload, False, f"malformed: {error.problem}; dropped", "handshake")
            return
        if self.state != "pending" and env.type in (MsgType.CHAL, MsgType.OK):
            self.verdict(
                payload,
                False,
                f"{env.type.name} outside a pending handshake ignored (replayed?)",
                "handshake",
            )
            return
        if env.type == MsgType.CHAL:
            self._on_chal(topic, payload, env)
        elif env.type == MsgType.OK:
            self._on_ok(topic, payload, env)
        else:
            self.verdict(
                payload, False, f"unexpected {env.type.name} on the auth topic", "handshake"
            )

    def _check_broker_sig(self, topic: str, env: wire.Envelope) -> str:
        problem = signature_problem(self.broker_pin, topic, env, "broker")
        if problem:
            return problem
        if env.text(T.BROKER_ID) != self.broker_id:
            return "broker ID differs from the pinned one"
        return ""

    def _on_chal(self, topic: str, payload: bytes, env: wire.Envelope) -> None:
        if self._chal_seen:
            self.verdict(
                payload, False, "second challenge ignored (nonce Nd is single-use)", "handshake"
            )
            return
        self._chal_seen = True
        problem = self._check_broker_sig(topic, env)
        if not problem and env.get(T.ND) != self.nd:
            problem = "Nd echo mismatch: the challenge is not for this connection (replayed CHAL)"
        if not problem and env.text(T.CID) != self.cid:
            problem = "challenge for another client ID"
        if not problem and not ts_ok(env.int(T.TS), self.cfg.ts_window_s):
            problem = "challenge timestamp outside the window"
        if problem:
            self._fail(payload, problem)
            return
        self.nb = env.get(T.NB)
        self.verdict(payload, True, "broker signature valid, Nd echoed", "handshake")
        if not self.answer_challenge:
            self.trace.note(f"{self.cid}: withholds its answer (slow-loris)", lane=self.cid)
            return
        delay = float(cast(float, self.cfg.extras.get("resp_delay_s", 0.0)))
        if delay:
            time.sleep(delay)
        fields = {
            T.CID: self.cid.encode(),
            T.ND: self.nd,
            T.NB: self.nb,
            T.KID: self.signer.public().kid,
            T.ALG: bytes([self.signer.alg]),
            T.BROKER_ID: self.broker_id.encode(),
            T.HASH: hashlib.sha256(payload).digest(),
        }
        up = topics.auth_up(self.cid)
        resp = wire.encode(MsgType.RESP, fields, flags=1, sign=self._sign, topic=up)
        assert self.endpoint is not None
        self.endpoint.publish(up, resp, qos=1)

    def _on_ok(self, topic: str, payload: bytes, env: wire.Envelope) -> None:
        problem = self._check_broker_sig(topic, env)
        expected = session_id(self.nd, self.nb, self.cid)
        if not problem and env.get(T.SID) != expected:
            problem = "session ID differs from H(Nd, Nb, cid)"
        if problem:
            self._fail(payload, problem)
            return
        self.sid = expected
        self.state = "ready"
        self.hold(KeyView(f"sid[{self.cid}]", "session", "", expected.hex(), "not secret"))
        self.verdict(
            payload, True, "handshake complete: broker authenticated, session READY", "handshake"
        )
        self._done.set()

    def _fail(self, payload: bytes | None, reason: str, report: bool = True) -> None:
        self.state = "failed"
        self.failure = reason
        self.verdict(payload, False, reason, "handshake")
        if self.endpoint is not None:
            self.endpoint.stop()  # DISCONNECT and close
        if report:
            self.report_oob(self._report(0, payload or b"", Status.BAD_SIGNATURE, reason), "")
        self._done.set()

    def _sign(self, tbs: bytes) -> bytes:
        signature = self.signer.sign(tbs)
        self.sign_ms.append(self.signer.last_sign_ms)
        return signature

    # --- data path ---------------------------------------------------------------
    def rto_s(self) -> float:
        """How long to wait for a reading's ACK before re-sending it: the measured round trip
        plus four deviations (RFC 6298), never less than ``cfg.ack_timeout_s``. A fixed
        timeout re-sent readings that were only queued behind others (a demo of 2 x 200
        readings re-sent 252 of them, all refused as duplicates by the gateway)."""
        if self.srtt is None:
            return self.cfg.ack_timeout_s
        return max(self.cfg.ack_timeout_s, min(MAX_RTO_S, self.srtt + 4 * self.rttvar))

    def _sample_rtt(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def send(self, reading: bytes) -> int:
        """Encrypt, sign and publish one reading; keep it until a signed ACK arrives.

        Flow control, as TCP does it: at most :attr:`window` readings wait for their ACK.
        The window starts at ``INITIAL_WINDOW``, grows by about one per round trip (1/window
        per reading ACKed at its first attempt) up to ``cfg.max_pending``, and halves when a
        reading has to be re-sent (additive increase, multiplicative decrease); the
        re-send timeout follows the measured ACK round trip (:meth:`rto_s`). So a sensor
        faster than the pipeline neither floods the broker's queues nor re-sends readings
        that are merely queued."""
        if self.state != "ready" or self.endpoint is None:
            raise HandshakeFailed(f"{self.cid} is not READY ({self.state})", "connect first")
        with self._room:
            while self.window and len(self.pending) >= int(self.window):  # wait for ACKs
                if self.state != "ready" or self._stop.is_set():
                    raise HandshakeFailed(
                        f"{self.cid} closed while waiting for ACKs ({self.state})", "connect again"
                    )
                self._room.wait(0.1)
            self.seq += 1
            seq = self.seq
        fields = {
            T.CID: self.cid.encode(),
            T.SID: self.sid,
            T.SEQ: wire.u64(seq),
            T.TS: wire.u64(now_ms(self.clock_offset_s)),
            T.KID: self.signer.public().kid,
            T.ALG: bytes([self.signer.alg]),
        }
        flags = 1 | (wire.FLAG_RETAIN if self.cfg.retain else 0)
        if (
            isinstance(self.pre, UmbralBackend)
            and self.enc_key is not None
            and not self.force_plain
        ):
            r = os.urandom(binding.BIND_LEN)  # binds the plaintext to this sender
            sealed = binding.seal_plaintext(self.cid, r, reading)
            capsule, ct = self.pre.encrypt(self.enc_key, sealed)
            fields[T.CAPSULE] = capsule
            fields[T.CT] = ct
            fields[T.BIND] = r
        else:
            flags |= wire.FLAG_PLAIN
            fields[T.CT] = reading
        topic = topics.data_topic(self.cid)
        envelope = wire.encode(MsgType.DATA, fields, flags=flags, sign=self._sign, topic=topic)
        digest = hashlib.sha256(envelope).digest()
        with self._lock:
            now = time.monotonic()
            self.pending[seq] = Pending(seq, envelope, digest, 1, now + self.rto_s(), now)
        self.endpoint.publish(topic, envelope, qos=1, retain=self.cfg.retain)
        return seq

    def _on_ack(self, topic: str, payload: bytes, msg: Any) -> None:
        try:
            env = wire.decode(payload)
            if env.type != MsgType.ACK:
                raise wire.MsgTypeError(env.type.name)
        except wire.WireError as error:
            self.verdict(payload, False, f"malformed ACK: {error.problem}", "ack")
            return
        problem = self._check_broker_sig(topic, env)
        if not problem and not ts_ok(env.int(T.TS), self.cfg.ts_window_s):
            problem = "ACK timestamp outside the window (held back or replayed)"
        seq = env.int(T.SEQ)
        with self._lock:
            item = self.pending.get(seq)
            done = self.acked_digests.get(seq)
        if not problem and item is None and done == env.get(T.HASH):
            self.verdict(
                payload, True, f"repeated ACK for seq={seq} (already discarded)", "ack", benign=True
            )
            return
        if not problem and (item is None or env.get(T.HASH) != item.digest):
            problem = "ACK for an envelope this sensor is not waiting for (hash differs)"
        if not problem and env.get(T.SID) != self.sid:
            problem = "ACK from another session"
        if problem:
            self.verdict(payload, False, f"{problem}; message kept for re-sending", "ack")
            return
        assert item is not None  # else a problem above
        status = Status(env.int(T.STATUS))
        if status in (Status.OK, Status.DUPLICATE):
            with self._lock:
                self.pending.pop(seq, None)
                if item.attempts == 1:  # Karn: the ACK of a re-sent reading times nothing
                    self._sample_rtt(time.monotonic() - item.sent_at)
                    if self.window:  # additive increase: about one more per round trip
                        grown = self.window + 1 / self.window
                        self.window = min(float(self.cfg.max_pending), grown)
                self._room.notify_all()
                self.acked.append(seq)
                self.acked_digests[seq] = item.digest
            self.verdict(
                payload, True, f"signed ACK seq={seq} ({status.name}); message discarded", "ack"
            )
        else:
            with self._lock:
                item.due = time.monotonic()
            self.verdict(
                payload, False, f"gateway refused seq={seq}: {status.name}; re-sending", "ack"
            )

    def _resend_loop(self) -> None:
        while not self._stop.wait(0.05):
            now = time.monotonic()
            with self._lock:
                due = [p for p in self.pending.values() if p.due <= now]
            for item in due:
                self._resend(item, now)

    def _resend(self, item: Pending, now: float) -> None:
        if item.attempts >= self.cfg.max_attempts:
            with self._lock:
                self.pending.pop(item.seq, None)
                self._room.notify_all()
                self.reported.append(item.seq)
            reason = f"no valid ACK after {item.attempts} attempts"
            report = self._report(item.seq, item.envelope, Status.BAD_SIGNATURE, reason)
            self.trace.note(
                f"{self.cid}: reports seq={item.seq} to the management server", lane=self.cid
            )
            if self.state == "ready" and self.endpoint is not None:
                self.endpoint.publish(topics.report_topic(self.cid), report, qos=1)
            else:
                self.report_oob(report, topics.report_topic(self.cid))
            return
        item.attempts += 1
        item.due = now + self.rto_s() * self.cfg.backoff ** (item.attempts - 1)
        with self._lock:
            self.resends += 1
            if self.window:
                self.window = max(1.0, self.window / 2)
        if self.state == "ready" and self.endpoint is not None:
            self.trace.note(
                f"{self.cid}: re-sends seq={item.seq} (attempt {item.attempts})", lane=self.cid
            )
            self.endpoint.publish(
                topics.data_topic(self.cid), item.envelope, qos=1, retain=self.cfg.retain
            )

    def _report(self, seq: int, envelope: bytes, status: Status, reason: str) -> bytes:
        fields = {
            T.CID: self.cid.encode(),
            T.SEQ: wire.u64(seq),
            T.TS: wire.u64(now_ms(self.clock_offset_s)),
            T.HASH: hashlib.sha256(envelope).digest(),
            T.STATUS: bytes([status]),
            T.REASON: reason.encode()[:200],
            T.KID: self.signer.public().kid,
            T.ALG: bytes([self.signer.alg]),
        }
        if self.sid:
            fields[T.SID] = self.sid
        return wire.encode(
            MsgType.REPORT, fields, flags=1, sign=self._sign, topic=topics.report_topic(self.cid)
        )

    def wait_settled(self, timeout: float) -> bool:
        """Until nothing is pending (all ACKed or reported) or ``timeout``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self.pending:
                    return True
            time.sleep(0.02)
        return False

    def disconnect(self) -> None:
        if self.sid:
            self.drop(f"sid[{self.cid}]")
        self.sid = b""
        if self.endpoint is not None:
            self.endpoint.stop()
        self.state = "closed"

    def close(self) -> None:
        """Disconnect and release the signing key's token session."""
        self._stop.set()
        self.disconnect()
        self.signer.close()


def session_id(nd: bytes, nb: bytes, cid: str) -> bytes:
    return hashlib.sha256(b"SSDTF/1 sid" + nd + nb + cid.encode()).digest()[:16]
