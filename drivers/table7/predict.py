"""The hook into the what-if engine for Table 7 cells that cannot be measured.

SAFE Lab's prediction engine lives in ``drivers/whatif`` (built separately). Table 7 calls
exactly one function of it, looked up at run time so this package works with or without it::

    drivers.whatif.predict_pattern(
        pattern: str,            # a profiles/patterns name
        settings: tuple[str, ...],   # --set toggles of the cell, e.g. ("keepalive=on",)
        token: str,              # the token spec the measured cells use
        link: str | None,        # the --link spec or None
    ) -> object with p50_ms, p99_ms, deadline_miss_rate (floats) and optionally events (int)
         and provenance (str)  (a Mapping with those keys is accepted too)

If the module or the function is missing, or it raises, the cell is labelled "not measured"
with the reason; nothing is invented here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

HOOK_MODULE = "drivers.whatif"
HOOK_FUNCTION = "predict_pattern"


@dataclass(frozen=True)
class Prediction:
    p50_ms: float
    p99_ms: float
    deadline_miss_rate: float
    events: int = 0
    provenance: str = ""


def _field(result: object, name: str, default: object = None) -> object:
    if isinstance(result, Mapping):
        return result.get(name, default)
    return getattr(result, name, default)


def predict(
    pattern: str, settings: tuple[str, ...], token: str, link: str | None
) -> tuple[Prediction | None, str]:
    """The engine's prediction for one cell, or ``None`` and why there is none."""
    try:
        module = importlib.import_module(HOOK_MODULE)
    except ImportError:
        return None, f"no prediction engine ({HOOK_MODULE} is not installed)"
    function = getattr(module, HOOK_FUNCTION, None)
    if function is None:
        return None, f"{HOOK_MODULE} has no {HOOK_FUNCTION}() hook yet"
    try:
        result = function(pattern=pattern, settings=settings, token=token, link=link)
        prediction = Prediction(
            float(_field(result, "p50_ms")),  # type: ignore[arg-type]
            float(_field(result, "p99_ms")),  # type: ignore[arg-type]
            float(_field(result, "deadline_miss_rate")),  # type: ignore[arg-type]
            int(_field(result, "events", 0) or 0),  # type: ignore[call-overload]
            str(_field(result, "provenance", "") or f"{HOOK_MODULE}.{HOOK_FUNCTION}"),
        )
    except Exception as exc:  # the engine's failure must not end the table
        return None, f"{HOOK_MODULE}.{HOOK_FUNCTION} failed: {exc}"
    return prediction, ""
