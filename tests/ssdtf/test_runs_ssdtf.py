"""SSDTF flows and attacks on the run service, with real brokers and real tokens.

What the front ends rely on: sensor-1's token is opened once per run and closed at its end
with every session it opened (a counting software token in process; SoftHSM2 behind OpenSC's
pkcs11-spy in a subprocess); a PIN-protected token is asked once, a cancelled PIN runs and
stores nothing, a wrong PIN is not retried; the broker is named by the run (amqtt or
Mosquitto with its version); a live flow steps through the snapshot's controls and a stop
releases it; every run is stored with its summary or verdict.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drivers.bench.store import ResultsStore
from drivers.errors import PinCancelled, PinError, SafeLabError
from drivers.runs import (
    AttackDetail,
    FlowDetail,
    RunHandle,
    RunSnapshot,
    RunState,
    SsdtfAttackRun,
    SsdtfFlowRun,
)
from drivers.ssdtf.config import FlowConfig
from drivers.tokens.base import Pin, Token

from ..conftest import SoftHsm, TokenCounts

SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so"


class Pins:
    """A PIN provider that records which token asked and gives a fixed answer."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, token: Token) -> Pin | None:
        self.asked.append(token.info.label)
        return Pin(self.answer) if self.answer is not None else None


def stored_runs() -> list:
    with ResultsStore() as store:
        return store.list_runs()


def test_flow_opens_the_token_once_closes_it_and_stores_the_run(
    counting_tokens: TokenCounts,
) -> None:
    snapshots: list[RunSnapshot] = []
    spec = SsdtfFlowRun(FlowConfig(sensors=2, messages=2, token="counting:p256"))
    outcome = RunHandle(spec, on_snapshot=snapshots.append).run()
    assert outcome.state is RunState.COMPLETE, outcome.text
    assert counting_tokens.tokens == 1 and counting_tokens.closed == 1
    assert counting_tokens.sessions >= 1 and counting_tokens.balanced
    result = outcome.result
    assert result.summary.ok and result.summary.users["user-1"]["received"] == 4
    # Metadata from the objects: the token's own info, the broker's identity.
    meta = outcome.meta
    assert meta.token is not None and meta.token.uri == "counting:p256"
    assert meta.peer is not None and meta.peer.embedded and meta.peer.version.startswith("amqtt ")
    assert meta.condition == "model 1"
    # Snapshots carry frozen copies of the trace: the last one has every packet.
    detail = snapshots[-1].detail
    assert isinstance(detail, FlowDetail) and detail.done
    assert len(detail.rows) == len(result.trace.packets) > 0
    assert {"HELLO", "DATA", "DELIVER"} <= {row.ssdtf_type for row in detail.rows}
    assert detail.delivered == detail.expected == 4
    # Stored: one handshake sample per sensor, the summary and the broker beside it.
    (record,) = stored_runs()
    assert record.id == outcome.run_id and record.experiment == "ssdtf"
    assert record.status == "complete" and record.mode == "ssdtf:m1"
    assert record.n_samples == record.n_planned == 2
    assert record.extra["summary"]["ok"] is True and record.extra["peer_embedded"] is True
    assert record.token_uri.startswith("software:")


def test_attack_lends_one_token_to_its_deployments_and_stores_the_verdict(
    counting_tokens: TokenCounts,
) -> None:
    snapshots: list[RunSnapshot] = []
    spec = SsdtfAttackRun("replay-old-session", FlowConfig(token="counting:p256"))
    outcome = RunHandle(spec, on_snapshot=snapshots.append).run()
    assert outcome.state is RunState.COMPLETE, outcome.text
    assert counting_tokens.tokens == 1 and counting_tokens.closed == 1
    assert counting_tokens.balanced
    attack = outcome.result.outcome
    assert attack.rejected and not attack.control and attack.role
    details = [s.detail for s in snapshots if isinstance(s.detail, AttackDetail)]
    assert details and any(row.rejected for row in details[-1].rows)
    (record,) = stored_runs()
    assert record.experiment == "ssdtf-attack" and record.mode == "attack:replay-old-session"
    assert record.extra["outcome"]["rejected"] is True
    assert record.extra["verdict"].startswith(f"rejected by {attack.role}")


