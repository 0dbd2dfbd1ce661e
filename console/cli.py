"""``safelab``: the headless command line. Every experiment the console runs, scriptable.

Errors a user can fix print one line (``safelab: error: what is wrong: what to do``) and exit
non-zero; an interrupted run exits 130 after saying which run kept its trials. Human output goes
to stdout as Rich tables; ``--json``/``--csv`` print machine-readable output instead, and
progress (on a terminal) goes to stderr so pipes stay clean.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from console import render
from drivers.bench.compare import compare_runs
from drivers.bench.export import export_text, run_document, run_stats
from drivers.bench.runner import PAPER_DATA, Mode, RunConfig
from drivers.bench.store import ResultsStore
from drivers.errors import PinError, SafeLabError
from drivers.runs import RunHandle, RunSnapshot, SigningRun
from drivers.tokens.base import HashOn, Token
from drivers.tokens.discovery import discover
from drivers.tokens.pin import run_pin_provider
from drivers.tokens.registry import DEFAULT_TOKEN
from screens.widgets.format import fmt_ms

stdout = Console()
stderr = Console(stderr=True)


def fail(error: SafeLabError) -> None:
    stderr.print(
        f"safelab: error: {error.one_line()}", markup=False, highlight=False, soft_wrap=True
    )
    sys.exit(error.exit_code)


class SafeLabGroup(click.Group):
    """Turns every :class:`SafeLabError` into one line and an exit code; no traceback walls."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SafeLabError as error:
            fail(error)


def open_store(ctx: click.Context) -> ResultsStore:
    return ResultsStore(ctx.obj.get("db"))


@click.group(cls=SafeLabGroup, invoke_without_command=True)
@click.option(
    "--db",
    type=click.Path(dir_okay=True, path_type=Path),
    envvar="SAFELAB_DB",
    help="Results database (default: the user's data directory).",
)
@click.version_option(package_name="safelab")
@click.pass_context
def main(ctx: click.Context, db: Path | None) -> None:
    """SAFE Lab: how slow is a hardware-held key at signing, and what does that cost protocols."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    if ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            ctx.invoke(console_command)
        else:
            click.echo(ctx.get_help())


@main.command("console")
@click.option("--ansi", is_flag=True, help="Use the terminal's own 16-colour palette.")
@click.option(
    "--token",
    "token_spec",
    metavar="SPEC",
    help="Start with this token (any spec, e.g. iotsafe:emulated;profile=paper-sim;speed=0.05).",
)
@click.pass_context
def console_command(ctx: click.Context, ansi: bool = False, token_spec: str | None = None) -> None:
    """Open the Textual console (also what `safelab` alone does on a terminal)."""
    from console.app import find_triage, run_console  # Textual loads only for the console
    from screens.lab import Lab

    lab = Lab(db_path=ctx.obj.get("db"), triage=find_triage())
    if token_spec:
        from screens.tokens import choice_for_spec

        lab.token = choice_for_spec(token_spec)  # a bad spec: one line, before the console
    run_console(lab, ansi_color=ansi)


@main.command()
@click.option(
    "--module",
    "modules",
    multiple=True,
    metavar="PATH",
    help="A PKCS#11 module to look at (repeatable), besides the well-known ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tokens(modules: tuple[str, ...], as_json: bool) -> None:
    """List every token SAFE Lab can find: built-in keys and PKCS#11 slots, tokens and keys."""
    found = discover(list(modules))
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
        return
    for table in render.tokens_table(found):
        stdout.print(table)


def _terminal_prompt(token: Token) -> str | None:
    """The run service's PIN step on a terminal: shows the token's tries left, asks once."""
    if not sys.stdin.isatty():
        raise PinError(
            f"token {token.info.label!r} needs a user PIN and there is no terminal to ask",
            "give it with --pin-env VAR or --pin-fd N",
        )
    status = token.pin_status()
    return getpass.getpass(f"PIN for {token.info.label!r} (PIN status: {status}): ") or None


def _data_option(data: str | None, data_hex: str | None) -> bytes:
    if data is not None and data_hex is not None:
        raise SafeLabError("--data and --data-hex both given", "give one of them")
    if data_hex is not None:
        try:
            return bytes.fromhex(data_hex)
        except ValueError:
            raise SafeLabError(
                f"--data-hex {data_hex!r} is not hex", "give pairs of hex digits"
            ) from None
    return data.encode() if data is not None else PAPER_DATA


