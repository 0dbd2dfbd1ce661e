"""Every attack of the research list is rejected at the stated point with its reason; the
positive controls (QoS downgrade, DUP re-send, RETAIN changes) still verify."""

from __future__ import annotations

import pytest

from drivers.ssdtf import config as topics
from drivers.ssdtf.attacks import ATTACKS, run_attack
from drivers.ssdtf.config import FlowConfig

ATTACK_NAMES = [n for n, a in ATTACKS.items() if not a.control]
CONTROL_NAMES = [n for n, a in ATTACKS.items() if a.control]


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_rejected_where_expected(name: str) -> None:
    outcome = run_attack(name)
    assert outcome.rejected, outcome.as_dict()
    assert (outcome.role, outcome.reason) and any(
        outcome.role == role and text in outcome.reason for role, text in outcome.expected
    )


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_positive_controls_still_verify(name: str) -> None:
    outcome = run_attack(name)
    assert outcome.rejected, outcome.as_dict()  # for a control: everything verified


def test_qos_downgrade_really_happened() -> None:
    outcome = run_attack("control-qos")
    to_gateway = [
        p
        for p in outcome.trace.packets
        if p.lane == "gateway" and p.direction == "b2c" and p.topic == topics.data_topic("sensor-1")
    ]
    assert to_gateway and all(p.qos == 0 for p in to_gateway)
    published = [
        p
        for p in outcome.trace.packets
        if p.lane == "sensor-1" and p.topic == topics.data_topic("sensor-1")
    ]
    assert all(p.qos == 1 for p in published)


def test_dup_resend_verifies_and_is_not_delivered_twice() -> None:
    outcome = run_attack("control-dup")
    dup = [p for p in outcome.trace.packets if p.dup and p.lane == "sensor-1"]
    assert dup
    assert outcome.evidence["received"] == {"user-1": 2}


def test_retain_changes_verify() -> None:
    outcome = run_attack("control-retain")
    flipped = [p for p in outcome.trace.packets if p.lane == "gateway" and p.retain]
    assert flipped and all(v.ok for p in flipped for v in p.verdicts)


def test_broker_impersonation_sends_no_data_and_reports() -> None:
    outcome = run_attack("broker-impersonation")
    assert outcome.evidence["data_publishes_by_sensor_1"] == 0
    assert outcome.evidence["reports_to_ms"] == 1


@pytest.mark.parametrize(
    ("name", "where"),
    [("tampered-topic", "broker"), ("plain-client", "broker"), ("wrong-device-key", "gateway")],
)
def test_attacks_on_mosquitto(name: str, where: str, mosquitto_available: None) -> None:
    """Mosquitto enforces the per-role credentials and the ACL itself (its log says what it
    refused); what only SSDTF can judge (the device key) is the gateway's."""
    outcome = run_attack(name, FlowConfig(broker="mosquitto"))
    assert outcome.rejected, outcome.as_dict()
    assert outcome.role == where
