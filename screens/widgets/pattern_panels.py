"""The optimisation lab's two tables: before/after the last flip (A/B) and the paper's metrics.

Pure functions from the run's frozen figures (:class:`~drivers.patterns.engine.Segment`,
:class:`~drivers.patterns.metrics.PatternSummary`) to Rich tables, so the pilot tests and the
snapshots read exactly what the screen shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from drivers.patterns.metrics import segment_rows


def _num(value: float, pct: bool = False) -> str:
    if math.isnan(value):
        return "–"
    if pct:
        return f"{value:.1f}"
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}"


def _signed(value: float) -> str:
    if math.isnan(value):
        return "–"
    text = _num(abs(value))
    return ("+" if value > 0 else "−" if value < 0 else "±") + text


def ab_table(segments: Sequence[Any]) -> Table | Text:
    """Before (A) and after (B) the last flip, with B−A and B/A; one side until a flip."""
    if not segments:
        return Text("A/B: no events yet", style="dim")
    before = segments[-2] if len(segments) > 1 else None
    after = segments[-1]
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False)
    table.add_column("", style="dim", no_wrap=True)
    table.add_column("A", justify="right", no_wrap=True)
    table.add_column("B", justify="right", no_wrap=True)
    table.add_column("B−A", justify="right", no_wrap=True)
    table.add_column("B/A", justify="right", no_wrap=True)
    if before is None:
        for label, _, value, _, _ in segment_rows(after, after):
            table.add_row(label, "", _num(value, "%" in label), "", "")
        table.title = Text(f"now: {after.toggles} (flip a toggle for A/B)", style="bold")
        return _titled(table)
    for label, a, b, diff, ratio in segment_rows(before, after):
        pct = "%" in label
        table.add_row(
            label,
            _num(a, pct),
            _num(b, pct),
            _signed(diff),
            f"{ratio:.2f}×" if ratio is not None else "–",
        )
    table.title = Text(f"A {before.toggles} → B {after.toggles}", style="bold")
    return _titled(table)


def _titled(table: Table) -> Table:
    table.title_justify = "left"
    table.title_style = "bold"
    return table


PAPER_METRICS = (
    ("signing_success_rate", "signing success", "pct"),
    ("mean_sign_ms", "mean signing", "ms"),
    ("session_reuse_rate", "session reuse", "pct"),
    ("sim_error_rate", "SIM access errors", "pct"),
    ("auth_timeout_rate", "auth time-outs", "pct"),
    ("deadline_miss_rate", "deadline misses", "pct"),
)
"""The operational metrics the paper says to watch (section 5), as the screen lists them."""


def metrics_table(summary: Any, *, columns: int = 1) -> Table | Text:
    """The paper's metrics of the whole run, plus the counts they come from."""
    if summary is None:
        return Text("metrics: no events yet", style="dim")
    table = Table.grid(padding=(0, 1))
    for _ in range(columns):
        table.add_column(style="dim", no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
    cells: list[str | Text] = []
    for key, label, unit in PAPER_METRICS:
        value = float(getattr(summary, key))
        shown = f"{value:.1%}" if unit == "pct" else f"{value:.1f} ms"
        cells += [label, Text(shown, style="bold")]
    cells += [
        "events / failed",
        Text(f"{summary.operations} / {summary.failed}", style="bold"),
        "signatures (bg)",
        Text(f"{summary.signatures} ({summary.signatures_background})", style="bold"),
        "card busy (bg)",
        Text(
            f"{summary.card_busy_pct:.1f}% ({summary.card_busy_background_ms:.0f} ms)",
            style="bold",
        ),
        "attempts",
        Text(str(summary.attempts), style="bold"),
        "connections",
        Text(str(summary.connections), style="bold"),
    ]
    per_row = 2 * columns
    for start in range(0, len(cells), per_row):
        row = cells[start : start + per_row]
        table.add_row(*row, *([""] * (per_row - len(row))))
    return table
