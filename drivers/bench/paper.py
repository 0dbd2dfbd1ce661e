"""The paper's published figures, for a reference row beside measured ones.

Table 3 of the IoT SAFE paper (``../shared/SOURCES.md``): latency in ms, n = 100, on a real SIM
through the vendor's PKCS#11 library; ``local_sw`` was ``openssl dgst -sha256 -sign``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    mode: str
    n: int
    mean_ms: float
    stdev_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    over_1s: int


TABLE3 = {
    "local_sw": PaperRow("local_sw", 100, 11.5, 4.0, 10.0, 16.6, 24.5, 0),
    "sign_only": PaperRow("sign_only", 100, 476.5, 9.2, 475.1, 483.5, 494.8, 0),
    "total": PaperRow("total", 100, 677.7, 177.2, 642.2, 671.9, 1739.4, 4),
}
"""Keyed by the paper's mode names. The paper's local_sw is SAFE Lab's ``openssl_cli``."""

MODE_TO_PAPER = {
    "local_sw": "local_sw",
    "openssl_cli": "local_sw",
    "sign_only": "sign_only",
    "total": "total",
}


def paper_row_for(mode: str) -> PaperRow | None:
    """The paper's row for a SAFE Lab mode (both software baselines map to local_sw)."""
    key = MODE_TO_PAPER.get(mode)
    return TABLE3.get(key) if key else None


@dataclass(frozen=True)
class PaperTable6Row:
    protocol: str
    software_ms: float
    iot_safe_ms: float

    @property
    def difference_ms(self) -> float:
        return self.iot_safe_ms - self.software_ms


TABLE6 = {
    "vpn": PaperTable6Row("vpn", 1262, 2061),
    "mqtt": PaperTable6Row("mqtt", 59, 757),
    "coap": PaperTable6Row("coap", 27, 676),
    "https": PaperTable6Row("https", 17, 678),
}
"""Table 6: connection establishment with mTLS, ms (n = 30, peers on localhost in Docker)."""

PAPER_JWT = {"software_sign_ms": 15.0, "iot_safe_sign_ms": 650.0, "cached_request_ms": 10.0}
"""Section 4: an ES256 JWT signed in 15 ms in software, 650 ms on the SIM; with a cached
token, about 10 ms per HTTPS request either way."""
