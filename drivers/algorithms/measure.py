"""Software sign/verify times per algorithm, measured on this machine (``safelab algs``).

Timed with ``time.perf_counter_ns`` around one library call each (the paper's clock), the
fixed 32-byte message of the paper, after one warm-up call, on a fresh key per algorithm.
SLH-DSA-128s signs in about a second here, so its trial count is capped (``slow_cap``); the
count used is part of every result. The machine is shared: figures are medians and P90s, and a
table says on which host and with which library versions they were made.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from drivers.algorithms.registry import ALGORITHMS, Algorithm
from drivers.algorithms.software import generate, library_version

MESSAGE = b"12345678901234567890123456789012"
"""The paper's fixed 32-byte message."""


@dataclass(frozen=True)
class Timing:
    """Measured software figures of one algorithm (ms; ``n`` calls each)."""

    algorithm: str
    n_sign: int
    n_verify: int
    sign_p50_ms: float
    sign_p90_ms: float
    verify_p50_ms: float
    verify_p90_ms: float
    signature_bytes: int
    """Length of the signature actually produced (ECDSA DER varies by a byte or two)."""
    verified: bool
    """Every signature verified, and a signature over another message did not."""
    library: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _times(call: Callable[[], object], n: int) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def measure(algorithm: Algorithm, n: int = 50, *, slow_cap: int = 3) -> Timing:
    """Sign and verify ``n`` times (fewer for algorithms slower than 200 ms a signature)."""
    key = generate(algorithm.name)
    signature = key.sign(MESSAGE)
    first = time.perf_counter_ns()
    key.sign(MESSAGE)
    slow = (time.perf_counter_ns() - first) / 1e6 > 200
    n_sign = min(n, slow_cap) if slow else n
    signatures: list[bytes] = []
    sign_ms = _times(lambda: signatures.append(key.sign(MESSAGE)), n_sign)
    verify_ms = _times(lambda: key.verify(MESSAGE, signature), n)
    verified = all(key.verify(MESSAGE, s) for s in [signature, *signatures]) and not key.verify(
        MESSAGE[::-1], signature
    )
    return Timing(
        algorithm.name,
        n_sign,
        n,
        statistics.median(sign_ms),
        _p90(sign_ms),
        statistics.median(verify_ms),
        _p90(verify_ms),
        len(signature),
        verified,
        library_version(algorithm.library),
    )


def measure_all(names: list[str] | None = None, n: int = 50) -> list[Timing]:
    """:func:`measure` for each algorithm named (default: all, in table order)."""
    return [measure(ALGORITHMS[name], n) for name in (names or list(ALGORITHMS))]


def host() -> dict[str, str]:
    """Where the figures were made."""
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
