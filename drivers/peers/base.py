"""One way to run a real peer: generated config in a temp dir, free loopback port, health
check, and a stop that always happens.

Why a process group: nginx forks workers and OpenVPN may fork helpers; killing only the
process we started would leave children behind. Each peer runs in its own session
(``start_new_session``), and stopping signals the whole group: SIGTERM, then SIGKILL after a
grace period. Because the peer is not in the terminal's foreground group, a Ctrl-C reaches only
SAFE Lab, whose ``with`` block (or the atexit safety net) then stops the peer.

The peer's stdout and stderr go to ``peer.log`` in its temp dir; errors quote its last lines.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import ClassVar, Self

from drivers.peers.errors import PeerError, PeerStartError, PeerUnavailable, PortInUse
from drivers.peers.pki import LabPki
from drivers.peers.ports import LOOPBACK, free_port, require_free

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
"""Debian installs mosquitto, nginx and openvpn in sbin, which a normal user's PATH lacks."""

_ADDRESS_IN_USE = re.compile(r"address already in use|could not bind|bind\(\) to .* failed", re.I)

_LIVE: weakref.WeakSet[Peer] = weakref.WeakSet()
_LIVE_GUARD = threading.Lock()


def _stop_all_at_exit() -> None:
    with _LIVE_GUARD:
        peers = list(_LIVE)
    for peer in peers:
        peer.stop()


atexit.register(_stop_all_at_exit)


def find_program(name: str) -> str | None:
    """Absolute path of ``name`` from PATH or the sbin directories; ``None`` if missing."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def python_environment() -> dict[str, str]:
    """Environment for ``python -m drivers.peers...`` peers: this checkout on PYTHONPATH."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = f"{root}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else root
    return env


def tcp_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?")


@dataclass(frozen=True)
class PeerIdentity:
    """What answered a run, said by the peer itself: stored with runs, shown beside figures.

    ``embedded`` is True for the Python fallbacks (amqtt, the ``ssl`` module server) that run
    when the real server is missing; ``version`` is the binary's (``mosquitto 2.0.11``) or the
    library's version, or ``"unknown"`` if the program does not say.
    """

    name: str
    embedded: bool
    version: str

    @property
    def kind(self) -> str:
        return "embedded" if self.embedded else "real"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "embedded": self.embedded, "version": self.version}


