"""Rich renderables for the screens: Table 3 with the paper's row, phases, APDUs, comparisons.

Compact (no outer box) so the signing lab fits in 80×24; every emulated result says so in
words, not only in colour, because NO_COLOR and monochrome terminals must read the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from drivers.bench.compare import Comparison
from drivers.bench.paper import NO_PAPER_ROW, paper_row_for
from drivers.bench.stats import StatsSnapshot
from drivers.tokens.base import PHASES
from screens.widgets.format import fmt_ms, threshold_label


def _table(*columns: str, first_left: bool = True) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        expand=False,
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 and first_left else "right", no_wrap=True)
    return table


def run_label(token_label: str, emulated: bool) -> Text:
    """The measured row's name: [EMULATED] first (never cut off) when it is one, then the token."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if emulated:
        text.append("[EMULATED] ", style="bold")
    text.append(token_label, style="bold")
    return text


def table3(
    stats: StatsSnapshot | None,
    label: Text,
    mode: str,
    threshold_ms: float,
    *,
    with_paper: bool = True,
    label_width: int | None = 22,
) -> Table:
    """The measured row in the paper's Table 3 columns, with the paper's row for the mode."""
    table = _table("run", "n", "mean", "σ", "P50", "P90", "P99", threshold_label(threshold_ms))
    table.columns[0].max_width = label_width
    table.columns[0].overflow = "ellipsis"
    if stats is None or stats.count == 0:
        table.add_row(label, "0", *("–" for _ in range(6)))
    else:
        table.add_row(
            label,
            str(stats.count),
            fmt_ms(stats.mean_ms),
            fmt_ms(stats.stdev_ms),
            fmt_ms(stats.p50_ms),
            fmt_ms(stats.p90_ms),
            fmt_ms(stats.p99_ms),
            str(stats.over_threshold),
        )
    paper = paper_row_for(mode) if with_paper else None
    if with_paper and paper is None and mode in NO_PAPER_ROW:
        table.caption = f"no paper row: {NO_PAPER_ROW[mode]}"
    if paper is not None:
        table.add_row(
            Text(f"paper {paper.mode}"),
            str(paper.n),
            fmt_ms(paper.mean_ms),
            fmt_ms(paper.stdev_ms),
            fmt_ms(paper.p50_ms),
            fmt_ms(paper.p90_ms),
            fmt_ms(paper.p99_ms),
            f"{paper.over_1s} (>1 s)" if threshold_ms != 1000 else str(paper.over_1s),
            style="dim",
        )
    return table


def phase_table(stats: StatsSnapshot | None) -> Table:
    """Per-phase mean, P50, P99, and each phase's share of the summed phase means."""
    table = _table("phase", "mean", "P50", "P99", "share")
    phases = stats.phases if stats is not None else {}
    total = sum(summary.mean_ms for summary in phases.values()) or 1.0
    for phase in PHASES:
        summary = phases.get(phase)
        if summary is None:
            table.add_row(phase, "–", "–", "–", "", style="dim")
            continue
        table.add_row(
            phase,
            fmt_ms(summary.mean_ms),
            fmt_ms(summary.p50_ms),
            fmt_ms(summary.p99_ms),
            f"{summary.mean_ms / total:.0%}",
        )
    return table


def apdu_table(entries: Sequence[object]) -> Table:
    """The last APDUs of a card token's trace (duck-typed: ``name``, ``sw``, ``duration_ms``).

    The meaning of the status word comes last, so a narrow panel cuts it rather than the time.
    """
    table = _table("APDU", "SW", "ms", "meaning")
    table.columns[0].max_width = 16
    table.columns[0].overflow = "ellipsis"
    table.columns[1].min_width = 4
    table.columns[2].min_width = 5
    table.columns[3].justify = "left"
    table.columns[3].overflow = "ellipsis"
    table.columns[3].max_width = 24
    for entry in entries:
        sw = getattr(entry, "sw", None)
        table.add_row(
            str(getattr(entry, "name", entry)),
            f"{sw:04X}" if isinstance(sw, int) else "",
            fmt_ms(getattr(entry, "duration_ms", None)),
            str(getattr(entry, "sw_meaning", "")).removeprefix(f"{sw:04X} " if sw else ""),
        )
    return table


