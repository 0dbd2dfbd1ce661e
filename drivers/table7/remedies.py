"""Which toggles stand for "before" and for the paper's remedies in each Table 7 row.

"Before" is the unremedied client (:class:`~drivers.patterns.toggles.Toggles` defaults: a
connection per operation, no resumption). "After" maps the paper's remedy words onto the
toggles that are real mechanisms here; what a row's remedy asks for and this lab cannot do is
said in ``not_applied``, so nobody reads more into an "after" cell than was run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Remedy:
    after: tuple[str, ...]
    """``--set`` toggles of the remedied run."""
    not_applied: str = ""


REMEDIES: dict[str, Remedy] = {
    "periodic": Remedy(("keepalive=on", "resume=on")),
    "event-driven": Remedy(("preauth=on", "keepalive=on", "resume=on")),
    "real-time-control": Remedy(
        ("keepalive=on", "resume=on", "nodelay=on"),
        "PSK needs the CoAP transport and hardware crypto another token: not applied to this "
        "MQTT row (try --token with a faster card, or `pattern run` with transport coap psk=on)",
    ),
    "remote-management": Remedy(
        ("keepalive=on", "preauth=on", "resume=on"),
        "always-on VPN is modelled by a kept, pre-authenticated HTTPS connection; the "
        "certificate is cached by the token bridge in every run",
    ),
    "bulk-transfer": Remedy(
        ("keepalive=on", "resume=on"),
        "delta updates are not modelled (the image size stays)",
    ),
    "batch": Remedy(("jwt-batch=on", "jwt-ttl=300", "jwt-refresh=on")),
}

BEFORE: tuple[str, ...] = ()
"""The unremedied client: the toggles' defaults."""


def settings(pattern: str, side: str) -> tuple[str, ...]:
    """The ``--set`` toggles of ``side`` (``before``/``after``) of ``pattern``'s row."""
    if side == "before":
        return BEFORE
    return REMEDIES[pattern].after
