"""The card stack over real links: pcscd + vpcd + pyscard, and a modem on a pseudo-terminal.

Every IoT SAFE command runs over every link; the token layer and the runner work through
them; a card pulled out mid-run, a modem that stops answering, a wrong AID and an unknown
reader give named errors; an emulated card is labelled emulated whatever the link.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from drivers.bench.runner import ExperimentRunner, Mode, Progress, RunConfig
from drivers.bench.store import ResultsStore
from drivers.cards.apdu import ObjectRef
from drivers.cards.atr import EMULATOR_ATR, EMULATOR_MARK, decode_atr
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import (
    INSTANT,
    CardStore,
    IoTSafeApplet,
    load_profile,
    provision_lab_card,
)
from drivers.cards.errors import AppletNotFoundError, TransportError
from drivers.cards.modem import ModemTransport
from drivers.cards.modem_sim import PtyModem
from drivers.cards.vpcd import VirtualCard
from drivers.errors import TokenError
from drivers.tokens.registry import open_token

from .conftest import LINKS, PAPER_DATA, card_link, connect_reader

DIGEST = hashlib.sha256(PAPER_DATA).digest()
REAL_LINKS = [link for link in LINKS if link != "in-process"]


@pytest.mark.parametrize("link", REAL_LINKS)
def test_every_command_over_the_link(link: str, fresh_store: CardStore, request) -> None:
    applet = IoTSafeApplet(fresh_store, INSTANT, speed=0)
    with card_link(link, applet, request) as transport:
        client = IoTSafeClient(transport)
        client.open()
        assert client.application_info().applet_id == "SAFE Lab emulator"
        objects = client.object_list()
        cert_file = next(o for o in objects if o.kind == "file" and o.label == "client-cert")
        cert = client.read_file(cert_file.ref, cert_file.file_size)
        assert len(cert) == cert_file.file_size
        raw = client.sign_digest(ObjectRef.of(1), DIGEST)
        assert client.verify(ObjectRef.of(1), raw, digest=DIGEST)
        assert len(client.get_random(16)) == 16
        generated = client.generate_key_pair(ObjectRef.of(6))
        assert client.read_public_key(ObjectRef.of(6)) == generated.point
        peer = ec.generate_private_key(ec.SECP256R1())
        point = peer.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        client.put_public_key(ObjectRef.of(5), point)
        card_public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), client.read_public_key(ObjectRef.of(4))
        )
        secret = client.compute_dh(ObjectRef.of(4), ObjectRef.of(5))
        assert secret == peer.exchange(ec.ECDH(), card_public)
        names = {entry.name for entry in client.trace.entries()}
        if link != "modem-cgla":  # with AT+CCHO the modem selects the applet itself
            assert "SELECT" in names
        assert {
            "GET DATA",
            "READ FILE",
            "COMPUTE SIGNATURE UPDATE",
            "VERIFY SIGNATURE UPDATE",
            "GET RANDOM",
            "GENERATE KEY PAIR",
            "READ PUBLIC KEY",
            "PUT PUBLIC KEY UPDATE",
            "COMPUTE DH",
        } <= names
        if link.startswith("modem"):
            framed = [e.framing_ns for e in client.trace.entries()]
            assert all(ns is not None and ns > 0 for ns in framed)
        client.close()


def test_emulator_atr_decodes_and_marks_the_emulator() -> None:
    summary = decode_atr(EMULATOR_ATR)
    assert summary.protocols == ("T=0", "T=1") and summary.checksum_ok
    assert summary.historical == EMULATOR_MARK.decode() and summary.emulated


def test_token_over_pcsc_is_labelled_emulated_and_measures(pcscd: str) -> None:
    applet = IoTSafeApplet(
        provision_lab_card(),
        load_profile("discrete-se"),
        speed=0.01,
    )
    with VirtualCard(applet.process_apdu, EMULATOR_ATR, on_reset=applet.reset):
        connect_reader(pcscd).close()
        token = open_token(f"iotsafe:pcsc;reader={pcscd}")
        assert token.info.emulated and token.info.uri == f"iotsafe:pcsc;reader={pcscd}"
        assert token.certificate() is not None
        store = ResultsStore()
        for mode in (Mode.SIGN_ONLY, Mode.TOTAL):
            result = ExperimentRunner(token, RunConfig(mode=mode, n=5, warmup=1), store).run()
            assert result.status == "complete"
            record = store.get_run(result.run_id)
            assert record.emulated and record.token_kind == "iotsafe"
        token.close()


@pytest.mark.parametrize("mode", ["csim", "cgla"])
def test_token_over_the_modem(mode: str, card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, INSTANT, speed=0)
    with PtyModem(
        applet.process_apdu, identity=f"pty modem, card {EMULATOR_MARK.decode()}"
    ) as modem:
        token = open_token(f"iotsafe:modem;port={modem.port};mode={mode}")
        assert token.info.emulated
        with token.open() as session:
            key = session.find_key()
            session.sign_init(key)
            signature = session.sign(PAPER_DATA)
        assert signature.verify(token.public_key(), PAPER_DATA, None)
        if mode == "cgla":
            assert any(line.startswith("AT+CCHO=") for line in modem.lines_seen)
            assert any(line.startswith("AT+CGLA=") for line in modem.lines_seen)
        token.close()


def test_card_removed_mid_run_keeps_the_partial_run(pcscd: str, card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, INSTANT, speed=0)
    card = VirtualCard(applet.process_apdu, EMULATOR_ATR, on_reset=applet.reset).insert()
    try:
        connect_reader(pcscd).close()
        token = open_token(f"iotsafe:pcsc;reader={pcscd}")
        store = ResultsStore()

        def pull_card(progress: Progress) -> None:
            if progress.done >= 3:
                card.remove()

        runner = ExperimentRunner(
            token,
            RunConfig(n=10_000, warmup=0),
            store,
            on_progress=pull_card,
            progress_interval_s=0,
        )
        with pytest.raises(TransportError, match="stopped answering") as info:
            runner.run()
        assert "re-insert" in info.value.fix
        record = store.list_runs()[0]
        assert record.status == "incomplete" and record.n_samples >= 3
    finally:
        card.remove()


def test_modem_timeout_and_errors_are_named(card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, INSTANT, speed=0)
    with PtyModem(applet.process_apdu, stall_on=lambda line: "2B80" in line.upper()) as modem:
        link = ModemTransport(modem.port, command_timeout_s=0.5)
        client = IoTSafeClient(link)
        client.open()
        client.sign_init(ObjectRef.of(1))
        with pytest.raises(TransportError, match=r"did not answer .* within 0\.5 s") as info:
            client.sign_final_hash(DIGEST)
        assert "timeout" in info.value.fix
        with pytest.raises(TransportError, match=r"\+CME ERROR: 21"):
            link.command('AT+CGLA=5,10,"0070000001"')
        link.close()


def test_modem_port_that_does_not_exist() -> None:
    with pytest.raises(TransportError, match="cannot open the modem port /dev/nonexistent"):
        open_token("iotsafe:modem;port=/dev/nonexistent")


def test_wrong_aid_and_unknown_reader(pcscd: str, card_store: CardStore) -> None:
    applet = IoTSafeApplet(card_store, INSTANT, speed=0)
    with VirtualCard(applet.process_apdu, EMULATOR_ATR, on_reset=applet.reset):
        connect_reader(pcscd).close()
        token = open_token(f"iotsafe:pcsc;reader={pcscd};aid=A0000005591234")
        with pytest.raises(AppletNotFoundError):
            token.open()
        token.close()
        with pytest.raises(TokenError, match="no reader matches 'Nope'") as info:
            open_token("iotsafe:pcsc;reader=Nope")
        assert "Virtual PCD" in info.value.fix
