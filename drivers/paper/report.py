"""The `safelab paper --report DIR` report: one self-contained HTML file and a Markdown twin.

Plots are where a reader would rather look than read: each Table 3 row's latency histogram and
CDF with the paper's summary points on it, Table 6 as bars (software versus token, the token's
signing time stacked inside its bar, the paper's figures as markers), and the phase breakdown
of the token's runs. matplotlib draws them (Agg backend, no display); the HTML embeds them as
base64 PNG, so the file opens anywhere with no network. The Markdown file links the same PNGs,
written beside it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.bench.paper import TABLE3, TABLE6
from drivers.errors import SafeLabError
from drivers.paper.figures import Figure, Verdict
from drivers.paper.result import PaperResult

Samples = Callable[[int], Sequence[tuple[float, dict[str, float]]]]
"""run id → its samples as (total ms, {phase: ms})."""

PAPER_MODE = {"openssl_cli": "local_sw", "sign_only": "sign_only", "total": "total"}


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    images: tuple[Path, ...]


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display, safe from any thread)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(figure: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    _pyplot().close(figure)
    return buffer.getvalue()


def table3_plot(result: PaperResult, samples: Samples) -> bytes | None:
    """Per Table 3 row: histogram and CDF of every trial, the paper's P50/P90/P99 marked."""
    rows = [(mode, run) for mode, run in result.table3_runs.items() if samples(run)]
    if not rows:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(len(rows), 2, figsize=(10, 2.8 * len(rows)), squeeze=False)
    for (mode, run), (hist_ax, cdf_ax) in zip(rows, axes, strict=True):
        totals = sorted(total for total, _ in samples(run))
        paper = TABLE3.get(PAPER_MODE.get(mode, ""))
        hist_ax.hist(totals, bins=min(40, max(5, len(totals) // 3)), color="#4878a8")
        hist_ax.set_title(f"{mode}: run {run}, n = {len(totals)}")
        hist_ax.set_xlabel("ms")
        cdf_ax.step(totals, [(i + 1) / len(totals) for i in range(len(totals))], where="post")
        if paper is not None:
            points = ((50, paper.p50_ms), (90, paper.p90_ms), (99, paper.p99_ms))
            cdf_ax.scatter(
                [v for _, v in points],
                [p / 100 for p, _ in points],
                color="#c04040",
                zorder=3,
                label="paper P50/P90/P99",
            )
            hist_ax.axvline(paper.mean_ms, color="#c04040", linestyle="--", label="paper mean")
            hist_ax.legend(fontsize=7)
            cdf_ax.legend(fontsize=7, loc="lower right")
        cdf_ax.set_title("CDF")
        cdf_ax.set_xlabel("ms")
        cdf_ax.set_ylim(0, 1.02)
    figure.tight_layout()
    return _png(figure)


def table6_plot(result: PaperResult) -> bytes | None:
    """Software versus token per protocol (paper condition), the signing time stacked."""
    rows = [row for row in result.table6 if row.condition == "paper"] or list(result.table6)
    if not rows:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 3.6))
    x = list(range(len(rows)))
    width = 0.38
    software = [row.software_ms for row in rows]
    signing = [row.token_sign_ms for row in rows]
    rest = [max(row.token_ms - row.token_sign_ms, 0.0) for row in rows]
    axis.bar([i - width / 2 for i in x], software, width, label="software key", color="#70a070")
    axis.bar([i + width / 2 for i in x], rest, width, label="token: rest", color="#4878a8")
    axis.bar(
        [i + width / 2 for i in x],
        signing,
        width,
        bottom=rest,
        label="token: the card's time (signing; VPN: + certificate read)",
        color="#a8c8e8",
    )
    for i, row in enumerate(rows):
        paper = TABLE6.get(row.protocol)
        if paper is None:
            continue
        axis.scatter([i - width / 2], [paper.software_ms], marker="_", s=400, color="#c04040")
        axis.scatter([i + width / 2], [paper.iot_safe_ms], marker="_", s=400, color="#c04040")
    axis.scatter([], [], marker="_", color="#c04040", label="paper")
    axis.set_xticks(x, [row.protocol for row in rows])
    axis.set_ylabel("connection established, mean ms")
    axis.legend(fontsize=8)
    return _png(figure)


def phases_plot(result: PaperResult, samples: Samples) -> bytes | None:
    """Mean time per phase of the token's runs (Table 3 total, Table 6 token rows)."""
    bars: list[tuple[str, dict[str, float]]] = []
    total_run = result.table3_runs.get("total")
    if total_run is not None and samples(total_run):
        bars.append((f"Table 3 total (run {total_run})", _phase_means(samples(total_run))))
    for row in result.table6:
        if row.condition == "paper" and samples(row.token_run):
            means = _phase_means(samples(row.token_run))
            means.pop("sign", None)  # inside the handshake: shown in the Table 6 plot
            if "cert" in means and "connect" in means:  # the certificate read is inside connect
                means["connect"] = max(means["connect"] - means["cert"], 0.0)
            bars.append((f"{row.protocol} token (run {row.token_run})", means))
    if not bars:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 0.6 * len(bars) + 1.2))
    names = list(dict.fromkeys(name for _, means in bars for name in means))
    colours = plt.get_cmap("tab10")
    for y, (_label, means) in enumerate(bars):
        left = 0.0
        for index, name in enumerate(names):
            value = means.get(name, 0.0)
            axis.barh(y, value, left=left, color=colours(index % 10))
            left += value
    from matplotlib.patches import Patch  # an empty bar gives its legend entry no colour

    handles = [Patch(color=colours(index % 10), label=name) for index, name in enumerate(names)]
    axis.set_yticks(range(len(bars)), [label for label, _ in bars])
    axis.set_xlabel("mean ms")
    axis.legend(
        handles=handles,
        fontsize=7,
        ncols=min(len(names), 6),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.3),
    )
    return _png(figure)


