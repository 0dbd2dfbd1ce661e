"""What every protocol experiment shares: conditions, one trial's figures, the run loop.

A trial is one connection "established" at the paper's point (MQTT CONNACK received, HTTPS
response fully read, CoAP ACK of a confirmable request, VPN initialisation complete), split
into phases: ``connect`` (TCP, or nothing for UDP), ``handshake`` (TLS/DTLS, the token's
signing inside it), ``ready`` (from the end of the handshake to established). ``n_sign`` is
the number of signatures the token made for it (1 for a full TLS handshake, 0 for a resumed
one) and ``sign`` their total time.

Runs are stored like signing runs (experiment ``proto``, mode ``PROTOCOL:CONDITION``), with
the same pre-flight-then-trials shape, Ctrl-C and errors keeping what was measured.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drivers.bench.runner import collect_versions
from drivers.bench.stats import StatsSnapshot, StreamingStats
from drivers.bench.store import ResultsStore
from drivers.errors import RunInterrupted, SafeLabError
from drivers.tls.signer import TokenSigner

if TYPE_CHECKING:
    from drivers.peers.base import PeerIdentity

PROTOCOL_PHASES = ("connect", "handshake", "sign", "ready")


@dataclass(frozen=True)
class Condition:
    """An optimisation setting of a protocol run."""

    resume: bool = False
    """TLS session resumption (tickets / session IDs) where the peer supports it."""
    keep_alive: bool = False
    """Reuse one connection for every trial after the first (HTTPS keep-alive)."""
    reuse_token_session: bool = True
    """Keep the token's session and key handle open between handshakes (sign_only inside)."""
    jwt_ttl_s: float = 0.0
    """JWT: reuse a token for this long (0: a fresh JWT per request)."""
    jwt_hash_on_token: bool = False
    """JWT: the token hashes the signing input itself (IoT SAFE full-text mode)."""
    tcp_nodelay: bool = False
    """MQTT: set ``TCP_NODELAY`` on the client's socket. paho-mqtt does not (nor did the
    paper's paho client), so by default a small CONNECT can wait for the broker's delayed ACK
    (~40 ms on Linux loopback): the paper's 59 ms software MQTT figure holds that stall.
    ``http.client`` (like curl) always sets it, so HTTPS and JWT have no such option."""
    token_certificate: bool = False
    """VPN: every client start reads its certificate from the token, in the connection's
    token session, as OpenVPN's PKCS#11 mode does (``pkcs11-id`` takes the certificate from
    the token; OpenVPN refuses ``--cert`` with ``--pkcs11-provider``): the paper's OpenVPN.
    The other clients (paho, curl, ``openssl s_client``) take a certificate file, so it is a
    VPN option; it needs a fresh token session per connection (one OpenVPN process each)."""

    @property
    def name(self) -> str:
        parts = []
        if self.resume:
            parts.append("resumed")
        if self.keep_alive:
            parts.append("keepalive")
        if not self.reuse_token_session:
            parts.append("fresh-token-session")
        if self.jwt_ttl_s:
            parts.append(f"jwt-cache-{self.jwt_ttl_s:g}s")
        if self.jwt_hash_on_token:
            parts.append("hash-on-token")
        if self.tcp_nodelay:
            parts.append("nodelay")
        if self.token_certificate:
            parts.append("cert-from-token")
        return "+".join(parts) or "full"


@dataclass(frozen=True)
class ProtocolTrial:
    total_ns: int
    phases: dict[str, int]
    n_sign: int
    resumed: bool = False

    def as_sample(self) -> dict[str, int]:
        return {**self.phases, "n_sign": self.n_sign, "n_resumed": int(self.resumed)}


class ProtocolClient(ABC):
    """One protocol's client against one running peer, made per run."""

    protocol: str = ""
    established_at: str = ""
    limits: tuple[str, ...] = ()
    """What this protocol cannot do here, said in results (e.g. no resumption)."""
    phases: tuple[str, ...] = PROTOCOL_PHASES
    """The phases of this client's trials, summarised in its runs."""

    def __init__(self, signer: TokenSigner, condition: Condition) -> None:
        self.signer = signer
        self.condition = condition

    @abstractmethod
    def trial(self) -> ProtocolTrial:
        """One connection to established; raises SafeLabError with what went wrong."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections kept between trials."""

    def _signatures_since(self, mark: int) -> tuple[int, int]:
        records = self.signer.since(mark)
        return len(records), sum(r.duration_ns for r in records)


@dataclass
class ProtocolResult:
    run_id: int
    status: str
    stats: StatsSnapshot
    n_sign: list[int] = field(default_factory=list)
    resumed: int = 0
    reason: str | None = None


