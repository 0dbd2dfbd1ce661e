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
from drivers.ssdtf.explain import ROLE_NAMES, Explanation, explain, model_line

if TYPE_CHECKING:
    from drivers.ssdtf.trace import KeyView

__all__ = [
    "COLUMNS",
    "HEX_LIMIT",
    "PacketRow",
    "VerdictView",
    "cells",
    "detail_text",
    "hexdump",
    "keys_text",
    "row_of",
]

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("idx", "#", 3),
    ("t", "t ms", 6),
    ("lanes", "lanes", None),
    ("st", "st", 4),
    ("hop", "hop", 11),
    ("packet", "packet", 16),
    ("verdict", "verdict", 20),
)
"""``(key, title, width)`` of the packet table; ``lanes`` is as wide as there are roles and
``verdict`` takes what is left of the table's width (:func:`verdict_width`). The MQTT type and
topic are in the details pane: the table fits 80 columns without scrolling sideways."""


def verdict_width(table_width: int, lanes: int) -> int:
    """What the verdict column may take of ``table_width`` (cells are padded 1 each side,
    and 2 more for the vertical scrollbar)."""
    fixed = sum(width or 0 for key, _, width in COLUMNS if key != "verdict") + max(lanes, 5)
    return max(12, table_width - fixed - 2 * len(COLUMNS) - 2)


def lanes_title(lanes: Sequence[str]) -> str:
    """The lanes column's header: each role's initial above its cell (``gdmus``)."""
    return "".join(lane[:1] for lane in lanes) if lanes else "lanes"


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
    flags = (" DUP" if row.dup else "") + (" RET" if row.retain else "")
    if not row.ssdtf_type:
        return Text(row.mqtt_type + flags, style="dim", no_wrap=True)
    fields = dict(row.ssdtf)
    text = Text(row.ssdtf_type, style="bold", no_wrap=True)
    if "seq" in fields:
        text.append(f" seq={fields['seq']}")
    if "ct" in fields:
        text.append(f" ct={fields['ct'].split(' ', 1)[0]}B")
    if "sig" in fields:
        text.append(" sig")
    text.append(flags, style="dim")
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
    return [
        Text(str(row.index), style="bold reverse red" if highlight else ""),
        f"{row.t_ms:6.1f}" if row.t_ms < 10_000 else f"{row.t_ms / 1000:5.1f}s",
        lanes_text(row, lanes),
        status_text(row),
        hop_text(row),
        ssdtf_short(row),
        verdict_text(row, highlight),
    ]


def hexdump(raw: bytes, width: int = 16) -> str:
    """``offset  hex bytes  ascii``, ``width`` bytes a line (8 fits a 48-column pane)."""
    lines = []
    for offset in range(0, len(raw), width):
        chunk = raw[offset : offset + width]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:04x} {chunk.hex(' '):<{width * 3 - 1}} {ascii_}")
    return "\n".join(lines)


def hex_width(pane_width: int) -> int:
    """Bytes a hex line may hold in a pane of ``pane_width`` cells (16, 8 or 4)."""
    for width in (16, 8):
        if 5 + width * 3 + width <= pane_width:
            return width
    return 4


def explanation_text(explanation: Explanation, heading: str = "What it is") -> Text:
    """An :class:`~drivers.ssdtf.explain.Explanation` as labelled lines (wrapped by the pane)."""
    text = Text()
    text.append(f"{heading}: ", style="bold")
    text.append(explanation.title + "\n", style="bold")
    for label, value in explanation.lines():
        text.append(f"{label}: ", style="bold cyan")
        text.append(value + "\n")
    return text


