"""``safelab pattern``: the optimisation lab from the command line.

``list`` shows the paper's six patterns (Table 7) and the toggles; ``run`` runs one pattern
on a token with toggles and parameters (``--set``); ``compare`` runs two toggle combinations
taking turns and prints both summaries with deltas and ratios. These commands only build run
specs (:mod:`drivers.runs.pattern`) and print outcomes; which toggle applies where is
:mod:`drivers.protocols.rules`' call.
"""

from __future__ import annotations

import json
import math

import click
from rich.console import Console
from rich.table import Table

from drivers.patterns.profile import all_patterns
from drivers.patterns.toggles import TOGGLE_HELP, split_assignments
from drivers.runs import RunHandle
from drivers.tokens.pin import run_pin_provider
from drivers.tokens.registry import DEFAULT_TOKEN

stdout = Console()

SHOWN = (
    ("operations", "events", "{:d}"),
    ("p50_ms", "P50 ms", "{:.1f}"),
    ("p99_ms", "P99 ms", "{:.1f}"),
    ("deadline_miss_rate", "deadline misses", "{:.1%}"),
    ("signatures", "signatures", "{:d}"),
    ("signatures_background", "  of which background", "{:d}"),
    ("signatures_per_min", "signatures/min", "{:.1f}"),
    ("mean_sign_ms", "mean signing ms", "{:.1f}"),
    ("signing_success_rate", "signing success", "{:.1%}"),
    ("card_busy_pct", "card busy %", "{:.1f}"),
    ("card_busy_background_ms", "  background ms", "{:.1f}"),
    ("connections", "connections", "{:d}"),
    ("resumed_handshakes", "resumed handshakes", "{:d}"),
    ("session_reuse_rate", "session reuse", "{:.1%}"),
    ("attempts", "attempts", "{:d}"),
    ("sim_error_rate", "SIM access errors", "{:.1%}"),
    ("network_errors", "network errors", "{:d}"),
    ("auth_timeout_rate", "auth time-outs", "{:.1%}"),
    ("duplicate_signatures", "reused signature values", "{:d}"),
)


def _fmt(template: str, value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return template.format(value)


def _outage(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    from drivers.errors import SafeLabError

    try:
        at, _, seconds = text.partition(":")
        return float(at), float(seconds)
    except ValueError:
        raise SafeLabError(
            f"--card-outage {text!r} is not AT:SECONDS", "e.g. --card-outage 2:5"
        ) from None


def _slow(text: str | None) -> tuple[float, float, float] | None:
    if not text:
        return None
    from drivers.errors import SafeLabError

    try:
        at, seconds, delay_ms = (float(part) for part in text.split(":"))
    except ValueError:
        raise SafeLabError(
            f"--card-slow {text!r} is not AT:SECONDS:DELAY_MS", "e.g. --card-slow 1:3:200"
        ) from None
    return at, seconds, delay_ms / 1000.0


@click.group()
def pattern() -> None:
    """The paper's communication patterns as live workloads; its remedies as toggles.

    \b
    safelab pattern list
    safelab pattern run NAME --token SPEC [--set T=V ...] [--events N | --duration S]
    safelab pattern compare NAME --token SPEC --a 'T=V,...' --b 'T=V,...' [--events N]
    """


@pattern.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_command(as_json: bool) -> None:
    """The patterns (Table 7), their parameters and budgets, and the toggles."""
    profiles = all_patterns()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "patterns": [
                        {
                            "name": p.name,
                            "title": p.title,
                            "runnable": p.runnable,
                            "workload": p.workload,
                            "transport": p.transport,
                            "budget_ms": p.budget_ms,
                            "params": p.params,
                            "remedies": list(p.remedies),
                            "table7": p.table7,
                        }
                        for p in profiles
                    ],
                    "toggles": TOGGLE_HELP,
                },
                indent=2,
            )
        )
        return
    table = Table(title="Patterns (the paper's Table 7)", title_justify="left")
    for column in ("name", "workload", "transport", "budget ms", "parameters", "remedies"):
        table.add_column(column)
    for p in profiles:
        params = ", ".join(f"{k}={v}" for k, v in p.params.items())
        table.add_row(
            p.name + ("" if p.runnable else " (not runnable yet)"),
            p.workload,
            p.transport,
            f"{p.budget_ms:g}",
            params,
            ", ".join(p.remedies),
        )
    stdout.print(table)
    toggles = Table(title="Toggles (--set T=V)", title_justify="left")
    toggles.add_column("toggle")
    toggles.add_column("what it does")
    for name, text in TOGGLE_HELP.items():
        toggles.add_row(name, text)
    stdout.print(toggles)


