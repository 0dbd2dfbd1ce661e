"""Rich renderables for the CLI: tables in the shape of the paper's Table 3, token lists, runs.

Kept apart from the commands so the console screens can reuse the same rows later.
"""

from __future__ import annotations

import math
import time

from rich.table import Table
from rich.text import Text

from drivers.bench.compare import Comparison
from drivers.bench.paper import paper_row_for
from drivers.bench.stats import StatsSnapshot
from drivers.bench.store import RunRecord
from drivers.tokens.base import PHASES
from drivers.tokens.discovery import Discovery, TokenEntry


def fmt_ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value >= 100:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def run_label(record_mode: str, token_label: str, emulated: bool) -> Text:
    text = Text(f"{record_mode}  ")
    text.append(token_label, style="bold")
    if emulated:
        text.append("  [EMULATED]", style="yellow")
    return text


def table3(
    stats: StatsSnapshot,
    label: Text,
    mode: str,
    show_paper: bool,
    title: str = "Signing latency (ms)",
) -> Table:
    """Measured row (and the paper's row for the mode) with the paper's Table 3 columns."""
    over = (
        f">{stats.threshold_ms / 1000:g} s"
        if stats.threshold_ms >= 1000
        else (f">{stats.threshold_ms:g} ms")
    )
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("run", overflow="fold")
    for name in ("n", "mean", "σ", "P50", "P90", "P99", over):
        table.add_column(name, justify="right")
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
    paper = paper_row_for(mode) if show_paper else None
    if paper is not None:
        table.add_row(
            Text(f"paper {paper.mode} (IoT SAFE SIM)", style="dim"),
            str(paper.n),
            fmt_ms(paper.mean_ms),
            fmt_ms(paper.stdev_ms),
            fmt_ms(paper.p50_ms),
            fmt_ms(paper.p90_ms),
            fmt_ms(paper.p99_ms),
            f"{paper.over_1s} (>1 s)",
            style="dim",
        )
    return table


def phase_table(stats: StatsSnapshot) -> Table:
    table = Table(title="Per phase (ms)", title_justify="left")
    table.add_column("phase")
    for name in ("n", "mean", "P50", "P99"):
        table.add_column(name, justify="right")
    for phase in PHASES:
        summary = stats.phases.get(phase)
        if summary is None:
            continue
        table.add_row(
            phase,
            str(summary.count),
            fmt_ms(summary.mean_ms),
            fmt_ms(summary.p50_ms),
            fmt_ms(summary.p99_ms),
        )
    return table


def _token_rows(table: Table, entry: TokenEntry) -> None:
    keys = ", ".join(
        f"{k.label or k.key_id} ({k.curve}{'' if k.can_sign else ', no sign'}"
        f"{', cert' if k.has_certificate else ''})"
        for k in entry.keys
    ) or (entry.note or "–")
    identity = " ".join(filter(None, (entry.manufacturer, entry.model, entry.serial)))
    table.add_row(entry.uri, identity or "–", entry.pin_status or "–", keys)


def tokens_table(discovery: Discovery) -> list[Table]:
    tables = []
    builtin = Table(title="Built-in tokens", title_justify="left")
    for name in ("token (use with --token)", "identity", "PIN", "keys"):
        builtin.add_column(name, overflow="fold")
    for entry in discovery.builtin:
        _token_rows(builtin, entry)
    tables.append(builtin)
    for module in discovery.modules:
        title = f"PKCS#11 {module.path}" + (
            f" — {module.description}" if module.description else ""
        )
        table = Table(title=title, title_justify="left")
        for name in ("token (use with --token)", "identity", "PIN", "keys"):
            table.add_column(name, overflow="fold")
        if module.error:
            table.add_row(Text(module.error, style="red"), "", "", "")
        for entry in module.tokens:
            _token_rows(table, entry)
        for slot in module.empty_slots:
            table.add_row(
                Text(
                    f"slot {slot}" + ("" if "uninitialised" in slot else ": no token"), style="dim"
                ),
                "",
                "",
                "",
            )
        if not module.tokens and not module.empty_slots and not module.error:
            table.add_row(Text("no slots", style="dim"), "", "", "")
        tables.append(table)
    cards = Table(title="IoT SAFE cards", title_justify="left")
    for name in ("token (use with --token)", "what", "note"):
        cards.add_column(name, overflow="fold")
    for entry in discovery.cards:
        what = entry.label + (
            "" if not entry.emulated or "emulated" in entry.label else " [EMULATED]"
        )
        cards.add_row(entry.uri, what, entry.note)
    tables.append(cards)
    return tables


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def runs_table(records: list[RunRecord]) -> Table:
    table = Table(title="Stored runs", title_justify="left")
    for name, justify in (
        ("id", "right"),
        ("started", "left"),
        ("mode", "left"),
        ("token", "left"),
        ("n", "right"),
        ("status", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for record in records:
        token = record.token.get("label") or record.token_uri
        if record.emulated:
            token += " [EMULATED]"
        status = Text(record.status, style="green" if record.status == "complete" else "yellow")
        table.add_row(
            str(record.id),
            _when(record.started_at),
            record.mode,
            token,
            f"{record.n_samples}/{record.n_planned}",
            status,
        )
    return table


def run_details(record: RunRecord) -> Table:
    table = Table(show_header=False, box=None, title=f"Run {record.id}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("status", record.status + (f" ({record.reason})" if record.reason else "")),
        ("started", _when(record.started_at)),
        ("mode", f"{record.mode}: {record.extra.get('times', '')}"),
        ("token", record.token_uri + ("  [EMULATED]" if record.emulated else "")),
        (
            "identity",
            " ".join(
                filter(
                    None,
                    (
                        record.token.get("manufacturer"),
                        record.token.get("model"),
                        record.token.get("serial"),
                    ),
                )
            ),
        ),
        ("key", f"{record.extra.get('key', '')} {record.extra.get('curve', '')}"),
        ("trials", f"{record.n_samples} of {record.n_planned} (warm-up {record.warmup})"),
        ("data", f"{record.data_len} bytes, hash on {record.hash_on}"),
        ("host", record.host),
        ("versions", ", ".join(f"{k} {v}" for k, v in record.versions.items() if k != "platform")),
    ]
    for note in record.extra.get("notes", []):
        rows.append(("note", note))
    for name, value in rows:
        table.add_row(name, value)
    return table


def comparison_table(comparison: Comparison) -> Table:
    table = Table(title=f"Run {comparison.b.id} versus run {comparison.a.id}", title_justify="left")
    for name in ("run", "mode", "token", "n", "P50 ms", "P99 ms"):
        table.add_column(
            name, justify="right" if name in ("n", "P50 ms", "P99 ms") else "left", overflow="fold"
        )
    for record, stats in ((comparison.a, comparison.a_stats), (comparison.b, comparison.b_stats)):
        token = (record.token.get("label") or record.token_uri) + (
            " [EMULATED]" if record.emulated else ""
        )
        table.add_row(
            f"{'A' if record is comparison.a else 'B'} #{record.id}",
            record.mode,
            token,
            str(stats.count),
            fmt_ms(stats.p50_ms),
            fmt_ms(stats.p99_ms),
        )
    table.add_row(
        "B / A",
        "",
        "",
        "",
        f"{comparison.p50_ratio:.2f}×",
        f"{comparison.p99_ratio:.2f}×",
        style="bold",
    )
    return table
