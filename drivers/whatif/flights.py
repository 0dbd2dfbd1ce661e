"""Protocol flight models: who sends what, how many times the client waits, where it signs.

Why a structure and not one fitted number per protocol: a what-if changes the *link* (each
round trip pays the RTT, each flight its bytes at the link's rate, its losses their timers) and
the *token* (the signature sits in one client flight, its size in that flight's bytes). A flight
list answers both; the loopback constants (local compute of client and peer, bytes actually
sent) come from calibration (:mod:`drivers.whatif.calibration`), not from here.

A flight is one burst in one direction; the client waits for every ``down`` flight, so the
handshake's round trips are the number of ``up``-then-``down`` turns. TCP protocols begin
with the connect round trip (SYN / SYN-ACK; the ACK travels with the first data), which the
link proxy adds back as the real path would (:mod:`drivers.links.proxy`).

The paths, as the real peers speak them here (OpenSSL 3.0 clients; checked against the
measured slope of latency over RTT in calibration, ``tests/whatif``):

- MQTT/TLS and HTTPS (TLS 1.3): connect, ClientHello -> server flight (ServerHello ..
  CertificateRequest, Certificate, CertificateVerify, Finished), client flight
  (Certificate, **CertificateVerify: the token's signature**, Finished, plus the first
  application record: CONNECT / the GET) -> CONNACK / the response. 3 round trips.
  Resumed (PSK ticket): the same turns without certificates and without a signature.
  HTTPS keep-alive: only the request -> response turn.
- CoAP/DTLS 1.2 (libcoap 4.3.1): ClientHello -> HelloVerifyRequest (cookie), ClientHello ->
  flight 4, flight 5 (Certificate, ClientKeyExchange, **CertificateVerify**, CCS, Finished)
  -> CCS, Finished, then the confirmable request -> ACK. 4 round trips; DTLS-PSK the same
  turns with no certificate and no signature.
- OpenVPN 2.6: hard reset -> reset ACK, the TLS handshake inside the control channel
  (two turns, the signature in the client's second flight), key-method 2 and PUSH_REQUEST ->
  PUSH_REPLY. OpenVPN's own one-second timers overlap some turns, so the structural count is
  an upper bound and calibration's measured slope is what the model uses (said in provenance).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import SafeLabError


@dataclass(frozen=True)
class Flight:
    """One burst of records in one direction."""

    direction: str
    """``up`` (client to peer) or ``down``."""
    nominal_bytes: int
    """Typical size with P-256 certificates; calibration rescales to the measured bytes."""
    label: str
    signs: bool = False
    """The client's signature (CertificateVerify) is in this flight: it waits for the token."""


@dataclass(frozen=True)
class FlightPath:
    """One way through a protocol's handshake (full, resumed, PSK, keep-alive)."""

    protocol: str
    path: str
    transport: str
    """``tcp`` or ``udp`` (which loss model applies)."""
    flights: tuple[Flight, ...]
    tcp_connect: bool = False
    """A TCP connect round trip before the first flight."""
    note: str = ""

    @property
    def round_trips(self) -> int:
        """Turns the client waits for: the connect, plus every ``up`` followed by ``down``."""
        turns = int(self.tcp_connect)
        previous = ""
        for flight in self.flights:
            if flight.direction == "down" and previous == "up":
                turns += 1
            previous = flight.direction
        return turns

    @property
    def signatures(self) -> int:
        return sum(1 for f in self.flights if f.signs)

    def bytes(self, direction: str) -> int:
        return sum(f.nominal_bytes for f in self.flights if f.direction == direction)


def _f(direction: str, size: int, label: str, signs: bool = False) -> Flight:
    return Flight(direction, size, label, signs)


_TLS13_FULL = (
    _f("up", 330, "ClientHello"),
    _f(
        "down",
        1650,
        "ServerHello, EncryptedExtensions, CertificateRequest, Certificate, "
        "CertificateVerify, Finished",
    ),
    _f("up", 1250, "Certificate, CertificateVerify (token), Finished, first request", True),
)
_TLS13_RESUMED = (
    _f("up", 520, "ClientHello + pre_shared_key"),
    _f("down", 240, "ServerHello, EncryptedExtensions, Finished"),
    _f("up", 120, "Finished, first request"),
)

