"""Table 7 cells that cannot be measured, predicted by the what-if engine (``drivers.whatif``).

A cell is measured when its pattern run on the real peers succeeds; when measuring is off
(``--no-measure``) or the run fails, the cell is predicted with
:func:`drivers.whatif.predict_pattern_cell` (the same settings, token and link) and labelled
"predicted" with the engine's provenance. If the engine cannot predict it either (an input it
does not model, a missing calibration), the cell says "not measured" with both reasons: nothing
is invented here.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import SafeLabError


@dataclass(frozen=True)
class Prediction:
    """The figures a Table 7 verdict needs, from one what-if prediction."""

    p50_ms: float
    p99_ms: float
    deadline_miss_rate: float
    events: int = 0
    provenance: str = ""


def _provenance(sources: dict[str, str]) -> str:
    shown = ", ".join(f"{key}: {value}" for key, value in sorted(sources.items()))
    return f"the what-if engine ({shown})" if shown else "the what-if engine"


def predict(
    pattern: str, settings: tuple[str, ...], token: str, link: str | None
) -> tuple[Prediction | None, str]:
    """The engine's prediction for one cell, or ``None`` and why there is none."""
    from drivers.whatif import predict_pattern_cell

    try:
        result = predict_pattern_cell(pattern, token, toggles=settings, link=link)
    except (SafeLabError, ValueError, KeyError) as exc:  # an input the engine cannot model
        return None, f"the what-if engine cannot predict it: {exc}"
    miss = result.miss_rate
    if miss is None:
        return None, "the what-if engine has no deadline for this pattern"
    return (
        Prediction(
            result.p50,
            result.p99,
            miss,
            len(result.samples_ms),
            _provenance(result.provenance),
        ),
        "",
    )
