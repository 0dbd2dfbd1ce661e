"""What each protocol can do here, in one place: the CLI, the screens and the runs ask this.

Every "may I run X under condition Y?" question (``safelab proto jwt --resume``, the matrix's
greyed-out cells, Table 6's resumed rows) is answered by :func:`refusal`, so the answer and
its reason cannot drift apart between front ends. The module imports nothing heavy (no TLS
stack, no peers) so the console can draw its matrix without loading the protocol clients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.errors import SafeLabError
from drivers.protocols.base import Condition

PROTOCOLS = ("vpn", "mqtt", "coap", "https", "jwt", "coap-psk")


@dataclass(frozen=True)
class Capabilities:
    """One protocol's options; a ``None`` reason means supported, else why not (said as is)."""

    no_resume: str | None
    no_keep_alive: str | None
    jwt_options: bool = False
    psk: bool = False
    """DTLS-PSK: no certificate, the token signs nothing in the handshake."""


_ONLY_HTTPS_KEEPALIVE = "keep-alive is measured on HTTPS"

CAPABILITIES: dict[str, Capabilities] = {
    "vpn": Capabilities("OpenVPN disables TLS resumption", _ONLY_HTTPS_KEEPALIVE),
    "mqtt": Capabilities(None, _ONLY_HTTPS_KEEPALIVE),
    "coap": Capabilities("libcoap 4.3.1 has no DTLS resumption", _ONLY_HTTPS_KEEPALIVE),
    "https": Capabilities(None, None),
    "jwt": Capabilities(
        "JWT requests share one kept-alive connection, so there is no handshake to resume",
        "JWT requests always share one connection",
        jwt_options=True,
    ),
    "coap-psk": Capabilities(
        "libcoap 4.3.1 has no DTLS resumption", _ONLY_HTTPS_KEEPALIVE, psk=True
    ),
}

RESUMABLE = frozenset(p for p, c in CAPABILITIES.items() if c.no_resume is None)
"""Protocols whose peer resumes TLS sessions (MQTT, HTTPS)."""


def capabilities(protocol: str) -> Capabilities:
    try:
        return CAPABILITIES[protocol]
    except KeyError:
        raise SafeLabError(
            f"unknown protocol {protocol!r}", f"use one of {', '.join(PROTOCOLS)}"
        ) from None


def resumable(protocol: str) -> bool:
    return protocol in RESUMABLE


def refusal(protocol: str, condition: Condition) -> str | None:
    """Why ``protocol`` cannot run under ``condition`` here; ``None`` when it can."""
    caps = capabilities(protocol)
    if condition.resume and caps.no_resume:
        return f"{protocol} cannot resume sessions here ({caps.no_resume})"
    if condition.keep_alive and caps.no_keep_alive:
        return f"{protocol} has no keep-alive option ({caps.no_keep_alive})"
    if (condition.jwt_ttl_s or condition.jwt_hash_on_token) and not caps.jwt_options:
        return f"the JWT options (cache TTL, hash on token) apply to jwt only, not {protocol}"
    if condition.jwt_ttl_s < 0:
        return "the JWT cache TTL cannot be negative"
    if condition.tcp_nodelay and protocol != "mqtt":
        return f"--nodelay is an MQTT option: {protocol} " + (
            "uses http.client, which always sets TCP_NODELAY (as curl does)"
            if protocol in ("https", "jwt")
            else "does not run its handshake over SAFE Lab's TCP socket"
        )
    if condition.token_certificate and protocol != "vpn":
        return (
            f"reading the certificate from the token is a VPN option (OpenVPN's PKCS#11 mode); "
            f"the {protocol} client takes a certificate file, as the paper's did"
        )
    if condition.token_certificate and condition.reuse_token_session:
        return (
            "the certificate is read from the token in each connection's own token session "
            "(one OpenVPN process per connection): use it with --fresh-token-session"
        )
    return None


