"""One Table 7 cell (a pattern, before or after its remedies) and the whole computed table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MEASURED, PREDICTED, NOT_MEASURED = "measured", "predicted", "not measured"


@dataclass(frozen=True)
class Cell:
    pattern: str
    side: str
    """``before`` or ``after``."""
    settings: tuple[str, ...]
    source: str
    """``measured`` (a pattern run on the real peers), ``predicted`` (the what-if engine) or
    ``not measured`` (neither could be had: ``reason`` says why)."""
    verdict: str | None
    """○, △, × or ``None`` when not measured."""
    decided_by: str
    """The figures that decided the verdict, e.g. ``P99 812 ms <= budget 1000 ms ...``."""
    paper: str
    agrees: bool | None
    budget_ms: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    deadline_miss_rate: float | None = None
    events: int = 0
    signatures: int = 0
    run_id: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["settings"] = list(self.settings)
        return out


@dataclass(frozen=True)
class Table7Result:
    cells: tuple[Cell, ...]
    token: str
    link: str | None
    quick: bool
    conditions: dict[str, Any] = field(default_factory=dict)
    """Events per cell, interval cap, verdict thresholds: what the cells were made under."""
    status: str = "complete"
    reason: str | None = None
    record_id: int = 0

    @property
    def run_ids(self) -> tuple[int, ...]:
        return tuple(c.run_id for c in self.cells if c.run_id)

    def rows(self) -> list[dict[str, Any]]:
        """One row per pattern: its before and after cells, with the paper's remedy text."""
        from drivers.table7.remedies import REMEDIES
        from drivers.table7.verdicts import PAPER_VERDICTS

        out: list[dict[str, Any]] = []
        for name in dict.fromkeys(c.pattern for c in self.cells):
            cells = {c.side: c.as_dict() for c in self.cells if c.pattern == name}
            paper = PAPER_VERDICTS[name]
            out.append(
                {
                    "pattern": name,
                    "paper": {
                        "before": paper.before,
                        "before_note": paper.before_note,
                        "remedy": paper.remedy,
                        "after": paper.after,
                        "after_note": paper.after_note,
                    },
                    "not_applied": REMEDIES[name].not_applied,
                    **cells,
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        from drivers.table7 import verdicts

        return {
            "status": self.status,
            "reason": self.reason,
            "token": self.token,
            "link": self.link,
            "quick": self.quick,
            "conditions": self.conditions,
            "rules": {
                "good": f"P99 <= budget and deadline misses <= {verdicts.MISS_GOOD:.0%}",
                "design": f"else P50 <= budget and misses <= {verdicts.MISS_DESIGN:.0%}",
                "hard": "otherwise",
            },
            "rows": self.rows(),
            "record_id": self.record_id,
        }
