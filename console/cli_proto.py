"""``safelab proto``: protocol experiments with the client key in a token, and Table 6.

``safelab proto PROTOCOL --token URI`` runs one protocol under one condition against its real
peer on loopback; ``safelab proto table6 --token URI`` reproduces the paper's Table 6 (every
protocol, software key versus the token, full and resumed handshakes) with the paper's figures
beside ours. Runs land in the results store (``safelab runs list``).

Both only build a run spec (:mod:`drivers.runs`), give it the PIN step (``--pin-env``,
``--pin-fd``; these commands run peers and never prompt) and print the outcome: which
conditions a protocol accepts is :mod:`drivers.protocols.rules`' call, the same as the console's.
"""

from __future__ import annotations

import csv
import io
import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from drivers.bench.store import ResultsStore
from drivers.protocols.rules import PROTOCOLS
from drivers.runs import RunHandle, RunMeta, RunSnapshot
from drivers.tokens.pin import run_pin_provider
from drivers.tokens.registry import DEFAULT_TOKEN
from screens.widgets.format import fmt_ms

stdout = Console()
stderr = Console(stderr=True)

PROTOCOL_CHOICES = PROTOCOLS


def _token_words(meta: RunMeta | None) -> str:
    token = meta.token if meta is not None else None
    if token is None:
        return "?"
    return token.label + (" [EMULATED]" if token.emulated else "")


def _peer_words(meta: RunMeta | None) -> str:
    peer = meta.peer if meta is not None else None
    if peer is None:
        return "?"
    return f"{peer.name} ({peer.kind} peer, {peer.version})"