PATHS: dict[tuple[str, str], FlightPath] = {
    ("mqtt", "full"): FlightPath(
        "mqtt",
        "full",
        "tcp",
        (*_TLS13_FULL, _f("down", 300, "NewSessionTicket, CONNACK")),
        tcp_connect=True,
    ),
    ("mqtt", "resumed"): FlightPath(
        "mqtt",
        "resumed",
        "tcp",
        (*_TLS13_RESUMED, _f("down", 300, "NewSessionTicket, CONNACK")),
        tcp_connect=True,
    ),
    ("https", "full"): FlightPath(
        "https",
        "full",
        "tcp",
        (*_TLS13_FULL, _f("down", 900, "NewSessionTicket, response")),
        tcp_connect=True,
    ),
    ("https", "resumed"): FlightPath(
        "https",
        "resumed",
        "tcp",
        (*_TLS13_RESUMED, _f("down", 900, "NewSessionTicket, response")),
        tcp_connect=True,
    ),
    ("https", "keepalive"): FlightPath(
        "https",
        "keepalive",
        "tcp",
        (_f("up", 120, "request"), _f("down", 600, "response")),
        note="one kept connection: no handshake after the first request",
    ),
    ("coap", "full"): FlightPath(
        "coap",
        "full",
        "udp",
        (
            _f("up", 180, "ClientHello"),
            _f("down", 60, "HelloVerifyRequest (cookie)"),
            _f("up", 210, "ClientHello + cookie"),
            _f(
                "down",
                1400,
                "ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone",
            ),
            _f(
                "up",
                900,
                "Certificate, ClientKeyExchange, CertificateVerify (token), CCS, Finished",
                True,
            ),
            _f("down", 70, "CCS, Finished"),
            _f("up", 60, "CoAP CON request"),
            _f("down", 50, "CoAP ACK"),
        ),
    ),
    ("coap-psk", "full"): FlightPath(
        "coap-psk",
        "full",
        "udp",
        (
            _f("up", 120, "ClientHello"),
            _f("down", 60, "HelloVerifyRequest (cookie)"),
            _f("up", 150, "ClientHello + cookie"),
            _f("down", 120, "ServerHello, ServerHelloDone"),
            _f("up", 110, "ClientKeyExchange (PSK identity), CCS, Finished"),
            _f("down", 70, "CCS, Finished"),
            _f("up", 60, "CoAP CON request"),
            _f("down", 50, "CoAP ACK"),
        ),
        note="DTLS-PSK: no certificate, the token signs nothing",
    ),
    ("vpn", "full"): FlightPath(
        "vpn",
        "full",
        "udp",
        (
            _f("up", 60, "P_CONTROL_HARD_RESET_CLIENT"),
            _f("down", 70, "P_CONTROL_HARD_RESET_SERVER"),
            _f("up", 400, "ClientHello (control channel)"),
            _f("down", 2200, "server TLS flight"),
            _f("up", 1300, "Certificate, CertificateVerify (token), Finished", True),
            _f("down", 400, "Finished, key-method 2"),
            _f("up", 300, "key-method 2, PUSH_REQUEST"),
            _f("down", 400, "PUSH_REPLY"),
        ),
        note="OpenVPN's one-second timers overlap turns: the measured slope is used",
    ),
    ("mqtt", "publish-qos0"): FlightPath(
        "mqtt", "publish-qos0", "tcp", (), note="QoS 0: done once written, nothing awaited"
    ),
    ("mqtt", "publish-qos1"): FlightPath(
        "mqtt", "publish-qos1", "tcp", (_f("up", 100, "PUBLISH"), _f("down", 40, "PUBACK"))
    ),
    ("mqtt", "publish-qos2"): FlightPath(
        "mqtt",
        "publish-qos2",
        "tcp",
        (
            _f("up", 100, "PUBLISH"),
            _f("down", 40, "PUBREC"),
            _f("up", 40, "PUBREL"),
            _f("down", 40, "PUBCOMP"),
        ),
    ),
}
"""Every modelled path. ``publish-*`` and ``keepalive`` are requests on a kept connection
(pattern workloads); JWT requests are HTTPS keep-alive requests plus the JWT's signature."""

MODELLED_PROTOCOLS = ("mqtt", "https", "coap", "vpn", "coap-psk")


def flight_path(protocol: str, path: str = "full") -> FlightPath:
    """The flight model of ``protocol`` on ``path`` (``full``, ``resumed``, ``keepalive``)."""
    try:
        return PATHS[(protocol, path)]
    except KeyError:
        paths = [p for (proto, p) in PATHS if proto == protocol]
        if not paths:
            raise SafeLabError(
                f"no flight model for protocol {protocol!r}",
                f"use one of {', '.join(MODELLED_PROTOCOLS)}",
            ) from None
        raise SafeLabError(
            f"{protocol} has no {path} path in the model", f"use {' or '.join(paths)}"
        ) from None
