"""CLI commands of the card stack: ``safelab card serve|profiles|fit`` and ``safelab triage``.

Kept apart from :mod:`console.cli` so the card commands grow without touching the others;
:func:`register` adds them to the ``safelab`` group.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from drivers.cards.iotsafe_token import parse_options
from drivers.errors import SafeLabError
from drivers.tokens.pin import make_pin_provider

stdout = Console()
stderr = Console(stderr=True)

VERDICT_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


@click.group()
def card() -> None:
    """The IoT SAFE card stack: serve the emulated card, list profiles, fit a profile."""


@card.command()
@click.option(
    "--profile",
    default="paper-sim",
    show_default=True,
    help="Card profile (name in profiles/cards or a TOML path).",
)
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Time factor: 1 real time, 0.01 a hundred times faster, 0 no delays.",
)
@click.option("--seed", type=int, help="Seed the delays for a reproducible card.")
@click.option("--curves", default="p256", show_default=True, help="Keys to provision: p256,bp256.")
@click.option(
    "--pcsc/--no-pcsc",
    default=True,
    show_default=True,
    help="Insert the card into vpcd's virtual PC/SC reader (needs pcscd + vpcd).",
)
@click.option(
    "--vpcd-port",
    type=int,
    default=35963,
    show_default=True,
    help="vpcd port: 35963 is reader 'Virtual PCD 00 00', 35964 is '... 01'.",
)
@click.option("--modem", is_flag=True, help="Also serve it behind a modem on a pseudo-terminal.")
@click.option(
    "--aid",
    "aids",
    multiple=True,
    metavar="HEX",
    help="Also answer SELECT under this applet AID (a vendor stack's own); repeatable.",
)
@click.option(
    "--card",
    "card_name",
    default="default",
    show_default=True,
    help="Card name: its keys and objects are kept in <data dir>/cards/NAME.json.",
)
@click.option("--fresh", is_flag=True, help="Provision new keys and certificates for the card.")
def serve(
    profile: str,
    speed: float,
    seed: int | None,
    curves: str,
    pcsc: bool,
    vpcd_port: int,
    modem: bool,
    aids: tuple[str, ...],
    card_name: str,
    fresh: bool,
) -> None:
    """Run the emulated IoT SAFE card where real cards are: a PC/SC reader, a modem.

    The card keeps its keys across starts (--fresh for new ones), so trust a third-party
    stack built on them (a registered client certificate, a pinned key) still holds.
    """
    from drivers.cards.serve import serve_emulated_card

    hosted = tuple(_aid(text) for text in aids)
    done = _stop_on_signals()

    if not pcsc and not modem:
        raise SafeLabError(
            "--no-pcsc without --modem serves the card nowhere",
            "keep the PC/SC reader or add --modem",
        )
    spec = f"iotsafe:emulated;profile={profile};speed={speed:g};curves={curves};card={card_name}"
    if seed is not None:
        spec += f";seed={seed}"
    served = serve_emulated_card(
        parse_options(spec),
        pcsc=pcsc,
        vpcd_port=vpcd_port,
        modem=modem,
        aids=hosted,
        log=_log_line,
        fresh=fresh,
    )
    stdout.print(Text(f"Serving {served.description} [EMULATED]", style="bold"))
    stdout.print(
        "  applet AIDs: " + ", ".join(aid.hex().upper() for aid in served.applet.aids),
        highlight=False,
    )
    stdout.print(
        f"  keys kept in {served.card_file}"
        + (" (new keys, --fresh)" if fresh else "; --fresh for new keys"),
        highlight=False,
        soft_wrap=True,
    )
    for uri in served.uris:
        stdout.print(f"  --token '{uri}'", highlight=False, soft_wrap=True)
    stdout.print("Ctrl-C removes the card.", style="dim")
    try:
        while not done.wait(0.5):
            error = served.virtual_card.error if served.virtual_card else None
            if error is not None:
                raise SafeLabError(
                    f"vpcd dropped the card ({error})",
                    "check that pcscd is still running, then serve again",
                )
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
    stdout.print(f"card removed after {served.applet_calls} APDUs")


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP, whatever this process inherited.

    Started without a terminal (a service, ``cmd &`` in a script) a process may inherit
    SIGINT ignored, and the default SIGTERM kills it before the card is pulled out: pcscd
    then keeps a card that answers nothing. With these handlers every way of stopping the
    server removes the card first and exits 0.
    """
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: done.set())
    return done


