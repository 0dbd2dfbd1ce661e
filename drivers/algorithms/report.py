"""The ``safelab algs`` table: sizes, measured software times and the card model, per algorithm.

One row per algorithm joins the registry (sizes), :mod:`.measure` (software sign/verify times
measured now, on this machine), :mod:`.card_model` (on-card compute, the link cost of moving
the signature out by GET RESPONSE chaining versus extended length, the RAM verdict) and
:mod:`.handshake` (the certificate flight, a model). Every part says what it is.
"""

from __future__ import annotations

from typing import Any

from drivers.algorithms.card_model import sign_cost
from drivers.algorithms.handshake import MODEL_LABEL, flight_over_link
from drivers.algorithms.measure import host, measure
from drivers.algorithms.registry import ALGORITHMS, get_algorithm
from drivers.algorithms.software import library_version


def algorithms_report(
    names: list[str] | None = None,
    *,
    n: int = 30,
    profile: str = "pqc-sim",
    link: str | None = None,
    measure_times: bool = True,
) -> dict[str, Any]:
    """Everything ``safelab algs`` prints, as one JSON-ready document."""
    chosen = [get_algorithm(name).name for name in names] if names else list(ALGORITHMS)
    rows = []
    for name in chosen:
        alg = ALGORITHMS[name]
        row: dict[str, Any] = {
            "algorithm": alg.name,
            "title": alg.title,
            "standard": alg.standard,
            "post_quantum": alg.post_quantum,
            "public_key_bytes": alg.public_key_bytes,
            "private_key_bytes": alg.private_key_bytes,
            "signature_bytes": alg.signature_bytes,
            "signature_note": alg.signature_note,
            "library": library_version(alg.library),
            "card_source": alg.card.source,
            "card_source_checked": alg.card.checked,
        }
        if measure_times:
            row["software"] = measure(alg, n).as_dict()
        row["card"] = sign_cost(alg, profile).as_dict()
        row["flight"] = flight_over_link(alg.name, link).as_dict()
        rows.append(row)
    return {
        "host": host(),
        "profile": profile,
        "link": link or "none (no rate, no loss)",
        "software_timing": "measured here: time.perf_counter_ns around one library call, "
        "32-byte message, after a warm-up; P50/P90 of n calls (SLH-DSA-128s: 3)",
        "card_timing": "model: card profile [card.pqc] (PQC) or [card.crypto] (ECDSA) + link "
        "per APDU; see drivers/algorithms/card_model.py",
        "flight": MODEL_LABEL,
        "tls_note": "the system OpenSSL 3.0 has no PQC: no PQC certificate or signature goes "
        "through a real TLS/DTLS handshake here",
        "algorithms": rows,
    }