@cache
def program_version(path: str, arguments: tuple[str, ...]) -> str:
    """The first ``N.N[.N]`` a program prints for ``arguments`` (its version), once per path."""
    try:
        done = subprocess.run(
            [path, *arguments],
            capture_output=True,
            timeout=5,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = _VERSION.search((done.stdout + done.stderr).decode(errors="replace"))
    return match.group(0) if match else "unknown"


class Peer(ABC):
    """A real server on loopback, used as a context manager::

        with MosquittoPeer() as broker:
            connect_to("127.0.0.1", broker.port, ca=broker.ca_path)

    Subclasses say which program (and Debian package) they run, write their config in
    :meth:`_prepare`, and may refine the health check in :meth:`_healthy`.
    """

    protocol: ClassVar[str] = "peer"
    """Human name, used in errors (``MQTT broker (Mosquitto)``)."""
    program: ClassVar[str] = ""
    package: ClassVar[str] = ""
    installer: ClassVar[str] = "apt-get install"
    transports: tuple[str, ...] = ("tcp",)
    """The transports its port is checked on (an instance may change it: OpenVPN over UDP)."""
    """Transports whose port must be free before start (and are checked for "in use")."""
    port_span: ClassVar[int] = 1
    fatal_log: ClassVar[str | None] = None
    """A regex that, found in the log during start-up, means the peer cannot work."""
    embedded: ClassVar[bool] = False
    """True for the Python fallbacks of a missing real server (see :class:`PeerIdentity`)."""
    version_arguments: ClassVar[tuple[str, ...]] = ("--version",)
    """What makes :attr:`program` print its version (``nginx -v``, ``mosquitto -h``)."""
    start_timeout: float = 15.0
    stop_timeout: float = 5.0

    def __init__(
        self,
        *,
        port: int | None = None,
        pki: LabPki | None = None,
        binary: str | None = None,
        keep_dir: bool = False,
    ) -> None:
        self.requested_port = port
        self.port = 0
        """The listening port (set by :meth:`start`)."""
        self.host = LOOPBACK
        self.pki = pki or LabPki()
        self.binary = binary or self.program
        self.keep_dir = keep_dir
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._final_log = ""
        self._server = self.pki.server_cert()

    # -- files peers and clients read ---------------------------------------------------
    @property
    def ca_path(self) -> Path:
        """The lab CA clients must trust to verify this peer (and that it uses for clients)."""
        return self.pki.ca_path

    @property
    def cert_path(self) -> Path:
        return self._server.cert_path

    @property
    def key_path(self) -> Path:
        assert self._server.key_path is not None
        return self._server.key_path

    # -- what it is ---------------------------------------------------------------------
    @property
    def identity(self) -> PeerIdentity:
        """Name, real or embedded, and version: the run's metadata asks this, never guesses."""
        return PeerIdentity(type(self).__name__, self.embedded, self.version())

    def version(self) -> str:
        """The version of the program this peer runs (``unknown`` if it does not say)."""
        path = find_program(self.binary)
        return program_version(path, self.version_arguments) if path else "unknown"

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> Self:
        """Start the peer and wait until it is healthy; stops it again if anything fails."""
        if self.process is not None:
            return self
        path = find_program(self.binary)
        if path is None:
            raise PeerUnavailable(self.binary, self.package, self.protocol, self.installer)
        if self.requested_port is None:
            self.port = free_port(self.transports, self.port_span)
        else:
            for offset in range(self.port_span):
                require_free(self.requested_port + offset, self.transports)
            self.port = self.requested_port
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"safelab-{Path(self.binary).name}-"))
            self._log_path = self.workdir / "peer.log"
            argv = self._prepare(path, self.workdir)
            self._launch(argv)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, argv: Sequence[str]) -> None:
        assert self.workdir is not None and self._log_path is not None
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(argv),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._environment(),
            )
        with _LIVE_GUARD:
            _LIVE.add(self)

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while True:
            self._raise_if_exited("exited while starting")
            self._raise_if_fatal_logged()
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise PeerStartError(
                    f"{self.protocol} did not become ready on port {self.port} "
                    f"within {self.start_timeout:.0f} s",
                    "see its log below; is the configuration accepted by this version?",
                    self.log_tail(),
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _raise_if_exited(self, what: str) -> None:
        if self.process is None or self.process.poll() is None:
            return
        tail = self.log_tail()
        if _ADDRESS_IN_USE.search(tail):
            error = PortInUse(self.port, "/".join(self.transports))
            error.log_tail = tail
            raise error
        raise PeerStartError(
            f"{self.protocol} {what} (exit status {self.process.returncode})",
            f"its last log lines: {tail.strip().splitlines()[-1] if tail.strip() else '(none)'}",
            tail,
        )

    def _raise_if_fatal_logged(self) -> None:
        """Some peers keep running without a listener they could not bind (libcoap does)."""
        log = self.log_text()
        if _ADDRESS_IN_USE.search(log):
            error = PortInUse(self.port, "/".join(self.transports))
            error.log_tail = self.log_tail()
            raise error
        if self.fatal_log and (match := re.search(self.fatal_log, log)):
            raise PeerStartError(
                f"{self.protocol} failed to start: {match.group(0).strip()}",
                "see its log",
                self.log_tail(),
            )

    def check_alive(self) -> None:
        """Raise :class:`PeerError` if the peer died (killed mid-run, crashed)."""
        if self.process is None:
            raise PeerError(f"{self.protocol} is not running", "start it first")
        self._raise_if_exited("stopped unexpectedly")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        """Stop the peer's whole process group and remove its temp dir. Safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            _kill_group(process, self.stop_timeout)
            with _LIVE_GUARD:
                _LIVE.discard(self)
        if self._log_path is not None and self._log_path.exists():
            self._final_log = self._log_path.read_text(errors="replace")
        self._cleanup()
        if self.workdir is not None and not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _cleanup(self) -> None:  # noqa: B027 - optional hook
        """Extra stopping work (helper processes) for subclasses."""

    def restart(self) -> None:
        """Stop the program and start it again on the same port: a real peer restart.

        Everything the peer kept in memory is gone, as after a crash or an upgrade: open
        connections (clients see them closed), TLS session caches and ticket keys (the next
        handshake is full even with resumption on). Used by the optimisation lab's
        "peer restarted" fault.
        """
        port, requested = self.port, self.requested_port
        self.stop()
        self.requested_port = port
        try:
            self.start()
        finally:
            self.requested_port = requested

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs ---------------------------------------------------------------------------
    def log_text(self) -> str:
        """Everything the peer wrote so far (kept after :meth:`stop`)."""
        if self.process is not None and self._log_path is not None and self._log_path.exists():
            return self._log_path.read_text(errors="replace")
        return self._final_log

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 5.0, since: int = 0) -> re.Match[str]:
        """Wait until the peer's log (from offset ``since``) matches ``pattern``.

        Lets callers see a rejection in the peer's own words (``VERIFY ERROR``) instead of
        waiting for a client-side timeout. Raises :class:`PeerError` on timeout or exit.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text(), since)
            if match:
                return match
            if not self.running:
                raise PeerError(
                    f"{self.protocol} stopped before logging {pattern!r}", "", self.log_tail()
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{self.protocol} did not log {pattern!r} within {timeout:g} s",
                    "see its log",
                    self.log_tail(),
                )
            time.sleep(0.02)

    def log_size(self) -> int:
        """Current log length: pass as ``since`` to :meth:`wait_for_log` to skip old lines."""
        return len(self.log_text())

    # -- subclass hooks -----------------------------------------------------------------
    @abstractmethod
    def _prepare(self, program: str, workdir: Path) -> list[str]:
        """Write the config into ``workdir`` and return the command line to run."""

    def _healthy(self) -> bool:
        """Ready when the port accepts TCP connections; UDP peers override this."""
        return tcp_accepts(self.port)


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        pgid = process.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no forked child (nginx worker) outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        break
    if process.poll() is None:  # pragma: no cover - SIGKILL always ends a process
        process.wait()


