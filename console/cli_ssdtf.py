"""CLI of the SSDTF/MQTT lab: ``safelab ssdtf demo|attack|attacks|trace``.

Kept apart from :mod:`console.cli` (one ``register(main)`` line adds it) so the protocol
commands grow without touching the others. Human output is Rich; ``--json`` prints the same
content for scripts. Errors a user can fix are :class:`drivers.errors.SafeLabError` and come
out as one line through the ``safelab`` group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from drivers.errors import SafeLabError

stdout = Console()
stderr = Console(stderr=True)


def _config(**kwargs: Any) -> Any:
    from drivers.ssdtf.config import FlowConfig

    return FlowConfig(**kwargs)


def _run(spec: Any, pin_env: str | None, pin_fd: int | None) -> Any:
    """Run ``spec`` on the run service in this thread (Ctrl-C keeps the stored part); its
    result, or its one-line error. The PIN comes from --pin-env/--pin-fd, asked once."""
    from drivers.runs import RunHandle
    from drivers.tokens.pin import run_pin_provider

    db = (click.get_current_context().find_root().obj or {}).get("db")
    outcome = RunHandle(spec, db_path=db, pin_provider=run_pin_provider(pin_env, pin_fd)).run()
    outcome.raise_for_error()
    return outcome.result


def _export(trace: Any, path: Path | None) -> list[str]:
    """Write the trace; ``.pcap`` gives pcap, anything else JSON (and a .pcap beside it)."""
    if path is None:
        return []
    if path.suffix == ".pcap":
        trace.export_pcap(path)
        return [str(path)]
    trace.export_json(path)
    pcap = path.with_suffix(".pcap")
    trace.export_pcap(pcap)
    return [str(path), str(pcap)]


@click.group()
def ssdtf() -> None:
    """SSDTF over MQTT: authenticated, re-encrypted, pseudonymous sensor data, with attacks."""


@ssdtf.command()
@click.option(
    "--model",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="Service model (1 operator, 2 MQTT as a Service, 3 device operator).",
)
@click.option("--sensors", type=click.IntRange(1, 50), default=2, show_default=True)
@click.option(
    "--messages",
    type=click.IntRange(0, 10000),
    default=3,
    show_default=True,
    help="Readings per sensor.",
)
@click.option(
    "--users",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Data users (destinations).",
)
@click.option(
    "--token",
    help="Key of sensor-1: any token URI (e.g. "
    "'iotsafe:emulated;profile=paper-sim;speed=0.01'); others get software keys.",
)
@click.option(
    "--broker",
    default="embedded",
    show_default=True,
    help="embedded | mosquitto | mqtt://host:port",
)
@click.option(
    "--pre",
    type=click.Choice(["auto", "umbral", "plain"]),
    default="auto",
    show_default=True,
    help="Proxy re-encryption backend.",
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the packet trace (FILE.json + FILE.pcap, or FILE.pcap).",
)
@click.option("--pin-env", metavar="VAR", help="PIN of --token from this variable.")
@click.option("--pin-fd", type=int, metavar="N", help="PIN of --token from descriptor N.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo(
    model: int,
    sensors: int,
    messages: int,
    users: int,
    token: str | None,
    broker: str,
    pre: str,
    trace_path: Path | None,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """Run a whole SSDTF system: handshakes, readings, re-encryption, delivery."""
    from drivers.runs import SsdtfFlowRun

    spec = SsdtfFlowRun(
        _config(
            model=model,
            sensors=sensors,
            messages=messages,
            users=users,
            token=token,
            broker=broker,
            pre=pre,
            capture=True,
        ),
        live=False,
    )
    flow = _run(spec, pin_env, pin_fd)
    result = flow.summary
    files = _export(flow.trace, trace_path)
    if as_json:
        document = result.as_dict() | {"run_id": flow.run_id, "trace_files": files}
        click.echo(json.dumps(document, indent=1, default=str))
    else:
        _print_demo(result, flow.run_id, files)
    if not result.ok:
        sys.exit(1)


def _print_demo(result: Any, run_id: int, files: list[str]) -> None:
    from drivers.ssdtf.config import MODELS

    stdout.print(f"[bold]SSDTF model {result.model}[/]: {MODELS[result.model]}")
    conf = (
        "umbral-pre re-encryption"
        if result.pre != "plain"
        else ("[bold red]NO CONFIDENTIALITY[/] (no PRE library: readings travel signed, in clear)")
    )
    stdout.print(f"broker: {result.broker}; {conf}; {result.packets} packets captured")
    if result.not_recorded:
        counts = ", ".join(f"{n} {kind}" for kind, n in result.not_recorded.items())
        stdout.print(f"trace full: {counts} counted but not kept (bound in drivers/ssdtf/trace.py)")
    table = Table("sensor", "token", "state", "sent", "acked", "handshake ms", "sign ms (P50)")
    for cid, info in result.sensors.items():
        table.add_row(
            cid,
            info["token"] + (" (emulated)" if info["emulated"] else ""),
            info["state"],
            str(info["sent"]),
            str(info["acked"]),
            f"{info['handshake_ms']:.1f}" if info["handshake_ms"] is not None else "-",
            f"{info['sign_ms_median']:.2f}" if info["sign_ms_median"] is not None else "-",
        )
    stdout.print(table)
    users = Table("data user", "received (verified, decrypted)", "external IDs seen")
    for name, info in result.users.items():
        users.add_row(name, str(info["received"]), ", ".join(info["external_ids"]))
    stdout.print(users)
    for rejection in result.rejections:
        stdout.print(f"[red]rejected[/] by {rejection['role']}: {rejection['reason']}")
    stdout.print(
        f"{result.messages_per_s:.1f} readings/s delivered in {result.elapsed_s:.2f} s; "
        f"[{'green' if result.ok else 'red'}]{'all delivered' if result.ok else 'MISSING'}"
        "[/]"
    )
    for shortcut in result.simulated:
        stdout.print(f"[yellow]simulated[/]: {shortcut}")
    for path in files:
        stdout.print(f"trace written: {path}")
    stdout.print(f"stored as run {run_id} (safelab runs show {run_id})")
    stdout.print("resolve an external ID (operator only, audited): safelab ssdtf trace EXTERNAL_ID")


@ssdtf.command()
@click.argument("name")
@click.option(
    "--broker",
    default="embedded",
    show_default=True,
    help="embedded | mosquitto | mqtt://host:port",
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the packet trace of the attack run.",
)
@click.option(
    "--token",
    help="Key of sensor-1 in the attacked deployments (any token URI); default: software keys.",
)
@click.option("--pin-env", metavar="VAR", help="PIN of --token from this variable.")
@click.option("--pin-fd", type=int, metavar="N", help="PIN of --token from descriptor N.")
@click.option("--json", "as_json", is_flag=True)
def attack(
    name: str,
    broker: str,
    trace_path: Path | None,
    token: str | None,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """Run one attack NAME (see `safelab ssdtf attacks`) and show where it was rejected."""
    from drivers.runs import SsdtfAttackRun
    from drivers.runs.ssdtf import outcome_dict

    done = _run(SsdtfAttackRun(name, _config(broker=broker, token=token)), pin_env, pin_fd)
    outcome = done.outcome
    files = _export(outcome.trace, trace_path) if outcome.trace is not None else []
    if as_json:
        document = outcome_dict(outcome) | {"run_id": done.run_id, "trace_files": files}
        click.echo(json.dumps(document, indent=1, default=str))
    else:
        kind = "control" if outcome.control else "attack"
        stdout.print(f"[bold]{kind} {outcome.name}[/]: {outcome.title}")
        if outcome.control:
            style = "green" if outcome.rejected else "red"
            verdict = "still verifies" if outcome.rejected else "BROKE"
            stdout.print(f"[{style}]{verdict}[/]: {outcome.reason}")
        elif outcome.rejected:
            where = f" (packet #{outcome.packet})" if outcome.packet is not None else ""
            stdout.print(f"[green]rejected[/] by [bold]{outcome.role}[/]{where}: {outcome.reason}")
        else:
            stdout.print(
                "[bold red]NOT rejected as expected[/] "
                f"(expected {'; '.join(f'{r}: {t}' for r, t in outcome.expected)})"
            )
        for path in files:
            stdout.print(f"trace written: {path}")
        stdout.print(f"[dim]stored as run {done.run_id}[/]")
    if not outcome.rejected:
        sys.exit(1)


@ssdtf.command("attacks")
@click.option("--json", "as_json", is_flag=True)
def list_attacks(as_json: bool) -> None:
    """List the attacks and positive controls with their expected rejection points."""
    from drivers.ssdtf.attacks import ATTACKS

    rows = [
        {
            "name": a.name,
            "title": a.title,
            "control": a.control,
            "expected": [f"{r}: {t}" for r, t in a.expect],
        }
        for a in ATTACKS.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table("name", "what", "rejected by (expected)")
    for attack in ATTACKS.values():
        expected = (
            "must still verify"
            if attack.control
            else " or ".join(f"{r}: {t}" for r, t in attack.expect)
        )
        table.add_row(attack.name, attack.title, expected)
    stdout.print(table)


@ssdtf.command("trace")
@click.argument("external_id")
@click.option("--json", "as_json", is_flag=True)
def trace_id(external_id: str, as_json: bool) -> None:
    """Resolve EXTERNAL_ID to the device (operator only; every lookup is audited)."""
    import getpass

    from drivers.ssdtf.pseudonyms import MappingStore, operator_credential, ssdtf_dir

    if not (ssdtf_dir() / "mapping.sqlite").exists():
        raise SafeLabError(
            "no SSDTF mapping store in the data directory", "run `safelab ssdtf demo` first"
        )
    store = MappingStore()
    try:
        rows = store.lookup(
            external_id.strip().lower(),
            operator_credential(create=False),
            who=f"operator:{getpass.getuser()}",
        )
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table("external ID", "epoch", "seen by (scope)", "device (internal ID)")
    for row in rows:
        table.add_row(external_id, str(row["epoch"]), str(row["scope"]), str(row["internal_id"]))
    stdout.print(table)
    stdout.print("[dim]this lookup was written to the audit log[/]")


def register(group: click.Group) -> None:
    """Add ``ssdtf`` to the ``safelab`` group."""
    group.add_command(ssdtf)