@main.command()
@click.option(
    "--token",
    "token_uri",
    metavar="URI",
    help=f"Token to sign with (default {DEFAULT_TOKEN}; local_sw/openssl_cli pick "
    "their own). PKCS#11: pkcs11:token=LABEL;object=KEY?module-path=/path.so",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default="sign_only",
    show_default=True,
    help="What each trial times (see README).",
)
@click.option("-n", "n", type=int, default=100, show_default=True, help="Timed trials.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed trials first.")
@click.option("--data", help="Data to sign (default: the paper's 32-byte string).")
@click.option("--data-hex", help="Data to sign, as hex.")
@click.option(
    "--threshold-ms",
    type=float,
    default=1000.0,
    show_default=True,
    help="Count trials slower than this.",
)
@click.option(
    "--hash-on",
    type=click.Choice(["host", "token"]),
    default="host",
    show_default=True,
    help="Hash on the host (CKM_ECDSA) or on the token.",
)
@click.option("--key", "key_label", help="Key label, if the URI names none.")
@click.option("--pin-env", metavar="VAR", help="Read the PIN from this environment variable.")
@click.option("--pin-fd", type=int, metavar="N", help="Read the PIN from file descriptor N.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the samples as CSV.")
@click.option("--paper", is_flag=True, help="Show the paper's Table 3 row for the mode.")
@click.pass_context
def sign(
    ctx: click.Context,
    token_uri: str | None,
    mode: str,
    n: int,
    warmup: int,
    data: str | None,
    data_hex: str | None,
    threshold_ms: float,
    hash_on: str,
    key_label: str | None,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
    as_csv: bool,
    paper: bool,
) -> None:
    """Measure signing latency on a token (the paper's Table 3)."""
    run_mode = Mode(mode)
    config = RunConfig(
        mode=run_mode,
        n=n,
        warmup=warmup,
        data=_data_option(data, data_hex),
        threshold_ms=threshold_ms,
        hash_on=HashOn(hash_on),
        key_selector=key_label,
    )
    config.validate()
    handle = RunHandle(
        SigningRun(config, token_uri),
        db_path=ctx.obj.get("db"),
        pin_provider=run_pin_provider(pin_env, pin_fd, _terminal_prompt),
    )
    with _progress(stderr.is_terminal, n) as on_progress:
        if on_progress is not None:
            handle.subscribe(on_progress)
        outcome = handle.run()
    outcome.raise_for_error()
    result = outcome.result
    with open_store(ctx) as store:
        if as_json:
            click.echo(json.dumps(run_document(store, result.run_id), indent=2, default=str))
        elif as_csv:
            click.echo(export_text(store, result.run_id, "csv"), nl=False)
        else:
            token = outcome.meta.token if outcome.meta else None
            label = render.run_label(
                run_mode.value, token.label if token else "?", bool(token and token.emulated)
            )
            stdout.print(render.table3(result.stats, label, run_mode.value, paper))
            stdout.print(render.phase_table(result.stats))
            for note in result.notes:
                stdout.print(f"note: {note}", highlight=False)
            stdout.print(
                f"run {result.run_id} stored in {store.path} ({result.status})", highlight=False
            )


class _progress:
    """A Rich progress bar on stderr while trials run (only on a terminal)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("P50 {task.fields[p50]} ms"),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )

    def __enter__(self) -> Callable[[RunSnapshot], None] | None:
        if not self.enabled:
            return None
        self.bar.start()
        task = self.bar.add_task("signing", total=self.total, p50="–")

        def on_progress(update: RunSnapshot) -> None:
            fields: dict[str, Any] = {"completed": update.done}
            if update.stats is not None:
                fields["p50"] = fmt_ms(update.stats.p50_ms)
            if update.meta is not None and update.meta.token is not None:
                fields["description"] = f"{update.meta.condition} on {update.meta.token.label}"
            self.bar.update(task, **fields)

        return on_progress

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


@main.group()
def runs() -> None:
    """Stored runs: list, show, export, compare."""


@runs.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List stored runs, newest first."""
    with open_store(ctx) as store:
        records = store.list_runs(limit)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
    elif records:
        stdout.print(render.runs_table(records))
    else:
        stdout.print("no runs stored yet: try `safelab sign`")


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--paper", is_flag=True, help="Show the paper's row for the mode.")
@click.pass_context
def runs_show(ctx: click.Context, run_id: int, as_json: bool, paper: bool) -> None:
    """Show one run: metadata, Table 3 row, per-phase times."""
    with open_store(ctx) as store:
        if as_json:
            click.echo(json.dumps(run_document(store, run_id), indent=2, default=str))
            return
        record = store.get_run(run_id)
        if record.experiment == "paper":
            from console.cli_paper import print_document

            print_document(record.extra.get("paper", {}))
            return
        if record.experiment == "table7":
            from console.cli_table7 import print_table7

            print_table7(record.extra.get("table7", {}))
            return
        stats = run_stats(store, record).final_snapshot()
    stdout.print(render.run_details(record))
    label = render.run_label(record.mode, record.token.get("label", ""), record.emulated)
    stdout.print(render.table3(stats, label, record.mode, paper))
    stdout.print(render.phase_table(stats, record.experiment))


@runs.command("export")
@click.argument("run_id", type=int)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@click.pass_context
def runs_export(ctx: click.Context, run_id: int, fmt: str, output: Path | None) -> None:
    """Export a run as JSON (metadata, summary, samples) or CSV (samples)."""
    with open_store(ctx) as store:
        text = export_text(store, run_id, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise SafeLabError(
            f"cannot write {output} ({exc.strerror})", "choose a writable path with -o"
        ) from None
    stderr.print(f"run {run_id} written to {output}", highlight=False)


@runs.command("compare")
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_compare(ctx: click.Context, run_a: int, run_b: int, as_json: bool) -> None:
    """Compare run B with run A: ratio of medians and of P99, with sample counts."""
    with open_store(ctx) as store:
        comparison = compare_runs(store, run_a, run_b)
    if as_json:
        click.echo(json.dumps(comparison.as_dict(), indent=2))
    else:
        stdout.print(render.comparison_table(comparison))


def _register_card_commands() -> None:
    from console import (
        cli_algs,
        cli_card,
        cli_paper,
        cli_pattern,
        cli_proto,
        cli_ssdtf,
        cli_table7,
        cli_web,
    )

    cli_algs.register(main)
    cli_card.register(main)
    cli_proto.register(main)
    cli_ssdtf.register(main)
    cli_paper.register(main)
    cli_web.register(main)
    cli_pattern.register(main)
    cli_table7.register(main)


_register_card_commands()
