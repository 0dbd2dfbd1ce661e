"""The optimisation lab's live charts: request-path latency over time and its histogram, both
with the pattern's deadline drawn, the time series with every toggle flip marked.

Own widgets rather than a plotting library: they must fit a 16-row pane at 80×24, read the
same without colour (the deadline is a dashed row, a flip a dotted column topped by its
number, late bars are full blocks above that row) and render the same on every machine for the
snapshot tests. One column per event (the newest at the right), bars in eighths of a row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from drivers.bench.stats import Histogram
from screens.widgets.format import fmt_ms
from screens.widgets.histogram import LatencyHistogram, _bar

_BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    """What the time series draws: ``(event index, ms, flip number)`` and the deadline."""

    points: tuple[tuple[int, float, int], ...]
    budget_ms: float
    faults: tuple[int, ...] = ()
    """Event indices before which a fault was injected (marked ``!`` at the top)."""


def _scale(values: Sequence[float], budget_ms: float) -> float:
    """The top of the y axis: the deadline stays on the chart a quarter below the top, or
    the slowest event if it is slower."""
    top = max([budget_ms * 1.25, *values]) if values else budget_ms * 1.25
    return top if top > 0 else 1.0


def _short(value: float) -> str:
    """An axis label of at most 5 characters (``12.5``, ``1200``, ``60k``)."""
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _columns(
    points: tuple[tuple[int, float, int], ...], width: int
) -> list[tuple[int, float, int]]:
    """One column per event; more events than columns share a column, which shows their
    slowest (the deadline is about the worst) and the last flip in force."""
    if len(points) <= width:
        return list(points)
    group = math.ceil(len(points) / width)
    out = []
    for start in range(0, len(points), group):
        chunk = points[start : start + group]
        out.append((chunk[0][0], max(ms for _, ms, _ in chunk), chunk[-1][2]))
    return out


def series_lines(series: Series, width: int, height: int) -> list[Text]:
    """The chart as ``height`` lines of ``width`` cells (pure: the tests read it)."""
    axis = 6
    plot_w = max(width - axis, 4)
    plot_h = max(height - 1, 2)  # the bottom line is the event axis
    points = _columns(series.points, plot_w)
    values = [ms for _, ms, _ in points]
    top = _scale(values, series.budget_ms)
    deadline_row = min(plot_h - 1, int(series.budget_ms / top * plot_h))
    flips = {col for col in range(1, len(points)) if points[col][2] != points[col - 1][2]}
    starts = [index for index, _, _ in points] + [math.inf]
    faulted = {
        col
        for col in range(len(points))
        if any(starts[col] <= f < starts[col + 1] for f in series.faults)
    }
    lines = []
    for row in range(plot_h - 1, -1, -1):  # top row first
        if row == deadline_row:
            label = _short(series.budget_ms)
        elif row == plot_h - 1:
            label = _short(top)
        elif row == 0:
            label = "0"
        else:
            label = ""
        line = Text(label.rjust(axis - 1) + ("┤" if label else "│"), style="dim")
        for col in range(plot_w):
            if col < len(points):
                eighths = round(points[col][1] / top * plot_h * 8)
                fill = min(max(eighths - row * 8, 0), 8)
                late = points[col][1] > series.budget_ms
                if row == plot_h - 1 and col in faulted:
                    line.append("!", style="bold magenta")
                    continue
                if fill:
                    line.append(_BLOCKS[fill], style="bold red" if late else "bold")
                    continue
                if col in flips:
                    mark = str(points[col][2] % 10) if row == plot_h - 1 else "┊"
                    line.append(mark, style="bold yellow")
                    continue
            if row == deadline_row:
                line.append("╌", style="red")
            else:
                line.append(" ")
        lines.append(line)
    first = str(points[0][0]) if points else ""
    last = str(series.points[-1][0]) if points else ""
    foot = Text(" " * (axis - 1) + "└", style="dim")
    gap = max(plot_w - len(first) - len(last), 1)
    foot.append(first + " " * gap + last, style="dim")
    lines.append(foot)
    return lines


class LatencySeries(Widget):
    """Request-path latency per event (the last 300), newest at the right; deadline dashed,
    flips dotted; when the events outnumber the columns a column shows its slowest."""

    DEFAULT_CSS = """
    LatencySeries { height: 1fr; min-height: 5; border: round $primary-muted; padding: 0 1; }
    """
    series: reactive[Series | None] = reactive(None)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Request-path latency (ms)"
        self.border_subtitle = "╌ deadline  ┊ flip  ! fault"

    def render(self) -> Text:
        series = self.series
        if series is None or not series.points:
            return Text("no events yet: s starts the pattern", style="dim")
        width, height = self.content_size.width, self.content_size.height
        return Text("\n").join(series_lines(series, max(width, 10), max(height, 3)))


class DeadlineHistogram(LatencyHistogram):
    """The run's latency histogram with a dashed row where the deadline falls."""

    budget_ms: reactive[float] = reactive(math.nan)
    late: reactive[int | None] = reactive(None)
    """Events later than the deadline (or failed) in the whole run, written on its row: the
    slowest row counts everything above the body, so it may hold late and timely ones."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Histogram (ms)"

    def render(self) -> Text:
        data = self.bins
        if data is None or math.isnan(self.budget_ms):
            return super().render()
        width = max(self.content_size.width, 10)
        height = max(self.content_size.height, 3)
        return Text("\n").join(histogram_lines(data, self.budget_ms, width, height, self.late))


def histogram_lines(
    data: Histogram, budget_ms: float, width: int, height: int, late: int | None = None
) -> list[Text]:
    """The histogram in ``height`` lines, one of them the deadline's (pure: tests read it)."""
    body = height - 1 - (1 if data.overflow else 0)
    rows = LatencyHistogram._rows(data, body)
    n = len(data.counts)
    group = max(1, math.ceil(n / max(body, 1)))  # as LatencyHistogram merges the bins
    lows = [data.edges_ms[start] for start in range(0, n, group)]
    lows += [data.edges_ms[-1]] if data.overflow else []
    at = next((i for i, low in enumerate(lows) if low >= budget_ms), len(rows))
    label_w = max(len(label) for label, _ in rows)
    count_w = max(len(str(count)) for _, count in rows)
    largest = max(count for _, count in rows)
    bar_w = max(width - label_w - count_w - 3, 1)
    lines = []
    for i, (label, count) in enumerate(rows):
        if i == at:
            lines.append(_deadline(budget_ms, width, late))
        line = Text(label.rjust(label_w) + " ", style="dim", no_wrap=True, overflow="crop")
        line.append(_bar(count, largest, bar_w).ljust(bar_w), style="bold")
        line.append(" " + str(count).rjust(count_w))
        lines.append(line)
    if at >= len(rows):
        lines.append(_deadline(budget_ms, width, late))
    return lines


def _deadline(budget_ms: float, width: int, late: int | None) -> Text:
    words = f" deadline {fmt_ms(budget_ms)} ms" + (f", {late} late " if late is not None else " ")
    side = max((width - len(words)) // 2, 2)
    return Text("╌" * side + words + "╌" * side, style="bold red", no_wrap=True, overflow="crop")
