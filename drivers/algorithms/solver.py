"""How fast must the card sign (or the link be) for a pattern to meet its budget at P99?

An analytical model of the pattern's request path (the event that waits for a full
handshake), solved for the one unknown asked about. Assumptions, each also listed in every
answer (``assumptions``):

1. The request path of an event that needs a full handshake is: the protocol's round trips
   (:data:`ROUND_TRIPS`) x the link's RTT + the host's own handshake work (the paper's
   Table 6 software-key column for that protocol, on loopback) + the card's signing APDUs
   (:mod:`drivers.algorithms.card_model`: compute + link, GET RESPONSE chaining) + a fresh
   card session's extra APDUs when ``token-session=fresh`` (the paper's Table 3 total minus
   sign_only, 201.2 ms) + the certificate flight's serialisation at the link's up rate
   (:mod:`drivers.algorithms.handshake`; its DTLS byte count is used for TLS too, whose
   record headers are a few bytes smaller).
2. P99 contains a handshake when more than 1 % of events need one: every event without
   ``keepalive`` (resumption keeps the round trips but drops the signature); one in
   ``session_events`` (default 100) with it; none with ``preauth`` (the handshake runs in the
   background). If P99 holds no signature, no card speed changes it: the answer says so.
3. At P99 a flight that loses a datagram with more than 1 % chance pays one retransmission
   timer (DTLS 1 s; TCP 200 ms + RTT, Linux's minimum RTO); jitter adds its full half-width
   per round trip; the card's heavy tail (paper-sim's SELECT tail, 4.2 %) counts at P99 only
   for fresh card sessions.

Answers are labelled ``model``; the measured side is ``safelab table7`` and ``safelab
pattern run``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from drivers.algorithms.card_model import sign_cost
from drivers.algorithms.handshake import DTLS_RTO_S, flight_over_link
from drivers.algorithms.registry import get_algorithm
from drivers.patterns.profile import load_pattern
from drivers.patterns.toggles import Toggles, parse_settings

ROUND_TRIPS = {"mqtt": 4, "https": 3, "https-jwt": 3, "coap": 4}
"""Full-handshake request path in RTTs: TCP + TLS 1.3 + the protocol's exchange (MQTT:
CONNECT and PUBLISH/PUBACK; HTTPS: the request); CoAP: DTLS cookie + 2 flights + CON/ACK."""
HOST_MS = {"mqtt": 59.0, "https": 17.0, "https-jwt": 17.0, "coap": 27.0}
"""The paper's Table 6 software-key connection times (loopback)."""
FRESH_SESSION_MS = 677.7 - 476.5
"""Paper Table 3: total minus sign_only means (open, login, find and their APDUs)."""
TCP_MIN_RTO_MS = 200.0


@dataclass(frozen=True)
class SolverAnswer:
    pattern: str
    budget_ms: float
    toggles: str
    algorithm: str
    profile: str
    link: str
    handshake_share: float
    signature_on_p99: bool
    parts_ms: dict[str, float]
    """The P99 request path's parts other than the card's signing compute."""
    sign_ms: float | None
    """Current on-card signing (compute incl. INIT/UPDATE), ``None`` if the card refuses."""
    p99_ms: float | None
    required_sign_ms: float | None
    """Largest on-card signing time that meets the budget (``None``: not on the path, or
    impossible: see ``answer``)."""
    speedup: float | None
    required_rate_kbps: float | None
    """Smallest up rate that meets the budget with the current card (``None``: not limited
    by rate or impossible)."""
    answer: str
    assumptions: tuple[str, ...] = field(default=())
    label: str = "model"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ASSUMPTIONS = (
    "request path = RTTs x round trips + host handshake work (paper Table 6 software) + card "
    "signing APDUs (compute + link) + fresh-session APDUs + certificate flight serialisation",
    "P99 contains a handshake when more than 1% of events need one",
    "a flight lost with >1% chance adds one retransmission timer at P99; jitter adds its "
    "half-width per round trip; the card tail counts only for fresh card sessions",
    "no PQC inside a real TLS here (system OpenSSL 3.0): PQC handshakes are modelled",
)


