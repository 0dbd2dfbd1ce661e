"""What the packet stepper draws: the text of frozen rows copied from a live SSDTF trace.

The SSDTF runs (:mod:`drivers.runs.ssdtf`) copy every trace record into a frozen
:class:`~drivers.runs.packets.PacketRow` and post them in snapshots; these functions turn rows
and key views into Rich text (the row types are re-exported here for the screen). Nothing
here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.text import Text

from drivers.runs.packets import HEX_LIMIT, PacketRow, VerdictView, row_of

if TYPE_CHECKING:
    from drivers.ssdtf.trace import KeyView

__all__ = [
    "COLUMNS",
    "HEX_LIMIT",
    "PacketRow",
    "VerdictView",
    "cells",
    "detail_text",
    "keys_text",
    "row_of",
]

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("idx", "#", 3),
    ("t", "t ms", 7),
    ("lanes", "lanes", None),
    ("st", "st", 4),
    ("hop", "hop", 12),
    ("packet", "packet", 16),
    ("verdict", "verdict", 40),
    ("type", "MQTT", 11),
    ("topic", "topic", 40),
)
"""``(key, title, width)`` of the packet table; ``lanes`` is as wide as there are roles."""


def short_lane(lane: str) -> str:
    """``sensor-1`` → ``sensor-1``, ``gateway`` → ``gateway``; long names cut to 8."""
    return lane if len(lane) <= 8 else lane[:7] + "…"


def hop_text(row: PacketRow) -> str:
    """Direction in few cells: ``sensor-1→B`` (to the broker) or ``B→gateway``."""
    lane = short_lane(row.lane)
    return f"{lane}→B" if row.direction == "c2b" else f"B→{lane}"


def lanes_text(row: PacketRow, lanes: Sequence[str]) -> Text:
    """A swimlane: one cell per role, the packet's role marked ▲ (to broker) or ▼ (from it)."""
    text = Text(no_wrap=True)
    for lane in lanes:
        if lane == row.lane:
            text.append("▲" if row.direction == "c2b" else "▼", style="bold")
        else:
            text.append("·", style="dim")
    return text


SHORT_FIELDS = ("seq", "sid", "ct", "sig")


def ssdtf_short(row: PacketRow) -> Text:
    """``DATA seq=1 ct=52B sig`` style summary, the decode error, or the MQTT type."""
    if row.ssdtf_error:
        return Text(f"✗ {row.ssdtf_error}", style="bold red", no_wrap=True)
    if not row.ssdtf_type:
        return Text(row.mqtt_type, style="dim", no_wrap=True)
    fields = dict(row.ssdtf)
    text = Text(row.ssdtf_type, style="bold", no_wrap=True)
    if "seq" in fields:
        text.append(f" seq={fields['seq']}")
    if "ct" in fields:
        text.append(f" ct={fields['ct'].split(' ', 1)[0]}B")
    if "sig" in fields:
        text.append(" sig")
    return text


def status_text(row: PacketRow) -> Text:
    """``HELD`` (waiting for n), ``fwd``, ``DROP``; words, so it reads without colour."""
    if row.status == "held":
        return Text("HELD", style="bold reverse yellow")
    if row.status == "dropped":
        return Text("DROP", style="bold red")
    return Text("fwd", style="dim")


def verdict_text(row: PacketRow, highlight: bool = False) -> Text:
    """The first failing verdict (or the first one) with its reason; an attack's note else."""
    if row.verdicts:
        bad = [v for v in row.verdicts if not v.ok]
        verdict = bad[0] if bad else row.verdicts[0]
        mark, style = ("✗ REJECT", "bold red") if not verdict.ok else ("✓", "green")
        if highlight:
            style += " reverse"
        text = Text(f"{mark} {verdict.role}: ", style=style, no_wrap=True)
        text.append(verdict.reason)
        if len(row.verdicts) > 1:
            text.append(f" (+{len(row.verdicts) - 1})", style="dim")
        return text
    if row.note:
        return Text(f"attacker: {row.note}", style="bold yellow", no_wrap=True)
    return Text("")


