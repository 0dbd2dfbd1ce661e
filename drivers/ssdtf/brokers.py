"""The MQTT broker of a deployment: embedded amqtt (default), Mosquitto started here, or any
broker by URL. All three carry the same SSDTF flows; the gateway enforces SSDTF beside them.

Both brokers started here enforce the same least-privilege rules (:mod:`drivers.ssdtf.acl`):
every role has its own credential and client ID, and only its own topics.

- embedded amqtt: the SSDTF plugins (:mod:`drivers.ssdtf.amqtt_plugins`) admit a sensor only
  with a hex nonce as user name and ``SSDTF/1 <device broker secret>`` from its registered
  client ID, a service only with its own password and client ID; they apply the ACL and open
  a sensor's data topic only once the gateway says its session is READY;
- Mosquitto (started here on a free loopback port, no persistence): a password file (every
  role and sensor), the ACL file, and ``use_username_as_clientid`` so nobody can take another's
  client ID; refusals it logs are reported as the broker's verdicts;
- external brokers (``mqtt://``): whatever that broker enforces; the gateway still drops
  everything from sessions that are not READY.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from drivers.errors import SafeLabError
from drivers.ssdtf.mqttcodec import PACKET_LIMIT
from drivers.ssdtf.netloop import NetLoop, free_port


class BrokerError(SafeLabError):
    """The broker could not be started or reached."""


@dataclass
class BrokerPolicy:
    """Who may connect, as whom, and what the broker asks the SSDTF side (the amqtt plugins
    look it up by ``policy_id``; Mosquitto gets it as files)."""

    credentials: dict[str, str]
    """Service user name -> its own password (gateway, ds, ms, user-N)."""
    client_ids: dict[str, str]
    """Service user name -> the only client ID it may use (the gateway may also take over a
    registered sensor's client ID, which is how it closes a connection)."""
    sensor_secrets: dict[str, str] = field(default_factory=dict)
    """Client ID -> the device's broker secret (CONNECT password ``SSDTF/1 <secret>``)."""
    registered: Callable[[str], bool] = lambda cid: False
    ready: Callable[[str], bool] = lambda cid: False
    connect_nonces: dict[str, str] = field(default_factory=dict)
    on_deny: Callable[[str, str], None] = lambda cid, why: None
    connect_deadline_s: float = 10.0
    """The embedded broker closes a connection without a CONNECT after this long."""
    max_unconnected: int = 128
    """The embedded broker's bound on connections waiting for their CONNECT (the oldest goes;
    see :attr:`drivers.ssdtf.config.FlowConfig.max_unconnected`)."""


POLICIES: dict[str, BrokerPolicy] = {}
SENSOR_PASSWORD_PREFIX = "SSDTF/1 "


def sensor_password(secret: str) -> str:
    """The CONNECT password of a sensor: the seed's ``SSDTF/1`` marker plus its secret."""
    return SENSOR_PASSWORD_PREFIX + secret


def mosquitto_hash(password: str) -> str:
    """A Mosquitto 2 password-file hash (``$7$``: PBKDF2-HMAC-SHA512, 101 rounds as
    ``mosquitto_passwd`` writes by default), made here instead of a subprocess per user."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


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
        self._broker: Any = None

    def start(self) -> None:
        try:
            from drivers.ssdtf.amqtt_plugins import _broker_class

            Broker = _broker_class()
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
            broker.ssdtf_policy = self.policy  # its packet size limit reports here
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
                self.net.run(self._broker.shutdown(), timeout=10)
        POLICIES.pop(self.policy_id, None)


LOG_POLL_S = 0.05
"""How often the broker's log file is read for refusals (see MosquittoBroker._follow_log)."""
DENIED_PUBLISH = re.compile(r"Denied PUBLISH from (\S+) \(.*?'(.*)', \.\.\.")
REFUSED_CONNACK = re.compile(r"Sending CONNACK to (\S+) \(\d+, ([1-9]\d*)\)")
OVERSIZE = re.compile(r"Client (\S+) disconnected due to oversize packet")
OVERSIZE_REASON = (
    f"packet over {PACKET_LIMIT} bytes: the sender's connection is closed (broker limit)"
)
"""The broker's verdict on a packet over ``mqttcodec.PACKET_LIMIT``, on either broker."""


class MosquittoBroker:
    """``mosquitto`` started on a free loopback port with a throw-away configuration: password
    file, ACL file (:func:`drivers.ssdtf.acl.mosquitto_acl`), client ID = user name."""

    kind = "mosquitto"

    def __init__(self, binary: str | None = None, policy: BrokerPolicy | None = None) -> None:
        self.binary = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.policy = policy
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._reader: threading.Thread | None = None
        self._log_done = threading.Event()

    def _write_access_files(self, directory: Path) -> str:
        """Password and ACL files for the policy; the configuration lines that load them."""
        from drivers.ssdtf.acl import mosquitto_acl

        if self.policy is None:
            return "allow_anonymous true\n"
        users = dict(self.policy.credentials)
        users.update({c: sensor_password(s) for c, s in self.policy.sensor_secrets.items()})
        passwords = directory / "passwords"
        passwords.write_text("".join(f"{u}:{mosquitto_hash(p)}\n" for u, p in users.items()))
        acl = directory / "acl"
        acl.write_text(mosquitto_acl(list(self.policy.credentials)))
        for path in (passwords, acl):
            path.chmod(0o600)
        return (
            f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n"
            "use_username_as_clientid true\n"
        )

    def refresh(self) -> None:
        """Rewrite the access files (a sensor was added) and have Mosquitto reload them."""
        if self.process is not None and self._dir is not None and self.policy is not None:
            self._write_access_files(Path(self._dir.name))
            self.process.send_signal(1)  # SIGHUP: reload password and ACL files

    def _follow_log(self, path: Path, finished: threading.Event) -> None:
        """Mosquitto's own refusals, reported as the broker's verdicts.

        Only its debug log names an ACL refusal, and it writes ~16 lines per SSDTF reading;
        the notice log names a client closed for a packet over ``max_packet_size``.
        Through a pipe every line woke this thread (a context switch, a GIL hand-off, a
        read: ~0.2 ms of this process's CPU per reading, measured); so Mosquitto writes the
        log to a file and this thread reads what is new every ``LOG_POLL_S``, and looks at
        single lines only when a chunk contains one of the two refusals. A refusal becomes
        a verdict within that interval; at :meth:`stop` the rest is read after Mosquitto
        has exited, so nothing it logged is missed."""
        rest = b""
        handle = None
        try:
            while True:
                last = finished.is_set()  # set once Mosquitto has exited: one final read
                if handle is None:
                    try:
                        handle = path.open("rb")
                    except FileNotFoundError:
                        if last:
                            return
                        finished.wait(LOG_POLL_S)
                        continue
                chunk = handle.read()
                if chunk:
                    data = rest + chunk
                    cut = data.rfind(b"\n") + 1
                    complete, rest = data[:cut], data[cut:]
                    if (
                        b"Denied PUBLISH" in complete
                        or b"Sending CONNACK" in complete
                        or b"oversize packet" in complete
                    ):
                        for raw in complete.splitlines():
                            self._log_line(raw.decode(errors="replace"))
                elif last:
                    return
                else:
                    finished.wait(LOG_POLL_S)
        finally:
            if handle is not None:
                handle.close()

    def _log_line(self, line: str) -> None:
        policy = self.policy
        assert policy is not None
        if "Denied PUBLISH" in line:
            match = DENIED_PUBLISH.search(line)
            if match:
                cid, topic = match.groups()
                policy.on_deny(cid, f"PUBLISH to {topic} refused: not this client's topic")
        elif "oversize packet" in line:
            match = OVERSIZE.search(line)
            if match:
                policy.on_deny(match.group(1), OVERSIZE_REASON)
        elif "Sending CONNACK" in line:
            match = REFUSED_CONNACK.search(line)
            if match:
                policy.on_deny(
                    match.group(1),
                    "CONNECT refused: not an SSDTF client or wrong credential "
                    f"(CONNACK {match.group(2)})",
                )

    def start(self) -> None:
        if not Path(self.binary).exists():
            raise BrokerError(
                "mosquitto is not installed",
                "apt-get install mosquitto, or use the embedded broker",
            )
        self._dir = tempfile.TemporaryDirectory(prefix="safelab-mosquitto-")
        self.port = free_port()
        conf = Path(self._dir.name) / "mosquitto.conf"
        access = self._write_access_files(Path(self._dir.name))
        # ``user``: stay the account that wrote the 0600 files (Mosquitto would otherwise drop
        # to "mosquitto" when started as root and could not read them); the debug log is how
        # Mosquitto tells us what its ACL refused (read from a file: see _follow_log)
        log = Path(self._dir.name) / "mosquitto.log"
        logging_lines = (
            f"log_dest file {log}\nlog_type debug\nlog_type notice\n"
            if self.policy
            else "log_dest none\n"
        )
        conf.write_text(
            f"listener {self.port} {self.host}\n{access}persistence false\n"
            f"user {getpass.getuser()}\n{logging_lines}max_keepalive 120\n"
            # a packet over the SSDTF limit closes its sender's connection (+5: fixed header)
            f"set_tcp_nodelay true\nmax_packet_size {PACKET_LIMIT + 5}\n"
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._log_done = threading.Event()
        if self.policy is not None:
            self._reader = threading.Thread(
                target=self._follow_log,
                args=(log, self._log_done),
                name="mosquitto-log",
                daemon=True,
            )
            self._reader.start()
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
        self._log_done.set()  # Mosquitto has exited: the log reader reads the rest and ends
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
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
        return MosquittoBroker(policy=policy)
    if spec.startswith("mqtt://"):
        return ExternalBroker(spec)
    raise BrokerError(f"unknown broker {spec!r}", "use embedded, mosquitto or mqtt://host:port")
