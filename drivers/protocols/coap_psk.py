"""CoAP over DTLS with a pre-shared key: the paper's PSK remedy, on aiocoap's own DTLS.

No certificate and no signature: the handshake authenticates both sides with a shared key,
so the token is not involved at all (``n_sign`` is 0 whatever the token). aiocoap's client DTLS
is tinyDTLS (through the DTLSSocket package, PSK only); it pools connections per peer and key,
so every trial uses a fresh client context to measure a fresh handshake. aiocoap does the
handshake inside the first request, so the trial is not split: ``ready`` is the whole time
from the request to the response (the ACK of the confirmable GET).
"""

from __future__ import annotations

import asyncio
import time

from drivers.protocols.base import Condition, ProtocolClient, ProtocolTrial
from drivers.protocols.mqtt import ProtocolError
from drivers.tls.signer import TokenSigner

PSK_IDENTITY = b"safelab-client"


def psk_transport_available() -> bool:
    """aiocoap's tinyDTLS transport needs the DTLSSocket package (built from source)."""
    try:
        import DTLSSocket  # noqa: F401
    except ImportError:
        return False
    return True


class CoapPskClient(ProtocolClient):
    protocol = "coap-psk"
    established_at = "CoAP ACK of a confirmable request received (DTLS-PSK)"
    limits = (
        "PSK: no certificate and no token signature; aiocoap does the handshake inside "
        "the first request, so handshake and request are not timed apart",
    )

    def __init__(
        self,
        signer: TokenSigner,
        condition: Condition,
        host: str,
        port: int,
        psk: bytes,
        *,
        path: str = "time",
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(signer, condition)
        if not psk_transport_available():
            raise ProtocolError(
                "CoAP DTLS-PSK needs aiocoap's tinyDTLS transport (the DTLSSocket package)",
                "pip install DTLSSocket (needs autoconf, automake and libtool to build)",
            )
        self.uri = f"coaps://{host}:{port}/{path}"
        self.psk = psk
        self.timeout_s = timeout_s
        self.last_code = ""

    def trial(self) -> ProtocolTrial:
        return asyncio.run(self._trial())

    async def _trial(self) -> ProtocolTrial:
        import aiocoap

        context = await aiocoap.Context.create_client_context()
        try:
            context.client_credentials.load_from_dict(
                {
                    self.uri.rsplit("/", 1)[0] + "/*": {
                        "dtls": {"psk": self.psk, "client-identity": PSK_IDENTITY}
                    }
                }
            )
            request = aiocoap.Message(code=aiocoap.GET, uri=self.uri)
            start = time.perf_counter_ns()
            try:
                response = await asyncio.wait_for(context.request(request).response, self.timeout_s)
            except (TimeoutError, aiocoap.error.Error) as exc:
                raise ProtocolError(
                    f"no CoAP answer over DTLS-PSK from {self.uri} ({exc!r})",
                    "a wrong pre-shared key only shows as silence: check the key and hint",
                ) from None
            end = time.perf_counter_ns()
        finally:
            await context.shutdown()
        self.last_code = str(response.code)
        phases = {"connect": 0, "handshake": 0, "sign": 0, "ready": end - start}
        return ProtocolTrial(end - start, phases, 0, False)
