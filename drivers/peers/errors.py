"""Errors about peers: each says what went wrong and what the user can do about it."""

from __future__ import annotations

from drivers.errors import SafeLabError


class PeerError(SafeLabError):
    """A peer could not be started, did not become healthy, or died."""

    def __init__(self, problem: str, fix: str = "", log_tail: str = "") -> None:
        super().__init__(problem, fix)
        self.log_tail = log_tail
        """The last lines the peer wrote, so the cause is visible without digging."""


class PeerUnavailable(PeerError):
    """The peer's program is not installed; ``package`` is the package that has it.

    ``fix`` is the exact command (``apt-get install mosquitto``), so the console can show
    the protocol as unavailable with what to run instead of a traceback.
    """

    def __init__(
        self, binary: str, package: str, protocol: str, installer: str = "apt-get install"
    ) -> None:
        super().__init__(
            f"{protocol} peer unavailable: program {binary!r} not found",
            f"{installer} {package}",
        )
        self.binary = binary
        self.package = package
        self.protocol = protocol


class PortInUse(PeerError):
    """The loopback port asked for is already taken by another program."""

    def __init__(self, port: int, transport: str = "tcp") -> None:
        super().__init__(
            f"port {port}/{transport} on 127.0.0.1 is already in use",
            "choose another port, or leave the port unset to get a free one",
        )
        self.port = port
        self.transport = transport


class PeerStartError(PeerError):
    """The peer's program started but exited or never became ready."""
