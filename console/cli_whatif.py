"""``safelab whatif``: predict a handshake's or a pattern's latency; validate it for real.

``safelab whatif --protocol mqtt --token SPEC --link lte-m`` prints the model's P50/P90/P99,
deadline-miss rate, card utilisation and where every input came from; ``--validate -n 20``
then runs the same scenario against the real peer through the emulated link and prints
predicted versus measured with their ratio. ``safelab whatif calibrate`` measures the
model's loopback constants. The command only builds run specs (:mod:`drivers.runs`) and
prints outcomes.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from drivers.runs import RunHandle, RunSnapshot, WhatIfCalibrationRun, WhatIfRun
from drivers.tokens.pin import run_pin_provider
from drivers.whatif import ALGORITHMS, MODELLED_PROTOCOLS, Scenario, parse_toggles

stdout = Console()


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


@click.group(invoke_without_command=True)
@click.option(
    "--protocol",
    type=click.Choice(MODELLED_PROTOCOLS),
    default="mqtt",
    show_default=True,
    help="The handshake to predict (ignored with --pattern, which names its transport).",
)
@click.option("--token", "token", default="software:p256", show_default=True, metavar="SPEC")
@click.option("--link", metavar="SPEC", help="'rtt=100ms,jitter=10ms,loss=1%' or a profile.")
@click.option(
    "--alg",
    default="p256",
    show_default=True,
    help=f"Signature algorithm ({', '.join(ALGORITHMS)}).",
)
@click.option("--pattern", metavar="NAME", help="A communication pattern (safelab pattern list).")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="T=V",
    help="Pattern toggles and parameters (keepalive=on, resume=on, preauth=on, period_s=0.5).",
)
@click.option("--resume", is_flag=True, help="Handshake: TLS session resumption.")
@click.option("--keep-alive", is_flag=True, help="HTTPS: a request on a kept connection.")
@click.option("--fresh-token-session", is_flag=True, help="Open the token per signature.")
@click.option("--speed", type=float, help="A card's speed factor (overrides speed= in SPEC).")
@click.option("--deadline", type=float, metavar="MS", help="Deadline for the miss rate.")
@click.option("--trials", type=int, default=2000, show_default=True, help="Modelled trials.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--validate", is_flag=True, help="Also run the scenario for real and compare.")
@click.option("-n", "n", type=int, default=20, show_default=True, help="Validation trials.")
@click.option("--link-mode", type=click.Choice(["proxy", "kernel", "auto"]), default="proxy")
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def whatif(
    ctx: click.Context,
    protocol: str,
    token: str,
    link: str | None,
    alg: str,
    pattern: str | None,
    settings: tuple[str, ...],
    resume: bool,
    keep_alive: bool,
    fresh_token_session: bool,
    speed: float | None,
    deadline: float | None,
    trials: int,
    seed: int,
    validate: bool,
    n: int,
    link_mode: str,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """Predict latency with the what-if model (and --validate it against a real run).

    \b
    safelab whatif --protocol mqtt --token 'iotsafe:emulated;profile=paper-sim' --link lte-m
    safelab whatif --pattern periodic --set keepalive=on --token 'iotsafe:emulated'
    safelab whatif --protocol coap --link rtt=150ms --validate -n 20
    safelab whatif calibrate [-n 20]
    """
    if ctx.invoked_subcommand is not None:
        return
    scenario = Scenario(
        protocol=protocol,
        token=token,
        link=link,
        alg=alg,
        resume=resume,
        keepalive=keep_alive,
        session="fresh" if fresh_token_session else "kept",
        speed=speed,
        pattern=pattern,
        toggles=parse_toggles(settings),
        deadline_ms=deadline,
        n=trials,
        seed=seed,
    )
    spec = WhatIfRun(scenario, validate=validate, n=n, link_mode=link_mode)
    db = ctx.find_root().obj.get("db") if ctx.find_root().obj else None
    handle = RunHandle(spec, db_path=db, pin_provider=run_pin_provider(pin_env, pin_fd))
    outcome = handle.run()
    outcome.raise_for_error()
    result = outcome.result
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    print_result(result)


def print_result(result: object) -> None:
    """The prediction (and the measured run beside it) as tables and provenance lines."""
    from drivers.runs.whatif import WhatIfResult

    assert isinstance(result, WhatIfResult)
    p = result.prediction
    s = p.scenario
    what = f"pattern {s.pattern}" if s.pattern else f"{s.protocol} {s.path}"
    table = Table(
        title=f"What-if: {what}, {s.token}, link {s.link or 'none'}, {s.alg} (ms)",
        title_justify="left",
    )
    for column in ("", "n", "P50", "P90", "P99", "miss", "card busy"):
        table.add_column(column, justify="left" if not column else "right")
    miss = "–" if p.miss_rate is None else f"{p.miss_rate:.1%}"
    table.add_row(
        "predicted",
        str(len(p.samples_ms)),
        _ms(p.p50),
        _ms(p.p90),
        _ms(p.p99),
        miss,
        f"{p.card_utilisation:.1%}",
    )
    m = result.measured
    if m is not None:
        table.add_row(
            f"measured (run {m.run_id})",
            str(m.n),
            _ms(m.p50_ms),
            _ms(m.p90_ms),
            _ms(m.p99_ms),
            "–" if m.miss_rate is None else f"{m.miss_rate:.1%}",
            "–" if m.card_utilisation is None else f"{m.card_utilisation:.1%}",
        )
        r = result.ratios()
        table.add_row(
            "predicted / measured", "", f"{r['p50']:.2f}", f"{r['p90']:.2f}", f"{r['p99']:.2f}"
        )
    stdout.print(table)
    deadline = f"deadline {p.deadline_ms:g} ms; " if p.deadline_ms is not None else ""
    stdout.print(f"{deadline}round trips {p.round_trips:.2f}", highlight=False)
    for name, text in p.provenance.items():
        stdout.print(f"  {name}: {text}", highlight=False, soft_wrap=True)
    for note in p.notes:
        stdout.print(f"note: {note}", highlight=False)
    stdout.print(f"prediction stored as run {result.run_id}", highlight=False)


@whatif.command("calibrate")
@click.option("-n", "n", type=int, default=20, show_default=True, help="Trials per run.")
@click.option("--protocols", default="mqtt,https,coap,vpn", show_default=True)
@click.option("--save-to", metavar="PATH", help="Default: the user's calibration file.")
@click.pass_context
def calibrate_command(ctx: click.Context, n: int, protocols: str, save_to: str | None) -> None:
    """Measure the model's loopback constants with the real peers (a few minutes)."""
    spec = WhatIfCalibrationRun(
        tuple(p.strip() for p in protocols.split(",") if p.strip()), n=n, save_to=save_to
    )
    db = ctx.find_root().obj.get("db") if ctx.find_root().obj else None

    shown: list[str] = []

    def show(snapshot: RunSnapshot) -> None:
        if snapshot.step and snapshot.step not in shown:
            shown.append(snapshot.step)
            click.echo(f"  {snapshot.step_index}/{snapshot.steps} {snapshot.step}", err=True)

    outcome = RunHandle(spec, db_path=db, on_snapshot=show).run()
    outcome.raise_for_error()
    stdout.print(outcome.text, highlight=False)


def register(group: click.Group) -> None:
    group.add_command(whatif)
