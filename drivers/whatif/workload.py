"""Pattern workloads in the model: the paper's communication patterns as SimPy processes.

The same rules as the measured pattern engine (:mod:`drivers.patterns.engine` and
:mod:`drivers.patterns.devices`), so a prediction and a ``safelab pattern run`` answer the
same question: events on the pattern's schedule (``periodic``, ``poisson`` seeded as the
profile says, ``batch``), one device that serves them in order (an event that finds it busy
waits, and the wait is in its latency, from the moment the event occurred to its
acknowledgement), and the remedies as toggles:

- ``keepalive``: the connection is kept; only the first event (and one after
  ``session_lifetime_s``) pays a handshake; ``resume``: later handshakes are resumed (no
  signature); ``token-session=fresh``: each signature opens the token (``total``);
- ``preauth``: a background process makes the next connection (and its signature) ready after
  each event, so the request path only waits for what is not ready yet; it shares the card
  with the request path (one ``simpy.Resource``), which is where contention shows;
- ``psk`` (CoAP): the DTLS-PSK path, no signature; HTTPS+JWT: a JWT signed per request,
  per batch (``jwt-batch``) or cached for ``jwt-ttl`` seconds (renewed in the background
  with ``jwt-refresh``/``preauth``).

Not modelled (said in the prediction's notes): the ``bulk`` workload, card faults (outages,
SIM errors and their retries, ``backoff``), and ``nodelay``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from typing import Any

import simpy

from drivers.errors import SafeLabError
from drivers.patterns.profile import PatternProfile, load_pattern
from drivers.patterns.toggles import Toggles, split_assignments
from drivers.whatif.calibration import Calibration
from drivers.whatif.engine import (
    Handshake,
    Prediction,
    Scenario,
    _provenance,
    handshake,
    resolve_link,
)
from drivers.whatif.tokens import TokenModel, token_model

_PROTOCOL = {"mqtt": "mqtt", "https": "https", "https-jwt": "https", "coap": "coap"}


def pattern_setup(scenario: Scenario) -> tuple[PatternProfile, Toggles]:
    """The scenario's pattern with its ``--set`` parameters and toggles applied."""
    if scenario.pattern is None:
        raise SafeLabError("no pattern in the scenario", "give --pattern NAME")
    profile = load_pattern(scenario.pattern)
    toggles = Toggles()
    overrides: dict[str, str] = {}
    for name, value in scenario.toggles:
        if name.replace("_", "-") in Toggles().as_dict():
            toggles = toggles.set(name.replace("_", "-"), value)
        else:
            overrides[name] = value
    if overrides:
        profile = profile.with_overrides(overrides)
    if profile.workload == "bulk":
        raise SafeLabError(
            f"the {profile.name} pattern (bulk transfer) is not in the model yet",
            "measure it with `safelab pattern run bulk-transfer`",
        )
    return profile, toggles


