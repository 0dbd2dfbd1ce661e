"""A sensor's flow control (``FlowConfig.max_pending``): it sends a new reading only while fewer
than ``max_pending`` wait for their signed ACK, so a sensor faster than the pipeline cannot
overflow the broker's queues (measured: 2,000 open-loop readings stalled a run)."""

from __future__ import annotations

import threading

import pytest

from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.roles.sensor import HandshakeFailed


def _ready(**changes: object) -> Deployment:
    cfg = FlowConfig(**{"sensors": 1, "messages": 0, "capture": False, **changes})
    dep = Deployment(cfg)
    dep.start()
    dep.connect_sensors()
    return dep


def _send_in_thread(sensor, reading: bytes) -> tuple[threading.Thread, list[HandshakeFailed]]:
    """``sensor.send(reading)`` in a thread that keeps the error a closed sensor raises."""
    errors: list[HandshakeFailed] = []

    def send() -> None:
        try:
            sensor.send(reading)
        except HandshakeFailed as error:
            errors.append(error)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, errors


def test_a_full_window_holds_the_next_reading_until_one_leaves() -> None:
    dep = _ready(max_pending=3, ack_timeout_s=3.0, backoff=1.0, max_attempts=1)
    try:
        sensor = dep.sensors["sensor-1"]
        assert dep.gateway.endpoint is not None
        dep.gateway.endpoint.stop()  # no more ACKs: every reading stays pending
        for index in range(3):
            sensor.send(dep.reading("sensor-1", index))
        fourth = threading.Thread(target=sensor.send, args=(dep.reading("sensor-1", 3),))
        fourth.start()
        fourth.join(0.5)
        assert fourth.is_alive(), "a fourth reading was sent with three unacknowledged"
        assert sensor.seq == 3 and sorted(sensor.pending) == [1, 2, 3]
        # after ack_timeout_s and its one attempt, the sensor reports the oldest readings to
        # the management server and drops them: the window has room again
        fourth.join(15)
        assert not fourth.is_alive()
        assert sensor.seq == 4 and 4 in sensor.pending
        assert sensor.reported[:1] == [1]
    finally:
        dep.stop()


def test_closing_the_sensor_releases_a_waiting_send_with_an_error() -> None:
    dep = _ready(max_pending=1, ack_timeout_s=60.0)
    try:
        sensor = dep.sensors["sensor-1"]
        assert dep.gateway.endpoint is not None
        dep.gateway.endpoint.stop()
        sensor.send(dep.reading("sensor-1", 0))
        waiting, errors = _send_in_thread(sensor, dep.reading("sensor-1", 1))
        waiting.join(0.3)
        assert waiting.is_alive()
        sensor.close()
        waiting.join(5)
        assert not waiting.is_alive()
        assert len(errors) == 1 and "waiting for ACKs" in errors[0].problem
        assert sensor.seq == 1  # the second reading never got a sequence number
    finally:
        dep.stop()


@pytest.mark.parametrize("broker", ["embedded"])
def test_a_long_run_through_a_small_window_delivers_every_reading(broker: str) -> None:
    dep = _ready(broker=broker, max_pending=4, messages=120)
    try:
        sensor = dep.sensors["sensor-1"]
        assert dep.send_readings() == 120
        assert dep.wait_delivered(120, 60)
        values = {r.value for r in dep.users["user-1"].readings}
        assert values == {dep.reading("sensor-1", i) for i in range(120)}
        assert len(sensor.acked) == 120 and not sensor.pending and not sensor.reported
    finally:
        dep.stop()


def test_a_new_sensor_starts_with_a_small_window() -> None:
    """Right after connecting, at most INITIAL_WINDOW readings go out unacknowledged (the
    window then grows with the ACKs up to max_pending)."""
    from drivers.ssdtf.roles.sensor import INITIAL_WINDOW

    dep = _ready(max_pending=64, ack_timeout_s=60.0)
    try:
        sensor = dep.sensors["sensor-1"]
        assert dep.gateway.endpoint is not None
        dep.gateway.endpoint.stop()
        for index in range(INITIAL_WINDOW):
            sensor.send(dep.reading("sensor-1", index))
        blocked, errors = _send_in_thread(sensor, dep.reading("sensor-1", 9))
        blocked.join(0.5)
        assert blocked.is_alive() and sensor.seq == INITIAL_WINDOW
        sensor.close()
        blocked.join(5)
        assert len(errors) == 1 and sensor.seq == INITIAL_WINDOW
    finally:
        dep.stop()


def test_the_resend_timeout_follows_the_measured_ack_round_trip() -> None:
    """A 20 ms ACK timeout on a pipeline whose ACKs take far longer under load: with a fixed
    timeout nearly every reading was re-sent twice and then reported to the management server
    as failed (measured: 399 re-sends and 197 false reports for 200 readings). The sensor
    measures the round trip and waits that long (RFC 6298), so a handful are re-sent."""
    dep = Deployment(
        FlowConfig(sensors=2, messages=100, capture=False, ack_timeout_s=0.02, reading_prefix="r")
    )
    try:
        dep.start()
        dep.connect_sensors()
        assert dep.send_readings() == 200
        assert dep.wait_delivered(200, 60)
        sensors = list(dep.sensors.values())
        assert all(s.srtt is not None and s.srtt > 0.02 for s in sensors)  # slower than 20 ms
        assert all(s.rto_s() >= s.srtt for s in sensors)  # type: ignore[operator]
        # before: ~2 re-sends per reading (399 for 200); now a few while the RTT estimate
        # forms and when a loaded machine stalls an ACK past SRTT + 4 RTTVAR (up to 22 seen in
        # a fresh-clone CI run on 2 busy cores): 1 in 5 readings separates the two clearly
        assert sum(s.resends for s in sensors) <= 40
        assert all(s.reported == [] and len(s.acked) == 100 for s in sensors)
    finally:
        dep.stop()
