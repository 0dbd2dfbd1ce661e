"""The paper's VPN client (OpenVPN in PKCS#11 mode reads its certificate from the token at every
start, in the session it signs in), the session-kept rows without a re-warm-up, and `safelab
paper --link`: all against the real OpenVPN/nginx peers and the emulated card."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from drivers.bench.store import ResultsStore
from drivers.errors import SafeLabError
from drivers.peers.nginx import NginxPeer
from drivers.peers.openvpn import OpenVpnServerPeer
from drivers.peers.pki import LabPki
from drivers.protocols.base import Condition
from drivers.protocols.interleave import run_pair
from drivers.protocols.rules import check, paper_client
from drivers.runs.paper import PaperRun
from drivers.tokens.base import Pin
from drivers.tokens.registry import open_token

CARD = "iotsafe:emulated;speed=0;login=verify"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki(tmp_path_factory.mktemp("pki"))


def test_only_the_vpn_reads_its_certificate_from_the_token_and_only_per_connection() -> None:
    fresh = Condition(reuse_token_session=False)
    assert paper_client("vpn", fresh) == replace(fresh, token_certificate=True)
    assert paper_client("vpn", fresh).name == "fresh-token-session+cert-from-token"
    for protocol in ("mqtt", "https", "coap", "jwt"):
        assert paper_client(protocol, fresh) == fresh  # paho, curl, s_client: certificate files
    assert paper_client("vpn", Condition()) == Condition()  # a kept session is not OpenVPN's
    with pytest.raises(SafeLabError, match="VPN option"):
        check("mqtt", Condition(reuse_token_session=False, token_certificate=True))
    with pytest.raises(SafeLabError, match="fresh-token-session"):
        check("vpn", Condition(token_certificate=True))


def test_vpn_paper_client_reads_the_certificate_in_the_session_it_signs_in(pki: LabPki) -> None:
    store = ResultsStore()
    software, card = open_token("software:p256"), open_token(CARD)
    condition = paper_client("vpn", Condition(reuse_token_session=False))
    with OpenVpnServerPeer(pki=pki) as peer:
        mark = card.trace.mark()  # type: ignore[attr-defined]
        sw, tok = run_pair(
            "vpn", condition, software, card, store, pin=Pin("1234"), peer=peer, pki=pki, n=2
        )
        apdus = [entry.name for entry in card.trace.since(mark)]  # type: ignore[attr-defined]
    assert sw.status == tok.status == "complete" and tok.n_sign == [1, 1]
    # every connection (warm-up + 2) makes one signature; between two of them the card sees
    # one session closed and the next opened, its certificate read and its PIN checked, in
    # that order: the certificate is read in the session the signature is made in
    signs = [i for i, name in enumerate(apdus) if name == "COMPUTE SIGNATURE UPDATE"]
    assert len(signs) == 3
    for before, after in itertools.pairwise(signs):
        between = apdus[before + 1 : after]
        assert between.count("MANAGE CHANNEL") == 2  # close, open: one session a connection
        assert between.count("VERIFY PIN") == 1  # C_Login once a connection
        reopened = len(between) - between[::-1].index("MANAGE CHANNEL")
        assert "READ FILE" in between[reopened:]
        assert between.index("READ FILE", reopened) < between.index("VERIFY PIN")
    record = store.get_run(tok.run_id)
    assert record.extra["certificate"] == "read from the token at every start"
    assert record.mode == "vpn:fresh-token-session+cert-from-token"
    assert "cert" in tok.stats.phases and tok.stats.phases["cert"].count == 2
    # the software key is a file, as the paper's software client: nothing read from a card
    assert sw.stats.phases["cert"].mean_ms < tok.stats.phases["cert"].mean_ms


def test_a_session_kept_row_without_warm_up_opens_the_session_before_its_first_trial(
    pki: LabPki,
) -> None:
    store = ResultsStore()
    software, card = open_token("software:p256"), open_token(CARD)
    with NginxPeer(pki=pki) as peer:
        mark = card.trace.mark()  # type: ignore[attr-defined]
        _, tok = run_pair(
            "https", Condition(), software, card, store, pin=Pin("1234"), peer=peer, pki=pki,
            n=3, warmup=0,
        )  # fmt: skip
        apdus = [entry.name for entry in card.trace.since(mark)]  # type: ignore[attr-defined]
    assert tok.n_sign == [1, 1, 1] and store.get_run(tok.run_id).warmup == 0
    first_sign = apdus.index("COMPUTE SIGNATURE INIT")
    # the kept session (channel, PIN, key lookup) was set up once, before the first signature
    assert apdus.count("VERIFY PIN") == 1 and apdus.index("VERIFY PIN") < first_sign
    # no session opened (nor closed) during the trials: the one close ends the row
    assert apdus[first_sign:].count("MANAGE CHANNEL") == 1 and apdus[-1] == "MANAGE CHANNEL"


def test_paper_refuses_a_bad_link_in_one_line() -> None:
    with pytest.raises(SafeLabError):
        PaperRun(link="rtt=fast")
    result = subprocess.run(
        [sys.executable, "-m", "console", "paper", "--quick", "--link", "rtt=fast"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "rtt" in result.stderr


def test_paper_under_a_link_shows_network_figures_without_judging_them() -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "console", "paper", "--quick", "--protocols", "https",
            "--link", "rtt=20ms", "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    link = data["provenance"]["link"]
    assert link["spec"] == "rtt=20ms" and link["mode"] == "proxy"
    assert link["peers"]["https"]["stats"]["up"]["packets"] > 0  # the clients went through it
    network = [f for f in data["figures"] if f["table"] in ("Table 6", "JWT")]
    judged = [f for f in network if f["verdict"] != "info"]
    # only the exact figure (a resumed handshake signs nothing) is judged under a link; the
    # card-made figures say why they are not (the link), Table 3 (no network) does not
    assert [f["quantity"] for f in judged] == ["token signatures / connection"]
    differences = [f for f in network if f["quantity"] == "difference" and f["paper"]]
    assert differences and all("under the link 'rtt=20ms'" in f["tolerance"] for f in differences)
    table3 = [f for f in data["figures"] if f["table"] == "Table 3" and f["row"] == "total"]
    assert table3 and not any("link" in f["tolerance"] for f in table3)
    with ResultsStore() as store:
        for row in data["table6"]:
            for run_id in (row["software_run"], row["token_run"]):
                assert store.get_run(run_id).extra["link"]["link"] == "rtt=20ms"
    # the 20 ms round trips are in every handshake: the software HTTPS handshake pays them
    software = next(f for f in network if f["row"] == "https paper" and f["quantity"] == "software")
    assert software["measured"] > 20


def test_a_pkcs11_token_gives_its_certificate_in_the_connection_session(softhsm: Any) -> None:
    """OpenVPN's pkcs11-helper reads CKA_VALUE of the key's certificate object at every start;
    a PKCS#11 token (here SoftHSM2) does so in the session the signature is then made in."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    from drivers.tls.signer import TokenSigner

    token = open_token(softhsm.uri("dev"))
    signer = TokenSigner(token, pin=Pin(softhsm.pin), reuse_session=False)
    der = signer.begin_connection(read_certificate=True)
    assert der is not None
    assert x509.load_der_x509_certificate(der).public_key() == token.public_key()
    digest = hashlib.sha256(b"CertificateVerify").digest()
    signature = signer.sign_digest(digest)  # logs in and signs in the connection's session
    signer.end_connection()
    signer.close()
    assert signer.count == 1
    token.public_key().verify(  # raises if the signature is not the key's over the digest
        signature.der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    )
    with pytest.raises(SafeLabError, match="kept token session"):
        TokenSigner(token, pin=Pin(softhsm.pin)).begin_connection(read_certificate=True)
