"""Card profiles written back as TOML (``safelab card fit`` drafts and saves them).

The inverse of :func:`drivers.cards.emulator.profile.parse_profile`: what
:func:`profile_toml` writes, :func:`~drivers.cards.emulator.profile.load_profile` reads back
to an equal profile (numbers rounded for people to read), with comments where a fit explains
an entry.
"""

from __future__ import annotations

import json
import textwrap

from drivers.cards.emulator.profile import CardProfile, Dist
from drivers.cards.emulator.quirks import QuirkValue


def _num(value: float, digits: int = 4) -> str:
    """A TOML float, rounded for people to read (never an integer literal)."""
    text = repr(round(float(value), digits))
    return text if any(c in text for c in ".en") else text + ".0"


def dist_toml(dist: Dist) -> str:
    """A :class:`Dist` as the inline table the profile format reads."""
    parts = [f'dist = "{dist.kind}"', *(f"{k} = {_num(v)}" for k, v in dist.params.items())]
    if dist.min_ms:
        parts.append(f"min_ms = {_num(dist.min_ms)}")
    if dist.tail is not None and dist.tail_p > 0:
        inner = dist_toml(dist.tail)[2:-2]
        parts.append(f"tail = {{ p = {_num(dist.tail_p, 5)}, {inner} }}")
    return "{ " + ", ".join(parts) + " }"


def toml_value(value: QuirkValue) -> str:
    """A TOML boolean, integer or basic string (escapes included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string, escapes included


def _comment(text: str) -> list[str]:
    """Comment lines, wrapped at 98 columns (lines starting with two spaces are kept as is)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("  ") or len(line) <= 96:
            lines.append(f"# {line}".rstrip())
        else:
            lines += [f"# {part}" for part in textwrap.wrap(line, 96, subsequent_indent="  ")]
    return lines


def profile_toml(
    profile: CardProfile,
    *,
    header: str = "",
    notes: dict[str, str] | None = None,
) -> str:
    """A whole :class:`CardProfile` as profile TOML; ``notes`` comment single entries.

    ``notes`` keys are ``commands.NAME`` or ``crypto.NAME``; each note goes above its line.
    """
    notes = notes or {}
    lines = [*_comment(header), ""] if header else []
    lines += [
        "[profile]",
        f"name = {toml_value(profile.name)}",
        f"description = {toml_value(profile.description)}",
        "",
        "[transport]",
        f"base = {dist_toml(profile.transport_base)}",
        f"per_byte_us = {_num(profile.transport_per_byte_us)}",
        "",
        "[card]",
        f"default = {dist_toml(profile.card_default)}",
        f"hash_per_byte_us = {_num(profile.hash_per_byte_us)}",
    ]
    if profile.curve_factor:
        factors = ", ".join(f"{k} = {_num(v)}" for k, v in profile.curve_factor.items())
        lines.append(f"curve_factor = {{ {factors} }}")
    for section, table in (("commands", profile.commands), ("crypto", profile.crypto)):
        lines += ["", f"[card.{section}]"]
        for key, dist in table.items():
            lines += _comment(notes.get(f"{section}.{key}", ""))
            lines.append(f"{key} = {dist_toml(dist)}")
    if profile.pqc is not None:
        lines += ["", "[card.pqc]"]
        lines += [
            f"{key} = {_num(value) if isinstance(value, float) else toml_value(value)}"
            for key, value in profile.pqc.as_table().items()
        ]
        if profile.pqc.sign:
            signs = ", ".join(f'"{k}" = {dist_toml(d)}' for k, d in profile.pqc.sign.items())
            lines.append(f"sign = {{ {signs} }}")
    lines += ["", "[quirks]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in profile.quirks.as_table().items()]
    return "\n".join(lines) + "\n"
