"""The workload loop: events on the pattern's schedule, each delivered through the device,
its request-path latency measured from the moment it occurred to its acknowledgement.

Schedules: ``periodic`` and ``bulk`` (an event, or a transfer, every ``period_s``),
``poisson`` (exponential gaps of mean ``mean_interval_s``, seeded), ``batch`` (every
``period_s`` one operation of ``batch_size`` requests). An event that finds the device still
busy waits, and that wait is in its latency (the paper's request path starts when the event
occurs, not when the client gets to it).

Errors: a card error (SIM access) or a network error fails the attempt; the operation is
retried until ``give_up_s`` after the event. ``backoff=on`` spaces the retries by exponential
back-off with full jitter (base 50 ms, cap 2 s); ``backoff=off`` retries at once -- the retry
storm the paper warns about. Every attempt is counted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.cards.errors import CardError
from drivers.errors import SafeLabError, TokenError
from drivers.patterns.devices import Device, OpResult
from drivers.patterns.faults import CardCounters, WatchedToken
from drivers.patterns.metrics import PatternSummary, summarise
from drivers.patterns.profile import PatternProfile
from drivers.patterns.toggles import ToggleBoard

BULK_TRANSPORTS = ("mqtt", "https", "coap")
"""Where a bulk transfer runs: chunked MQTT PUBLISHes, an HTTPS ``Range`` download, or a
CoAP block-wise (Block2) download."""

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


@dataclass(frozen=True)
class OpSample:
    """One event as stored: latency and what happened on its way."""

    index: int
    latency_ns: int
    ok: bool
    missed: bool
    attempts: int
    n_sign: int
    result: OpResult
    flip: int
    toggles: str
    units: int = 0
    """Messages, requests or chunks sent for this event (retransmissions included)."""

    def as_sample(self) -> tuple[int, int, dict[str, int]]:
        r = self.result
        return (
            self.index,
            self.latency_ns,
            {
                "auth": r.auth_ns,
                "n_sign": self.n_sign,
                "attempts": self.attempts,
                "connected": int(r.connected),
                "resumed": int(r.resumed),
                "reused": int(r.reused),
                "missed": int(self.missed),
                "failed": int(not self.ok),
                "flip": self.flip,
                "units": self.units,
            },
        )


@dataclass
class Workload:
    """Runs a pattern on a device until ``events`` or ``duration_s`` (whichever is given)."""

    profile: PatternProfile
    device: Device
    watch: WatchedToken
    board: ToggleBoard
    events: int | None = None
    duration_s: float | None = None
    outage: tuple[float, float] | None = None
    """Inject a card outage at (seconds after start, for seconds)."""
    reset_at: float | None = None
    """Reset the device's open connection (a middlebox or NAT drops it: TCP RST) this long
    after start; the peer keeps its state (session cache: a resumed reconnection)."""
    restart_at: float | None = None
    """Restart the real peer (its process stopped and started again on the same port) this
    long after start; ``restart`` does it (the run's peer), losing the peer's memory."""
    restart: Callable[[], None] | None = None
    restarts: int = 0
    injected: list[tuple[int, str]] = field(default_factory=list)
    """Faults injected live: (event index, kind)."""
    slow: tuple[float, float, float] | None = None
    """Slow card: at (seconds after start), for (seconds), each card access (delay_s) late."""
    stop: Callable[[], bool] = lambda: False
    on_op: Callable[[OpSample], None] = lambda s: None
    samples: list[OpSample] = field(default_factory=list)
    attempts: int = 0
    network_errors: int = 0
    auth_timeouts: int = 0
    marks: list[tuple[int, str, float, CardCounters]] = field(default_factory=list)
    """Where each toggle combination began: (flip number, toggles, monotonic time, card)."""

    def _gaps(self) -> Callable[[], float]:
        p = self.profile
        if p.workload == "poisson":
            rng = random.Random(int(p.param("seed", 13)))
            mean = float(p.param("mean_interval_s", 1.0))
            return lambda: rng.expovariate(1.0 / mean)
        period = float(p.param("period_s", 1.0))
        return lambda: period

    def run(self) -> PatternSummary:
        if not self.profile.runnable:
            raise SafeLabError(
                f"pattern {self.profile.name!r} is not runnable yet",
                "see `safelab pattern list` for the runnable patterns",
            )
        gap = self._gaps()
        size = int(self.profile.param("payload_bytes", 32))
        budget_ns = int(self.profile.budget_ms * 1e6)
        self.device.wait_prepared()
        start = time.monotonic()
        due = start + gap()
        faults = self._faults()
        index = 0
        while True:
            if self.events is not None and index >= self.events:
                break
            if self.duration_s is not None and due - start > self.duration_s:
                break
            if self.stop():
                break
            _due_faults(faults, time.monotonic() - start)
            if not self._wait_until(due):
                break
            _due_faults(faults, time.monotonic() - start)
            sample = self.one(index, due, size, budget_ns)
            self.samples.append(sample)
            self.on_op(sample)
            index += 1
            due += gap()
        return self.summary(time.monotonic() - start)

    def _wait_until(self, due: float) -> bool:
        """Sleep until ``due`` in short slices, so a stop (or a pause) is seen within 100 ms
        even between events minutes apart; False when stopped."""
        while (wait := due - time.monotonic()) > 0:
            time.sleep(min(wait, 0.1))
            if wait > 0.1 and self.stop():
                return False
        return True

    def _faults(self) -> list[tuple[float, Callable[[], None]]]:
        faults: list[tuple[float, Callable[[], None]]] = []
        if self.outage is not None:
            at, seconds = self.outage
            faults.append((at, lambda: self.watch.outage(seconds)))
        if self.reset_at is not None:
            faults.append((self.reset_at, self.device.reset))
        if self.restart_at is not None:
            if self.restart is None:
                raise SafeLabError(
                    "a peer restart was asked for but the workload has no peer to restart",
                    "give the workload the run's peer (PatternRun does)",
                )
            faults.append((self.restart_at, self._restart_peer))
        if self.slow is not None:
            at, seconds, delay = self.slow
            faults.append((at, lambda: self.watch.slowdown(seconds, delay)))
        return faults

    def _restart_peer(self) -> None:
        assert self.restart is not None
        self.restart()
        self.restarts += 1

    def _inject_asked(self, index: int) -> None:
        """Faults asked for live (the console's keys), injected before this event."""
        for kind, seconds in self.board.take_faults():
            if kind == "card-outage":
                self.watch.outage(seconds)
            elif kind == "reset":
                self.device.reset()
            elif self.restart is not None:
                self._restart_peer()
            else:
                continue
            self.injected.append((index, kind))

    def one(self, index: int, due: float, size: int, budget_ns: int) -> OpSample:
        self._inject_asked(index)
        toggles, flips = self.board.current()
        if toggles != self.device.toggles:
            self.device.apply(toggles)
        if not self.marks or self.marks[-1][0] != flips:
            self.marks.append((flips, toggles.label, time.monotonic(), self.watch.snapshot()))
        due_ns = time.perf_counter_ns() - int((time.monotonic() - due) * 1e9)
        give_up = due + float(self.profile.param("give_up_s", 30.0))
        auth_timeout_ns = int(float(self.profile.param("auth_timeout_s", 10.0)) * 1e9)
        before = self.watch.snapshot()
        units_before = self.device.units_sent
        attempts = 0
        result = OpResult()
        ok = False
        while True:
            attempts += 1
            self.attempts += 1
            try:
                result = self.device.operate(size)
                ok = True
                break
            except SafeLabError as exc:
                if not isinstance(exc, (CardError, TokenError)):
                    self.network_errors += 1
                if time.monotonic() >= give_up or self.stop():
                    break
                if toggles.backoff:
                    delay = random.uniform(
                        0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
                    )
                    time.sleep(min(delay, max(0.0, give_up - time.monotonic())))
        latency = (result.acked_ns if ok and result.acked_ns else time.perf_counter_ns()) - due_ns
        if not ok or result.auth_ns > auth_timeout_ns:
            self.auth_timeouts += 1
        after = self.watch.snapshot()
        n_sign = (after.signatures - after.signatures_background) - (
            before.signatures - before.signatures_background
        )
        return OpSample(
            index,
            latency,
            ok,
            ok and latency > budget_ns,
            attempts,
            n_sign,
            result,
            flips,
            toggles.label,
            self.device.units_sent - units_before,
        )

    def segments(self) -> tuple[Segment, ...]:
        """Before/after figures: one :class:`Segment` per toggle combination in force, in
        order (the console's A/B panel compares the last two)."""
        out = []
        now, card_now = time.monotonic(), self.watch.snapshot()
        for i, (flip, label, began, card) in enumerate(self.marks):
            ended, card_end = (
                (self.marks[i + 1][2], self.marks[i + 1][3])
                if i + 1 < len(self.marks)
                else (now, card_now)
            )
            events = [s for s in self.samples if s.flip == flip]
            out.append(segment(flip, label, events, ended - began, card, card_end))
        return tuple(out)

    def summary(self, elapsed_s: float) -> PatternSummary:
        good = [s for s in self.samples if s.ok]
        return summarise(
            [s.latency_ns for s in good],
            failed=len(self.samples) - len(good),
            missed=sum(s.missed for s in good),
            reused=sum(1 for s in good if not s.result.connected),
            attempts=self.attempts,
            network_errors=self.network_errors,
            auth_timeouts=self.auth_timeouts,
            card=self.watch.snapshot(),
            connections=self.device.connections,
            resumed=self.device.resumed_handshakes,
            elapsed_s=elapsed_s,
            units_sent=self.device.units_sent,
        )


@dataclass(frozen=True)
class Segment:
    """The events under one toggle combination: what the A/B panel shows side by side."""

    flip: int
    toggles: str
    events: int
    p50_ms: float
    p99_ms: float
    deadline_misses: int
    deadline_miss_rate: float
    signatures: int
    signatures_per_min: float
    card_busy_pct: float
    elapsed_s: float


def segment(
    flip: int,
    label: str,
    events: list[OpSample],
    elapsed_s: float,
    card: CardCounters,
    card_end: CardCounters,
) -> Segment:
    import numpy as np

    values = np.asarray([s.latency_ns for s in events if s.ok], dtype=float) / 1e6
    misses = sum(1 for s in events if s.missed or not s.ok)
    signatures = card_end.signatures - card.signatures
    busy_s = (card_end.busy_ns - card.busy_ns) / 1e9
    return Segment(
        flip,
        label,
        len(events),
        float(np.percentile(values, 50)) if values.size else float("nan"),
        float(np.percentile(values, 99)) if values.size else float("nan"),
        misses,
        misses / len(events) if events else 0.0,
        signatures,
        signatures * 60.0 / elapsed_s if elapsed_s > 0 else 0.0,
        100.0 * busy_s / elapsed_s if elapsed_s > 0 else 0.0,
        elapsed_s,
    )


def _due_faults(faults: list[tuple[float, Callable[[], None]]], elapsed: float) -> None:
    """Inject (once) every fault whose time has come."""
    for fault in [f for f in faults if f[0] <= elapsed]:
        faults.remove(fault)
        fault[1]()


def make_device(
    profile: PatternProfile, watch: WatchedToken, signer: Any, toggles: Any, peer: Any, pki: Any
) -> Device:
    """The device for the profile's transport against a running ``peer``."""
    from drivers.patterns.devices import CoapDevice, HttpsDevice, MqttDevice

    transport = profile.transport
    if profile.workload == "bulk" and transport not in BULK_TRANSPORTS:
        raise SafeLabError(
            f"bulk transfer does not run over {transport}",
            "use transport=mqtt (chunked PUBLISH), https (Range) or coap (block-wise)",
        )
    if transport == "coap":
        from drivers.protocols.base import Condition
        from drivers.protocols.experiment import LAB_PSK, make_client

        def make(psk: bool) -> Any:
            if psk:
                from drivers.protocols.coap_psk import CoapPskClient

                return CoapPskClient(signer, Condition(), peer.host, peer.port, LAB_PSK)
            return make_client("coap", signer, Condition(), peer, pki)

        coap = CoapDevice(watch, signer, toggles, make)
        if profile.workload == "bulk":
            if toggles.psk:
                raise SafeLabError(
                    "bulk transfer over CoAP runs with certificates here, not DTLS-PSK",
                    "drop psk=on for bulk-transfer",
                )
            coap.bulk = _block_download(profile, peer)
        return coap
    credentials = pki.client_cert_for_token(signer.token, selector=signer.key_selector)
    cert, ca = credentials.cert_path, pki.ca_path
    lifetime = float(profile.param("session_lifetime_s", 0.0))
    if transport == "vpn":
        from drivers.patterns.devices import VpnDevice

        vpn = VpnDevice(watch, signer, toggles, peer, credentials)
        vpn.session_lifetime_s = lifetime
        return vpn
    if transport == "mqtt":
        mqtt = MqttDevice(
            watch,
            signer,
            toggles,
            peer.host,
            peer.port,
            cert,
            ca,
            qos=int(profile.param("qos", 1)),
            keepalive_s=int(profile.param("mqtt_keepalive_s", 30)),
        )
        mqtt.session_lifetime_s = lifetime
        if profile.workload == "bulk":
            from drivers.patterns.devices import BulkPlan

            mqtt.bulk = BulkPlan(
                image_bytes=int(profile.param("image_kb", 1024)) * 1024,
                chunk_bytes=int(profile.param("chunk_kb", 64)) * 1024,
                resume=bool(profile.param("chunk_resume", 1)),
                chunk_auth=bool(profile.param("chunk_auth", 0)),
                cut_after=int(profile.param("cut_after_chunks", 0)),
            )
        return mqtt
    kid = None
    if transport == "https-jwt":
        kid = peer.register_jwt_key(signer.token.public_key(signer.key_selector))
    https = HttpsDevice(
        watch,
        signer,
        toggles,
        peer.host,
        peer.port,
        cert,
        ca,
        kid=kid,
        batch_size=int(profile.param("batch_size", 1)) if profile.workload == "batch" else 1,
    )
    https.session_lifetime_s = lifetime
    if profile.workload == "bulk":
        https.bulk = _range_download(profile, peer)
    return https


def _block_download(profile: PatternProfile, peer: Any) -> Any:
    """Publish a firmware image of ``image_kb`` on the CoAP peer; the device's download."""
    import hashlib
    import os

    from drivers.patterns.devices import BlockDownload

    image = os.urandom(int(profile.param("image_kb", 1024)) * 1024)
    return BlockDownload(
        path=peer.publish("image", image),
        size=len(image),
        sha256=hashlib.sha256(image).digest(),
        resume=bool(profile.param("chunk_resume", 1)),
        chunk_auth=bool(profile.param("chunk_auth", 0)),
        cut_after=int(profile.param("cut_after_chunks", 0)),
    )


def _range_download(profile: PatternProfile, peer: Any) -> Any:
    """Publish a firmware image of ``image_kb`` on the HTTPS peer; the device's download."""
    import hashlib
    import os

    from drivers.patterns.devices import RangeDownload

    publish = getattr(peer, "publish", None)
    if publish is None:
        raise SafeLabError(
            "the HTTPS peer here cannot serve a firmware image (the embedded fallback)",
            "install nginx for bulk transfer over HTTPS",
        )
    image = os.urandom(int(profile.param("image_kb", 1024)) * 1024)
    return RangeDownload(
        path=publish("image.bin", image),
        size=len(image),
        sha256=hashlib.sha256(image).digest(),
        unit_bytes=int(profile.param("chunk_kb", 64)) * 1024,
        resume=bool(profile.param("chunk_resume", 1)),
        chunk_auth=bool(profile.param("chunk_auth", 0)),
        cut_after=int(profile.param("cut_after_chunks", 0)),
    )


def peer_protocol(transport: str, psk: bool = False) -> str:
    """Which protocol's peer (:func:`drivers.protocols.experiment.peer_for`) a transport uses."""
    if transport == "coap":
        return "coap-psk" if psk else "coap"
    return {"mqtt": "mqtt", "https": "https", "https-jwt": "jwt", "vpn": "vpn"}[transport]
