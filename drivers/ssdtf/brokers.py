"""The MQTT broker of a deployment: embedded amqtt (default), Mosquitto started here, or any
broker by URL. All three carry the same SSDTF flows; the gateway enforces SSDTF beside them.

What differs is what the broker itself can refuse before the gateway sees anything:

- embedded amqtt: the SSDTF plugins (:mod:`drivers.ssdtf.amqtt_plugins`) admit only CONNECTs
  with a hex nonce as user name and the ``SSDTF/1`` marker from a registered client ID, or a
  service role with the service credential; they confine a sensor to its own auth/ack topics
  and open its data topic only once the gateway says its session is READY;
- Mosquitto (started here on a free loopback port, no persistence) and external brokers:
  no SSDTF-aware admission; the gateway drops everything from sessions that are not READY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from drivers.errors import SafeLabError
from drivers.ssdtf.netloop import NetLoop, free_port


class BrokerError(SafeLabError):
    """The broker could not be started or reached."""


@dataclass
class BrokerPolicy:
    """What the embedded broker asks the SSDTF side (plugins look it up by ``policy_id``)."""

    service_token: str
    service_users: set[str]
    registered: Callable[[str], bool] = lambda cid: False
    ready: Callable[[str], bool] = lambda cid: False
    connect_nonces: dict[str, str] = field(default_factory=dict)
    on_deny: Callable[[str, str], None] = lambda cid, why: None


POLICIES: dict[str, BrokerPolicy] = {}


def _wait_port(host: str, port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class EmbeddedBroker:
    """amqtt running on the deployment's loop, with the SSDTF admission plugins."""

    kind = "embedded"

    def __init__(self, net: NetLoop, policy: BrokerPolicy) -> None:
        self.net = net
        self.policy = policy
        self.policy_id = uuid.uuid4().hex
        self.host = "127.0.0.1"
        self.port = 0
        self._broker = None

    def start(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as error:
            raise BrokerError(
                f"the embedded broker needs amqtt ({error})",
                "install amqtt, or use --broker mosquitto / mqtt://host:port",
            ) from error
        if logging.getLogger("amqtt").level == logging.NOTSET:
            logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        POLICIES[self.policy_id] = self.policy
        self.port = free_port()
        plugin = "drivers.ssdtf.amqtt_plugins"
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                f"{plugin}.SsdtfAuthPlugin": {"policy": self.policy_id},
                f"{plugin}.SsdtfTopicPlugin": {"policy": self.policy_id},
            },
        }

        async def _start() -> object:
            broker = Broker(config, loop=asyncio.get_running_loop())
            await broker.start()
            return broker

        self._broker = self.net.run(_start())
        # No TCP probe here (unlike Mosquitto): Broker.start() returns once its listener is
        # bound, and a probe is what made the SSDTF tests flaky. amqtt never closes the server
        # side of a connection that ends before its CONNECT; that StreamWriter becomes cyclic
        # garbage on this loop, and when the GC finalizes it (on whichever thread triggered the
        # collection) the transport's __del__ closes the socket, freeing its fd number, then
        # StreamWriter.__del__ calls transport.close(), i.e. loop._remove_reader(fd). If a new
        # connection on this loop got that fd number in between (the tap's or the broker's
        # socket of the next role to connect), its reader is unregistered: its next packet stays
        # in the kernel unread (a SUBSCRIBE: "no SUBACK for 'ssdtf-ds' in 10 s").
        if getattr(getattr(self._broker, "transitions", None), "state", "") != "started":
            raise BrokerError("the embedded broker did not start", "see amqtt's log")

    def stop(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):  # best effort at shutdown
                self.net.run(self._broker.shutdown(), timeout=10)  # type: ignore[attr-defined]
        POLICIES.pop(self.policy_id, None)


class MosquittoBroker:
    """``mosquitto`` started on a free loopback port with a throw-away configuration."""

    kind = "mosquitto"

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        if not Path(self.binary).exists():
            raise BrokerError(
                "mosquitto is not installed",
                "apt-get install mosquitto, or use the embedded broker",
            )
        self._dir = tempfile.TemporaryDirectory(prefix="safelab-mosquitto-")
        self.port = free_port()
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            "log_dest none\nmax_keepalive 120\n"
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if not _wait_port(self.host, self.port, 5):
            self.stop()
            raise BrokerError(f"mosquitto did not listen on {self.port}", "run it by hand to see")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class ExternalBroker:
    """Any MQTT 3.1.1 broker at ``mqtt://host:port`` (not started or stopped here)."""

    kind = "external"

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise BrokerError(f"broker URL {url!r} not understood", "use mqtt://host:port")
        self.host = parsed.hostname
        self.port = parsed.port or 1883

    def start(self) -> None:
        if not _wait_port(self.host, self.port, 3):
            raise BrokerError(f"no broker at {self.host}:{self.port}", "start it or fix the URL")

    def stop(self) -> None:
        return None


def make_broker(
    spec: str, net: NetLoop, policy: BrokerPolicy
) -> EmbeddedBroker | MosquittoBroker | ExternalBroker:
    if spec == "embedded":
        return EmbeddedBroker(net, policy)
    if spec == "mosquitto":
        return MosquittoBroker()
    if spec.startswith("mqtt://"):
        return ExternalBroker(spec)
    raise BrokerError(f"unknown broker {spec!r}", "use embedded, mosquitto or mqtt://host:port")
