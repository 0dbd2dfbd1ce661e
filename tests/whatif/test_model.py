"""The model's structure: what each input does to the prediction, on a calibration built here.

A calibration with constant loopback costs (every quantile the same) makes the model's
arithmetic visible: one more millisecond of RTT must cost exactly the path's round trips, a
bigger signature exactly its bytes at the link's rate, a slower card exactly its share. The
figures compared are the model's own outputs for two scenarios, never a copy of the expected
value computed the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers.errors import SafeLabError
from drivers.whatif import (
    Algorithm,
    Scenario,
    flight_path,
    load_calibration,
    predict,
    predict_pattern_cell,
    register_algorithm,
)
from drivers.whatif.calibration import (
    PROBE_RTT_MS,
    QUANTILE_POINTS,
    Calibration,
    CalibrationError,
    ProtocolCalibration,
    Quantiles,
)
from drivers.whatif.tokens import ALGORITHMS

BASE_MS = 10.0
SIGN_MS = 0.5


def _flat(value: float) -> Quantiles:
    return Quantiles(tuple(value for _ in QUANTILE_POINTS), 20)


def flat_calibration(ready_ms: float = 2.0) -> Calibration:
    """Every protocol costs BASE_MS on loopback, signs in SIGN_MS, and its probe paid exactly
    the structural round trips (no shift)."""
    protocols = {}
    for name in ("mqtt", "https", "coap", "vpn"):
        rounds = flight_path(name).round_trips
        protocols[name] = ProtocolCalibration(
            name,
            _flat(BASE_MS),
            _flat(BASE_MS),
            _flat(SIGN_MS),
            BASE_MS + rounds * PROBE_RTT_MS,
            1600.0,
            2400.0,
            ready_ms,
        )
    return Calibration(protocols, 1.0, {"measured_at": "test"}, "test calibration")


CAL = flat_calibration()


def p50(**kwargs: object) -> float:
    return predict(Scenario(n=200, **kwargs), CAL).p50  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "rounds"), [("mqtt", 3), ("https", 3), ("coap", 4)])
def test_latency_grows_by_rtt_times_round_trips(protocol: str, rounds: int) -> None:
    at_zero = p50(protocol=protocol, link="rtt=0ms")
    for rtt in (20, 150):
        grown = p50(protocol=protocol, link=f"rtt={rtt}ms") - at_zero
        assert grown == pytest.approx(rounds * rtt, abs=1e-6)
    assert flight_path(protocol).round_trips == rounds


def test_paths_say_where_the_signature_sits() -> None:
    full, resumed = flight_path("mqtt", "full"), flight_path("mqtt", "resumed")
    assert full.signatures == 1 and resumed.signatures == 0
    assert resumed.round_trips == full.round_trips  # TLS 1.3 resumption saves no round trip
    assert flight_path("coap-psk").signatures == 0
    assert flight_path("https", "keepalive").round_trips == 1
    signing = [f for f in full.flights if f.signs]
    assert signing[0].direction == "up" and "CertificateVerify" in signing[0].label


def test_resumed_handshake_does_not_wait_for_the_token() -> None:
    card = "iotsafe:emulated;profile=paper-sim;speed=0.1"
    full = predict(Scenario("https", card, n=200), CAL)
    resumed = predict(Scenario("https", card, resume=True, n=200), CAL)
    assert full.p50 - resumed.p50 > 40  # the paper SIM's ~48 ms signature at x0.1
    assert resumed.card_utilisation == 0.0 and full.card_utilisation > 0.5


def test_card_speed_scales_the_signature() -> None:
    card = "iotsafe:emulated;profile=paper-sim"
    slow = p50(protocol="mqtt", token=card, speed=1.0)
    fast = p50(protocol="mqtt", token=card, speed=0.5)
    # sign_only of the paper SIM is ~476 ms at speed 1 (its Table 3 fit)
    assert slow - fast == pytest.approx(476 / 2, rel=0.05)


def test_signature_size_costs_its_bytes_at_the_link_rate() -> None:
    register_algorithm(Algorithm("test-big", 2420, 1312, software_sign_ms=SIGN_MS, source="test"))
    register_algorithm(Algorithm("test-small", 72, 65, software_sign_ms=SIGN_MS, source="test"))
    try:
        link = "rtt=0ms,rate=64kbit"
        big = p50(protocol="https", alg="test-big", link=link)
        small = p50(protocol="https", alg="test-small", link=link)
        extra_bytes = (2420 - 72) + (1312 - 65)
        payload_ms = extra_bytes * 8 / 64_000 * 1000
        headers_ms = 4 * 52 * 8 / 64_000 * 1000  # at most 4 more TCP segments' headers
        assert payload_ms <= big - small <= payload_ms + headers_ms
    finally:
        ALGORITHMS.pop("test-big")
        ALGORITHMS.pop("test-small")


def test_tcp_loss_is_modelled_as_retransmission_timeouts() -> None:
    clean = predict(Scenario("https", link="rtt=50ms", n=2000), CAL)
    lossy = predict(Scenario("https", link="rtt=50ms,loss=5%", n=2000), CAL)
    # a lost segment waits RTO = RTT + 200 ms: the tail shows it, the median barely moves
    assert lossy.p99 - clean.p99 >= 250 - 1e-6
    assert lossy.p50 == pytest.approx(clean.p50, abs=5)
    assert "modelled" in lossy.provenance["link"] and "modelled" in " ".join(lossy.notes)


def test_udp_loss_waits_for_the_dtls_timer() -> None:
    lossy = predict(Scenario("coap", link="rtt=20ms,loss=5%", n=2000), CAL)
    assert lossy.p99 >= 80 + 1000  # four round trips plus at least one 1 s DTLS timer
    assert "real" in lossy.provenance["link"]


def test_deadline_misses_and_provenance() -> None:
    prediction = predict(Scenario("mqtt", link="rtt=100ms", deadline_ms=250, n=300), CAL)
    assert prediction.miss_rate == 1.0  # 3 round trips of 100 ms cannot make 250 ms
    relaxed = predict(Scenario("mqtt", link="rtt=100ms", deadline_ms=400, n=300), CAL)
    assert relaxed.miss_rate == 0.0
    for key in ("flights", "loopback", "bytes", "token", "algorithm", "link"):
        assert prediction.provenance[key]
    assert "test calibration" in prediction.provenance["loopback"]


def test_pattern_keepalive_takes_the_handshake_off_the_request_path() -> None:
    card = "iotsafe:emulated;profile=paper-sim;speed=0.2"
    base = predict_pattern_cell("periodic", card, link="rtt=50ms", events=200, calibration=CAL)
    kept = predict_pattern_cell(
        "periodic", card, toggles="keepalive=on", link="rtt=50ms", events=200, calibration=CAL
    )
    assert base.p50 > 3 * 50 + 90  # a handshake with a ~95 ms signature every event
    assert kept.p50 < 50 + 10  # one PUBLISH/PUBACK round trip
    assert kept.card_utilisation < base.card_utilisation / 50
    assert base.deadline_ms == 1000.0  # the periodic pattern's budget
    assert "periodic" in base.provenance["pattern"]


def test_pattern_card_contention_queues_events() -> None:
    card = "iotsafe:emulated;profile=paper-sim;speed=1"
    # events every 0.3 s, each needs a ~476 ms signature: the queue grows, misses pile up
    busy = predict_pattern_cell(
        "periodic", card, toggles="period_s=0.3", events=100, calibration=CAL
    )
    assert busy.card_utilisation > 0.95
    assert busy.miss_rate is not None and busy.miss_rate > 0.5


def test_bad_inputs_are_refused_with_the_fix() -> None:
    with pytest.raises(SafeLabError, match="unknown signature algorithm"):
        predict(Scenario("mqtt", alg="rsa-9000", n=10), CAL)
    with pytest.raises(SafeLabError, match="no flight model"):
        Scenario("quic")
    with pytest.raises(SafeLabError, match="no resumed path"):
        Scenario("coap", resume=True)
    with pytest.raises(SafeLabError, match="no what-if model for token"):
        predict(Scenario("mqtt", token="pkcs11:token=x", n=10), CAL)
    with pytest.raises(SafeLabError):
        Scenario("mqtt", link="rtt=fast")
    with pytest.raises(SafeLabError, match="not in the model"):
        predict(Scenario(pattern="bulk-transfer", n=10), CAL)
    with pytest.raises(SafeLabError, match="cannot run on the card"):
        register_algorithm(Algorithm("test-huge", 50000, 1, refused_on_card="needs 64 KB RAM"))
        try:
            predict(Scenario("mqtt", token="iotsafe:emulated", alg="test-huge", n=10), CAL)
        finally:
            ALGORITHMS.pop("test-huge")


def test_calibration_file_round_trip_and_damage(tmp_path: Path) -> None:
    path = CAL.save(tmp_path / "cal.json")
    loaded = load_calibration(path)
    assert loaded.protocol("https").proxy.median == BASE_MS
    assert loaded.protocol("coap-psk") is loaded.protocol("coap")
    data = json.loads(path.read_text())
    del data["protocols"]["mqtt"]["proxy"]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="damaged"):
        load_calibration(path)


def test_packaged_calibration_has_every_protocol_with_provenance() -> None:
    from drivers.whatif.calibration import PACKAGED

    packaged = load_calibration(PACKAGED)
    for name in ("mqtt", "https", "coap", "vpn"):
        cal = packaged.protocol(name)
        assert cal.direct.n >= 10 and len(cal.run_ids) == 4
        assert cal.bytes_up > 500 and cal.bytes_down > 500  # certificates crossed the link
    assert packaged.provenance["peers"]["mqtt"].startswith("MosquittoPeer")


def test_quantiles_sample_inside_the_measured_range() -> None:
    import random

    q = Quantiles.of([float(i) for i in range(1, 101)])
    rng = random.Random(3)
    draws = [q.sample(rng) for _ in range(5000)]
    assert min(draws) >= 1.0 and max(draws) <= 100.0
    assert sorted(draws)[2500] == pytest.approx(q.median, abs=3)


def test_pattern_horizon_repeats_the_first_events() -> None:
    """A validation of 10 events sees the first event's handshake in its P99; the model with
    ``horizon=10`` does too, while 1000 events in a row dilute it."""
    card = "iotsafe:emulated;profile=paper-sim;speed=0.2"
    kept = "keepalive=on"
    long_run = predict_pattern_cell("periodic", card, toggles=kept, events=1000, calibration=CAL)
    short = predict_pattern_cell(
        "periodic", card, toggles=kept, events=1000, horizon=10, calibration=CAL
    )
    assert len(short.samples_ms) == 1000
    assert long_run.p99 < 20  # one handshake in 1000 events is under the 99th percentile
    assert short.p99 > 90  # one in every 10: the ~95 ms signature shows
    assert any("first 10 events" in note for note in short.notes)


def test_preauth_boots_authenticated() -> None:
    """With preauth the schedule starts once the device is ready (as the engine waits), so
    an early first event finds a connection and signs nothing on its path."""
    card = "iotsafe:emulated;profile=paper-sim;speed=1"
    p = predict_pattern_cell(
        "event-driven", card, toggles="preauth=on", events=30, horizon=3, calibration=CAL
    )
    assert p.samples_ms[0] < 50  # not a ~476 ms handshake


def test_provenance_says_whose_store_the_calibration_runs_are_in(tmp_path) -> None:
    """The packaged calibration's run IDs belong to the machine that measured it: the
    provenance says so instead of pointing at this machine's store; a user's own calibration
    points at this store."""
    from drivers.whatif.calibration import PACKAGED

    packaged = load_calibration(PACKAGED)
    shipped = predict(Scenario("mqtt", n=50), packaged).provenance["loopback"]
    assert "not this machine's" in shipped and "safelab whatif calibrate" in shipped
    own_path = tmp_path / "calibration.json"
    own_path.write_text(PACKAGED.read_text())
    own = predict(Scenario("mqtt", n=50), load_calibration(own_path)).provenance["loopback"]
    assert "in this results store" in own and "not this machine's" not in own
