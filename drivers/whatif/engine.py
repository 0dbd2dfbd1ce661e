"""The discrete-event model: trials (or a pattern's events) through flights, link and token.

Why SimPy rather than sums of means: the questions are about tails and contention -- P99
under jitter and loss, deadline misses when events queue behind a slow handshake, the card
shared between a pattern's requests and a background pre-authentication. SimPy (a maintained
process-based DES library) runs each trial or event as a process; the card is a
``simpy.Resource`` of capacity 1 (a SIM signs one thing at a time), so waiting for it and its
utilisation come out of the simulation, not out of a formula.

One protocol trial (``_handshake``): the calibrated loopback cost of the path (client and
peer compute, sampled from the measured distribution: ``direct`` without a link, ``proxy``
with one), the TCP connect round trip, then every flight crossing the link
(:mod:`drivers.whatif.linkmodel`); the flight carrying the client's signature first holds the
card for one token signature (:mod:`drivers.whatif.tokens`). Trials follow each other as in a
measured run. Pattern workloads are in :mod:`drivers.whatif.workload`.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from drivers.errors import SafeLabError
from drivers.links.spec import LinkSpec, parse_link
from drivers.whatif.calibration import (
    PROBE_RTT_MS,
    Calibration,
    ProtocolCalibration,
    load_calibration,
)
from drivers.whatif.flights import FlightPath, flight_path
from drivers.whatif.linkmodel import LinkModel, loss_label
from drivers.whatif.tokens import TokenModel, token_model

P256_SIGNATURE = 72
P256_PUBLIC_KEY = 65
DEFAULT_TRIALS = 2000
DELAYED_ACK_S = 0.040
"""Linux's delayed-ACK timer (``TCP_DELACK_MAX`` 40 ms on loopback)."""


@dataclass(frozen=True)
class Scenario:
    """What to predict: a protocol handshake (or a pattern, see ``pattern``) on a token over a
    link, with an algorithm and the remedies' toggles."""

    protocol: str = "mqtt"
    token: str = "software:p256"
    link: str | None = None
    alg: str = "p256"
    resume: bool = False
    keepalive: bool = False
    session: str = "kept"
    """Token session between handshakes: ``kept`` (sign_only) or ``fresh`` (total)."""
    speed: float | None = None
    """A card's speed factor (overrides the spec's ``speed=``)."""
    pattern: str | None = None
    toggles: tuple[tuple[str, str], ...] = ()
    """Pattern toggles as ``(name, value)`` (``keepalive``, ``resume``, ``preauth``...)."""
    deadline_ms: float | None = None
    """Deadline for the miss rate; a pattern's budget when not given."""
    n: int = DEFAULT_TRIALS
    seed: int = 1
    horizon: int | None = None
    """Patterns: simulate the schedule's first ``horizon`` events, repeated until ``n``
    (what a measured run of that many events sees); ``None``: ``n`` events in a row."""

    def __post_init__(self) -> None:
        if self.horizon is not None and self.horizon < 1:
            raise SafeLabError("a pattern horizon needs at least one event", "give 1 or more")
        if self.n < 1:
            raise SafeLabError("a prediction needs at least one trial", "give n >= 1")
        if self.link:
            parse_link(self.link)
        if not self.pattern:
            flight_path(self.protocol, self.path)  # an unknown protocol or path: refused here
        if self.speed is not None and self.speed < 0:
            raise SafeLabError("card speed must be 0 or more", "e.g. speed=1 (real time)")

    @property
    def path(self) -> str:
        if self.keepalive:
            return "keepalive"
        return "resumed" if self.resume else "full"

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "token": self.token,
            "link": self.link,
            "alg": self.alg,
            "path": self.path,
            "session": self.session,
            "speed": self.speed,
            "pattern": self.pattern,
            "toggles": dict(self.toggles),
            "deadline_ms": self.deadline_ms,
            "n": self.n,
            "seed": self.seed,
            "horizon": self.horizon,
        }