def cells(row: PacketRow, lanes: Sequence[str], highlight: bool = False) -> list[Text | str]:
    """The table's cells for a row, in :data:`COLUMNS` order."""
    mqtt = row.mqtt_type + (" DUP" if row.dup else "") + (" RET" if row.retain else "")
    return [
        Text(str(row.index), style="bold reverse red" if highlight else ""),
        f"{row.t_ms:7.1f}",
        lanes_text(row, lanes),
        status_text(row),
        hop_text(row),
        ssdtf_short(row),
        verdict_text(row, highlight),
        mqtt,
        Text(row.topic, no_wrap=True, overflow="ellipsis"),
    ]


def detail_text(row: PacketRow | None, highlight_reason: str = "") -> Text:
    """The details pane: header, MQTT flags, decoded SSDTF fields, verdicts, hex dump."""
    if row is None:
        return Text(
            "No packet selected. s starts a live flow with the form's model, sensors and "
            "messages on the token above; a opens the attack menu.",
            style="dim",
        )
    text = Text(f"#{row.index} ", style="bold")
    text.append(f"{row.arrow}  {row.mqtt_type}", style="bold")
    text.append(f"  t={row.t_ms:.1f} ms  {row.status}  {row.size} B\n")
    flags = [f"qos {row.qos}"]
    if row.dup:
        flags.append("DUP")
    if row.retain:
        flags.append("RETAIN")
    if row.packet_id is not None:
        flags.append(f"packet id {row.packet_id}")
    text.append("  ".join(flags) + "\n", style="dim")
    if row.topic:
        text.append(f"topic {row.topic}\n")
    if row.note:
        text.append(f"attacker: {row.note}\n", style="bold yellow")
    if row.ssdtf_error:
        text.append(f"SSDTF decode error: {row.ssdtf_error}\n", style="bold red")
    if row.ssdtf_type:
        text.append(f"SSDTF {row.ssdtf_type}\n", style="bold")
        for name, value in row.ssdtf:
            text.append(f"  {name:<11}", style="cyan")
            text.append(f"{value}\n")
    for verdict in row.verdicts:
        ok = "✓ accepted" if verdict.ok else "✗ REJECTED"
        style = "green" if verdict.ok else "bold red"
        if not verdict.ok and highlight_reason and highlight_reason in verdict.reason:
            style += " reverse"
        text.append(f"{ok} by {verdict.role}", style=style)
        text.append(f" ({verdict.stage})" if verdict.stage else "", style="dim")
        text.append(f": {verdict.reason}\n")
    text.append("hex\n", style="bold")
    text.append(row.hexdump or "(empty)", style="dim")
    return text


def keys_text(
    keys: Mapping[str, Sequence[KeyView]],
    before: Mapping[str, Sequence[KeyView]] | None = None,
    at: int | None = None,
) -> Text:
    """Keys per role at a packet; ``+`` marks a key gained since the previous packet."""
    if not keys:
        return Text("No keys yet: start a flow (s) or run an attack (a).", style="dim")
    head = "keys held before packet " + (f"#{at}" if at is not None else "(end)")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(head + "\n", style="bold")
    for role, views in keys.items():
        old = {k.name for k in (before or {}).get(role, [])}
        text.append(f"{role}\n", style="bold underline")
        for key in views:
            new = before is not None and key.name not in old
            text.append("+ " if new else "  ", style="bold green")
            text.append(key.name, style="bold green" if new else "")
            text.append(f"  {key.kind}", style="dim")
            if key.alg:
                text.append(f" {key.alg}", style="dim")
            if key.fingerprint:
                text.append(f" {key.fingerprint[:8]}", style="dim")
            if "simulated" in key.note:  # a shortcut against the seed is always said
                text.append(" (simulated)", style="yellow")
            text.append("\n")
    return text
