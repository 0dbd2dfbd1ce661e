"""``safelab algs``: signature algorithms, PQC included (sizes, measured times, card model).

``algs`` prints the table (``--json`` for the document); ``algs sign --alg ml-dsa-44`` has
the emulated card really sign with a PQC key and shows the chained APDUs; ``algs flight``
shows the DTLS certificate flight per algorithm over a link (a model); ``algs solve`` answers
how fast the card must sign (or the link be) for a pattern's P99 budget. All work is in
:mod:`drivers.algorithms`; this module only formats.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

stdout = Console()


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


@click.group(invoke_without_command=True)
@click.option("-n", "n", type=click.IntRange(1, 10_000), default=30, show_default=True)
@click.option("--alg", "names", multiple=True, help="Only these algorithms (repeatable).")
@click.option("--profile", default="pqc-sim", show_default=True, help="Card profile modelled.")
@click.option("--link", default=None, help="Link for the certificate flight (spec or profile).")
@click.option("--no-measure", is_flag=True, help="Sizes and models only, no timing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def algs(
    ctx: click.Context,
    n: int,
    names: tuple[str, ...],
    profile: str,
    link: str | None,
    no_measure: bool,
    as_json: bool,
) -> None:
    """Key/signature sizes, software sign/verify times measured here, and the card model."""
    if ctx.invoked_subcommand is not None:
        return
    from drivers.algorithms.report import algorithms_report

    doc = algorithms_report(
        list(names) or None, n=n, profile=profile, link=link, measure_times=not no_measure
    )
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"Signature algorithms (card model: {profile})")
    for column in (
        "algorithm",
        "pk B",
        "sig B",
        "sign P50 ms",
        "verify P50 ms",
        "card sign ms",
        "APDUs T=0/ext",
        "link ms T=0/ext",
        "card",
        "DTLS flight B",
    ):
        table.add_column(column, justify="left" if column in ("algorithm", "card") else "right")
    for row in doc["algorithms"]:
        sw = row.get("software") or {}
        card = row["card"]
        table.add_row(
            row["algorithm"],
            f"{row['public_key_bytes']:,}",
            f"{row['signature_bytes']:,}",
            _ms(sw.get("sign_p50_ms")),
            _ms(sw.get("verify_p50_ms")),
            _ms(card["compute_ms"]),
            f"{card['chained_apdus']}/{card['extended_apdus']}",
            f"{_ms(card['chained_link_ms'])}/{_ms(card['extended_link_ms'])}",
            "fits" if card["fits"] else "REFUSED",
            f"{row['flight']['flight_bytes']:,}",
        )
    stdout.print(table)
    for row in doc["algorithms"]:
        if row["card"]["refusal"]:
            stdout.print(
                f"  {row['algorithm']}: {row['card']['refusal']}", highlight=False, markup=False
            )
    for key in ("software_timing", "card_timing", "flight", "tls_note"):
        stdout.print(f"{key.replace('_', ' ')}: {doc[key]}", highlight=False, markup=False)


@algs.command("sign")
@click.option("--alg", "algorithm", required=True, help="A PQC algorithm, e.g. ml-dsa-44.")
@click.option("--profile", default="pqc-sim", show_default=True)
@click.option("--extended", is_flag=True, help="Fetch with one extended-length APDU.")
@click.option("--json", "as_json", is_flag=True)
def algs_sign(algorithm: str, profile: str, extended: bool, as_json: bool) -> None:
    """Have the emulated card sign with a PQC key; show the APDUs it took (in-process card)."""
    from drivers.algorithms.card_sign import sign_on_card

    result = sign_on_card(algorithm, profile, extended=extended)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    how = "one extended-length response" if extended else "61xx + GET RESPONSE chaining"
    stdout.print(
        f"{result.algorithm} on emulated card {result.profile!r}: {result.signature_bytes:,} B "
        f"signature, {'verified' if result.verified else 'NOT VERIFIED'} with the software "
        f"library; {result.sign_apdus} APDUs ({result.get_responses} GET RESPONSE, {how}), "
        f"{result.bytes_from_card:,} B from the card; modelled card "
        f"{_ms(result.modelled_card_ms)} ms + link {_ms(result.modelled_link_ms)} ms",
        highlight=False,
        markup=False,
    )


@algs.command("flight")
@click.option("--link", default=None, help="Link spec or profile (its up rate and loss).")
@click.option("--mtu", type=click.IntRange(256, 65535), default=1280, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def algs_flight(link: str | None, mtu: int, as_json: bool) -> None:
    """The device's DTLS 1.2 certificate flight per algorithm (a model: no PQC in OpenSSL 3.0)."""
    from drivers.algorithms.handshake import MODEL_LABEL, flight_over_link
    from drivers.algorithms.registry import ALGORITHMS

    flights = [flight_over_link(name, link, mtu=mtu) for name in ALGORITHMS]
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in flights], indent=2))
        return
    table = Table(title=f"DTLS 1.2 client certificate flight, MTU {mtu}, link {link or 'none'}")
    for column in (
        "algorithm",
        "cert B",
        "chain B",
        "flight B",
        "datagrams",
        "serialise ms",
        "P(lost)",
        "E(retx) ms",
    ):
        table.add_column(column, justify="left" if column == "algorithm" else "right")
    for f in flights:
        table.add_row(
            f.algorithm,
            f"{f.certificate_bytes:,} ({f.certificate_source})",
            f"{f.chain_bytes:,}",
            f"{f.flight_bytes:,}",
            str(f.datagrams),
            _ms(f.serialisation_ms),
            f"{f.p_flight_lost:.1%}",
            _ms(f.expected_retransmission_ms),
        )
    stdout.print(table)
    stdout.print(MODEL_LABEL, highlight=False, markup=False)


@algs.command("solve")
@click.option("--pattern", required=True, help="A pattern of profiles/patterns/.")
@click.option("--alg", "algorithm", default="p256", show_default=True)
@click.option("--profile", default="paper-sim", show_default=True)
@click.option("--link", default=None)
@click.option("--set", "settings", multiple=True, help="Toggles, e.g. keepalive=on.")
@click.option("--json", "as_json", is_flag=True)
def algs_solve(
    pattern: str,
    algorithm: str,
    profile: str,
    link: str | None,
    settings: tuple[str, ...],
    as_json: bool,
) -> None:
    """How fast must the card sign (or the link be) for the pattern to meet its P99 budget?"""
    from drivers.algorithms.solver import solve

    answer = solve(pattern, algorithm=algorithm, profile=profile, link=link, settings=settings)
    if as_json:
        click.echo(json.dumps(answer.as_dict(), indent=2))
        return
    stdout.print(f"[model] {answer.answer}", highlight=False, markup=False)
    parts = ", ".join(f"{k} {v:.0f} ms" for k, v in answer.parts_ms.items())
    stdout.print(f"  P99 path besides signing: {parts}", highlight=False, markup=False)
    for item in answer.assumptions:
        stdout.print(f"  assumption: {item}", highlight=False, markup=False)


def register(group: click.Group) -> None:
    group.add_command(algs)
