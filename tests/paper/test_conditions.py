"""The paper's conditions, made real and recorded: interleaved software/token trials, TCP_NODELAY
as a visible condition, and the token session per handshake, all against real peers."""

from __future__ import annotations

import socket
import ssl

import pytest

from drivers.bench.store import ResultsStore
from drivers.errors import SafeLabError
from drivers.peers.mosquitto import MosquittoPeer
from drivers.peers.nginx import NginxPeer
from drivers.peers.pki import LabPki
from drivers.protocols.base import Condition, ProtocolTrial
from drivers.protocols.experiment import make_client
from drivers.protocols.https import HttpsClient
from drivers.protocols.interleave import run_interleaved
from drivers.protocols.rules import check
from drivers.protocols.timing import TimedContext
from drivers.tls.signer import TokenSigner
from drivers.tokens.registry import open_token


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki(tmp_path_factory.mktemp("pki"))


class OrderedHttps(HttpsClient):
    """A real HTTPS client that also notes, in a list shared with its twin, when it ran."""

    calls: list[str]
    name: str

    def trial(self) -> ProtocolTrial:
        self.calls.append(self.name)
        return super().trial()


def test_software_and_token_take_turns_and_each_run_names_the_other(pki: LabPki) -> None:
    store = ResultsStore()
    calls: list[str] = []
    with NginxPeer(pki=pki) as peer:
        clients = []
        for name, spec in (("A", "software:p256"), ("B", "iotsafe:emulated;speed=0")):
            signer = TokenSigner(open_token(spec), reuse_session=False)
            made = make_client("https", signer, Condition(reuse_token_session=False), peer, pki)
            assert isinstance(made, HttpsClient)
            made.__class__ = OrderedHttps
            made.calls, made.name = calls, name  # type: ignore[attr-defined]
            clients.append(made)
        results = run_interleaved(clients, store, n=4, warmup=1, peer=peer.identity)
        for client in clients:
            client.close()
            client.signer.close()
    # one warm-up round, then four measured rounds, always A then B
    assert calls == ["A", "B"] * 5
    a, b = (store.get_run(r.run_id) for r in results)
    assert a.n_samples == b.n_samples == 4 and a.status == b.status == "complete"
    assert a.extra["interleaved_with"] == [b.id] and b.extra["interleaved_with"] == [a.id]
    assert (a.extra["interleaved"]["position"], b.extra["interleaved"]["position"]) == ("A", "B")
    assert a.extra["token_session"] == "fresh" and a.extra["tcp_nodelay"] is False
    assert b.emulated and not a.emulated
    # the token made exactly one signature per full handshake, the software key too
    assert results[1].n_sign == [1, 1, 1, 1]


def test_an_error_in_one_interleaved_run_keeps_both_runs_incomplete(pki: LabPki) -> None:
    store = ResultsStore()
    with NginxPeer(pki=pki) as peer:
        signers = [TokenSigner(open_token("software:p256")) for _ in range(2)]
        clients = [make_client("https", s, Condition(), peer, pki) for s in signers]
        count = {"n": 0}

        def stop_peer_after_two_rounds() -> bool:
            count["n"] += 1
            if count["n"] == 3:
                peer.stop()
            return False

        with pytest.raises(SafeLabError):
            run_interleaved(clients, store, n=6, warmup=0, stop=stop_peer_after_two_rounds)
    runs = store.list_runs()
    assert len(runs) == 2
    assert all(r.status == "incomplete" and r.n_samples == 2 for r in runs)


@pytest.mark.parametrize("nodelay", [True, False, None])
def test_tcp_nodelay_is_set_exactly_as_the_condition_says(
    pki: LabPki, nodelay: bool | None
) -> None:
    with MosquittoPeer(pki=pki) as broker:
        context = TimedContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(pki.ca_path)
        context.reset_clock()
        context.tcp_nodelay = nodelay
        raw = socket.create_connection((broker.host, broker.port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)  # what paho leaves
        wrapped = context.wrap_socket(
            raw, server_hostname=broker.host, do_handshake_on_connect=False
        )
        try:
            value = wrapped.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            wrapped.close()
    assert bool(value) is bool(nodelay)


def test_nodelay_is_an_mqtt_condition_and_named(pki: LabPki) -> None:
    assert Condition(tcp_nodelay=True).name == "nodelay"
    check("mqtt", Condition(tcp_nodelay=True))
    with pytest.raises(SafeLabError, match="always sets TCP_NODELAY"):
        check("https", Condition(tcp_nodelay=True))
    signer = TokenSigner(open_token("software:p256"))
    with MosquittoPeer(pki=pki) as broker:
        client = make_client("mqtt", signer, Condition(tcp_nodelay=True), broker, pki)
        assert client.context.tcp_nodelay is True  # type: ignore[attr-defined]
        trial = client.trial()
        client.close()
    assert trial.n_sign == 1
