"""The run service against real parts: software and SoftHSM2 tokens, Mosquitto on loopback.

What the front ends rely on: snapshots are frozen and reach subscribers; pause holds the
trials and stop keeps the partial run ``incomplete``; the PIN is asked exactly once per token
and a cancelled PIN runs nothing; a wrong PIN is not retried; metadata names the token and
the peer (real/embedded and its version) from the objects themselves; refused conditions are
refused before anything starts.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import threading

import pytest

from drivers.bench.runner import Mode, RunConfig
from drivers.bench.store import ResultsStore
from drivers.errors import PinCancelled, PinError, RunInterrupted, SafeLabError
from drivers.peers.base import find_program
from drivers.protocols.base import Condition
from drivers.runs import (
    ProtocolDetail,
    ProtocolRun,
    RunHandle,
    RunSnapshot,
    RunState,
    SignDetail,
    SigningRun,
    Table6Run,
)
from drivers.tokens.base import Pin, Token

from .conftest import SoftHsm


def sign_spec(n: int, uri: str = "software:p256", mode: Mode = Mode.SIGN_ONLY) -> SigningRun:
    return SigningRun(RunConfig(mode=mode, n=n, warmup=0), uri, progress_interval_s=0.0)


class Pins:
    """A PIN provider that counts its calls and records which token asked."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, token: Token) -> Pin | None:
        self.asked.append(token.info.label)
        return Pin(self.answer) if self.answer is not None else None


def test_signing_run_posts_frozen_snapshots_and_stores_the_run() -> None:
    snapshots: list[RunSnapshot] = []
    handle = RunHandle(sign_spec(40), on_snapshot=snapshots.append)
    outcome = handle.run()
    assert outcome.state is RunState.COMPLETE and outcome.error is None
    assert outcome.run_ids == (outcome.result.run_id,) and outcome.run_id > 0
    running = [s for s in snapshots if s.state is RunState.RUNNING and s.done]
    assert running, "no progress snapshot reached the subscriber"
    done = [s.done for s in running]
    assert done == sorted(done) and done[-1] == 40
    last = snapshots[-1]
    assert last.state is RunState.COMPLETE and last is outcome.last
    assert last.stats is not None and last.stats.count == 40 and last.histogram is not None
    assert isinstance(last.detail, SignDetail) and last.detail.apdus is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        last.done = 0  # type: ignore[misc]
    meta = outcome.meta
    assert meta is not None and meta.token is not None
    assert (meta.token.uri, meta.token.kind, meta.token.emulated) == (
        "software:p256",
        "software",
        False,
    )
    assert meta.condition == "sign_only" and meta.peer is None
    with ResultsStore() as store:
        record = store.get_run(outcome.run_id)
    assert (record.status, record.n_samples) == ("complete", 40)


def test_pause_holds_the_trials_and_stop_keeps_the_partial_run_incomplete() -> None:
    handle = RunHandle(sign_spec(10_000_000))
    paused = threading.Event()

    def listen(snapshot: RunSnapshot) -> None:
        if snapshot.done >= 5 and not handle.paused:
            handle.pause()  # from the run's thread, as a UI thread might at any moment
        if snapshot.state is RunState.PAUSED:
            paused.set()

    handle.subscribe(listen)
    handle.start()
    assert paused.wait(60), "the run never reported itself paused"
    held = handle.snapshot.done
    # Paused means waiting on the resume event: a second look still shows the same count.
    assert handle.wait(0.3) is None and handle.snapshot.done == held
    handle.stop()
    outcome = handle.wait(60)
    assert outcome is not None and outcome.state is RunState.INCOMPLETE
    assert outcome.error is None and "stopped by the user" in outcome.text
    with ResultsStore() as store:
        record = store.get_run(outcome.run_id)
    assert record.status == "incomplete" and "stopped by the user" in (record.reason or "")
    assert 5 <= record.n_samples == held < 10_000_000


def test_stop_before_start_stores_an_empty_incomplete_run_and_no_trial() -> None:
    handle = RunHandle(sign_spec(1000))
    handle.stop()
    outcome = handle.run()
    assert outcome.state is RunState.INCOMPLETE
    with ResultsStore() as store:
        record = store.get_run(outcome.run_id)
    assert record.status == "incomplete" and record.n_samples == 0


