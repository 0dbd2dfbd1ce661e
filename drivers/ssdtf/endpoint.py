"""An MQTT 3.1.1 client as the roles use it: blocking connect/subscribe, topic handlers.

Why a wrapper: every role needs the same four things (connect and wait for CONNACK, subscribe
and wait for SUBACK, publish, dispatch messages by topic filter) and the same rule after a
connection is lost: do *not* reconnect, because an SSDTF session ends with its TCP
connection and a new one needs a new handshake.

The connection underneath is :class:`drivers.ssdtf.mqttclient.Connection` (why not paho-mqtt
on this path: see that module; measured ~0.05-0.09 ms of client CPU per QoS 1 hop against
~0.24-0.27 ms with paho's threaded loop, and a reading crosses four hops).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from drivers.errors import SafeLabError
from drivers.ssdtf.mqttclient import Connection, Message, ProtocolError

Handler = Callable[[str, bytes, Any], None]


def topic_filter(pattern: str) -> Callable[[str], bool]:
    """A matcher for one MQTT topic filter (``+`` one level, ``#`` the rest, wildcards never
    match a ``$`` topic), split once. Why not ``paho.mqtt.client.topic_matches_sub``: it builds
    a matcher tree on every call, which cost more per message than the dispatch it does."""
    levels = pattern.split("/")
    wild_first = levels[0] in ("+", "#")

    def matches(topic: str) -> bool:
        if wild_first and topic.startswith("$"):
            return False
        parts = topic.split("/")
        for index, level in enumerate(levels):
            if level == "#":
                return True
            if index >= len(parts) or (level != "+" and level != parts[index]):
                return False
        return len(parts) == len(levels)

    return matches


class MqttError(SafeLabError):
    """The broker refused or dropped a connection, or did not answer in time."""


class Endpoint:
    """One MQTT 3.1.1 connection of one role."""

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = True,
        keepalive: int = 30,
    ) -> None:
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.client = Connection(
            client_id,
            username=username,
            password=password,
            clean_session=clean_session,
            keepalive=keepalive,
            on_message=self._on_message,
            on_suback=self._on_subscribe,
            on_closed=self._on_disconnect,
            on_oversized=self._on_oversized,
        )
        self.handlers: list[tuple[str, Handler]] = []
        self._dispatch: list[tuple[Callable[[str], bool], Handler]] = []
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.connack_rc: int | None = None
        self._suback: dict[int, threading.Event] = {}
        self._granted: dict[int, list[int]] = {}
        self.on_closed: Callable[[], None] | None = None
        self.on_error: Callable[[str, BaseException], None] | None = None
        self.on_dropped: Callable[[str, str], None] | None = None
        """(topic, reason) for a message dropped before any handler saw it (oversized)."""
        self.errors = 0
        self._closing = False

    # --- callbacks (the connection's reader thread) ------------------------------------
    def _on_disconnect(self) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.closed.set()
        for event in list(self._suback.values()):
            event.set()  # wake subscribe(): no SUBACK comes on a closed connection
        self._closing = True
        if was_connected and self.on_closed is not None:
            self.on_closed()

    def _on_subscribe(self, mid: int, codes: list[int]) -> None:
        self._granted[mid] = codes
        # setdefault on both sides: the SUBACK may arrive before subscribe() stores its event
        self._suback.setdefault(mid, threading.Event()).set()

    def _on_oversized(self, topic: str, size: int) -> None:
        self.errors += 1
        if self.on_dropped is not None:
            reason = (
                f"dropped unread: a PUBLISH of {size} bytes on {topic} exceeds the "
                f"{self.client.max_packet}-byte limit (the broker does not enforce it)"
            )
            with contextlib.suppress(Exception):
                self.on_dropped(topic, reason)

    def _on_message(self, msg: Message) -> None:
        # Last line of defence: an exception escaping here would end the reader thread, and
        # the role would receive nothing ever again. Roles guard their own handlers (an
        # error is their verdict); this catch only keeps the thread alive.
        try:
            topic = msg.topic
            for matches, handler in self._dispatch:
                if matches(topic):
                    handler(topic, msg.payload, msg)
                    return
        except Exception as error:
            self.errors += 1
            if self.on_error is not None:
                with contextlib.suppress(Exception):
                    self.on_error(msg.topic, error)

    # --- blocking API ----------------------------------------------------------------
    def on(self, pattern: str, handler: Handler) -> None:
        self.handlers.append((pattern, handler))
        self._dispatch.append((topic_filter(pattern), handler))

    def connect(self, timeout: float = 10.0) -> None:
        try:
            rc = self.client.connect(self.host, self.port, timeout)
        except (OSError, ProtocolError) as error:
            self.closed.set()
            if isinstance(error, TimeoutError):
                raise MqttError(
                    f"no CONNACK for {self.client_id!r} in {timeout:.0f} s", ""
                ) from error
            raise MqttError(
                f"cannot reach the MQTT broker at {self.host}:{self.port} ({error})",
                "start the broker or check --broker",
            ) from error
        self.connack_rc = rc
        if rc:
            self.closed.set()
            raise MqttError(
                f"broker refused {self.client_id!r} (CONNACK {rc})",
                "the broker only admits SSDTF clients and registered services",
            )
        self.connected.set()
        self.client.start()

    def subscribe(self, topics: list[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        try:
            mid = self.client.subscribe(topics)
        except OSError as error:
            raise MqttError(f"SUBSCRIBE failed for {self.client_id!r} ({error})", "") from error
        event = self._suback.setdefault(mid, threading.Event())
        if self.closed.is_set():
            event.set()
        if not event.wait(timeout):
            raise MqttError(f"no SUBACK for {self.client_id!r} in {timeout:.0f} s", "")
        if mid not in self._granted:
            raise MqttError(
                f"the connection of {self.client_id!r} closed before its SUBACK",
                "the broker or the tap closed it; see the trace's notes",
            )
        return self._granted[mid]

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        """Disconnect (DISCONNECT packet) and end the reader thread. Safe to call twice."""
        self._closing = True
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.join()
        self.closed.set()
