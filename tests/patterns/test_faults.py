"""Faults on the real peers: a connection reset versus a real peer restart.

A reset (TCP RST under the device, the broker keeps running) and a restart (the broker's
process stopped and started again on the same port) both cost a reconnection; only the
restart also loses the broker's TLS session cache, so with ``resume=on`` the reconnection
after a restart is a full handshake (a card signature) and after a reset it is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from drivers.bench.store import ResultsStore
from drivers.patterns.engine import Workload, make_device
from drivers.patterns.faults import WatchedToken
from drivers.patterns.profile import load_pattern
from drivers.patterns.toggles import ToggleBoard, parse_settings
from drivers.peers.pki import LabPki
from drivers.protocols.experiment import peer_for
from drivers.runs import PatternRun, RunHandle
from drivers.tls.signer import TokenSigner
from drivers.tokens.registry import open_token

CARD = "iotsafe:emulated;speed=0.02"


@pytest.fixture(scope="module")
def pki() -> LabPki:
    return LabPki()


@pytest.fixture
def broker(pki: LabPki) -> Iterator[object]:
    peer = peer_for("mqtt", pki)
    with peer:
        yield peer


@pytest.mark.parametrize(("fault", "signatures"), [("reset", 1), ("restart", 2)])
def test_a_peer_restart_loses_the_session_cache_a_reset_does_not(
    broker, pki: LabPki, fault: str, signatures: int
) -> None:
    toggles, params = parse_settings(["period_s=0.1", "keepalive=on", "resume=on"])
    profile = load_pattern("periodic").with_overrides(params)
    watch = WatchedToken(open_token(CARD))
    signer = TokenSigner(watch)  # type: ignore[arg-type]
    pid, port = broker.pid, broker.port  # type: ignore[attr-defined]
    with closing(signer):
        device = make_device(profile, watch, signer, toggles, broker, pki)
        with closing(device):
            work = Workload(profile, device, watch, ToggleBoard("mqtt", toggles), events=5)
            if fault == "reset":
                work.reset_at = 0.25
            else:
                work.restart_at, work.restart = 0.25, broker.restart  # type: ignore[attr-defined]
            summary = work.run()
    restarted = broker.pid != pid  # type: ignore[attr-defined]
    assert restarted == (fault == "restart") and broker.port == port  # type: ignore[attr-defined]
    assert work.restarts == (1 if fault == "restart" else 0)
    assert summary.operations == 5 and summary.failed == 0
    assert summary.connections == 2  # kept, lost, reconnected once
    assert summary.signatures == signatures  # resumed after a reset; full after a restart
    assert summary.resumed_handshakes == (1 if fault == "reset" else 0)
    assert summary.duplicate_signatures == 0


def test_a_run_restarts_its_peer_and_stores_when(tmp_path: Path) -> None:
    spec = PatternRun(
        "periodic",
        CARD,
        ("period_s=0.1", "keepalive=on", "resume=on"),
        events=5,
        restart_peer_at=0.25,
    )
    outcome = RunHandle(spec, db_path=tmp_path / "runs.db").run()
    outcome.raise_for_error()
    summary = outcome.result.summary
    assert summary.failed == 0 and summary.connections == 2 and summary.signatures == 2
    with ResultsStore(tmp_path / "runs.db") as store:
        record = store.get_run(outcome.run_id)
    assert record.extra["restart_peer_at"] == 0.25
