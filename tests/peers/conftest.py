"""Helpers for the peer tests: lab PKI, TLS clients with software key files, leftover checks.

Every test gets its own data directory (the root conftest's ``data_dir``), so each test makes a
fresh lab CA; that also proves the CA is created on demand.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from dataclasses import dataclass

import pytest

from drivers.peers import Credentials, LabPki

REJECTED = (ssl.SSLError, ConnectionError, OSError)
"""What a refused TLS client sees: an alert (SSLError), a reset, or EOF."""


@pytest.fixture
def pki() -> LabPki:
    return LabPki()


def client_context(cred: Credentials | None, ca: os.PathLike[str] | str) -> ssl.SSLContext:
    """A Python ``ssl`` client trusting the lab CA, with ``cred``'s key file if given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cred is not None:
        assert cred.key_path is not None
        context.load_cert_chain(cred.cert_path, cred.key_path)
    return context


@dataclass
class Outcome:
    """What one TLS exchange gave: the first bytes read, or the error, and how long it took."""

    data: bytes | None
    error: BaseException | None
    seconds: float


def tls_exchange(
    port: int,
    context: ssl.SSLContext,
    payload: bytes,
    timeout: float = 5.0,
    session: ssl.SSLSession | None = None,
) -> Outcome:
    """Handshake, send ``payload``, read the first answer. TLS 1.3 reports a refused client
    certificate only after the handshake, so a refusal can surface at the read."""
    start = time.monotonic()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
        ):
            tls.sendall(payload)
            data = tls.recv(4096)
            if not data:
                raise ConnectionError("peer closed the connection without answering")
            return Outcome(data, None, time.monotonic() - start)
    except REJECTED as exc:
        return Outcome(None, exc, time.monotonic() - start)


def assert_rejected_quickly(outcome: Outcome, limit: float = 3.0) -> None:
    assert outcome.error is not None, f"peer answered {outcome.data!r} instead of refusing"
    assert not isinstance(outcome.error, TimeoutError), "refusal only seen as a timeout"
    assert outcome.seconds < limit, f"refusal took {outcome.seconds:.1f} s"


def process_gone(pid: int, wait: float = 3.0) -> bool:
    """True once ``pid`` no longer exists (zombies of other parents count as gone)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def group_members(pgid: int) -> list[int]:
    """PIDs whose process group is ``pgid`` (nginx master and workers, for example)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().split(")")[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def assert_stopped(pid: int | None) -> None:
    """The peer's process and its whole group (it leads a session) are gone."""
    assert pid is not None
    assert process_gone(pid), f"peer process {pid} still running"
    assert group_members(pid) == [], f"processes of group {pid} left: {group_members(pid)}"
