"""The stepper's teaching views of a capture: the noise filter and the lesson's plan and banner.

Pure functions over frozen rows (:class:`~drivers.runs.packets.PacketRow`), so they are tested
without a screen; the words come from :mod:`drivers.ssdtf.explain`.
"""

from __future__ import annotations

from rich.text import Text

from drivers.runs.packets import PacketRow
from drivers.ssdtf.explain import LESSON, LessonStep, is_noise, model_roles


def visible_rows(
    rows: tuple[PacketRow, ...], hide_noise: bool, keep: int | None = None
) -> tuple[PacketRow, ...]:
    """The rows the table shows: without MQTT control packets when ``hide_noise``; a
    rejected packet, one an attacker touched, and ``keep`` (the highlight) always show."""
    if not hide_noise:
        return rows
    return tuple(
        r
        for r in rows
        if not is_noise(r.mqtt_type, r.ssdtf_type) or r.rejected or r.note or r.index == keep
    )


def lesson_plan(rows: tuple[PacketRow, ...]) -> list[tuple[LessonStep, PacketRow]]:
    """Each lesson step with the packet it shows: the first copy of its message that reached
    its receiver (the one with the receiver's verdict); trace-back shows the DELIVER again.
    A step whose message is not in the capture is left out."""
    plan: list[tuple[LessonStep, PacketRow]] = []
    for step in LESSON:
        wanted = step.ssdtf_type or "DELIVER"
        of_type = [r for r in rows if r.ssdtf_type == wanted]
        judged = [r for r in of_type if r.direction == "b2c" and r.verdicts]
        candidates = judged or of_type
        if candidates:
            plan.append((step, candidates[0]))
    return plan


def lesson_text(number: int, total: int, step: LessonStep, row: PacketRow, model: int) -> Text:
    """The lesson banner above the packet's details."""
    text = Text()
    text.append(f" Lesson {number}/{total}: {step.name} ", style="bold reverse")
    text.append(f" {model_roles(model).name}\n", style="dim")
    text.append(step.lead + "\n", style="bold")
    if not step.ssdtf_type:
        ext_id = dict(row.ssdtf).get("ext_id", "")
        if ext_id:
            text.append("This DELIVER's pseudonym: ", style="bold")
            text.append(f"ext_id {ext_id}\n", style="bold cyan")
        text.append(
            "The ds keeps the mapping (ext_id, epoch, destination) → device; data users "
            "cannot link their pseudonyms to each other or to the device.\n"
        )
    if number == total:
        text.append("n: now try an attack\n", style="bold")
    text.append("\n")
    return text
