"""The driver layer stays free of UI libraries, so the CLI, the console and scripts share it."""

from __future__ import annotations

import ast
from pathlib import Path

DRIVERS = Path(__file__).resolve().parent.parent / "drivers"
UI_PACKAGES = {"textual", "rich", "console", "screens"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_drivers_import_no_ui() -> None:
    files = list(DRIVERS.rglob("*.py"))
    assert len(files) > 10
    offenders = {
        str(f.relative_to(DRIVERS)): sorted(imported_roots(f) & UI_PACKAGES)
        for f in files
        if imported_roots(f) & UI_PACKAGES
    }
    assert offenders == {}
