"""The gateway's handshake state machine under a HELLO flood (issue 10, class 2): threads and
tables stay flat, challenges are rate limited, and the legitimate session survives."""

from __future__ import annotations

import threading

import pytest

from drivers.ssdtf.config import FlowConfig
from drivers.ssdtf.deployment import Deployment
from drivers.ssdtf.flood import hello_flood


@pytest.mark.parametrize("broker", ["embedded", "mosquitto"])
def test_hello_flood_keeps_threads_and_state_flat(broker: str, request) -> None:
    if broker == "mosquitto":
        request.getfixturevalue("mosquitto_available")
    dep = Deployment(
        FlowConfig(broker=broker, sensors=2, messages=1, capture=False, auth_deadline_s=10.0)
    )
    try:
        dep.start()
        dep.connect_sensors()
        threads = threading.active_count()
        report = hello_flood(dep, 1500, "sensor-2", timeout=30)
        # every HELLO on the flooder's own auth topic got the gateway's verdict; the broker's
        # ACL refused the quarter addressed to other client IDs (not the flooder's topics)
        assert report.verdicts >= 1500 - 1500 // 4, report.as_dict()
        assert report.challenges <= 2, report.as_dict()  # one pending challenge per client ID
        assert report.threads_peak <= threads + 4, report.as_dict()  # flooder + timer + closer
        sizes = report.sizes_peak
        assert sizes["pending"] <= 2 and sizes["limits"] <= 2 and sizes["sessions"] <= 2
        assert sizes["timers"] <= 2 and sizes["closer_queue"] <= 2
        assert sizes["recent_nd"] <= 1024 and sizes["expired"] <= 256
        # the legitimate session is untouched and still carries data end to end
        assert report.survivors == {"sensor-1": True}
        user = dep.users["user-1"]
        before = len(user.readings)
        dep.sensors["sensor-1"].send(b"after the flood")
        assert user.wait_for(before + 1, 10)
    finally:
        dep.stop()