@dataclass(frozen=True)
class Prediction:
    """A predicted latency distribution and what it was made from."""

    scenario: Scenario
    samples_ms: tuple[float, ...]
    card_utilisation: float
    deadline_ms: float | None
    round_trips: float
    provenance: dict[str, str]
    """Every input and where it came from (calibration file, card profile, link spec...)."""
    notes: tuple[str, ...] = ()
    card_busy_ms: float = 0.0
    simulated_ms: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        data = sorted(self.samples_ms)
        k = (len(data) - 1) * p / 100.0
        lo = int(k)
        hi = min(lo + 1, len(data) - 1)
        return data[lo] + (data[hi] - data[lo]) * (k - lo)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return sum(self.samples_ms) / len(self.samples_ms)

    @property
    def miss_rate(self) -> float | None:
        if self.deadline_ms is None:
            return None
        return sum(1 for s in self.samples_ms if s > self.deadline_ms) / len(self.samples_ms)

    def histogram(self, bins: int = 20) -> list[tuple[float, float, int]]:
        """``(low_ms, high_ms, count)`` bins between the 0.5th and 99.5th percentiles."""
        lo, hi = self.percentile(0.5), self.percentile(99.5)
        if hi <= lo:
            return [(lo, hi, len(self.samples_ms))]
        width = (hi - lo) / bins
        counts = [0] * bins
        for s in self.samples_ms:
            i = min(bins - 1, max(0, int((s - lo) / width)))
            counts[i] += 1
        return [(lo + i * width, lo + (i + 1) * width, c) for i, c in enumerate(counts)]

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.as_dict(),
            "n": len(self.samples_ms),
            "mean_ms": self.mean,
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "deadline_ms": self.deadline_ms,
            "miss_rate": self.miss_rate,
            "card_utilisation": self.card_utilisation,
            "round_trips": self.round_trips,
            "sizes": self.sizes,
            "provenance": self.provenance,
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------ one handshake


@dataclass
class Handshake:
    """Everything one protocol path needs to be simulated, resolved once per prediction."""

    path: FlightPath
    calibration: ProtocolCalibration
    token: TokenModel
    link: LinkModel | None
    sizes: tuple[int, ...]
    """Bytes of each flight, in order."""
    delay_scale: float
    """Measured / structural round trips where the peer's timers overlap turns (OpenVPN)."""
    probe_shift_ms: float = 0.0
    """How the loopback cost changes once the link has a delay (see :func:`probe_shift`)."""
    writes: tuple[int, ...] = ()
    """Writes per flight, in order (see :func:`_writes`); empty: one each."""

    @property
    def round_trips(self) -> float:
        return self.path.round_trips * self.delay_scale

    def shift_ms(self) -> float:
        """:attr:`probe_shift_ms` as it applies at this link's RTT: an added cost (the
        proxy's timers) at any delay; a loopback stall (negative) fades out by the 40 ms
        delayed-ACK timer, which the RTT then hides (an interpolation: calibration measures
        0 and the probe RTT only)."""
        if self.link is None or self.link.rtt_s <= 0:
            return 0.0
        if self.probe_shift_ms >= 0:
            return self.probe_shift_ms
        return self.probe_shift_ms * min(1.0, self.link.rtt_s / DELAYED_ACK_S)

    def base_ms(self, rng: random.Random) -> float:
        if self.path.path not in ("full", "resumed"):  # a request on a kept connection
            return max(0.3, self.calibration.ready_ms + min(0.0, self.probe_shift_ms))
        quantiles = self.calibration.proxy if self.link else self.calibration.direct
        return max(0.0, quantiles.sample(rng) + self.shift_ms())

    def run(
        self, env: simpy.Environment, card: simpy.Resource, rng: random.Random, busy: list[float]
    ) -> Generator[simpy.Event, Any, None]:
        """One trial as a SimPy process (times in ms)."""
        yield env.timeout(self.base_ms(rng))
        link = self.link
        if link is not None and self.path.tcp_connect:
            yield env.timeout(link.connect(rng) * 1000 * self.delay_scale)
        writes = self.writes or (1,) * len(self.path.flights)
        for flight, size, count in zip(self.path.flights, self.sizes, writes, strict=True):
            if flight.signs:
                with card.request() as request:
                    yield request
                    took = self.token.sample(rng)
                    busy[0] += took
                    yield env.timeout(took)
            if link is not None:
                crossing = link.flight(flight, self.path, size, rng, count)
                yield env.timeout(crossing * 1000 * self.delay_scale)


def _sizes(path: FlightPath, cal: ProtocolCalibration, token: TokenModel) -> tuple[int, ...]:
    """Flight sizes scaled to the bytes the link counted; the signing flight carries the
    algorithm's signature and public key instead of P-256's."""
    full = flight_path(path.protocol, "full")
    scale = {
        "up": cal.bytes_up / full.bytes("up") if cal.bytes_up and full.bytes("up") else 1.0,
        "down": cal.bytes_down / full.bytes("down")
        if cal.bytes_down and full.bytes("down")
        else 1.0,
    }
    sizes = []
    for flight in path.flights:
        size = flight.nominal_bytes * scale[flight.direction]
        if flight.signs:
            alg = token.algorithm
            size += (alg.signature_bytes - P256_SIGNATURE) + (
                alg.public_key_bytes - P256_PUBLIC_KEY
            )
        sizes.append(max(1, round(size)))
    return tuple(sizes)


