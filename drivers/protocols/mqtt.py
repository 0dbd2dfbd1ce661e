"""MQTT over TLS with paho-mqtt, the client key in a token: established at CONNACK."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from drivers.errors import SafeLabError
from drivers.protocols.base import Condition, ProtocolClient, ProtocolTrial
from drivers.protocols.timing import TimedContext
from drivers.tls.bridge import client_context
from drivers.tls.signer import TokenSigner


class ProtocolError(SafeLabError):
    """The peer refused, closed or did not answer."""


class MqttTlsClient(ProtocolClient):
    protocol = "mqtt"
    established_at = "MQTT CONNACK received"

    def __init__(
        self,
        signer: TokenSigner,
        condition: Condition,
        host: str,
        port: int,
        cert_chain: Path,
        ca_file: Path,
        *,
        timeout_s: float = 10.0,
        peer_log: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(signer, condition)
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.peer_log = peer_log
        self.context: TimedContext = client_context(  # type: ignore[assignment]
            signer, cert_chain, ca_file, context_class=TimedContext
        )
        self.context.resume_session = None  # type: ignore[attr-defined]
        self.context.tcp_nodelay = condition.tcp_nodelay
        self._count = 0

    def trial(self) -> ProtocolTrial:
        context = self.context
        context.reset_clock()
        if not self.condition.resume:
            context.resume_session = None  # type: ignore[attr-defined]
        self._count += 1
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"safelab-{self._count}", protocol=mqtt.MQTTv311
        )
        client.tls_set_context(context)
        state: dict[str, object] = {}

        def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
            state["at"] = time.perf_counter_ns()
            state["reason"] = reason

        client.on_connect = on_connect
        mark = self.signer.mark()
        start = time.perf_counter_ns()
        try:
            client.connect(self.host, self.port, keepalive=30)
            deadline = time.monotonic() + self.timeout_s
            while "at" not in state and time.monotonic() < deadline:
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
        except (ssl.SSLError, OSError) as exc:
            self.signer.raise_if_failed()
            raise ProtocolError(
                f"MQTT over TLS to {self.host}:{self.port} failed ({exc})", self._hint()
            ) from None
        finally:
            socket = context.last_socket
            resumed = bool(socket is not None and socket.session_reused)
            if socket is not None and self.condition.resume and "at" in state:
                context.resume_session = socket.session  # type: ignore[attr-defined]
            client.disconnect()
            client.loop(timeout=0.01)
        self.signer.raise_if_failed()
        if "at" not in state:
            raise ProtocolError(
                f"no CONNACK from {self.host}:{self.port} within {self.timeout_s:g} s",
                self._hint(),
            )
        reason = state["reason"]
        if getattr(reason, "is_failure", False):
            raise ProtocolError(f"the broker refused the connection ({reason})", self._hint())
        n_sign, sign_ns = self._signatures_since(mark)
        connack = int(state["at"])  # type: ignore[call-overload]
        phases = {
            "connect": context.tcp_ready_ns - start,
            "handshake": context.handshake_end_ns - context.handshake_start_ns,
            "sign": sign_ns,
            "ready": connack - context.handshake_end_ns,
        }
        return ProtocolTrial(connack - start, phases, n_sign, resumed)

    def _hint(self) -> str:
        tail = self.peer_log() if self.peer_log else ""
        return (
            "the broker closes connections whose client certificate it refuses; "
            "check the certificate" + (f" (broker log: {tail})" if tail else "")
        )
