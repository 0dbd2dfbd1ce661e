"""The registry of the console's jobs: every module in ``screens/`` that defines ``SCREEN``.

A later screen (protocols, SSDTF stepper, optimisation) slots in by adding one module with a
``SCREEN = ScreenSpec(...)``: the App gives it a mode, a key, a footer hint and palette
entries without any existing file changing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from textual.screen import Screen

from screens.lab import Lab


@dataclass(frozen=True)
class ScreenSpec:
    """How the App offers one job."""

    name: str
    """Mode name; also the palette's ``open NAME`` command."""
    title: str
    """Short title for the footer and the header."""
    description: str
    """One sentence for the command palette."""
    order: int
    """Position among the jobs; the first one opens at start and gets key ``1``."""
    factory: Callable[[Lab], Screen]


def discover_specs(package: str = "screens") -> list[ScreenSpec]:
    """Every ``SCREEN`` defined by a module of ``package``, in their ``order``."""
    root = importlib.import_module(package)
    specs: list[ScreenSpec] = []
    for info in pkgutil.iter_modules(root.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, "SCREEN", None)
        if isinstance(spec, ScreenSpec):
            specs.append(spec)
    return sorted(specs, key=lambda s: (s.order, s.name))