class PythonModulePeer(Peer):
    """A real server written in Python, run as ``python -m MODULE --port N ...`` in its own
    process, so it is started, health-checked and stopped exactly like the binary peers.

    Subclasses name the module and add their own arguments in :meth:`_module_arguments`; the
    module prints ``listening on`` once it accepts connections.
    """

    program: ClassVar[str] = sys.executable
    module: ClassVar[str] = ""
    library: ClassVar[str] = ""
    """The package that does the protocol work (``amqtt``); its version is the peer's."""

    def version(self) -> str:
        """The library's version; for a plain-``ssl`` server, Python's and OpenSSL's."""
        if self.library:
            try:
                return f"{self.library} {metadata.version(self.library)}"
            except metadata.PackageNotFoundError:
                return "unknown"
        import ssl

        return f"python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}"

    def _module_arguments(self, workdir: Path) -> list[str]:
        return []

    def _prepare(self, program: str, workdir: Path) -> list[str]:
        arguments = self._module_arguments(workdir)
        return [program, "-m", self.module, "--port", str(self.port), *arguments]

    def _environment(self) -> dict[str, str]:
        return python_environment()

    def _healthy(self) -> bool:
        return "listening on" in self.log_text()

    def _tls_arguments(self) -> list[str]:
        """``--cert/--key/--ca`` of the lab server certificate, for TLS servers."""
        return [
            "--cert",
            str(self.cert_path),
            "--key",
            str(self.key_path),
            "--ca",
            str(self.ca_path),
        ]
