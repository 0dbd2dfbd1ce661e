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


@pytest.fixture(scope="module")
def web(pki: LabPki) -> Iterator[object]:
    peer = peer_for("https", pki)
    with peer:
        yield peer


def _bulk(peer: object, pki: LabPki, settings: list[str], events: int) -> Workload:
    toggles, params = parse_settings(settings)
    profile = load_pattern("bulk-transfer").with_overrides(params)
    watch = WatchedToken(open_token(CARD))
    signer = TokenSigner(watch)  # type: ignore[arg-type]
    with closing(signer):
        device = make_device(profile, watch, signer, toggles, peer, pki)
        with closing(device):
            work = Workload(
                profile, device, watch, ToggleBoard(profile.transport, toggles), events=events
            )
            work.run()
    return work


@pytest.mark.parametrize(("resume", "refetched"), [("1", 0), ("0", 2)])
def test_https_bulk_download_resumes_from_the_last_range_after_a_cut(
    web, pki: LabPki, resume: str, refetched: int
) -> None:
    settings = ["transport=https", "period_s=0.05", "image_kb=64", "chunk_kb=16",
                "cut_after_chunks=2", f"chunk_resume={resume}"]  # fmt: skip
    work = _bulk(web, pki, settings, 2)
    download = work.device.bulk  # type: ignore[attr-defined]
    summary = work.summary(1.0)
    assert summary.failed == 0 and summary.network_errors == 1  # the cut, then a retry
    assert download.transfers == 2 and download.cuts == 1  # both images whole (SHA-256 checked)
    # resumed: the new connection asks for the rest only; else chunks 0-1 come again
    assert download.bytes_received == (2 * 4 + refetched) * 16 * 1024
    # three handshakes; a manifest per transfer, and one more when a cut restarts from zero
    assert summary.connections == 2 + 1 and summary.signatures == 3 + 2 + (refetched > 0)
    assert work.samples[0].attempts == 2 and work.samples[1].attempts == 1
    log = web.log_text() + (Path(web.workdir) / "access.log").read_text()  # type: ignore[attr-defined]
    assert " 206 " in log  # nginx answered partial content


def test_https_bulk_per_chunk_receipts_sign_every_chunk(web, pki: LabPki) -> None:
    base = ["transport=https", "period_s=0.05", "image_kb=64", "chunk_kb=16", "keepalive=on"]
    manifest = _bulk(web, pki, base, 2).summary(1.0)
    chunked = _bulk(web, pki, [*base, "chunk_auth=1"], 2).summary(1.0)
    assert manifest.signatures == 1 + 2 and chunked.signatures == 1 + 2 * 4
    assert manifest.units_sent == chunked.units_sent == 2 * 4


def _vpn_run(tmp_path: Path, *settings: str, events: int = 3) -> object:
    spec = PatternRun("remote-management", CARD, ("transport=vpn", *settings), events=events)
    outcome = RunHandle(spec, db_path=tmp_path / f"vpn-{len(settings)}.db").run()
    outcome.raise_for_error()
    return outcome.result


def test_remote_management_over_the_vpn_always_on_sets_up_one_tunnel(tmp_path: Path) -> None:
    per_operation = _vpn_run(tmp_path, "mean_interval_s=0.3").summary  # type: ignore[attr-defined]
    always_on = _vpn_run(tmp_path, "mean_interval_s=0.3", "keepalive=on").summary  # type: ignore[attr-defined]
    # a real openvpn client per operation, its handshake signed by the card; or one tunnel
    assert per_operation.failed == always_on.failed == 0
    assert per_operation.connections == 3 and per_operation.signatures == 3
    assert always_on.connections == 1 and always_on.signatures == 1
    assert always_on.session_reuse_rate == pytest.approx(2 / 3)
    assert per_operation.session_reuse_rate == 0


def test_vpn_preauth_brings_the_next_tunnel_up_off_the_request_path(tmp_path: Path) -> None:
    # seed 13: gaps of 0.6, 2.3, 2.3 s, each longer than a tunnel set-up (~1.1 s)
    result = _vpn_run(tmp_path, "mean_interval_s=2", "preauth=on", "seed=13")
    summary = result.summary  # type: ignore[attr-defined]
    assert summary.failed == 0
    assert summary.signatures_request_path == 0 and summary.signatures_background >= 3
    assert summary.session_reuse_rate == 1.0  # every operation found its tunnel up


def test_resume_is_refused_on_the_vpn_with_the_reason() -> None:
    from drivers.errors import SafeLabError

    with pytest.raises(SafeLabError, match="OpenVPN disables TLS session resumption"):
        PatternRun("remote-management", CARD, ("transport=vpn", "resume=on"), events=1)


@pytest.fixture(scope="module")
def coap_server(pki: LabPki) -> Iterator[object]:
    peer = peer_for("coap", pki)
    with peer:
        yield peer


@pytest.mark.parametrize(("resume", "refetched"), [("1", 0), ("0", 4)])
def test_coap_blockwise_bulk_resumes_from_the_next_block_on_a_new_session(
    coap_server, pki: LabPki, resume: str, refetched: int
) -> None:
    settings = ["transport=coap", "period_s=0.05", "image_kb=16", "cut_after_chunks=4",
                f"chunk_resume={resume}"]  # fmt: skip
    work = _bulk(coap_server, pki, settings, 2)
    download = work.device.bulk  # type: ignore[attr-defined]
    summary = work.summary(1.0)
    assert summary.failed == 0 and summary.network_errors == 1  # the lost session, a retry
    assert download.transfers == 2 and download.cuts == 1  # both images whole (SHA-256)
    assert download.bytes_received == (2 * 16 + refetched) * 1024  # 1 KiB blocks
    assert summary.units_sent == 2 * 16 + refetched
    # a DTLS handshake per session (the cut costs one more); a manifest per transfer start
    assert summary.connections == 3 and summary.signatures == 3 + 2 + (refetched > 0)