@pattern.command("run")
@click.argument("name")
@click.option("--token", "token_uri", default=DEFAULT_TOKEN, show_default=True, metavar="SPEC")
@click.option("--set", "settings", multiple=True, metavar="T=V", help="Toggle or parameter.")
@click.option("--events", type=int, help="Stop after N events (default 20).")
@click.option("--duration", type=float, help="Stop after S seconds.")
@click.option("--link", metavar="SPEC", help="An emulated network link (see safelab proto).")
@click.option("--card-outage", metavar="AT:SECONDS", help="Inject a card outage.")
@click.option("--reset-at", type=float, metavar="S", help="Reset the open connection at S s.")
@click.option("--restart-peer-at", type=float, metavar="S", help="Restart the real peer at S s.")
@click.option(
    "--card-slow", metavar="AT:SECONDS:DELAY_MS", help="Each card access DELAY_MS late for a while."
)
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def run_command(
    ctx: click.Context,
    name: str,
    token_uri: str,
    settings: tuple[str, ...],
    events: int | None,
    duration: float | None,
    link: str | None,
    card_outage: str | None,
    reset_at: float | None,
    restart_peer_at: float | None,
    card_slow: str | None,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """Run pattern NAME with toggles; stored in the results store."""
    from drivers.runs import PatternRun

    flat = tuple(f"{k}={v}" for k, v in split_assignments(list(settings)))
    spec = PatternRun(
        name,
        token_uri,
        flat,
        events=events,
        duration_s=duration,
        link=link,
        outage=_outage(card_outage),
        reset_at=reset_at,
        restart_peer_at=restart_peer_at,
        slow=_slow(card_slow),
    )
    outcome = RunHandle(
        spec,
        db_path=ctx.find_root().obj.get("db"),
        pin_provider=run_pin_provider(pin_env, pin_fd),
    ).run()
    outcome.raise_for_error()
    result = outcome.result
    summary = result.summary.as_dict()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pattern": name,
                    "toggles": result.toggles.as_dict(),
                    "run_id": result.run_id,
                    "status": result.status,
                    "flips": [list(f) for f in result.flips],
                    "summary": summary,
                    "meta": outcome.meta.as_dict() if outcome.meta else None,
                },
                indent=2,
                default=str,
            )
        )
        return
    table = Table(
        title=f"{name} ({result.toggles.label}): request path = event -> acknowledged",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, template in SHOWN:
        table.add_row(label, _fmt(template, summary[key]))
    stdout.print(table)
    stdout.print(outcome.text, highlight=False)


@pattern.command("compare")
@click.argument("name")
@click.option("--token", "token_uri", default=DEFAULT_TOKEN, show_default=True, metavar="SPEC")
@click.option("--a", "side_a", default="", metavar="T=V,...", help="Toggles of side A.")
@click.option("--b", "side_b", default="", metavar="T=V,...", help="Toggles of side B.")
@click.option("--set", "settings", multiple=True, metavar="P=V", help="Parameters (both).")
@click.option("--events", type=int, default=20, show_default=True, help="Events per side.")
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def compare_command(
    ctx: click.Context,
    name: str,
    token_uri: str,
    side_a: str,
    side_b: str,
    settings: tuple[str, ...],
    events: int,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """A/B: two toggle combinations taking turns; both summaries, deltas and ratios."""
    from drivers.runs import PatternCompareRun

    def flat(text: str | tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{k}={v}" for k, v in split_assignments(text))

    spec = PatternCompareRun(
        name, token_uri, flat(side_a), flat(side_b), events=events, settings=flat(settings)
    )
    outcome = RunHandle(
        spec,
        db_path=ctx.find_root().obj.get("db"),
        pin_provider=run_pin_provider(pin_env, pin_fd),
    ).run()
    outcome.raise_for_error()
    document = outcome.result.as_dict()
    if as_json:
        click.echo(json.dumps(document, indent=2, default=str))
        return
    a, b = document["a"], document["b"]
    table = Table(
        title=f"{name}: A ({a['toggles']}) vs B ({b['toggles']}), interleaved",
        title_justify="left",
    )
    for column in ("metric", "A", "B", "B-A", "B/A"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, label, template in SHOWN:
        d = document["delta"].get(key)
        r = document["ratio"].get(key)
        table.add_row(
            label,
            _fmt(template, a[key]),
            _fmt(template, b[key]),
            "" if d is None else f"{d:+.3g}",
            "" if r is None else f"{r:.2f}",
        )
    stdout.print(table)
    stdout.print(outcome.text, highlight=False)


def register(group: click.Group) -> None:
    group.add_command(pattern)
