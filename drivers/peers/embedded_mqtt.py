"""MQTT on amqtt (an embedded pure-Python broker): the fallback when Mosquitto is missing.

amqtt's TLS listener builds its context in ``Broker._create_ssl_context`` with
``CERT_OPTIONAL``, which would let a client without a certificate in. This peer subclasses the
broker and makes that ``CERT_REQUIRED`` (with TLS >= 1.2), so the handshake itself refuses
clients without a lab-CA certificate, as Mosquitto's ``require_certificate true`` does. It is a
CPython ``ssl`` server: TLS 1.3 tickets and TLS 1.2 session IDs resume.

Runs as its own process (``python -m drivers.peers.embedded_mqtt``), like the other peers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

from drivers.peers.base import PythonModulePeer
from drivers.peers.pki import LabPki


def _broker_class() -> type:
    from amqtt.broker import Broker

    class RequireCertBroker(Broker):
        """amqtt's broker with client certificates required at the TLS layer."""

        @staticmethod
        def _create_ssl_context(listener: Any) -> ssl.SSLContext:
            context = Broker._create_ssl_context(listener)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.verify_mode = ssl.CERT_REQUIRED
            return context

    return RequireCertBroker


async def _serve(port: int, cert: Path, key: Path, ca: Path) -> None:
    config = {
        "listeners": {
            "default": {
                "type": "tcp",
                "bind": f"127.0.0.1:{port}",
                "ssl": True,
                "cafile": str(ca),
                "certfile": str(cert),
                "keyfile": str(key),
            }
        },
        # The TLS layer already demands a lab-CA certificate; MQTT-level auth adds nothing.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = _broker_class()(config)
    await broker.start()
    print(f"embedded-mqtt listening on 127.0.0.1:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


class EmbeddedMqttPeer(PythonModulePeer):
    """amqtt broker on ``.port`` with TLS and a required client certificate."""

    protocol = "MQTT broker (embedded amqtt)"
    module = "drivers.peers.embedded_mqtt"
    embedded = True
    library = "amqtt"
    package = "amqtt"
    installer = "pip install"

    def __init__(
        self,
        *,
        port: int | None = None,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(port=port, pki=pki, binary=binary, keep_dir=keep_dir)

    def start(self) -> EmbeddedMqttPeer:
        if self.binary == sys.executable and not amqtt_installed():
            from drivers.peers.errors import PeerUnavailable

            raise PeerUnavailable("amqtt", self.package, self.protocol, self.installer)
        super().start()
        return self

    def _module_arguments(self, workdir: Path) -> list[str]:
        return self._tls_arguments()


def amqtt_installed() -> bool:
    """True if the amqtt package can be imported by this interpreter."""
    import importlib.util

    return importlib.util.find_spec("amqtt") is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--ca", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.cert, args.key, args.ca))


if __name__ == "__main__":
    main()
