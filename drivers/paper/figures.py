"""Every figure of a `safelab paper` run beside the paper's, with its tolerance and verdict.

Why tolerances differ: figures made by the token (the card's signing, its session opening,
the difference a token makes to a handshake) are what the paper measured and what an emulated
paper SIM is fitted to, so they are judged; figures made by the host alone (a software key's
handshake on this machine's loopback versus the paper's Docker network, an ``openssl``
process start) depend on the machine, so they are shown with their ratio but not judged.
The goals are the issue's: Table 3 sign_only within ±2 %, total within ±5 %, every Table 6
difference within ±10 % of the paper's printed figure; a resumed handshake makes no token
signature, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    PASS = "pass"
    FAIL = "fail"
    INFO = "info"
    """Shown beside the paper, not judged (host-dependent, or no paper figure to judge by)."""


@dataclass(frozen=True)
class Tolerance:
    """How far a measured figure may be from the paper's and still reproduce it."""

    relative: float | None = None
    """Allowed |measured/paper − 1| (0.02 is ±2 %); ``None`` with ``exact=False``: not judged."""
    exact: bool = False
    """The figure must equal the paper's (a count such as signatures per resumed handshake)."""
    why: str = ""

    def describe(self) -> str:
        if self.exact:
            return "exact"
        if self.relative is None:
            return "not judged" + (f" ({self.why})" if self.why else "")
        return f"±{self.relative * 100:g} %"

    def judge(self, measured: float, paper: float) -> Verdict:
        if math.isnan(measured):
            return Verdict.FAIL if (self.exact or self.relative is not None) else Verdict.INFO
        if self.exact:
            return Verdict.PASS if measured == paper else Verdict.FAIL
        if self.relative is None or paper == 0:
            return Verdict.INFO
        return Verdict.PASS if abs(measured / paper - 1) <= self.relative + 1e-12 else Verdict.FAIL


HOST_DEPENDENT = Tolerance(why="host-dependent: this machine, not the token")
SIGN_ONLY = Tolerance(0.02, why="the card's signing time")
TOTAL = Tolerance(0.05, why="the card's session, login, key lookup and signing")
TAIL = Tolerance(0.25, why="a tail percentile of n = 100 rests on one or two trials")
DIFFERENCE = Tolerance(0.10, why="the token's share of a handshake")
NO_SIGNATURE = Tolerance(exact=True, why="a resumed handshake makes no token signature")


@dataclass(frozen=True)
class Figure:
    """One measured figure beside the paper's."""

    table: str
    """``Table 3``, ``Table 6``, ``JWT``."""
    row: str
    quantity: str
    measured: float
    paper: float | None
    tolerance: Tolerance
    unit: str = "ms"
    note: str = ""
    run_ids: tuple[int, ...] = ()

    @property
    def ratio(self) -> float | None:
        if self.paper in (None, 0) or math.isnan(self.measured):
            return None
        return self.measured / self.paper

    @property
    def verdict(self) -> Verdict:
        if self.paper is None:
            return Verdict.INFO
        return self.tolerance.judge(self.measured, self.paper)

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "row": self.row,
            "quantity": self.quantity,
            "measured": None if math.isnan(self.measured) else self.measured,
            "paper": self.paper,
            "unit": self.unit,
            "ratio": self.ratio,
            "tolerance": self.tolerance.describe(),
            "verdict": self.verdict.value,
            "note": self.note,
            "run_ids": list(self.run_ids),
        }


def failed(figures: list[Figure]) -> list[Figure]:
    """The figures outside their tolerance (the command's exit code is non-zero if any)."""
    return [f for f in figures if f.verdict is Verdict.FAIL]
