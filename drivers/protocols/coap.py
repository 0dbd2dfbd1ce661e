"""CoAP over DTLS: a confirmable GET answered by an ACK, over the bridged DTLS client.

CoAP messages are encoded and decoded with aiocoap; the DTLS is OpenSSL's with the token's
key (:mod:`drivers.tls.dtls`). Established: the ACK (piggy-backed response) of the
confirmable request. libcoap 4.3.1 has no DTLS session resumption, so every trial is a full
handshake; a run with ``resume`` says so in its limits instead of pretending.
"""

from __future__ import annotations

import itertools
import time
import warnings
from pathlib import Path

import aiocoap

from drivers.protocols.base import Condition, ProtocolClient, ProtocolTrial
from drivers.protocols.mqtt import ProtocolError
from drivers.tls.bridge import TokenEvpKey
from drivers.tls.dtls import DtlsClient
from drivers.tls.signer import TokenSigner

_MESSAGE_IDS = itertools.count(0x1000)


def confirmable_get(path: tuple[str, ...]) -> tuple[bytes, int, bytes]:
    """Encoded CON GET for ``path``, with its message id and token."""
    message_id = next(_MESSAGE_IDS) & 0xFFFF
    token = message_id.to_bytes(2, "big")
    with warnings.catch_warnings():
        # aiocoap wants to manage ids itself; here we only encode one message by hand.
        warnings.simplefilter("ignore", DeprecationWarning)
        message = aiocoap.Message(
            code=aiocoap.GET, mtype=aiocoap.CON, uri_path=path, mid=message_id, token=token
        )
    return message.encode(), message_id, token


class CoapDtlsClient(ProtocolClient):
    protocol = "coap"
    established_at = "CoAP ACK of a confirmable request received"
    limits = ("libcoap 4.3.1 has no DTLS session resumption: every handshake is full",)

    def __init__(
        self,
        signer: TokenSigner,
        condition: Condition,
        host: str,
        port: int,
        cert_chain: Path,
        ca_file: Path,
        *,
        path: tuple[str, ...] = ("time",),
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(signer, condition)
        self.host, self.port, self.path, self.timeout_s = host, port, path, timeout_s
        self.cert_chain, self.ca_file = cert_chain, ca_file
        self.key = TokenEvpKey(signer, signer.token.public_key(signer.key_selector))
        self.last_code = ""

    def trial(self) -> ProtocolTrial:
        mark = self.signer.mark()
        start = time.perf_counter_ns()
        with DtlsClient(
            self.signer,
            self.cert_chain,
            self.ca_file,
            self.host,
            self.port,
            timeout_s=self.timeout_s,
        ) as client:
            client.handshake()
            handshake_end = time.perf_counter_ns()
            encoded, message_id, token = confirmable_get(self.path)
            client.send(encoded)
            while True:
                reply = aiocoap.Message.decode(client.receive())
                if reply.mid == message_id or reply.token == token:
                    break
            end = time.perf_counter_ns()
        if reply.mtype != aiocoap.ACK:
            raise ProtocolError(
                f"the CoAP server answered {reply.mtype} instead of an ACK",
                "check the coap-server resource and its log",
            )
        self.last_code = str(reply.code)
        n_sign, sign_ns = self._signatures_since(mark)
        phases = {
            "connect": 0,
            "handshake": handshake_end - start,
            "sign": sign_ns,
            "ready": end - handshake_end,
        }
        return ProtocolTrial(end - start, phases, n_sign, False)