def test_live_flow_steps_through_the_controls_and_stop_releases_it(
    counting_tokens: TokenCounts,
) -> None:
    seen = threading.Condition()
    latest: list[FlowDetail] = []

    def keep(snapshot: RunSnapshot) -> None:
        if isinstance(snapshot.detail, FlowDetail):
            with seen:
                latest.append(snapshot.detail)
                seen.notify_all()

    def held_after(index: int) -> FlowDetail:
        def ready() -> bool:
            rows = latest[-1].rows if latest else ()
            return bool(rows) and rows[-1].status == "held" and rows[-1].index > index

        with seen:
            assert seen.wait_for(ready, timeout=30), "no held packet"
            return latest[-1]

    config = FlowConfig(messages=1, token="counting:p256").for_stepping()
    handle = RunHandle(SsdtfFlowRun(config), on_snapshot=keep).start()
    try:
        first = held_after(-1)
        assert first.rows[-1].mqtt_type == "CONNECT" and first.controls.stepping
        first.controls.step()
        second = held_after(first.rows[-1].index)
        assert [r.status for r in second.rows[:-1]] == ["forwarded"] * (len(second.rows) - 1)
    finally:
        handle.stop()  # releases the held flow: it runs to its end instead of waiting
    outcome = handle.wait(60)
    assert outcome is not None and outcome.state is RunState.COMPLETE, outcome
    assert outcome.result.summary.ok
    assert all(r.status == "forwarded" for r in latest[-1].rows)
    assert counting_tokens.tokens == 1 and counting_tokens.balanced


def test_pin_token_is_asked_once_cancel_and_wrong_pin_store_nothing(softhsm: SoftHsm) -> None:
    uri = softhsm.uri("dev")
    cancelled = RunHandle(
        SsdtfFlowRun(FlowConfig(messages=1, token=uri)), pin_provider=Pins(None)
    ).run()
    assert cancelled.state is RunState.CANCELLED and isinstance(cancelled.error, PinCancelled)
    wrong = Pins("0000")
    failed = RunHandle(SsdtfAttackRun("replay", FlowConfig(token=uri)), pin_provider=wrong).run()
    assert failed.state is RunState.FAILED and isinstance(failed.error, PinError)
    assert "wrong PIN" in failed.text and len(wrong.asked) == 1
    assert stored_runs() == []
    pins = Pins(softhsm.pin)
    outcome = RunHandle(SsdtfFlowRun(FlowConfig(messages=1, token=uri)), pin_provider=pins).run()
    assert outcome.state is RunState.COMPLETE, outcome.text
    assert pins.asked == [softhsm.label]
    assert outcome.meta.token.kind == "pkcs11"
    (record,) = stored_runs()
    assert record.token_kind == "pkcs11" and softhsm.pin not in repr(record)
    # nothing left logged in: a PKCS#11 login is process-wide while any session stays open,
    # so a leaked session would make the next wrong PIN look accepted
    from drivers.tokens.registry import open_token

    with open_token(uri) as token, pytest.raises(PinError):
        token.open().login(Pin("0000"))


def test_sessions_and_login_balance_on_softhsm_through_pkcs11_spy(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    """The CLI demo on SoftHSM2 behind pkcs11-spy: every session opened is closed, one login."""
    if not Path(SPY).exists():
        pytest.skip("OpenSC's pkcs11-spy is missing (scripts/test installs opensc-pkcs11)")
    log = tmp_path / "spy.log"
    env = {
        **os.environ,
        "PKCS11SPY": softhsm.module,
        "PKCS11SPY_OUTPUT": str(log),
        "LAB_PIN": softhsm.pin,
    }
    demo = [sys.executable, "-m", "console", "ssdtf", "demo", "--messages", "1", "--sensors", "1"]
    result = subprocess.run(
        [*demo, "--token", softhsm.uri("dev", module=SPY), "--pin-env", "LAB_PIN", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    calls = re.findall(r"^\d+: (C_\w+)", log.read_text(), re.MULTILINE)
    opened, closed = calls.count("C_OpenSession"), calls.count("C_CloseSession")
    assert opened >= 1 and opened == closed
    assert calls.count("C_Login") == 1 and calls.count("C_Sign") >= 1


def test_mosquitto_broker_is_named_real_with_its_version(mosquitto_available: None) -> None:
    spec = SsdtfFlowRun(FlowConfig(messages=1, broker="mosquitto"), live=False)
    outcome = RunHandle(spec).run()
    assert outcome.state is RunState.COMPLETE, outcome.text
    peer = outcome.meta.peer
    assert peer is not None and peer.name == "mosquitto" and not peer.embedded
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", peer.version)
    (record,) = stored_runs()
    assert record.extra["peer"] == "mosquitto" and record.extra["peer_embedded"] is False


def test_specs_are_refused_before_anything_starts() -> None:
    with pytest.raises(SafeLabError, match="unknown attack 'nope'"):
        SsdtfAttackRun("nope")
    with pytest.raises(SafeLabError, match="no PIN"):
        SsdtfFlowRun(FlowConfig(token="software:p256", token_pin=Pin("1234")))
    with pytest.raises(SafeLabError, match="model 4"):
        SsdtfFlowRun(FlowConfig(model=4))
    assert stored_runs() == []
