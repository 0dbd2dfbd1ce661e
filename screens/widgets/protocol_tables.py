"""What the Protocols screen draws: the condition columns, matrix cells, phases and Table 6.

Pure functions from frozen data to Rich renderables, so the screen, its snapshot tests and any
later report draw the same thing. Provenance is always in words: a cell's figures belong to
the token named above the matrix ("[EMULATED]" or "real") and to the peer named in its row
("mosquitto", "py-ssl emb." for an embedded peer, "missing" when none can run).

The protocol experiment modules are imported only when needed (types under TYPE_CHECKING):
they pull in the TLS bridge and every peer, which would slow the console's start-up for
users who never open this job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table
from rich.text import Text

from drivers.bench.paper import TABLE6
from drivers.bench.stats import StatsSnapshot
from drivers.protocols.base import PROTOCOL_PHASES, Condition
from drivers.protocols.rules import refusal
from screens.widgets.format import fmt_ms

if TYPE_CHECKING:
    from drivers.peers.select import PeerStatus
    from drivers.runs import Table6Row

PEER_PROTOCOL = {
    "vpn": "TLS-VPN",
    "mqtt": "MQTT/TLS",
    "coap": "CoAP/DTLS",
    "https": "HTTPS",
    "jwt": "HTTPS",
    "coap-psk": "CoAP/DTLS",
}
"""Which :func:`~drivers.peers.select.peer_status` row serves each protocol (JWT goes to the
HTTPS peer, which verifies the tokens)."""

PEER_NAMES = {
    "MosquittoPeer": "mosquitto",
    "EmbeddedMqttPeer": "amqtt emb.",
    "NginxPeer": "nginx",
    "EmbeddedHttpsPeer": "py-ssl emb.",
    "CoapServerPeer": "libcoap",
    "OpenVpnServerPeer": "openvpn",
}
"""Short peer names for the matrix's row labels (10 columns at most)."""


@dataclass(frozen=True)
class ConditionColumn:
    """One column of the matrix: an optimisation toggle. Where it applies, and why not, is
    :mod:`drivers.protocols.rules`' call (the CLI asks the same function)."""

    key: str
    title: str

    def condition(self, jwt_ttl_s: float = 60.0) -> Condition:
        """The driver's :class:`Condition` for this column (the TTL only matters for JWT)."""
        if self.key == "resumed":
            return Condition(resume=True)
        if self.key == "keepalive":
            return Condition(keep_alive=True)
        if self.key == "jwtcache":
            return Condition(jwt_ttl_s=jwt_ttl_s)
        if self.key == "fresh":
            return Condition(reuse_token_session=False)
        return Condition()

    def why_not(self, protocol: str) -> str | None:
        """Why this column cannot run for ``protocol`` (the rules' words); ``None``: it can."""
        return refusal(protocol, self.condition())

    def applies(self, protocol: str) -> bool:
        return self.why_not(protocol) is None


COLUMNS = (
    ConditionColumn("full", "full"),
    ConditionColumn("resumed", "resumed"),
    ConditionColumn("keepalive", "keep-alive"),
    ConditionColumn("jwtcache", "jwt cache"),
    ConditionColumn("fresh", "fresh sess."),
)
"""Full handshake, then each toggle of the paper's section 4 on its own."""

COLUMN_BY_KEY = {column.key: column for column in COLUMNS}


def peer_for_protocol(protocol: str, peers: Sequence[PeerStatus] | None) -> PeerStatus | None:
    """The peer status row serving ``protocol``; ``None`` while the peers are being checked."""
    if peers is None:
        return None
    wanted = PEER_PROTOCOL[protocol]
    return next((status for status in peers if status.protocol == wanted), None)


def peer_short(peer: str, embedded: bool) -> str:
    """``mosquitto``, ``py-ssl emb.``: what a row label and a figure's provenance say."""
    name = PEER_NAMES.get(peer, peer.removesuffix("Peer").lower() or "?")
    if embedded and not name.endswith("emb."):
        name += " emb."
    return name


def peer_words(peer: str, embedded: bool) -> str:
    """``MosquittoPeer (real peer)``: the long form for info lines and Table 6 notes."""
    return f"{peer} ({'embedded' if embedded else 'real'} peer)"


def row_label(protocol: str, status: PeerStatus | None) -> Text:
    """Two lines: the protocol, then the peer that would answer it (or ``missing``)."""
    text = Text(protocol.ljust(11), style="bold", no_wrap=True)  # a stable label column
    if status is None:
        text.append("\nchecking…", style="dim")
    elif not status.available:
        text.append("\nmissing", style="bold")
    else:
        text.append("\n" + peer_short(status.peer, status.embedded), style="dim")
    return text


@dataclass(frozen=True)
class CellResult:
    """The last run of one cell, with everything needed to say where its figures come from."""

    protocol: str
    column: str
    condition: str
    """The driver's condition name (``resumed``, ``jwt-cache-60s``…), as stored."""
    token_uri: str
    token_label: str
    emulated: bool
    peer: str
    embedded: bool
    stats: StatsSnapshot
    planned: int
    sig_per_conn: float | None
    resumed: int
    run_id: int = 0
    status: str = "running"
    """``running``, ``complete``, ``incomplete`` (stopped or failed; the run is kept)."""

    @property
    def done(self) -> int:
        return self.stats.count


