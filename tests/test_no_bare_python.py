"""Nothing in SAFE Lab or its tests runs whatever ``python`` happens to be on PATH.

Why: on a fresh machine ``python`` on PATH is not the venv's interpreter (or does not exist),
so a spawned ``python -c ...`` fails with ``No module named 'hdrh'`` although the suite was
started with the right one. Every child interpreter is ``sys.executable`` (or the ``safelab``
console script next to it). Two checks keep it that way:

1. a static one: an AST scan of every Python file for a process-spawning call whose command
   names a bare ``python``/``python3`` (list form, shell string, ``sh -c`` string), or runs a
   ``.py`` file directly (its ``#!`` line would pick the PATH one); and the shell scripts for
   a ``python`` command other than the venv bootstrap (``PYTHON``, default ``python3``);
2. a runtime one: a few tests that really spawn interpreters run with a decoy ``python`` and
   ``python3`` first on PATH, which record that they were used and exit 97.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.peers.base import python_environment

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("console", "screens", "drivers", "tests", "benchmarks", "scripts")

SPAWNERS = {
    "subprocess.run",
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "os.system",
    "os.popen",
    "pexpect.spawn",
    "pexpect.run",
    "pexpect.popen_spawn.PopenSpawn",
    "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
}
"""Dotted names of calls that start a process (``os.exec*``/``os.spawn*``/``os.posix_spawn*``
are matched by prefix)."""

BARE_PROGRAM = re.compile(r"^(?:\S*/)?python(?:\d(?:\.\d+)?)?$")
"""``python``, ``python3``, ``python3.11``, ``/usr/bin/python3``: anything but the venv's."""
SHELL_COMMAND = re.compile(
    r"(?:^|[;&|(`]\s*|\bexec\s+|\benv\s+)(?:\S*/)?python(?:\d(?:\.\d+)?)?(?:\s|$)"
)
"""A shell command line that runs such a ``python``."""


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _dotted(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _is_spawner(name: str, aliases: dict[str, str]) -> bool:
    head, _, rest = name.partition(".")
    full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
    if full in SPAWNERS:
        return True
    return full.startswith(("os.exec", "os.spawn", "os.posix_spawn"))


def _strings(node: ast.expr) -> Iterator[str]:
    """String constants of a command argument: list/tuple items, and the literal start of
    f-strings and concatenations (``f"python -c {x}"``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value + "\x00"  # something follows: the start is what matters
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        yield from _strings(node.left)
    elif isinstance(node, ast.List | ast.Tuple):
        for element in node.elts:
            yield from _strings(element)


def _first_item(node: ast.expr) -> ast.expr | None:
    if isinstance(node, ast.List | ast.Tuple):
        return node.elts[0] if node.elts else None
    return None


def _bad(command: ast.expr) -> str | None:
    """Why ``command`` (a spawn call's first argument) runs a PATH python, or None."""
    first = _first_item(command)
    if first is not None:
        for text in _strings(first):
            program = text.rstrip("\x00")
            if BARE_PROGRAM.match(program):
                return f"runs {program!r} from PATH"
            if program.endswith(".py") and "\x00" not in text:
                return f"runs {program!r} directly (its #! line picks python from PATH)"
    for text in _strings(command):
        if SHELL_COMMAND.search(text.replace("\x00", " ")):
            return f"shell command {text.rstrip(chr(0))!r} runs python from PATH"
    return None


def scan_source(source: str, path: str = "<string>") -> tuple[list[Finding], int]:
    """Findings in one module, and how many spawn calls it has (to show the scan saw them)."""
    tree = ast.parse(source, path)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    findings, calls = [], 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not _is_spawner(_dotted(node.func), aliases):
            continue
        calls += 1
        # every positional argument: pexpect.spawn("/bin/sh", ["-c", "python ..."]) and
        # os.execvp("python", [...]) name the program outside the first one
        commands = list(node.args) + [
            kw.value for kw in node.keywords if kw.arg in ("args", "command", "cmd", "program")
        ]
        reasons = [why for why in map(_bad, commands) if why is not None]
        if reasons:
            findings.append(Finding(path, node.lineno, reasons[0]))
    return findings, calls


def python_files() -> list[Path]:
    files = []
    for name in SCANNED_DIRS:
        files.extend(p for p in (ROOT / name).rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(files)


BOOTSTRAP = 'local python="${PYTHON:-python3}"'
"""The one sanctioned PATH python: scripts/_env.sh creates the venv with it (``PYTHON=``
overrides); everything after that runs ``$VENV/bin/python``."""


def scan_shell(text: str, path: str = "<script>") -> list[Finding]:
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#!") else ""
        if BOOTSTRAP in code:
            continue
        if SHELL_COMMAND.search(code.strip()) or re.search(r"\bpython3?\s+-[cm]\b", code):
            findings.append(Finding(path, number, f"shell line {line.strip()!r}"))
    return findings


def shell_scripts() -> list[Path]:
    return sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file() and p.suffix != ".py")


# --- the static check -------------------------------------------------------------------
def test_the_scan_catches_every_form_it_claims_to() -> None:
    """Positive controls: the scanner flags each way of spawning a PATH python."""
    bad = """
import os, subprocess, sys
import pexpect
from subprocess import Popen as P
import asyncio
subprocess.run(["python", "-c", "print(1)"])
P(["python3", "-m", "console"])
subprocess.check_output(args=("/usr/bin/python3", "x"))
os.system("python -c 'print(1)'")
pexpect.spawn("/bin/sh", ["-c", f"python3 -m console {sys.argv}"])
subprocess.run(["/bin/sh", "-c", "cd /tmp && python -m pytest"])
os.execvp("python", ["python", "-V"])
asyncio.create_subprocess_exec("python3.11", "-V")
subprocess.run(["benchmarks/console_startup.py", "--child"])
"""
    findings, calls = scan_source(bad)
    assert calls == 9
    assert sorted(f.line for f in findings) == [6, 7, 8, 9, 10, 11, 12, 13, 14]
    good = """
import subprocess, sys
subprocess.run([sys.executable, "-c", "print(1)"])
subprocess.run([sys.executable, __file__, "--child"])
subprocess.run(["openssl", "version"])
subprocess.run(["/bin/sh", "-c", f"{sys.executable} -m console sign"])
package = "python3"
"""
    assert scan_source(good) == ([], 4)
    assert scan_shell('local python="${PYTHON:-python3}"\n"$PY" -m pytest "$@"\n') == []
    assert len(scan_shell("python3 -m venv .venv\nexec python -m pytest\n")) == 2


def test_no_module_or_test_spawns_a_python_from_path() -> None:
    files = python_files()
    findings, calls = [], 0
    for path in files:
        found, count = scan_source(path.read_text(), str(path.relative_to(ROOT)))
        findings += found
        calls += count
    assert len(files) > 100 and calls >= 20, (len(files), calls)  # the scan saw the code
    assert not findings, "use sys.executable:\n" + "\n".join(map(str, findings))


def test_scripts_use_the_venv_python_after_bootstrap() -> None:
    scripts = shell_scripts()
    assert {p.name for p in scripts} >= {"_env.sh", "launch", "test"}
    findings = [f for p in scripts for f in scan_shell(p.read_text(), p.name)]
    assert not findings, "\n".join(map(str, findings))
    assert BOOTSTRAP in (ROOT / "scripts" / "_env.sh").read_text()


# --- the runtime check ------------------------------------------------------------------
SPAWNING_TESTS = (
    # python -c in a child (the test that failed on a fresh machine)
    "tests/test_pkcs11.py::test_login_is_called_exactly_once_on_a_wrong_pin",
    # python -c through subprocess.run
    "tests/test_store_runner.py::test_a_run_whose_process_died_shows_as_incomplete",
    # python -m drivers.peers.embedded_https as a managed peer process
    "tests/peers/test_lifecycle.py::test_starts_healthy_and_stops_everything[EmbeddedHttpsPeer]",
    # `python -m console` through /bin/sh -c under pexpect (a terminal)
    "tests/test_cli.py::test_pin_prompt_on_a_terminal",
)


def _decoys(directory: Path, marker: Path) -> None:
    for name in ("python", "python3"):
        decoy = directory / name
        decoy.write_text(f'#!/bin/sh\necho "{name} $*" >> "{marker}"\nexit 97\n')
        decoy.chmod(decoy.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_spawning_tests_pass_with_a_decoy_python_first_on_path(tmp_path: Path) -> None:
    decoys = tmp_path / "decoy-bin"
    decoys.mkdir()
    marker = tmp_path / "decoy-used"
    _decoys(decoys, marker)
    env = python_environment()
    env["PATH"] = f"{decoys}{os.pathsep}{env.get('PATH', '')}"
    # The decoys really are what a bare `python`/`python3` resolves to on this PATH:
    for name in ("python", "python3"):
        assert shutil.which(name, path=env["PATH"]) == str(decoys / name)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SPAWNING_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    used = marker.read_text() if marker.exists() else ""
    assert not used, f"a test or SAFE Lab ran the PATH python: {used}\n{result.stdout[-3000:]}"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(SPAWNING_TESTS)} passed" in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize("name", ["python", "python3"])
def test_a_bare_python_would_be_caught(tmp_path: Path, name: str) -> None:
    """Positive control of the runtime check: a spawn of PATH's python hits the decoy."""
    marker = tmp_path / "used"
    _decoys(tmp_path, marker)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([name, "-c", "print(1)"], env=env, capture_output=True)
    assert result.returncode == 97 and marker.read_text().startswith(f"{name} -c")
