"""Table 7's verdicts, as rules with thresholds, and the paper's own verdicts to compare with.

The paper rates each pattern ○ (practical), △ (practical with design work) or × (hard to
reconcile with real-time needs), by hand. SAFE Lab judges a cell from its request-path
latencies (event occurs -> delivered and acknowledged) against the pattern's budget
(``budget_ms`` of ``profiles/patterns/*.toml``):

- ○ when **P99 <= budget** and **deadline misses <= 1 %** (late or failed events over all
  events): every event but a rare one meets the budget as it is;
- △ when not ○ but **P50 <= budget** and **deadline misses <= 25 %**: the typical event meets
  it and the misses are confined to some events (a first authentication, a reconnect), which
  design work (the remedies) can move off the request path;
- × otherwise (**P50 > budget** or **misses > 25 %**): the pattern's requirement is not met
  for the typical event.

With few events per cell (``--quick``: 4) one miss is 25 %, i.e. still △; a cell says how
many events it had, so a reader can weigh it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GOOD, DESIGN, HARD = "○", "△", "×"
MISS_GOOD = 0.01
"""Deadline-miss rate up to which a cell can be ○."""
MISS_DESIGN = 0.25
"""Deadline-miss rate up to which a cell can be △."""


@dataclass(frozen=True)
class PaperVerdict:
    before: str
    before_note: str
    remedy: str
    after: str
    after_note: str = ""


PAPER_VERDICTS: dict[str, PaperVerdict] = {
    "periodic": PaperVerdict(DESIGN, "first auth", "session reuse, keep-alive tuning", GOOD),
    "event-driven": PaperVerdict(DESIGN, "on reconnect", "pre-authentication, keep sessions", GOOD),
    "real-time-control": PaperVerdict(
        HARD, "", "PSK, hardware crypto", DESIGN, "long sessions after first auth"
    ),
    "remote-management": PaperVerdict(
        DESIGN, "VPN set-up", "always-on VPN, certificate caching", GOOD
    ),
    "bulk-transfer": PaperVerdict(DESIGN, "first TLS", "per-chunk auth, delta updates", GOOD),
    "batch": PaperVerdict(GOOD, "", "short JWT + refresh, token caching", GOOD),
}
"""SOURCES.md section 1, Table 7, by pattern name."""


def judge(p50_ms: float, p99_ms: float, miss_rate: float, budget_ms: float) -> tuple[str, str]:
    """The verdict and the figures that decided it (one line)."""
    if math.isnan(p50_ms) or math.isnan(p99_ms):
        return HARD, f"no event completed (misses {miss_rate:.0%})"
    if p99_ms <= budget_ms and miss_rate <= MISS_GOOD:
        return GOOD, (
            f"P99 {p99_ms:.0f} ms <= budget {budget_ms:.0f} ms and misses {miss_rate:.0%} "
            f"<= {MISS_GOOD:.0%}"
        )
    if p50_ms <= budget_ms and miss_rate <= MISS_DESIGN:
        why = (
            f"P99 {p99_ms:.0f} ms > budget {budget_ms:.0f} ms"
            if p99_ms > budget_ms
            else f"misses {miss_rate:.0%} > {MISS_GOOD:.0%}"
        )
        return DESIGN, (
            f"{why}, but P50 {p50_ms:.0f} ms <= budget and misses {miss_rate:.0%} "
            f"<= {MISS_DESIGN:.0%}"
        )
    why = (
        f"P50 {p50_ms:.0f} ms > budget {budget_ms:.0f} ms"
        if p50_ms > budget_ms
        else f"misses {miss_rate:.0%} > {MISS_DESIGN:.0%}"
    )
    return HARD, why