def comparison_table(comparison: Comparison) -> Table:
    """A and B side by side with B/A ratios of P50 and P99.

    Row names and the ratio never wrap; A's and B's values fold inside their own columns, so
    a long token label (``[EMULATED] IoT SAFE emulated card …``) cannot push B off an 80-column
    screen.
    """
    table = _table("", f"A #{comparison.a.id}", f"B #{comparison.b.id}", "B / A")
    for column in table.columns[1:3]:
        column.no_wrap = False
        column.overflow = "fold"
    a, b = comparison.a_stats, comparison.b_stats
    for name, left, right in (
        ("mode", comparison.a.mode, comparison.b.mode),
        ("token", _token_name(comparison.a), _token_name(comparison.b)),
        ("n", str(a.count), str(b.count)),
        ("mean", fmt_ms(a.mean_ms), fmt_ms(b.mean_ms)),
    ):
        table.add_row(name, left, right, "")
    table.add_row("P50", fmt_ms(a.p50_ms), fmt_ms(b.p50_ms), f"{comparison.p50_ratio:.2f}×")
    table.add_row("P90", fmt_ms(a.p90_ms), fmt_ms(b.p90_ms), "")
    table.add_row("P99", fmt_ms(a.p99_ms), fmt_ms(b.p99_ms), f"{comparison.p99_ratio:.2f}×")
    return table


def _token_name(record: object) -> str:
    token = getattr(record, "token", {}) or {}
    name = str(token.get("label") or getattr(record, "token_uri", ""))
    return name + (" [EMULATED]" if getattr(record, "emulated", False) else "")


VERDICT_STYLE = {"pass": "green", "fail": "bold red", "info": "dim"}


def paper_figures_table(
    title: str, figures: Sequence[dict[str, object]], *, with_tolerance: bool = True
) -> Table:
    """A `safelab paper` section (Table 3, Table 6 or JWT): ours beside the paper's, the
    ratio, what it is judged by and the verdict in words (PASS/FAIL/INFO, readable without
    colour). ``figures`` are :meth:`drivers.paper.figures.Figure.as_dict` documents."""
    columns = ["row", "figure", "ours", "paper", "ratio"]
    columns += ["judged by"] if with_tolerance else []
    table = Table(title=title, title_justify="left", pad_edge=False, box=box.SIMPLE_HEAD)
    for column in (*columns, "verdict"):
        left = column in ("row", "figure", "judged by")
        table.add_column(column, justify="left" if left else "right", overflow="fold")
    for f in figures:
        measured, paper, ratio = f["measured"], f["paper"], f["ratio"]
        ms = f["unit"] == "ms"
        cells = [
            str(f["row"]),
            str(f["quantity"]),
            "–" if measured is None else (f"{measured:.1f}" if ms else f"{measured:g}"),
            "–" if paper is None else f"{paper:g}",
            "–" if ratio is None else f"{ratio:.2f}",
        ]
        if with_tolerance:
            cells.append(str(f["tolerance"]).split(" (")[0])
        verdict = str(f["verdict"])
        table.add_row(*cells, Text(verdict.upper(), style=VERDICT_STYLE.get(verdict, "")))
    return table


def paper_verdict_line(document: dict[str, object]) -> Text:
    """REPRODUCED or NOT with the counts per verdict; then one short line per failed figure
    (ours, the paper's, the ratio), so the first screen says what missed without scrolling
    through the tables; and, under an emulated link, why the network figures are not judged."""
    counts = document.get("verdicts") or {}
    assert isinstance(counts, dict)
    passed = bool(document.get("passed"))
    text = Text(
        f"{'REPRODUCED' if passed else 'NOT REPRODUCED'}: {counts.get('pass', 0)} pass, "
        f"{counts.get('fail', 0)} fail, {counts.get('info', 0)} not judged",
        style="bold green" if passed else "bold red",
    )
    figures = document.get("figures") or []
    assert isinstance(figures, list)
    for f in figures:
        if f.get("verdict") != "fail":
            continue
        measured, paper, ratio = f.get("measured"), f.get("paper"), f.get("ratio")
        ours = "–" if measured is None else f"{measured:.1f}"
        against = "" if paper is None else f" vs {paper:g}"
        by = f" ({ratio:.2f})" if ratio is not None else ""
        text.append(f"\nFAIL {f['table']} {f['row']} {f['quantity']}: {ours}{against}{by}")
    provenance = document.get("provenance") or {}
    link = provenance.get("link") if isinstance(provenance, dict) else None
    if isinstance(link, dict):
        text.append(
            f"\nlink {link.get('spec')}: Table 6 and JWT shown, not judged (paper: localhost)",
            style="dim",
        )
    return text
