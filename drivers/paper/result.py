"""What a `safelab paper` run produced: its figures, the runs behind them, their provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.paper.figures import Figure, Verdict, failed


@dataclass(frozen=True)
class Table6Measured:
    """One protocol of Table 6 under one condition, software and token interleaved."""

    protocol: str
    condition: str
    """``paper`` (a fresh token session per handshake, as the paper's clients did),
    ``session-kept`` or ``resumed``."""
    software_ms: float
    token_ms: float
    token_sign_ms: float
    """Mean time the token worked inside one connection: its signatures, plus (VPN under the
    paper's condition) the session opening and certificate read of OpenVPN's PKCS#11 start."""
    token_signatures: float
    """Mean token signatures per connection (1 full, 0 resumed)."""
    software_run: int
    token_run: int
    software_phases_ms: dict[str, float] = field(default_factory=dict)
    token_phases_ms: dict[str, float] = field(default_factory=dict)

    @property
    def difference_ms(self) -> float:
        return self.token_ms - self.software_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "condition": self.condition,
            "software_ms": self.software_ms,
            "token_ms": self.token_ms,
            "difference_ms": self.difference_ms,
            "token_sign_ms": self.token_sign_ms,
            "token_signatures_per_connection": self.token_signatures,
            "software_run": self.software_run,
            "token_run": self.token_run,
            "software_phases_ms": self.software_phases_ms,
            "token_phases_ms": self.token_phases_ms,
        }


@dataclass(frozen=True)
class PaperResult:
    figures: tuple[Figure, ...]
    table3_runs: dict[str, int]
    """SAFE Lab mode (``openssl_cli``, ``sign_only``, ``total``) → stored run id."""
    table6: tuple[Table6Measured, ...]
    provenance: dict[str, object]
    """Token (label, URI, emulated, speed), peers (name, real/embedded, version), host,
    versions, conditions (TCP_NODELAY, warm-up, interleaving), n per table."""
    status: str = "complete"
    reason: str = ""
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = ()
    record_id: int = 0
    """The stored ``paper`` run that keeps these figures (0: not stored)."""
    table7: dict[str, object] | None = None
    """Table 7 computed (``safelab paper --table7``): :meth:`Table7Result.as_dict`."""

    @property
    def failures(self) -> list[Figure]:
        return failed(list(self.figures))

    @property
    def passed(self) -> bool:
        return self.status == "complete" and not self.failures

    @property
    def run_ids(self) -> tuple[int, ...]:
        ids = list(self.table3_runs.values())
        for row in self.table6:
            ids += [row.software_run, row.token_run]
        return tuple(dict.fromkeys(ids))

    def counts(self) -> dict[str, int]:
        return {v.value: sum(f.verdict is v for f in self.figures) for v in Verdict}

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "reason": self.reason,
            "passed": self.passed,
            "verdicts": self.counts(),
            "elapsed_s": self.elapsed_s,
            "figures": [f.as_dict() for f in self.figures],
            "table3_runs": self.table3_runs,
            "table6": [row.as_dict() for row in self.table6],
            "provenance": self.provenance,
            "notes": list(self.notes),
            "record_id": self.record_id,
            "table7": self.table7,  # None unless asked for (`safelab paper --table7`)
        }
