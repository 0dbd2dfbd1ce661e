"""Network namespaces and TUN devices for kernel mode, created by SAFE Lab and always deleted.

Network safety: the only interfaces created live inside namespaces named
``safelab-<pid>-<n>-c`` / ``-s`` (``-p`` for the one-off probe); the root namespace is never
changed. Addresses (:data:`SERVER_ADDRESS`, :data:`CLIENT_ADDRESS`) exist only in them.

``setns`` changes the namespace of the *calling thread* only, so :func:`entered` switches the
current thread in and back out (a socket keeps the namespace it was created in, so a client
can create its socket inside and use it after). Namespaces of SAFE Lab processes killed by a
signal (no atexit ran) are swept when a new link is created.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import re
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from drivers.peers.base import find_program

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUN_NAME = "tl0"
SERVER_ADDRESS = "10.251.0.1"
CLIENT_ADDRESS = "10.251.0.2"
NETNS_DIR = Path("/run/netns")
_NAME_RE = re.compile(r"safelab-(\d+)-\d+-[csp]")

_libc = ctypes.CDLL(None, use_errno=True)
_counter = 0
_live: set[str] = set()
_guard = threading.Lock()
_probe_result: str | bool | None = False  # False = not probed yet


def _ip() -> str:
    path = find_program("ip")
    if path is None:
        raise OSError("the ip program (Debian iproute2) is missing")
    return path


def _run(*args: str) -> None:
    result = subprocess.run([_ip(), *args], capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


def unavailable_reason() -> str | None:
    """Why kernel mode cannot run here (``None`` if it can); probed once per process."""
    global _probe_result
    if _probe_result is not False:
        return _probe_result  # type: ignore[return-value]
    reason: str | None = None
    if os.geteuid() != 0:
        reason = "kernel mode needs root (network namespaces and TUN devices)"
    elif find_program("ip") is None:
        reason = "kernel mode needs the ip program (apt-get install iproute2)"
    elif not os.path.exists("/dev/net/tun"):
        reason = "kernel mode needs /dev/net/tun (the tun module)"
    else:
        name = new_name("p")
        try:
            create(name)
            with entered(name):
                os.close(open_tun())
        except OSError as exc:
            reason = f"network namespaces are not allowed here ({exc})"
        finally:
            delete(name)
    _probe_result = reason
    return reason


def new_name(role: str) -> str:
    global _counter
    with _guard:
        _counter += 1
        return f"safelab-{os.getpid()}-{_counter}-{role}"


def create(name: str) -> None:
    """``ip netns add``; registered for deletion at exit before anything else can fail."""
    with _guard:
        _live.add(name)
    _run("netns", "add", name)


def delete(name: str) -> None:
    """``ip netns del``, tolerant of a namespace that is already gone."""
    with _guard:
        _live.discard(name)
    if (NETNS_DIR / name).exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run("netns", "del", name)


def listed() -> list[str]:
    """SAFE Lab namespaces that exist now (what ``ip netns list`` would show of ours)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if _NAME_RE.fullmatch(p.name))


def sweep_stale() -> list[str]:
    """Delete namespaces left by SAFE Lab processes that no longer exist; returns their names."""
    removed = []
    for name in listed():
        match = _NAME_RE.fullmatch(name)
        assert match is not None
        pid = int(match.group(1))
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            delete(name)
            removed.append(name)
    return removed


@atexit.register
def _delete_all_at_exit() -> None:
    with _guard:
        names = list(_live)
    for name in names:
        delete(name)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the with-block's thread inside namespace ``name``, then return to the old one.

    Sockets created inside stay in ``name``. Threads and processes started inside inherit it.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(str(NETNS_DIR / name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)  # cannot fail for our own saved namespace; if it does, it raises
    finally:
        os.close(own)


def open_tun() -> int:
    """A non-blocking TUN device ``tl0`` in the current thread's namespace (one IP packet per
    read/write, no packet-info header); the device lives as long as the descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TUN_NAME.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def configure(name: str, address: str, peer: str) -> None:
    """Bring ``lo`` and ``tl0`` up in ``name`` with a point-to-point address pair."""
    _run("-n", name, "link", "set", "lo", "up")
    _run("-n", name, "addr", "add", address, "peer", peer, "dev", TUN_NAME)
    _run("-n", name, "link", "set", TUN_NAME, "up")
