"""Layers stay apart: the driver layer has no UI, and front ends do not run experiments.

1. ``drivers/`` imports no UI library, so the CLI, the console and scripts share it.
2. ``screens/`` and ``console/`` are thin: every run goes through the run service
   (:mod:`drivers.runs`). Checked on the syntax tree of every module there; a module breaks
   the rule when it

   - imports ``drivers.protocols.experiment``, or from ``drivers.peers`` anything but the
     status/identity data (``drivers.peers.select.peer_status``/``PeerStatus``,
     ``drivers.peers.base.PeerIdentity``) -- without a peer class, it cannot start a peer;
   - imports the run loops the service drives (``ExperimentRunner``, ``run_protocol``,
     ``run_experiment``, ``TokenSigner``, the SSDTF ``Deployment``/``FlowRun``), calls
     ``run_attack`` or calls a peer factory (``peer_for``, ``mqtt_peer``, ``https_peer``);
   - calls a store write (``create_run``, ``add_samples``, ``finish_run``); reading the store
     (``get_run``, ``list_runs``, ``samples``) for display and export is fine;
   - opens a token: calls ``open_token(...)``, a bare ``.open()`` (a token session) or
     ``.login(...)``. Only :data:`TOKEN_INFO` modules may, because they show a token rather
     than run on it (the picker reads certificates and checks a PIN).

   :data:`NOT_YET_ON_THE_SERVICE` lists modules still to be ported, each with its TODO.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "drivers"
UI_PACKAGES = {"textual", "rich", "console", "screens"}

FRONT_ENDS = ("screens", "console")
TOKEN_INFO = {
    "screens/tokens.py": "the token picker: certificate details and a PIN check, no runs",
}
NOT_YET_ON_THE_SERVICE: dict[str, str] = {}
"""Front-end modules still orchestrating runs themselves, each with its TODO (none left)."""

ALLOWED_PEER_NAMES = {
    "drivers.peers.select": {"peer_status", "PeerStatus"},
    "drivers.peers.base": {"PeerIdentity"},
}
FORBIDDEN_NAMES = {
    "drivers.bench.runner": {"ExperimentRunner"},
    "drivers.protocols.base": {"run_protocol"},
    "drivers.tls.signer": {"TokenSigner"},
    "drivers.ssdtf.deployment": {"Deployment", "FlowRun"},
    "drivers.ssdtf.signing": {"TokenSigner"},
}
FORBIDDEN_CALLS = {"run_experiment", "peer_for", "mqtt_peer", "https_peer", "run_attack"}
STORE_WRITES = {"create_run", "add_samples", "finish_run"}
TOKEN_OPENING = {"open_token", "login"}


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


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def run_violations(source: str, *, may_open_tokens: bool = False) -> list[str]:
    """What in ``source`` breaks the front-end rule (the module docstring), one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(("drivers.peers", "drivers.protocols.experiment")):
                    found.append(f"{line}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            module, names = node.module, {alias.name for alias in node.names}
            if module == "drivers.protocols.experiment":
                found.append(f"{line}: imports from {module}")
            elif module == "drivers.peers" or module.startswith("drivers.peers."):
                extra = names - ALLOWED_PEER_NAMES.get(module, set())
                if extra:
                    found.append(f"{line}: imports peer parts {sorted(extra)} from {module}")
            elif names & FORBIDDEN_NAMES.get(module, set()):
                found.append(f"{line}: imports {sorted(names & FORBIDDEN_NAMES[module])}")
        elif isinstance(node, ast.Call):
            name = _called_name(node)
            if name in FORBIDDEN_CALLS:
                found.append(f"{line}: calls {name}() (a run or a peer outside the service)")
            elif name in STORE_WRITES:
                found.append(f"{line}: writes the store ({name})")
            elif not may_open_tokens and (
                name in TOKEN_OPENING
                or (
                    name == "open"
                    and isinstance(node.func, ast.Attribute)
                    and not node.args
                    and not node.keywords
                )
            ):
                found.append(f"{line}: opens a token ({name})")
    return found


def front_end_modules() -> list[Path]:
    files = [f for package in FRONT_ENDS for f in (ROOT / package).rglob("*.py")]
    assert len(files) > 10
    return files


def test_screens_and_cli_run_only_through_the_run_service() -> None:
    offenders = {}
    for path in front_end_modules():
        name = path.relative_to(ROOT).as_posix()
        if name in NOT_YET_ON_THE_SERVICE:
            continue
        found = run_violations(path.read_text(), may_open_tokens=name in TOKEN_INFO)
        if found:
            offenders[name] = found
    assert offenders == {}


def test_allow_lists_name_existing_modules() -> None:
    """A stale entry would silently exempt a module that later takes the name."""
    for name in (*TOKEN_INFO, *NOT_YET_ON_THE_SERVICE):
        assert (ROOT / name).is_file(), name


VIOLATING = """
import drivers.peers.mosquitto
from drivers.protocols.experiment import Table6Row
from drivers.peers.nginx import NginxPeer
from drivers.peers.select import peer_status, mqtt_peer
from drivers.bench.runner import ExperimentRunner, RunConfig
from drivers.tokens.registry import open_token
from drivers.ssdtf.deployment import Deployment

def run(store, uri):
    run_attack("replay", None)
    with open_token(uri) as token, token.open() as session:
        session.login(None)
    run_id = store.create_run(experiment="sign")
    store.add_samples(run_id, [])
    store.finish_run(run_id, "complete")
    with peer_for("mqtt", None):
        pass
"""

CLEAN = """
from drivers.peers.select import peer_status, PeerStatus
from drivers.runs import ProtocolRun, RunHandle
from drivers.bench.store import ResultsStore

def run(db, uri, ask):
    handle = RunHandle(ProtocolRun("mqtt", uri), db_path=db, pin_provider=ask).start()
    with ResultsStore(db) as store, open("x.csv", "w") as out:
        out.write(str(store.get_run(1)))
    return handle
"""


def test_the_rule_catches_each_kind_of_violation() -> None:
    found = "\n".join(run_violations(VIOLATING))
    for words in (
        "imports drivers.peers.mosquitto",
        "imports from drivers.protocols.experiment",
        "['NginxPeer']",
        "['mqtt_peer']",
        "['ExperimentRunner']",
        "opens a token (open_token)",
        "opens a token (open)",
        "opens a token (login)",
        "writes the store (create_run)",
        "writes the store (add_samples)",
        "writes the store (finish_run)",
        "calls peer_for()",
        "['Deployment']",
        "calls run_attack()",
    ):
        assert words in found, words
    assert run_violations(CLEAN) == []
    # the token-info exemption covers opening tokens, never store writes or peers
    exempt = "\n".join(run_violations(VIOLATING, may_open_tokens=True))
    assert "opens a token" not in exempt and "writes the store (create_run)" in exempt
