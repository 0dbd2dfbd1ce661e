"""``safelab paper``: one command reproduces the paper's measurements and judges every figure.

Thin: it builds a :class:`~drivers.runs.paper.PaperRun`, gives it the PIN step, prints
progress on stderr, the figures on stdout (or JSON), writes the report if asked, and exits
non-zero when a figure falls outside its tolerance (2) or the run did not finish (its error's
code), so CI and scripts can rely on it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from drivers.bench.store import ResultsStore
from drivers.runs import RunHandle, RunSnapshot
from drivers.tokens.pin import run_pin_provider, with_emulator_lab_pin
from screens.widgets.tables import paper_figures_table

stdout = Console()
stderr = Console(stderr=True)

FIGURES_OUTSIDE_TOLERANCE = 2
"""Exit code when the run finished but some figure is outside its tolerance."""


def _progress(snapshot: RunSnapshot) -> None:
    if not snapshot.step:
        return
    line = f"[{snapshot.step_index}/{snapshot.steps}] {snapshot.step}"
    if snapshot.planned:
        line += f": {snapshot.done}/{snapshot.planned}"
    stderr.print(line, style="dim", highlight=False)


def _beside(text: str) -> None:
    stderr.print(f"[beside] {text}", style="dim", highlight=False, markup=False)


def _throttled(
    snapshot_printer: Callable[[RunSnapshot], None],
    beside_printer: Callable[[str], None] = _beside,
) -> Callable[[RunSnapshot], None]:
    """Print a step when it starts and when it ends, not every snapshot; and each new line of
    the work running beside the main line (Table 3 on its own emulated card)."""
    seen: dict[int, int] = {}
    beside = [""]

    def show(snapshot: RunSnapshot) -> None:
        text = getattr(snapshot.detail, "beside", "")
        if text and text != beside[0]:
            beside[0] = text
            beside_printer(text)
        if not snapshot.step_index:
            return
        last = seen.get(snapshot.step_index)
        finished = snapshot.planned and snapshot.done >= snapshot.planned
        if last is None or (finished and last < snapshot.done):
            seen[snapshot.step_index] = snapshot.done
            snapshot_printer(snapshot)

    return show


@click.command("paper")
@click.option(
    "--token",
    "token_uri",
    default=None,
    metavar="SPEC",
    help="The token (default: the emulated paper SIM, iotsafe:emulated;profile=paper-sim).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A demo in about a minute: fewer trials, the emulated card ten times faster.",
)
@click.option(
    "--protocols",
    default="vpn,mqtt,coap,https",
    show_default=True,
    help="Table 6 rows to run (the paper: all four).",
)
@click.option(
    "--link",
    metavar="SPEC|NAME",
    help="An emulated network link between every Table 6 and JWT client and its peer "
    "('rtt=100ms,loss=1%' or lte-m, nb-iot, gprs, satellite, wifi-lab): those figures are "
    "shown, not judged (the paper measured on localhost).",
)
@click.option(
    "--link-mode",
    type=click.Choice(["proxy", "kernel", "auto"]),
    default="proxy",
    show_default=True,
    help="proxy: loopback proxy (TCP loss modelled); kernel: namespaces + TUN (root).",
)
@click.option("--json", "as_json", is_flag=True, help="Everything as one JSON document.")
@click.option(
    "--sequential",
    is_flag=True,
    help="Run Table 3 before Table 6 even on the emulated card (default there: Table 3 runs "
    "beside Table 6 on a second emulated card in its own process).",
)
@click.option(
    "--table7",
    "with_table7",
    is_flag=True,
    help="Also compute Table 7 (pattern runs on the paper SIM at real speed; minutes).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write paper-report.html (self-contained) and paper-report.md with plots here.",
)
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.pass_context
def paper(
    ctx: click.Context,
    token_uri: str | None,
    quick: bool,
    protocols: str,
    link: str | None,
    link_mode: str,
    as_json: bool,
    sequential: bool,
    with_table7: bool,
    report_dir: Path | None,
    pin_env: str | None,
    pin_fd: int | None,
) -> None:
    """Reproduce the paper's Table 3, Table 6 and JWT figures under its own conditions.

    Every figure is shown beside the paper's with the ratio, the tolerance it is judged by
    and the verdict; the exit code is 2 when a judged figure is outside its tolerance.
    """
    from drivers.runs.paper import PaperRun

    wanted = tuple(p.strip() for p in protocols.split(",") if p.strip())
    spec = PaperRun.make(
        token_uri,
        quick=quick,
        protocols=wanted,
        table7=with_table7,
        link=link,
        link_mode=link_mode,
        sequential=sequential,
    )
    db = ctx.find_root().obj.get("db")
    listener = _throttled(_progress) if stderr.is_terminal or not as_json else None
    handle = RunHandle(
        spec,
        db_path=db,
        pin_provider=with_emulator_lab_pin(run_pin_provider(pin_env, pin_fd)),
        on_snapshot=listener,
    )
    outcome = handle.run()
    outcome.raise_for_error()
    result = outcome.result
    files = None
    if report_dir is not None:
        from drivers.paper.report import write_report

        with ResultsStore(db) as store:
            files = write_report(result, _sample_reader(store), report_dir)
    if as_json:
        document = result.as_dict()
        document["report"] = (
            {"html": str(files.html), "markdown": str(files.markdown)} if files else None
        )
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        print_document(result.as_dict())
        if files is not None:
            stdout.print(f"report: {files.html} and {files.markdown}", highlight=False)
    if not result.passed:
        sys.exit(FIGURES_OUTSIDE_TOLERANCE)


def _sample_reader(
    store: ResultsStore,
) -> Callable[[int], list[tuple[float, dict[str, float]]]]:
    """run id → [(total ms, {phase: ms})], read once per run (the report asks repeatedly)."""
    cache: dict[int, list[tuple[float, dict[str, float]]]] = {}

    def samples(run_id: int) -> list[tuple[float, dict[str, float]]]:
        if run_id not in cache:
            cache[run_id] = [
                (
                    total / 1e6,
                    {k: (v if k.startswith("n_") else v / 1e6) for k, v in phases.items()},
                )
                for _, total, phases in store.samples(run_id)
            ]
        return cache[run_id]

    return samples


def print_document(doc: dict[str, Any]) -> None:
    """The figures of a paper run (its ``as_dict()``, or a stored ``paper`` run's), one
    section per paper table; also what `safelab runs show` prints for a paper run."""
    token = doc.get("provenance", {}).get("token", {})
    label = f"{token.get('label')} {'[EMULATED]' if token.get('emulated') else '(real)'}"
    stdout.print(f"The paper, reproduced on {label}", style="bold", highlight=False)
    figures = doc.get("figures", [])
    for name in dict.fromkeys(f["table"] for f in figures):
        stdout.print(_section(name, [f for f in figures if f["table"] == name]))
    for f in figures:
        if f["note"] and f["verdict"] != "info":
            stdout.print(
                f"note: {f['table']} {f['row']} {f['quantity']}: {f['note']}",
                style="dim",
                highlight=False,
            )
    for note in doc.get("notes", []):
        stdout.print(f"note: {note}", style="dim", highlight=False)
    if doc.get("table7"):
        from console.cli_table7 import print_table7

        print_table7(doc["table7"])
    link = doc.get("provenance", {}).get("link")
    if link:
        stdout.print(
            f"link: {link.get('spec')} ({link.get('mode')} mode): Table 6 and JWT figures are "
            "shown, not judged (the paper measured on localhost)",
            highlight=False,
        )
    peers = doc.get("provenance", {}).get("peers", {})
    if peers:
        stdout.print("peers: " + "; ".join(f"{p}: {w}" for p, w in peers.items()), highlight=False)
    counts = doc.get("verdicts", {})
    passed = bool(doc.get("passed"))
    verdict = "REPRODUCED" if passed else "NOT REPRODUCED"
    status = doc.get("status", "")
    stdout.print(
        Text(
            f"{verdict}: {counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
            f"{counts.get('info', 0)} not judged; {status}; {doc.get('elapsed_s', 0):.0f} s",
            style="bold green" if passed else "bold red",
        )
    )


def _section(name: str, figures: list[dict[str, Any]]) -> Table:
    """One table per paper table; short columns so it holds in 80 columns."""
    return paper_figures_table(name, figures)


def register(group: click.Group) -> None:
    group.add_command(paper)