def compact_ms(value: float | None) -> str:
    """Milliseconds in at most 4–5 characters, so ``mean/P50`` fits an 11-column cell."""
    if value is None or math.isnan(value):
        return "–"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell_text(
    protocol: str, column: ConditionColumn, status: PeerStatus | None, result: CellResult | None
) -> Text:
    """A matrix cell: ``mean/P50`` (``*`` when the run is partial), then signatures per connection.

    A cell where the toggle does not apply shows ``·``; one whose peer cannot run shows
    ``n/a`` (the info line gives the package to install).
    """
    if not column.applies(protocol):
        return Text("·", style="dim")
    if status is not None and not status.available:
        return Text("n/a\nno peer", style="dim")
    if result is None or result.done == 0:
        waiting = result is not None and result.status == "running"
        return Text("running…\n" if waiting else "–\n", style="dim")
    mark = "" if result.status == "complete" else "*"
    text = Text(f"{compact_ms(result.stats.mean_ms)}/{compact_ms(result.stats.p50_ms)}{mark}")
    sig = "–" if result.sig_per_conn is None else f"{result.sig_per_conn:.2f}"
    text.append(f"\n{sig} sig", style="dim" if result.status == "running" else "")
    return text


def cell_info(
    protocol: str, column: ConditionColumn, status: PeerStatus | None, result: CellResult | None
) -> Text:
    """One line about the selected cell: its figures' provenance, or why it cannot run."""
    name = f"{protocol} {column.title}"
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(name, style="bold")
    if not column.applies(protocol):
        text.append(f": does not apply ({column.why_not(protocol)})")
        return text
    if status is not None and not status.available:
        text.append(f": no {status.protocol} peer on this machine; install with ")
        text.append(status.install, style="bold")
        return text
    if result is None:
        peer = f"{peer_words(status.peer, status.embedded)}" if status else "peer being checked"
        text.append(f": not run yet · {peer} · Enter runs it")
        return text
    state = result.status
    if result.run_id:
        state = f"run {result.run_id} {result.status}"
    text.append(f": {state} {result.done}/{result.planned} · ")
    kind = "embedded" if result.embedded else "real"
    text.append(f"{kind} peer {peer_short(result.peer, False)}", style="bold")
    text.append(" · ")
    text.append("[EMULATED]" if result.emulated else "real", style="bold")
    text.append(f" token {result.token_label} · {result.resumed} resumed · {result.peer}")
    return text


def _table(*columns: str) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        expand=False,
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    return table


def protocol_phase_table(stats: StatsSnapshot | None) -> Table:
    """Per-phase mean, P50, P99 and share of the total; ``sign`` is inside ``handshake``."""
    table = _table("phase", "mean", "P50", "P99", "of total")
    phases = stats.phases if stats is not None else {}
    total = stats.mean_ms if stats is not None and stats.count else math.nan
    for phase in PROTOCOL_PHASES:
        summary = phases.get(phase)
        name = "└ sign" if phase == "sign" else phase  # part of the handshake, not after it
        if summary is None:
            table.add_row(name, "–", "–", "–", "", style="dim")
            continue
        share = f"{summary.mean_ms / total:.0%}" if total and not math.isnan(total) else ""
        table.add_row(
            name,
            fmt_ms(summary.mean_ms),
            fmt_ms(summary.p50_ms),
            fmt_ms(summary.p99_ms),
            share,
        )
    return table


def _signed(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:+.0f}"


def table6_table(rows: Sequence[Table6Row]) -> Table:
    """Our means (software key, token, difference, the token's signing inside the handshake,
    resumed) beside the paper's; the difference columns are what the paper is about."""
    table = _table(
        "protocol",
        "ours\nsw",
        "ours\ntoken",
        "ours\ndiff",
        "token\nsign",
        "resum.\nsw",
        "resum.\ntoken",
        "paper\nsw",
        "paper\nSIM",
        "paper\ndiff",
    )
    for row in rows:
        paper = TABLE6.get(row.protocol)
        table.add_row(
            row.protocol,
            fmt_ms(row.software_ms),
            fmt_ms(row.token_ms),
            Text(_signed(row.difference_ms), style="bold"),
            fmt_ms(row.token_sign_ms),
            fmt_ms(row.resumed_software_ms),
            fmt_ms(row.resumed_token_ms),
            f"{paper.software_ms:g}" if paper else "–",
            f"{paper.iot_safe_ms:g}" if paper else "–",
            Text(_signed(paper.difference_ms) if paper else "–", style="dim"),
        )
    return table


def table6_heading(token_label: str, emulated: bool, n: int) -> Text:
    """Whose figures the view holds: ours (which token, real or emulated) and the paper's.

    Provenance comes first and the line may wrap, so a long token label never hides it.
    """
    text = Text("Table 6 · software key vs ", style="bold")
    text.append("[EMULATED]" if emulated else "real", style="bold reverse")
    text.append(f" {token_label}", style="bold")
    text.append(f" · mean ms to established, n={n}")
    return text


def table6_notes(rows: Sequence[Table6Row], peers: Mapping[str, tuple[str, bool]]) -> Text:
    """Provenance of every row (our peer; the paper's card and setup) and each row's note."""
    text = Text()
    where = " · ".join(
        f"{row.protocol} {peer_words(*peers[row.protocol])}"
        for row in rows
        if row.protocol in peers
    )
    text.append(f"ours on loopback: {where}\n" if where else "")
    text.append("paper: a real IoT SAFE SIM; peers on localhost in Docker\n", style="dim")
    resumed = ", ".join(
        f"{row.protocol} {row.resumed_token_signatures}"
        for row in rows
        if row.resumed_token_signatures is not None
    )
    if resumed:
        text.append(f"token signatures in all resumed handshakes: {resumed}\n")
    for row in rows:
        if row.note:
            text.append(f"{row.protocol}: {row.note}\n", style="dim")
        paper = TABLE6.get(row.protocol)
        if paper is not None and paper.inconsistency:
            text.append(f"{paper.inconsistency}\n", style="dim")
    text.append(
        "paper condition: a token session per handshake, software and token interleaved; "
        "ours diff should equal 'token sign' (the card's total)",
        style="dim",
    )
    return text