class ProtoGroup(click.Group):
    """``safelab proto PROTOCOL`` and ``safelab proto table6`` under one name."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] in PROTOCOL_CHOICES:
            ctx.meta["protocol"] = args[0]
            return "run", run_command, args[1:]
        return super().resolve_command(ctx, args)


@click.group(cls=ProtoGroup)
def proto() -> None:
    """Protocols signed by the token: PROTOCOL is mqtt, https, coap, vpn, jwt or coap-psk.

    \b
    safelab proto mqtt --token URI [--resume] [-n 30]
    safelab proto table6 --token URI [-n 30] [--json|--csv]
    """


@click.command("run")
@click.option("--token", "token_uri", default=DEFAULT_TOKEN, show_default=True, metavar="URI")
@click.option("-n", "n", type=int, default=30, show_default=True, help="Trials (the paper: 30).")
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option("--resume", is_flag=True, help="TLS session resumption (MQTT, HTTPS).")
@click.option("--keep-alive", is_flag=True, help="HTTPS: one connection for every trial.")
@click.option(
    "--jwt-ttl",
    type=float,
    default=0.0,
    show_default=True,
    help="JWT: reuse a token this many seconds (0: a fresh JWT per request).",
)
@click.option(
    "--jwt-hash-on-token",
    is_flag=True,
    help="JWT: the token hashes the signing input (IoT SAFE full-text mode).",
)
@click.option(
    "--fresh-token-session",
    is_flag=True,
    help="Open, log in and find the key for every signature (total mode inside).",
)
@click.option(
    "--cert-from-token",
    is_flag=True,
    help="VPN: read the certificate from the token at every start, in the connection's token "
    "session (OpenVPN's PKCS#11 mode, the paper's client; needs --fresh-token-session).",
)
@click.option(
    "--link",
    metavar="SPEC",
    help="An emulated network link to the peer: 'rtt=100ms,jitter=10ms,loss=1%,rate=256kbit' "
    "or a profile (lte-m, nb-iot, gprs, satellite, wifi-lab).",
)
@click.option(
    "--link-mode",
    type=click.Choice(["proxy", "kernel", "auto"]),
    default="proxy",
    show_default=True,
    help="proxy: loopback proxy (TCP loss modelled); kernel: namespaces + TUN (root).",
)
@click.option(
    "--nodelay",
    is_flag=True,
    help="MQTT: set TCP_NODELAY (paho-mqtt does not; the paper's figure has Nagle's wait).",
)
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def run_command(
    ctx: click.Context,
    token_uri: str,
    n: int,
    warmup: int,
    resume: bool,
    keep_alive: bool,
    jwt_ttl: float,
    jwt_hash_on_token: bool,
    fresh_token_session: bool,
    cert_from_token: bool,
    link: str | None,
    link_mode: str,
    nodelay: bool,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
) -> None:
    """Run one protocol experiment."""
    from drivers.protocols.base import Condition
    from drivers.runs import ProtocolRun

    protocol = ctx.meta["protocol"]
    condition = Condition(
        resume=resume,
        keep_alive=keep_alive,
        jwt_ttl_s=jwt_ttl,
        jwt_hash_on_token=jwt_hash_on_token,
        reuse_token_session=not fresh_token_session,
        tcp_nodelay=nodelay,
        token_certificate=cert_from_token,
    )
    spec = ProtocolRun(
        protocol, token_uri, condition, n=n, warmup=warmup, link=link, link_mode=link_mode
    )  # refuses bad combos
    db = ctx.find_root().obj.get("db")
    outcome = RunHandle(spec, db_path=db, pin_provider=run_pin_provider(pin_env, pin_fd)).run()
    outcome.raise_for_error()
    result = outcome.result
    with ResultsStore(db) as store:
        record = store.get_run(result.run_id)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run": record.as_dict(),
                    "summary": result.stats.as_dict(),
                    "signatures_per_trial": result.n_sign,
                    "resumed_trials": result.resumed,
                    "meta": outcome.meta.as_dict() if outcome.meta else None,
                },
                indent=2,
                default=str,
            )
        )
        return
    table = Table(
        title=f"{protocol} {condition.name}: connection established (ms)", title_justify="left"
    )
    for column in ("token", "n", "mean", "P50", "P99", "sign/conn", "resumed"):
        table.add_column(column, justify="left" if column == "token" else "right")
    label = _token_words(outcome.meta)
    signatures = sum(result.n_sign) / max(len(result.n_sign), 1)
    table.add_row(
        label,
        str(result.stats.count),
        fmt_ms(result.stats.mean_ms),
        fmt_ms(result.stats.p50_ms),
        fmt_ms(result.stats.p99_ms),
        f"{signatures:.2f}",
        str(result.resumed),
    )
    stdout.print(table)
    phases = Table(title="Phases (mean ms)", title_justify="left")
    for name in result.stats.phases:
        phases.add_column(name, justify="right")
    phases.add_row(*(fmt_ms(s.mean_ms) for s in result.stats.phases.values()))
    stdout.print(phases)
    for limit in record.extra.get("limits", []):
        stdout.print(f"note: {limit}", highlight=False)
    link_info = record.extra.get("link")
    if link_info:
        stdout.print(
            f"link: {link_info.get('link')} ({link_info.get('mode')} mode; loss "
            f"{link_info.get('loss')})",
            highlight=False,
        )
    established = outcome.meta.established_at if outcome.meta else "?"
    stdout.print(
        f"established at: {established}; peer {_peer_words(outcome.meta)}; "
        f"run {result.run_id} {result.status}"
        + (f" ({result.reason})" if result.reason else "")
        + " stored",
        highlight=False,
    )


@proto.command("table6")
@click.option(
    "--token",
    "token_uri",
    required=True,
    metavar="URI",
    help="The token to compare with the software key.",
)
@click.option("-n", "n", type=int, default=30, show_default=True)
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option("--protocols", default="vpn,mqtt,coap,https", show_default=True)
@click.option(
    "--condition",
    type=click.Choice(["paper", "session-kept"]),
    default="paper",
    show_default=True,
    help="paper: a token session per handshake, as the paper's clients; session-kept: the "
    "session stays open (sign_only inside), SAFE Lab's remedy.",
)
@click.option("--no-jwt", is_flag=True, help="Leave out the JWT figures.")
@click.option("--pin-env", metavar="VAR")
@click.option("--pin-fd", type=int, metavar="N")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.pass_context
def table6_command(
    ctx: click.Context,
    token_uri: str,
    n: int,
    warmup: int,
    protocols: str,
    condition: str,
    no_jwt: bool,
    pin_env: str | None,
    pin_fd: int | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """The paper's Table 6: software key versus the token, full and resumed, per protocol."""
    from drivers.runs import Table6Run

    wanted = tuple(p.strip() for p in protocols.split(",") if p.strip())
    spec = Table6Run(token_uri, wanted, n=n, warmup=warmup, condition=condition, jwt=not no_jwt)
    handle = RunHandle(
        spec,
        db_path=ctx.find_root().obj.get("db"),
        pin_provider=run_pin_provider(pin_env, pin_fd),
    )
    if stderr.is_terminal:
        handle.subscribe(_step_printer())
    outcome = handle.run()
    outcome.raise_for_error()
    rows = outcome.result.rows
    jwt = outcome.result.jwt
    data = [row.as_dict() for row in rows]
    if as_json:
        document = {
            "token": vars(outcome.result.token),
            "peers": {p: i.as_dict() for p, i in outcome.result.peers.items()},
            "n": n,
            "condition": condition,
            "interleaved": True,
            "rows": data,
            "jwt": jwt.as_dict() if jwt else None,
        }
        click.echo(json.dumps(document, indent=2))
        return
    if as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(data[0]) if data else ["protocol"])
        writer.writeheader()
        for row in data:
            writer.writerow(
                {k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()}
            )
        click.echo(out.getvalue(), nl=False)
        return
    label = _token_words(outcome.meta)
    table = Table(
        title=f"Table 6 ({condition}): connection established with mTLS, mean ms, n={n} "
        f"(token: {label}; software and token interleaved)",
        title_justify="left",
    )
    for column in (
        "protocol",
        "software",
        "token",
        "diff",
        "token sign",
        "resumed sw",
        "resumed tok",
        "paper sw",
        "paper SIM",
        "paper diff",
    ):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for row in data:
        table.add_row(
            str(row["protocol"]),
            fmt_ms(row["software_ms"]),
            fmt_ms(row["token_ms"]),
            Text(f"+{row['difference_ms']:.0f}", style="bold"),
            fmt_ms(row["token_sign_ms"]),
            fmt_ms(row["resumed_software_ms"]),
            fmt_ms(row["resumed_token_ms"]),
            f"{row['paper_software_ms']:g}",
            f"{row['paper_iot_safe_ms']:g}",
            f"+{row['paper_difference_ms']:g}",
        )
    stdout.print(table)
    for row in data:
        if row["note"]:
            stdout.print(f"note: {row['protocol']}: {row['note']}", highlight=False)
        if row.get("paper_note"):
            stdout.print(f"note: {row['protocol']}: {row['paper_note']}", highlight=False)
    if jwt is not None:
        j = jwt.as_dict()
        stdout.print(
            f"JWT (ES256): created in {fmt_ms(j['software_sign_ms'])} ms with software, "
            f"{fmt_ms(j['token_sign_ms'])} ms with the token (paper "
            f"{j['paper_software_sign_ms']:g} / {j['paper_iot_safe_sign_ms']:g}); a request "
            f"with a cached JWT {fmt_ms(j['cached_software_ms'])} / "
            f"{fmt_ms(j['cached_token_ms'])} ms (paper ~{j['paper_cached_request_ms']:g})",
            highlight=False,
        )
    if condition == "session-kept":
        stdout.print(
            "session-kept is not the paper's condition: its clients opened a token session "
            "per connection (use --condition paper to compare with its differences).",
            style="dim",
        )
    stdout.print(
        "The difference should be the token's signing time inside the handshake "
        "(column 'token sign'); resumed handshakes make no token signature.",
        style="dim",
    )


def _step_printer():
    """Print each Table 6 step once (on a terminal), as the runs start."""
    seen = [0]

    def show(snapshot: RunSnapshot) -> None:
        if snapshot.step_index > seen[0]:
            seen[0] = snapshot.step_index
            stderr.print(
                f"running {snapshot.step} ({snapshot.step_index}/{snapshot.steps})", style="dim"
            )

    return show


def register(group: click.Group) -> None:
    group.add_command(proto)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(proto())
