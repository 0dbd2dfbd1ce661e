"""What one signature costs on an IoT SAFE card, per algorithm: compute, link, RAM.

The expected time of the signing APDUs (hash on host, the paper's ``sign_only``: INIT +
UPDATE + the GET RESPONSEs that fetch the signature) under a card profile:

- **card compute**: ECDSA from the profile's ``[card.crypto] ecdsa_sign`` (fitted to the
  paper's Table 3; brainpool times its ``curve_factor``), PQC from ``[card.pqc]``
  (:mod:`drivers.cards.emulator.pqc`: cycles from the registry's cited source x the core
  factor / the clock), plus each command's own time;
- **link**: every APDU pays the profile's per-APDU base time plus its bytes times
  ``per_byte_us`` (the paper-sim modem: 174 us per byte, two hex characters at 115200 baud);
- **moving the signature out**: the response ``33 LL LL <signature>`` leaves a T=0 card as
  ``61xx`` and GET RESPONSEs of at most 256 bytes each (a 2,420-byte ML-DSA-44 signature:
  10 of them); with extended length (``extended_length`` quirk, T=1) one response carries
  all of it. Both are given, so the difference is the cost of chaining;
- **RAM**: the card must hold the signature until it is fetched; the profile says what fits.

The same numbers drive the emulator, so :mod:`drivers.algorithms.card_sign` checks this model
against the APDUs the emulated card really exchanges (``tests/algorithms``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from drivers.algorithms.registry import Algorithm, get_algorithm
from drivers.cards.emulator.profile import CardProfile, load_profile

INIT_BYTES = 4 + 1 + 3 + 3 + 4 + 3 + 2
"""COMPUTE SIGNATURE INIT with a 1-byte key ID (``84 01 id A1 01 03 91 02 0001 92 01 xx``)
and its ``9000``."""
UPDATE_BYTES = 4 + 1 + 2 + 32
"""COMPUTE SIGNATURE UPDATE with a SHA-256 digest (``9E 20 ...``), before its response."""
GET_RESPONSE_BYTES = 5
CHUNK = 256


@dataclass(frozen=True)
class CardSignCost:
    """Modelled cost of one hash-on-host signature on a card (ms are expected values)."""

    algorithm: str
    profile: str
    fits: bool
    refusal: str | None
    signature_bytes: int
    ram_needed: int | None
    ram_bytes: int | None
    compute_ms: float | None
    """On-card signing (crypto + INIT/UPDATE command time); ``None`` when refused."""
    chained_apdus: int
    """APDUs to sign and fetch over T=0: INIT, UPDATE, GET RESPONSEs."""
    chained_link_ms: float
    extended_apdus: int
    extended_link_ms: float

    @property
    def chained_total_ms(self) -> float | None:
        return None if self.compute_ms is None else self.compute_ms + self.chained_link_ms

    @property
    def extended_total_ms(self) -> float | None:
        return None if self.compute_ms is None else self.compute_ms + self.extended_link_ms

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chained_total_ms"] = self.chained_total_ms
        out["extended_total_ms"] = self.extended_total_ms
        return out


def response_bytes(algorithm: Algorithm) -> int:
    """The signature TLV the card returns: ``33`` + 2-byte length + signature (ECDSA raw)."""
    body = 64 if algorithm.family == "ecc" else algorithm.signature_bytes
    return 3 + body


def get_responses(algorithm: Algorithm, *, t0: bool = True) -> int:
    """GET RESPONSE commands needed to fetch the signature in 256-byte pieces."""
    total = response_bytes(algorithm)
    return math.ceil(total / CHUNK) if t0 else math.ceil(max(0, total - CHUNK) / CHUNK)


def _link_ms(profile: CardProfile, bytes_moved: int, apdus: int) -> float:
    return (
        apdus * profile.transport_base.mean_ms + bytes_moved * profile.transport_per_byte_us / 1e3
    )


def _compute_ms(profile: CardProfile, algorithm: Algorithm) -> float:
    from drivers.cards.emulator.profile import ZERO

    commands = profile.commands
    own = commands.get("compute_signature_init", profile.card_default).mean_ms
    own += commands.get("compute_signature_update", profile.card_default).mean_ms
    if algorithm.post_quantum:
        assert profile.pqc is not None
        return own + profile.pqc.mean_sign_ms(algorithm)
    curve = "brainpoolP256r1" if algorithm.name == "bp256" else "secp256r1"
    ecdsa = profile.crypto.get("ecdsa_sign", ZERO).mean_ms
    return own + ecdsa * profile.curve_factor.get(curve, 1.0)


def refusal(profile: CardProfile, algorithm: Algorithm) -> str | None:
    """Why the card of ``profile`` cannot sign with ``algorithm`` (``None``: it can)."""
    if algorithm.iotsafe_code is None:
        return f"{algorithm.title}: {algorithm.card.source}"
    if not algorithm.post_quantum:
        return None
    if profile.pqc is None:
        return f"card profile {profile.name!r} has no [card.pqc] model: it signs no PQC"
    return profile.pqc.refusal(algorithm)


def sign_cost(algorithm: str | Algorithm, profile: str | CardProfile = "paper-sim") -> CardSignCost:
    """The modelled cost of one signature with ``algorithm`` on the ``profile`` card."""
    alg = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    card = load_profile(profile) if isinstance(profile, str) else profile
    why = refusal(card, alg)
    t0 = card.quirks.t0
    reply = response_bytes(alg)
    fetches = get_responses(alg, t0=t0)
    chained_bytes = INIT_BYTES + UPDATE_BYTES + reply + 2 * (1 + fetches)
    chained_bytes += fetches * GET_RESPONSE_BYTES
    chained = 2 + fetches
    extended_bytes = INIT_BYTES + UPDATE_BYTES + 4 + reply + 2  # 00 Lc(2) .. Le(2)
    pqc = card.pqc
    return CardSignCost(
        algorithm=alg.name,
        profile=card.name,
        fits=why is None,
        refusal=why,
        signature_bytes=alg.signature_bytes if alg.post_quantum else 64,
        ram_needed=pqc.need_bytes(alg) if pqc is not None and alg.post_quantum else None,
        ram_bytes=pqc.ram_bytes if pqc is not None else None,
        compute_ms=None if why is not None else _compute_ms(card, alg),
        chained_apdus=chained,
        chained_link_ms=_link_ms(card, chained_bytes, chained),
        extended_apdus=2,
        extended_link_ms=_link_ms(card, extended_bytes, 2),
    )