class RunRecorder:
    """One stored protocol run: its row, its samples as they come, its statistics, its end.

    Shared by :func:`run_protocol` (one client) and
    :func:`drivers.protocols.interleave.run_interleaved` (several clients taking turns), so
    both store runs the same way: the row is created after the warm-up, samples are flushed
    every 0.25 s, and an error or Ctrl-C closes the run ``incomplete`` with what was measured.
    """

    def __init__(
        self,
        client: ProtocolClient,
        store: ResultsStore,
        *,
        n: int,
        warmup: int,
        threshold_ms: float = 1000.0,
        peer: PeerIdentity | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.stats = StreamingStats(threshold_ms, phases=client.phases, keep_samples=True)
        self.run_id = store.create_run(
            experiment="proto",
            mode=f"{client.protocol}:{client.condition.name}",
            n_planned=n,
            warmup=warmup,
            data_len=0,
            hash_on="host",
            threshold_ms=threshold_ms,
            token=client.signer.token.info.as_dict(),
            versions=collect_versions(),
            extra={
                "protocol": client.protocol,
                "condition": client.condition.name,
                "established_at": client.established_at,
                "peer": peer.name if peer else "",
                "peer_embedded": peer.embedded if peer else None,
                "peer_version": peer.version if peer else "",
                "limits": list(client.limits),
                "tcp_nodelay": client.condition.tcp_nodelay,
                "token_session": "kept" if client.condition.reuse_token_session else "fresh",
                "certificate": "read from the token at every start"
                if client.condition.token_certificate
                else "file",
                **(extra or {}),
            },
        )
        self.result = ProtocolResult(self.run_id, "incomplete", self.stats.snapshot())
        self._buffer: list[tuple[int, int, dict[str, int]]] = []
        self._last_flush = time.monotonic()
        self._idx = 0

    def trial(self) -> ProtocolTrial:
        """Run and record one trial of the client."""
        trial = self.client.trial()
        self.stats.add(trial.total_ns, trial.phases)
        self.result.n_sign.append(trial.n_sign)
        self.result.resumed += int(trial.resumed)
        self._buffer.append((self._idx, trial.total_ns, trial.as_sample()))
        self._idx += 1
        if time.monotonic() - self._last_flush > 0.25:
            self.flush()
        return trial

    def flush(self) -> None:
        self.store.add_samples(self.run_id, self._buffer)
        self._buffer.clear()
        self._last_flush = time.monotonic()

    def finish(self, status: str, reason: str | None) -> ProtocolResult:
        self.flush()
        self.store.finish_run(self.run_id, status, reason)
        result = self.result
        result.status, result.reason, result.stats = status, reason, self.stats.final_snapshot()
        return result

    def interrupted(self) -> RunInterrupted:
        """Ctrl-C: close the run ``incomplete``; the error to raise."""
        self.flush()
        self.store.finish_run(self.run_id, "incomplete", "interrupted by the user (Ctrl-C)")
        return RunInterrupted(
            f"interrupted: kept {self.stats.count} trials as run {self.run_id} (incomplete)",
            f"see it with `safelab runs show {self.run_id}`",
        )

    def failed(self, exc: SafeLabError) -> None:
        """An error: close the run ``incomplete`` and say so in the error."""
        self.flush()
        self.store.finish_run(self.run_id, "incomplete", exc.one_line())
        exc.problem += f" (run {self.run_id} kept {self.stats.count} trials, incomplete)"


def run_protocol(
    client: ProtocolClient,
    store: ResultsStore,
    *,
    n: int = 30,
    warmup: int = 1,
    threshold_ms: float = 1000.0,
    peer: PeerIdentity | None = None,
    stop: Callable[[], bool] | None = None,
    on_trial: Callable[[int, ProtocolTrial], None] | None = None,
    on_created: Callable[[int], None] | None = None,
    extra: dict[str, object] | None = None,
) -> ProtocolResult:
    """Warm-up, then ``n`` trials of ``client``, stored as they come.

    ``stop`` is asked before each trial (it may block while the run is paused).
    """
    for _ in range(warmup):
        client.trial()
    recorder = RunRecorder(
        client, store, n=n, warmup=warmup, threshold_ms=threshold_ms, peer=peer, extra=extra
    )
    if on_created is not None:
        on_created(recorder.run_id)
    status, reason = "complete", None
    try:
        for idx in range(n):
            if stop is not None and stop():
                status, reason = "incomplete", f"stopped by the user after {idx} trials"
                break
            trial = recorder.trial()
            if on_trial is not None:
                on_trial(idx, trial)
    except KeyboardInterrupt:
        raise recorder.interrupted() from None
    except SafeLabError as exc:
        recorder.failed(exc)
        raise
    return recorder.finish(status, reason)