def detail_text(
    row: PacketRow | None,
    highlight_reason: str = "",
    model: int = 1,
    hex_bytes: int = 16,
    lesson: Text | None = None,
) -> Text:
    """The details pane: lesson step (if any), header, verdicts, meaning, fields, hex dump.

    Verdicts come before the explanation so the outcome is the first thing read at 80
    columns; every line wraps in the pane.
    """
    text = Text()
    if lesson is not None:
        text.append_text(lesson)
    if row is None:
        if lesson is None:
            text.append(
                "No packet selected. s starts a live flow with the form's model, sensors and "
                "messages on the token above; l walks through one as a lesson; a opens the "
                "attack menu.",
                style="dim",
            )
        return text
    text.append(f"#{row.index} {hop_text(row)} {row.ssdtf_type or row.mqtt_type}", style="bold")
    status = "" if row.status == "forwarded" else f" · {row.status.upper()}"
    text.append(f" · {row.t_ms:.1f} ms · {row.size} B{status}\n")
    for verdict in row.verdicts:
        ok = "✓ accepted" if verdict.ok else "✗ REJECTED"
        style = "green" if verdict.ok else "bold red"
        if not verdict.ok and highlight_reason and highlight_reason in verdict.reason:
            style += " reverse"
        text.append(f"{ok} by {verdict.role}", style=style)
        text.append(f" ({verdict.stage})" if verdict.stage else "", style="dim")
        text.append(f": {verdict.reason}\n")
    if row.note:
        text.append(f"attacker: {row.note}\n", style="bold yellow")
    if row.ssdtf_error:
        text.append(f"SSDTF decode error: {row.ssdtf_error}\n", style="bold red")
    text.append_text(explanation_text(explain(row.mqtt_type, row.ssdtf_type, model)))
    if row.ssdtf_type:
        text.append(model_line(model) + "\n", style="dim")
    flags = [row.mqtt_type, f"qos {row.qos}"]
    if row.dup:
        flags.append("DUP")
    if row.retain:
        flags.append("RETAIN")
    if row.packet_id is not None:
        flags.append(f"packet id {row.packet_id}")
    text.append("MQTT ", style="bold")
    text.append("  ".join(flags) + "\n", style="dim")
    if row.topic:
        text.append(f"topic {row.topic}\n")
    if row.ssdtf_type:
        text.append(f"SSDTF {row.ssdtf_type} fields\n", style="bold")
        for name, value in row.ssdtf:
            text.append(f"  {name:<9}", style="cyan")
            text.append(f"{value}\n")
    text.append("hex\n", style="bold")
    dump = hexdump(row.raw, hex_bytes) if row.raw else row.hexdump
    if row.raw and row.size > len(row.raw):
        dump += f"\n… {row.size - len(row.raw)} more bytes in the export"
    text.append(dump or "(empty)", style="dim")
    return text


def key_changes(
    now: Mapping[str, Sequence[KeyView]], before: Mapping[str, Sequence[KeyView]] | None
) -> list[tuple[str, str, KeyView]]:
    """``(role, "+"/"−", key)`` for every key gained or dropped between two key views."""
    if before is None:
        return []
    changes: list[tuple[str, str, KeyView]] = []
    for role in dict.fromkeys([*now, *before]):
        old = {k.name: k for k in before.get(role, [])}
        new = {k.name: k for k in now.get(role, [])}
        changes += [(role, "+", k) for name, k in new.items() if name not in old]
        changes += [(role, "−", k) for name, k in old.items() if name not in new]
    return changes


def keys_text(
    keys: Mapping[str, Sequence[KeyView]],
    before: Mapping[str, Sequence[KeyView]] | None = None,
    at: int | None = None,
    lanes: Sequence[str] = (),
) -> Text:
    """Keys per role after a packet: what changed first (``+`` gained, ``−`` dropped), then
    every role's keys (the legend is :func:`legend_text`, drawn under it)."""
    if not keys:
        return Text("No keys yet: start a flow (s) or run an attack (a).", style="dim")
    text = Text(no_wrap=True, overflow="ellipsis")
    where = f"#{at}" if at is not None else "the end"
    changes = key_changes(keys, before)
    text.append(f"changed at {where}\n", style="bold")
    if not changes:
        text.append("  (no key changed)\n", style="dim")
    for role, sign, key in changes:
        text.append(f"{sign} {key.name}", style="bold green" if sign == "+" else "bold red")
        text.append(f"  {role}\n", style="dim")
    gained = {(role, key.name) for role, sign, key in changes if sign == "+"}
    text.append(f"keys held after {where}\n", style="bold")
    for role, views in keys.items():
        text.append(f"{role}\n", style="bold underline")
        for key in views:
            new = (role, key.name) in gained
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


def legend_text(lanes: Sequence[str] = ()) -> Text:
    """What the lane cells and role abbreviations mean (under the keys; it wraps)."""
    text = Text()
    text.append("legend\n", style="bold")
    if lanes:
        text.append(f"lanes {lanes_title(lanes)} = " + " ".join(lanes) + "\n", style="dim")
    text.append("▲ to the broker, ▼ from it, · another role\n", style="dim")
    for short, meaning in ROLE_NAMES:
        text.append(short, style="bold")
        text.append(f" {meaning}\n", style="dim")
    text.rstrip()
    return text
