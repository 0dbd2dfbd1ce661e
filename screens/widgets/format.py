"""Number formats shared by the screens: the same precision rules as the CLI's tables."""

from __future__ import annotations

import math


def fmt_ms(value: float | None) -> str:
    """Milliseconds with 3–4 significant figures; ``–`` for no value."""
    if value is None or math.isnan(value):
        return "–"
    if value >= 100:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def threshold_label(threshold_ms: float) -> str:
    """The heading of the 'slower than' column: ``>1 s`` as in the paper, else in ms."""
    return f">{threshold_ms / 1000:g} s" if threshold_ms >= 1000 else f">{threshold_ms:g} ms"


def speed_words(uri: str, label: str) -> str:
    """`` ×0.01 speed`` for an emulated card spec that runs faster or slower than real time
    (the label may not say so), ``""`` otherwise: a figure at ×0.01 must never pass for one
    at real time on a screen that shows the token."""
    if "speed" in label:
        return ""
    for part in uri.replace("?", ";").split(";"):
        if part.startswith("speed="):
            value = part.split("=", 1)[1]
            return "" if value in ("1", "1.0") else f" ×{value} speed"
    return ""
