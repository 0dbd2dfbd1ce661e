"""A live latency histogram: bins computed where the statistics live, drawn as text bars.

Latency distributions have long tails (one garbage collection or a card's retry can be 100×
the median), so equal bins from min to max would put every trial in the first bin. The bins
here span the fastest trial up to P99 or 3×P90, whichever is lower, and a last row counts
everything slower, which keeps the body readable and the tail honest. 120 bins are merged to
fit the widget's height (120 has many divisors, so few rows go unused). Bars are block
glyphs, so the chart reads the same without colour.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from drivers.bench.stats import Histogram, StreamingStats
from screens.widgets.format import fmt_ms

_EIGHTHS = " ▏▎▍▌▋▊▉█"


LatencyBins = Histogram
"""The driver's immutable histogram (edges, counts, overflow, total) is what this draws."""


def latency_bins(stats: StreamingStats, bins: int = 120) -> LatencyBins | None:
    """Histogram of ``stats``' total times; call it in the thread that adds to ``stats``."""
    return stats.histogram(bins)


def _bar(value: int, largest: int, width: int) -> str:
    if largest <= 0 or width <= 0:
        return ""
    eighths = round(value / largest * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


class LatencyHistogram(Widget):
    """Draws :class:`LatencyBins` as one text row per bin, merging bins to fit the height."""

    DEFAULT_CSS = """
    LatencyHistogram { height: 1fr; min-height: 4; border: round $primary-muted; padding: 0 1; }
    """
    bins: reactive[LatencyBins | None] = reactive(None)
    """The histogram to draw; ``None`` until the first trials arrive."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Latency histogram (ms)"

    def render(self) -> Text:
        data = self.bins
        height = max(self.content_size.height, 1)
        width = max(self.content_size.width, 10)
        if data is None:
            return Text("no trials yet", style="dim")
        rows = self._rows(data, height - (1 if data.overflow else 0))
        label_width = max(len(label) for label, _ in rows)
        count_width = max(len(str(count)) for _, count in rows)
        largest = max(count for _, count in rows)
        bar_width = max(width - label_width - count_width - 3, 1)
        text = Text(no_wrap=True, overflow="crop")
        for i, (label, count) in enumerate(rows):
            if i:
                text.append("\n")
            text.append(label.rjust(label_width) + " ", style="dim")
            text.append(_bar(count, largest, bar_width).ljust(bar_width), style="bold")
            text.append(" " + str(count).rjust(count_width))
        return text

    @staticmethod
    def _rows(data: LatencyBins, height: int) -> list[tuple[str, int]]:
        n = len(data.counts)
        group = max(1, math.ceil(n / max(height, 1)))
        rows = []
        for start in range(0, n, group):
            stop = min(start + group, n)
            label = f"{fmt_ms(data.edges_ms[start])}–{fmt_ms(data.edges_ms[stop])}"
            rows.append((label, sum(data.counts[start:stop])))
        if data.overflow:
            rows.append((f"> {fmt_ms(data.edges_ms[-1])}", data.overflow))
        return rows
