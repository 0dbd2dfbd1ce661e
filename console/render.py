"""Rich renderables for the CLI: tables in the shape of the paper's Table 3, token lists, runs.

Kept apart from the commands so the console screens can reuse the same rows later.
"""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text

from drivers.bench.compare import Comparison
from drivers.bench.stats import StatsSnapshot
from drivers.bench.store import RunRecord
from drivers.tokens.discovery import Discovery, TokenEntry
from screens.widgets import protocol_tables, tables


def run_label(mode: str, token_label: str, emulated: bool) -> Text:
    """The measured row's name: ``[EMULATED]`` first when it is one, then mode and token."""
    return tables.run_label(f"{mode}  {token_label}", emulated)


def table3(stats: StatsSnapshot, label: Text, mode: str, show_paper: bool) -> Table:
    """The console's Table 3 (same code), titled, with the paper's row only if asked."""
    table = tables.table3(
        stats, label, mode, stats.threshold_ms, with_paper=show_paper, label_width=None
    )
    table.title = "Signing latency (ms)" + (" — dim row: the paper's SIM" if show_paper else "")
    table.title_justify = "left"
    notes = [str(table.caption)] if table.caption else []
    table.caption = "\n".join([*notes, f"percentiles: {stats.percentile_method}"])
    table.caption_justify = "left"
    return table


def phase_table(stats: StatsSnapshot, experiment: str = "sign") -> Table:
    """Token phases for signing runs; connect/handshake/sign/ready for protocol runs."""
    if experiment == "proto":
        table = protocol_tables.protocol_phase_table(stats)
    else:
        table = tables.phase_table(stats)
    table.title = "Per phase (ms)"
    table.title_justify = "left"
    return table


def comparison_table(comparison: Comparison) -> Table:
    table = tables.comparison_table(comparison)
    table.title = f"Run {comparison.b.id} (B) versus run {comparison.a.id} (A)"
    table.title_justify = "left"
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