def parse_toggles(text: str | list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``'keepalive=on,resume=on'`` into the scenario's ``toggles``."""
    return tuple(split_assignments(list(text) if not isinstance(text, str) else text))


def _arrivals(profile: PatternProfile, n: int) -> list[float]:
    """Event times in ms, as :mod:`drivers.patterns.engine` schedules them."""
    if profile.workload == "poisson":
        rng = random.Random(int(profile.param("seed", 13)))
        mean = float(profile.param("mean_interval_s", 1.0)) * 1000
        gap = lambda: rng.expovariate(1.0 / mean)  # noqa: E731
    else:
        period = float(profile.param("period_s", 1.0)) * 1000
        gap = lambda: period  # noqa: E731
    times, t = [], 0.0
    for _ in range(n):
        t += gap()
        times.append(t)
    return times


class _Device:
    """The device's state in the simulation: its connection, ticket, JWT cache, preauth."""

    def __init__(
        self,
        env: simpy.Environment,
        card: simpy.Resource,
        rng: random.Random,
        profile: PatternProfile,
        toggles: Toggles,
        paths: dict[str, Handshake],
        token: TokenModel,
    ) -> None:
        self.env, self.card, self.rng = env, card, rng
        self.profile, self.toggles, self.paths, self.token = profile, toggles, paths, token
        self.busy = [0.0]
        self.connected_at: float | None = None
        self.ticket = False
        self.jwt_until = -1.0
        self.ready: simpy.Event | None = None
        self.signatures = 0
        self.handshakes = 0

    # -- pieces ------------------------------------------------------------------------------
    def _handshake(self) -> Generator[simpy.Event, Any, None]:
        path = (
            "resumed" if self.toggles.resume and self.ticket and "resumed" in self.paths else "full"
        )
        hs = self.paths[path]
        self.handshakes += 1
        self.signatures += hs.path.signatures
        yield self.env.process(hs.run(self.env, self.card, self.rng, self.busy))
        self.ticket = True
        self.connected_at = self.env.now

    def _sign_jwt(self) -> Generator[simpy.Event, Any, None]:
        with self.card.request() as request:
            yield request
            took = self.token.sample(self.rng)
            self.busy[0] += took
            self.signatures += 1
            yield self.env.timeout(took)

    def _connection_fresh(self) -> bool:
        lifetime = float(self.profile.param("session_lifetime_s", 0.0)) * 1000
        if self.connected_at is None:
            return False
        return not lifetime or self.env.now - self.connected_at <= lifetime

    def _background(self) -> Generator[simpy.Event, Any, None]:
        yield self.env.process(self._handshake())

    # -- one event ---------------------------------------------------------------------------
    def operate(self) -> Generator[simpy.Event, Any, None]:
        toggles, profile = self.toggles, self.profile
        coap = profile.transport == "coap"
        if coap:  # a DTLS session per operation, no resumption (libcoap 4.3.1)
            hs = self.paths["psk" if toggles.psk else "full"]
            self.signatures += hs.path.signatures
            yield self.env.process(hs.run(self.env, self.card, self.rng, self.busy))
            return
        included = 0  # a measured HTTPS handshake trial includes its first request
        if toggles.preauth and self.ready is not None:
            yield self.ready  # the background connection, if not ready yet
        elif not (toggles.keepalive and self._connection_fresh()):
            yield self.env.process(self._handshake())
            included = int(profile.transport in ("https", "https-jwt"))
        requests = int(profile.param("batch_size", 1)) if profile.workload == "batch" else 1
        ttl = toggles.jwt_ttl * 1000
        for i in range(requests):
            if profile.transport == "https-jwt":
                if ttl > 0:
                    if self.env.now >= self.jwt_until:
                        yield self.env.process(self._sign_jwt())
                        self.jwt_until = self.env.now + ttl
                elif not (toggles.jwt_batch and i):
                    yield self.env.process(self._sign_jwt())
            if i >= included:
                yield self.env.process(self._request())
        self._after()

    def _request(self) -> Generator[simpy.Event, Any, None]:
        hs = self.paths["request"]
        yield self.env.process(hs.run(self.env, self.card, self.rng, self.busy))

    def _after(self) -> None:
        if not self.toggles.keepalive:
            self.connected_at = None
        if self.toggles.preauth and self.profile.transport != "coap":
            self.ready = self.env.process(self._background())


def predict_pattern(scenario: Scenario, calibration: Calibration) -> Prediction:
    """A pattern's events through the model: latencies, deadline misses, card utilisation."""
    profile, toggles = pattern_setup(scenario)
    protocol = _PROTOCOL[profile.transport]
    session = toggles.token_session
    token = token_model(
        scenario.token,
        calibration,
        protocol=protocol,
        alg=scenario.alg,
        session=session,
        speed=scenario.speed,
    )
    link = resolve_link(scenario.link)
    paths = {
        "full": handshake(
            "coap" if protocol == "coap" else protocol, "full", token, link, calibration
        )
    }
    if protocol in ("mqtt", "https"):
        paths["resumed"] = handshake(protocol, "resumed", token, link, calibration)
        request = "keepalive" if protocol == "https" else f"publish-qos{profile.param('qos', 1)}"
        paths["request"] = handshake(protocol, request, token, link, calibration)
    else:
        paths["psk"] = handshake("coap-psk", "full", token, link, calibration)
    rng = random.Random(scenario.seed)
    horizon = scenario.horizon or scenario.n
    arrivals = _arrivals(profile, horizon)
    latencies: list[float] = []
    busy = elapsed = 0.0
    # a horizon shorter than n: the same first events again and again (as a validation of
    # that many events sees them), card times, jitter and losses drawn afresh each time
    for _ in range(max(1, math.ceil(scenario.n / horizon))):
        env = simpy.Environment()
        card = simpy.Resource(env, capacity=1)
        device = _Device(env, card, rng, profile, toggles, paths, token)
        latencies += _run_events(env, device, arrivals, toggles, profile)
        busy += device.busy[0]
        elapsed += env.now
    deadline = scenario.deadline_ms if scenario.deadline_ms is not None else profile.budget_ms
    provenance = _provenance(paths["full"], calibration, link)
    provenance["pattern"] = (
        f"{profile.name} ({profile.workload} over {profile.transport}, budget "
        f"{profile.budget_ms:g} ms; profiles/patterns/{profile.name}.toml), toggles "
        f"{toggles.label}"
    )
    notes = [
        "not modelled: card faults and retries (backoff), bulk transfer, nodelay",
    ]
    if "resumed" in paths:
        notes.append("a resumed handshake's loopback cost is taken as the full one's")
    if scenario.horizon:
        notes.append(f"the pattern's first {horizon} events, simulated again and again")
    return Prediction(
        scenario,
        tuple(latencies),
        busy / elapsed if elapsed else 0.0,
        deadline,
        paths["full"].round_trips,
        provenance,
        tuple(notes),
        busy,
        elapsed,
    )


def _run_events(
    env: simpy.Environment,
    device: _Device,
    arrivals: list[float],
    toggles: Toggles,
    profile: PatternProfile,
) -> list[float]:
    """One pass over ``arrivals``: their latencies. With preauth the device boots
    authenticated and the schedule starts after that, as the pattern engine waits for it."""
    queue: simpy.Store = simpy.Store(env)
    latencies: list[float] = []
    start = [0.0]

    def source() -> Generator[simpy.Event, Any, None]:
        if toggles.preauth and profile.transport != "coap":
            device.ready = env.process(device._background())
            yield device.ready
        start[0] = env.now
        for at in arrivals:
            yield env.timeout(start[0] + at - env.now)
            yield queue.put(start[0] + at)

    def serve() -> Generator[simpy.Event, Any, None]:
        for _ in arrivals:
            at = yield queue.get()
            yield env.process(device.operate())
            latencies.append(env.now - at)

    env.process(source())
    done = env.process(serve())
    env.run(until=done)
    return latencies
