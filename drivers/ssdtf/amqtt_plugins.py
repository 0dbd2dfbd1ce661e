"""amqtt plugins that make the embedded broker SSDTF-aware (admission and topic confinement).

amqtt loads plugins by dotted path with a dataclass ``Config``; the plugin finds the live
:class:`drivers.ssdtf.brokers.BrokerPolicy` through the id in its configuration, because the
policy holds callables (is this client ID registered, is its session READY) that cannot go
through amqtt's configuration. Written against amqtt 0.12's ``BaseAuthPlugin`` and
``BaseTopicPlugin`` (``authenticate(session=...)``, ``topic_filtering(session=, topic=,
action=)``).
"""

from __future__ import annotations

import asyncio
import hmac
import re
from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from drivers.ssdtf import acl
from drivers.ssdtf import config as topics
from drivers.ssdtf.brokers import (
    OVERSIZE_REASON,
    POLICIES,
    SENSOR_PASSWORD_PREFIX,
    BrokerPolicy,
    sensor_password,
)
from drivers.ssdtf.mqttcodec import PACKET_LIMIT

NONCE = re.compile(r"^[0-9a-f]{32}$")
ACTIONS = {Action.SUBSCRIBE: "subscribe", Action.RECEIVE: "receive", Action.PUBLISH: "publish"}


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return "" if value is None else str(value)


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def _service(policy: BrokerPolicy, session: Session) -> str:
    """The service user this session authenticated as, or ""."""
    user = _text(session.username)
    return user if _same(_text(session.password), policy.credentials.get(user)) else ""


class SsdtfAuthPlugin(BaseAuthPlugin):
    """Admit a service with its own password and client ID (the gateway may also take over a
    registered sensor's ID, to close it), and an SSDTF sensor (hex nonce, ``SSDTF/1 <its
    broker secret>``, registered client ID). Everything else is refused with a reason."""

    @dataclass
    class Config:
        policy: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        policy = POLICIES.get(self.config.policy)
        if policy is None:
            return False
        admitted = self._admit(policy, session)
        cid = _text(session.client_id)
        if admitted and session.will_flag:
            # the broker publishes a Will on the client's behalf without a topic check, so a
            # Will is allowed only where the client itself may publish
            who = _service(policy, session)
            rules = acl.service_rules(who) if who else acl.sensor_rules(cid)
            topic = _text(session.will_topic)
            if not acl.allowed(rules, "publish", topic):
                policy.on_deny(cid, f"CONNECT refused: Will topic {topic} is not this client's")
                return False
        return admitted

    def _admit(self, policy: BrokerPolicy, session: Session) -> bool:
        cid = _text(session.client_id)
        user = _text(session.username)
        if user in policy.credentials:
            if not _service(policy, session):
                policy.on_deny(cid, f"CONNECT refused: wrong credential for service {user}")
                return False
            if cid == policy.client_ids.get(user) or (user == "gateway" and policy.registered(cid)):
                return True
            policy.on_deny(cid, f"CONNECT refused: {user} may not use client ID {cid!r}")
            return False
        password = _text(session.password)
        if not password.startswith(SENSOR_PASSWORD_PREFIX.strip()) or not NONCE.match(user):
            policy.on_deny(cid, "CONNECT refused: not an SSDTF client (no hex nonce / SSDTF/1)")
            return False
        if not policy.registered(cid) or cid in policy.client_ids.values():
            policy.on_deny(cid, "CONNECT refused: client ID not registered")
            return False
        secret = policy.sensor_secrets.get(cid)
        if not _same(password, sensor_password(secret) if secret is not None else None):
            policy.on_deny(cid, f"CONNECT refused: wrong device credential for {cid}")
            return False
        policy.connect_nonces[cid] = user
        return True


class SsdtfTopicPlugin(BaseTopicPlugin):
    """The ACL of :mod:`drivers.ssdtf.acl`, plus: a sensor's data and report topics open only
    while its session is READY."""

    @dataclass
    class Config:
        policy: str = ""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        policy = POLICIES.get(self.config.policy)
        if policy is None or session is None or topic is None or action not in ACTIONS:
            return False
        verb = ACTIONS[action]
        cid = _text(session.client_id)
        user = _service(policy, session)
        rules = acl.service_rules(user) if user else acl.sensor_rules(cid)
        who = user or cid
        if not acl.allowed(rules, verb, topic):
            if verb != "receive":  # a refused delivery is routine filtering, not an attempt
                why = f"{verb.upper()} to {topic} refused: not this client's topic ({who})"
                policy.on_deny(cid, why)
            return False
        gated = (topics.data_topic(cid), topics.report_topic(cid))
        if not user and topic in gated and not policy.ready(cid):
            policy.on_deny(cid, f"PUBLISH to {topic} refused: session not READY")
            return False
        return True


class OversizedPacket(Exception):
    """A client announced a packet over ``PACKET_LIMIT``: its connection is closed."""