def handshake(
    protocol: str,
    path: str,
    token: TokenModel,
    link: LinkSpec | None,
    calibration: Calibration,
) -> Handshake:
    flights = flight_path(protocol, path)
    cal = calibration.protocol(protocol)
    scale = 1.0
    if protocol == "vpn" and flights.round_trips:
        scale = max(0.0, cal.measured_round_trips) / flights.round_trips
    model = LinkModel(link) if link is not None else None
    full = flight_path(protocol, "full")
    return Handshake(
        flights,
        cal,
        token,
        model,
        _sizes(flights, cal, token),
        scale,
        probe_shift(full, cal, scale),
    )


def probe_shift(full: FlightPath, cal: ProtocolCalibration, scale: float) -> float:
    """The loopback cost at the calibration probe's RTT minus the one at 0 ms: the probe's
    median less the round trips it paid, less the proxy's median at ``rtt=0ms``. Positive
    for the proxy's timers under delay (a few 0.1 ms per crossing); negative for MQTT, whose
    40 ms delayed-ACK stall on loopback (paho does not set TCP_NODELAY) is hidden by any RTT
    above the delayed-ACK timer."""
    residual = cal.probe_median_ms - full.round_trips * scale * PROBE_RTT_MS
    return residual - cal.proxy.median


def _provenance(hs: Handshake, calibration: Calibration, link: LinkSpec | None) -> dict[str, str]:
    cal = hs.calibration
    structural = hs.path.round_trips
    rounds = (
        f"{structural} structural; measured {cal.measured_round_trips:.2f} at the calibration "
        "probe" + (" (used: OpenVPN's timers overlap turns)" if hs.delay_scale != 1.0 else "")
    )
    measured_at = calibration.provenance.get("measured_at", "?")
    return {
        "flights": f"{hs.path.protocol} {hs.path.path}: {len(hs.path.flights)} flights, "
        f"signature in '{next((f.label for f in hs.path.flights if f.signs), 'none')}'; "
        f"round trips {rounds} (drivers/whatif/flights.py)",
        "loopback": f"{'proxy rtt=0ms' if link else 'direct loopback'} cost measured with the "
        f"real peer ({calibration.provenance.get('peers', {}).get(cal.protocol, '?')}), "
        f"n={(cal.proxy if link else cal.direct).n}, {calibration.runs_text(cal.run_ids)}, "
        f"{calibration.source}, {measured_at}",
        "bytes": f"up {cal.bytes_up:.0f} B, down {cal.bytes_down:.0f} B per trial counted by "
        "the link in calibration",
        "token": hs.token.provenance,
        "algorithm": f"{hs.token.algorithm.name}: signature {hs.token.algorithm.signature_bytes}"
        f" B, public key {hs.token.algorithm.public_key_bytes} B ({hs.token.algorithm.source})",
        "link": (
            f"{link.describe() or 'rtt=0ms'} (proxy-mode rules: drivers/whatif/linkmodel.py; "
            f"loss {loss_label(link, hs.path.transport)})"
            if link is not None
            else "none (loopback)"
        ),
    }


def resolve_link(text: str | None) -> LinkSpec | None:
    return parse_link(text) if text else None


def predict(scenario: Scenario, calibration: Calibration | None = None) -> Prediction:
    """Predict ``scenario`` (a protocol handshake, or a pattern when ``scenario.pattern``)."""
    calibration = calibration or load_calibration()
    if scenario.pattern:
        from drivers.whatif.workload import predict_pattern

        return predict_pattern(scenario, calibration)
    protocol = scenario.protocol
    token = token_model(
        scenario.token,
        calibration,
        protocol=protocol,
        alg=scenario.alg,
        session=scenario.session,
        speed=scenario.speed,
    )
    link = resolve_link(scenario.link)
    hs = handshake(protocol, scenario.path, token, link, calibration)
    rng = random.Random(scenario.seed)
    env = simpy.Environment()
    card = simpy.Resource(env, capacity=1)
    busy = [0.0]
    latencies: list[float] = []

    def trials() -> Generator[simpy.Event, Any, None]:
        for _ in range(scenario.n):
            start = env.now
            yield env.process(hs.run(env, card, rng, busy))
            latencies.append(env.now - start)

    env.process(trials())
    env.run()
    notes = []
    if link is not None and link.has_loss:
        notes.append(f"loss on {hs.path.transport}: {loss_label(link, hs.path.transport)}")
    if token.algorithm.name != "p256":
        notes.append(
            "the real TLS stack here (OpenSSL 3.0) has no PQC: the algorithm is modelled, "
            "not measurable in a real handshake"
        )
    return Prediction(
        scenario,
        tuple(latencies),
        busy[0] / env.now if env.now else 0.0,
        scenario.deadline_ms,
        hs.round_trips,
        _provenance(hs, calibration, link),
        tuple(notes),
        busy[0],
        float(env.now),
        {
            f"{i + 1} {f.direction} {f.label}": s
            for i, (f, s) in enumerate(zip(hs.path.flights, hs.sizes, strict=True))
        },
    )