def _phase_means(rows: Sequence[tuple[float, dict[str, float]]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for _, phases in rows:
        for name, value in phases.items():
            if not name.startswith("n_"):
                sums[name] = sums.get(name, 0.0) + value
    return {name: total / len(rows) for name, total in sums.items()}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if unit == "ms" else f"{value:g}"


def _figure_rows(figures: Sequence[Figure]) -> list[list[str]]:
    return [
        [
            f.table,
            f.row,
            f.quantity,
            _fmt(f.measured, f.unit),
            _fmt(f.paper, f.unit),
            f"{f.ratio:.3f}" if f.ratio is not None else "–",
            f.tolerance.describe(),
            f.verdict.value.upper(),
            f.note,
        ]
        for f in figures
    ]


HEADERS = ["table", "row", "figure", "measured", "paper", "ratio", "tolerance", "verdict", "note"]


def _provenance_lines(result: PaperResult) -> list[str]:
    lines = []
    for key, value in result.provenance.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        lines.append(f"{key}: {value}")
    return lines


def _headline(result: PaperResult) -> str:
    counts = result.counts()
    verdict = "REPRODUCED" if result.passed else "NOT REPRODUCED"
    return (
        f"{verdict}: {counts['pass']} pass, {counts['fail']} fail, {counts['info']} not judged "
        f"({result.status}{', ' + result.reason if result.reason else ''}; "
        f"{result.elapsed_s:.0f} s)"
    )


def _markdown(result: PaperResult, images: list[tuple[str, Path]]) -> str:
    out = ["# SAFE Lab: the paper's measurements reproduced", "", f"**{_headline(result)}**", ""]
    out += ["## Figures", "", "| " + " | ".join(HEADERS) + " |"]
    out.append("|" + "---|" * len(HEADERS))
    for row in _figure_rows(result.figures):
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    out += ["", "## Provenance", ""] + [f"- {line}" for line in _provenance_lines(result)]
    if result.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    for title, path in images:
        out += ["", f"## {title}", "", f"![{title}]({path.name})"]
    return "\n".join(out) + "\n"


def _html(result: PaperResult, images: list[tuple[str, bytes]]) -> str:
    esc = html.escape
    colour = {"PASS": "#2a7a2a", "FAIL": "#b02020", "INFO": "#666"}
    rows = []
    for cells in _figure_rows(result.figures):
        tds = "".join(f"<td>{esc(c)}</td>" for c in cells[:-2])
        verdict = cells[-2]
        tds += f'<td style="color:{colour[verdict]};font-weight:bold">{verdict}</td>'
        tds += f"<td>{esc(cells[-1])}</td>"
        rows.append(f"<tr>{tds}</tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    provenance = "".join(f"<li>{esc(line)}</li>" for line in _provenance_lines(result))
    notes = "".join(f"<li>{esc(note)}</li>" for note in result.notes)
    plots = "".join(
        f'<h2>{esc(title)}</h2><img alt="{esc(title)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for title, png in images
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<title>SAFE Lab: the paper reproduced</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}td:nth-child(-n+3),th{text-align:left}"
        "img{max-width:100%}</style></head><body>"
        f"<h1>SAFE Lab: the paper's measurements reproduced</h1><p><b>{esc(_headline(result))}"
        f"</b></p><h2>Figures</h2><table><tr>{head}</tr>{''.join(rows)}</table>"
        f"<h2>Provenance</h2><ul>{provenance}</ul>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + plots
        + "</body></html>\n"
    )


def write_report(result: PaperResult, samples: Samples, out_dir: Path) -> ReportFiles:
    """Write ``paper-report.html`` (self-contained) and ``paper-report.md`` (+ PNGs)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SafeLabError(
            f"cannot create the report directory {out_dir} ({exc.strerror})",
            "give --report a directory you can write to",
        ) from None
    made = [
        ("Table 3: every trial against the paper's summary", table3_plot(result, samples)),
        ("Table 6: software key versus token", table6_plot(result)),
        ("Where the token's time goes (phase means)", phases_plot(result, samples)),
    ]
    images = [(title, png) for title, png in made if png is not None]
    paths = []
    for index, (_title, png) in enumerate(images, 1):
        path = out_dir / f"paper-report-{index}.png"
        path.write_bytes(png)
        paths.append(path)
    markdown = out_dir / "paper-report.md"
    markdown.write_text(
        _markdown(result, [(t, p) for (t, _), p in zip(images, paths, strict=True)])
    )
    page = out_dir / "paper-report.html"
    page.write_text(_html(result, images))
    return ReportFiles(page, markdown, tuple(paths))


__all__ = ["ReportFiles", "Verdict", "write_report"]