class LimitedReader:
    """amqtt's stream reader with a packet size limit, which amqtt 0.12 does not have.

    It follows the MQTT framing of every byte amqtt reads through it (fixed header, then
    remaining length), so the limit holds for every packet type, and it raises
    :class:`OversizedPacket` as soon as a fixed header announces more than ``limit`` bytes,
    before amqtt reads (and buffers) the body. amqtt ends that connection on the exception,
    as Mosquitto does with ``max_packet_size``; ``on_oversize(client_id)`` is the broker's
    verdict. Wraps amqtt's ``StreamReaderAdapter`` rather than subclassing its handler, whose
    reader loop would otherwise have to be copied."""

    def __init__(self, inner: Any, limit: int, on_oversize: Any) -> None:
        self.inner = inner
        self.limit = limit
        self.on_oversize = on_oversize
        self.client_id = ""
        """Set once the CONNECT is read (the verdict names the sender)."""
        self._left = 0
        self._header = bytearray()

    async def read(self, n: int = -1) -> bytes:
        data: bytes = await self.inner.read(n)
        self._track(data)
        return data

    def feed_eof(self) -> None:
        self.inner.feed_eof()

    def _track(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._left:  # body bytes: counted in bulk
                take = min(self._left, size - pos)
                self._left -= take
                pos += take
                continue
            self._header.append(data[pos])
            pos += 1
            header = self._header
            if len(header) >= 2 and (header[-1] < 0x80 or len(header) == 5):
                length = sum((b & 0x7F) << (7 * i) for i, b in enumerate(header[1:]))
                header.clear()
                if length > self.limit:
                    self.on_oversize(self.client_id)
                    raise OversizedPacket(f"packet of {length} bytes over {self.limit}")
                self._left = length


async def _close_quietly(writer: Any) -> None:
    """Close an amqtt writer whose peer may already be gone (drain would raise)."""
    try:
        await writer.close()
    except Exception:  # reset by the peer: the transport itself must still be closed
        stream = getattr(writer, "_writer", None)
        if stream is not None:
            stream.close()


def _broker_class() -> type:
    """amqtt's ``Broker`` with authentication moved *before* any change to session state.

    amqtt 0.12 handles a CONNECT by first deleting the existing session of that client ID
    (clean session) or overwriting its credentials (persistent session), registering the new
    session under the ID, and only then authenticating. A CONNECT with a wrong password thus
    silently unsubscribed the victim (issue 10: "no role can take another's client ID"). Here
    the CONNECT is authenticated first; a refused one gets CONNACK 5 and never touches the
    session table. The rest follows amqtt's own ``_initialize_client_session``.
    """
    from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
    from amqtt.broker import Broker
    from amqtt.errors import AMQTTError, MQTTError, NoDataError
    from amqtt.mqtt.connack import (
        NOT_AUTHORIZED,
        ConnackPacket,
    )
    from amqtt.mqtt.protocol.broker_handler import (
        BrokerProtocolHandler,
    )
    from amqtt.utils import gen_client_id

    class SsdtfBroker(Broker):
        ssdtf_policy: BrokerPolicy | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._unconnected: dict[int, asyncio.StreamWriter] = {}
            """id(writer adapter) -> its stream, for connections still waiting for their
            CONNECT, oldest first: past ``policy.max_unconnected`` the oldest is closed (a
            SYN-cache-like bound on what a connection flood holds; its CONNECT wait then ends
            at once, with end of file)."""

        async def stream_connected(self, reader: Any, writer: Any, listener_name: str) -> None:
            policy = self.ssdtf_policy

            def refused(cid: str) -> None:
                if policy is not None:
                    policy.on_deny(cid or "?", OVERSIZE_REASON)

            limited = LimitedReader(StreamReaderAdapter(reader), PACKET_LIMIT, refused)
            adapter = StreamWriterAdapter(writer)
            waiting = self._unconnected
            bound = policy.max_unconnected if policy is not None else 128
            if len(waiting) >= max(1, bound):
                oldest_key = next(iter(waiting))
                oldest = waiting.pop(oldest_key)
                if policy is not None:
                    policy.on_deny(
                        "?", f"more than {bound} connections without a CONNECT: the oldest closed"
                    )
                oldest.close()
            waiting[id(adapter)] = writer
            try:
                await self._client_connected(listener_name, limited, adapter)
            finally:
                waiting.pop(id(adapter), None)

        async def _initialize_client_session(
            self, reader: Any, writer: Any, remote_address: str, remote_port: int
        ) -> tuple[Any, Session]:
            policy = self.ssdtf_policy
            deadline = policy.connect_deadline_s if policy is not None else 10.0
            try:
                handler, session = await asyncio.wait_for(
                    BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager),
                    deadline,
                )
            except (TimeoutError, OversizedPacket, AMQTTError, MQTTError, NoDataError) as exc:
                self._unconnected.pop(id(writer), None)
                # amqtt 0.12 leaves the socket of a connection that fails before its CONNECT
                # open until the GC finds it: a flood of them (idle, half-sent, oversized, or
                # connect-and-close) would run this process out of file descriptors
                if isinstance(exc, TimeoutError) and policy is not None:
                    policy.on_deny("?", f"no CONNECT within {deadline:g} s: connection closed")
                await _close_quietly(writer)
                raise AMQTTError(exc) from exc
            self._unconnected.pop(id(writer), None)
            if isinstance(reader, LimitedReader):
                reader.client_id = _text(session.client_id)
            if not await self._authenticate(session, None):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
                raise AMQTTError(f"CONNECT of {session.client_id!r} refused before any change")
            if session.clean_session:
                if session.client_id:
                    await self._delete_session(session.client_id)
                else:
                    session.client_id = gen_client_id()
                session.parent = 0
            elif session.client_id in self._sessions:
                existing, _ = self._sessions[session.client_id]
                for name in ("will_flag", "will_message", "will_topic", "will_qos"):
                    setattr(existing, name, getattr(session, name))
                existing.keep_alive = session.keep_alive
                existing.username = session.username
                existing.password = session.password
                session = existing
                session.parent = 1
            else:
                session.parent = 0
            delay = self.config.get("timeout-disconnect-delay", 0)
            if session.keep_alive > 0 and isinstance(delay, int):
                session.keep_alive += delay
            return handler, session

    return SsdtfBroker
