"""Every toggle changes the mechanism it claims, on the real peers with the emulated SIM.

Each test runs a pattern's workload against a real broker/server on loopback and checks what
the card and the connections did (signatures, who made them, connections, resumed
handshakes, card accesses, retry attempts), not only how long it took.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest

from drivers.errors import SafeLabError
from drivers.patterns.engine import Workload, make_device, peer_protocol
from drivers.patterns.faults import WatchedToken
from drivers.patterns.metrics import PatternSummary
from drivers.patterns.profile import load_pattern
from drivers.patterns.toggles import ToggleBoard, Toggles, parse_settings
from drivers.peers.pki import LabPki
from drivers.protocols.experiment import peer_for
from drivers.tls.signer import TokenSigner
from drivers.tokens.registry import open_token

CARD = "iotsafe:emulated;speed=0.02"


@pytest.fixture(scope="module")
def pki() -> LabPki:
    return LabPki()


@pytest.fixture(scope="module")
def peers(pki: LabPki) -> Iterator[dict[str, object]]:
    started: dict[str, object] = {}
    try:
        for protocol in ("mqtt", "jwt"):
            peer = peer_for(protocol, pki)
            peer.start()
            started[protocol] = peer
        started["https"] = started["jwt"]
        yield started
    finally:
        for name in ("mqtt", "jwt"):
            if name in started:
                started[name].stop()  # type: ignore[attr-defined]


def workload(
    peers: dict[str, object],
    pki: LabPki,
    pattern: str,
    settings: list[str],
    events: int,
    outage: tuple[float, float] | None = None,
) -> tuple[PatternSummary, Workload]:
    toggles, params = parse_settings(settings)
    profile = load_pattern(pattern).with_overrides(params)
    watch = WatchedToken(open_token(CARD))
    signer = TokenSigner(watch, reuse_session=toggles.token_session == "kept")  # type: ignore[arg-type]
    peer = peers[peer_protocol(profile.transport)]
    with closing(signer):
        device = make_device(profile, watch, signer, toggles, peer, pki)
        with closing(device):
            work = Workload(
                profile, device, watch, ToggleBoard(profile.transport, toggles), events=events
            )
            work.outage = outage
            summary = work.run()
    assert summary.duplicate_signatures == 0  # never a signature value twice
    return summary, work


def test_keepalive_keeps_one_connection(peers, pki) -> None:
    off, _ = workload(peers, pki, "periodic", ["period_s=0.05"], 5)
    on, work = workload(peers, pki, "periodic", ["period_s=0.05", "keepalive=on"], 5)
    assert (off.signatures, off.connections) == (5, 5)
    assert (on.signatures, on.connections) == (1, 1)
    assert [s.n_sign for s in work.samples] == [1, 0, 0, 0, 0]
    assert on.session_reuse_rate == pytest.approx(0.8)


def test_resume_makes_no_signature_on_reconnection(peers, pki) -> None:
    on, work = workload(peers, pki, "periodic", ["period_s=0.05", "resume=on"], 5)
    assert on.connections == 5 and on.resumed_handshakes == 4 and on.signatures == 1
    assert [s.result.resumed for s in work.samples] == [False, True, True, True, True]


def test_fresh_token_session_opens_the_card_per_signature(peers, pki) -> None:
    kept, _ = workload(peers, pki, "periodic", ["period_s=0.05"], 4)
    fresh, _ = workload(peers, pki, "periodic", ["period_s=0.05", "token-session=fresh"], 4)
    assert kept.signatures == fresh.signatures == 4
    # kept: open/login/find once, then sign_init+sign per signature; fresh: all of it each time
    assert fresh.card_busy_ms > 0 and kept.card_busy_ms > 0
    assert fresh.card_accesses >= 5 * 4  # open, login, find, sign init, sign (+ close)
    assert kept.card_accesses <= 2 * 4 + 4  # sign init + sign (+ the first open/login/find)


def test_preauth_moves_the_signatures_off_the_request_path(peers, pki) -> None:
    settings = ["mean_interval_s=0.3"]
    off, _ = workload(peers, pki, "event-driven", settings, 4)
    on, work = workload(peers, pki, "event-driven", [*settings, "preauth=on"], 4)
    assert off.signatures_request_path == 4 and off.signatures_background == 0
    assert on.signatures_request_path == 0 and on.signatures_background >= 4
    assert on.card_busy_background_ms > 0 and off.card_busy_background_ms == 0
    assert not any(s.result.connected for s in work.samples)  # every event found one ready
    assert all(s.result.auth_ns == 0 for s in work.samples)


def test_nodelay_sets_the_socket_option(peers, pki) -> None:
    for value in ("on", "off"):
        _, work = workload(peers, pki, "periodic", ["period_s=0.05", f"nodelay={value}"], 1)
        assert work.device.last_nodelay is (value == "on")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("settings", "signatures"),
    [
        ([], 1 + 9),  # one TLS handshake + a fresh JWT per request
        (["jwt-batch=on"], 1 + 3),  # one JWT per batch
        (["jwt-ttl=60"], 1 + 1),  # one JWT for the whole run
    ],
)
def test_jwt_reuse(peers, pki, settings: list[str], signatures: int) -> None:
    base = ["period_s=0.05", "batch_size=3", "keepalive=on"]
    summary, _ = workload(peers, pki, "batch", [*base, *settings], 3)
    assert summary.operations == 3 and summary.failed == 0
    assert summary.signatures == signatures


def test_jwt_refresh_signs_in_the_background(peers, pki) -> None:
    settings = ["period_s=0.15", "batch_size=2", "keepalive=on", "jwt-ttl=0.4", "jwt-refresh=on"]
    summary, _ = workload(peers, pki, "batch", settings, 6)
    assert summary.failed == 0
    assert summary.signatures_request_path == 1  # the TLS handshake only
    assert summary.signatures_background >= 2  # the first JWT and at least one renewal


def test_backoff_spaces_retries_through_a_card_outage(peers, pki) -> None:
    settings = ["period_s=0.05"]
    storm, _ = workload(peers, pki, "periodic", settings, 3, outage=(0.0, 0.4))
    calm, _ = workload(peers, pki, "periodic", [*settings, "backoff=on"], 3, outage=(0.0, 0.4))
    for summary in (storm, calm):
        assert summary.failed == 0 and summary.operations == 3  # recovered
        assert summary.sim_errors > 0 and summary.signing_success_rate < 1
    assert storm.attempts > 3 * calm.attempts
    assert calm.attempts <= 15


def test_refused_combinations_say_why() -> None:
    from drivers.runs import PatternRun

    with pytest.raises(SafeLabError, match="psk does not apply to mqtt"):
        PatternRun("periodic", CARD, ("psk=on",))
    with pytest.raises(SafeLabError, match="set jwt-ttl above 0"):
        PatternRun("batch", CARD, ("jwt-refresh=on",))
    with pytest.raises(SafeLabError, match="nodelay does not apply to https-jwt"):
        PatternRun("batch", CARD, ("nodelay=on",))
    with pytest.raises(SafeLabError, match=r"unknown toggle|unknown pattern parameter"):
        PatternRun("periodic", CARD, ("warp=on",))
    board = ToggleBoard("mqtt", Toggles())
    with pytest.raises(SafeLabError, match="psk"):
        board.flip("psk", "on")
    assert board.current() == (Toggles(), 0)  # a refused flip changes nothing


@pytest.mark.parametrize(
    ("pattern", "settings"),
    [
        ("periodic", ["period_s=0.05"]),
        ("event-driven", ["mean_interval_s=0.05"]),
        ("batch", ["period_s=0.05", "batch_size=2"]),
        ("real-time-control", []),
        ("remote-management", ["mean_interval_s=0.05"]),
        ("bulk-transfer", ["period_s=0.05", "image_kb=32", "chunk_kb=16"]),
    ],
)
def test_every_runnable_pattern_end_to_end(peers, pki, pattern: str, settings: list[str]) -> None:
    summary, work = workload(peers, pki, pattern, settings, 3)
    assert summary.operations == 3 and summary.failed == 0
    assert summary.signatures >= 3  # the unremedied client authenticates every operation
    assert all(s.latency_ns > 0 and s.n_sign >= 1 for s in work.samples)
    assert summary.card_busy_ms > 0 and summary.signing_success_rate == 1.0


@pytest.mark.parametrize(("resume", "signatures"), [("off", 2), ("on", 1)])
def test_a_reset_connection_is_reopened_at_the_next_event(
    peers, pki, resume: str, signatures: int
) -> None:
    toggles, params = parse_settings(["period_s=0.1", "keepalive=on", f"resume={resume}"])
    profile = load_pattern("periodic").with_overrides(params)
    watch = WatchedToken(open_token(CARD))
    signer = TokenSigner(watch)  # type: ignore[arg-type]
    with closing(signer):
        device = make_device(profile, watch, signer, toggles, peers["mqtt"], pki)
        with closing(device):
            work = Workload(profile, device, watch, ToggleBoard("mqtt", toggles), events=4)
            work.reset_at = 0.25  # after the second reading
            summary = work.run()
    assert summary.failed == 0 and summary.operations == 4
    assert summary.connections == 2  # kept, reset, reopened once
    assert summary.signatures == signatures  # a resumed reconnection signs nothing
    assert [s.result.connected for s in work.samples].count(True) == 2


def test_session_lifetime_bounds_a_kept_connection(peers, pki) -> None:
    settings = ["period_s=0.1", "keepalive=on", "session_lifetime_s=0.15"]
    summary, work = workload(peers, pki, "periodic", settings, 5)
    # readings at 0.1 s intervals, a session lives 0.15 s: renewed every other reading
    assert summary.failed == 0
    assert 2 <= summary.connections <= 4 and summary.signatures == summary.connections
    assert work.samples[1].result.reused and not work.samples[0].result.reused


def test_a_slow_card_shows_as_authentication_time_outs(peers, pki) -> None:
    toggles, params = parse_settings(["period_s=0.05", "auth_timeout_s=0.1"])
    profile = load_pattern("periodic").with_overrides(params)
    watch = WatchedToken(open_token(CARD))
    signer = TokenSigner(watch)  # type: ignore[arg-type]
    with closing(signer):
        device = make_device(profile, watch, signer, toggles, peers["mqtt"], pki)
        with closing(device):
            work = Workload(profile, device, watch, ToggleBoard("mqtt", toggles), events=4)
            work.slow = (0.0, 0.15, 0.15)  # the first reading's card accesses answer late
            summary = work.run()
    assert summary.failed == 0 and summary.sim_errors == 0  # slow is not failed
    assert summary.auth_timeouts >= 1 and summary.auth_timeout_rate < 1
    assert work.samples[0].result.auth_ns > 100_000_000


@pytest.mark.parametrize("hash_on", ["host", "card"])
def test_hash_on_sends_the_card_the_digest_or_the_whole_input(peers, pki, hash_on: str) -> None:
    settings = ["period_s=0.05", "batch_size=1", "keepalive=on", f"hash-on={hash_on}"]
    summary, work = workload(peers, pki, "batch", settings, 2)
    assert summary.failed == 0 and summary.signatures == 1 + 2
    jwt_inputs = [r.digest_len for r in work.device.signer.records[1:]]  # after the handshake
    if hash_on == "host":
        assert jwt_inputs == [32, 32]  # SHA-256 on the host, the card signs a digest
    else:
        assert all(n > 100 for n in jwt_inputs)  # the JWT signing input itself


@pytest.mark.parametrize(("resume", "chunks_sent"), [("1", 2 * 4), ("0", 2 * 4 + 2)])
def test_bulk_transfer_resumes_after_a_cut_from_the_last_acknowledged_chunk(
    peers, pki, resume: str, chunks_sent: int
) -> None:
    settings = ["period_s=0.05", "image_kb=64", "chunk_kb=16", "cut_after_chunks=2",
                f"chunk_resume={resume}", "nodelay=on"]  # fmt: skip
    summary, work = workload(peers, pki, "bulk-transfer", settings, 2)
    assert summary.failed == 0 and summary.network_errors == 1  # the cut, then a retry
    assert summary.units_sent == chunks_sent  # resumed: no chunk sent twice
    assert summary.connections == 2 + 1  # a connection per transfer, one more after the cut
    assert work.samples[0].attempts == 2 and work.samples[1].attempts == 1


def test_per_chunk_authentication_signs_every_chunk(peers, pki) -> None:
    base = ["period_s=0.05", "image_kb=64", "chunk_kb=16", "nodelay=on", "keepalive=on"]
    manifest, _ = workload(peers, pki, "bulk-transfer", base, 2)
    chunked, _ = workload(peers, pki, "bulk-transfer", [*base, "chunk_auth=1"], 2)
    assert manifest.signatures == 1 + 2  # the handshake, one manifest per transfer
    assert chunked.signatures == 1 + 2 * 4  # the handshake, every chunk
    assert manifest.units_sent == chunked.units_sent == 2 * 4
