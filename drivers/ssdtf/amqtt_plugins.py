"""amqtt plugins that make the embedded broker SSDTF-aware (admission and topic confinement).

amqtt loads plugins by dotted path with a dataclass ``Config``; the plugin finds the live
:class:`drivers.ssdtf.brokers.BrokerPolicy` through the id in its configuration, because the
policy holds callables (is this client ID registered, is its session READY) that cannot go
through amqtt's configuration. Written against amqtt 0.12's ``BaseAuthPlugin`` and
``BaseTopicPlugin`` (``authenticate(session=...)``, ``topic_filtering(session=, topic=,
action=)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from drivers.ssdtf import config as topics
from drivers.ssdtf.brokers import POLICIES, BrokerPolicy

NONCE = re.compile(r"^[0-9a-f]{32}$")


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return "" if value is None else str(value)


def _is_service(policy: BrokerPolicy, session: Session) -> bool:
    return (
        _text(session.username) in policy.service_users
        and _text(session.password) == policy.service_token
    )


class SsdtfAuthPlugin(BaseAuthPlugin):
    """Admit SSDTF sensors (hex nonce + ``SSDTF/1``, registered client ID) and services."""

    @dataclass
    class Config:
        policy: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        policy = POLICIES.get(self.config.policy)
        if policy is None:
            return False
        if _is_service(policy, session):
            return True
        cid = _text(session.client_id)
        if _text(session.password) != "SSDTF/1" or not NONCE.match(_text(session.username)):
            policy.on_deny(cid, "CONNECT refused: not an SSDTF client (no hex nonce / SSDTF/1)")
            return False
        if not policy.registered(cid):
            policy.on_deny(cid, "CONNECT refused: client ID not registered")
            return False
        policy.connect_nonces[cid] = _text(session.username)
        return True


class SsdtfTopicPlugin(BaseTopicPlugin):
    """Confine a sensor to its own topics; its data topic opens only when READY."""

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
        if policy is None or session is None or topic is None:
            return False
        if _is_service(policy, session):
            return True
        cid = _text(session.client_id)
        if action in (Action.SUBSCRIBE, Action.RECEIVE):
            return topic in (topics.auth_down(cid), topics.ack_topic(cid))
        if topic == topics.auth_up(cid):
            return True
        if topic in (topics.data_topic(cid), topics.report_topic(cid)):
            if policy.ready(cid):
                return True
            policy.on_deny(cid, f"PUBLISH to {topic} refused: session not READY")
            return False
        policy.on_deny(cid, f"PUBLISH to {topic} refused: not this client's topic")
        return False
