"""What a link does to one flight, as numbers: the same rules the link proxy applies.

Why the proxy's rules and not a textbook TCP model: the predictions are validated against runs
through :mod:`drivers.links` (proxy mode by default), so the model must charge what that link
charges. Delay and jitter per crossing (uniform within ±jitter, never below 0), serialisation
of the flight's bytes plus per-packet headers at ``rate``, and:

- **TCP loss, modelled** (as the proxy models it): each segment draws its losses; the worst
  segment's retransmission-timeout back-off, ``(RTT + 200 ms) x (2^losses - 1)``, delays the
  flight. A lost SYN or SYN-ACK costs the initial RTO of 1 s, doubling.
- **UDP loss**: a flight with a lost datagram is sent again when the sender's timer fires:
  DTLS (OpenSSL) starts at 1 s, CoAP's confirmable requests at ACK_TIMEOUT 2 s (x a random
  1..1.5, RFC 7252 4.8), OpenVPN's control channel at 2 s (``--tls-timeout``); each doubles.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from drivers.links.proxy import MSS, RTO_MIN, SYN_RTO, TCP_OVERHEAD, UDP_OVERHEAD
from drivers.links.spec import DirectionSpec, LinkSpec
from drivers.whatif.flights import Flight, FlightPath

DTLS_TIMER_S = 1.0
COAP_ACK_TIMEOUT_S = 2.0
OPENVPN_TLS_TIMEOUT_S = 2.0
MAX_TRIES = 6
UDP_PAYLOAD = 1400
"""Bytes per datagram before a flight is split (DTLS and OpenVPN fragment near the MTU)."""


@dataclass(frozen=True)
class LinkModel:
    """A :class:`~drivers.links.spec.LinkSpec` as per-flight costs (seconds)."""

    spec: LinkSpec

    @property
    def rtt_s(self) -> float:
        return self.spec.rtt

    def _crossing(self, direction: DirectionSpec, rng: random.Random) -> float:
        if not direction.jitter:
            return direction.delay
        return max(0.0, direction.delay + rng.uniform(-direction.jitter, direction.jitter))

    def connect(self, rng: random.Random) -> float:
        """The TCP connect round trip (SYN, SYN-ACK; the ACK rides with the first data)."""
        total = 0.0
        for direction in (self.spec.up, self.spec.down):
            total += self._crossing(direction, rng)
            lost = _losses(direction.loss, rng)
            total += SYN_RTO * (2**lost - 1)
        return total

    def flight(
        self, flight: Flight, path: FlightPath, size: int, rng: random.Random, writes: int = 1
    ) -> float:
        """Seconds from the flight leaving its sender to the last byte at the receiver.

        ``writes``: how many separate writes (TCP chunks, datagrams) the sender makes of it;
        the link keeps them in order and each draws its own jitter, so with jitter the flight
        arrives with the latest of ``writes`` draws.
        """
        direction = self.spec.up if flight.direction == "up" else self.spec.down
        tcp = path.transport == "tcp"
        unit = MSS if tcp else UDP_PAYLOAD
        packets = max(1, math.ceil(size / unit))
        overhead = TCP_OVERHEAD if tcp else UDP_OVERHEAD
        crossing = max(self._crossing(direction, rng) for _ in range(max(1, writes)))
        total = crossing + direction.serialisation(size + packets * overhead)
        if direction.loss > 0:
            total += self._loss_penalty(direction, path, flight, packets, rng)
        return total

    def _loss_penalty(
        self,
        direction: DirectionSpec,
        path: FlightPath,
        flight: Flight,
        packets: int,
        rng: random.Random,
    ) -> float:
        if path.transport == "tcp":
            rto = RTO_MIN + self.spec.rtt
            worst = max(_losses(direction.loss, rng) for _ in range(packets))
            return rto * (2**worst - 1)
        # UDP: the whole flight again after the sender's timer, while any datagram is lost
        p_flight = 1.0 - (1.0 - direction.loss) ** packets
        tries = 0
        while tries < MAX_TRIES and rng.random() < p_flight:
            tries += 1
        if not tries:
            return 0.0
        timer = _udp_timer(path, flight, rng)
        return timer * (2**tries - 1)


def _losses(p: float, rng: random.Random) -> int:
    lost = 0
    while p > 0 and lost < MAX_TRIES and rng.random() < p:
        lost += 1
    return lost


def _udp_timer(path: FlightPath, flight: Flight, rng: random.Random) -> float:
    if path.protocol == "vpn":
        return OPENVPN_TLS_TIMEOUT_S
    if "CoAP" in flight.label:
        return COAP_ACK_TIMEOUT_S * rng.uniform(1.0, 1.5)
    return DTLS_TIMER_S


def loss_label(spec: LinkSpec | None, transport: str) -> str:
    """``none``, ``real`` (UDP through the proxy) or ``modelled`` (TCP), as the links say."""
    if spec is None or not spec.has_loss:
        return "none"
    return "modelled" if transport == "tcp" else "real"
