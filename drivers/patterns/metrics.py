"""The figures the paper says to watch, per run: one :class:`PatternSummary` from the
operations and the card counters (also the A/B comparison's two sides)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PatternSummary:
    operations: int
    failed: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    deadline_miss_rate: float
    """Operations later than the budget, or failed, over all operations."""
    signatures: int
    signatures_request_path: int
    signatures_background: int
    signatures_per_min: float
    signing_success_rate: float
    """Card signatures made over signatures attempted (an access that failed counts)."""
    mean_sign_ms: float
    card_busy_ms: float
    card_busy_background_ms: float
    card_busy_pct: float
    connections: int
    resumed_handshakes: int
    session_reuse_rate: float
    """Operations served without a new full handshake on the request path."""
    attempts: int
    card_accesses: int
    """Calls into the card (open, login, find, sign init, sign, close), failed ones too."""
    sim_errors: int
    sim_error_rate: float
    """Failed card accesses over card accesses."""
    network_errors: int
    auth_timeouts: int
    auth_timeout_rate: float
    """Operations whose authentication failed or took longer than ``auth_timeout_s``."""
    duplicate_signatures: int
    elapsed_s: float
    units_sent: int = 0
    """Messages, requests or chunks sent and acknowledged (retransmissions included)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    latencies_ns: list[int],
    *,
    failed: int,
    missed: int,
    reused: int,
    attempts: int,
    network_errors: int,
    auth_timeouts: int,
    card: Any,
    connections: int,
    resumed: int,
    elapsed_s: float,
    units_sent: int = 0,
) -> PatternSummary:
    """Summary of a run (``card`` is a :class:`~drivers.patterns.faults.CardCounters`)."""
    ops = len(latencies_ns) + failed
    values = np.asarray(latencies_ns, dtype=float) / 1e6
    p50 = float(np.percentile(values, 50)) if values.size else float("nan")
    p99 = float(np.percentile(values, 99)) if values.size else float("nan")
    sign_attempts = card.signatures + card.errors
    return PatternSummary(
        operations=ops,
        failed=failed,
        p50_ms=p50,
        p99_ms=p99,
        mean_ms=float(values.mean()) if values.size else float("nan"),
        deadline_miss_rate=(missed + failed) / ops if ops else 0.0,
        signatures=card.signatures,
        signatures_request_path=card.signatures - card.signatures_background,
        signatures_background=card.signatures_background,
        signatures_per_min=card.signatures * 60.0 / elapsed_s if elapsed_s > 0 else 0.0,
        signing_success_rate=card.signatures / sign_attempts if sign_attempts else 1.0,
        mean_sign_ms=card.sign_ns / card.signatures / 1e6 if card.signatures else 0.0,
        card_busy_ms=card.busy_ns / 1e6,
        card_busy_background_ms=card.busy_background_ns / 1e6,
        card_busy_pct=100.0 * card.busy_ns / 1e9 / elapsed_s if elapsed_s > 0 else 0.0,
        connections=connections,
        resumed_handshakes=resumed,
        session_reuse_rate=reused / ops if ops else 0.0,
        attempts=attempts,
        card_accesses=card.accesses,
        sim_errors=card.errors,
        sim_error_rate=card.errors / card.accesses if card.accesses else 0.0,
        network_errors=network_errors,
        auth_timeouts=auth_timeouts,
        auth_timeout_rate=auth_timeouts / ops if ops else 0.0,
        duplicate_signatures=card.duplicates,
        elapsed_s=elapsed_s,
        units_sent=units_sent,
    )


DELTA_KEYS = (
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "deadline_miss_rate",
    "signatures",
    "signatures_per_min",
    "card_busy_pct",
    "session_reuse_rate",
    "attempts",
)


def delta(a: PatternSummary, b: PatternSummary) -> dict[str, dict[str, float | None]]:
    """``{"delta": {key: B - A}, "ratio": {key: B / A or None}}`` for the compared figures."""
    diffs: dict[str, float | None] = {}
    ratios: dict[str, float | None] = {}
    for key in DELTA_KEYS:
        va, vb = float(getattr(a, key)), float(getattr(b, key))
        diffs[key] = vb - va
        ratios[key] = (vb / va) if va else None
    return {"delta": diffs, "ratio": ratios}


SEGMENT_KEYS = (
    ("p50_ms", "P50 ms"),
    ("p99_ms", "P99 ms"),
    ("deadline_misses", "misses"),
    ("signatures_per_min", "sig/min"),
    ("card_busy_pct", "card busy %"),
    ("events", "samples"),
)
"""What the console's A/B panel compares before and after the last flip, in its order."""


def segment_rows(before: Any, after: Any) -> list[tuple[str, float, float, float, float | None]]:
    """``(label, before, after, after - before, after / before or None)`` per compared figure
    of two :class:`~drivers.patterns.engine.Segment` objects (the last flip's two sides)."""
    rows = []
    for key, label in SEGMENT_KEYS:
        a, b = float(getattr(before, key)), float(getattr(after, key))
        ratio = b / a if a and not np.isnan(a) and not np.isnan(b) else None
        rows.append((label, a, b, b - a, ratio))
    return rows