def test_pin_is_asked_once_for_many_logins(softhsm: SoftHsm) -> None:
    pins = Pins(softhsm.pin)
    # total mode opens, logs in and signs afresh for every trial: 1 + 12 logins, one PIN.
    outcome = RunHandle(sign_spec(12, softhsm.uri(), Mode.TOTAL), pin_provider=pins).run()
    assert outcome.state is RunState.COMPLETE, outcome.text
    assert len(pins.asked) == 1


def test_cancelled_pin_runs_nothing_and_stores_nothing(softhsm: SoftHsm) -> None:
    pins = Pins(None)
    outcome = RunHandle(sign_spec(5, softhsm.uri()), pin_provider=pins).run()
    assert outcome.state is RunState.CANCELLED and isinstance(outcome.error, PinCancelled)
    assert len(pins.asked) == 1 and outcome.run_ids == ()
    with ResultsStore() as store:
        assert store.list_runs() == []
    with pytest.raises(PinCancelled):
        outcome.raise_for_error()


@pytest.mark.wrong_pin
def test_wrong_pin_is_never_retried(softhsm: SoftHsm) -> None:
    pins = Pins("wrong-PIN-0")
    outcome = RunHandle(sign_spec(5, softhsm.uri()), pin_provider=pins).run()
    assert outcome.state is RunState.FAILED and isinstance(outcome.error, PinError)
    assert len(pins.asked) == 1
    with ResultsStore() as store:
        assert store.list_runs() == []


def test_no_pin_provider_for_a_pin_token_is_a_clear_error(softhsm: SoftHsm) -> None:
    outcome = RunHandle(sign_spec(5, softhsm.uri())).run()
    assert outcome.state is RunState.FAILED and isinstance(outcome.error, PinError)
    assert "--pin-env" in outcome.error.one_line()


def _mosquitto_version() -> str:
    path = find_program("mosquitto")
    assert path is not None, "mosquitto is a test dependency (Debian mosquitto)"
    done = subprocess.run([path, "-h"], capture_output=True, check=False)
    match = re.search(r"mosquitto version (\S+)", (done.stdout + done.stderr).decode())
    assert match is not None
    return match.group(1)


def test_protocol_run_metadata_names_the_real_peer_and_its_version(softhsm: SoftHsm) -> None:
    pins = Pins(softhsm.pin)
    snapshots: list[RunSnapshot] = []
    spec = ProtocolRun("mqtt", softhsm.uri(), Condition(reuse_token_session=False), n=3, warmup=1)
    outcome = RunHandle(spec, pin_provider=pins, on_snapshot=snapshots.append).run()
    assert outcome.state is RunState.COMPLETE, outcome.text
    assert len(pins.asked) == 1  # one PIN for a fresh token session per handshake
    meta = outcome.meta
    assert meta is not None and meta.peer is not None and meta.token is not None
    assert (meta.peer.name, meta.peer.kind) == ("MosquittoPeer", "real")
    assert meta.peer.version == _mosquitto_version()
    assert meta.established_at == "MQTT CONNACK received"
    assert meta.condition == "fresh-token-session" and meta.token.label == softhsm.label
    detail = snapshots[-1].detail
    assert isinstance(detail, ProtocolDetail) and detail.n_sign == (1, 1, 1)
    with ResultsStore() as store:
        record = store.get_run(outcome.run_id)
    assert record.extra["peer"] == "MosquittoPeer" and record.extra["peer_embedded"] is False
    assert record.extra["peer_version"] == meta.peer.version


def test_protocol_run_with_a_cancelled_pin_starts_no_peer(softhsm: SoftHsm) -> None:
    snapshots: list[RunSnapshot] = []
    spec = ProtocolRun("mqtt", softhsm.uri(), n=2, warmup=0)
    outcome = RunHandle(spec, pin_provider=Pins(None), on_snapshot=snapshots.append).run()
    assert outcome.state is RunState.CANCELLED
    assert all(s.meta is None or s.meta.peer is None for s in snapshots)
    with ResultsStore() as store:
        assert store.list_runs() == []


