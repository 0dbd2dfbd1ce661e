"""``safelab table7``: the paper's Table 7 computed, beside the paper's own verdicts.

Thin: builds a :class:`~drivers.runs.table7.Table7Run`, gives it the PIN step (the emulated
SIM's lab PIN without asking) and prints the outcome. The verdict rules and their thresholds
are in :mod:`drivers.table7.verdicts` and the README ("Table 7, computed").
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from drivers.runs import RunHandle, RunSnapshot
from drivers.tokens.pin import run_pin_provider, with_emulator_lab_pin

stdout = Console()
stderr = Console(stderr=True)


def _figures(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "–"
    if cell["verdict"] is None:
        return f"not measured: {cell['reason']}"
    miss = cell["deadline_miss_rate"]
    return (
        f"{cell['source']}: P50 {cell['p50_ms']:.0f} / P99 {cell['p99_ms']:.0f} ms vs "
        f"{cell['budget_ms']:.0f} ms, misses {miss:.0%} of {cell['events']}"
        + (f" (run {cell['run_id']})" if cell.get("run_id") else "")
    )


def table7_table(doc: dict[str, Any]) -> Table:
    """The computed Table 7 (also used by ``safelab paper --table7``)."""
    table = Table(title="Table 7, computed (paper's verdict -> SAFE Lab's)", show_lines=True)
    for column in ("pattern", "before", "why (before)", "remedy", "after", "why (after)"):
        table.add_column(column)
    for row in doc["rows"]:
        paper = row["paper"]
        cells = [row.get("before"), row.get("after")]
        shown = [
            f"{p} -> {c['verdict'] or '?'}" if c else p
            for p, c in zip((paper["before"], paper["after"]), cells, strict=True)
        ]
        remedy = paper["remedy"] + (f" [{row['not_applied']}]" if row["not_applied"] else "")
        table.add_row(
            row["pattern"],
            shown[0],
            _figures(cells[0]) + (f"\n{cells[0]['decided_by']}" if cells[0] else ""),
            remedy,
            shown[1],
            _figures(cells[1]) + (f"\n{cells[1]['decided_by']}" if cells[1] else ""),
        )
    return table


def print_table7(doc: dict[str, Any]) -> None:
    stdout.print(table7_table(doc))
    rules = doc["rules"]
    stdout.print(
        f"rules: ○ {rules['good']}; △ {rules['design']}; × {rules['hard']}. "
        f"Conditions: {doc['conditions']}",
        highlight=False,
        markup=False,
    )


def _progress(snapshot: RunSnapshot) -> None:
    detail = snapshot.detail
    running = getattr(detail, "running", "")
    if running:
        stderr.print(f"table7: {running} ...", highlight=False)


@click.command("table7")
@click.option("--token", "token_uri", default=None, help="Token spec (default: paper SIM).")
@click.option("--link", default=None, help="Emulated link for every cell (spec or profile).")
@click.option("--quick", is_flag=True, help="4 events per cell, intervals capped at 1 s.")
@click.option("--events", type=click.IntRange(1, 10_000), default=None)
@click.option("--pattern", "patterns", multiple=True, help="Only these patterns.")
@click.option("--no-measure", is_flag=True, help="Predicted cells only (the what-if engine).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.pass_context
def table7(
    ctx: click.Context,
    token_uri: str | None,
    link: str | None,
    quick: bool,
    events: int | None,
    patterns: tuple[str, ...],
    no_measure: bool,
    as_json: bool,
    pin_env: str | None,
    pin_fd: int | None,
) -> None:
    """Each pattern before and after the paper's remedies, judged ○/△/× beside the paper."""
    from drivers.runs.table7 import TABLE7_TOKEN, Table7Run

    spec = Table7Run(
        token_uri or TABLE7_TOKEN,
        link=link,
        quick=quick,
        events=events,
        patterns=patterns,
        measure=not no_measure,
    )
    handle = RunHandle(
        spec,
        db_path=ctx.find_root().obj.get("db"),
        pin_provider=with_emulator_lab_pin(run_pin_provider(pin_env, pin_fd)),
        on_snapshot=_progress if stderr.is_terminal else None,
    )
    outcome = handle.run()
    outcome.raise_for_error()
    doc = outcome.result.as_dict()
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        print_table7(doc)
        stdout.print(outcome.text, highlight=False, markup=False)


def register(group: click.Group) -> None:
    group.add_command(table7)
