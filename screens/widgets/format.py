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