@pytest.mark.parametrize(
    "protocol,condition,reason",
    [
        ("jwt", Condition(resume=True), "jwt cannot resume"),
        ("vpn", Condition(resume=True), "OpenVPN disables TLS resumption"),
        ("coap", Condition(keep_alive=True), "keep-alive"),
        ("mqtt", Condition(jwt_ttl_s=60), "apply to jwt only"),
    ],
)
def test_refused_conditions_are_refused_before_anything_starts(
    protocol: str, condition: Condition, reason: str
) -> None:
    with pytest.raises(SafeLabError, match=reason):
        ProtocolRun(protocol, "software:p256", condition)


def test_table6_stopped_between_runs_keeps_the_finished_runs() -> None:
    spec = Table6Run("software:p256", ("mqtt",), n=2, warmup=0)
    handle = RunHandle(spec)

    def listen(snapshot: RunSnapshot) -> None:
        if snapshot.step_index == 2 and snapshot.done == 2:
            handle.stop()  # during the second of four interleaved steps (mqtt resumed)

    handle.subscribe(listen)
    outcome = handle.run()
    assert outcome.state is RunState.INCOMPLETE and isinstance(outcome.error, RunInterrupted)
    assert "after 2 of 4 steps" in outcome.text and len(outcome.run_ids) == 4
    with ResultsStore() as store:
        records = [store.get_run(run_id) for run_id in outcome.run_ids]
    assert [(r.status, r.n_samples) for r in records] == [("complete", 2)] * 4
    assert {r.mode for r in records} == {
        "mqtt:fresh-token-session",
        "mqtt:resumed+fresh-token-session",
    }


def test_every_peer_says_what_it_is() -> None:
    """Real servers give their binary's version, embedded fallbacks their library's."""
    from drivers.peers.coap import CoapServerPeer
    from drivers.peers.embedded_https import EmbeddedHttpsPeer
    from drivers.peers.embedded_mqtt import EmbeddedMqttPeer
    from drivers.peers.mosquitto import MosquittoPeer
    from drivers.peers.nginx import NginxPeer
    from drivers.peers.openvpn import OpenVpnServerPeer

    for real in (MosquittoPeer, NginxPeer, CoapServerPeer, OpenVpnServerPeer):
        identity = real().identity
        assert (identity.name, identity.kind) == (real.__name__, "real")
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", identity.version), identity
    assert MosquittoPeer().identity.version == _mosquitto_version()
    https, mqtt = EmbeddedHttpsPeer().identity, EmbeddedMqttPeer().identity
    assert https.embedded and https.kind == "embedded" and "OpenSSL" in https.version
    assert mqtt.embedded and mqtt.version.startswith("amqtt ")


def test_triage_runs_on_the_service_token_once_pin_once(counting_tokens) -> None:
    """Card triage opens its token once and closes it, asks a login=verify SIM's PIN once, and
    a card that is not an IoT SAFE applet is a FAIL check, not a crash."""
    from drivers.cards.emulator.store import LAB_PIN
    from drivers.runs.triage import TriageDetail, TriageRun

    snapshots: list[TriageDetail] = []
    handle = RunHandle(
        TriageRun("counting:p256"),
        on_snapshot=lambda s: (
            snapshots.append(s.detail) if isinstance(s.detail, TriageDetail) else None
        ),
    )
    outcome = handle.run()
    assert outcome.state is RunState.COMPLETE
    assert [c.verdict for c in outcome.result] == ["FAIL"]
    assert "not an IoT SAFE card" in outcome.result[0].detail
    assert snapshots and snapshots[-1].checks == outcome.result
    assert counting_tokens.tokens == 1 and counting_tokens.closed == 1

    asked: list[str] = []

    def pin(token):  # type: ignore[no-untyped-def]
        asked.append(token.info.label)
        return Pin(LAB_PIN)

    spec = "iotsafe:emulated;speed=0;login=verify;card=triage-pin"
    outcome = RunHandle(TriageRun(spec), pin_provider=pin).run()
    assert outcome.state is RunState.COMPLETE and len(asked) == 1
    verdicts = {c.name: c.verdict for c in outcome.result}
    assert verdicts.get("signature") == "PASS", outcome.result
