"""Settings of an SSDTF deployment and the topic layout every role agrees on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

PREFIX = "ssdtf/v1"


def auth_up(cid: str) -> str:
    return f"{PREFIX}/auth/{cid}/up"


def auth_down(cid: str) -> str:
    return f"{PREFIX}/auth/{cid}/down"


def data_topic(cid: str) -> str:
    return f"{PREFIX}/up/{cid}"


def ack_topic(cid: str) -> str:
    return f"{PREFIX}/ack/{cid}"


def report_topic(cid: str) -> str:
    return f"{PREFIX}/report/{cid}"


def resend_topic(sub: str) -> str:
    """A data user's signed re-send requests to the DS (the subscriber leg)."""
    return f"{PREFIX}/resend/{sub}"


def reg_topic(registrar: str) -> str:
    """A principal's signed registrations to the management server (REG)."""
    return f"{PREFIX}/reg/{registrar}"


def prov_topic(role: str) -> str:
    """Registrations the management server accepted, for ``gateway`` or ``ds`` (PROV)."""
    return f"{PREFIX}/prov/{role}"


def int_topic(sub: str) -> str:
    return f"{PREFIX}/int/{sub}"


def out_topic(sub: str, ext_id: str) -> str:
    return f"{PREFIX}/out/{sub}/{ext_id}"


def topic_part(topic: str, index: int) -> str:
    """The ``index``-th level after the prefix (``ssdtf/v1/up/sensor-1`` → 1: ``sensor-1``)."""
    parts = topic.split("/")
    return parts[2 + index] if len(parts) > 2 + index else ""


MODELS = {
    1: "one operator runs everything; data encrypted to the management server's key",
    2: "MQTT as a Service; the data user registers everything; data encrypted to its key",
    3: "device operator registers sensors and topics, data user registers destinations and "
    "conversion keys; data encrypted to the device operator's key",
}


@dataclass(frozen=True)
class FlowConfig:
    """Everything that shapes one run. Times are seconds.

    The deadlines are short by default so tests run fast; a stepping UI should use
    :meth:`for_stepping`, since a person pausing on a packet must not expire the nonce.
    """

    model: int = 1
    sensors: int = 1
    messages: int = 3
    users: int = 1
    token: str | None = None
    """Key of sensor-1 (any driver-layer token URI); other sensors get software keys."""
    token_pin: Any = field(default=None, repr=False, compare=False)
    """The :class:`~drivers.tokens.base.Pin` of ``token`` when it needs one (never shown)."""
    token_lent: Any = field(default=None, repr=False, compare=False)
    """``token`` already opened by the caller (the run service: once per run, closed at its
    end); deployments sign with it and never close it. ``None``: they open ``token`` themselves."""
    broker: str = "embedded"
    """``embedded`` (amqtt in process), ``mosquitto`` (started here), or ``mqtt://host:port``."""
    pre: str = "auto"
    """``auto``/``umbral``/``plain`` (see :mod:`drivers.ssdtf.pre`)."""
    capture: bool = True
    stepping: bool = False
    auth_deadline_s: float = 3.0
    ts_window_s: float = 30.0
    ack_timeout_s: float = 1.0
    backoff: float = 2.0
    max_attempts: int = 3
    max_pending: int = 64
    """A sensor sends a new reading only while fewer than this many wait for their signed ACK
    (0 = no limit): the device's flow control. Without it a sensor that publishes faster than
    the pipeline serves fills Mosquitto's per-client queue (1,000 messages by default), which
    then drops readings and stalls the run until re-sends repair it (measured: 2,000 readings
    sent open-loop). 64 keeps both cores busy: the pipeline holds ~10 readings at 300/s."""
    window: int = 64
    max_jump: int = 1 << 16
    """Largest accepted step above a sequence window's high-water mark (bounded jump)."""
    hello_interval_s: float = 0.05
    """Per client ID: the minimum gap between two HELLOs that get a challenge; doubled for
    every handshake that does not reach READY (back-off), reset by READY."""
    hello_backoff_max_s: float = 30.0
    hello_rate_per_s: float = 50.0
    """Global: challenges per second over all client IDs (token bucket, burst ``hello_burst``)."""
    hello_burst: int = 50
    connect_timeout_s: float = 10.0
    connect_deadline_s: float = 10.0
    """A TCP connection that has not sent its CONNECT within this many seconds is closed by
    the embedded broker (and, 1 s later, by the tap): idle or half-sent connections would
    otherwise hold file descriptors of this process for ever (neither amqtt nor Mosquitto
    closes them)."""
    max_unconnected: int = 128
    """At most this many TCP connections may wait for their CONNECT at once (embedded broker
    and tap); a new one beyond it closes the *oldest* waiting one, as a SYN cache does. The
    deadline alone lets a client that opens connections quickly hold ``rate × deadline`` file
    descriptors (three per connection behind the tap); evicting the oldest keeps that bounded
    while a real client, which sends its CONNECT within milliseconds, is not the one evicted."""
    gateway_qos: int = 1
    """QoS of the gateway's subscription to DATA (0 = the QoS-downgrade positive control)."""
    retain: bool = False
    """Sensors publish DATA with RETAIN (the RETAIN positive control)."""
    workers: int = 0
    """Worker processes per data user that open DELIVERs (unwrap, cfrag proofs, decrypt) off
    the role's thread; 0 = in the role's thread (:mod:`drivers.ssdtf.workers`)."""
    reading_prefix: str = "reading"
    extras: dict[str, object] = field(default_factory=dict)

    def for_stepping(self) -> FlowConfig:
        """The same run with deadlines long enough for a person stepping packet by packet."""
        return replace(
            self,
            stepping=True,
            auth_deadline_s=3600.0,
            ts_window_s=7200.0,
            ack_timeout_s=3600.0,
            connect_timeout_s=7200.0,
            connect_deadline_s=7200.0,
        )