def check(protocol: str, condition: Condition) -> None:
    """Raise a one-line :class:`SafeLabError` if :func:`refusal` says no."""
    reason = refusal(protocol, condition)
    if reason is not None:
        raise SafeLabError(reason, "drop that option; see `safelab proto --help`")


def paper_client(protocol: str, condition: Condition) -> Condition:
    """``condition`` as the paper's client of ``protocol`` ran it: with a token session per
    connection, OpenVPN in PKCS#11 mode also reads its certificate from the token at every
    start (``pkcs11-id``), which the paper's other clients (paho, curl, ``openssl s_client``),
    given a certificate file, do not."""
    if protocol == "vpn" and not condition.reuse_token_session and not condition.resume:
        return replace(condition, token_certificate=True)
    return condition


def no_resumption_note(protocol: str) -> str:
    """Table 6's note for a row without resumed columns."""
    return f"no resumption: {capabilities(protocol).no_resume}"


# -- The optimisation lab's toggles (drivers.patterns) -------------------------------------

PATTERN_TRANSPORTS = ("mqtt", "https", "https-jwt", "coap", "vpn")

_TOGGLE_TRANSPORTS: dict[str, tuple[tuple[str, ...], str]] = {
    "keepalive": (
        ("mqtt", "https", "https-jwt", "vpn"),
        "the CoAP client makes a new DTLS session per request here",
    ),
    "resume": (("mqtt", "https", "https-jwt"), "libcoap 4.3.1 has no DTLS resumption"),
    "preauth": (
        ("mqtt", "https", "https-jwt", "vpn"),
        "CoAP here has no session to keep ready (a new DTLS session per request)",
    ),
    "jwt_ttl": (("https-jwt",), "JWT options apply to the https-jwt transport only"),
    "jwt_batch": (("https-jwt",), "JWT options apply to the https-jwt transport only"),
    "jwt_refresh": (("https-jwt",), "JWT options apply to the https-jwt transport only"),
    "hash_on": (("https-jwt",), "hashing on the card is a JWT option"),
    "nodelay": (
        ("mqtt",),
        "http.client always sets TCP_NODELAY (as curl does); CoAP is UDP",
    ),
    "psk": (("coap",), "DTLS-PSK is a CoAP option"),
}


_VPN_REASONS = {
    "resume": "OpenVPN disables TLS session resumption (every tunnel is a full handshake)",
    "nodelay": "the OpenVPN client's sockets are its own",
}
"""Why a toggle does not apply to the TLS-VPN transport, where the CoAP reason would mislead."""


def toggle_refusal(transport: str, toggles: object) -> str | None:
    """Why a pattern on ``transport`` cannot run with ``toggles``; ``None`` when it can.

    ``toggles`` is a :class:`drivers.patterns.toggles.Toggles` (typed loosely so this module
    stays import-light).
    """
    if transport not in PATTERN_TRANSPORTS:
        return f"unknown transport {transport!r} (use one of {', '.join(PATTERN_TRANSPORTS)})"
    from drivers.patterns.toggles import Toggles

    assert isinstance(toggles, Toggles)
    base = Toggles()
    for attr, (allowed, reason) in _TOGGLE_TRANSPORTS.items():
        if getattr(toggles, attr) != getattr(base, attr) and transport not in allowed:
            if transport == "vpn":
                reason = _VPN_REASONS.get(attr, reason)
            return f"{attr.replace('_', '-')} does not apply to {transport}: {reason}"
    if toggles.jwt_refresh and toggles.jwt_ttl <= 0:
        return "jwt-refresh renews a cached JWT before it expires: set jwt-ttl above 0"
    if toggles.psk and toggles.token_session != "kept":
        return "psk makes no token signature, so token-session has nothing to change"
    return None


def check_toggles(transport: str, toggles: object) -> None:
    """Raise a one-line :class:`SafeLabError` if :func:`toggle_refusal` says no."""
    reason = toggle_refusal(transport, toggles)
    if reason is not None:
        raise SafeLabError(reason, "drop that toggle; see `safelab pattern list`")