def _share(toggles: Toggles, session_events: int) -> float:
    if toggles.preauth:
        return 0.0
    if not toggles.keepalive:
        return 1.0
    return 1.0 / max(1, session_events)


def solve(
    pattern: str,
    *,
    algorithm: str = "p256",
    profile: str = "paper-sim",
    link: str | None = None,
    settings: tuple[str, ...] = (),
    session_events: int = 100,
) -> SolverAnswer:
    """Solve the pattern's P99 budget for the card's signing time (and the link's rate)."""
    from drivers.links import parse_link

    prof = load_pattern(pattern)
    toggles, params = parse_settings(settings)
    if params:
        prof = prof.with_overrides(params)
    alg = get_algorithm(algorithm)
    spec = parse_link(link) if link else None
    cost = sign_cost(alg, profile)
    share = _share(toggles, session_events)
    signature_path = share > 0.01 and not (toggles.resume and not toggles.keepalive)
    rtt_ms = (spec.rtt * 1e3) if spec else 0.0
    jitter_ms = (spec.up.jitter + spec.down.jitter) * 1e3 if spec else 0.0
    trips = ROUND_TRIPS.get(prof.transport, 3)
    parts: dict[str, float] = {}
    if share > 0.01:
        parts["round_trips"] = trips * (rtt_ms + jitter_ms)
        parts["host_handshake"] = HOST_MS.get(prof.transport, 20.0)
    else:
        parts["round_trips"] = 1 * (rtt_ms + jitter_ms)  # the event on a kept connection
    flight = flight_over_link(alg.name, link)
    if signature_path:
        parts["card_link"] = cost.chained_link_ms
        if toggles.token_session == "fresh":
            parts["card_fresh_session"] = FRESH_SESSION_MS + 860.0  # paper-sim tail at P99
        parts["flight_serialisation"] = flight.serialisation_ms or 0.0
        if flight.p_flight_lost > 0.01:
            timer = DTLS_RTO_S * 1e3 if prof.transport == "coap" else TCP_MIN_RTO_MS + rtt_ms
            parts["retransmission"] = timer
    rest = sum(parts.values())
    budget = prof.budget_ms
    sign_ms = cost.compute_ms if signature_path else 0.0
    p99 = None if sign_ms is None else rest + sign_ms
    required = speedup = rate = None
    name = f"{prof.name} ({toggles.label})"
    if not signature_path:
        answer = (
            f"{name}: no signature on the P99 path, so any card speed meets it there; "
            f"P99 ~ {rest:.0f} ms vs budget {budget:.0f} ms"
        )
    elif rest >= budget:
        answer = (
            f"{name}: impossible with any card: the rest of the path already takes {rest:.0f} "
            f"ms of the {budget:.0f} ms budget"
        )
    else:
        required = budget - rest
        if cost.compute_ms is None:
            answer = f"{name}: the card refuses {alg.name} ({cost.refusal}); it would need to "
            answer += f"sign in <= {required:.0f} ms"
        else:
            speedup = cost.compute_ms / required
            verb = "meets" if speedup <= 1 else "misses"
            answer = (
                f"{name}: the card must sign in <= {required:.0f} ms; it takes "
                f"{cost.compute_ms:.0f} ms with {alg.name} on {cost.profile}, so it {verb} "
                f"the budget ({speedup:.2f}x the allowed time)"
            )
    serial = parts.get("flight_serialisation", 0.0)
    if signature_path and spec and spec.up.rate and serial and sign_ms is not None:
        room = budget - (rest - serial) - sign_ms
        if room > 0:
            rate = flight.flight_bytes * 8 / room  # bits per ms = kbit/s
            answer += f"; the link must carry >= {rate:.1f} kbit/s up for the certificate flight"
    return SolverAnswer(
        pattern=prof.name,
        budget_ms=budget,
        toggles=toggles.label,
        algorithm=alg.name,
        profile=cost.profile,
        link=spec.describe() if spec else "loopback (rtt=0)",
        handshake_share=share,
        signature_on_p99=signature_path,
        parts_ms=parts,
        sign_ms=cost.compute_ms,
        p99_ms=p99,
        required_sign_ms=required,
        speedup=speedup,
        required_rate_kbps=rate,
        answer=answer,
        assumptions=ASSUMPTIONS,
    )