_print_lock = threading.Lock()


def _log_line(line: str) -> None:
    """One event of the served card, from whichever link thread saw it."""
    with _print_lock:
        stdout.print(f"card: {line}", highlight=False, soft_wrap=True)
        sys.stdout.flush()


def _aid(text: str) -> bytes:
    """An applet AID from hex: 5 to 16 bytes (ISO 7816-4: RID of 5 bytes, PIX up to 11)."""
    try:
        aid = bytes.fromhex(text)
    except ValueError:
        aid = b""
    if not 5 <= len(aid) <= 16:
        raise SafeLabError(
            f"--aid {text!r} is not an AID of 5-16 hex bytes",
            "give the applet AID in hex, e.g. --aid A00000003053F12401770101495341",
        )
    return aid


@card.command()
@click.option("--card", "card_name", default="default", show_default=True, help="Served card.")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only APDUs since a duration ago (30s, 5m, 2h, 500ms) or an ISO time.",
)
@click.option("--last", type=int, metavar="N", help="Only the last N APDUs.")
@click.option("--json", "as_json", is_flag=True, help="Every APDU as JSON, with a phase summary.")
def trace(card_name: str, since: str | None, last: int | None, as_json: bool) -> None:
    """The APDUs `card serve` received, timed and decoded, with the phase each belongs to.

    Shows what any host stack (a vendor PKCS#11 library, a modem's firmware) sends: per APDU
    the card and link time the profile modelled, the answer time, and the host's own time
    since the previous answer; then APDUs and times per phase.
    """
    from rich.table import Table

    from drivers.cards.serve_trace import by_phase, parse_since, read_trace, trace_path

    path = trace_path(card_name)
    if not path.exists():
        raise SafeLabError(
            f"no APDU trace for card {card_name!r} ({path} does not exist)",
            f"serve the card first: safelab card serve --card {card_name}",
        )
    try:
        after = parse_since(since) if since else None
    except ValueError as exc:
        raise SafeLabError(str(exc), "e.g. --since 5m or --since 2026-12-03T16:00") from None
    entries = read_trace(path, after)
    if last is not None:
        entries = entries[-last:] if last > 0 else []
    phases = by_phase(entries)
    if as_json:
        document = {
            "card": card_name,
            "apdus": [e.as_dict() for e in entries],
            "phases": [vars(p) for p in phases],
        }
        click.echo(json.dumps(document, indent=2))
        return
    table = Table(title=f"APDUs received by card {card_name!r}", title_justify="left")
    for column in ("+ms", "link", "phase", "command", "SW", "card", "link ms", "answer", "host"):
        table.add_column(
            column, justify="left" if column in ("link", "phase", "command") else "right"
        )
    for e in entries:
        table.add_row(
            f"{e.offset_ms:.1f}",
            e.link,
            e.phase,
            f"{e.name} ({e.detail})",
            e.sw,
            f"{e.card_ms:.1f}",
            f"{e.link_ms:.1f}",
            f"{e.answer_ms:.1f}",
            "" if e.host_gap_ms is None else f"{e.host_gap_ms:.1f}",
        )
    stdout.print(table)
    summary = Table(title="per phase (ms)", title_justify="left")
    for column in ("phase", "APDUs", "card", "link", "answer"):
        summary.add_column(column, justify="left" if column == "phase" else "right")
    for row in phases:
        summary.add_row(
            row.phase,
            str(row.apdus),
            f"{row.card_ms:.1f}",
            f"{row.link_ms:.1f}",
            f"{row.answer_ms:.1f}",
        )
    stdout.print(summary)


@card.command()
def profiles() -> None:
    """List the card profiles shipped in profiles/cards."""
    from drivers.cards.emulator import list_profiles, load_profile

    for name in list_profiles():
        profile = load_profile(name)
        stdout.print(f"{name:14} {profile.description}", highlight=False)


