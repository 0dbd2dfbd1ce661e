"""Emulated network links in front of real peers: delay, jitter, rate and loss.

Everything else in SAFE Lab runs on loopback at zero delay; a link makes the path between a
client and a real peer look like LTE-M, NB-IoT, GPRS, a satellite hop or a lab Wi-Fi, so
handshake costs can be measured where round trips matter. The kernels SAFE Lab runs on have no
netem, so there are two modes (see ``README.md``, "Network links"):

- ``proxy`` (default, no root, :mod:`drivers.links.proxy`): a TCP/UDP proxy on loopback.
  UDP loss is real; TCP loss is *modelled* as retransmission delay and results say
  ``"loss": "modelled"``.
- ``kernel`` (root, :mod:`drivers.links.kernel`): two network namespaces joined by TUN
  devices and a shaping forwarder; TCP and DTLS recover from real drops with their own timers.

The one call run kinds need (``proto``, ``pattern``, ``paper``, ``whatif`` wire ``--link``
through it)::

    from drivers.links import open_link

    with open_link("rtt=100ms,loss=1%", "tcp", target=("127.0.0.1", peer.port)) as link:
        with link.client_context():          # kernel mode: create sockets in the client netns
            sock = socket.create_connection(link.address)
        ...                                  # use sock outside the block as usual
        result.metadata["link"] = link.metadata()   # spec, mode, loss label, counters

``spec`` is ``--link`` text (``'rtt=100ms,jitter=10ms,loss=1%,rate=256kbit'``, a profile name
such as ``lte-m``, or ``lte-m,loss=2%``) or a :class:`LinkSpec`. ``link.address`` is where
the client connects instead of the peer (TLS clients keep verifying the peer's name:
``server_hostname`` is unchanged, only the address differs). In kernel mode, client
*processes* (the ``openvpn`` client) must be started inside ``client_context()`` too: a child
inherits the namespace of the thread that started it. In proxy mode ``client_context()`` does
nothing, so callers can always use it. Bad specs raise
:class:`LinkSpecError` (a :class:`~drivers.errors.SafeLabError`); kernel mode where namespaces
are not allowed raises :class:`LinkUnavailable` with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from drivers.links.kernel import KernelLink, LinkUnavailable
from drivers.links.netns import unavailable_reason
from drivers.links.profiles import LinkProfile, list_profiles, load_profile
from drivers.links.proxy import LinkError, LinkProtocol, TcpLinkProxy, UdpLinkProxy
from drivers.links.shaping import LinkStats
from drivers.links.spec import DirectionSpec, LinkSpec, LinkSpecError, parse_link

LinkMode = Literal["proxy", "kernel", "auto"]


@dataclass
class LinkEndpoint:
    """What a client needs from an open link: where to connect, where to create sockets, and
    what to record."""

    address: tuple[str, int]
    mode: Literal["proxy", "kernel"]
    protocol: LinkProtocol
    spec: LinkSpec
    link: TcpLinkProxy | UdpLinkProxy | KernelLink

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def stats(self) -> LinkStats:
        return self.link.stats

    def client_context(self) -> AbstractContextManager[None]:
        """Create client sockets inside this block (kernel mode: the client namespace)."""
        if isinstance(self.link, KernelLink):
            return self.link.client_context()
        return contextlib.nullcontext()

    def loss_label(self) -> str:
        """``none``, ``real`` or ``modelled``: show it wherever a loss figure shows."""
        return str(self.link.metadata()["loss"])

    def metadata(self) -> dict[str, Any]:
        """For results metadata: ``link`` (canonical spec), ``mode``, ``loss``, ``stats``."""
        return self.link.metadata()


def _resolve_mode(mode: LinkMode) -> Literal["proxy", "kernel"]:
    if mode == "auto":
        return "kernel" if unavailable_reason() is None else "proxy"
    if mode not in ("proxy", "kernel"):
        raise LinkError(f"unknown link mode {mode!r}", "use proxy, kernel or auto")
    return mode


@contextlib.contextmanager
def open_link(
    spec: LinkSpec | str,
    protocol_kind: LinkProtocol,
    target: tuple[str, int],
    *,
    mode: LinkMode = "proxy",
) -> Iterator[LinkEndpoint]:
    """An emulated link in front of the loopback peer at ``target``, for one with-block.

    ``protocol_kind`` is the transport the client speaks (``tcp``: MQTT, HTTPS, JWT; ``udp``:
    CoAP/DTLS, OpenVPN over UDP). ``mode='auto'`` takes kernel mode where it can run.
    Everything the link started (threads, namespaces, relay) is gone when the block ends,
    also on error or Ctrl-C.
    """
    link_spec = parse_link(spec) if isinstance(spec, str) else spec
    if protocol_kind not in ("tcp", "udp"):
        raise LinkError(f"unknown link transport {protocol_kind!r}", "use tcp or udp")
    chosen = _resolve_mode(mode)
    if chosen == "kernel":
        kernel = KernelLink(link_spec, protocol=protocol_kind, target=target)
        with kernel:
            yield LinkEndpoint(kernel.address, "kernel", protocol_kind, link_spec, kernel)
        return
    proxy_class = TcpLinkProxy if protocol_kind == "tcp" else UdpLinkProxy
    with proxy_class(link_spec, target) as proxy:
        yield LinkEndpoint(proxy.address, "proxy", protocol_kind, link_spec, proxy)


__all__ = [
    "DirectionSpec",
    "KernelLink",
    "LinkEndpoint",
    "LinkError",
    "LinkMode",
    "LinkProfile",
    "LinkSpec",
    "LinkSpecError",
    "LinkStats",
    "LinkUnavailable",
    "TcpLinkProxy",
    "UdpLinkProxy",
    "list_profiles",
    "load_profile",
    "open_link",
    "parse_link",
    "unavailable_reason",
]