@card.command()
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.option("--name", required=True, help="Name of the fitted profile (file name too).")
@click.option(
    "--base",
    "base_profile",
    default="paper-sim",
    show_default=True,
    help="Profile whose link model and unfitted parts are kept.",
)
@click.option(
    "--trials",
    type=int,
    default=2000,
    show_default=True,
    help="Modelled trials for the run-versus-model comparison.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the TOML (default: <data dir>/profiles/NAME.toml, which "
    "makes `profile=NAME` work).",
)
@click.option(
    "--allow-emulated",
    is_flag=True,
    help="Fit runs of an emulated card too (only useful to test the fit).",
)
@click.pass_context
def fit(
    ctx: click.Context,
    run_ids: tuple[int, ...],
    name: str,
    base_profile: str,
    trials: int,
    output: Path | None,
    allow_emulated: bool,
) -> None:
    """Fit a card profile from stored runs of a real card (sign_only and/or total)."""
    from rich.table import Table

    from drivers.bench.store import ResultsStore
    from drivers.cards.emulator.profile import user_profiles_dir
    from drivers.cards.fit import fit_profile
    from screens.widgets.format import fmt_ms

    with ResultsStore(ctx.obj.get("db")) as store:
        result = fit_profile(
            store,
            list(run_ids),
            name=name,
            base_profile=base_profile,
            allow_emulated=allow_emulated,
            model_trials=trials,
        )
    default_place = output is None
    if output is None:
        user_profiles_dir().mkdir(parents=True, exist_ok=True)
        output = user_profiles_dir() / f"{name}.toml"
    try:
        path = result.save(output)
    except OSError as exc:
        raise SafeLabError(
            f"cannot write {output} ({exc.strerror})", "choose a writable path with -o"
        ) from None
    for mode, comparison in result.comparisons.items():
        table = Table(
            title=f"{mode}: run {', '.join(map(str, comparison.run_ids))} versus "
            "the fitted profile",
            title_justify="left",
        )
        for column in ("statistic", "run", "model", "model/run"):
            table.add_column(column, justify="left" if column == "statistic" else "right")
        for stat, run_value, model_value in comparison.rows():
            ratio = f"{model_value / run_value:.3f}" if run_value else "–"
            if stat == "over_1s":
                table.add_row(stat, f"{run_value:.1%}", f"{model_value:.1%}", ratio)
            else:
                table.add_row(stat, fmt_ms(run_value), fmt_ms(model_value), ratio)
        stdout.print(table)
    for note in result.notes:
        stdout.print(f"note: {note}", highlight=False)
    profile_ref = name if default_place else str(path)
    stdout.print(
        f"profile {name!r} written to {path}; use it with "
        f"--token 'iotsafe:emulated;profile={profile_ref}'",
        highlight=False,
        soft_wrap=True,
    )


@click.command()
@click.option(
    "--token",
    "token_uri",
    default="iotsafe:pcsc",
    show_default=True,
    metavar="URI",
    help="The card: iotsafe:pcsc[;reader=NAME], iotsafe:modem;port=DEV, or iotsafe:emulated.",
)
@click.option(
    "-n",
    "n",
    type=int,
    default=10,
    show_default=True,
    help="sign_only trials for the latency summary (and n/3 total trials).",
)
@click.option("--threshold-ms", type=float, default=1000.0, show_default=True)
@click.option("--pin-env", metavar="VAR", help="SIM PIN from this variable (login=verify).")
@click.option("--pin-fd", type=int, metavar="N", help="SIM PIN from file descriptor N.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def triage(
    token_uri: str,
    n: int,
    threshold_ms: float,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """Check an IoT SAFE card: link, ATR, applet, objects, certificates, signature, latency.

    Exit code: 0 all PASS, 1 some WARN, 2 some FAIL.
    """
    from drivers.cards.triage import TriageReport, exit_code, run_triage, timed

    pin = None
    if parse_options(token_uri).login:
        pin = make_pin_provider(pin_env, pin_fd)()
    checks = []
    start = time.perf_counter_ns()
    for check in timed(
        run_triage(
            token_uri,
            sign_only_trials=max(1, n),
            total_trials=max(1, n // 3),
            threshold_ms=threshold_ms,
            pin=pin,
        )
    ):
        checks.append(check)
        if not as_json:
            line = Text(f"{check.verdict:4} ", style=VERDICT_STYLE.get(check.verdict, ""))
            line.append(f"{check.name:12} ", style="bold")
            line.append(check.detail)
            line.append(f"  ({check.duration_ms or 0:.0f} ms)", style="dim")
            stdout.print(line, soft_wrap=False)
    report = TriageReport(token_uri, tuple(checks), (time.perf_counter_ns() - start) / 1e6)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        stdout.print(Text(f"verdict: {report.summary()}", style=VERDICT_STYLE[report.verdict]))
    sys.exit(exit_code(report.verdict))


def register(group: click.Group) -> None:
    group.add_command(card)
    group.add_command(triage)
